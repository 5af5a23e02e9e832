"""Walk a PCI sysfs tree (the real /sys or a copy) into ``PciDevice`` objects with live config.

Cost matters: ``handoff save`` should read N devices no slower than ``lspci -xxxx`` does. So
each device costs one ``pread`` of its config file, one directory listing (which tells which
optional attributes exist, so absent ones cost nothing), one ``readlink`` for the topology and
one for the driver, and small reads of ``resource`` and the optional attributes. The ids
come from the config bytes the device returned rather than six more attribute files; sysfs
attributes are read only when the config read was too short to hold them (non-root readers).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from handoff._slots import Slots
from handoff.devices import capabilities as caps
from handoff.devices.model import Bar, PciDevice, PciIds, Snapshot
from handoff.sysfs import SysfsTree

NOT_ROOT = "not root: the kernel returns 64 bytes of config space to unprivileged readers"
UNPRIVILEGED_BYTES = 64  # drivers/pci/pci-sysfs.c pci_read_config: !CAP_SYS_ADMIN -> 64
CONFIG_SIZES = (256, 4096)

# Directories below a PCI function that are attribute groups or PCI-core bookkeeping, not
# Linux device classes (drivers/pci/pci-sysfs.c, drivers/base/power/sysfs.c, msi.c).
_NOT_CLASS = frozenset({"power", "msi_irqs", "link", "pci_bus", "wakeup", "iommu",
                        "firmware_node", "driver", "subsystem", "iommu_group", "physfn",
                        "statistics", "queues", "holders", "slaves", "mq", "trace",
                        "integrity", "queue", "device", "bdi", "subsystem_device"})
_CLASS_WALK_BUDGET = 48  # directories looked at per function when finding classes
_CLASS_WALK_DEPTH = 4


class Collection(Slots):
    """The devices of one walk, and what went wrong on the way (per address)."""

    __slots__ = ("devices", "privileged", "warnings")
    devices: list[PciDevice]
    warnings: list[str]
    privileged: bool

    def __init__(self, devices: list[PciDevice], warnings: list[str] | None = None,
                 privileged: bool = True) -> None:
        self.devices = devices
        self.warnings = [] if warnings is None else warnings
        self.privileged = privileged


def is_privileged() -> bool:
    """Whether sysfs will return full config space to us (CAP_SYS_ADMIN; root approximates)."""
    return os.geteuid() == 0


def read_config(tree: SysfsTree, addr: str, *, privileged: bool,
                _path: str | None = None) -> Snapshot:
    """The live config snapshot of one function: a single ``pread`` of up to 4096 bytes.

    ``size`` is the device's config size: the bytes returned when the read was complete,
    else the sysfs file size (which sysfs reports truthfully even to unprivileged readers).
    """
    path = _path if _path is not None else str(tree.config(addr).path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, 4096, 0)
        finally:
            os.close(fd)
    except OSError as e:
        return Snapshot("live", _stat_size(path, 0), b"", f"read error: {e.strerror or e}")
    n = len(data)
    if n == 4096 or n == 256:
        return Snapshot("live", n, data)
    size = _stat_size(path, n)
    if n >= size:
        return Snapshot("live", size, data[:size])
    if not privileged and n <= UNPRIVILEGED_BYTES:
        reason = NOT_ROOT
    else:
        reason = f"short read: {n} of {size} bytes"
    return Snapshot("live", size, data, reason)


def _stat_size(path: os.PathLike[str] | str, n: int) -> int:
    try:
        st = os.stat(path).st_size
    except OSError:
        st = 0
    if st in CONFIG_SIZES:
        return st
    return 4096 if n > 256 else 256


def ids_from(tree: SysfsTree, addr: str, config: bytes) -> PciIds:
    """Ids from config bytes (what the device reports; what the capture kernel will see),
    falling back to the sysfs attributes for fields the read did not reach."""
    if len(config) >= 0x30:
        sv, sd = caps.subsystem_ids(config)
        htype = config[0x0E] & 0x7F
        if htype == 1 and caps.find(config, caps.PCI_CAP_ID_SSVID) is None and \
                len(config) < 256:
            sv = _attr_int(tree, addr, "subsystem_vendor")
            sd = _attr_int(tree, addr, "subsystem_device")
        return PciIds(
            vendor=config[0] | config[1] << 8,
            device=config[2] | config[3] << 8,
            subvendor=sv,
            subdevice=sd,
            class_code=config[9] | config[10] << 8 | config[11] << 16,
            revision=config[8],
        )
    return PciIds(
        vendor=_attr_int(tree, addr, "vendor"),
        device=_attr_int(tree, addr, "device"),
        subvendor=_attr_int(tree, addr, "subsystem_vendor"),
        subdevice=_attr_int(tree, addr, "subsystem_device"),
        class_code=_attr_int(tree, addr, "class"),
        revision=_attr_int(tree, addr, "revision"),
    )


def _attr_int(tree: SysfsTree, addr: str, name: str) -> int:
    v = tree.attr(addr, name)
    try:
        return int(v, 0) if v else 0
    except ValueError:
        return 0


_ZERO_LINE = "0x0000000000000000 0x0000000000000000 0x0000000000000000"


def parse_resource(text: str | None) -> list[Bar]:
    """BARs 0-5 and the expansion ROM (6) from sysfs ``resource`` (start end flags per line;
    drivers/pci/pci-sysfs.c resource_show). Unused lines (all zero) are left out."""
    bars: list[Bar] = []
    if not text:
        return bars
    for i, line in enumerate(text.split("\n", 7)[:7]):
        if line == _ZERO_LINE:  # most lines: the kernel prints unused resources as zeros
            continue
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            start, end, flags = int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)
        except ValueError:
            continue
        if not (start or end or flags):
            continue
        size = end - start + 1 if end >= start and (start or end) else 0
        bars.append(Bar(i, start, size, flags))
    return bars


def device_path(tree: SysfsTree, addr: str, *, _link: str | None = None) -> list[str]:
    """Components of the device's directory under ``devices/`` (its bridge chain).

    One ``readlink`` of ``bus/pci/devices/ADDR`` suffices when it has the kernel's relative
    form ``../../../devices/...``; otherwise fall back to resolving the real path.
    """
    try:
        target = os.readlink(_link if _link is not None else tree.device_dir(addr))
    except OSError:
        return tree.device_path(addr)
    prefix = "../../../devices/"
    if target.startswith(prefix) and ".." not in target[len(prefix):].split("/"):
        return [c for c in target[len(prefix):].split("/") if c]
    return tree.device_path(addr)


def _is_pci_addr(s: str) -> bool:
    from handoff.payload import is_pci_addr

    return is_pci_addr(s)  # the reader's rule (R20): what it refuses, save never writes


def find_classes(ddir: str, entries: Iterable[os.DirEntry[str]]) -> list[str]:
    """Linux device classes of the class devices below a function (``net``, ``block``,
    ``nvme``...): directories whose ``subsystem`` link points into ``class/``.

    The walk does not enter child PCI functions or attribute groups, and is bounded in
    depth and in directories visited, so a strange tree cannot make it expensive.
    """
    found: set[str] = set()
    budget = _CLASS_WALK_BUDGET
    queue: list[tuple[str, int]] = []
    for e in entries:
        if _class_candidate(e):
            queue.append((e.path, 1))
    while queue and budget > 0:
        path, depth = queue.pop(0)
        budget -= 1
        try:
            target = os.readlink(os.path.join(path, "subsystem"))
        except OSError:
            target = ""
        if target:
            head, name = os.path.split(target.rstrip("/"))
            if os.path.basename(head) == "class":
                found.add(name)
        if depth >= _CLASS_WALK_DEPTH:
            continue
        try:
            with os.scandir(path) as it:
                for e in it:
                    if _class_candidate(e):
                        queue.append((e.path, depth + 1))
        except OSError:
            continue
    return sorted(found)


def _class_candidate(e: os.DirEntry[str]) -> bool:
    if e.name in _NOT_CLASS or ":" in e.name:
        return False  # PCI functions below a bridge and PCIe port services contain ':'
    try:
        return e.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _read_text(path: str) -> str | None:
    """A small sysfs attribute's text (one open/read/close, no Python file object)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode("utf-8", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _int(text: str | None) -> int:
    try:
        return int(text, 0) if text else 0
    except ValueError:
        return 0


