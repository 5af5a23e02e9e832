# Shell helpers for every guest script (busybox sh). Scenario scripts and capture hooks may
# use them: stage, info, fail, load_modules, find_disk, dump_config, crash.

# Milliseconds since boot, from /proc/uptime (centisecond resolution).
e2e_ms() {
	read -r _up _idle < /proc/uptime
	echo "${_up%.*}${_up#*.}0"
}

# Marker lines go to the console directly, so a script redirecting stdout cannot hide them.
stage() { echo "HANDOFF-E2E STAGE $1 $(e2e_ms)" > /dev/console; }

# The marker right before the kernel goes away goes through printk instead: the console tty
# may still hold it when the panic (or kexec) takes the console over, and then it is lost or
# cut ("HANDO[ 81.89] Kernel panic"). printk prints it in order, before the panic messages.
last_stage() { echo "<1>HANDOFF-E2E STAGE $1 $(e2e_ms)" > /dev/kmsg; }
info() { echo "HANDOFF-E2E INFO $*" > /dev/console; }

# Report a failure the host turns into an error naming STAGE, then stop the machine.
fail() {
	echo "HANDOFF-E2E FAIL $1 $2" > /dev/console
	sync
	poweroff -f
	sleep 5
	exit 1
}

# insmod each listed module (paths relative to /lib/modules/$(uname -r)) unless loaded.
load_modules() {
	_kdir=/lib/modules/$(uname -r)
	while read -r _m; do
		[ -n "$_m" ] || continue
		_n=${_m##*/}
		_n=${_n%.ko}
		_n=$(echo "$_n" | tr - _)
		[ -d "/sys/module/$_n" ] && continue
		insmod "$_kdir/$_m" || fail modules "insmod $_m failed"
	done < "$1"
}

# Print /dev/vdX for the virtio disk with serial $1, waiting up to 10 s for it to appear.
find_disk() {
	_tries=0
	while [ "$_tries" -lt 100 ]; do
		for _b in /sys/block/vd*; do
			[ -e "$_b/serial" ] || continue
			if [ "$(cat "$_b/serial")" = "$1" ]; then
				echo "/dev/${_b##*/}"
				return 0
			fi
		done
		_tries=$((_tries + 1))
		sleep 0.1
	done
	return 1
}

# Copy every PCI function's config space into directory $1 as <BDF>.bin.
dump_config() {
	mkdir -p "$1"
	for _d in /sys/bus/pci/devices/*; do
		cat "$_d/config" > "$1/${_d##*/}.bin"
	done
}

# Unmount the results disk and crash through sysrq; the loaded capture kernel takes over.
crash() {
	cd /
	sync
	umount /results 2>/dev/null
	last_stage crash
	echo c > /proc/sysrq-trigger
	sleep 10
	fail crash "echo c > /proc/sysrq-trigger returned"
}

# End a scenario in the first kernel (transition "poweroff"): no capture kernel follows.
power_off() {
	cd /
	sync
	umount /results 2>/dev/null
	last_stage poweroff
	poweroff -f
	sleep 10
	fail poweroff "poweroff -f returned"
}

# The early-collector scenarios (first_initrd): what the real initramfs left behind, read
# from the real root. Kernel-log and trace timestamps (boot with
# trace_event=module:module_load) order the snapshot's uptime against module loads, the root
# mount and (dracut, with systemd.log_target=kmsg) the initrd's units; a kmsg line carrying
# /proc/uptime relates the two clocks. Live config space and drivers are "after".
early_evidence() {
	cat /proc/cmdline > "$E2E_OUT/cmdline"
	cat /proc/sys/kernel/random/boot_id > "$E2E_OUT/boot_id"
	cat /proc/mounts > "$E2E_OUT/mounts"
	ls -la /run/handoff > "$E2E_OUT/run-handoff.ls" 2>&1 || true
	# The collector exists only inside the initrd: nothing on this root can have run it.
	ls -la /usr/lib/handoff > "$E2E_OUT/root-usr-lib-handoff.ls" 2>&1 || true
	if [ -f /run/handoff/early.bin ]; then
		cp /run/handoff/early.bin "$E2E_OUT/early.bin"
		stat -c '%Y %s' /run/handoff/early.bin > "$E2E_OUT/early.stat"
	fi
	echo "$(date +%s) $(cut -d' ' -f1 /proc/uptime)" > "$E2E_OUT/clock"
	echo "<6>handoff-e2e uptime $(cut -d' ' -f1 /proc/uptime)" > /dev/kmsg
	[ -e /sys/kernel/tracing/trace ] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
	cat /sys/kernel/tracing/trace > "$E2E_OUT/trace.txt" 2>/dev/null || true
	dmesg > "$E2E_OUT/dmesg.txt"
	drivers_bound > "$E2E_OUT/drivers-live"
	dump_config "$E2E_OUT/config-live"
	return 0
}

