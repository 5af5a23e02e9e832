"""``handoff save``: read the PCI devices (the real /sys by default) and write a record."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
Read every PCI function under /sys (or --sysfs-root), attach its early config state (from
the early collector's snapshot, else `pci=earlydump` in the kernel log, else none), and write
a handoff record. Without -o, print one row per device instead: address, ids, driver,
class, config size read, the early-state source and the default policy.

The kernel log (/dev/kmsg, then `journalctl -k -b`) is searched only when the running
kernel's command line has pci=earlydump.

Reads only; never writes to sysfs. Run as root: unprivileged readers get 64 bytes of config
space, and the record marks those snapshots partial.
"""


EPILOG = """\
examples:
  sudo handoff save                          # one row per PCI device, nothing written
  sudo handoff save -o /var/lib/handoff/record.bin
  sudo handoff save -d ::0108 --json          # NVMe controllers only, as JSON

exit codes:
  0  saved (or listed)
  1  the record could not be built (a check failed)
  2  usage: wrong arguments, or a path you named does not exist
  4  /sys has no PCI tree, -o cannot be written, or the C core is missing
"""


def register(sub: Any) -> None:
    p = sub.add_parser("save", epilog=EPILOG, help="save PCI device state into a record",
                       description=DESCRIPTION,
                       formatter_class=Formatter)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the record here (atomically); the generation continues the "
                        "record already in FILE when it is from this boot; refuses to "
                        "replace a FILE that is not a record, or a symlink")
    p.add_argument("--force", action="store_true",
                   help="replace FILE even if it is not a handoff record (a symlink is "
                        "replaced, never followed)")
    p.add_argument("--sysfs-root", metavar="DIR",
                   help="a sysfs tree to read instead of /sys (devices under "
                        "DIR/bus/pci/devices, as `lspci -A linux-sysfs -O sysfs.path=DIR/bus/pci`)")
    p.add_argument("--early-log", metavar="FILE",
                   help="a saved dmesg or journalctl -k holding pci=earlydump output")
    p.add_argument("--early-snapshot", metavar="FILE",
                   help="the early collector's snapshot (default /run/handoff/early.bin "
                        "when reading /sys)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    from handoff.cli._select import add_selection

    add_selection(p)
    p.set_defaults(func=run)


def _rows(devices: list[Any]) -> list[list[object]]:
    from handoff.devices import pciids
    from handoff.save import early_source

    names = pciids.default()
    rows: list[list[object]] = []
    for d in devices:
        cfg = str(d.live.size) if not d.live.partial else f"{len(d.live.data)}/{d.live.size}"
        early = early_source(d)
        if d.early is not None and d.early.partial:
            early += f" ({len(d.early.data)}/{d.early.size})"
        rows.append([d.addr, f"{d.ids.vendor:04x}:{d.ids.device:04x}", d.driver,
                     f"{d.ids.class_code:06x}", cfg, early, d.policy,
                     names.vendor_device(d.ids.vendor, d.ids.device)])
    return rows


def run(args: argparse.Namespace) -> int:
    from handoff.cli._select import selection
    from handoff.save import save
    from handoff.sysfs import SysfsTree

    def notify(kind: str, text: str) -> None:
        sys.stderr.write(f"handoff: {kind}: {text}\n")

    sel = selection(args)

    res = save(args.output, SysfsTree(args.sysfs_root) if args.sysfs_root else None,
               force=args.force, notify=notify, early_snapshot=args.early_snapshot,
               early_log=args.early_log, select=sel.matches_device if sel else None)
    generation = res.generation if args.output is not None else None
    if args.json:
        from handoff.cli._output import emit_json

        emit_json("save", {
            "output": args.output,
            "generation": generation,
            "record_size": len(res.record) or None,
            "early_sources": res.early_sources,
            "devices": [
                {"addr": d.addr, "vendor": d.ids.vendor, "device": d.ids.device,
                 "class": d.ids.class_code, "driver": d.driver, "config_size": d.live.size,
                 "config_read": len(d.live.data), "partial": d.live.partial,
                 "early": d.early.source if d.early else "live",
                 "early_partial": d.early.partial if d.early else None,
                 "classes": d.classes, "parent": d.parent, "policy": d.policy}
                for d in res.devices],
            "warnings": res.warnings,
            "notes": res.notes,
        })
        return 0
    if args.output is None:
        from handoff.cli._output import table

        print(table(["ADDR", "IDS", "DRIVER", "CLASS", "CONFIG", "EARLY", "POLICY", "NAME"],
                    _rows(res.devices)))
        size = f", record {len(res.record)} bytes" if res.record else ""
        print(f"{len(res.devices)} device(s){size}; early state from: "
              f"{', '.join(res.early_sources) or 'none (live only)'}")
    else:
        print(f"wrote {args.output}: {len(res.devices)} device(s), generation {generation}, "
              f"{len(res.record)} bytes")
    return 0
