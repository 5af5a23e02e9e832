"""Fake BARs for plugin tests: ``resourceN`` files in a fake sysfs tree (tests/helpers/fakesysfs.py),
register models that react to accesses the way a device does, and a clock that tests advance.

The register values always live in the ``resourceN`` file, so the real mmap path runs in every
test and a test can read the file to see what a plugin wrote. A model sits between the
accessor and the mapped file (the ``open_file`` seam of :class:`SysfsBars`) and adds the
behaviour a plain file lacks: a controller that drops CSTS.RDY a few reads after CC.EN is
cleared (or never), a reset bit that clears itself (or never), a virtio device_status that
reads 0 some time after 0 is written (or never). :func:`later` mutates a file from a background
thread instead, for tests on the real clock with no model at all.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from handoff.devices.model import PciDevice
from handoff.devices.pci import read_device
from handoff.plugins.bar import MmapFile, RegisterFile, SysfsBars
from handoff.sysfs import SysfsTree

IORESOURCE_MEM = 0x200
FAKE_BASE = 0xF0000000


def device_dir(root: Path, addr: str) -> Path:
    return Path(os.path.realpath(Path(root) / "bus" / "pci" / "devices" / addr))


def add_bar(root: Path | str, addr: str, index: int, size: int,
            regs: Mapping[int, tuple[int, int]] | None = None, *,
            flags: int = IORESOURCE_MEM) -> Path:
    """Create ``resource<index>`` of ``size`` zero bytes below the device, poke ``regs``
    (offset -> (width, value)) into it, and give line ``index`` of ``resource`` an address
    range and ``flags`` when it has none. Returns the file's path."""
    ddir = device_dir(Path(root), addr)
    path = ddir / f"resource{index}"
    path.write_bytes(bytes(size))
    for off, (width, value) in (regs or {}).items():
        poke(path, off, width, value)
    res = ddir / "resource"
    lines = res.read_text().splitlines() if res.exists() else []
    lines += ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * (7 - len(lines))
    if all(int(x, 16) == 0 for x in lines[index].split()):
        start = FAKE_BASE + index * 0x100000
        lines[index] = f"0x{start:016x} 0x{start + size - 1:016x} 0x{flags:016x}"
        res.write_text("\n".join(lines) + "\n")
    return path


def poke(path: Path, offset: int, width: int, value: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, value.to_bytes(width, "little"), offset)
    finally:
        os.close(fd)


def peek(path: Path, offset: int, width: int) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        return int.from_bytes(f.read(width), "little")


def digests(root: Path | str) -> dict[str, str]:
    """sha256 of every resourceN file below ``root``: a dry run must leave them identical."""
    out = {}
    for p in sorted(Path(root).rglob("resource[0-9]")):
        out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def device(root: Path | str, addr: str) -> PciDevice:
    return read_device(SysfsTree(Path(root)), addr, privileged=True)


# --- register models ------------------------------------------------------------------------


class Model:
    """Sees every access after the accessor's checks; the file holds the register values."""

    def read(self, regs: RegisterFile, offset: int, width: int) -> int:
        return regs.read(offset, width)

    def write(self, regs: RegisterFile, offset: int, width: int, value: int) -> None:
        regs.write(offset, width, value)


class Modelled:
    """A RegisterFile that routes accesses through a model."""

    def __init__(self, inner: RegisterFile, model: Model) -> None:
        self.inner = inner
        self.model = model
        self.size = inner.size
        self.writable = inner.writable

    def read(self, offset: int, width: int) -> int:
        return self.model.read(self.inner, offset, width)

    def write(self, offset: int, width: int, value: int) -> None:
        self.model.write(self.inner, offset, width, value)

    def close(self) -> None:
        self.inner.close()