# The early-collector scenarios' whole first kernel: keep the evidence, let handoff save read
# the snapshot (its record, JSON and stderr go to $E2E_OUT), then power off.
early_save_and_power_off() {
	early_evidence
	stage evidence
	rc=0
	handoff save -o "$E2E_OUT/record.bin" --json > "$E2E_OUT/save.json" \
		2> "$E2E_OUT/save.err" || rc=$?
	echo "$rc" > "$E2E_OUT/save.rc"
	[ "$rc" = 0 ] || fail saved "handoff save exited $rc: $(tail -n 3 "$E2E_OUT/save.err")"
	stage saved
	power_off
}

# "BDF DRIVER" for every PCI function with a driver bound.
drivers_bound() {
	for _d in /sys/bus/pci/devices/*; do
		[ -e "$_d/driver" ] && echo "${_d##*/} $(basename "$(readlink "$_d/driver")")"
	done
	return 0
}

# Device registers behind the BARs, as the plugins see them (needs the pcimem tool, and no
# driver bound to the device): "NAME VALUE" lines; VALUE is "error: MESSAGE" when the BAR
# cannot be mapped (EPERM under lockdown, EINVAL once a driver claimed it).
bar_state() {
	bar_reg nvme-cc 0000:01:00.0 0 0x14 4
	bar_reg nvme-csts 0000:01:00.0 0 0x1c 4
	bar_reg virtio-net-status virtio-status 0000:02:00.0
}

bar_reg() {
	_name=$1
	shift
	if _v=$(pcimem "$@" 2>&1); then
		echo "$_name $_v"
	else
		echo "$_name error: $_v"
	fi
}

# Perturb the driverless AHCI function 00:1f.2 the way a dying kernel might, after handoff
# saved it: BAR5 moved (Memory Space off while it moves) to a free address of the root bus
# window, so the capture kernel keeps it; INTx Disable flipped in COMMAND; Cache Line Size
# and Interrupt Line written straight into sysfs `config`. Writes "REG BEFORE AFTER" lines
# (hex) to $1, and the function's config space before the perturbation to $1-before.bin.
AHCI=0000:00:1f.2
perturb_ahci() {
	_cfg=/sys/bus/pci/devices/$AHCI/config
	[ -e "/sys/bus/pci/devices/$AHCI/driver" ] && fail perturbed "$AHCI has a driver bound"
	cat "$_cfg" > "$1-before.bin"
	_cmd=$(setpci -s $AHCI COMMAND)
	_bar5=$(setpci -s $AHCI BASE_ADDRESS_5)
	_cls=$(setpci -s $AHCI CACHE_LINE_SIZE)
	_irq=$(setpci -s $AHCI INTERRUPT_LINE)
	setpci -s $AHCI COMMAND="$(printf %04x $((0x$_cmd & ~0x2)))"
	setpci -s $AHCI BASE_ADDRESS_5=fe27f000
	setpci -s $AHCI COMMAND="$(printf %04x $((0x$_cmd ^ 0x0400)))"
	printf '\020' | dd of="$_cfg" bs=1 seek=12 conv=notrunc 2> /dev/null ||
		fail perturbed "writing Cache Line Size through $_cfg failed"
	printf '\005' | dd of="$_cfg" bs=1 seek=60 conv=notrunc 2> /dev/null ||
		fail perturbed "writing Interrupt Line through $_cfg failed"
	{
		echo "COMMAND $_cmd $(setpci -s $AHCI COMMAND)"
		echo "BASE_ADDRESS_5 $_bar5 $(setpci -s $AHCI BASE_ADDRESS_5)"
		echo "CACHE_LINE_SIZE $_cls $(setpci -s $AHCI CACHE_LINE_SIZE)"
		echo "INTERRUPT_LINE $_irq $(setpci -s $AHCI INTERRUPT_LINE)"
	} > "$1"
	while read -r _reg _old _new; do
		[ "$_old" != "$_new" ] || fail perturbed "$AHCI $_reg did not change (still $_new)"
	done < "$1"
}

