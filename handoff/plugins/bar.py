"""Register access through a PCI device's BARs (sysfs ``resourceN``), and bounded polling.

Mapping a ``resourceN`` and the errors the kernel gives for it are in
:mod:`handoff.sysfs.resource` (re-exported here); this module adds bounds-checked,
width-exact access over a mapping, a device's BARs opened lazily, and time bounds.
"""

from __future__ import annotations

import mmap
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, Self

from handoff._slots import Frozen
from handoff.sysfs import SysfsTree
from handoff.sysfs import paths as _paths
from handoff.sysfs.config import ConfigAccessError, ConfigSpace
from handoff.sysfs.paths import ADDR as _ADDR
from handoff.sysfs.resource import (
    CLAIMED_MESSAGE,
    CMD_MEMORY,
    IORESOURCE_IO,
    LOCKDOWN_MESSAGE,
    MAX_BARS,
    PCI_COMMAND,
    BarClaimed,
    BarError,
    BarMappingRefused,
    BarUnavailable,
    MmapFile,
    bar_disagreements,
    read_resources,
)

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

_set = object.__setattr__

WIDTHS = (1, 2, 4, 8)


class BarBoundsError(BarError, ValueError):
    """An access lies outside the BAR, is misaligned, or has an unsupported width.
    Nothing was read or written."""

    def __init__(self, message: str, *, bar: int | None, offset: int, width: int,
                 size: int | None) -> None:
        super().__init__(message, bar=bar)
        self.offset = offset
        self.width = width
        self.size = size


class BarReadOnly(BarError):
    """A write through a BAR that was opened for reading only."""


def check_access(bar: int | None, offset: int, width: int, size: int | None) -> None:
    """Refuse an access that is not 1, 2, 4 or 8 bytes, not naturally aligned, or not inside
    ``size`` bytes (None: size unknown, alignment still checked)."""
    name = f"BAR{bar}" if bar is not None else "the BAR"
    if width not in WIDTHS:
        raise BarBoundsError(f"{name}: access width {width} is not 1, 2, 4 or 8 bytes",
                             bar=bar, offset=offset, width=width, size=size)
    if offset < 0 or offset % width:
        raise BarBoundsError(f"{name}: offset {offset:#x} is not {width}-byte aligned "
                             "(registers are accessed at their natural alignment)",
                             bar=bar, offset=offset, width=width, size=size)
    if size is not None and offset + width > size:
        raise BarBoundsError(f"{name}: access of {width} byte(s) at {offset:#x} is past the end "
                             f"of the BAR ({size:#x} bytes)",
                             bar=bar, offset=offset, width=width, size=size)


class RegisterFile(Protocol):
    """The seam under :class:`BarAccessor`: an mmapped ``resourceN`` in production, a register
    model with side effects in tests. Callers have already checked bounds and alignment."""

    size: int
    writable: bool

    def read(self, offset: int, width: int) -> int: ...

    def write(self, offset: int, width: int, value: int) -> None: ...

    def close(self) -> None: ...


class BarAccessor:
    """Bounds-checked, width-exact register access to one BAR over a :class:`RegisterFile`.

    Accesses are serialised by a lock so that :meth:`close` never races one; after close every
    access raises. Values are little-endian integers of ``width`` bytes.
    """

    def __init__(self, regs: RegisterFile, *, bar: int | None = None,
                 path: str | None = None) -> None:
        self.regs = regs
        self.bar = bar
        self.path = path
        self.size = regs.size
        self._lock = threading.Lock()
        self._closed = False

    @property
    def writable(self) -> bool:
        return self.regs.writable

    def read(self, offset: int, width: int) -> int:
        check_access(self.bar, offset, width, self.size)
        with self._lock:
            self._live()
            return self.regs.read(offset, width)

    def write(self, offset: int, width: int, value: int) -> None:
        check_access(self.bar, offset, width, self.size)
        if not 0 <= value < 1 << (8 * width):
            raise ValueError(f"value {value:#x} does not fit in {width} byte(s)")
        if not self.regs.writable:
            raise BarReadOnly(f"BAR{self.bar} was opened read-only: write at {offset:#x} "
                              "refused", bar=self.bar, path=self.path)
        with self._lock:
            self._live()
            self.regs.write(offset, width, value)

    def _live(self) -> None:
        if self._closed:
            raise BarError(f"BAR{self.bar} is closed", bar=self.bar, path=self.path)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.regs.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


OpenFile = Callable[["Path", bool, int], RegisterFile]


class BarSource(Protocol):
    """A device's BARs, opened on first use: :class:`SysfsBars` in production."""

    def bar(self, index: int) -> BarAccessor: ...

    def close(self) -> None: ...


