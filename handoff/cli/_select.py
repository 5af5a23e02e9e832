"""lspci's ``-s`` and ``-d`` for every command that lists devices (devices.patterns parses)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

SLOT_HELP = ("only devices in this slot: [[domain:]bus:][dev][.fn], hex, an empty or '*' "
             "part matches any (as lspci -s)")
DEVICE_HELP = ("only devices with these ids: [vendor]:[device][:class[:prog-if]], hex "
               "(as lspci -d; e.g. 8086:, ::0108, 1af4:1041)")


def add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", dest="slot", metavar="SLOT", help=SLOT_HELP)
    p.add_argument("-d", dest="device_ids", metavar="IDS", help=DEVICE_HELP)


def selection(args: argparse.Namespace) -> Any:
    """The ``Selection`` of ``-s``/``-d`` (always true-ish to test with ``bool``)."""
    from handoff.devices.patterns import Selection, parse_device_filter, parse_slot
    from handoff.errors import UsageError

    slot = dev = None
    try:
        if getattr(args, "slot", None) is not None:
            slot = parse_slot(args.slot)
    except ValueError as e:
        raise UsageError(f"-s {e}", hint=SLOT_HELP) from None
    try:
        if getattr(args, "device_ids", None) is not None:
            dev = parse_device_filter(args.device_ids)
    except ValueError as e:
        raise UsageError(f"-d {e}", hint=DEVICE_HELP) from None
    return Selection(slot, dev)


def payload_matches(sel: Any, d: dict[str, Any]) -> bool:
    """``sel`` on a payload device map (payload.cddl pci-device); a device of another bus, or
    one whose ids are not numbers (other buses are opaque to the schema, R20), never matches."""
    ids = d.get("ids")
    if d.get("bus", "pci") != "pci" or not isinstance(ids, dict):
        return False
    vals = [ids.get(k) for k in ("vendor", "device", "class")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return False
    return sel.matches(str(d.get("addr", "")), *vals)


def filter_payload(sel: Any, devices: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in devices if not sel or payload_matches(sel, d)]
