"""Config-space steps of one device: the quiesce write and the register-by-register restore.

Planning only reads. It works on a copy of the device's current config image and applies each
planned write to that copy, so later steps see the effect of earlier ones and the plan states
exactly what the device should hold afterwards.

Per device the order is that of pci_restore_state() (drivers/pci/pci.c): PM power state, LTR,
the PCIe control registers (pci_restore_pcie_state()), AER masks (pci_restore_aer_state()),
then the header (pci_restore_config_space(): BARs written and read back with retries, COMMAND
last), then ACS (pci_enable_acs()). Bridge windows follow __pci_setup_bridge() in
drivers/pci/setup-bus.c. MSI/MSI-X are not restored (pci_restore_msi_state() re-enables them
for a driver that owns vectors; here no driver does yet).
"""

from __future__ import annotations

from typing import Any

from handoff.devices.model import Snapshot
from handoff.restore import owners as O
from handoff.restore import pciregs as R
from handoff.restore.steps import QUIESCE_PHASE, RESTORE_PHASE, ConfigWrite, LeftAlone, Step

BAR_RETRIES = 10  # pci_restore_config_space(): pci_restore_config_space_range(pdev, 4, 9, 10, ..)
D3HOT_DELAY_MS = 10  # PCI_PM_D3HOT_WAIT: D3hot -> D0 needs 10 ms before the next access

# pci_restore_pcie_state() order.
_PCIE_ORDER = ("Device Control", "Link Control", "Slot Control", "Root Control",
               "Device Control 2", "Link Control 2", "Slot Control 2")
_AER_ORDER = ("Uncorrectable Error Mask", "Uncorrectable Error Severity",
              "Correctable Error Mask", "Root Error Command")


def snapshot_problem(snap: Snapshot | None, which: str | None, img: bytearray) -> str | None:
    if snap is None:
        return (f"the record has no {which} snapshot of this device "
                "(use restore-live or another action in the policy)")
    if len(snap.data) < 0x40:
        return f"the {which} snapshot holds only {len(snap.data)} bytes: too little to restore"
    if snap.data[0x0E] & 0x7F != img[0x0E] & 0x7F:
        return (f"header type changed: saved {snap.data[0x0E] & 0x7F}, now "
                f"{img[0x0E] & 0x7F}")
    if img[0x0E] & 0x7F not in (0, 1):
        return "CardBus bridges (header type 2) are not restored"
    return None


def _get(img: bytes | bytearray, off: int, width: int) -> int:
    return int.from_bytes(img[off:off + width], "little")


def _set(img: bytearray, off: int, width: int, value: int) -> None:
    img[off:off + width] = value.to_bytes(width, "little")


def _write(addr: str, phase: str, img: bytearray, reg: R.Register, off: int, label: str,
           mask: int, target: int, keep: int, why: str, saved: int | None = None,
           **kw: Any) -> ConfigWrite:
    """A write step from the simulated image; applies it to the image."""
    cur = _get(img, off, reg.width)
    value = (cur & keep) | (target & mask)
    detail = R.show_changes(R.changed_fields(reg, cur, value, bar_name=label))
    _set(img, off, reg.width, (cur & ~mask) | (target & mask))
    return ConfigWrite(addr, phase, label, off, reg.width, why, cur, saved, value, mask,
                       target & mask, keep, detail=detail, **kw)


def quiesce_step(addr: str, img: bytearray) -> ConfigWrite | LeftAlone:
    reg = R.COMMAND_REG
    mask = R.CMD_MASTER | R.CMD_INTX_DISABLE
    cur = _get(img, R.PCI_COMMAND, 2)
    why = "quiesce: stop DMA (Bus Master off) and legacy interrupts (INTx Disable on)"
    if cur & mask == R.CMD_INTX_DISABLE:
        return LeftAlone(addr, QUIESCE_PHASE, reg.name, R.PCI_COMMAND, 2,
                         "already quiet: Bus Master off, INTx Disable on", cur)
    keep = reg.full & ~mask
    return _write(addr, QUIESCE_PHASE, img, reg, R.PCI_COMMAND, reg.name, mask,
                  R.CMD_INTX_DISABLE, keep, why)


