# Shell helpers for every guest script (busybox sh). Scenario scripts and capture hooks may
# use them: stage, info, fail, load_modules, find_disk, dump_config, crash.

# Milliseconds since boot, from /proc/uptime (centisecond resolution).
e2e_ms() {
	read -r _up _idle < /proc/uptime
	echo "${_up%.*}${_up#*.}0"
}

# Marker lines go to the console directly, so a script redirecting stdout cannot hide them.
stage() { echo "HANDOFF-E2E STAGE $1 $(e2e_ms)" > /dev/console; }
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
	stage crash
	echo c > /proc/sysrq-trigger
	sleep 10
	fail crash "echo c > /proc/sysrq-trigger returned"
}
