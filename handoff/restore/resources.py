"""Moving a resource the kernel placed, when the policy asks for it (``kernel_owned =
"rescan"``): write the saved BARs, ROM, bus numbers and windows with decoding off, remove the
function (a bridge: its subtree), rescan, and check that the kernel's ``resource`` lines agree
with config space afterwards.

The PCI core reads BARs and windows at enumeration (pci_read_bases()/__pci_read_base(),
pci_read_bridge_bases()) and keeps a valid one where it is; a write through sysfs ``config``
moves the hardware but not the kernel's ``struct resource`` (a driver then maps the old
address: capture-kernel-pci-core.md). remove (pci_stop_and_remove_bus_device()) makes the
kernel forget the function, and rescan (pci_rescan_bus(): pci_scan_child_bus(), then
pci_assign_unassigned_bus_resources()) reads config space again and assigns the BARs anew
(pci_assign_resource(): the first free place in the window; the written address only when
there is no room, pci_revert_fw_address()), so its view and the hardware agree. The
function must be held by no driver now: every one of these writes would change state under
it (pcieport on a capture kernel's root ports, typically), so a bound function is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoff.restore import configplan as C
from handoff.restore import pciregs as R
from handoff.restore.steps import REFUSE, RESCAN_PHASE, ConfigWrite, Rescan, Step

if TYPE_CHECKING:  # pragma: no cover
    from handoff.devices.model import PciDevice, Snapshot
    from handoff.restore.deviceplan import DevicePlan
    from handoff.sysfs.probe import Environment


def below(bridge: str, dev: PciDevice) -> bool:
    """``dev`` sits in the subtree of ``bridge`` (its sysfs path passes through it)."""
    return bridge in dev.path[:-1]


def problem(dp: DevicePlan, current: dict[str, PciDevice], env: Environment) -> str | None:
    """Why the kernel-owned resources of ``dp`` cannot be handed to the kernel, or None."""
    cur = dp.match.current
    assert cur is not None
    if env.config_refusal():
        return f"{env.config_refusal()}: the saved state cannot be written before the rescan"
    if cur.driver:
        return (f"{cur.driver} is bound in the capture kernel: its state is not changed under "
                "it (issue 12); the kernel owns it")
    held = sorted(f"{d.addr} ({d.driver})" for d in current.values()
                  if d.driver and below(dp.addr, d))
    if held:
        return f"drivers are bound below it: {', '.join(held)}"
    caps = env.caps(dp.addr)
    if (caps is not None and not caps.remove) or env.rescan is False:
        return "no sysfs remove or bus/pci/rescan here"
    return None


def plan_rescan(dp: DevicePlan, snap: Snapshot, current: dict[str, PciDevice],
                env: Environment) -> None:
    """Append the rescan-phase steps that hand ``dp``'s differing resources to the kernel,
    or a refusal that says why not. Only when some step reports a resource difference."""
    owned = [s for s in dp.steps if s.resource]
    if not owned:
        return
    why = problem(dp, current, env)
    if why is not None:
        dp.steps.append(Rescan(dp.addr, f"kernel_owned = \"rescan\" refused: {why}",
                               op=REFUSE, resource=True))
        return
    assert dp.match.current is not None
    img = bytearray(dp.match.current.live.data)
    saved = snap.data
    out: list[Step] = []
    cmd = C._get(img, R.PCI_COMMAND, 2)
    decode = R.CMD_IO | R.CMD_MEMORY | R.CMD_MASTER
    if cmd & decode:
        # pci_std_update_resource(): a half-written BAR must not decode; nobody holds the
        # function, so nothing turns off under a driver. The rescan leaves it off: the
        # driver's pci_enable_device() turns decoding on when it binds.
        out.append(C._write(dp.addr, RESCAN_PHASE, img, R.COMMAND_REG, R.PCI_COMMAND,
                            "COMMAND", decode, 0, R.COMMAND_REG.full & ~decode,
                            "decoding and Bus Master off while base addresses change "
                            "(pci_std_update_resource())", transient=True))
    labels = {s.reg for s in owned}
    if "Bus Numbers" in labels:
        out.append(_put(dp.addr, img, saved, R.BUS_NUMBERS, 0x18, "bus numbers"))
    if labels & {"I/O Base/Limit", "I/O Base/Limit Upper 16", "Memory Base/Limit",
                 "Prefetchable Base/Limit", "Prefetchable Base Upper 32",
                 "Prefetchable Limit Upper 32"}:
        out.extend(s for s in C._windows(dp.addr, img, saved, set()))
    for off, name, mask in sorted(R.bar_layout(saved, saved[0x0E] & 0x7F), reverse=True):
        if name not in labels:
            continue
        reg = R.Register(name, off, 4, R.BAR, why="base address")
        sv = C._get(saved, off, 4)
        out.append(C._write(dp.addr, RESCAN_PHASE, img, reg, off, name, mask, sv,
                            0xFFFFFFFF & ~mask, "base address: written and read back "
                            "(pci_restore_config_dword()), then re-read by the kernel",
                            saved=sv, retries=C.BAR_RETRIES if name.startswith("BAR") else 0))
    for s in out:
        s.phase = RESCAN_PHASE
    what = "its subtree" if dp.saved.header_type == 1 else "the function"
    out.append(Rescan(dp.addr, f"kernel_owned = \"rescan\": remove {what}, one "
                      "bus/pci/rescan, so the kernel reads the written state again "
                      "(pci_rescan_bus()); then every BAR must equal its resource start",
                      resource=True))
    dp.steps.extend(out)
    for s in owned:
        s.why = s.why.split("; only remove + rescan")[0] + \
            "; handed to the kernel by remove + rescan (kernel_owned = \"rescan\")"


def _put(addr: str, img: bytearray, saved: bytes, reg: R.Register, off: int,
         why: str) -> ConfigWrite:
    m = reg.rw_mask
    return C._write(addr, RESCAN_PHASE, img, reg, off, reg.name, m, C._get(saved, off, 4),
                    reg.full & ~m, why, saved=C._get(saved, off, 4))


__all__ = ["below", "plan_rescan", "problem"]
