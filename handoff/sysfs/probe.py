"""The kernel capability probe: what the running kernel lets handoff do to PCI devices
(lockdown mode, config writes, BAR mapping, remove + rescan, the resets each device offers).

Measured on Debian 6.1 (docs/lockdown.md): under ``lockdown=integrity``
config writes fail with EPERM (``pci_write_config()`` in drivers/pci/pci-sysfs.c checks
``security_locked_down(LOCKDOWN_PCI_ACCESS)``; ``setpci`` still exits 0, so only the errno of
our own ``pwrite`` is trusted), mmap of ``resourceN`` fails with EPERM (``pci_mmap_resource()``,
same check), while config reads, sysfs ``reset`` and ``reset_method``, unbind/bind and
``remove`` + ``rescan`` still work. Without lockdown, mmap of a BAR that a bound driver claimed
fails with EINVAL: that is not lockdown and is never reported as such.

:func:`probe` answers each question either by asking the kernel (one harmless probe each, on
one device) or by inference, and says which in :class:`Check`. Probes are opt-in: a dry run
writes and maps nothing. :func:`describe` and :func:`describe_text` are what ``handoff
status`` and the restore report show.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handoff._slots import Slots
from handoff.sysfs import paths as _paths
from handoff.sysfs.config import ConfigAccessError, ConfigSpace
from handoff.sysfs.tree import SysfsTree

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

LOCKED_MODES = ("integrity", "confidentiality")
INTERRUPT_LINE = 0x3C  # PCI 3.0 §6.2.4: scratch for software, no hardware effect
_IORESOURCE_MEM = 0x200  # include/linux/ioport.h
_BAR_CANDIDATES = 3  # unbound devices tried when a mapping fails for a reason other than EPERM


ConfigFactory = Callable[["Path"], Any]


class Check(Slots):
    """One capability and how it was established: ``ok`` True/False/None (unknown),
    ``how`` "probed", "inferred" or "not probed", ``detail`` the evidence in words."""

    __slots__ = ("detail", "device", "errno", "how", "ok")
    ok: bool | None
    how: str
    detail: str
    device: str | None
    errno: str | None

    def __init__(self, ok: bool | None, how: str, detail: str, device: str | None = None,
                 errno: str | None = None) -> None:
        self.ok = ok
        self.how = how
        self.detail = detail
        self.device = device
        self.errno = errno

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"permitted": self.ok, "how": self.how, "detail": self.detail}
        if self.device:
            d["device"] = self.device
        if self.errno:
            d["errno"] = self.errno
        return d


class DeviceCaps(Slots):
    """The sysfs attributes that decide what the kernel can do to one device for us."""

    __slots__ = (
        "addr",
        "driver",
        "enable",
        "remove",
        "reset",
        "reset_method_file",
        "reset_methods",
    )
    addr: str
    reset_methods: tuple[str, ...]
    reset: bool  # the ``reset`` attribute exists (the kernel has a reset function)
    reset_method_file: bool  # kernels before 5.15 have ``reset`` but no reset_method
    remove: bool
    driver: str | None
    enable: bool  # the ``enable`` attribute exists (pci_enable/disable_device)

    def __init__(self, addr: str, reset_methods: tuple[str, ...] = (), reset: bool = False,
                 reset_method_file: bool = False, remove: bool = False, driver: str | None = None,
                 enable: bool = False) -> None:
        self.addr = addr
        self.reset_methods = reset_methods
        self.reset = reset
        self.reset_method_file = reset_method_file
        self.remove = remove
        self.driver = driver
        self.enable = enable

    @property
    def resets(self) -> tuple[str, ...]:
        """Methods a sysfs reset can use, best first (the kernel lists them in its order of
        preference, pci_reset_fn_methods[]); ``("default",)`` on a kernel with ``reset`` but
        no ``reset_method``: the kernel picks."""
        if not self.reset:
            return ()
        if not self.reset_method_file:
            return ("default",)
        return self.reset_methods

    def reset_problem(self) -> str | None:
        if not self.reset:
            return ("no sysfs reset: the kernel has no reset method for this function "
                    "(no `reset` attribute)")
        if self.reset_method_file and not self.reset_methods:
            return "reset_method is empty: every reset method is disabled"
        return None

    def to_json(self) -> dict[str, Any]:
        return {"reset_methods": list(self.reset_methods), "reset": self.reset,
                "remove": self.remove, "driver": self.driver}


class Environment(Slots):
    __slots__ = (
        "bar_check",
        "bars_mappable",
        "config_check",
        "config_writes_permitted",
        "devices",
        "lockdown",
        "notes",
        "rescan",
        "reset_permitted",
    )
    lockdown: str | None  # "none", "integrity", "confidentiality"; None = unknown
    config_writes_permitted: bool | None  # None = unknown until a write is tried
    reset_permitted: bool | None
    notes: list[str]
    bars_mappable: bool | None
    config_check: Check | None
    bar_check: Check | None
    rescan: bool | None  # <root>/bus/pci/rescan exists
    devices: dict[str, DeviceCaps]

    def __init__(self, lockdown: str | None = None, config_writes_permitted: bool | None = None,
                 reset_permitted: bool | None = None, notes: list[str] | None = None,
                 bars_mappable: bool | None = None, config_check: Check | None = None,
                 bar_check: Check | None = None, rescan: bool | None = None,
                 devices: dict[str, DeviceCaps] | None = None) -> None:
        self.lockdown = lockdown
        self.config_writes_permitted = config_writes_permitted
        self.reset_permitted = reset_permitted
        self.notes = [] if notes is None else notes
        self.bars_mappable = bars_mappable
        self.config_check = config_check
        self.bar_check = bar_check
        self.rescan = rescan
        self.devices = {} if devices is None else devices

    @property
    def locked(self) -> bool:
        return self.lockdown in LOCKED_MODES

    def config_refusal(self) -> str | None:
        """Why config writes will be refused, or None when they are not known to be."""
        if self.config_writes_permitted is not False:
            return None
        if self.locked:
            return f"kernel lockdown ({self.lockdown}) refuses config writes"
        c = self.config_check
        return f"the kernel refuses config writes ({c.detail if c else 'EPERM'})"

    def bar_refusal(self) -> str | None:
        """Why BAR mapping will be refused (plugins get it as ``refuse_bars``), or None."""
        if self.bars_mappable is not False:
            return None
        if self.locked:
            return (f"kernel lockdown ({self.lockdown}) refuses BAR mapping: not attempted "
                    "(each refusal would cost a kernel log line)")
        c = self.bar_check
        return f"BAR mapping refused ({c.detail if c else 'EPERM'}): not attempted"

    def caps(self, addr: str) -> DeviceCaps | None:
        return self.devices.get(addr)

    def to_json(self) -> dict[str, Any]:
        """The summary the restore report carries (per-device attributes left out)."""
        return {"lockdown": self.lockdown,
                "config_writes_permitted": self.config_writes_permitted,
                "bars_mappable": self.bars_mappable,
                "reset_permitted": self.reset_permitted, "rescan": self.rescan}


def parse_lockdown(text: str) -> str | None:
    """The bracketed mode of ``/sys/kernel/security/lockdown`` ("none [integrity] ...")."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def probe(sysfs_root: Path | str, *, probe_writes: bool = False, probe_bars: bool = False,
          config_factory: ConfigFactory = ConfigSpace,
          mmap_fn: Callable[..., mmap.mmap] = mmap.mmap) -> Environment:
    """What the kernel behind ``sysfs_root`` permits.

    Always read: the lockdown mode (securityfs at ``kernel/security/lockdown``), every
    device's ``reset_method``, ``reset``, ``remove`` and ``driver``, and ``bus/pci/rescan``.
    ``probe_writes`` writes back the Interrupt Line byte of one device (the value just read)
    and judges by the pwrite's errno and a read-back. ``probe_bars`` maps (read-only, without
    reading) the smallest memory BAR of an unbound device, unless lockdown already says no.
    ``config_factory`` and ``mmap_fn`` are the seams tests use to simulate the kernel.
    """
    root = _paths.pathstr(sysfs_root)  # as str(Path(sysfs_root)) spells it
    tree = SysfsTree(root)
    env = Environment()
    _read_lockdown(env, root)
    _read_devices(env, tree)
    env.rescan = os.path.exists(_paths.join(root, "bus", "pci", "rescan"))
    if env.lockdown is not None:  # lockdown never restricts the kernel's own resets
        env.reset_permitted = True
    if probe_writes:
        env.config_check = _probe_write(env, tree, config_factory)
    elif env.locked:
        env.config_check = Check(False, "inferred", f"lockdown {env.lockdown} refuses them "
                                 "(pci_write_config(): LOCKDOWN_PCI_ACCESS)")
    else:
        env.config_check = Check(None, "not probed", "no write was tried")
    env.config_writes_permitted = env.config_check.ok
    if env.locked:
        env.bar_check = Check(False, "inferred", f"lockdown {env.lockdown} refuses them "
                              "(pci_mmap_resource(): LOCKDOWN_PCI_ACCESS); not asked")
    elif probe_bars:
        env.bar_check = _probe_bar(env, tree, mmap_fn)
    elif env.config_check.ok is False and env.config_check.errno == "EPERM":
        env.bar_check = Check(False, "inferred", "config writes fail with EPERM, which lockdown "
                              "gives BAR mapping too; not asked")
    else:
        env.bar_check = Check(None, "not probed", "no BAR was mapped")
    env.bars_mappable = env.bar_check.ok
    if env.locked:
        env.notes.append(f"kernel lockdown ({env.lockdown}): config writes and BAR mapping are "
                         "refused; sysfs reset and remove + rescan still work")
    return env


