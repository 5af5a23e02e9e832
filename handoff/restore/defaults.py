"""The built-in default actions (docs/policy.md, "Default policy"), without the policy engine.

``handoff save`` records each device's default action; importing the full policy module
(TOML, rule classes, patterns) for that would cost every save ~10 ms of start-up. The
policy module wraps these in its ``Decision``s, so both always agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable

    from handoff.devices.model import PciDevice

QUIESCE, RESET, RESTORE_EARLY, RESTORE_LIVE, SKIP = (
    "quiesce", "reset", "restore-early", "restore-live", "skip")
ACTIONS = (QUIESCE, RESET, RESTORE_EARLY, RESTORE_LIVE, SKIP)


def is_bridge(dev: PciDevice) -> bool:
    """A PCI-to-PCI (or subtractive/semi-transparent) bridge: devices sit behind it."""
    return dev.header_type == 1 or dev.ids.class_code >> 8 in (0x0604, 0x0609)


def bus_master(dev: PciDevice) -> bool | None:
    """Whether the live COMMAND register has Bus Master on (None: not read)."""
    data = dev.live.data
    return bool(data[4] & 0x04) if len(data) > 4 else None


def default_rule(dev: PciDevice, blacklist: Iterable[str] = ()) -> tuple[str, str]:
    """(action, why) for ``dev`` by the built-in defaults; the first match wins."""
    cls = dev.ids.class_code
    restore = RESTORE_EARLY if dev.early is not None else RESTORE_LIVE
    snap = "early" if dev.early is not None else "live (no early snapshot in the record)"
    if is_bridge(dev):
        return restore, (f"PCI-to-PCI bridge: bus numbers and windows route everything "
                         f"below it; restore the {snap} state")
    if dev.driver and dev.driver in set(blacklist):
        return QUIESCE, (f"its driver {dev.driver} is blacklisted in the capture kernel: "
                         "nothing will drive it, stop its DMA and INTx")
    if cls >> 16 == 0x01:
        return restore, (f"storage controller: the dump may be written through it; "
                         f"restore the {snap} state")
    if cls >> 16 == 0x06:
        return SKIP, "host, ISA or other chipset bridge: left alone"
    if cls >> 16 == 0x03:
        return SKIP, "display controller: may carry the console, left alone"
    bm = bus_master(dev)
    if bm or bm is None:
        return QUIESCE, ("bus-mastering device with no driver yet in the capture kernel: "
                         "stop its DMA and INTx until a driver takes it")
    return SKIP, "not bus-mastering: nothing to stop"


def default_action(dev: PciDevice, *, blacklist: Iterable[str] = ()) -> str:
    """The default action for ``dev`` (what ``handoff save`` records)."""
    return default_rule(dev, blacklist)[0]
