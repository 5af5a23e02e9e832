#!/bin/sh
# The Debian 12 system scenario's observer (debsys.py), an initramfs-tools init-top script in
# /etc/initramfs-tools/scripts/init-top/, so kdump-tools' own initrd carries it in both boots.
# In a capture kernel only (/proc/vmcore), it prints MemAvailable after handoff's restore
# (which handoff puts first in init-top) and before udev starts, to compare the two boots at
# the same point. It changes nothing.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in
prereqs) prereqs; exit 0 ;;
esac
[ -e /proc/vmcore ] || exit 0
read -r up _idle < /proc/uptime
echo "HANDOFF-E2E INFO init-top $(grep MemAvailable /proc/meminfo) uptime $up" > /dev/console
exit 0