class Countdown:
    """Something that happens after ``n`` more reads; ``n`` None never happens."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.armed = False

    def arm(self) -> None:
        self.armed = True
        self.left = self.n

    def tick(self) -> bool:
        if not self.armed or self.left is None:
            return False
        self.left -= 1
        if self.left <= 0:
            self.armed = False
            return True
        return False


class NvmeModel(Model):
    """CSTS.RDY follows CC.EN after ``ready_after`` reads of CSTS (None: stuck at 1)."""

    CC, CSTS = 0x14, 0x1C

    def __init__(self, ready_after: int | None = 2) -> None:
        self.ready = Countdown(ready_after)
        self.csts_reads = 0

    def write(self, regs: RegisterFile, offset: int, width: int, value: int) -> None:
        if offset == self.CC and regs.read(self.CC, 4) & 1 and not value & 1:
            self.ready.arm()
        regs.write(offset, width, value)

    def read(self, regs: RegisterFile, offset: int, width: int) -> int:
        if offset == self.CSTS:
            self.csts_reads += 1
            if self.ready.tick():
                regs.write(self.CSTS, 4, regs.read(self.CSTS, 4) & ~1)
        return regs.read(offset, width)


class E1000Model(Model):
    """CTRL.RST clears ``clears_after`` reads of CTRL after it is set (None: never); the reset
    then clears IMS, RCTL and TCTL. IMC clears IMS bits; ICR clears on read."""

    CTRL, ICR, IMS, IMC, RCTL, TCTL = 0x0, 0xC0, 0xD0, 0xD8, 0x100, 0x400
    RST = 1 << 26

    def __init__(self, clears_after: int | None = 2) -> None:
        self.reset = Countdown(clears_after)
        self.order: list[tuple[str, int, int]] = []  # (op, offset, value)

    def write(self, regs: RegisterFile, offset: int, width: int, value: int) -> None:
        self.order.append(("write", offset, value))
        if offset == self.IMC:
            regs.write(self.IMS, 4, regs.read(self.IMS, 4) & ~value)
            return
        if offset == self.CTRL and value & self.RST:
            self.reset.arm()
        regs.write(offset, width, value)

    def read(self, regs: RegisterFile, offset: int, width: int) -> int:
        self.order.append(("read", offset, 0))
        if offset == self.CTRL and self.reset.tick():
            regs.write(self.CTRL, 4, regs.read(self.CTRL, 4) & ~self.RST)
            for r in (self.IMS, self.RCTL, self.TCTL):
                regs.write(r, 4, 0)
        value = regs.read(offset, width)
        if offset == self.ICR:
            regs.write(self.ICR, 4, 0)
        return value


class VirtioModel(Model):
    """device_status (u8 at common + 0x14) reads 0 ``clears_after`` reads after 0 is written
    (None: never; it keeps reading the old status)."""

    def __init__(self, common: int = 0, clears_after: int | None = 1) -> None:
        self.where = common + 0x14
        self.clear = Countdown(clears_after)

    def write(self, regs: RegisterFile, offset: int, width: int, value: int) -> None:
        if offset == self.where and value == 0:
            self.clear.arm()  # the reset completes later; the old status still reads
            return
        regs.write(offset, width, value)

    def read(self, regs: RegisterFile, offset: int, width: int) -> int:
        if offset == self.where and self.clear.tick():
            regs.write(self.where, 1, 0)
        return regs.read(offset, width)


def bars(root: Path | str, addr: str, models: Mapping[int, Model] | None = None, *,
         writable: bool = True, **kw: object) -> SysfsBars:
    """SysfsBars over the fake tree, with ``models`` (BAR index -> model) on the mapped files."""
    models = dict(models or {})

    def open_file(path: Path, w: bool, index: int) -> RegisterFile:
        inner = MmapFile.open(path, writable=w, bar=index)
        return Modelled(inner, models[index]) if index in models else inner

    return SysfsBars(SysfsTree(Path(root)), addr, writable=writable, open_file=open_file,
                     **kw)  # type: ignore[arg-type]


def bars_for(root: Path | str, models: Mapping[str, Mapping[int, Model]]):  # type: ignore[no-untyped-def]
    """A ``run_plugins(bars_for=...)`` factory: per-address models over the fake tree."""
    def make(dev: PciDevice, writable: bool) -> SysfsBars:
        return bars(root, dev.addr, models.get(dev.addr), writable=writable)
    return make


# --- time -------------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only ``sleep`` advances (thread-safe)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.slept = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds
            self.slept += seconds


def later(path: Path, offset: int, width: int, value: int, delay_s: float) -> threading.Thread:
    """Write ``value`` into the file from a background thread after ``delay_s`` (real time):
    a device that changes a register on its own, seen through the real mapping."""
    def run() -> None:
        threading.Event().wait(delay_s)
        poke(path, offset, width, value)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
