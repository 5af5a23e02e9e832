"""``handoff plugins``: which device plugins are installed, where each came from, what it
matches, which hooks it implements, and (with --sysfs-root) which devices of a tree it takes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
List the device plugins: the built-ins (nvme, virtio, e1000, msix) and those installed by
other distributions through the "handoff.plugins" entry-point group. For each: version, origin
(built-in, or distribution and entry point), the devices it matches (vendor:device ids, class
codes) and the hooks it implements (save, quiesce, reset, restore, verify).

With --sysfs-root, also read the PCI devices of that tree and show which plugins take each
device, and why a matching plugin declined one. Plugins reach registers through sysfs
resourceN, which needs the device unbound (or its driver not yet loaded) and no kernel
lockdown; devices with a bound driver are marked.

A plugin that fails to load is listed under "problems" and the others still load.
docs/plugins.md explains how to write one.
"""

EPILOG = """\
examples:
  handoff plugins
  handoff plugins --sysfs-root /sys -d 1af4:      # which plugin takes each virtio device
  handoff plugins --json | jq '.plugins[].name'

exit codes:
  0  every plugin entry point loaded
  1  at least one plugin entry point failed to load (listed on stderr / under "problems")
  2  usage error
  4  --sysfs-root has no bus/pci/devices
"""

_MAX_IDS_SHOWN = 4


def register(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list device plugins and what they match",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=Formatter)
    p.add_argument("--sysfs-root", metavar="DIR",
                   help="also show which devices of this sysfs tree each plugin takes "
                        "(e.g. /sys)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    from handoff.cli._select import add_selection

    add_selection(p)
    p.set_defaults(func=run)


def _matches_text(info: Any) -> str:
    m = info.plugin.match
    if m.any_device:
        text = "any device"
    else:
        ids = [str(r) for r in m.ids]
        shown = ids if len(ids) <= _MAX_IDS_SHOWN else ids[:_MAX_IDS_SHOWN] + [
            f"... ({len(ids)} ids)"]
        text = ", ".join(shown + [f"class {r}" for r in m.classes]
                         + [f"capability {c:#04x}" for c in m.caps])
    if info.plugin.requires:
        text += f"; needs {info.plugin.requires}"
    return text


def _devices(root: str, registry: Any, sel: Any = None) -> list[dict[str, Any]]:
    from pathlib import Path

    from handoff.devices.pci import collect
    from handoff.sysfs import SysfsTree

    coll = collect(SysfsTree(Path(root)))
    out = []
    for dev in coll.devices:
        if sel and not sel.matches_device(dev):
            continue
        taken = registry.select(dev)
        d: dict[str, Any] = {
            "addr": dev.addr, "ids": dev.ids.short(), "class": f"{dev.ids.class_code:06x}",
            "driver": dev.driver, "plugins": [i.name for i in taken.accepted],
            "declined": taken.declined, "errors": taken.errors}
        if dev.driver and taken.accepted:
            d["note"] = (f"bound to {dev.driver}: register steps are refused until it is "
                         "unbound (or run before drivers load)")
        out.append(d)
    return out


def run(args: argparse.Namespace) -> int:
    from handoff.cli._output import emit_json, table
    from handoff.cli._select import selection
    from handoff.errors import EXIT_INVALID, EXIT_OK, UsageError
    from handoff.plugins import registry as reg_mod

    sel = selection(args)
    if sel and not args.sysfs_root:
        raise UsageError("-s and -d select devices of a tree: they need --sysfs-root",
                         hint="e.g. handoff plugins --sysfs-root /sys -d 1af4:")
    registry = reg_mod.load()
    devices = _devices(args.sysfs_root, registry, sel) if args.sysfs_root else None
    rc = EXIT_INVALID if registry.problems else EXIT_OK
    if args.json:
        doc: dict[str, Any] = {
            "group": reg_mod.GROUP,
            "plugins": [i.to_json() for i in registry.plugins],
            "problems": [p.to_json() for p in registry.problems]}
        if devices is not None:
            doc["sysfs_root"] = args.sysfs_root
            doc["devices"] = devices
        emit_json("plugins", doc)
        return rc
    n_ep = sum(1 for i in registry.plugins if i.source == reg_mod.ENTRY_POINT)
    print(f"{len(registry.plugins)} plugin(s): {len(registry.plugins) - n_ep} built-in, "
          f"{n_ep} from entry points ({reg_mod.GROUP})")
    rows = [(i.name, i.plugin.version, i.origin(), " ".join(i.plugin.hooks()),
             _matches_text(i)) for i in registry.plugins]
    print(table(("PLUGIN", "VERSION", "FROM", "HOOKS", "MATCHES"), rows))
    if devices is not None:
        print()
        taken = [d for d in devices if d["plugins"] or d["declined"] or d["errors"]]
        print(f"{args.sysfs_root}: {len(devices)} device(s), {len(taken)} matched by a plugin")
        drows = []
        for d in taken:
            notes = [f"{n} declined: {why}" for n, why in d["declined"].items()]
            notes += [f"{n}: {err}" for n, err in d["errors"].items()]
            if d.get("note"):
                notes.insert(0, d["note"])
            drows.append((d["addr"], d["ids"], d["class"], d["driver"],
                          ", ".join(d["plugins"]) or None, "; ".join(notes) or None))
        print(table(("DEVICE", "IDS", "CLASS", "DRIVER", "PLUGINS", "NOTES"), drows))
    for p in registry.problems:
        sys.stderr.write(f"handoff: problem: {p}\n")
    if registry.problems:
        sys.stderr.write("handoff: hint: the other plugins loaded; fix or uninstall the "
                         "distribution named above (docs/plugins.md)\n")
    return rc
