"""Carry out a restore plan through a device-access seam: config writes verified by read-back,
resets and remove + rescan through sysfs, device-plugin phases in between (steps.PASSES), and
every failure turned into a refused, reported step.

The engine never opens files itself: :class:`~handoff.sysfs.ops.SysfsAccess` does, and only
inside the tree it was given (resolved paths are checked, addresses must be PCI addresses,
files are never created). Tests pass a ConfigSpace subclass to simulate EPERM and other failures, and a
:class:`~handoff.restore.pluginpass.PluginRuntime` whose ``bars_for`` puts register models
behind the plugins.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from handoff.devices.model import PciDevice
from handoff.devices.pci import read_device
from handoff.errors import HandoffError
from handoff.restore import pciregs as R
from handoff.restore.plan import DevicePlan, Plan
from handoff.restore.pluginpass import PluginRuntime, run_phase
from handoff.restore.steps import (
    CONFIG,
    P_QUIESCE,
    P_RESTORE,
    PASSES,
    QUIESCE_PHASE,
    REFUSE,
    RESCAN_PHASE,
    RESTORE_PHASE,
    SKIP_OP,
    ConfigWrite,
    Disable,
    Rescan,
    Reset,
    Step,
)
from handoff.sysfs import ConfigAccessError, SysfsTree
from handoff.sysfs.ops import ConfigPort, DeviceAccess, OutsideTree, SysfsAccess
from handoff.sysfs.paths import ADDR as _ADDR
from handoff.sysfs.resource import Resource


def scan(tree: SysfsTree) -> dict[str, PciDevice]:
    """The devices in the tree now (read only), by address."""
    out: dict[str, PciDevice] = {}
    for addr in tree.pci_addresses():
        if not _ADDR.fullmatch(addr):
            continue
        try:
            out[addr] = read_device(tree, addr, privileged=True)
        except OSError:
            continue  # vanished while we looked: the record's device will be "vanished"
    return out


class _Run:
    def __init__(self, plan: Plan, access: DeviceAccess, sleep: Callable[[float], None]):
        self.plan, self.access, self.sleep = plan, access, sleep
        self.failed: dict[str, str] = {}  # addr -> why its remaining steps are not attempted
        # addr -> why nothing may turn the device back on (config and plugin restore): its
        # plugin quiesce did not end ok, so Bus Master must not come back on.
        self.held: dict[str, str] = {}
        self.rescanned: dict[str, str] = {}  # the kernel re-enumerated it: it owns it now
        self.eperm: str | None = None

    def step(self, dev: DevicePlan, s: Step) -> None:
        if s.op in (SKIP_OP, REFUSE):
            s.status = "skipped" if s.op == SKIP_OP else "refused"
            return
        if dev.addr in self.failed:
            s.status, s.result = "refused", "not attempted: " + self.failed[dev.addr]
            return
        if s.phase == RESTORE_PHASE and dev.addr in self.held:
            s.status, s.result = "refused", "not attempted: " + self.held[dev.addr]
            self.failed[dev.addr] = self.held[dev.addr]
            return
        if isinstance(s, ConfigWrite) and self.eperm:
            s.status, s.result = "refused", "not attempted: " + self.eperm
            self.failed[dev.addr] = self.eperm
            return
        try:
            port = self.access.config(dev.addr)
            problem = self._same_device(dev, port)
            if problem:
                self._refuse(dev, s, problem)
                return
            driver = self._bound_now(dev.addr) if s.phase in (QUIESCE_PHASE,
                                                               RESCAN_PHASE) else None
            if driver:  # bound since the plan was made: its driver owns it now
                self._refuse(dev, s, f"{driver} is bound now: nothing is turned off under it")
                return
            match s:  # what each kind of step does (a Rescan runs in rescan_pass)
                case ConfigWrite():
                    self._write(dev, s, port)
                case Reset():
                    self._reset(dev, s, port)
                case Disable():
                    self._disable(dev, s, port)
        except ConfigAccessError as e:
            if e.errno in (errno.EPERM, errno.EACCES) and isinstance(s, ConfigWrite):
                self.eperm = (f"the kernel refused config writes ({errno.errorcode.get(e.errno)}"
                              "; kernel lockdown?)")
                self.plan.env.config_writes_permitted = False
                self._refuse(dev, s, f"{e} ({errno.errorcode.get(e.errno or 0, '?')}): "
                                     "kernel lockdown refuses config writes")
            else:
                self._refuse(dev, s, str(e))
        except HandoffError as e:
            self._refuse(dev, s, str(e))
        if isinstance(s, ConfigWrite) and s.delay_ms:
            self.sleep(s.delay_ms / 1000)

    def _refuse(self, dev: DevicePlan, s: Step, why: str) -> None:
        s.status, s.result = "refused", why
        self.failed[dev.addr] = f"an earlier step failed: {why}"

    def _same_device(self, dev: DevicePlan, port: ConfigPort) -> str | None:
        """Re-read the ids before every operation: never write to the wrong device."""
        ids = port.read(0, 4)
        if ids == 0xFFFFFFFF:
            return "config space reads all-ones: the device is gone"
        want = dev.saved.ids.vendor | dev.saved.ids.device << 16
        if ids != want:
            return f"a different device answers now ({ids & 0xFFFF:04x}:{ids >> 16:04x})"
        return None

    def _write(self, dev: DevicePlan, s: ConfigWrite, port: ConfigPort) -> None:
        full = (1 << (8 * s.width)) - 1
        fresh = port.read(s.offset, s.width)
        value = (fresh & s.keep) | (s.target & s.mask)
        notes = []
        if s.current is not None and fresh != s.current:
            notes.append(f"read {fresh:#x} where the plan expected {s.current:#x}; "
                         f"wrote {value:#x}")
        # pci_restore_config_dword(): write, read back, retry after 1 ms up to ``retries``.
        attempts = 0
        while True:
            port.write(s.offset, s.width, value & full)
            attempts += 1
            rb = port.read(s.offset, s.width)
            if rb & s.mask == s.target & s.mask or attempts > s.retries:
                break
            self.sleep(0.001)
        s.readback = rb
        s.value = value
        if rb & s.mask == s.target & s.mask:
            s.status = "verified"
            if attempts > 1:
                notes.append(f"verified after {attempts} writes")
        else:
            s.status = "unverified"
            notes.append(f"read back {rb:#x}, wanted {s.target & s.mask:#x} in mask "
                         f"{s.mask:#x} after {attempts} write(s)")
            self.failed[dev.addr] = f"{s.reg} did not take its value"
        s.result = "; ".join(notes) or None

    def _reset(self, dev: DevicePlan, s: Reset, port: ConfigPort) -> None:
        s.before = f"COMMAND={port.read(R.PCI_COMMAND, 2):#06x}"
        before = self.access.read_attr(dev.addr, "reset_method")
        if s.method:  # None: a kernel without reset_method picks the method itself
            self.access.write_attr(dev.addr, "reset_method", s.method)
        try:
            self.access.write_attr(dev.addr, "reset", "1")
        finally:
            if before and s.method:  # put the kernel's list back, so later resets behave
                try:
                    self.access.write_attr(dev.addr, "reset_method", before)
                except HandoffError as e:
                    s.result = f"could not restore reset_method {before!r}: {e}"
        problem = self._same_device(dev, port)
        if problem:
            s.status = "unverified"
            s.result = f"after the reset: {problem}"
            self.failed[dev.addr] = s.result
            return
        cmd = port.read(R.PCI_COMMAND, 2)
        s.after = f"COMMAND={cmd:#06x}"
        s.status = "done"
        # pci_dev_restore() writes back the COMMAND it saved: Bus Master may read 1 again,
        # but the function behind it was reset.
        bm = "on" if cmd & R.CMD_MASTER else "off"
        extra = f"device answers; Bus Master {bm} after the reset"
        s.result = f"{s.result}; {extra}" if s.result else extra

    def _disable(self, dev: DevicePlan, s: Disable, port: ConfigPort) -> None:
        """Bus Master off by the kernel: ``enable`` 1 (pci_enable_device(), a no-op count
        bump if already enabled), then 0 (pci_disable_device() clears PCI_COMMAND_MASTER),
        judged by reading COMMAND back, never by the writes' success alone. COMMAND before
        and after is reported: enabling a function without MSI also clears INTx Disable
        (pci_enable_device() -> pci_intx_for_msi()/do_pci_enable_device()), measured."""
        driver = self._bound_now(dev.addr)
        if driver:
            self._refuse(dev, s, f"{driver} is bound now: enable 1, 0 is not written under "
                                 "a driver")
            return
        before = port.read(R.PCI_COMMAND, 2)
        s.current, s.before = before, f"COMMAND={before:#06x}"
        self.access.write_attr(dev.addr, "enable", "1")
        self.access.write_attr(dev.addr, "enable", "0")
        cmd = port.read(R.PCI_COMMAND, 2)
        s.readback, s.after = cmd, f"COMMAND={cmd:#06x}"
        changed = R.show_changes(R.changed_fields(R.COMMAND_REG, before, cmd))
        s.detail = changed or "COMMAND unchanged"
        if cmd & R.CMD_MASTER:
            s.status = "unverified"
            s.result = f"COMMAND reads {cmd:#06x} after enable 1, 0: Bus Master still on"
        else:
            s.status = "verified"
            s.result = f"COMMAND {before:#06x} -> {cmd:#06x}: Bus Master off" + (
                "; also INTx Disable 1 -> 0 (the kernel's enable turned INTx on)"
                if before & R.CMD_INTX_DISABLE and not cmd & R.CMD_INTX_DISABLE else "")

    def _bound_now(self, addr: str) -> str | None:
        """The driver the running kernel holds the device with now (not the record's)."""
        fn = getattr(self.access, "driver_now", None)
        try:
            return fn(addr) if fn is not None else None
        except HandoffError:
            return None

    def rescan_pass(self) -> None:
        """Every planned remove (below a bridge first), then ONE rescan, then check that each
        removed device came back as itself. The kernel rescans synchronously, but a device
        may take a moment to answer again: each is polled for up to RESCAN_WAIT_S."""
        removed: list[tuple[DevicePlan, Rescan]] = []
        before: dict[str, str | None] = {}
        for dev, s in self.plan.ordered():
            if s.phase != RESCAN_PHASE:
                continue
            if not (isinstance(s, Rescan) and s.acts) or dev.addr in self.failed:
                if isinstance(s, ConfigWrite) and s.acts and dev.addr not in before:
                    before[dev.addr] = self._bars_now(dev.addr)  # ahead of our writes
                self.step(dev, s)  # writes ahead of a remove; skip/refuse bookkeeping
                continue
            try:
                port = self.access.config(dev.addr)
                problem = self._same_device(dev, port)
                if problem:
                    self._refuse(dev, s, problem)
                    continue
                driver = self._bound_now(dev.addr)
                if driver and s.resource:
                    self._refuse(dev, s, f"{driver} is bound now: not removed under it")
                    continue
                s.before = before.get(dev.addr) or _bars_text(_header(port))
                self.access.remove(dev.addr)
            except HandoffError as e:
                self._refuse(dev, s, f"remove: {e}")
                continue
            removed.append((dev, s))
        if not removed:
            return
        try:
            self.access.rescan()
        except HandoffError as e:
            for dev, s in removed:
                s.status = "unverified"
                s.result = f"removed, but the rescan failed: {e}; the device stays removed"
                self.failed[dev.addr] = s.result
            return
        for dev, s in removed:
            self._came_back(dev, s)

    def _came_back(self, dev: DevicePlan, s: Rescan) -> None:
        waited = 0.0
        while not self.access.present(dev.addr) and waited < RESCAN_WAIT_S:
            self.sleep(RESCAN_POLL_S)
            waited += RESCAN_POLL_S
        problem = "it did not reappear after the rescan" if not self.access.present(
            dev.addr) else None
        if problem is None:
            try:
                problem = self._same_device(dev, self.access.config(dev.addr))
            except HandoffError as e:
                problem = str(e)
        if problem:
            s.status, s.result = "unverified", f"removed and rescanned, but {problem}"
            self.failed[dev.addr] = s.result
            return
        if s.resource:
            self._verify_resources(dev, s)
            return
        s.after = self._bars_now(dev.addr)
        s.status, s.result = "done", "removed and rescanned: the device is back as itself"
        # The kernel now owns what it enumerated; nothing of ours may follow on it.
        self.rescanned[dev.addr] = self.failed[dev.addr] = "the device was removed and rescanned"

    def _bars_now(self, addr: str) -> str | None:
        try:
            return _bars_text(_header(self.access.config(addr)))
        except HandoffError:
            return None

    def _verify_resources(self, dev: DevicePlan, s: Rescan) -> None:
        """After a kernel_owned rescan: every BAR in config space must equal the start of its
        ``resource`` line, on the device and on everything below a bridge that came back."""
        from handoff.restore.resources import below
        from handoff.sysfs.resource import bar_disagreements

        bad: list[str] = []
        addrs = [dev.addr] + sorted(d.addr for d in self.plan.devices
                                    if d.match.current is not None and
                                    below(dev.addr, d.match.current))
        for addr in addrs:
            if not self.access.present(addr):
                bad.append(f"{addr} did not come back")
                continue
            hdr = _header(self.access.config(addr))
            fn = getattr(self.access, "resources", None)
            res: list[Resource] = fn(addr) if fn is not None else []
            bad.extend(f"{addr} {x}" for x in bar_disagreements(hdr, res))
            if addr == dev.addr:
                s.after = _bars_text(hdr)
        if bad:
            s.status = "unverified"
            s.result = ("removed and rescanned, but the kernel and the device disagree: "
                        + "; ".join(bad))
            self.failed[dev.addr] = s.result
            return
        s.status = "verified"
        s.result = ("removed and rescanned: the device is back as itself, the kernel read "
                    "the state again, and every BAR equals its resource start")


def _header(port: ConfigPort) -> bytes:
    """The first 64 bytes of config space, read a dword at a time (the BARs and ROM)."""
    return b"".join(port.read(off, 4).to_bytes(4, "little") for off in range(0, 0x40, 4))


def _bars_text(hdr: bytes) -> str:
    from handoff.sysfs.resource import config_bars

    return " ".join(f"BAR{i}={a:#x}" for i, _, a, _ in config_bars(hdr)) or "no BARs"


RESCAN_WAIT_S = 2.0
RESCAN_POLL_S = 0.05


def apply(plan: Plan, access: DeviceAccess, *,
          sleep: Callable[[float], None] = time.sleep,
          plugins: PluginRuntime | None = None) -> Plan:
    """Run every pass of ``plan`` in order (steps.PASSES); statuses and outcomes are filled
    in place. Plugin phases run when the plan has a registry; ``plugins`` says how they
    reach the devices (default: the access's tree, the real clock)."""
    run = _Run(plan, access, sleep)
    rt = plugins or PluginRuntime(tree=getattr(access, "tree", None), sleep=sleep)
    for kind, phase, direction, _ in PASSES:
        if kind == CONFIG:
            if phase == RESCAN_PHASE:
                run.rescan_pass()
                continue
            for dev in plan.in_order(direction):
                for s in dev.steps:
                    if s.phase == phase:
                        run.step(dev, s)
            continue
        if plan.registry is None:
            continue
        # Containment: a plugin that fails is reported and the run moves on. A device whose
        # plugin quiesce did not end ok is held: nothing may turn it back on (config restore
        # writes COMMAND last, possibly with Bus Master), but its resets and verify still run.
        blocked = {**run.failed, **run.held} if phase == P_RESTORE else dict(run.rescanned)
        run_phase(plan.in_order(direction), phase, plan.registry, rt, plan.env,
                  dry_run=False, blocked=blocked)
        if phase == P_QUIESCE:
            for dev in plan.devices:
                bad = [o for o in dev.plugin_ops if o.phase == P_QUIESCE and o.status
                       not in ("ok", "refused")]
                if bad:
                    run.held[dev.addr] = (f"{bad[0].label} ended {bad[0].status}: the device "
                                          "may still be running, so it is not turned back on")
    for dev in plan.devices:
        dev.outcome = outcome(dev)
    return plan


def rehearse(plan: Plan, *, plugins: PluginRuntime | None = None) -> Plan:
    """A dry run of the plugin phases: each step's hook is run against its ``assume`` values,
    no BAR is opened, and the plan lists the register accesses a real run would make."""
    if plan.registry is None:
        return plan
    rt = plugins or PluginRuntime()
    for kind, phase, direction, _ in PASSES:
        if kind != CONFIG:
            run_phase(plan.in_order(direction), phase, plan.registry, rt, plan.env,
                      dry_run=True, blocked={})
    return plan


def outcome(dev: DevicePlan) -> str:
    """done, partial (something done, the rest refused by the kernel, e.g. a lockdown
    fallback), failed (something went wrong on the device), refused, nothing, skipped."""
    if dev.status == "skip":
        return "skipped"
    if dev.status == "refused" and not dev.active() and not dev.live_ops():
        return "refused"
    acts = dev.active()
    ops = dev.plugin_ops
    if not acts and not ops and not any(s.op == REFUSE for s in dev.steps):
        return "nothing"
    ok = [s for s in acts if s.status in ("verified", "done")] + [o for o in ops if o.ok]
    bad = [s for s in acts if s.status == "unverified"] + [
        o for o in ops if o.status in ("failed", "timeout", "no-response")]
    refused = [s for s in dev.steps if s.status == "refused"] + [
        o for o in ops if o.status == "refused"]
    if bad:
        return "failed"
    if not refused and len(ok) == len(acts) + len(ops):
        return "done"
    if not ok:
        return "refused"
    # Something was done. Refusals by the kernel (lockdown) with a fallback done make it
    # partial; a refusal in the middle of a sequence (a step not attempted) is a failure.
    if all(_kernel_refusal(x) for x in refused):
        return "partial"
    return "failed"


def _kernel_refusal(x: Step | object) -> bool:
    """Refused because the kernel (or the plugin runner, for a bound driver) does not permit
    it, not because something failed on the way: a planned refusal, or any plugin refusal."""
    if isinstance(x, Step):
        return x.op == REFUSE
    return True


__all__ = [  # ConfigPort .. SysfsAccess live in handoff.sysfs.ops; re-exported for callers
    "ConfigPort",
    "DeviceAccess",
    "OutsideTree",
    "SysfsAccess",
    "apply",
    "outcome",
    "rehearse",
    "scan",
]