def restore_steps(addr: str, img: bytearray, snap: Snapshot, notes: list[str]) -> list[Step]:
    saved = snap.data
    htype = img[0x0E] & 0x7F
    ok = _restorable(bytes(img), snap, htype, notes)
    by_label = {p.label: p for p in ok}
    steps: list[Step] = []
    handled: set[int] = set()

    def restore(p: R.Placed, why: str, **kw: Any) -> None:
        handled.add(p.offset)
        cur, sv = _get(img, p.offset, p.reg.width), _get(saved, p.offset, p.reg.width)
        m = p.rw_mask
        if cur & m == sv & m:
            if cur != sv:
                steps.append(_left_alone(addr, p, cur, sv))
            return
        if p.reg.rule == R.BAR and (cur ^ sv) & ~m & p.reg.full:
            steps.append(LeftAlone(addr, RESTORE_PHASE, p.label, p.offset, 4,
                                   "hardwired type bits differ (saved "
                                   f"{R.describe_bar(sv, p.label)}, now "
                                   f"{R.describe_bar(cur, p.label)}): not restored", cur, sv))
            return
        # Only fields no kernel component owns are written (owners.py): the rest is
        # reported, and a resource the kernel placed is moved only by remove + rescan.
        kmask = O.kernel_mask(p)
        if (cur ^ sv) & m & kmask:
            steps.append(kernel_owned(addr, p, cur, sv, (cur ^ sv) & m & kmask))
        free = m & ~kmask
        if not (cur ^ sv) & free:
            return
        s = _write(addr, RESTORE_PHASE, img, p.reg, p.offset, p.label, free, sv,
                   p.keep_mask | kmask, why, saved=sv, **kw)
        if p.reg.rule != R.BAR:
            other = R.changed_fields(p.reg, (cur & ~free) | (sv & free), sv)
            if other:
                s.why += "; left alone: " + R.show_changes(other)
        steps.append(s)

    pm = next((p for p in ok if p.cap and p.cap.short == "PM" and p.reg.name == "PMCSR"), None)
    if pm:
        before = _get(img, pm.offset, 2) & 3
        restore(pm, "power state first (the device must be in D0 before it is restored)")
        last = steps[-1] if steps else None
        if isinstance(last, ConfigWrite) and last.reg == pm.label and before == 3:
            last.delay_ms = D3HOT_DELAY_MS
    for p in ok:
        if p.cap and p.cap.short == "LTR" and p.reg.rule == R.RESTORE:
            restore(p, "pci_restore_ltr_state()")
    for labels, why in (((f"PCIe {n}" for n in _PCIE_ORDER), "pci_restore_pcie_state()"),
                        ((f"AER {n}" for n in _AER_ORDER), "pci_restore_aer_state()")):
        for label in labels:
            if label in by_label:
                restore(by_label[label], why)
    _header(addr, img, saved, htype, by_label, restore, handled, steps)
    if "ACS Control" in by_label:
        restore(by_label["ACS Control"], "pci_enable_acs() after the config space")
    handled.add(R.PCI_COMMAND)
    steps.extend(_left_alone_all(addr, img, saved, ok, handled))
    return steps


def _restorable(now: bytes, snap: Snapshot, htype: int, notes: list[str]) -> list[R.Placed]:
    """The registers restore may write, where the saved snapshot holds them and has the same
    capability at the same place; what it leaves out for either reason goes into ``notes``."""
    saved = snap.data
    # BARs as the saved image lays them out (which dwords are 64-bit upper halves): the
    # type bits are hardwired, so a device whose type bits changed is caught per BAR below.
    placed = [p for p in R.layout(now) if p.offset + p.reg.width <= len(saved)
              and p.reg.rule != R.BAR]
    placed += [R.Placed(R.Register(name, off, 4, R.BAR, why="base address"), off, None, mask)
               for off, name, mask in R.bar_layout(saved, htype) if off + 4 <= len(now)]
    placed.sort(key=lambda p: p.offset)
    beyond = [p for p in R.layout(now) if p.offset + p.reg.width > len(saved)
              and p.reg.rule in (R.RESTORE, R.BAR, R.WINDOW)]
    if beyond:
        notes.append(f"{len(beyond)} restorable register(s) lie beyond the {len(saved)} saved "
                     f"bytes ({snap.partial or 'partial snapshot'}) and are left alone")
    saved_caps = {(c.extended, c.id, c.offset) for c in R.find_caps(saved)}
    ok: list[R.Placed] = []
    for p in placed:
        if p.cap is not None and (p.cap.extended, p.cap.id, p.cap.offset) not in saved_caps:
            msg = (f"{p.cap.name} at {p.cap.offset:#x} is not in the saved snapshot at the "
                   "same place: not restored")
            if msg not in notes:
                notes.append(msg)
            continue
        ok.append(p)
    return ok


