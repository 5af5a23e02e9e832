#!/bin/sh
# Init on the first kernel's root disk: load the drivers, mount the results disk, run the
# scenario's script (/etc/e2e/first.sh), which is expected to end in a crash.
export PATH=/opt/handoff/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
# A real initramfs (scenario first_initrd) hands over /proc, /sys, /dev and /run already
# mounted, and /run holds what its hooks left there: mount only what is not mounted yet.
[ -e /proc/mounts ] || mount -t proc proc /proc
mounted() { grep -q "^[^ ]* $1 " /proc/mounts; }
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mounted /tmp || mount -t tmpfs tmpfs /tmp
mounted /run || mount -t tmpfs tmpfs /run
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
