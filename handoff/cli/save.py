"""``handoff save``: read the PCI devices (the real /sys by default) and write a record."""

from __future__ import annotations

import argparse
import os
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


def register(sub: Any) -> None:
    p = sub.add_parser("save", help="save PCI device state into a record",
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
    p.set_defaults(func=run)


def _rows(devices: list[Any]) -> list[list[object]]:
    from handoff.save import early_source

    rows: list[list[object]] = []
    for d in devices:
        cfg = str(d.live.size) if not d.live.partial else f"{len(d.live.data)}/{d.live.size}"
        early = early_source(d)
        if d.early is not None and d.early.partial:
            early += f" ({len(d.early.data)}/{d.early.size})"
        rows.append([d.addr, f"{d.ids.vendor:04x}:{d.ids.device:04x}", d.driver,
                     f"{d.ids.class_code:06x}", cfg, early, d.policy])
    return rows


def run(args: argparse.Namespace) -> int:
    from handoff.errors import EnvironmentProblem
    from handoff.save import (
        build_payload,
        check_output,
        collect_devices,
        previous_generation,
        write_atomic,
    )
    from handoff.sysfs import SysfsTree

    tree = SysfsTree(args.sysfs_root) if args.sysfs_root else SysfsTree()
    if args.sysfs_root and not os.path.isdir(tree.pci_devices_dir):
        raise EnvironmentProblem(
            f"{tree.pci_devices_dir} is not a directory",
            hint="--sysfs-root takes the directory that holds bus/pci/devices (like /sys)")
    if args.output is not None:
        check_output(args.output, force=args.force)  # before the walk: a bad -o costs nothing
    from handoff.identity import IdentitySource

    producer = IdentitySource().producer()
    res = collect_devices(tree, early_snapshot=args.early_snapshot, early_log=args.early_log,
                          boot_id=producer.boot_id)
    for w in res.warnings:
        sys.stderr.write(f"handoff: warning: {w}\n")
    for n in res.notes:
        sys.stderr.write(f"handoff: note: {n}\n")

    record = b""
    generation = 0
    if args.output is not None:
        generation = previous_generation(args.output, producer.boot_id) + 1
    try:
        from handoff.record import encode

        record = encode(build_payload(res.devices), producer, generation or 1)
    except ImportError as e:
        if args.output is not None:
            raise EnvironmentProblem(
                f"the record encoder (C core) is not available: {e}",
                hint="build it with `pip install -e .` in the source tree") from None
        sys.stderr.write(f"handoff: note: record size unknown, the C core is not built ({e})\n")
    if args.output is not None:
        write_atomic(args.output, record, force=args.force)

    if args.json:
        from handoff.cli._output import emit_json

        emit_json("save", {
            "output": args.output,
            "generation": generation or None,
            "record_size": len(record) or None,
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

        print(table(["ADDR", "IDS", "DRIVER", "CLASS", "CONFIG", "EARLY", "POLICY"],
                    _rows(res.devices)))
        size = f", record {len(record)} bytes" if record else ""
        print(f"{len(res.devices)} device(s){size}; early state from: "
              f"{', '.join(res.early_sources) or 'none (live only)'}")
    else:
        print(f"wrote {args.output}: {len(res.devices)} device(s), generation {generation}, "
              f"{len(record)} bytes")
    return 0
