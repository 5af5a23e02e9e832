"""Carry out a restore plan through a device-access seam: config writes verified by read-back,
resets through sysfs, and every failure turned into a refused, reported step.

The engine never opens files itself: :class:`SysfsAccess` does, and only inside the tree it
was given (resolved paths are checked, addresses must be PCI addresses, files are never
created). Tests pass a ConfigSpace subclass to simulate EPERM and other failures.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from handoff.devices.model import PciDevice
from handoff.devices.pci import read_device
from handoff.errors import HandoffError
from handoff.restore import pciregs as R
from handoff.restore.plan import DO_RESET, REFUSE, SKIP_OP, WRITE, DevicePlan, Plan, Step
from handoff.sysfs import ConfigAccessError, ConfigSpace, SysfsTree

_ADDR = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$")
_ATTRS = ("reset", "reset_method")  # the only attributes the engine ever writes


class OutsideTree(HandoffError):
    """A path resolved outside the sysfs tree the engine was given: refused, never written."""


class ConfigPort(Protocol):
    def read(self, offset: int, width: int) -> int: ...

    def write(self, offset: int, width: int, value: int) -> None: ...


class DeviceAccess(Protocol):
    def config(self, addr: str) -> ConfigPort: ...

    def read_attr(self, addr: str, name: str) -> str | None: ...

    def write_attr(self, addr: str, name: str, text: str) -> None: ...


class SysfsAccess:
    """Device access inside one sysfs tree (``/sys`` in a capture kernel, a copy in tests)."""

    def __init__(self, tree: SysfsTree,
                 config_factory: Callable[[Path], ConfigPort] = ConfigSpace) -> None:
        self.tree = tree
        self.root = Path(os.path.realpath(tree.root))
        self._factory = config_factory
        self.log: list[tuple[str, str, str]] = []  # (addr, what, value) of every write

    def _inside(self, path: Path) -> Path:
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise OutsideTree(f"{path} resolves to {real}, outside the sysfs tree {self.root}: "
                              "refused")
        return real

    def _dev(self, addr: str) -> Path:
        if not _ADDR.match(addr):
            raise OutsideTree(f"{addr!r} is not a PCI address: refused")
        return self.tree.device_dir(addr)

    def config(self, addr: str) -> ConfigPort:
        path = self._inside(self._dev(addr) / "config")
        port = self._factory(path)
        return _Logged(port, addr, self.log)

    def read_attr(self, addr: str, name: str) -> str | None:
        return self.tree.attr(addr, name)

    def write_attr(self, addr: str, name: str, text: str) -> None:
        if name not in _ATTRS:
            raise OutsideTree(f"writing attribute {name!r} is not something restore does")
        path = self._inside(self._dev(addr) / name)
        try:
            # Never O_CREAT: only existing attributes. O_TRUNC is what `echo >` does; sysfs
            # ignores it, and a copy of a tree then holds exactly the value written.
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        except OSError as e:
            raise ConfigAccessError(f"{path}: cannot open for writing: {e.strerror}",
                                    errno_=e.errno) from None
        try:
            os.write(fd, text.encode())
        except OSError as e:
            raise ConfigAccessError(f"{path}: write of {text!r} refused: {e.strerror}",
                                    errno_=e.errno) from None
        finally:
            os.close(fd)
        self.log.append((addr, name, text))


class _Logged:
    def __init__(self, port: ConfigPort, addr: str, log: list[tuple[str, str, str]]) -> None:
        self.port, self.addr, self.log = port, addr, log

    def read(self, offset: int, width: int) -> int:
        return self.port.read(offset, width)

    def write(self, offset: int, width: int, value: int) -> None:
        self.port.write(offset, width, value)
        self.log.append((self.addr, f"config@{offset:#x}/{width}",
                         f"{value:#0{2 + 2 * width}x}"))


def scan(tree: SysfsTree) -> dict[str, PciDevice]:
    """The devices in the tree now (read only), by address."""
    out: dict[str, PciDevice] = {}
    for addr in tree.pci_addresses():
        if not _ADDR.match(addr):
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
        self.eperm: str | None = None

    def step(self, dev: DevicePlan, s: Step) -> None:
        if s.op in (SKIP_OP, REFUSE):
            s.status = "skipped" if s.op == SKIP_OP else "refused"
            return
        if dev.addr in self.failed:
            s.status, s.result = "refused", "not attempted: " + self.failed[dev.addr]
            return
        if s.op == WRITE and self.eperm:
            s.status, s.result = "refused", "not attempted: " + self.eperm
            self.failed[dev.addr] = self.eperm
            return
        try:
            port = self.access.config(dev.addr)
            problem = self._same_device(dev, port)
            if problem:
                self._refuse(dev, s, problem)
                return
            if s.op == WRITE:
                self._write(dev, s, port)
            elif s.op == DO_RESET:
                self._reset(dev, s, port)
        except ConfigAccessError as e:
            if e.errno in (errno.EPERM, errno.EACCES) and s.op == WRITE:
                self.eperm = (f"the kernel refused config writes ({errno.errorcode.get(e.errno)}"
                              "; kernel lockdown?)")
                self.plan.env.config_writes_permitted = False
                self._refuse(dev, s, f"{e} ({errno.errorcode.get(e.errno or 0, '?')}): "
                                     "kernel lockdown refuses config writes")
            else:
                self._refuse(dev, s, str(e))
        except HandoffError as e:
            self._refuse(dev, s, str(e))
        if s.delay_ms:
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

    def _write(self, dev: DevicePlan, s: Step, port: ConfigPort) -> None:
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

    def _reset(self, dev: DevicePlan, s: Step, port: ConfigPort) -> None:
        assert s.method
        before = self.access.read_attr(dev.addr, "reset_method")
        self.access.write_attr(dev.addr, "reset_method", s.method)
        try:
            self.access.write_attr(dev.addr, "reset", "1")
        finally:
            if before:  # put the kernel's list back, so later resets behave as before
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
        s.readback = cmd
        s.status = "done"
        bm = "on" if cmd & R.CMD_MASTER else "off"
        extra = f"device answers; Bus Master {bm} after the reset"
        s.result = f"{s.result}; {extra}" if s.result else extra


def apply(plan: Plan, access: DeviceAccess, *,
          sleep: Callable[[float], None] = time.sleep) -> Plan:
    """Run every step of ``plan`` in order; statuses and outcomes are filled in place."""
    run = _Run(plan, access, sleep)
    for dev, s in plan.ordered():
        run.step(dev, s)
    for dev in plan.devices:
        dev.outcome = outcome(dev)
    return plan


def outcome(dev: DevicePlan) -> str:
    """done, failed (something written, then a failure), refused, nothing, skipped."""
    if dev.status == "skip":
        return "skipped"
    if dev.status == "refused":
        return "refused"
    acts = dev.active()
    if not acts:
        return "nothing"
    ok = [s for s in acts if s.status in ("verified", "done")]
    if len(ok) == len(acts) and not any(s.op == REFUSE for s in dev.steps):
        return "done"
    return "failed" if ok or any(s.status == "unverified" for s in acts) else "refused"
