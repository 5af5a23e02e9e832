# The failure handoff exists for, without handoff: a NIC that the host keeps feeding is left
# receiving when the kernel crashes. Its RX ring holds 4096 descriptors, so at the sender's
# 50 frames/s it still has free ones for about 80 s after the crash: nobody refills it then,
# and DMA lasts (free descriptors / rate). The capture kernel is loaded by hand.
kexec -p "$CAPTURE_KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"
[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || fail kexec-loaded "kexec_crash_loaded is not 1"
stage kexec-loaded
dma_nic_up 4096
stage dma-receiving
crash