def read_device(tree: SysfsTree, addr: str, *, privileged: bool = True,
                _base: str | None = None) -> PciDevice:
    """One function's model: ids, topology, driver, BARs, reset methods, SR-IOV, DSN,
    classes and the live config snapshot."""
    return _read_device(tree, addr, privileged, _base)[0]


def _read_device(tree: SysfsTree, addr: str, privileged: bool,
                 _base: str | None) -> tuple[PciDevice, list[str]]:
    """One function's model: ids, topology, driver, BARs, reset methods, SR-IOV, DSN,
    classes and the live config snapshot.

    Attribute paths are built as strings under ``tree``'s device directory: the per-device
    cost is dominated by syscalls, and pathlib would add tens of object creations per device.
    """
    base = _base if _base is not None else tree.pci_devices_dir
    ddir = f"{base}/{addr}"
    live = read_config(tree, addr, privileged=privileged, _path=f"{ddir}/config")
    try:
        with os.scandir(ddir) as it:
            entries = list(it)
    except OSError:
        entries = []
    names = {e.name for e in entries}
    driver = None
    if "driver" in names:
        try:
            driver = os.path.basename(os.readlink(f"{ddir}/driver"))
        except OSError:
            driver = None
    reset_methods: list[str] = []
    if "reset_method" in names:
        reset_methods = (_read_text(f"{ddir}/reset_method") or "").split()
    sriov = None
    if "sriov_totalvfs" in names:
        sriov = (_int(_read_text(f"{ddir}/sriov_totalvfs")),
                 _int(_read_text(f"{ddir}/sriov_numvfs")) if "sriov_numvfs" in names else 0)
    bars = parse_resource(_read_text(f"{ddir}/resource")) if "resource" in names else []
    std, ext = caps.walk_standard(live.data), caps.walk_extended(live.data)
    problems = [w.problem for w in (std, ext) if w.problem]
    return PciDevice(
        addr=addr,
        ids=ids_from(tree, addr, live.data),
        path=device_path(tree, addr, _link=ddir),
        live=live,
        driver=driver,
        classes=find_classes(ddir, entries),
        bars=bars,
        reset_methods=reset_methods,
        sriov=sriov,
        dsn=caps.device_serial_number(live.data, ext),
    ), problems


