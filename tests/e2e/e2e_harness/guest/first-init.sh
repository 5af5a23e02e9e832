#!/bin/sh
# Init on the first kernel's root disk: load the drivers, mount the results disk, run the
# scenario's script (/etc/e2e/first.sh), which is expected to end in a crash.
export PATH=/opt/handoff/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo 4 > /proc/sys/kernel/printk
. /etc/e2e/lib.sh
stage first-root
load_modules /etc/e2e/modules-drivers
stage first-drivers
res=$(find_disk e2eres) || fail first-drivers "no virtio disk with serial e2eres"
mount -t ext4 "$res" /results || fail first-drivers "cannot mount results disk $res"
mkdir -p /results/first
info "memfree-kb $(sed -n 's/^MemFree: *\([0-9]*\).*/\1/p' /proc/meminfo)"

export E2E_OUT=/results/first
export CAPTURE_KERNEL=/boot/vmlinuz
export CAPTURE_INITRD=/boot/capture-initrd.img
export CAPTURE_APPEND="$(cat /etc/e2e/capture-append)"
stage first-script
(
	set -e
	. /etc/e2e/first.sh
)
fail first-script "first.sh exited with status $? without crashing the kernel"
