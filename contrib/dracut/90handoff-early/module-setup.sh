#!/bin/bash
# dracut module: run handoff-early-collect in pre-udev, before any driver module loads.
# Install this directory as /usr/lib/dracut/modules.d/90handoff-early/ and rebuild with
# `dracut -f` (add `add_dracutmodules+=" handoff-early "` to /etc/dracut.conf.d/ if needed).

check() {
    require_binaries /usr/lib/handoff/handoff-early-collect || return 1
    return 0
}

depends() {
    return 0
}

install() {
    inst_binary /usr/lib/handoff/handoff-early-collect
    # pre-udev runs after /sys, /proc and /run are mounted and before systemd-udevd or
    # udevd starts, so only built-in drivers can have bound yet, and, with systemd in the
    # initramfs, what systemd loads itself as PID 1 before any unit: virtio_pci when a virtio
    # PCI function exists (any QEMU/KVM guest), which binds them all. The collector marks
    # the bound entries.
    inst_hook pre-udev 00 "$moddir/handoff-early.sh"
}
