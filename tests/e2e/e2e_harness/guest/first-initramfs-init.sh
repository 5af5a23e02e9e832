#!/bin/sh
# /init of the first kernel's initramfs: load the disk modules, mount the root disk found by
# its serial, and switch to it.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo 4 > /proc/sys/kernel/printk
. /etc/e2e/lib.sh
stage first-init
load_modules /etc/e2e/modules-all
root=$(find_disk e2eroot) || fail first-root "no virtio disk with serial e2eroot"
mount -t ext4 "$root" /sysroot || fail first-root "cannot mount $root"
umount /proc /sys /dev
exec switch_root /sysroot /sbin/e2e-first-init
