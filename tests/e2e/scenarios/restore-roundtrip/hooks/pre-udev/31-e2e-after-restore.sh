# After handoff restore (30-handoff.sh), before any driver: the kernel's view and the hardware.
stage restored
handoff_after_restore
kernel_view "$E2E_OUT/view-after-restore"
stage after-restore
