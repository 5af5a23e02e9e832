"""Walk the PCI capability list and the PCIe extended capability list of a config snapshot.

Both lists are linked lists inside config space that the device controls, so a broken or
hostile device can make them loop or point outside the snapshot. Every walk here is bounded
the way the kernel bounds it (drivers/pci/pci.c: ``PCI_FIND_CAP_TTL`` = 48 hops for the
standard list, ``(4096 - 256) / 8`` = 480 hops for the extended list), refuses pointers into
the header or past the bytes that were read, and stops at the first pointer it has already
visited.
"""

from __future__ import annotations

from collections.abc import Iterator

from handoff._slots import Frozen, Slots

PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x10
PCI_CAPABILITY_LIST = 0x34  # header types 0 and 1
PCI_CB_CAPABILITY_LIST = 0x14  # header type 2 (CardBus)
PCI_FIND_CAP_TTL = 48  # drivers/pci/pci.c
PCI_CFG_SPACE_SIZE = 256
PCI_CFG_SPACE_EXP_SIZE = 4096
PCI_EXT_CAP_TTL = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) // 8  # drivers/pci/pci.c

PCI_CAP_ID_PM = 0x01
PCI_CAP_ID_MSI = 0x05
PCI_CAP_ID_VNDR = 0x09
PCI_CAP_ID_SSVID = 0x0D
PCI_CAP_ID_EXP = 0x10
PCI_CAP_ID_MSIX = 0x11

PCI_EXT_CAP_ID_ERR = 0x0001
PCI_EXT_CAP_ID_DSN = 0x0003
PCI_EXT_CAP_ID_SRIOV = 0x0010

# Names for display only; unknown ids print as hex.
CAP_NAMES = {0x01: "pm", 0x05: "msi", 0x09: "vendor", 0x0D: "ssvid", 0x10: "pcie", 0x11: "msix",
             0x12: "sata", 0x13: "af", 0x14: "ea"}
EXT_CAP_NAMES = {0x0001: "aer", 0x0002: "vc", 0x0003: "dsn", 0x000B: "vsec", 0x000D: "acs",
                 0x000E: "ari", 0x0010: "sriov", 0x0015: "rebar", 0x0018: "ltr", 0x001E: "l1ss",
                 0x0023: "dvsec"}


class Capability(Frozen):
    """One entry of a capability list: ``offset`` in config space, ``id``, ``extended``;
    ``version`` is the extended capability version (0 for standard capabilities)."""

    __slots__ = ("extended", "id", "offset", "version")
    offset: int
    id: int
    extended: bool
    version: int

    def __init__(self, offset: int, id: int, extended: bool = False,
                 version: int = 0) -> None:
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "extended", extended)
        object.__setattr__(self, "version", version)

    @property
    def name(self) -> str:
        table = EXT_CAP_NAMES if self.extended else CAP_NAMES
        return table.get(self.id, f"{self.id:#x}")


class Walk(Slots):
    """The result of a walk: the capabilities found and, if it stopped early, why."""

    __slots__ = ("caps", "problem")
    caps: list[Capability]
    problem: str | None

    def __init__(self, caps: list[Capability], problem: str | None = None) -> None:
        self.caps = caps
        self.problem = problem


def _u16(b: bytes, off: int) -> int:
    return b[off] | b[off + 1] << 8


def _u32(b: bytes, off: int) -> int:
    return b[off] | b[off + 1] << 8 | b[off + 2] << 16 | b[off + 3] << 24


def walk_standard(config: bytes) -> Walk:
    """The standard capability list (PCI 3.0 §6.7), bounded by ``PCI_FIND_CAP_TTL``."""
    caps: list[Capability] = []
    if len(config) < 0x40 or not _u16(config, PCI_STATUS) & PCI_STATUS_CAP_LIST:
        return Walk(caps)
    htype = config[0x0E] & 0x7F
    head = PCI_CB_CAPABILITY_LIST if htype == 2 else PCI_CAPABILITY_LIST
    pos = config[head]
    seen: set[int] = set()
    for _ in range(PCI_FIND_CAP_TTL):
        if pos < 0x40:
            return Walk(caps)  # 0 ends the list; anything else below 0x40 is the header
        pos &= ~3
        if pos in seen:
            return Walk(caps, f"capability list loops back to {pos:#x}")
        if pos + 2 > len(config):
            return Walk(caps, f"capability at {pos:#x} lies past the {len(config)} bytes read")
        seen.add(pos)
        cid = config[pos]
        if cid == 0xFF:  # the kernel treats 0xff as "device gone"
            return Walk(caps, f"capability id 0xff at {pos:#x}")
        caps.append(Capability(pos, cid))
        pos = config[pos + 1]
    return Walk(caps, f"capability list longer than {PCI_FIND_CAP_TTL} entries")