def _header(addr: str, img: bytearray, saved: bytes, htype: int, by_label: dict[str, R.Placed],
            restore: Any, handled: set[int], out: list[Step]) -> None:
    """Header steps in pci_restore_config_space() order, appended to ``out`` (``restore``
    appends there too)."""
    bars = [p for p in by_label.values() if p.reg.rule == R.BAR]
    bars.sort(key=lambda p: -p.offset)  # pci_restore_config_space_range() walks downwards
    if htype == 1:
        if "Bus Numbers" in by_label:
            restore(by_label["Bus Numbers"], "bus numbers")
        for p in sorted((p for p in by_label.values() if p.reg.rule == R.WINDOW),
                        key=lambda p: p.offset):
            restore(p, "bridge window")
    for p in bars:
        restore(p, "base address")
    for name in ("Bridge Control", "Interrupt Line", "Latency Timer", "Cache Line Size"):
        if name in by_label:
            restore(by_label[name], "pci_restore_config_space()")
    restore(by_label["COMMAND"], "COMMAND last, after the base addresses "
            "(pci_restore_config_space())")


def _windows_differ(img: bytearray, saved: bytes) -> bool:
    for off, w, m in ((0x1C, 2, 0xF0F0), (0x20, 4, 0xFFF0FFF0), (0x24, 4, 0xFFF0FFF0),
                      (0x28, 4, 0xFFFFFFFF), (0x2C, 4, 0xFFFFFFFF), (0x30, 4, 0xFFFFFFFF)):
        if _get(img, off, w) & m != _get(saved, off, w) & m:
            return True
    return False


def _windows(addr: str, img: bytearray, saved: bytes, handled: set[int]) -> list[ConfigWrite]:
    """Bridge windows in the order of setup-bus.c __pci_setup_bridge(): I/O
    (pci_setup_bridge_io()), memory (pci_setup_bridge_mmio()), prefetchable
    (pci_setup_bridge_mmio_pref()); each upper half is parked so the window stays empty
    while it changes."""
    out: list[ConfigWrite] = []
    handled.update((0x1C, 0x20, 0x24, 0x28, 0x2C, 0x30))

    def put(reg: R.Register, off: int, value: int, why: str, transient: bool = False,
            mask: int | None = None) -> None:
        m = reg.rw_mask if mask is None else mask
        if _get(img, off, reg.width) & m == value & m:
            return
        out.append(_write(addr, RESTORE_PHASE, img, reg, off, reg.name, m, value,
                          reg.full & ~m & ~reg.w1c_mask & ~reg.action_mask, why,
                          saved=None if transient else _get(saved, off, reg.width),
                          transient=transient))

    sv_io, sv_ioup = _get(saved, 0x1C, 2), _get(saved, 0x30, 4)
    io32 = sv_io & 0xF == 1
    if (_get(img, 0x1C, 2) & 0xF0F0 != sv_io & 0xF0F0
            or (io32 and _get(img, 0x30, 4) != sv_ioup)):
        if io32:
            put(R.IO_UPPER, 0x30, 0x0000FFFF, "pci_setup_bridge_io(): upper 16 bits parked "
                "(base above limit) while the window changes", True)
        put(R.IO_BASE_LIMIT, 0x1C, sv_io, "I/O window (pci_setup_bridge_io())")
        if io32:
            put(R.IO_UPPER, 0x30, sv_ioup, "I/O window upper 16 bits")
    put(R.MEM_BASE_LIMIT, 0x20, _get(saved, 0x20, 4), "memory window "
        "(pci_setup_bridge_mmio())")
    sv_pf, sv_bu, sv_lu = _get(saved, 0x24, 4), _get(saved, 0x28, 4), _get(saved, 0x2C, 4)
    pf64 = sv_pf & 0xF == 1
    if (_get(img, 0x24, 4) & 0xFFF0FFF0 != sv_pf & 0xFFF0FFF0
            or (pf64 and (_get(img, 0x28, 4), _get(img, 0x2C, 4)) != (sv_bu, sv_lu))):
        if pf64:
            put(R.PREF_LIMIT_UPPER, 0x2C, 0, "pci_setup_bridge_mmio_pref(): upper limit "
                "cleared first, which disables the window while it changes", True)
        put(R.PREF_BASE_LIMIT, 0x24, sv_pf, "prefetchable window")
        if pf64:
            put(R.PREF_BASE_UPPER, 0x28, sv_bu, "prefetchable window upper 32 bits")
            put(R.PREF_LIMIT_UPPER, 0x2C, sv_lu, "prefetchable window upper 32 bits")
    return out


