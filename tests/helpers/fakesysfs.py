"""Build fake PCI sysfs trees in a temp dir from real config-space dumps (tests/fixtures).

The tree has the shape the kernel gives ``/sys`` and that ``lspci -A linux-sysfs
-O sysfs.path=ROOT/bus/pci`` reads::

    ROOT/devices/pci0000:00/0000:00:01.0/0000:01:00.0/{config,vendor,device,...,driver->}
    ROOT/bus/pci/devices/0000:01:00.0 -> ../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0
    ROOT/bus/pci/drivers/nvme/0000:01:00.0 -> ../../../../devices/pci0000:00/...
    ROOT/class/net/...                     (class devices live below the PCI function)

Two source layouts are understood:

* ``<BDF>.bin`` raw config dumps (qemu-q35-kdump), optionally with ``lspci-vvv.txt`` beside
  them, which gives bound drivers and BAR sizes. Topology comes from the bridges' secondary
  bus number (config byte 0x19).
* ``<BDF>/`` directories holding a sysfs-like copy (pci-config-firecracker): attribute files,
  ``driver_name`` and ``realpath`` (where the device directory resolved to: the topology).

Every attribute is derived from the dump (ids from config bytes when there are no attribute
files), so the tree is self-consistent. Nothing here touches the real ``/sys``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from handoff.sysfs import SysfsTree

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
Q35 = FIXTURES / "qemu-q35-kdump" / "first-kernel-before-crash"
Q35_CAPTURE = FIXTURES / "qemu-q35-kdump" / "capture-kernel-before-drivers"
FIRECRACKER = FIXTURES / "pci-config-firecracker"

_BDF = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")
_LSPCI_HEAD = re.compile(r"^(?:([0-9a-f]{4}):)?([0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]) ")
_LSPCI_REGION = re.compile(
    r"^\s+(?:Region (\d): (Memory|I/O ports) at ([0-9a-f]+)(?: \((\d+)-bit, (non-)?prefetchable\))?"
    r"|Expansion ROM at ([0-9a-f]+))"
    r".*\[size=(\d+)([KMG]?)\]")

# include/linux/ioport.h
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_READONLY = 0x4000
IORESOURCE_SIZEALIGN = 0x40000
IORESOURCE_MEM_64 = 0x100000
PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x4
PCI_BASE_ADDRESS_MEM_PREFETCH = 0x8


class Dev:
    """One device of a source: its config bytes and whatever attributes the source gives."""

    def __init__(self, addr: str, config: bytes, attrs: dict[str, str] | None = None,
                 driver: str | None = None, realpath: str | None = None,
                 resources: list[tuple[int, int, int]] | None = None):
        self.addr = addr
        self.config = config
        self.attrs = attrs or {}
        self.driver = driver
        self.realpath = realpath
        self.resources = resources  # 7 (start, end, flags) lines; None = derive zeros

    @property
    def domain(self) -> int:
        return int(self.addr[:4], 16)

    @property
    def bus(self) -> int:
        return int(self.addr[5:7], 16)

    @property
    def is_bridge(self) -> bool:
        return len(self.config) > 0x19 and (self.config[0x0E] & 0x7F) == 1

    @property
    def secondary_bus(self) -> int:
        return self.config[0x19]


def _le(b: bytes, off: int, n: int) -> int:
    return int.from_bytes(b[off:off + n], "little") if len(b) >= off + n else 0


def ids_from_config(config: bytes) -> dict[str, str]:
    """The id attributes the kernel derives from config space (drivers/pci/probe.c)."""
    vendor, device = _le(config, 0, 2), _le(config, 2, 2)
    cls = _le(config, 0x09, 3)
    rev = _le(config, 0x08, 1)
    sv = sd = 0
    htype = config[0x0E] & 0x7F if len(config) > 0x0E else 0
    if htype == 0:
        sv, sd = _le(config, 0x2C, 2), _le(config, 0x2E, 2)
    elif htype == 1:
        # Bridges carry subsystem ids in the SSVID capability (PCI_CAP_ID_SSVID, 0x0D).
        for off, cid in _caps(config):
            if cid == 0x0D:
                sv, sd = _le(config, off + 4, 2), _le(config, off + 6, 2)
                break
    return {"vendor": f"0x{vendor:04x}", "device": f"0x{device:04x}",
            "subsystem_vendor": f"0x{sv:04x}", "subsystem_device": f"0x{sd:04x}",
            "class": f"0x{cls:06x}", "revision": f"0x{rev:02x}"}


def _caps(config: bytes) -> Iterable[tuple[int, int]]:
    if len(config) < 0x40 or not (_le(config, 6, 2) & 0x10):
        return
    ptr = config[0x34] & 0xFC
    seen = 0
    while ptr >= 0x40 and ptr + 2 <= len(config) and seen < 48:
        yield ptr, config[ptr]
        ptr = config[ptr + 1] & 0xFC
        seen += 1


def _reset_methods(d: Dev, has_parent_bridge: bool) -> str:
    """A plausible reset_method value (drivers/pci/pci.c pci_reset_fn_methods order)."""
    methods = []
    for off, cid in _caps(d.config):
        if cid == 0x10 and _le(d.config, off + 4, 4) & (1 << 28):  # PCIe DevCap FLR
            methods.append("flr")
    for off, cid in _caps(d.config):
        if cid == 0x01 and not (_le(d.config, off + 4, 2) & 0x8):  # PM, !NoSoftRst
            methods.append("pm")
    if has_parent_bridge and not d.is_bridge:
        methods.append("bus")
    return " ".join(dict.fromkeys(methods))


def _size(n: str, unit: str) -> int:
    return int(n) << {"": 0, "K": 10, "M": 20, "G": 30}[unit]


def parse_lspci_vvv(text: str) -> dict[str, tuple[str | None, list[tuple[int, int, int]]]]:
    """addr -> (bound driver, 7 resource lines) from ``lspci -vvv`` text."""
    out: dict[str, tuple[str | None, list[tuple[int, int, int]]]] = {}
    addr = None
    for line in text.splitlines():
        m = _LSPCI_HEAD.match(line)
        if m:
            addr = f"{m.group(1) or '0000'}:{m.group(2)}"
            out[addr] = (None, [(0, 0, 0)] * 7)
            continue
        if addr is None:
            continue
        drv, res = out[addr]
        if "Kernel driver in use:" in line:
            out[addr] = (line.split(":", 1)[1].strip(), res)
            continue
        r = _LSPCI_REGION.match(line)
        if r:
            size = _size(r.group(7), r.group(8))
            res = list(res)
            if r.group(6):  # expansion ROM
                start = int(r.group(6), 16)
                flags = IORESOURCE_MEM | IORESOURCE_READONLY | IORESOURCE_SIZEALIGN | 0x2000
                res[6] = (start, start + size - 1, flags)
            else:
                idx, start = int(r.group(1)), int(r.group(3), 16)
                if r.group(2) == "I/O ports":
                    flags = IORESOURCE_IO | IORESOURCE_SIZEALIGN | 0x1
                else:
                    flags = IORESOURCE_MEM | IORESOURCE_SIZEALIGN
                    if r.group(4) == "64":
                        flags |= IORESOURCE_MEM_64 | PCI_BASE_ADDRESS_MEM_TYPE_64
                    if r.group(5) is None:
                        flags |= IORESOURCE_PREFETCH | PCI_BASE_ADDRESS_MEM_PREFETCH
                res[idx] = (start, start + size - 1, flags)
            out[addr] = (drv, res)
    return out


def load_source(source_dir: Path | str) -> list[Dev]:
    """Read a dump directory in either layout (see module docstring)."""
    src = Path(source_dir)
    devs: list[Dev] = []
    bins = sorted(src.glob("*.bin"))
    if bins:
        vvv = src / "lspci-vvv.txt"
        info = parse_lspci_vvv(vvv.read_text()) if vvv.exists() else {}
        for b in bins:
            addr = b.name[:-4]
            drv, res = info.get(addr, (None, None))
            devs.append(Dev(addr, b.read_bytes(), driver=drv, resources=res))
        return devs
    for d in sorted(p for p in src.iterdir() if p.is_dir() and _BDF.match(p.name)):
        attrs = {f.name: f.read_text().strip() for f in d.iterdir()
                 if f.is_file() and f.name not in ("config", "driver_name", "realpath")}
        drv = (d / "driver_name").read_text().strip() if (d / "driver_name").exists() else ""
        rp = (d / "realpath").read_text().strip() if (d / "realpath").exists() else None
        devs.append(Dev(d.name, (d / "config").read_bytes(), attrs, drv or None, rp))
    return devs


def _topology(devs: list[Dev]) -> dict[str, list[str]]:
    """addr -> path components under devices/ (host bridge dir first, ending with addr)."""
    by_addr = {d.addr: d for d in devs}
    upstream: dict[tuple[int, int], str] = {}  # (domain, secondary bus) -> bridge addr
    for d in devs:
        if d.is_bridge and d.secondary_bus:
            upstream[(d.domain, d.secondary_bus)] = d.addr
    paths: dict[str, list[str]] = {}

    def walk(addr: str, depth: int = 0) -> list[str]:
        if addr in paths:
            return paths[addr]
        d = by_addr[addr]
        if d.realpath:
            rel = d.realpath.split("/devices/", 1)[-1]
            p = [c for c in rel.split("/") if c]
        else:
            br = upstream.get((d.domain, d.bus))
            if br and br != addr and depth < 32:
                p = walk(br, depth + 1) + [addr]
            else:
                p = [f"pci{d.domain:04x}:{d.bus:02x}", addr]
        paths[addr] = p
        return p

    for d in devs:
        walk(d.addr)
    return paths


def _default_classes(devs: list[Dev]) -> dict[str, list[str]]:
    """Class devices below each function, laid out as the kernel does (virtio in between)."""
    out: dict[str, list[str]] = {}
    n_eth = n_vd = n_nvme = n_virtio = 0
    for d in devs:
        cls = _le(d.config, 0x09, 3) >> 8
        virtio = _le(d.config, 0, 2) == 0x1AF4 and d.driver == "virtio-pci"
        rel: list[str] = []
        if virtio:
            v = f"virtio{n_virtio}"
            n_virtio += 1
            if cls == 0x0200:
                rel = [f"{v}/net/eth{n_eth}"]
                n_eth += 1
            elif cls in (0x0100, 0x0180):
                rel = [f"{v}/block/vd{chr(ord('a') + n_vd)}"]
                n_vd += 1
            else:
                rel = []
        elif d.driver == "nvme":
            rel = [f"nvme/nvme{n_nvme}", f"nvme/nvme{n_nvme}/nvme{n_nvme}n1=block"]
            n_nvme += 1
        elif d.driver and cls == 0x0200:
            rel = [f"net/eth{n_eth}"]
            n_eth += 1
        if rel:
            out[d.addr] = rel
    return out


def _relink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def _class_of_leaf(rel: str) -> tuple[str, str]:
    """``"a/net/eth0"`` -> ("a/net/eth0", "net"); ``"nvme/nvme0/nvme0n1=block"`` names its class."""
    if "=" in rel:
        rel, cname = rel.split("=", 1)
        return rel, cname
    parts = rel.split("/")
    return rel, parts[-2] if len(parts) >= 2 else parts[0]


def build_tree(
    root: Path | str,
    source_dir: Path | str = Q35,
    *,
    drivers: Mapping[str, str | None] | None = None,
    classes: Mapping[str, list[str]] | None = None,
    reset_methods: Mapping[str, str | None] | None = None,
    sriov: Mapping[str, tuple[int, int]] | None = None,
    config_limit: int | None = None,
    config_override: Mapping[str, bytes] | None = None,
    only: Iterable[str] | None = None,
) -> Path:
    """Build a fake sysfs tree under ``root`` from ``source_dir``; returns ``root``.

    ``drivers`` overrides bound drivers (None = unbound); ``classes`` maps addr -> class-device
    paths relative to the device dir (``"virtio1/net/eth1"``, ``"net/eth0"``, or
    ``"nvme/nvme0/nvme0n1=block"`` when the class is not the parent directory's name); ``reset_methods``
    overrides the ``reset_method`` attribute (None = absent); ``sriov`` adds
    ``sriov_totalvfs``/``sriov_numvfs``; ``config_limit`` truncates every ``config`` file
    (as an unprivileged reader sees 64 bytes); ``config_override`` replaces config bytes;
    ``only`` restricts to some addresses.
    """
    root = Path(root)
    devs = load_source(source_dir)
    if only is not None:
        keep = set(only)
        devs = [d for d in devs if d.addr in keep]
    if config_override:
        for d in devs:
            if d.addr in config_override:
                d.config = bytes(config_override[d.addr])
    if drivers:
        for d in devs:
            if d.addr in drivers:
                d.driver = drivers[d.addr]
    paths = _topology(devs)
    cls_map = _default_classes(devs)
    if classes is not None:
        cls_map.update(classes)
    devroot = root / "devices"
    busroot = root / "bus" / "pci"
    (busroot / "devices").mkdir(parents=True, exist_ok=True)
    (busroot / "drivers").mkdir(parents=True, exist_ok=True)
    for d in devs:
        p = paths[d.addr]
        ddir = devroot.joinpath(*p)
        ddir.mkdir(parents=True, exist_ok=True)
        cfg = d.config if config_limit is None else d.config[:config_limit]
        (ddir / "config").write_bytes(cfg)
        attrs = ids_from_config(d.config)
        attrs.update({k: v for k, v in d.attrs.items()
                      if k in ("vendor", "device", "subsystem_vendor", "subsystem_device",
                               "class", "revision", "irq", "enable", "numa_node")})
        attrs.setdefault("irq", "0")
        attrs.setdefault("enable", "1" if d.driver else "0")
        attrs.setdefault("numa_node", "-1")
        attrs.setdefault("local_cpulist", "0-1")
        attrs["modalias"] = (
            "pci:v0000{}d0000{}sv0000{}sd0000{}bc{}sc{}i{}".format(
                attrs["vendor"][2:].upper(), attrs["device"][2:].upper(),
                attrs["subsystem_vendor"][2:].upper(), attrs["subsystem_device"][2:].upper(),
                attrs["class"][2:4].upper(), attrs["class"][4:6].upper(),
                attrs["class"][6:8].upper()))
        for k, v in attrs.items():
            (ddir / k).write_text(v + "\n")
        (ddir / "resource").write_text(_resource_text(d))
        has_parent = sum(1 for c in p[:-1] if _BDF.match(c)) > 0
        rm = _reset_methods(d, has_parent)
        if reset_methods is not None and d.addr in reset_methods:
            rm = reset_methods[d.addr] or ""
        if rm:
            (ddir / "reset_method").write_text(rm + "\n")
        if sriov and d.addr in sriov:
            total, num = sriov[d.addr]
            (ddir / "sriov_totalvfs").write_text(f"{total}\n")
            (ddir / "sriov_numvfs").write_text(f"{num}\n")
        (ddir / "power").mkdir(exist_ok=True)
        (ddir / "power" / "control").write_text("on\n")
        _relink(ddir / "subsystem", busroot)
        if d.driver:
            drvdir = busroot / "drivers" / d.driver
            drvdir.mkdir(parents=True, exist_ok=True)
            _relink(ddir / "driver", drvdir)
            _relink(drvdir / d.addr, ddir)
        if d.is_bridge:
            (ddir / "pci_bus" / f"{d.domain:04x}:{d.secondary_bus:02x}").mkdir(
                parents=True, exist_ok=True)
        for spec in cls_map.get(d.addr, []):
            rel, cname = _class_of_leaf(spec)
            leaf = ddir / rel
            leaf.mkdir(parents=True, exist_ok=True)
            (leaf / "uevent").write_text(f"DEVNAME={leaf.name}\n")
            (root / "class" / cname).mkdir(parents=True, exist_ok=True)
            _relink(leaf / "subsystem", root / "class" / cname)
            _relink(root / "class" / cname / leaf.name, leaf)
        _relink(busroot / "devices" / d.addr, ddir)
    return root


def _resource_text(d: Dev) -> str:
    if d.resources is not None:
        lines = list(d.resources)
    elif "resource" in d.attrs:
        return d.attrs["resource"] + "\n"
    else:
        lines = [(0, 0, 0)] * 7
    if d.is_bridge:  # IOV resources 7-12 and bridge windows 13-16 follow for bridges
        lines = lines + [(0, 0, 0)] * (17 - len(lines))
    return "".join(f"0x{s:016x} 0x{e:016x} 0x{f:016x}\n" for s, e, f in lines)


def synthetic_tree(root: Path | str, n: int, *, source_dirs: Iterable[Path | str] = (Q35, FIRECRACKER),
                   per_bus: int = 32) -> Path:
    """A tree of ``n`` endpoint functions replicating real dumps at new addresses (benchmarks).

    Devices sit on buses 1..k behind synthetic root ports on bus 0 (each root port is one of
    the real q35 root-port dumps with its bus numbers patched), ``per_bus`` devices per bus
    (device numbers 0-31, function 0). Root ports are counted in ``n``.
    """
    root = Path(root)
    pool: list[Dev] = []
    port: Dev | None = None
    for s in source_dirs:
        for d in load_source(s):
            if d.is_bridge:
                port = port or d
            elif (_le(d.config, 0x09, 3) >> 8) != 0x0600:  # not a host bridge
                pool.append(d)
    if port is None or not pool:
        raise ValueError("synthetic_tree needs a bridge and at least one endpoint in its sources")
    devroot = root / "devices" / "pci0000:00"
    busroot = root / "bus" / "pci"
    (busroot / "devices").mkdir(parents=True, exist_ok=True)
    made = 0
    bus = 1
    i = 0
    while made < n:
        rp_addr = f"0000:00:{(bus - 1) % 32:02x}.{(bus - 1) // 32 % 8}"
        if (bus - 1) >= 256:
            raise ValueError("synthetic_tree supports at most 255 buses")
        cfg = bytearray(port.config)
        cfg[0x18], cfg[0x19], cfg[0x1A] = 0, bus, bus
        rp_dir = devroot / rp_addr
        _write_dev(rp_dir, bytes(cfg), "pcieport", busroot, rp_addr, port.resources)
        made += 1
        for slot in range(per_bus):
            if made >= n:
                break
            src = pool[i % len(pool)]
            i += 1
            addr = f"0000:{bus:02x}:{slot:02x}.0"
            _write_dev(rp_dir / addr, src.config, src.driver, busroot, addr, src.resources,
                       reset="flr bus")
            made += 1
        bus += 1
    return root


def _write_dev(ddir: Path, config: bytes, driver: str | None, busroot: Path, addr: str,
               resources: list[tuple[int, int, int]] | None, reset: str | None = None) -> None:
    ddir.mkdir(parents=True, exist_ok=True)
    (ddir / "config").write_bytes(config)
    for k, v in ids_from_config(config).items():
        (ddir / k).write_text(v + "\n")
    (ddir / "irq").write_text("0\n")
    (ddir / "enable").write_text("1\n")
    (ddir / "numa_node").write_text("-1\n")
    dv = Dev(addr, config, resources=resources)
    (ddir / "resource").write_text(_resource_text(dv))
    if reset:
        (ddir / "reset_method").write_text(reset + "\n")
    if driver:
        drvdir = busroot / "drivers" / driver
        drvdir.mkdir(parents=True, exist_ok=True)
        _relink(ddir / "driver", drvdir)
    _relink(busroot / "devices" / addr, ddir)


def copy_tree(src_root: Path | str, dst_root: Path | str) -> Path:
    """Copy a (fake) sysfs tree keeping its symlinks as symlinks."""
    shutil.copytree(src_root, dst_root, symlinks=True)
    return Path(dst_root)


__all__ = [
    "FIRECRACKER",
    "FIXTURES",
    "Q35",
    "Q35_CAPTURE",
    "build_tree",
    "copy_tree",
    "ids_from_config",
    "load_source",
    "parse_lspci_vvv",
    "synthetic_tree",
]


def kernel_like_access() -> type:
    """A SysfsAccess whose sysfs ``enable``, ``remove`` and ``rescan`` behave as the kernel's
    do on a fake tree.

    Writing 0 to ``enable`` of an unbound device makes the kernel call pci_disable_device(),
    which clears Bus Master in COMMAND (do_pci_disable_device()); writing 1 first runs
    pci_enable_device(), which clears INTx Disable on a function without MSI (measured:
    COMMAND 0x0507 -> 0x0103). A rescan re-reads the BARs of every removed device and keeps
    them (pci_read_bases() on a valid address): its ``resource`` lines then start where
    config space says. A copy of a tree holds only files, so this stands in for those
    kernel actions. Config writes by userspace still go through the ConfigSpace seam (and
    are refused there under a simulated lockdown).
    """
    from handoff.restore.apply import SysfsAccess

    class KernelLikeAccess(SysfsAccess):
        removed: list[str]

        def write_attr(self, addr: str, name: str, text: str) -> None:
            super().write_attr(addr, name, text)
            if name == "enable":
                cfg = self.tree.device_dir(addr) / "config"
                data = bytearray(cfg.read_bytes())
                if text.strip() == "1":
                    data[5] &= ~0x04 & 0xFF  # PCI_COMMAND_INTX_DISABLE
                if text.strip() == "0":
                    data[4] &= ~0x04 & 0xFF  # PCI_COMMAND_MASTER
                cfg.write_bytes(bytes(data))

        def remove(self, addr: str) -> None:
            super().remove(addr)
            self.__dict__.setdefault("removed", []).append(addr)

        def rescan(self) -> None:
            super().rescan()
            for addr in self.__dict__.pop("removed", []):
                reread_resources(self.tree.device_dir(addr))

    return KernelLikeAccess


def add_remove_files(root: Path | str) -> Path:
    """What real sysfs has and a built tree lacks: ``remove`` on every device and
    ``bus/pci/rescan`` (empty files a test reads back to see what was written)."""
    root = Path(root)
    for link in (root / "bus" / "pci" / "devices").iterdir():
        (link / "remove").write_text("")
    (root / "bus" / "pci" / "rescan").write_text("")
    return root


def reread_resources(ddir: Path) -> None:
    """What the kernel does at enumeration for a BAR it keeps: ``resource`` line i starts at
    BAR i's address in ``config`` (sizes kept)."""
    from handoff.sysfs.resource import config_bars

    cfg = (ddir / "config").read_bytes()
    lines = (ddir / "resource").read_text().splitlines()
    for i, _, addr, _ in config_bars(cfg):
        start, end, flags = (int(x, 16) for x in lines[i].split())
        size = end - start
        lines[i] = f"0x{addr:016x} 0x{addr + size:016x} 0x{flags:016x}"
    (ddir / "resource").write_text("\n".join(lines) + "\n")


def q35_tree(tmp: Path, **kw: object) -> SysfsTree:
    """The q35 fixture tree under ``tmp/sys``, as a :class:`SysfsTree`."""
    from handoff.sysfs import SysfsTree

    return SysfsTree(build_tree(tmp / "sys", Q35, **kw))  # type: ignore[arg-type]
