"""The kernel's view of a device's regions (sysfs ``resource``) and mapping one of them
(``resourceN``).

``resource`` has one line per region, ``start end flags`` in hex (resource_show() in
drivers/pci/pci-sysfs.c): lines 0-5 are the BARs, 6 the expansion ROM, then SR-IOV BARs and,
on a bridge, its windows. It is what the PCI core assigned or read at enumeration
(pci_read_bases()/__pci_read_base() in drivers/pci/probe.c) and what a driver maps with
pci_iomap(), so a BAR whose config value differs from its ``resource`` start is a device the
kernel and the hardware disagree about (an nvme then fails to probe, measured:
capture-kernel-pci-core.md).

``resourceN`` is mmapped: sysfs offers no read() or write() for memory BARs (EIO, measured in
lockdown-measured.md). The file's size is the BAR's size, on real sysfs (the kernel sizes the
bin attribute to pci_resource_len()) as on a copied tree where ``resourceN`` is a regular
file, so the same code runs on both. The kernel refuses the mapping in two measured cases,
and each gets its own exception and a message that says what to do: EPERM under kernel
lockdown (LOCKDOWN_PCI_ACCESS in pci_mmap_resource()), and EINVAL when a bound driver has
claimed the region (CONFIG_IO_STRICT_DEVMEM: iomem_is_exclusive()).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import sys
from collections.abc import Callable

from handoff._slots import Frozen
from handoff.errors import EnvironmentProblem, HandoffError

_set = object.__setattr__

# include/linux/ioport.h
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000
IORESOURCE_DISABLED = 0x10000000
IORESOURCE_UNSET = 0x20000000  # pci_read_bases() found the BAR unassigned
ROM_RESOURCE = 6  # PCI_ROM_RESOURCE
MAX_BARS = 6  # resource0..resource5; the expansion ROM is "rom", never mapped here
PCI_COMMAND = 0x04
CMD_IO, CMD_MEMORY = 0x1, 0x2

LOCKDOWN_MESSAGE = "BAR mapping refused (kernel lockdown?)"
CLAIMED_MESSAGE = "BAR is claimed by a bound driver; unbind it or run before drivers load"


class Resource(Frozen):
    """One line of ``resource``: region ``index``, ``start``..``end`` and the kernel's
    IORESOURCE_* ``flags``."""

    __slots__ = ("end", "flags", "index", "start")
    index: int
    start: int
    end: int
    flags: int

    def __init__(self, index: int, start: int, end: int, flags: int) -> None:
        _set(self, "index", index)
        _set(self, "start", start)
        _set(self, "end", end)
        _set(self, "flags", flags)

    @property
    def size(self) -> int:
        return self.end - self.start + 1 if self.end > self.start else 0

    @property
    def is_io(self) -> bool:
        return bool(self.flags & IORESOURCE_IO)

    @property
    def is_mem(self) -> bool:
        return bool(self.flags & IORESOURCE_MEM)

    @property
    def assigned(self) -> bool:
        """The kernel placed the region: it has a type, an address and is not marked
        unset or disabled (pci_read_bases() sets IORESOURCE_UNSET on a BAR it could not
        use, and the resource keeps only its size)."""
        return (bool(self.flags & (IORESOURCE_IO | IORESOURCE_MEM)) and self.start != 0
                and not self.flags & (IORESOURCE_UNSET | IORESOURCE_DISABLED))


def parse_resources(text: str) -> list[Resource]:
    """Every parseable line of a ``resource`` attribute; a malformed line becomes an empty
    region so that indexes stay those of the kernel."""
    out = []
    for i, line in enumerate(text.splitlines()):
        try:
            start, end, flags = (int(x, 16) for x in line.split()[:3])
        except ValueError:
            start = end = flags = 0
        out.append(Resource(i, start, end, flags))
    return out


def read_resources(device_dir: str) -> list[Resource]:
    """``resource`` below a device directory (a string path; restore keeps pathlib off)."""
    try:
        with open(os.path.join(device_dir, "resource"), "rb") as f:
            return parse_resources(f.read(65536).decode("ascii", "replace"))
    except OSError:
        return []


def config_bars(config: bytes) -> list[tuple[int, int, int, bool]]:
    """(index, offset, address, is_io) of each implemented BAR in a config image, 64-bit
    ones with their upper half; header types 0 (six BARs) and 1 (two). An all-zero BAR is
    left out: not implemented, or sized 0 (PCI 3.0 §6.2.5.1)."""
    if len(config) < 0x40:
        return []
    htype = config[0x0E] & 0x7F
    n = 6 if htype == 0 else 2 if htype == 1 else 0
    out = []
    i = 0
    while i < n:
        off = 0x10 + 4 * i
        v = int.from_bytes(config[off:off + 4], "little")
        if v & 1:
            out.append((i, off, v & 0xFFFFFFFC, True))
        else:
            addr = v & 0xFFFFFFF0
            if (v >> 1) & 3 == 2 and i + 1 < n:
                addr |= int.from_bytes(config[off + 4:off + 8], "little") << 32
                out.append((i, off, addr, False))
                i += 1
            elif v:
                out.append((i, off, addr, False))
        i += 1
    return out


def bar_disagreements(config: bytes, resources: list[Resource]) -> list[str]:
    """Each BAR whose address in config space is not the start of its ``resource`` line,
    in words; empty when the kernel and the device agree. x86 maps bus addresses 1:1; an
    architecture with a host-bridge offset (pcibios_resource_to_bus()) would need it added."""
    out = []
    by_index = {r.index: r for r in resources}
    for i, _off, addr, is_io in config_bars(config):
        r = by_index.get(i)
        if r is None or not (r.flags & (IORESOURCE_IO | IORESOURCE_MEM)):
            if addr:
                out.append(f"BAR{i} holds {addr:#x} but the kernel lists no region for it")
            continue
        if not r.assigned:
            if addr:
                out.append(f"BAR{i} holds {addr:#x}, a region the kernel left unassigned")
            continue
        if addr != r.start:
            out.append(f"BAR{i} holds {addr:#x}, the kernel's resource{i} starts at "
                       f"{r.start:#x}")
    return out


class BarError(HandoffError):
    """A BAR could not be opened or accessed. ``bar`` and ``path`` say which."""

    def __init__(self, message: str, *, bar: int | None = None, path: str | None = None,
                 errno_: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.bar = bar
        self.path = path
        self.errno = errno_


class BarUnavailable(BarError):
    """No such BAR to map: not assigned, an I/O-port BAR, not readable by this user, ..."""


class BarMappingRefused(BarError, EnvironmentProblem):
    """mmap of ``resourceN`` failed with EPERM: kernel lockdown refuses BAR access."""


class BarClaimed(BarError, EnvironmentProblem):
    """mmap of ``resourceN`` failed with EINVAL: a bound driver owns the region."""


_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SWAP = sys.byteorder != "little"  # PCI registers are little-endian


def _le(value: int, width: int) -> int:
    return int.from_bytes(value.to_bytes(width, "big"), "little") if _SWAP else value


class MmapFile:
    """A mapped ``resourceN``. Each access is ONE load or store of exactly ``width`` bytes:
    device registers must see the width they are defined for (NVMe CAP is a qword, an MSI-X
    Vector Control a dword), and a plain slice of an mmap is a memcpy that may split or merge
    accesses. Indexing a memoryview cast to B/H/I/Q compiles to a single sized load/store
    (CPython memoryobject.c: unpack_single/pack_single copy ``sizeof(type)`` bytes)."""

    def __init__(self, mm: mmap.mmap, size: int, writable: bool) -> None:
        self._mm = mm
        self.size = size
        self.writable = writable
        self._base = memoryview(mm)
        self._views = {w: self._base[:size - size % w].cast(f)  # type: ignore[call-overload]
                       for w, f in _FORMATS.items() if size >= w}

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writable: bool, bar: int | None = None,
             driver: str | Callable[[], str | None] | None = None,
             mmap_fn: Callable[..., mmap.mmap] = mmap.mmap) -> MmapFile:
        """Open and map ``path`` whole; errors become the BarError subclasses above.
        ``driver`` names the bound driver for the message when a claimed region is refused
        (or is a function that finds it then)."""
        p = os.fspath(path)
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(p, flags)
        except OSError as e:
            raise _open_error(e, p, bar) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BarUnavailable(f"{p} is not a regular file: not a BAR resource",
                                     bar=bar, path=p)
            size = st.st_size
            if size <= 0:
                raise BarUnavailable(f"{p} is empty: BAR{bar} has no size", bar=bar, path=p)
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            try:
                mm = mmap_fn(fd, size, flags=mmap.MAP_SHARED, prot=prot)
            except OSError as e:
                raise _mmap_error(e, p, bar, driver) from None
            except ValueError as e:
                raise BarUnavailable(f"{p}: cannot map: {e}", bar=bar, path=p) from None
        finally:
            os.close(fd)  # the mapping stays valid without the descriptor
        return cls(mm, size, writable)

    def read(self, offset: int, width: int) -> int:
        return _le(int(self._views[width][offset // width]), width)

    def write(self, offset: int, width: int, value: int) -> None:
        self._views[width][offset // width] = _le(value, width)

    def close(self) -> None:
        for v in self._views.values():
            v.release()
        self._base.release()
        self._mm.close()


def _open_error(e: OSError, path: str, bar: int | None) -> BarError:
    if e.errno == errno.ENOENT:
        return BarUnavailable(f"{path} does not exist: BAR{bar} is not implemented or not "
                              "assigned", bar=bar, path=path, errno_=e.errno)
    if e.errno in (errno.EACCES, errno.EPERM):
        return BarUnavailable(f"{path}: cannot open: {e.strerror}", bar=bar, path=path,
                              errno_=e.errno, hint="BAR access needs root (CAP_SYS_ADMIN)")
    if e.errno == errno.ELOOP:
        return BarUnavailable(f"{path} is a symbolic link: refused", bar=bar, path=path,
                              errno_=e.errno)
    return BarUnavailable(f"{path}: cannot open: {e.strerror}", bar=bar, path=path,
                          errno_=e.errno)


def _mmap_error(e: OSError, path: str, bar: int | None,
                driver: str | Callable[[], str | None] | None) -> BarError:
    if e.errno == errno.EPERM:
        return BarMappingRefused(
            f"{path}: {LOCKDOWN_MESSAGE}", bar=bar, path=path, errno_=e.errno,
            hint="under lockdown only the kernel's own resets (sysfs reset, remove/rescan) "
                 "reach the device; see /sys/kernel/security/lockdown")
    if e.errno == errno.EINVAL:
        if callable(driver):
            driver = driver()
        who = f" ({driver})" if driver else ""
        return BarClaimed(f"{path}: {CLAIMED_MESSAGE}{who}", bar=bar, path=path,
                          errno_=e.errno,
                          hint="run handoff before the driver binds (capture kernel, before "
                               "udev), or unbind it through sysfs driver/unbind")
    return BarUnavailable(f"{path}: mmap failed: {e.strerror}", bar=bar, path=path,
                          errno_=e.errno)




__all__ = [
    "CLAIMED_MESSAGE",
    "IORESOURCE_IO",
    "IORESOURCE_MEM",
    "IORESOURCE_UNSET",
    "LOCKDOWN_MESSAGE",
    "BarClaimed",
    "BarError",
    "BarMappingRefused",
    "BarUnavailable",
    "MmapFile",
    "Resource",
    "bar_disagreements",
    "config_bars",
    "parse_resources",
    "read_resources",
]
