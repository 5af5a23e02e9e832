# The capture kernel's own drivers loaded: they work, the kernel and the hardware still agree,
# and the dump's file system on the NVMe namespace is mounted for handoff capture (90-*).
drivers_work_all
kernel_view "$E2E_OUT/view-after-drivers"
plain_vmcore_head
mount_dump_disk
stage drivers-checked
