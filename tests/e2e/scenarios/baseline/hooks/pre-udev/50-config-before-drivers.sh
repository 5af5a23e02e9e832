# Config space as the capture kernel finds it, before any driver module loads.
dump_config "$E2E_OUT/config-before-drivers"
cat /proc/cmdline > "$E2E_OUT/cmdline"
for _d in /sys/bus/pci/devices/*; do
	[ -e "$_d/driver" ] && echo "${_d##*/} $(basename "$(readlink "$_d/driver")")"
done > "$E2E_OUT/drivers-before"