def walk_extended(config: bytes) -> Walk:
    """The PCIe extended capability list from 0x100 (PCIe §7.6), bounded by
    ``PCI_EXT_CAP_TTL``; empty when the snapshot has no extended config space."""
    caps: list[Capability] = []
    if len(config) < PCI_CFG_SPACE_SIZE + 4:
        return Walk(caps)
    pos = PCI_CFG_SPACE_SIZE
    seen: set[int] = set()
    for _ in range(PCI_EXT_CAP_TTL):
        if pos + 4 > len(config):
            return Walk(caps, f"extended capability at {pos:#x} lies past the "
                              f"{len(config)} bytes read")
        header = _u32(config, pos)
        if header == 0 or header == 0xFFFFFFFF:
            # 0 at 0x100 means "no extended capabilities"; ~0 means nothing is there.
            return Walk(caps)
        if pos in seen:
            return Walk(caps, f"extended capability list loops back to {pos:#x}")
        seen.add(pos)
        caps.append(Capability(pos, header & 0xFFFF, True, (header >> 16) & 0xF))
        nxt = (header >> 20) & 0xFFC
        if nxt == 0:
            return Walk(caps)
        if nxt < PCI_CFG_SPACE_SIZE:
            return Walk(caps, f"extended capability at {pos:#x} points into the "
                              f"standard header ({nxt:#x})")
        pos = nxt
    return Walk(caps, f"extended capability list longer than {PCI_EXT_CAP_TTL} entries")


def capabilities(config: bytes) -> list[Capability]:
    """Every standard and extended capability, in list order."""
    return walk_standard(config).caps + walk_extended(config).caps


def iter_problems(config: bytes) -> Iterator[str]:
    """Why either walk stopped early (a loop, a pointer out of range), if it did."""
    for w in (walk_standard(config), walk_extended(config)):
        if w.problem:
            yield w.problem


def find(config: bytes, cap_id: int) -> int | None:
    """Offset of the first standard capability ``cap_id``, or None."""
    for c in walk_standard(config).caps:
        if c.id == cap_id:
            return c.offset
    return None


def find_ext(config: bytes, cap_id: int) -> int | None:
    """Offset of the first extended capability ``cap_id``, or None."""
    for c in walk_extended(config).caps:
        if c.id == cap_id:
            return c.offset
    return None


def device_serial_number(config: bytes, ext: Walk | None = None) -> int | None:
    """The 64-bit Device Serial Number (ext cap 0x0003: lower dword at +4, upper at +8).
    ``ext`` is the extended walk of ``config`` when the caller already has it."""
    if ext is None:
        off = find_ext(config, PCI_EXT_CAP_ID_DSN)
    else:
        off = next((c.offset for c in ext.caps if c.id == PCI_EXT_CAP_ID_DSN), None)
    if off is None or off + 12 > len(config):
        return None
    return _u32(config, off + 4) | _u32(config, off + 8) << 32


def subsystem_ids(config: bytes) -> tuple[int, int]:
    """Subsystem vendor and device: at 0x2c for header type 0, from the SSVID capability
    for bridges (drivers/pci/probe.c ``pci_setup_device``), else zero."""
    if len(config) < 0x30:
        return 0, 0
    htype = config[0x0E] & 0x7F
    if htype == 0:
        return _u16(config, 0x2C), _u16(config, 0x2E)
    if htype == 1:
        off = find(config, PCI_CAP_ID_SSVID)
        if off is not None and off + 8 <= len(config):
            return _u16(config, off + 4), _u16(config, off + 6)
    if htype == 2 and len(config) >= 0x44:  # CardBus: PCI_CB_SUBSYSTEM_VENDOR_ID
        return _u16(config, 0x40), _u16(config, 0x42)
    return 0, 0