class SysfsBars:
    """The BARs of one device in a sysfs tree (``/sys`` or a copy), mapped lazily and kept
    until :meth:`close`. A BAR that failed to open fails the same way on every later use
    without asking the kernel again (each lockdown refusal costs a log line).

    ``open_file(path, writable, index)`` is the seam tests use to put a register model between
    the accessor and the file; the default maps the file.

    Paths are built as strings (pathlib stays off the restore path): ``resourceN`` below the
    device's directory, whose real location is resolved by the kernel in one call and must
    lie inside the tree; the bound driver is read only to explain a refused mapping.
    """

    def __init__(self, tree: SysfsTree, addr: str, *, writable: bool = True,
                 open_file: OpenFile | None = None,
                 mmap_fn: Callable[..., mmap.mmap] = mmap.mmap) -> None:
        if not _ADDR.match(addr):
            raise BarUnavailable(f"{addr!r} is not a PCI address: refused")
        self.tree = tree
        self.addr = addr
        self.writable = writable
        self._open_file = open_file
        self._mmap_fn = mmap_fn
        self._open: dict[int, BarAccessor] = {}
        self._failed: dict[int, BarError] = {}
        self._root = _paths.pathstr(tree.root_dir)  # as str(tree.root) spells it
        self._dir = _paths.join(self._root, "bus", "pci", "devices", addr)
        self._resource: list[str] | None = None
        self._step_checked = False
        self._enabled: int | None = None  # COMMAND before Memory Space was turned on
        self._events: list[str] = []

    def resource_path(self, index: int) -> Path:
        return self.tree.device_dir(self.addr) / f"resource{index}"

    def bar(self, index: int) -> BarAccessor:
        if index in self._failed:
            raise self._failed[index]
        if index not in self._open:
            try:
                self._open[index] = self._map(index)
            except BarError as e:
                self._failed[index] = e
                raise
        self._decoding(index)
        return self._open[index]

    def _map(self, index: int) -> BarAccessor:
        if not 0 <= index < MAX_BARS:
            raise BarUnavailable(f"{self.addr}: BAR index {index} is not 0-5", bar=index)
        flags = self._flags(index)
        path = _paths.join(self._dir, f"resource{index}")
        if flags is not None and flags & IORESOURCE_IO:
            raise BarUnavailable(f"{self.addr}: BAR{index} is an I/O-port BAR; plugins map "
                                 "memory BARs only", bar=index, path=path)
        self._inside(path, index)
        self._agrees(index, path)
        if self._open_file is not None:
            regs = self._open_file(self.resource_path(index), self.writable, index)
        else:
            regs = MmapFile.open(path, writable=self.writable, bar=index,
                                 driver=lambda: _paths.link_name(_paths.join(self._dir,
                                                                             "driver")),
                                 mmap_fn=self._mmap_fn)
        return BarAccessor(regs, bar=index, path=path)

    def _agrees(self, index: int, path: str) -> None:
        """Check before touching (issue 12): the kernel assigned the BAR, and config space
        holds the address the kernel's ``resource`` line starts at. A BAR moved behind the
        kernel's back maps the kernel's address, where the device no longer answers."""
        res = {r.index: r for r in read_resources(self._dir)}.get(index)
        if res is None or not res.assigned:
            raise BarUnavailable(f"{self.addr}: BAR{index} is not assigned by the kernel "
                                 "(resource line empty or unset): not touched", bar=index,
                                 path=path)
        hdr = self._config().read_all(0x40)
        bad = [x for x in bar_disagreements(hdr, [res]) if x.startswith(f"BAR{index} ")]
        if bad:
            raise BarUnavailable(f"{self.addr}: {bad[0]}: the kernel and the device disagree, "
                                 "not touched (remove + rescan makes the kernel read it "
                                 "again)", bar=index, path=path)

    def _config(self) -> ConfigSpace:
        return ConfigSpace(_paths.join(self._dir, "config"))

    def _decoding(self, index: int) -> None:
        """Memory Space must be on for a memory BAR to answer (off, QEMU reads 0). Once per
        step: if it is off and no driver holds the function, turn it on for the step;
        :meth:`end_step` turns it off again. Each change is an operation in the report."""
        if self._step_checked:
            return
        self._step_checked = True
        cfg = self._config()
        cmd = cfg.read(PCI_COMMAND, 2)
        if cmd & CMD_MEMORY:
            return
        driver = _paths.link_name(_paths.join(self._dir, "driver"))
        if driver:
            raise BarUnavailable(f"{self.addr}: Memory Space is off (COMMAND {cmd:#06x}) and "
                                 f"{driver} holds the function: not turned on under it",
                                 bar=index)
        try:
            cfg.write(PCI_COMMAND, 2, cmd | CMD_MEMORY)
        except ConfigAccessError as e:
            raise BarUnavailable(f"{self.addr}: Memory Space is off (COMMAND {cmd:#06x}) and "
                                 f"cannot be turned on: {e}", bar=index) from None
        after = cfg.read(PCI_COMMAND, 2)
        self._enabled = cmd
        self._events.append(f"operation: COMMAND {cmd:#06x} -> {after:#06x} (Memory Space on "
                            "for this step: off, the BAR reads 0)")

    def end_step(self) -> list[str]:
        """The operations reaching the BARs took in the step that just ended, with Memory
        Space put back as it was."""
        if self._enabled is not None:
            cfg = self._config()
            try:
                now = cfg.read(PCI_COMMAND, 2)
                cfg.write(PCI_COMMAND, 2, now & ~CMD_MEMORY | self._enabled & CMD_MEMORY)
                after = cfg.read(PCI_COMMAND, 2)
                self._events.append(f"operation: COMMAND {now:#06x} -> {after:#06x} (Memory "
                                    "Space restored after the step)")
            except ConfigAccessError as e:
                self._events.append(f"operation: Memory Space could not be turned off again: "
                                    f"{e}")
            self._enabled = None
        self._step_checked = False
        out, self._events = self._events, []
        return out

    def _flags(self, index: int) -> int | None:
        if self._resource is None:
            text = _paths.read_attr(_paths.join(self._dir, "resource"))
            self._resource = text.splitlines() if text else []
        try:
            return int(self._resource[index].split()[2], 16)
        except (IndexError, ValueError):
            return None

    def _inside(self, path: str, index: int) -> None:
        root = _paths.resolve(self._root)
        real = _paths.join(_paths.resolve(self._dir), f"resource{index}")
        if not _paths.inside(real, root) or real == root:
            raise BarUnavailable(f"{path} resolves outside the sysfs tree {root}: refused",
                                 bar=index, path=path)

    def close(self) -> None:
        self.end_step()
        for acc in self._open.values():
            acc.close()
        self._open.clear()