# The capture-side checks shared by the handoff scenarios, around handoff's own hooks
# (pre-udev/30-handoff.sh runs `handoff restore`, pre-pivot/90-handoff-capture.sh runs
# `handoff capture`). Each writes into $E2E_OUT; a missing handoff file fails the stage.
handoff_before_restore() {
	dump_config "$E2E_OUT/config-before-restore"
	cat /proc/cmdline > "$E2E_OUT/cmdline"
	drivers_bound > "$E2E_OUT/drivers-before"
	command -v pcimem > /dev/null && bar_state > "$E2E_OUT/bars-before-restore"
	ls -lR /handoff > "$E2E_OUT/handoff-files" 2>&1
	[ -f /handoff/record.note ] || return 0
	cp /handoff/record.note "$E2E_OUT/record.note"
	cp /handoff/etc/capture.conf "$E2E_OUT/capture.conf"
}

handoff_after_restore() {
	dump_config "$E2E_OUT/config-after-restore"
	command -v pcimem > /dev/null && bar_state > "$E2E_OUT/bars-after-restore"
	[ -f /handoff/restore-report.json ] && cp /handoff/restore-report.json "$E2E_OUT/"
	[ -f /handoff/record.note ] || return 0
	_rc=0
	/handoff/bin/handoff inspect --json /handoff/record.note > "$E2E_OUT/inspect-record.json" \
		2> "$E2E_OUT/inspect-record.err" || _rc=$?
	echo "$_rc" > "$E2E_OUT/inspect-record.rc"
}

# Before handoff capture: the capture kernel's own drivers bound and work; a plain copy of
# the vmcore's headers and notes.
handoff_drivers_work() {
	drivers_bound > "$E2E_OUT/drivers-after"
	_i=0
	while [ ! -b /dev/nvme0n1 ] && [ $_i -lt 100 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	_rc=0
	dd if=/dev/nvme0n1 of=/dev/null bs=4096 count=64 2> "$E2E_OUT/nvme-read.err" || _rc=$?
	echo "$_rc" > "$E2E_OUT/nvme-read.rc"
	for _n in /sys/class/net/*; do
		[ "$(cat "$_n/address" 2> /dev/null)" = 52:54:00:00:00:02 ] || continue
		ip link set "${_n##*/}" up
		_i=0
		while { [ "$(cat "$_n/carrier" 2> /dev/null)" != 1 ] ||
			[ "$(cat "$_n/operstate")" != up ]; } && [ $_i -lt 50 ]; do
			sleep 0.1
			_i=$((_i + 1))
		done
		echo "${_n##*/} $(cat "$_n/operstate") carrier=$(cat "$_n/carrier" 2> /dev/null)" \
			"driver=$(basename "$(readlink "$_n/device/driver")")"
	done > "$E2E_OUT/virtio-net"
	plain_vmcore_head
}

# The first MiB of /proc/vmcore as it is (ELF header, program headers, notes), for the host
# to compare with the dump handoff capture saves.
plain_vmcore_head() {
	dd if=/proc/vmcore of="$E2E_OUT/plain-head.bin" bs=4096 count=256 2> /dev/null
}