def _read_lockdown(env: Environment, root: str) -> None:
    path = _paths.join(root, "kernel", "security", "lockdown")
    try:
        with open(path, encoding=None) as f:
            env.lockdown = parse_lockdown(f.read())
    except OSError:
        sec = _paths.join(root, "kernel", "security")
        why = ("securityfs is not mounted there (mount -t securityfs securityfs "
               f"{sec})") if os.path.isdir(sec) and not os.listdir(sec) else "it is not readable"
        env.notes.append(f"{path}: {why}; lockdown mode unknown")


def _read_devices(env: Environment, tree: SysfsTree) -> None:
    try:
        addrs = tree.pci_addresses()
    except Exception as e:  # noqa: BLE001 - no PCI sysfs: nothing per device to report
        env.notes.append(str(e))
        return
    devices = _paths.join(_paths.pathstr(tree.root_dir), "bus", "pci", "devices")
    for addr in addrs:
        ddir = _paths.join(devices, addr)
        try:
            names = set(os.listdir(ddir))
        except OSError:
            continue
        methods = tuple((_paths.read_attr(_paths.join(ddir, "reset_method")) or "").split()) \
            if "reset_method" in names else ()
        env.devices[addr] = DeviceCaps(addr, methods, "reset" in names,
                                       "reset_method" in names, "remove" in names,
                                       _paths.link_name(_paths.join(ddir, "driver")),
                                       "enable" in names)


