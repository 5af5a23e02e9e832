#!/bin/sh
# The Debian 12 system scenario's driver (debsys.py): a oneshot systemd unit after
# kdump-tools.service, run once per boot of the first kernel. /etc/e2e/mode says which boot:
#   handoff   run the integration steps of docs/distro.md (/etc/e2e/distro-steps.sh, taken
#             from the doc by the host) from the checkout in /root/handoff, as a user would;
#   baseline  kdump-tools alone (the host removed the drop-ins from the disk).
# Then it records what the services did, perturbs kernel-owned PCI state (lib.sh
# perturb_kernel_owned) and crashes; kdump-tools' capture kernel ends QEMU with `reboot -f`.
# Evidence goes to /var/lib/e2e/<mode>/ on the root disk, read by the host with debugfs.
set -u
. /etc/e2e/lib.sh
# This machine's topology (debsys.py qemu_argv): lib.sh's names, other buses.
RP_NVME=0000:00:01.0
NVME=0000:01:00.0
VNET=0000:02:00.0
E1000E=0000:05:00.0
mode=$(cat /etc/e2e/mode)
OUT=/var/lib/e2e/$mode
rm -rf "$OUT"
mkdir -p "$OUT"
stage booted
cat /proc/cmdline > "$OUT/cmdline"
systemd-analyze > "$OUT/systemd-analyze" 2>&1 || true
grep MemTotal /proc/meminfo > "$OUT/meminfo"
lspci -n > "$OUT/lspci"
# Drivers load from udev; perturb_kernel_owned needs nvme, virtio-net and e1000e bound.
for _i in $(seq 1 120); do
	[ -e /sys/bus/pci/devices/$NVME/driver ] && [ -e /sys/bus/pci/devices/$VNET/driver ] &&
		[ -e /sys/bus/pci/devices/$E1000E/driver ] && break
	sleep 0.5
done
drivers_bound > "$OUT/drivers-first"
cat /sys/kernel/kexec_crash_loaded > "$OUT/crash-loaded-at-boot"
cat /sys/kernel/kexec_crash_size > "$OUT/crash-size"

if [ "$mode" = handoff ]; then
	# docs/distro.md's steps, as root, from the checkout (a user runs them by hand).
	rc=0
	(cd /root/handoff && sh -ex /etc/e2e/distro-steps.sh) > "$OUT/steps.log" 2>&1 || rc=$?
	echo "$rc" > "$OUT/steps.rc"
	[ "$rc" = 0 ] || fail integrated "docs/distro.md's steps exited $rc: $(tail -n 5 "$OUT/steps.log")"
	stage integrated
	handoff status --json > "$OUT/status.json" 2> "$OUT/status.err"
	echo $? > "$OUT/status.rc"
	handoff estimate > "$OUT/estimate.txt" 2> "$OUT/estimate.err"
	echo $? > "$OUT/estimate.rc"
	handoff estimate --json > "$OUT/estimate.json" 2>> "$OUT/estimate.err"
	cp /var/lib/handoff/loaded.json "$OUT/loaded.json" 2> /dev/null || true
	cp -r /var/lib/handoff/runtime-cache "$OUT/runtime-cache" 2> /dev/null || true
	rm -f "$OUT"/runtime-cache/*/*.cpio* 2> /dev/null
	command -v handoff > "$OUT/which-handoff"
fi
journalctl -b -o short-monotonic --no-pager -u kdump-tools > "$OUT/kdump-tools.journal" 2>&1
kdump-config show > "$OUT/kdump-config-show" 2>&1 || true
cat /sys/kernel/kexec_crash_loaded > "$OUT/crash-loaded"
[ "$(cat "$OUT/crash-loaded")" = 1 ] || fail loaded "no crash kernel loaded (kexec_crash_loaded 0)"
stage loaded

dump_config "$OUT/config-before-perturb"
perturb_kernel_owned "$OUT/perturbed"
dump_config "$OUT/config-before-crash"
stage perturbed
ls -R /var/crash > "$OUT/crash-dir-before" 2>&1
sync
last_stage crash
echo c > /proc/sysrq-trigger
sleep 10
fail crash "echo c > /proc/sysrq-trigger returned"
