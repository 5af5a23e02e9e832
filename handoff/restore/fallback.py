"""What restore does instead when the kernel refuses what a device's action needs.

Under kernel lockdown userspace may not write config space or map BARs, but the kernel still
does its own operations on request (measured, lockdown-measured.md): a function reset through
sysfs ``reset``, and ``remove`` + ``rescan``. When a device's config writes or plugin register
steps are refused, its *fallback chain* (policy ``fallback``, else the default for its kind,
docs/lockdown.md) names the replacements in order of preference; the first the kernel can do
for this device is planned, and the plan says what was wanted, what was refused and why this
replacement was chosen.
"""

from __future__ import annotations

from typing import Any

from handoff._slots import Slots
from handoff.devices.model import PciDevice
from handoff.restore.policy import RESET, Decision, is_bridge
from handoff.sysfs.probe import DeviceCaps, Environment

RESCAN, SKIP = "rescan", "skip"
NONE = "none"  # the chain ran out without a skip

RESET_DOES = (
    "the kernel resets the function itself (sysfs reset: pci_reset_function()), which "
    "lockdown allows: the device drops the queues and DMA the dead kernel set up. Bus Master "
    "is off during the reset (pci_dev_save_and_disable()); afterwards the kernel writes back "
    "the config it saved, Bus Master included (pci_dev_restore()), but the device has nothing "
    "left to master with")
RESET_NO_BARS = (
    "a reset does not bring back lost base addresses or windows (the kernel restores the "
    "config it saved just before); fallback = [\"rescan\", ...] lets the kernel assign them")
RESCAN_DOES = (
    "the kernel forgets the device and enumerates it again (remove: "
    "pci_stop_and_remove_bus_device(); rescan: pci_rescan_bus()): it re-reads config space, "
    "turns MSI and MSI-X off (pci_msi_init(), pci_msix_init()), assigns BARs it finds "
    "unassigned (pci_assign_unassigned_bus_resources()) and probes a capture-kernel driver if "
    "one is loaded. It neither resets the device nor clears Bus Master")
DISABLE_DOES = (
    "Bus Master off through sysfs enable (write 1, then 0): enable_store() calls "
    "pci_enable_device() and then pci_disable_device(), whose do_pci_disable_device() clears "
    "PCI_COMMAND_MASTER. Lockdown guards config writes, not this attribute, so the kernel "
    "stops the device's DMA for us; it does not reset the device")
BRIDGE_WHY = (
    "a bridge: removing it removes every device behind it (pci_stop_and_remove_bus_device() "
    "walks the subordinate bus depth-first), and resetting it resets its whole secondary bus; "
    "the capture kernel's enumeration already programmed it")


def default_fallback(dev: PciDevice) -> tuple[tuple[str, ...], str]:
    """The built-in chain for a device kind, and why (docs/lockdown.md, "Defaults")."""
    cls = dev.ids.class_code
    if is_bridge(dev):
        return (SKIP,), "default for bridges: " + BRIDGE_WHY
    if cls >> 16 == 0x06:
        return (SKIP,), "default for host, ISA and other chipset bridges: left alone"
    if cls >> 16 == 0x03:
        return (SKIP,), "default for display controllers: may carry the console"
    # Never ``rescan`` by default: a re-enumeration neither resets the device nor clears Bus
    # Master (Bus Master off comes from the enable toggle, planned beside any choice), and
    # pci_assign_unassigned_bus_resources() may give a removed device's BARs new addresses.
    # Only a policy that asks for it may move a resource (docs/lockdown.md, "Defaults").
    return (RESET, SKIP), ("default for endpoints: a reset if the kernel has one; a "
                           "re-enumeration would not stop the device and may move its BARs")