# After handoff capture: list what it wrote on the results disk.
handoff_after_capture() {
	ls -lR "$E2E_RESULTS" > "$E2E_OUT/results-listing"
	for _f in "$E2E_RESULTS"/*/vmcore; do
		[ -f "$_f" ] && return 0
	done
	fail captured "handoff capture saved no vmcore under $E2E_RESULTS"
}

# Unmount the results disk and boot the kernel loaded with `kexec -l` (a kexec reboot).
kexec_exec() {
	cd /
	sync
	umount /results 2> /dev/null
	last_stage kexec-exec
	kexec -e
	fail kexec-exec "kexec -e returned $?"
}

# COMMAND of function $1, 4 hex digits, read from sysfs config (busybox od; no setpci here).
pci_command() {
	od -An -tx2 -j4 -N2 "/sys/bus/pci/devices/$1/config" | tr -d ' '
}

# Under lockdown: does sysfs `enable` 1 then 0 (pci_enable_device, pci_disable_device; the
# kernel's own config writes) clear Bus Master of the driverless AHCI? A measurement for the
# restore engine's fallbacks, written to $E2E_OUT/enable-probe; handoff is not involved.
lockdown_enable_probe() {
	_d=/sys/bus/pci/devices/$AHCI
	# After restore, so handoff ran as an initrd without securityfs would run it.
	mount -t securityfs securityfs /sys/kernel/security 2> /dev/null
	{
		echo "lockdown $(cat /sys/kernel/security/lockdown 2> /dev/null || echo unknown)"
		echo "before $(pci_command $AHCI) enable=$(cat $_d/enable)"
		_e=$(echo 1 2>&1 > $_d/enable) && echo "enable-1 ok $(pci_command $AHCI)" ||
			echo "enable-1 error $_e"
		_e=$(echo 0 2>&1 > $_d/enable) && echo "enable-0 ok $(pci_command $AHCI)" ||
			echo "enable-0 error $_e"
	} > "$E2E_OUT/enable-probe" 2>&1
}

# -- The restore round trip (scenarios restore-roundtrip*): kernel-owned state perturbed after
# the save, then judged by what the capture kernel does with it.
RP_NVME=0000:00:01.0
NVME=0000:01:00.0
VNET=0000:02:00.0
E1000E=0000:05:00.0

# A free address for BAR0 of $NVME inside its root port's memory window: aligned to the BAR's
# size, not its current address, overlapping no other resource of the function.
nvme_free_bar0() {
	_mb=$(setpci -s $RP_NVME MEMORY_BASE)
	_ml=$(setpci -s $RP_NVME MEMORY_LIMIT)
	_wbase=$(((0x$_mb & 0xfff0) << 16))
	_wlim=$((((0x$_ml & 0xfff0) << 16) | 0xfffff))
	read -r _s _e _f < /sys/bus/pci/devices/$NVME/resource
	_size=$((_e - _s + 1))
	_c=$_wbase
	while [ $((_c + _size - 1)) -le $_wlim ]; do
		_ok=1
		[ $_c -eq $((_s)) ] && _ok=0
		while read -r _rs _re _rf; do
			[ $((_rs)) -ne 0 ] || continue
			[ $((_rf & 0x200)) -ne 0 ] || continue # IORESOURCE_MEM only
			[ $_c -le $((_re)) ] && [ $((_c + _size - 1)) -ge $((_rs)) ] && _ok=0
		done < /sys/bus/pci/devices/$NVME/resource
		[ $_ok = 1 ] && { printf '%08x\n' $_c; return 0; }
		_c=$((_c + _size))
	done
	return 1
}

# What a dying kernel may leave behind in state the capture kernel's PCI core and drivers own
# (docs/policy.md), after handoff saved and loaded the record:
# - nvme BAR0 moved inside its bridge window (type bits kept); the capture kernel enumerates
#   and keeps the new address;
# - the e1000e's COMMAND cleared (Memory Space off on a device the e1000 plugin handles);
# - virtio-net's Memory Space off (the virtio plugin);
# - the nvme's root port with Bus Master off.
# The drivers bound here leave MSI-X enabled with unmasked vectors on nvme, virtio and e1000e.
# Writes "NAME BDF REGISTER BEFORE AFTER" lines (hex) to $1; fails if a write did not take.
perturb_kernel_owned() {
	: > "$1"
	_new=$(nvme_free_bar0) || fail perturbed "no free place for $NVME BAR0 in its window"
	_bar0=$(setpci -s $NVME BASE_ADDRESS_0)
	_cmd=$(setpci -s $NVME COMMAND)
	setpci -s $NVME COMMAND="$(printf %04x $((0x$_cmd & ~0x2)))" # no decoding while it moves
	setpci -s $NVME BASE_ADDRESS_0="$(printf %08x $((0x$_new | (0x$_bar0 & 0xf))))"
	setpci -s $NVME COMMAND="$_cmd"
	echo "nvme-bar0 $NVME BASE_ADDRESS_0 $_bar0 $(setpci -s $NVME BASE_ADDRESS_0)" >> "$1"
	_cmd=$(setpci -s $E1000E COMMAND)
	setpci -s $E1000E COMMAND=0000
	echo "e1000e-command $E1000E COMMAND $_cmd $(setpci -s $E1000E COMMAND)" >> "$1"
	_cmd=$(setpci -s $VNET COMMAND)
	setpci -s $VNET COMMAND="$(printf %04x $((0x$_cmd & ~0x2)))"
	echo "virtio-net-memory $VNET COMMAND $_cmd $(setpci -s $VNET COMMAND)" >> "$1"
	_cmd=$(setpci -s $RP_NVME COMMAND)
	setpci -s $RP_NVME COMMAND="$(printf %04x $((0x$_cmd & ~0x4)))"
	echo "root-port-bus-master $RP_NVME COMMAND $_cmd $(setpci -s $RP_NVME COMMAND)" >> "$1"
	while read -r _what _bdf _reg _old _now; do
		[ "$_old" != "$_now" ] || fail perturbed "$_what: $_bdf $_reg did not change ($_now)"
	done < "$1"
}

# The kernel's view and the hardware's, taken together into directory $1: config space,
# sysfs resource files, /proc/iomem, bound drivers, and nvme's MSI-X vector masks.
kernel_view() {
	mkdir -p "$1/resource"
	dump_config "$1/config"
	for _d in /sys/bus/pci/devices/*; do
		cat "$_d/resource" > "$1/resource/${_d##*/}"
	done
	cat /proc/iomem > "$1/iomem"
	drivers_bound > "$1/drivers"
	bar_reg nvme-msix msix $NVME > "$1/nvme-msix"
}

