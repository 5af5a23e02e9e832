# Before handoff restore (30-handoff.sh): what the crash left, and what the kernel made of it.
handoff_before_restore
kernel_view "$E2E_OUT/view-before-restore"
stage before-restore
