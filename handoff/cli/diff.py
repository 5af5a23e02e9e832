"""``handoff diff``: a record's saved config space versus a sysfs tree now, decoded."""

from __future__ import annotations

import argparse
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
Compare the config space a record saved (its early and/or live snapshot of each device) with
the devices of a sysfs tree now, and name every difference: header fields, capability
registers and the meaning of their bits (COMMAND: Bus Master 1 -> 0; MSI-X Message Control:
Enable 1 -> 0; BARs as addresses). Devices that vanished, changed identity or appeared are
listed too. Reads only.
"""


EPILOG = """\
examples:
  handoff diff --record /var/lib/handoff/record.bin
  handoff diff --record rec.bin --against early -s 03:00.0
  handoff diff --record rec.bin --json --all

exit codes:
  0  compared (differences are output, not failures)
  1  the record is corrupt (the message names the check and offset)
  2  usage: wrong arguments, or a path you named does not exist
  3  no handoff record in --record
  4  --sysfs-root has no bus/pci/devices, or a file cannot be read
"""


def register(sub: Any) -> None:
    p = sub.add_parser("diff", epilog=EPILOG, help="compare a record with the devices now",
                       description=DESCRIPTION,
                       formatter_class=Formatter)
    p.add_argument("--record", metavar="SRC",
                   help="record source (default /handoff/record.note)")
    p.add_argument("--sysfs-root", metavar="DIR", default="/sys",
                   help="sysfs tree to compare with (default /sys)")
    p.add_argument("--against", choices=("early", "live", "both"), default="both",
                   help="which saved snapshot to compare (default both)")
    p.add_argument("--all", action="store_true", help="also list devices without differences")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    from handoff.cli._select import add_selection

    add_selection(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from handoff.cli._select import filter_payload, selection
    from handoff.diff import diff_record, render
    from handoff.errors import EnvironmentProblem
    from handoff.restore.apply import scan
    from handoff.restore.engine import load_record
    from handoff.sysfs import SysfsTree

    sel = selection(args)
    rec, notes = load_record(args.record)
    for n in notes:
        sys.stderr.write(f"handoff: note: {n}\n")
    tree = SysfsTree(Path(args.sysfs_root))
    if not tree.pci_devices.is_dir():
        raise EnvironmentProblem(f"{tree.pci_devices} is not a directory",
                                 hint="--sysfs-root takes the directory holding bus/pci")
    current = scan(tree)
    payload = rec.payload
    if sel:  # lspci's -s/-d: compare only these devices, saved and present
        current = {a: d for a, d in current.items() if sel.matches_device(d)}
        payload = dict(payload, devices=filter_payload(sel, rec.devices))
    which = ("early", "live") if args.against == "both" else (args.against,)
    results = {w: diff_record(payload, current, w) for w in which}
    if args.json:
        from handoff.cli._output import emit_json

        emit_json("diff", {"record": {"generation": rec.generation,
                                      "kernel_release": rec.kernel_release,
                                      "boot_id": rec.boot_id},
                           "against": {w: [d.to_json() for d in r]
                                       for w, r in results.items()}})
    else:
        print("\n\n".join(render(r, w, show_same=args.all) for w, r in results.items()))
    return 0