def kernel_owned(addr: str, p: R.Placed, cur: int, sv: int, bits: int) -> LeftAlone:
    """A difference in fields a kernel component owns: reported, never written here."""
    owned = O.owners_of(p, bits)
    names = {n for n, _ in owned}
    changes = [c for c in R.changed_fields(p.reg, cur, sv, bar_name=p.label)
               if p.reg.rule == R.BAR or not p.reg.fields or c[0] in names]
    why = "; ".join(dict.fromkeys(o.why() for _, o in owned))
    resource = any(o.kind == O.RESOURCE for _, o in owned)
    if resource:
        why += ("; only remove + rescan moves it (policy kernel_owned = \"rescan\", "
                "docs/policy.md)")
    return LeftAlone(addr, RESTORE_PHASE, p.label, p.offset, p.reg.width, why, cur, sv,
                     detail=R.show_changes(changes, "now-saved"),
                     owner=owned[0][1].who if owned else O.CORE, resource=resource)


def _left_alone(addr: str, p: R.Placed, cur: int, sv: int) -> LeftAlone:
    changes = R.changed_fields(p.reg, cur, sv, bar_name=p.label)
    kinds = {k for _, _, _, k in changes}
    owner = O.owner(p.label)
    if p.reg.rule == R.DRIVER:
        why = p.reg.why or "left for the driver"
        if owner is not None and owner.kernel:
            why = f"{owner.why()}: {why}"
    elif p.reg.rule in (R.NEVER, R.NORULE):
        why = p.reg.why or "never written"
    elif kinds <= {R.W1C}:
        why = "status bits (write-1-to-clear): never written blindly"
    elif kinds <= {R.RO, R.HWINIT}:
        why = "read-only bits"
    else:
        names = {c[0] for c in changes}
        whys = sorted({f.why for f in p.reg.fields if f.why and f.name in names})
        why = "not restored: " + ("; ".join(whys) or "by rule")
    return LeftAlone(addr, RESTORE_PHASE, p.label, p.offset, p.reg.width, why, cur, sv,
                     detail=R.show_changes(changes, "now-saved"),
                     owner=owner.who if owner is not None and owner.kernel and
                     p.reg.rule == R.DRIVER else None)


def _left_alone_all(addr: str, img: bytearray, saved: bytes, placed: list[R.Placed],
                    handled: set[int]) -> list[LeftAlone]:
    """Every other difference, with the reason it is not written."""
    out: list[LeftAlone] = []
    covered = bytearray(len(img))
    for p in placed:
        covered[p.offset:p.offset + p.reg.width] = b"\x01" * p.reg.width
        if p.offset in handled:
            continue
        cur, sv = _get(img, p.offset, p.reg.width), _get(saved, p.offset, p.reg.width)
        if cur != sv:
            out.append(_left_alone(addr, p, cur, sv))
    n = min(len(img), len(saved))
    for off in _differing_dwords(img, saved, n):
        if all(covered[off:off + 4]):
            continue
        cap = R.cap_at(bytes(img), off)
        where = f"{cap.name} +{off - cap.offset:#x}" if cap else f"offset {off:#x}"
        why = (R.NOT_RESTORED_WHY.get((cap.extended, cap.id)) if cap else None) or \
            "handoff has no rule for these bytes: not restored"
        cur, sv = _get(img, off, 4), _get(saved, off, 4)
        out.append(LeftAlone(addr, RESTORE_PHASE, where, off, 4, why, cur, sv))
    return out


def _differing_dwords(a: bytes | bytearray, b: bytes | bytearray, n: int) -> list[int]:
    """Offsets (ascending) of the dwords below ``n`` where ``a`` and ``b`` differ. Blocks
    are compared whole first: most of a 4 KiB image is the same in both."""
    out: list[int] = []
    block = 256
    for start in range(0, n, block):
        if a[start:start + block] == b[start:start + block]:
            continue  # every dword in it is equal too
        for off in range(start, min(start + block, n), 4):
            if a[off:off + 4] != b[off:off + 4]:
                out.append(off)
    return out
