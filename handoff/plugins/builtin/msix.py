"""MSI-X: record where the vector table and PBA live, and mask every vector through the table.

The table is in BAR memory, not config space, so config-space restore never reaches it; the
capture kernel's PCI core clears MSI-X Enable during enumeration but leaves the table as the
dead kernel programmed it (kdump-in-qemu.md). Masking every vector means that whatever later
re-enables MSI-X cannot deliver a message to an address the dead kernel chose.

Layout: PCI Local Bus Specification 3.0 §6.8.2 and PCI Express Base Specification (4.0 and
later) §7.7.2 "MSI-X Capability and Table Structure":

- capability id 0x11; Message Control at +2: Table Size in bits 10:0 (N - 1), Function Mask
  bit 14, MSI-X Enable bit 15;
- Table Offset/Table BIR at +4 and PBA Offset/PBA BIR at +8: BIR in bits 2:0 (BARs 0-5;
  6 and 7 are reserved), the offset in the remaining bits (QWORD aligned);
- each table entry is 16 bytes; its Vector Control dword at +12 has Mask Bit 0; the other
  bits are reserved and their value is preserved (read-modify-write). Software uses aligned
  DWORD or QWORD accesses to the table, so every access here is one dword.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from handoff._slots import Frozen
from handoff.devices import capabilities as caps
from handoff.devices.model import PciDevice
from handoff.plugins.api import Match, Plugin, PluginStep, StepFailed
from handoff.plugins.bar import BarBoundsError
from handoff.plugins.context import StepContext

_set = object.__setattr__

PCI_CAP_ID_MSIX = 0x11
MSIX_FLAGS = 2
MSIX_TABLE = 4
MSIX_PBA = 8
FLAGS_QSIZE = 0x07FF
FLAGS_MASKALL = 1 << 14
FLAGS_ENABLE = 1 << 15
BIR_MASK = 0x7
ENTRY_SIZE = 16
ENTRY_VECTOR_CTRL = 12
VECTOR_CTRL_MASKED = 1 << 0


class MsixCap(Frozen):
    __slots__ = ("cap", "control", "pba_bir", "pba_offset", "table_bir", "table_offset")
    cap: int  # offset of the capability in config space
    control: int
    table_bir: int
    table_offset: int
    pba_bir: int
    pba_offset: int

    def __init__(self, cap: int, control: int, table_bir: int, table_offset: int, pba_bir: int,
                 pba_offset: int) -> None:
        _set(self, "cap", cap)
        _set(self, "control", control)
        _set(self, "table_bir", table_bir)
        _set(self, "table_offset", table_offset)
        _set(self, "pba_bir", pba_bir)
        _set(self, "pba_offset", pba_offset)

    @property
    def size(self) -> int:
        return (self.control & FLAGS_QSIZE) + 1

    @property
    def enabled(self) -> bool:
        return bool(self.control & FLAGS_ENABLE)

    @property
    def function_masked(self) -> bool:
        return bool(self.control & FLAGS_MASKALL)

    @property
    def table_end(self) -> int:
        return self.table_offset + self.size * ENTRY_SIZE


def find_msix(config: bytes) -> MsixCap | None:
    """The MSI-X capability of a config snapshot (bounded walk), or None."""
    for c in caps.walk_standard(config).caps:
        if c.id == PCI_CAP_ID_MSIX and c.offset + 12 <= len(config):
            ctl = int.from_bytes(config[c.offset + MSIX_FLAGS:c.offset + MSIX_FLAGS + 2],
                                 "little")
            tbl = int.from_bytes(config[c.offset + MSIX_TABLE:c.offset + MSIX_TABLE + 4],
                                 "little")
            pba = int.from_bytes(config[c.offset + MSIX_PBA:c.offset + MSIX_PBA + 4],
                                 "little")
            return MsixCap(c.offset, ctl, tbl & BIR_MASK, tbl & ~BIR_MASK,
                           pba & BIR_MASK, pba & ~BIR_MASK)
    return None


class Msix(Plugin):
    name = "msix"
    version = "1.0"
    description = "mask every MSI-X vector through the table in BAR memory"
    match = Match(caps=(PCI_CAP_ID_MSIX,))
    requires = "table BIR 0-5, MSI-X not enabled and no driver bound in the running kernel"
    order = 90  # after device-specific plugins have stopped the device
    step_timeout_s = 5.0

    def accepts(self, device: PciDevice) -> str | None:
        m = find_msix(device.live.data)
        if m is None:
            if len(device.live.data) < 0x40:
                return (f"config snapshot holds {len(device.live.data)} bytes: capabilities "
                        "not visible (run as root)")
            return "no MSI-X capability"
        if m.table_bir > 5:
            return f"MSI-X table BIR {m.table_bir} is reserved (BARs are 0-5)"
        # The capture kernel's PCI core clears MSI-X Enable at enumeration (kdump-in-qemu.md),
        # so a set Enable bit, or a bound driver, means the running kernel owns the table now
        # (pcieport on root ports, typically): masking its vectors would break it.
        if device.driver:
            return f"bound to {device.driver}: the running kernel owns its MSI-X table"
        if m.enabled:
            return "MSI-X is enabled now: the running kernel owns its table"
        return None

    def _cap(self, device: PciDevice) -> MsixCap:
        m = find_msix(device.live.data)
        assert m is not None  # accepts() said so
        return m

    def save(self, device: PciDevice, state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        m = self._cap(device)

        def body(ctx: StepContext) -> str:
            ctx.record("cap", m.cap)
            ctx.record("size", m.size)
            ctx.record("table", [m.table_bir, m.table_offset])
            ctx.record("pba", [m.pba_bir, m.pba_offset])
            ctx.record("enabled", m.enabled)
            ctx.record("function_mask", m.function_masked)
            return (f"{m.size} vector(s); table BAR{m.table_bir}+{m.table_offset:#x}, "
                    f"PBA BAR{m.pba_bir}+{m.pba_offset:#x}")

        return [PluginStep("record-table", "where the MSI-X table and PBA live "
                           "(from config space; no BAR access)", body)]

    def quiesce(self, device: PciDevice,
                state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        m = self._cap(device)
        bar = m.table_bir

        def body(ctx: StepContext) -> str:
            _check_fits(ctx, m)
            newly = 0
            for i in range(m.size):
                off = m.table_offset + i * ENTRY_SIZE + ENTRY_VECTOR_CTRL
                old, new = ctx.modify(bar, off, 4, set_bits=VECTOR_CTRL_MASKED,
                                      name=f"vector {i} control")
                newly += old != new
            return (f"{m.size} vector(s) masked ({newly} were unmasked) in "
                    f"BAR{bar}+{m.table_offset:#x}")

        assume = {(bar, m.table_offset + i * ENTRY_SIZE + ENTRY_VECTOR_CTRL): 0
                  for i in range(m.size)}
        return [PluginStep("mask-vectors", "set the Mask Bit of every MSI-X table entry "
                           "(PCIe §7.7.2: Vector Control bit 0)", body, assume=assume)]

    def verify(self, device: PciDevice,
               state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        m = self._cap(device)
        bar = m.table_bir

        def body(ctx: StepContext) -> str:
            _check_fits(ctx, m)
            open_ = [i for i in range(m.size)
                     if not ctx.read(bar, m.table_offset + i * ENTRY_SIZE + ENTRY_VECTOR_CTRL,
                                     4, name=f"vector {i} control") & VECTOR_CTRL_MASKED]
            if open_:
                raise StepFailed(f"{len(open_)} of {m.size} MSI-X vector(s) unmasked "
                                 f"(first: {open_[0]})")
            return f"all {m.size} vector(s) masked"

        assume = {(bar, m.table_offset + i * ENTRY_SIZE + ENTRY_VECTOR_CTRL):
                  VECTOR_CTRL_MASKED for i in range(m.size)}
        return [PluginStep("vectors-masked", "every MSI-X vector's Mask Bit is set", body,
                           assume=assume)]


def _check_fits(ctx: StepContext, m: MsixCap) -> None:
    """Refuse before the first access when the table does not fit its BAR: a bad capability
    must not leave half the vectors masked and then fail."""
    size = ctx.bar_size(m.table_bir)
    if size is not None and m.table_end > size:
        raise BarBoundsError(f"MSI-X table of {m.size} vector(s) at BAR{m.table_bir}+"
                             f"{m.table_offset:#x} ends at {m.table_end:#x}, past the end of "
                             f"the BAR ({size:#x} bytes): nothing accessed",
                             bar=m.table_bir, offset=m.table_offset, width=4, size=size)