def _device_dir(tree: SysfsTree, addr: str) -> str:
    """``str(tree.device_dir(addr))``, without pathlib."""
    return _paths.join(_paths.pathstr(tree.root_dir), "bus", "pci", "devices", addr)


def _config_path(tree: SysfsTree, addr: str, factory: ConfigFactory) -> Any:
    """The device's ``config`` for ``factory``: a string for the default ConfigSpace, the
    ``Path`` the seam promises otherwise."""
    path = _paths.join(_device_dir(tree, addr), "config")
    if factory is ConfigSpace:
        return path
    from pathlib import Path

    return Path(path)


def _errname(e: int | None) -> str:
    return errno.errorcode.get(e or 0, str(e))


def _probe_candidates(env: Environment, tree: SysfsTree,
                      factory: ConfigFactory) -> tuple[str, Any, int] | None:
    """The first device (unbound first, then by address) whose header type 0 config reads:
    its address, accessor and Interrupt Line value."""
    order = sorted(env.devices.values(), key=lambda c: (c.driver is not None, c.addr))
    for c in order:
        port = factory(_config_path(tree, c.addr, factory))
        try:
            ids = port.read(0, 4)
            htype = port.read(0x0E, 1) & 0x7F
            if ids == 0xFFFFFFFF or htype != 0:
                continue
            return c.addr, port, port.read(INTERRUPT_LINE, 1)
        except (ConfigAccessError, OSError, ValueError):
            continue
    return None


def _probe_write(env: Environment, tree: SysfsTree, factory: ConfigFactory) -> Check:
    """Write back Interrupt Line (0x3c) of ONE device: software scratch, no hardware effect.
    Judged by our own pwrite's errno and a read-back, never by a tool's exit status."""
    found = _probe_candidates(env, tree, factory)
    if found is None:
        return Check(None, "not probed", "no readable header-type-0 device to probe")
    addr, port, value = found
    where = f"Interrupt Line ({INTERRUPT_LINE:#x}) of {addr} written back as {value:#04x}"
    try:
        port.write(INTERRUPT_LINE, 1, value)
        back = port.read(INTERRUPT_LINE, 1)
    except ConfigAccessError as e:
        name = _errname(e.errno)
        if e.errno == errno.EPERM:
            return Check(False, "probed", f"{where}: EPERM (kernel lockdown, or another "
                         "security module)", addr, name)
        if e.errno == errno.EACCES:
            return Check(None, "probed", f"{where}: EACCES: cannot open config for writing "
                         "(not root?)", addr, name)
        return Check(None, "probed", f"{where}: {e}", addr, name)
    if back != value:
        return Check(None, "probed", f"{where}: read back {back:#04x}: the write did not "
                     "take, for a reason other than a refusal", addr)
    return Check(True, "probed", f"{where}: written and read back", addr)


