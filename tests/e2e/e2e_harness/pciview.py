"""Host-side readers for lib.sh `kernel_view` directories: does the capture kernel's view of
PCI resources (sysfs `resource`, /proc/iomem) agree with what config space holds?

The kernel reads BARs and bridge windows once, at enumeration (pci_read_bases() and
pci_read_bridge_windows(), drivers/pci/probe.c), and drivers map what `resource` says
(pci_iomap() -> pci_resource_start()). A register changed behind its back afterwards leaves
the driver talking to an address the device no longer decodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .scenario import Result

COMMAND = 0x04
MEMORY = 0x0002
BUS_MASTER = 0x0004
# include/linux/ioport.h
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_DISABLED = 0x10000000
IORESOURCE_UNSET = 0x20000000
ROM_LINE = 6  # PCI_ROM_RESOURCE
BRIDGE_LINES = (13, 14, 15)  # PCI_BRIDGE_RESOURCES: I/O, memory, prefetchable memory windows


@dataclass(frozen=True)
class Resource:
    start: int
    end: int
    flags: int

    @property
    def assigned(self) -> bool:
        return bool(self.flags & (IORESOURCE_IO | IORESOURCE_MEM)) and not self.flags & (
            IORESOURCE_DISABLED | IORESOURCE_UNSET
        )


@dataclass(frozen=True)
class View:
    """One `kernel_view` directory: BDF -> config bytes, BDF -> resource lines, iomem, drivers."""

    config: dict[str, bytes]
    resources: dict[str, list[Resource]]
    iomem: list[tuple[int, int, str]]
    drivers: dict[str, str]
    nvme_msix: str


def view(result: Result, name: str) -> View:
    config: dict[str, bytes] = {}
    resources: dict[str, list[Resource]] = {}
    for key, path in result.files.items():
        if key.startswith(f"{name}/config/") and key.endswith(".bin"):
            config[Path(key).stem] = path.read_bytes()
        elif key.startswith(f"{name}/resource/"):
            resources[Path(key).name] = [
                Resource(*(int(x, 16) for x in line.split()))
                for line in path.read_text().splitlines()
                if line.strip()
            ]
    assert config and resources, f"{name}: no kernel_view in the results ({result.out_dir})"
    iomem = []
    for line in result.text(f"{name}/iomem").splitlines():
        m = re.match(r"^\s*([0-9a-f]+)-([0-9a-f]+) : (.*)$", line)
        if m:
            iomem.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    drivers = dict(line.split() for line in result.text(f"{name}/drivers").splitlines())
    msix = result.text(f"{name}/nvme-msix").strip()
    return View(config, resources, iomem, drivers, msix)


def u8(cfg: bytes, off: int) -> int:
    return cfg[off]


def u16(cfg: bytes, off: int) -> int:
    return int.from_bytes(cfg[off : off + 2], "little")


def u32(cfg: bytes, off: int) -> int:
    return int.from_bytes(cfg[off : off + 4], "little")


def header_type(cfg: bytes) -> int:
    return cfg[0x0E] & 0x7F


def bars(cfg: bytes) -> dict[int, tuple[int, bool]]:
    """BAR index -> (address, is I/O) as config space holds them; the upper half of a 64-bit
    BAR is part of its lower one."""
    count = 6 if header_type(cfg) == 0 else 2
    out: dict[int, tuple[int, bool]] = {}
    i = 0
    while i < count:
        low = u32(cfg, 0x10 + 4 * i)
        if low & 1:
            out[i] = (low & ~0x3 & 0xFFFFFFFF, True)
            i += 1
            continue
        addr = low & ~0xF & 0xFFFFFFFF
        if (low >> 1) & 3 == 2 and i + 1 < count:  # 64-bit
            addr |= u32(cfg, 0x10 + 4 * (i + 1)) << 32
            out[i] = (addr, False)
            i += 2
            continue
        out[i] = (addr, False)
        i += 1
    return out


def rom(cfg: bytes) -> int:
    return u32(cfg, 0x30 if header_type(cfg) == 0 else 0x38) & 0xFFFFF800


def rom_enabled(cfg: bytes) -> bool:
    return bool(u32(cfg, 0x30 if header_type(cfg) == 0 else 0x38) & 1)


def windows(cfg: bytes) -> dict[int, tuple[int, int]]:
    """A bridge's windows as config space holds them: resource line -> (base, limit); a closed
    window (base above limit) is left out (PCI-to-PCI Bridge spec 3.2.5.6-9)."""
    out = {}
    io_base, io_lim = u8(cfg, 0x1C), u8(cfg, 0x1D)
    base, lim = (io_base & 0xF0) << 8, ((io_lim & 0xF0) << 8) | 0xFFF
    if io_base & 0xF == 1:
        base |= u16(cfg, 0x30) << 16
        lim |= u16(cfg, 0x32) << 16
    if base <= lim:
        out[BRIDGE_LINES[0]] = (base, lim)
    base, lim = (u16(cfg, 0x20) & 0xFFF0) << 16, ((u16(cfg, 0x22) & 0xFFF0) << 16) | 0xFFFFF
    if base <= lim:
        out[BRIDGE_LINES[1]] = (base, lim)
    pb, pl = u16(cfg, 0x24), u16(cfg, 0x26)
    base, lim = (pb & 0xFFF0) << 16, ((pl & 0xFFF0) << 16) | 0xFFFFF
    if pb & 0xF == 1:
        base |= u32(cfg, 0x28) << 32
        lim |= u32(cfg, 0x2C) << 32
    if base <= lim:
        out[BRIDGE_LINES[2]] = (base, lim)
    return out


def disagreements(v: View) -> list[str]:
    """Every place where config space and the kernel's resources (sysfs `resource`, and for
    memory BARs /proc/iomem) disagree, one line each; empty when they agree."""
    out = []
    for bdf, cfg in sorted(v.config.items()):
        res = v.resources.get(bdf, [])
        for i, (addr, _io) in bars(cfg).items():
            r = res[i]
            if not r.assigned:
                continue
            if addr != r.start:
                out.append(f"{bdf} BAR{i}: config {addr:#x}, sysfs resource {r.start:#x}")
            elif r.flags & IORESOURCE_MEM and (r.start, r.end, bdf) not in v.iomem:
                out.append(f"{bdf} BAR{i}: {r.start:#x}-{r.end:#x} not in /proc/iomem as {bdf}")
        # The kernel writes a ROM BAR only while the ROM is enabled (pci_std_update_resource(),
        # pci_enable_rom() in drivers/pci/setup-res.c and rom.c): a disabled one may differ.
        r = res[ROM_LINE]
        if r.assigned and rom_enabled(cfg) and rom(cfg) != r.start:
            out.append(f"{bdf} ROM: config {rom(cfg):#x}, sysfs resource {r.start:#x}")
        if header_type(cfg) != 1:
            continue
        hw = windows(cfg)
        for line in BRIDGE_LINES:
            r = res[line]
            if not r.assigned or r.start > r.end:
                continue
            if hw.get(line) != (r.start, r.end):
                got = "closed" if line not in hw else f"{hw[line][0]:#x}-{hw[line][1]:#x}"
                out.append(
                    f"{bdf} window {line}: config {got}, sysfs resource {r.start:#x}-{r.end:#x}"
                )
    return out


def command(cfg: bytes) -> int:
    return u16(cfg, COMMAND)


def find_cap(cfg: bytes, cap_id: int) -> int:
    pos, hops = cfg[0x34] & 0xFC, 0
    while pos and hops < 48:
        if cfg[pos] == cap_id:
            return pos
        pos, hops = cfg[pos + 1] & 0xFC, hops + 1
    return 0


def msix_control(cfg: bytes) -> int | None:
    pos = find_cap(cfg, 0x11)
    return u16(cfg, pos + 2) if pos else None


def control_registers(cfg: bytes) -> dict[str, int]:
    """The registers that steer a function (not status bits a running device may flip between
    two reads): COMMAND, cache line size, BARs, ROM, interrupt line, a bridge's bus numbers,
    windows and Bridge Control, MSI-X Message Control and PCIe Device Control."""
    out = {"COMMAND": command(cfg), "CACHE_LINE_SIZE": cfg[0x0C], "INTERRUPT_LINE": cfg[0x3C]}
    if header_type(cfg) == 0:
        out.update({f"BAR{i}": u32(cfg, 0x10 + 4 * i) for i in range(6)})
        out["ROM"] = u32(cfg, 0x30)
    else:
        out.update({"BAR0": u32(cfg, 0x10), "BAR1": u32(cfg, 0x14), "ROM": u32(cfg, 0x38)})
        out["BUS_NUMBERS"] = int.from_bytes(cfg[0x18:0x1B], "little")
        out["IO_WINDOW"] = u16(cfg, 0x1C) | u32(cfg, 0x30) << 16
        out["MEMORY_WINDOW"] = u32(cfg, 0x20)
        out["PREF_WINDOW"] = u32(cfg, 0x24) | u32(cfg, 0x28) << 32 | u32(cfg, 0x2C) << 64
        out["BRIDGE_CONTROL"] = u16(cfg, 0x3E)
    ctl = msix_control(cfg)
    if ctl is not None:
        out["MSIX_CONTROL"] = ctl
    pos = find_cap(cfg, 0x10)
    if pos:
        out["DEVCTL"] = u16(cfg, pos + 8)
    return out


def changed_registers(before: bytes, after: bytes) -> dict[str, tuple[int, int]]:
    a, b = control_registers(before), control_registers(after)
    return {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}
