"""The restore plan: for every device, the ordered register writes and resets, and every refusal.

Planning only reads. It works on a copy of each device's current config image and applies
each planned write to that copy, so later steps see the effect of earlier ones and the plan
states exactly what the device should hold afterwards.

Order follows the Linux PCI core:

- pass 1, quiesce: Bus Master off and INTx Disable on, devices below a bridge before the
  bridge (device_shutdown()/pci_device_shutdown() order, which clears Bus Master on kexec);
- pass 2, reset: through sysfs ``reset``; the kernel saves and restores config around it
  (pci_reset_function(): pci_dev_save_and_disable() ... pci_dev_restore()), so quiescing first
  is what keeps Bus Master off afterwards;
- pass 3, restore: upstream bridges before the devices behind them (resume order), and per
  device the order of pci_restore_state(): LTR, the PCIe control registers
  (pci_restore_pcie_state()), AER masks (pci_restore_aer_state()), then the header
  (pci_restore_config_space(): BARs written and read back with retries, COMMAND last), then
  ACS (pci_enable_acs()). MSI/MSI-X are not restored (pci_restore_msi_state() re-enables them
  for a driver that owns vectors; here no driver does yet).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from handoff.devices.model import PciDevice, Snapshot, devices_from_payload
from handoff.restore import pciregs as R
from handoff.restore.environment import Environment
from handoff.restore.match import (
    DeviceMatch,
    Identity,
    IdentityCheck,
    RecordInfo,
    check_identity,
    match_all,
)
from handoff.restore.policy import (
    DEFAULT_POLICY,
    QUIESCE,
    RESET,
    RESTORE_EARLY,
    RESTORE_LIVE,
    SKIP,
    Decision,
    Policy,
)

QUIESCE_PHASE, RESET_PHASE, RESTORE_PHASE = "quiesce", "reset", "restore"
WRITE, DO_RESET, SKIP_OP, REFUSE = "write", "reset", "skip", "refuse"
BAR_RETRIES = 10  # pci_restore_config_space(): pci_restore_config_space_range(pdev, 4, 9, 10, ..)
D3HOT_DELAY_MS = 10  # PCI_PM_D3HOT_WAIT: D3hot -> D0 needs 10 ms before the next access

# pci_restore_pcie_state() order.
_PCIE_ORDER = ("Device Control", "Link Control", "Slot Control", "Root Control",
               "Device Control 2", "Link Control 2", "Slot Control 2")
_AER_ORDER = ("Uncorrectable Error Mask", "Uncorrectable Error Severity",
              "Correctable Error Mask", "Root Error Command")


@dataclass
class Step:
    """One operation on one device. For config writes, the value written is
    ``(current & keep) | (target & mask)``, verified by ``readback & mask == target & mask``."""

    addr: str
    phase: str
    reg: str
    offset: int
    width: int
    op: str  # write, reset, skip, refuse
    why: str
    current: int | None = None  # what the register should hold when the step runs
    saved: int | None = None  # the snapshot's value (restore phase)
    value: int | None = None  # what is written
    mask: int = 0
    target: int = 0
    keep: int = 0
    retries: int = 0
    delay_ms: int = 0
    transient: bool = False  # an intermediate value of a sequence (bridge windows)
    method: str | None = None  # reset method
    detail: str = ""  # decoded change: "Bus Master 1 -> 0, INTx Disable 0 -> 1"
    # filled in by apply
    status: str = "planned"  # planned, verified, unverified, done, refused, skipped
    result: str | None = None
    readback: int | None = None

    @property
    def acts(self) -> bool:
        return self.op in (WRITE, DO_RESET)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"phase": self.phase, "reg": self.reg, "op": self.op}
        if self.op != DO_RESET:
            d.update(off=self.offset, width=self.width)
        for k in ("current", "saved", "value", "readback"):
            v = getattr(self, k)
            if v is not None:
                d[k] = f"{v:#0{2 + 2 * self.width}x}"
        if self.method:
            d["method"] = self.method
        if self.retries:
            d["retries"] = self.retries
        if self.transient:
            d["transient"] = True
        d["why"] = self.why
        if self.detail:
            d["detail"] = self.detail
        d["status"] = self.status
        if self.result:
            d["result"] = self.result
        return d


@dataclass
class DevicePlan:
    saved: PciDevice
    match: DeviceMatch
    decision: Decision
    status: str  # planned, nothing, skip, refused
    why: str
    steps: list[Step] = field(default_factory=list)
    snapshot: str | None = None  # "early" / "live" for restores
    notes: list[str] = field(default_factory=list)
    outcome: str | None = None  # set by apply: done, failed, refused, nothing, skipped

    @property
    def addr(self) -> str:
        return self.saved.addr

    @property
    def depth(self) -> int:
        dev = self.match.current or self.saved
        return sum(1 for c in dev.path[:-1] if _is_addr(c))

    def active(self) -> list[Step]:
        return [s for s in self.steps if s.acts]

    def to_json(self) -> dict[str, Any]:
        ids = self.saved.ids
        d: dict[str, Any] = {
            "addr": self.addr, "ids": ids.short(), "class": f"{ids.class_code:06x}",
            "name": R.class_name(ids.class_code), "driver": self.saved.driver,
            "action": self.decision.action, "decided_by": self.decision.why,
            "match": self.match.status, "status": self.status, "why": self.why}
        if self.match.reasons:
            d["match_reasons"] = self.match.reasons
        if self.snapshot:
            d["snapshot"] = self.snapshot
        if self.notes:
            d["notes"] = self.notes
        if self.outcome:
            d["outcome"] = self.outcome
        d["steps"] = [s.to_json() for s in self.steps]
        return d


@dataclass
class Plan:
    record: dict[str, Any]
    identity: Identity
    check: IdentityCheck
    env: Environment
    policy: Policy
    devices: list[DevicePlan]
    appeared: list[PciDevice]

    def ordered(self) -> Iterator[tuple[DevicePlan, Step]]:
        """Every step in execution order: the three passes of the module docstring."""
        topo = sorted(self.devices, key=lambda d: (d.depth, d.addr))
        for phase, devs in ((QUIESCE_PHASE, list(reversed(topo))), (RESET_PHASE, topo),
                            (RESTORE_PHASE, topo)):
            for d in devs:
                for s in d.steps:
                    if s.phase == phase:
                        yield d, s

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record, "identity": self.identity.to_json(),
            "identity_check": self.check.to_json(), "environment": self.env.to_json(),
            "policy": self.policy.to_json(),
            "devices": [d.to_json() for d in sorted(self.devices,
                                                    key=lambda d: (d.depth, d.addr))],
            "appeared": [{"addr": d.addr, "ids": d.ids.short(),
                          "why": "present now but not in the record: never written"}
                         for d in self.appeared],
        }


def _is_addr(s: str) -> bool:
    return len(s) == 12 and s[4] == ":" and s[7] == ":" and s[10] == "."


def record_summary(rec: RecordInfo) -> dict[str, Any]:
    return {"generation": rec.generation, "kernel_release": rec.kernel_release,
            "boot_id": rec.boot_id, "hostname": getattr(rec, "hostname", None),
            "created_ns": getattr(rec, "created_ns", None)}


def make_plan(rec: Any, current: dict[str, PciDevice], *, policy: Policy = DEFAULT_POLICY,
              identity: Identity | None = None, force: bool = False,
              env: Environment | None = None) -> Plan:
    """Plan the restore of record ``rec`` (a ``handoff.record.Record``) onto the devices
    ``current`` (address -> device read from the tree now, e.g. by apply.scan)."""
    identity = identity or Identity()
    env = env or Environment()
    check = check_identity(rec, identity, force=force)
    saved = devices_from_payload(rec.payload)
    matches, appeared = match_all(saved, current)
    plans = [_plan_device(m, policy, check, env) for m in matches]
    seen: dict[str, int] = {}
    for d in saved:
        seen[d.addr] = seen.get(d.addr, 0) + 1
    for dp in plans:  # a record naming one address twice cannot say which state is right
        if seen[dp.addr] > 1:
            dp.status, dp.steps = "refused", []
            dp.why = f"the record holds {seen[dp.addr]} devices at this address"
    return Plan(record_summary(rec), identity, check, env, policy, plans, appeared)


def _plan_device(m: DeviceMatch, policy: Policy, check: IdentityCheck,
                 env: Environment) -> DevicePlan:
    dec = policy.decide(m.saved, m.saved.policy)
    if not check.ok:
        return DevicePlan(m.saved, m, dec, "refused",
                          "record refused: " + "; ".join(check.problems)
                          + " (--force overrides)")
    if dec.action == SKIP:
        return DevicePlan(m.saved, m, dec, "skip", dec.why)
    if not m.ok:
        return DevicePlan(m.saved, m, dec, "refused", "; ".join(m.reasons))
    assert m.current is not None
    dp = DevicePlan(m.saved, m, dec, "planned", dec.why)
    img = bytearray(m.current.live.data)
    if dec.action in (QUIESCE, RESET):
        dp.steps.append(_quiesce(dp.addr, img))
    if dec.action == RESET:
        dp.steps.append(_reset(dp.addr, m.current, dec))
    if dec.action in (RESTORE_EARLY, RESTORE_LIVE):
        snap = m.saved.early if dec.action == RESTORE_EARLY else m.saved.live
        dp.snapshot = "early" if dec.action == RESTORE_EARLY else "live"
        refusal = _snapshot_problem(snap, dp.snapshot, img)
        if refusal:
            dp.status, dp.why = "refused", refusal
            return dp
        assert snap is not None
        dp.steps.extend(_restore(dp.addr, img, snap, dp.notes))
    if env.config_writes_permitted is False:
        for s in dp.steps:
            if s.op == WRITE:
                s.op, s.status = REFUSE, "refused"
                s.why = (f"kernel lockdown ({env.lockdown or 'active'}) refuses config "
                         "writes (sysfs reset is still allowed)")
    if not dp.active():
        refused = [s for s in dp.steps if s.op == REFUSE]
        dp.status = "refused" if refused else "nothing"
        dp.why = refused[0].why if refused else dp.why + "; nothing to write"
    return dp


def _snapshot_problem(snap: Snapshot | None, which: str | None, img: bytearray) -> str | None:
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
           **kw: Any) -> Step:
    """A write step from the simulated image; applies it to the image."""
    cur = _get(img, off, reg.width)
    value = (cur & keep) | (target & mask)
    detail = R.show_changes(R.changed_fields(reg, cur, value, bar_name=label))
    _set(img, off, reg.width, (cur & ~mask) | (target & mask))
    return Step(addr, phase, label, off, reg.width, WRITE, why, cur, saved, value, mask,
                target & mask, keep, detail=detail, **kw)


def _quiesce(addr: str, img: bytearray) -> Step:
    reg = R.COMMAND_REG
    mask = R.CMD_MASTER | R.CMD_INTX_DISABLE
    cur = _get(img, R.PCI_COMMAND, 2)
    why = "quiesce: stop DMA (Bus Master off) and legacy interrupts (INTx Disable on)"
    if cur & mask == R.CMD_INTX_DISABLE:
        return Step(addr, QUIESCE_PHASE, reg.name, R.PCI_COMMAND, 2, SKIP_OP,
                    "already quiet: Bus Master off, INTx Disable on", cur, status="skipped")
    keep = reg.full & ~mask
    return _write(addr, QUIESCE_PHASE, img, reg, R.PCI_COMMAND, reg.name, mask,
                  R.CMD_INTX_DISABLE, keep, why)


def _reset(addr: str, cur: PciDevice, dec: Decision) -> Step:
    offered = cur.reset_methods
    if dec.reset_method:
        if dec.reset_method not in offered:
            return Step(addr, RESET_PHASE, "reset", 0, 0, REFUSE,
                        f"reset method {dec.reset_method!r} is not offered for this device "
                        f"(reset_method: {' '.join(offered) or 'none'})",
                        method=dec.reset_method, status="refused")
        method = dec.reset_method
    elif offered:
        method = offered[0]  # the kernel lists them in its order of preference
    else:
        return Step(addr, RESET_PHASE, "reset", 0, 0, REFUSE,
                    "the kernel offers no reset method for this device (no reset_method)",
                    status="refused")
    return Step(addr, RESET_PHASE, "reset", 0, 0, DO_RESET,
                f"function reset through sysfs (reset_method = {method})", method=method)


def _restore(addr: str, img: bytearray, snap: Snapshot, notes: list[str]) -> list[Step]:
    saved = snap.data
    now = bytes(img)
    htype = now[0x0E] & 0x7F
    # BARs as the saved image lays them out (which dwords are 64-bit upper halves): the
    # type bits are hardwired, so a device whose type bits changed is caught per BAR below.
    placed = [p for p in R.layout(now) if p.offset + p.reg.width <= len(saved)
              and p.reg.rule != R.BAR]
    placed += [R.Placed(R.Register(name, off, 4, R.BAR, why="base address"), off, None, mask)
               for off, name, mask in R.bar_layout(saved, htype) if off + 4 <= len(img)]
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
            steps.append(Step(addr, RESTORE_PHASE, p.label, p.offset, 4, SKIP_OP,
                              "hardwired type bits differ (saved "
                              f"{R.describe_bar(sv, p.label)}, now "
                              f"{R.describe_bar(cur, p.label)}): not restored", cur, sv,
                              status="skipped"))
            return
        s = _write(addr, RESTORE_PHASE, img, p.reg, p.offset, p.label, m, sv, p.keep_mask,
                   why, saved=sv, **kw)
        if p.reg.rule != R.BAR:
            other = R.changed_fields(p.reg, (cur & ~m) | (sv & m), sv)
            if other:
                s.why += "; left alone: " + R.show_changes(other)
        steps.append(s)

    pm = next((p for p in ok if p.cap and p.cap.short == "PM" and p.reg.name == "PMCSR"), None)
    if pm:
        before = _get(img, pm.offset, 2) & 3
        restore(pm, "power state first (the device must be in D0 before it is restored)")
        if steps and steps[-1].reg == pm.label and steps[-1].op == WRITE and before == 3:
            steps[-1].delay_ms = D3HOT_DELAY_MS
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


def _header(addr: str, img: bytearray, saved: bytes, htype: int, by_label: dict[str, R.Placed],
            restore: Any, handled: set[int], out: list[Step]) -> None:
    """Header steps in pci_restore_config_space() order, appended to ``out`` (``restore``
    appends there too)."""
    bars = [p for p in by_label.values() if p.reg.rule == R.BAR]
    bars.sort(key=lambda p: -p.offset)  # pci_restore_config_space_range() walks downwards
    moving = any(_get(img, p.offset, 4) & p.rw_mask != _get(saved, p.offset, 4) & p.rw_mask
                 for p in bars)
    if htype == 1:
        moving = moving or _windows_differ(img, saved)
    cmd = _get(img, R.PCI_COMMAND, 2)
    decode = R.CMD_IO | R.CMD_MEMORY | R.CMD_MASTER
    if moving and cmd & decode:
        # pci_std_update_resource(): a half-updated BAR must not decode; stop mastering too.
        out.append(_write(addr, RESTORE_PHASE, img, R.COMMAND_REG, R.PCI_COMMAND, "COMMAND",
                          decode, 0, R.COMMAND_REG.full & ~decode,
                          "decoding and Bus Master off while base addresses change "
                          "(pci_std_update_resource()); COMMAND is restored last",
                          transient=True))
    if htype == 1:
        if "Bus Numbers" in by_label:
            restore(by_label["Bus Numbers"], "bus numbers before windows and devices below "
                    "(pci_scan_bridge() assigns buses before resources)")
        out.extend(_windows(addr, img, saved, handled))
    for p in bars:
        retries = BAR_RETRIES if p.reg.name.startswith("BAR") else 0
        restore(p, "base address: written and read back (pci_restore_config_dword())",
                retries=retries)
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


def _windows(addr: str, img: bytearray, saved: bytes, handled: set[int]) -> list[Step]:
    """Bridge windows in the order of setup-bus.c __pci_setup_bridge(): I/O
    (pci_setup_bridge_io()), memory (pci_setup_bridge_mmio()), prefetchable
    (pci_setup_bridge_mmio_pref()); each upper half is parked so the window stays empty
    while it changes."""
    out: list[Step] = []
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


def _left_alone(addr: str, p: R.Placed, cur: int, sv: int) -> Step:
    changes = R.changed_fields(p.reg, cur, sv, bar_name=p.label)
    kinds = {k for _, _, _, k in changes}
    if p.reg.rule == R.DRIVER:
        why = p.reg.why or "left for the driver"
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
    return Step(addr, RESTORE_PHASE, p.label, p.offset, p.reg.width, SKIP_OP, why, cur, sv,
                detail=R.show_changes(changes, "now-saved"), status="skipped")


def _left_alone_all(addr: str, img: bytearray, saved: bytes, placed: list[R.Placed],
                    handled: set[int]) -> list[Step]:
    """Every other difference, with the reason it is not written."""
    out: list[Step] = []
    covered = bytearray(len(img))
    for p in placed:
        covered[p.offset:p.offset + p.reg.width] = b"\x01" * p.reg.width
        if p.offset in handled:
            continue
        cur, sv = _get(img, p.offset, p.reg.width), _get(saved, p.offset, p.reg.width)
        if cur != sv:
            out.append(_left_alone(addr, p, cur, sv))
    n = min(len(img), len(saved))
    for off in range(0, n, 4):
        if all(covered[off:off + 4]) or img[off:off + 4] == saved[off:off + 4]:
            continue
        cap = R.cap_at(bytes(img), off)
        where = f"{cap.name} +{off - cap.offset:#x}" if cap else f"offset {off:#x}"
        why = (R.NOT_RESTORED_WHY.get((cap.extended, cap.id)) if cap else None) or \
            "handoff has no rule for these bytes: not restored"
        cur, sv = _get(img, off, 4), _get(saved, off, 4)
        out.append(Step(addr, RESTORE_PHASE, where, off, 4, SKIP_OP, why, cur, sv,
                        status="skipped"))
    return out


__all__ = [
    "QUIESCE",
    "RESET",
    "RESTORE_EARLY",
    "RESTORE_LIVE",
    "SKIP",
    "DevicePlan",
    "Plan",
    "Step",
    "make_plan",
]
