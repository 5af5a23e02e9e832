#!/bin/sh
# /init of the capture initrd: run the pre-udev hooks before any driver loads, load the
# drivers, mount the results disk, run the pre-pivot hooks, save /proc/vmcore if no hook
# did, copy everything to the results disk and power off. Hooks are sourced in sorted
# order, as dracut does, so an appended cpio can add one.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo 4 > /proc/sys/kernel/printk
. /etc/e2e/lib.sh
stage capture-init
info "memfree-kb $(sed -n 's/^MemFree: *\([0-9]*\).*/\1/p' /proc/meminfo)"
export E2E_OUT=/run/e2e-out
mkdir -p "$E2E_OUT"
cat /proc/meminfo > "$E2E_OUT/meminfo-at-init"

run_hooks() {
	for _hook in /lib/dracut/hooks/"$1"/*.sh; do
		[ -e "$_hook" ] || continue
		info "hook $_hook"
		. "$_hook"
	done
}

run_hooks pre-udev
stage pre-udev-done
load_modules /etc/e2e/modules-all
stage drivers-loaded
res=$(find_disk e2eres) || fail drivers-loaded "no virtio disk with serial e2eres"
mount -t ext4 "$res" /results || fail drivers-loaded "cannot mount results disk $res"
export E2E_RESULTS=/results/capture
mkdir -p "$E2E_RESULTS"
stage results-mounted
run_hooks pre-pivot
stage pre-pivot-done
if ! ls "$E2E_RESULTS"/vmcore* > /dev/null 2>&1; then
	case "$(cat /etc/e2e/vmcore-mode)" in
	full) dd if=/proc/vmcore of="$E2E_RESULTS/vmcore" bs=1M 2> "$E2E_OUT/dd.err" ;;
	head) dd if=/proc/vmcore of="$E2E_RESULTS/vmcore" bs=1M count=1 2> "$E2E_OUT/dd.err" ;;
	none) : ;;
	esac || fail vmcore-saved "copying /proc/vmcore failed: $(cat "$E2E_OUT/dd.err")"
fi
stage vmcore-saved
cp -a "$E2E_OUT/." "$E2E_RESULTS/"
cd /
umount /results || fail capture-done "cannot unmount the results disk"
sync
stage capture-done
poweroff -f