# The PCI function of network interface $1 (a virtio NIC's device is virtioN, below it).
nic_pci() {
	_p=$(readlink -f "$1/device")
	case "${_p##*/}" in virtio*) _p=${_p%/*} ;; esac
	echo "${_p##*/}"
}

# After the capture kernel's drivers loaded: every block device is there, the NVMe namespace
# reads, every NIC comes up with a carrier; the kernel log is kept for probe failures.
drivers_work_all() {
	_i=0
	while [ ! -b /dev/nvme0n1 ] && [ $_i -lt 100 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	ls /sys/block > "$E2E_OUT/block-devices"
	_rc=0
	dd if=/dev/nvme0n1 of=/dev/null bs=4096 count=256 2> "$E2E_OUT/nvme-read.err" || _rc=$?
	echo "$_rc" > "$E2E_OUT/nvme-read.rc"
	for _n in /sys/class/net/*; do
		_mac=$(cat "$_n/address" 2> /dev/null)
		case "$_mac" in 52:54:00:00:00:0?) ;; *) continue ;; esac
		_rc=0
		ip link set "${_n##*/}" up 2> "$E2E_OUT/ip-link.err" || _rc=$?
		_i=0
		while { [ "$(cat "$_n/carrier" 2> /dev/null)" != 1 ] ||
			[ "$(cat "$_n/operstate")" != up ]; } && [ $_i -lt 100 ]; do
			sleep 0.1
			_i=$((_i + 1))
		done
		echo "$_mac ${_n##*/} ip-link-rc=$_rc $(cat "$_n/operstate")" \
			"carrier=$(cat "$_n/carrier" 2> /dev/null)" \
			"driver=$(basename "$(readlink "$_n/device/driver")")" \
			"pci=$(nic_pci "$_n")"
	done > "$E2E_OUT/nics"
	dmesg > "$E2E_OUT/dmesg-drivers"
}

