"""lspci's ``-s`` and ``-d`` for every command that lists devices (devices.patterns parses)."""

from __future__ import annotations

import argparse
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


# Re-exported: they live with the grammar, where the restore engine can reach them.
from handoff.devices.patterns import filter_payload, payload_matches  # noqa: F401