class RefusedBars:
    """BARs the caller already knows it may not map (kernel lockdown): every use raises
    :class:`BarMappingRefused` with ``reason``, and the kernel is never asked."""

    def __init__(self, reason: str = LOCKDOWN_MESSAGE) -> None:
        self.reason = reason

    def bar(self, index: int) -> BarAccessor:
        raise BarMappingRefused(self.reason, bar=index)

    def close(self) -> None:
        pass


# --- time bounds ------------------------------------------------------------------------------

Clock = Callable[[], float]
Sleep = Callable[[float], None]
_INF = float("inf")  # math.inf: the math extension module is not loaded for this alone


def _finite(x: float) -> bool:
    """``math.isfinite(x)`` (float(x) raises for what math would not take, as it does)."""
    f = float(x)
    return -_INF < f < _INF  # NaN compares false


class Deadline(Frozen):
    """A point on a monotonic ``clock`` (injectable, so tests run bounded waits instantly)."""

    __slots__ = ("at", "clock")
    at: float
    clock: Clock

    def __init__(self, at: float, clock: Clock = time.monotonic) -> None:
        _set(self, "at", at)
        _set(self, "clock", clock)

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    @classmethod
    def never(cls, clock: Clock = time.monotonic) -> Deadline:
        return cls(_INF, clock)

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.at

    def within(self, seconds: float) -> Deadline:
        """This deadline or ``seconds`` from now, whichever comes first."""
        return Deadline(min(self.at, self.clock() + seconds), self.clock)


class PollResult(Frozen):
    __slots__ = ("elapsed", "ok", "reads", "value")
    ok: bool  # the predicate held on the last read
    value: int  # the last value read
    reads: int
    elapsed: float  # seconds on the poll's clock

    def __init__(self, ok: bool, value: int, reads: int, elapsed: float) -> None:
        _set(self, "ok", ok)
        _set(self, "value", value)
        _set(self, "reads", reads)
        _set(self, "elapsed", elapsed)


def poll(read_fn: Callable[[], int], predicate: Callable[[int], bool], timeout_s: float,
         interval: float = 0.005, *, clock: Clock = time.monotonic,
         sleep: Sleep = time.sleep) -> PollResult:
    """Read until ``predicate(value)`` holds or ``timeout_s`` has passed on ``clock``.

    It always ends by its deadline: the last sleep is cut to what remains, the value is read
    after every sleep (so a late wake-up cannot report a timeout the device did not cause, as
    Linux's read_poll_timeout() re-reads), and the number of reads is capped at
    ``timeout_s / interval + 2``, so a clock that stands still cannot make it spin forever.
    """
    if timeout_s < 0 or not _finite(timeout_s):
        raise ValueError(f"poll timeout {timeout_s!r} is not a finite number of seconds >= 0")
    if not interval > 0:
        raise ValueError(f"poll interval {interval!r} is not > 0")
    start = clock()
    deadline = start + timeout_s
    max_reads = int(timeout_s / interval) + 2
    reads = 0
    while True:
        value = read_fn()
        reads += 1
        if predicate(value):
            return PollResult(True, value, reads, clock() - start)
        now = clock()
        if now >= deadline or reads >= max_reads:
            return PollResult(False, value, reads, now - start)
        sleep(min(interval, deadline - now))


__all__ = [
    "CLAIMED_MESSAGE",
    "LOCKDOWN_MESSAGE",
    "BarAccessor",
    "BarBoundsError",
    "BarClaimed",
    "BarError",
    "BarMappingRefused",
    "BarReadOnly",
    "BarSource",
    "BarUnavailable",
    "Deadline",
    "MmapFile",
    "PollResult",
    "RefusedBars",
    "RegisterFile",
    "SysfsBars",
    "check_access",
    "poll",
]