# Mount the file system on the NVMe namespace at /dump: `handoff capture` writes the dump
# through the device restore just handled. When it cannot be mounted (the NVMe did not come
# back), /dump becomes a read-only tmpfs, so that capture cannot fill the capture kernel's RAM
# instead; the run goes on and the host tests say what failed.
mount_dump_disk() {
	mkdir -p /dump
	if mount -t ext4 /dev/nvme0n1 /dump 2> "$E2E_OUT/dump-mount.err"; then
		mkdir -p /dump/capture
		echo mounted > "$E2E_OUT/dump-mount"
	else
		mount -t tmpfs -o ro,size=64k tmpfs /dump
		echo failed > "$E2E_OUT/dump-mount"
	fi
}

# After handoff capture: list the dump directory and unmount it, so the image is complete.
dump_disk_done() {
	ls -lR /dump > "$E2E_OUT/dump-listing" 2>&1
	dmesg > "$E2E_OUT/dmesg-final"
	sync
	umount /dump || fail captured "cannot unmount /dump"
}

# The DMA scenarios (dma-*, scenario dma_rate): a second e1000e at $DMA_NIC that the host
# feeds with frames over loopback UDP. Needs the dmaprobe and pcimem tools.
DMA_NIC=0000:05:00.0
DMA_MAC=52:54:00:00:00:03

# First kernel: give the DMA NIC an RX ring of $1 descriptors, bring it up and wait until it
# receives the host's frames. The virtio-net goes up too, so it has sent frames (a NIC in use).
dma_nic_up() {
	_if=
	for _n in /sys/class/net/*; do
		[ "$(cat "$_n/address" 2> /dev/null)" = "$DMA_MAC" ] && _if=${_n##*/}
		[ "$(cat "$_n/address" 2> /dev/null)" = 52:54:00:00:00:02 ] && ip link set "${_n##*/}" up
	done
	[ -n "$_if" ] || fail dma-receiving "no interface with MAC $DMA_MAC"
	dmaprobe ring "$_if" "$1" > "$E2E_OUT/dma-ring" ||
		fail dma-receiving "setting the RX ring of $_if to $1 failed"
	ip link set "$_if" up
	_s=/sys/class/net/$_if/statistics/rx_packets
	_i=0
	while [ "$(cat $_s)" -lt 20 ]; do
		[ $_i -lt 300 ] || fail dma-receiving "$_if received $(cat $_s) frames in 30 s"
		sleep 0.1
		_i=$((_i + 1))
	done
	echo "$_if $(cat "$E2E_OUT/dma-ring") rx_packets $(cat $_s)" > "$E2E_OUT/dma-nic"
}

# Capture kernel: hash every page of old memory (/proc/vmcore) twice, $2 s apart, into
# $E2E_OUT/hash-$1-1.bin and -2.bin, with the NIC's RX registers before and after.
dma_hash() {
	dma_rx_regs > "$E2E_OUT/rx-$1-1"
	dmaprobe hash /proc/vmcore "$E2E_OUT/hash-$1-1.bin" > "$E2E_OUT/hash-$1-1.txt" ||
		fail "$1" "dmaprobe hash failed"
	sleep "$2"
	dmaprobe hash /proc/vmcore "$E2E_OUT/hash-$1-2.bin" > "$E2E_OUT/hash-$1-2.txt" ||
		fail "$1" "dmaprobe hash failed"
	dma_rx_regs > "$E2E_OUT/rx-$1-2"
	info "dma-hash $1 $(cat "$E2E_OUT/hash-$1-1.txt") / $(cat "$E2E_OUT/hash-$1-2.txt")"
}

# The DMA NIC's receive registers (82574 datasheet §10.2: RCTL 0x100, RDBAL/RDBAH/RDLEN
# 0x2800/0x2804/0x2808, RDH 0x2810, RDT 0x2818) and COMMAND, as "NAME VALUE" lines.
dma_rx_regs() {
	echo "COMMAND 0x$(pci_command $DMA_NIC)"
	for _r in RCTL:0x100 RDBAL:0x2800 RDBAH:0x2804 RDLEN:0x2808 RDH:0x2810 RDT:0x2818; do
		bar_reg "${_r%%:*}" $DMA_NIC 0 "${_r#*:}" 4
	done
}
