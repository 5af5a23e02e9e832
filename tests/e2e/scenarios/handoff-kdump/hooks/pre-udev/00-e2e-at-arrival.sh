# Before handoff's first hook (00-handoff-quiesce.sh clears Bus Master, and QEMU's virtio then
# drops DRIVER_OK): config space and device registers as the crash left them.
dump_config "$E2E_OUT/config-at-arrival"
bar_state > "$E2E_OUT/bars-at-arrival"
