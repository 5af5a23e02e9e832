# The main proof: handoff saves the devices, loads the capture kernel with its record and
# hooks (handoff load, no hand-built kexec), the AHCI function is perturbed after the save,
# and the kernel crashes. The capture side restores before drivers load and saves the dump.
size=$(cat /sys/kernel/kexec_crash_size)
[ "$size" -gt 0 ] || fail saved "no crashkernel reservation (kexec_crash_size is 0)"
echo "$size" > "$E2E_OUT/kexec_crash_size"
dmesg > "$E2E_OUT/dmesg.txt" # the pci=earlydump lines handoff save reads as the early state

handoff save -o "$E2E_OUT/record-save.bin" --json > "$E2E_OUT/save.json" 2> "$E2E_OUT/save.err" ||
	fail saved "handoff save exited $?: $(tail -n 3 "$E2E_OUT/save.err")"
stage saved

rc=0
handoff load --kernel "$CAPTURE_KERNEL" --initrd "$CAPTURE_INITRD" --cmdline "$CAPTURE_APPEND" \
	--dump-dir /results/capture --json > "$E2E_OUT/load.json" 2> "$E2E_OUT/load.err" || rc=$?
echo "$rc" > "$E2E_OUT/load.rc"
[ "$rc" = 0 ] || fail loaded "handoff load exited $rc: $(tail -n 5 "$E2E_OUT/load.err")"
cp /var/lib/handoff/record.bin /var/lib/handoff/loaded.json "$E2E_OUT/"
stage loaded

rc=0
handoff status --json > "$E2E_OUT/status.json" 2> "$E2E_OUT/status.err" || rc=$?
echo "$rc" > "$E2E_OUT/status.rc"
stage status

perturb_ahci "$E2E_OUT/perturbed"
stage perturbed
dump_config "$E2E_OUT/config-before-crash"
crash