class Fallback(Slots):
    """Per device: what was wanted, what the kernel refused, and what is done instead."""

    __slots__ = (
        "also",
        "chain",
        "chain_from",
        "instead",
        "method",
        "passed",
        "permitted",
        "refused",
        "wanted",
        "why",
    )
    wanted: str  # the policy action
    refused: list[str]  # "2 config write(s): kernel lockdown (integrity) refuses ..."
    chain: tuple[str, ...]
    chain_from: str  # "rule 2 (line 9)", "policy fallback", "default for bridges: ..."
    instead: str  # reset, rescan, skip or none
    why: str
    method: str | None
    passed: list[str]  # why earlier choices were not possible
    permitted: list[str]  # what the kernel still does here
    also: list[str]  # operations planned besides ``instead`` ("disable": sysfs enable 1, 0)

    def __init__(self, wanted: str, refused: list[str], chain: tuple[str, ...], chain_from: str,
                 instead: str, why: str, method: str | None = None,
                 passed: list[str] | None = None, permitted: list[str] | None = None) -> None:
        self.wanted = wanted
        self.refused = refused
        self.chain = chain
        self.chain_from = chain_from
        self.instead = instead
        self.why = why
        self.method = method
        self.passed = [] if passed is None else passed
        self.permitted = [] if permitted is None else permitted
        self.also: list[str] = []

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"wanted": self.wanted, "refused": self.refused,
                             "permitted": self.permitted, "chain": list(self.chain),
                             "chain_from": self.chain_from, "instead": self.instead}
        if self.method:
            d["method"] = self.method
        if self.passed:
            d["passed"] = self.passed
        if self.also:
            d["also"] = self.also
        d["why"] = self.why
        return d

    def line(self) -> str:
        what = f"{self.instead} ({self.method})" if self.method else self.instead
        what += "".join(f" + {x}" for x in self.also)
        return (f"wanted {self.wanted}; refused: {'; '.join(self.refused)}; kernel permits: "
                f"{', '.join(self.permitted) or 'nothing here'}; instead: {what}")


def disable_problem(dev: PciDevice, caps: DeviceCaps | None) -> str | None:
    """Why the enable toggle cannot clear this device's Bus Master, or None if it can."""
    if is_bridge(dev):
        return "a bridge: turning it off would cut off every device behind it"
    if caps is not None and not caps.enable:
        return "the device has no sysfs enable attribute"
    driver = caps.driver if caps else dev.driver
    if driver:
        return f"{driver} is bound (enable_store() refuses with EBUSY)"
    return None


def permitted(env: Environment, caps: DeviceCaps | None, current: PciDevice) -> list[str]:
    """What the kernel will still do to this device for us, in words."""
    out = []
    methods = caps.resets if caps else tuple(current.reset_methods)
    if methods and env.reset_permitted is not False:
        out.append(f"sysfs reset ({', '.join(methods)})")
    if disable_problem(current, caps) is None:
        out.append("Bus Master off (sysfs enable 1, 0)")
    if (caps is None or caps.remove) and env.rescan is not False:
        out.append("remove + rescan")
    out.append("config reads")
    return out


def choose(dec: Decision, current: PciDevice, env: Environment, refused: list[str], *,
           reset_planned: bool, touches_bars: bool) -> Fallback:
    """Walk the device's chain and take the first fallback the kernel can do for it.
    ``reset_planned``: the action is ``reset`` and its sysfs reset still runs.
    ``touches_bars``: some refused writes were base addresses or windows."""
    if dec.fallback is not None:
        chain, src = dec.fallback, dec.fallback_source or "policy"
    else:
        chain, src = default_fallback(current)
    caps = env.caps(current.addr)
    fb = Fallback(dec.action, refused, chain, src, NONE, "", permitted=permitted(
        env, caps, current))
    for choice in chain:
        if choice == RESET:
            if reset_planned:
                fb.instead, fb.why = RESET, "the reset the policy asked for still runs: " \
                    + RESET_DOES
                return fb
            methods = caps.resets if caps else tuple(current.reset_methods)
            problem = caps.reset_problem() if caps else (
                None if methods else "the kernel offers no reset method (no reset_method)")
            if env.reset_permitted is False:
                problem = "the kernel refuses resets here"
            if problem or not methods:
                fb.passed.append(f"reset: {problem or 'no reset method'}")
                continue
            fb.instead, fb.method = RESET, methods[0]
            fb.why = RESET_DOES + ("; note: " + RESET_NO_BARS if touches_bars else "")
            return fb
        if choice == RESCAN:
            problem = _rescan_problem(current, caps, env, explicit=dec.fallback is not None)
            if problem:
                fb.passed.append(f"rescan: {problem}")
                continue
            fb.instead, fb.why = RESCAN, RESCAN_DOES
            return fb
        if choice == SKIP:
            fb.instead, fb.why = SKIP, f"left as it is ({src})"
            return fb
    fb.why = "no fallback in the chain can run here; the device is left as it is"
    return fb


def _rescan_problem(dev: PciDevice, caps: DeviceCaps | None, env: Environment, *,
                    explicit: bool) -> str | None:
    if is_bridge(dev) and not explicit:
        return BRIDGE_WHY
    driver = caps.driver if caps else dev.driver
    if driver:
        return (f"{driver} is bound: removing the device would tear the driver down under "
                "its users (and the driver already owns it)")
    if caps is not None and not caps.remove:
        return "the device has no sysfs remove attribute"
    if env.rescan is False:
        return "bus/pci/rescan does not exist"
    return None


__all__ = ["DISABLE_DOES", "NONE", "RESCAN", "SKIP", "Fallback", "choose", "default_fallback",
           "disable_problem", "permitted"]
