#!/bin/sh
# dracut pre-udev hook: save PCI config space before drivers bind (spec/early-snapshot.md).
# Disable with rd.handoff.early=0. Never fails the boot.
type getargbool >/dev/null 2>&1 || . /lib/dracut-lib.sh

if getargbool 1 rd.handoff.early; then
    /usr/lib/handoff/handoff-early-collect -q -r /sys -o /run/handoff/early.bin || \
        warn "handoff: early collector failed; handoff save will use other sources"
fi