def _bars_of(tree: SysfsTree, addr: str) -> list[tuple[int, int]]:
    """(size, index) of the memory BARs in ``resource`` that have a resourceN file."""
    out = []
    ddir = _device_dir(tree, addr)
    for i, line in enumerate((_paths.read_attr(_paths.join(ddir, "resource")) or "")
                             .splitlines()[:6]):
        try:
            start, end, flags = (int(x, 16) for x in line.split()[:3])
        except ValueError:
            continue
        if flags & _IORESOURCE_MEM and end > start and \
                os.path.exists(_paths.join(ddir, f"resource{i}")):
            out.append((end - start + 1, i))
    return out


def _probe_bar(env: Environment, tree: SysfsTree,
               mmap_fn: Callable[..., mmap.mmap]) -> Check:
    """Map one small memory BAR of an unbound device read-only and unmap it, reading nothing
    (a read can have side effects: clear-on-read registers). EPERM is lockdown; EINVAL is a
    driver's claim on the region (CONFIG_IO_STRICT_DEVMEM), which says nothing of lockdown,
    so the next candidate is tried."""
    from handoff.sysfs.resource import BarClaimed, BarError, BarMappingRefused, MmapFile

    cands = sorted((size, c.addr, i) for c in env.devices.values() if c.driver is None
                   for size, i in _bars_of(tree, c.addr))
    if not cands:
        return Check(None, "not probed", "no unbound device with a memory BAR to map")
    seen: list[str] = []
    for size, addr, i in cands[:_BAR_CANDIDATES]:
        path = _paths.join(_device_dir(tree, addr), f"resource{i}")
        try:
            MmapFile.open(path, writable=False, bar=i, mmap_fn=mmap_fn).close()
        except BarMappingRefused:
            return Check(False, "probed", f"mmap of {addr} resource{i} ({size:#x} bytes): "
                         "EPERM (kernel lockdown)", addr, "EPERM")
        except BarClaimed:
            seen.append(f"{addr} resource{i}: EINVAL (claimed by a driver, not lockdown)")
            continue
        except BarError as e:
            seen.append(f"{addr} resource{i}: {e}")
            continue
        return Check(True, "probed", f"mmap of {addr} resource{i} ({size:#x} bytes, "
                     "read-only, nothing read): mapped", addr)
    return Check(None, "probed", "; ".join(seen))


# --- what status and the report show ---------------------------------------------------------

def describe(env: Environment) -> dict[str, Any]:
    """The whole environment as one JSON-ready document (``handoff status --json``)."""
    with_reset = sorted(a for a, c in env.devices.items() if c.resets)
    return {
        "lockdown": env.lockdown,
        "config_writes": (env.config_check or Check(env.config_writes_permitted, "given",
                                                    "set by the caller")).to_json(),
        "bar_mapping": (env.bar_check or Check(env.bars_mappable, "given",
                                               "set by the caller")).to_json(),
        "reset": {"permitted": env.reset_permitted, "devices": len(with_reset)},
        "rescan": {"available": env.rescan},
        "devices": {a: c.to_json() for a, c in sorted(env.devices.items())},
        "notes": list(env.notes),
    }


def _word(ok: bool | None) -> str:
    return {True: "permitted", False: "REFUSED", None: "unknown"}[ok]


def describe_text(env: Environment) -> str:
    """A few aligned lines (16-column labels, as ``handoff status`` prints)."""
    d = describe(env)
    lines = [f"{'lockdown':<16}{env.lockdown or 'unknown'}"]
    for key, label in (("config_writes", "config writes"), ("bar_mapping", "BAR mapping")):
        c = d[key]
        lines.append(f"{label:<16}{_word(c['permitted'])} ({c['how']}: {c['detail']})")
    resets = [f"{a[5:]} {','.join(c.resets)}" for a, c in sorted(env.devices.items())
              if c.resets]
    lines.append(f"{'sysfs reset':<16}{len(resets)} of {len(env.devices)} device(s)"
                 + (": " + "; ".join(resets) if resets else ""))
    lines.append(f"{'remove+rescan':<16}"
                 + {True: "available", False: "no bus/pci/rescan", None: "unknown"}[env.rescan])
    lines.extend(f"{'note':<16}{n}" for n in env.notes)
    return "\n".join(lines)


__all__ = [
    "LOCKED_MODES",
    "Check",
    "DeviceCaps",
    "Environment",
    "describe",
    "describe_text",
    "parse_lockdown",
    "probe",
]