def collect(tree: SysfsTree | None = None, *, privileged: bool | None = None,
            addresses: Iterable[str] | None = None) -> Collection:
    """Every PCI function under ``tree`` (default ``/sys``), sorted by address.

    ``privileged`` says whether short config reads mean "not root" (default: euid 0);
    tests pass False with a tree of 64-byte config files to exercise that path.
    """
    tree = tree or SysfsTree()
    if privileged is None:
        privileged = is_privileged()
    addrs = list(addresses) if addresses is not None else tree.pci_addresses()
    out = Collection([], privileged=privileged)
    base = tree.pci_devices_dir
    for addr in addrs:
        if not _is_pci_addr(addr):
            out.warnings.append(f"{addr!r}: not a PCI address the record can hold "
                                "(DDDD:BB:DD.F, device <= 1f, function <= 7), skipped")
            continue
        try:
            dev, problems = _read_device(tree, addr, privileged, base)
        except OSError as e:
            if e.errno == errno.ENOENT:  # hot-unplugged while we walked
                out.warnings.append(f"{addr}: disappeared during the walk")
                continue
            raise
        out.devices.append(dev)
        for problem in problems:
            out.warnings.append(f"{addr}: {problem}")
    partial = [d.addr for d in out.devices if d.live.partial == NOT_ROOT]
    if partial:
        out.warnings.insert(0, f"{len(partial)} device(s) read partially: {NOT_ROOT}; "
                               "run `handoff save` as root for full config space")
    return out
