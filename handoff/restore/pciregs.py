"""PCI register knowledge: header layouts (types 0 and 1), capabilities, and what each bit is.

Every register handoff may decode or write is described once here: its name, offset, width,
the kind of each bit (read-write, read-only, HwInit, write-1-to-clear, or an *action* bit whose
write starts something), and a restore *rule* that the planner follows. Bits not described are
treated as RsvdP: preserved, never changed.

Sources: PCI Local Bus 3.0 §6.2, PCI-to-PCI Bridge 1.2 §3.2, PCIe Base 6.0 §7.5-7.9, and the
Linux definitions in include/uapi/linux/pci_regs.h.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from handoff._slots import Frozen
from handoff.devices import capabilities as caps

_set = object.__setattr__

# Kinds of bits. RW bits are restored; RW_KEEP bits are writable but a restore never changes
# them (the reason is in ``why``); W1C bits are written as 0 so that a write never clears a
# status the kernel or the user still needs; ACTION bits start an operation when written 1
# (Initiate FLR, Secondary Bus Reset, Retrain Link, Start BIST) and are always written 0.
RW, RW_KEEP, RO, HWINIT, W1C, ACTION = "rw", "rw-keep", "ro", "hwinit", "w1c", "action"

# Restore rules of whole registers (see plan.py for the order they run in).
RESTORE = "restore"  # write the saved value of the RW bits
BAR = "bar"  # a base address: write, read back, retry (pci_restore_config_dword)
WINDOW = "window"  # a bridge window: setup-bus.c sequence
COMMAND = "command"  # PCI_COMMAND: written last
NEVER = "never"  # ids, capabilities, status: never written
DRIVER = "driver"  # MSI/MSI-X: left disabled for the capture kernel's driver
NORULE = "norule"  # handoff has no rule: differences are reported, not written

Fmt = Callable[[int], str]


class Field(Frozen):
    __slots__ = ("fmt", "kind", "name", "shift", "why", "width")
    name: str
    shift: int
    width: int
    kind: str
    fmt: Fmt | None
    why: str | None  # why an RW_KEEP / ACTION bit is not restored

    def __init__(self, name: str, shift: int, width: int = 1, kind: str = RW,
                 fmt: Fmt | None = None, why: str | None = None) -> None:
        _set(self, "name", name)
        _set(self, "shift", shift)
        _set(self, "width", width)
        _set(self, "kind", kind)
        _set(self, "fmt", fmt)
        _set(self, "why", why)

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift

    def value(self, reg: int) -> int:
        return (reg >> self.shift) & ((1 << self.width) - 1)

    def show(self, reg: int) -> str:
        v = self.value(reg)
        return self.fmt(v) if self.fmt else (str(v) if self.width == 1 else f"{v:#x}")


class Register(Frozen):
    __slots__ = ("default_kind", "fields", "name", "offset", "rule", "why", "width")
    name: str
    offset: int  # from the header start or the capability start
    width: int  # 1, 2 or 4 (3 for Class Code: decoded, never written)
    rule: str
    fields: tuple[Field, ...]  # the bit fields
    why: str | None  # why a NEVER/DRIVER/NORULE register is not written
    default_kind: str  # kind of the whole register when it has no fields

    def __init__(self, name: str, offset: int, width: int, rule: str = NEVER,
                 fields: tuple[Field, ...] = (), why: str | None = None,
                 default_kind: str = RO) -> None:
        _set(self, "name", name)
        _set(self, "offset", offset)
        _set(self, "width", width)
        _set(self, "rule", rule)
        _set(self, "fields", fields)
        _set(self, "why", why)
        _set(self, "default_kind", default_kind)

    @property
    def full(self) -> int:
        return (1 << (8 * self.width)) - 1

    def _mask(self, *kinds: str) -> int:
        if not self.fields:
            return self.full if self.default_kind in kinds else 0
        m = 0
        for f in self.fields:
            if f.kind in kinds:
                m |= f.mask
        return m

    @property
    def rw_mask(self) -> int:
        """Bits a restore writes from the saved value."""
        return self._mask(RW)

    @property
    def w1c_mask(self) -> int:
        return self._mask(W1C)

    @property
    def action_mask(self) -> int:
        return self._mask(ACTION)

    @property
    def keep_mask(self) -> int:
        """Bits a write carries over from the current value (RO, HwInit, RsvdP, RW_KEEP)."""
        return self.full & ~(self.rw_mask | self.w1c_mask | self.action_mask)


def F(name: str, shift: int, width: int = 1, kind: str = RW, fmt: Fmt | None = None,
      why: str | None = None) -> Field:
    return Field(name, shift, width, kind, fmt, why)


def _enum(table: dict[int, str]) -> Fmt:
    return lambda v: table.get(v, f"{v:#x}")


_BYTES128 = (lambda v: f"{128 << v} bytes" if v <= 5 else f"{v:#x}")  # MPS/MRRS encoding
_SPEED = _enum({1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"})
_INDICATOR = _enum({0: "reserved", 1: "On", 2: "Blink", 3: "Off"})

# --- standard header (PCI 3.0 §6.2) -------------------------------------------------------

PCI_COMMAND = 0x04
CMD_IO, CMD_MEMORY, CMD_MASTER, CMD_INTX_DISABLE = 0x1, 0x2, 0x4, 0x400

COMMAND_REG = Register("COMMAND", 0x04, 2, COMMAND, (
    F("I/O Space", 0), F("Memory Space", 1), F("Bus Master", 2), F("Special Cycles", 3),
    F("Memory Write and Invalidate", 4), F("VGA Palette Snoop", 5),
    F("Parity Error Response", 6), F("Stepping", 7), F("SERR# Enable", 8),
    F("Fast Back-to-Back Enable", 9), F("INTx Disable", 10)))

_STATUS_FIELDS = (
    F("Immediate Readiness", 0, kind=RO), F("Interrupt Status", 3, kind=RO),
    F("Capabilities List", 4, kind=RO), F("66 MHz Capable", 5, kind=RO),
    F("Fast Back-to-Back Capable", 7, kind=RO), F("Master Data Parity Error", 8, kind=W1C),
    F("DEVSEL Timing", 9, 2, RO, _enum({0: "fast", 1: "medium", 2: "slow"})),
    F("Signaled Target Abort", 11, kind=W1C), F("Received Target Abort", 12, kind=W1C),
    F("Received Master Abort", 13, kind=W1C), F("Signaled System Error", 14, kind=W1C),
    F("Detected Parity Error", 15, kind=W1C))
STATUS_REG = Register("STATUS", 0x06, 2, NEVER, _STATUS_FIELDS, "status bits are RO or W1C")

_COMMON_HEAD = (
    Register("Vendor ID", 0x00, 2, why="identity (RO)"),
    Register("Device ID", 0x02, 2, why="identity (RO)"),
    COMMAND_REG,
    STATUS_REG,
    Register("Revision ID", 0x08, 1, why="identity (RO)"),
    Register("Class Code", 0x09, 3, why="identity (RO)"),
    Register("Cache Line Size", 0x0C, 1, RESTORE, default_kind=RW),
    Register("Latency Timer", 0x0D, 1, RESTORE, default_kind=RW),
    Register("Header Type", 0x0E, 1, why="RO"),
    Register("BIST", 0x0F, 1, NEVER, (
        F("Completion Code", 0, 4, RO), F("Start BIST", 6, kind=ACTION, why="starts a self test"),
        F("BIST Capable", 7, kind=RO)), "writing Start BIST runs a self test"),
)

_BAR_WHY = "base address"
TYPE0 = _COMMON_HEAD + tuple(
    Register(f"BAR{i}", 0x10 + 4 * i, 4, BAR, why=_BAR_WHY) for i in range(6)) + (
    Register("CardBus CIS Pointer", 0x28, 4, why="RO"),
    Register("Subsystem Vendor ID", 0x2C, 2, why="identity (HwInit)"),
    Register("Subsystem ID", 0x2E, 2, why="identity (HwInit)"),
    Register("Expansion ROM", 0x30, 4, BAR, why=_BAR_WHY),
    Register("Capabilities Pointer", 0x34, 1, why="RO"),
    Register("Interrupt Line", 0x3C, 1, RESTORE, default_kind=RW),
    Register("Interrupt Pin", 0x3D, 1, why="RO"),
    Register("Min_Gnt", 0x3E, 1, why="RO"),
    Register("Max_Lat", 0x3F, 1, why="RO"),
)

# --- type 1: PCI-to-PCI bridge (PCI-to-PCI Bridge Architecture 1.2 §3.2) ------------------

BUS_NUMBERS = Register("Bus Numbers", 0x18, 4, RESTORE, (
    F("Primary Bus", 0, 8), F("Secondary Bus", 8, 8), F("Subordinate Bus", 16, 8),
    F("Secondary Latency Timer", 24, 8)))
IO_BASE_LIMIT = Register("I/O Base/Limit", 0x1C, 2, WINDOW, (
    F("I/O Base Addressing", 0, 4, RO, _enum({0: "16-bit", 1: "32-bit"})),
    F("I/O Base", 4, 4, fmt=lambda v: f"{v << 12:#x}"),
    F("I/O Limit Addressing", 8, 4, RO, _enum({0: "16-bit", 1: "32-bit"})),
    F("I/O Limit", 12, 4, fmt=lambda v: f"{(v << 12) | 0xFFF:#x}")))
SEC_STATUS = Register("Secondary Status", 0x1E, 2, NEVER, (
    F("66 MHz Capable", 5, kind=RO), F("Fast Back-to-Back Capable", 7, kind=RO),
    F("Master Data Parity Error", 8, kind=W1C),
    F("DEVSEL Timing", 9, 2, RO, _enum({0: "fast", 1: "medium", 2: "slow"})),
    F("Signaled Target Abort", 11, kind=W1C), F("Received Target Abort", 12, kind=W1C),
    F("Received Master Abort", 13, kind=W1C), F("Received System Error", 14, kind=W1C),
    F("Detected Parity Error", 15, kind=W1C)), "status bits are RO or W1C")
MEM_BASE_LIMIT = Register("Memory Base/Limit", 0x20, 4, WINDOW, (
    F("Memory Base", 4, 12, fmt=lambda v: f"{v << 20:#x}"),
    F("Memory Limit", 20, 12, fmt=lambda v: f"{(v << 20) | 0xFFFFF:#x}")))
PREF_BASE_LIMIT = Register("Prefetchable Base/Limit", 0x24, 4, WINDOW, (
    F("Prefetchable Addressing", 0, 4, RO, _enum({0: "32-bit", 1: "64-bit"})),
    F("Prefetchable Base", 4, 12, fmt=lambda v: f"{v << 20:#x}"),
    F("Prefetchable Limit Addressing", 16, 4, RO, _enum({0: "32-bit", 1: "64-bit"})),
    F("Prefetchable Limit", 20, 12, fmt=lambda v: f"{(v << 20) | 0xFFFFF:#x}")))
PREF_BASE_UPPER = Register("Prefetchable Base Upper 32", 0x28, 4, WINDOW, default_kind=RW)
PREF_LIMIT_UPPER = Register("Prefetchable Limit Upper 32", 0x2C, 4, WINDOW, default_kind=RW)
IO_UPPER = Register("I/O Base/Limit Upper 16", 0x30, 4, WINDOW, (
    F("I/O Base Upper 16", 0, 16), F("I/O Limit Upper 16", 16, 16)))
BRIDGE_CONTROL = Register("Bridge Control", 0x3E, 2, RESTORE, (
    F("Parity Error Response", 0), F("SERR# Enable", 1), F("ISA Enable", 2),
    F("VGA Enable", 3), F("VGA 16-bit Decode", 4), F("Master Abort Mode", 5),
    F("Secondary Bus Reset", 6, kind=ACTION, why="resets everything below the bridge"),
    F("Fast Back-to-Back Enable", 7), F("Primary Discard Timeout", 8),
    F("Secondary Discard Timeout", 9), F("Discard Timer Status", 10, kind=W1C),
    F("Discard Timer SERR# Enable", 11)))

TYPE1 = _COMMON_HEAD + (
    Register("BAR0", 0x10, 4, BAR, why=_BAR_WHY),
    Register("BAR1", 0x14, 4, BAR, why=_BAR_WHY),
    BUS_NUMBERS, IO_BASE_LIMIT, SEC_STATUS, MEM_BASE_LIMIT, PREF_BASE_LIMIT,
    PREF_BASE_UPPER, PREF_LIMIT_UPPER, IO_UPPER,
    Register("Capabilities Pointer", 0x34, 1, why="RO"),
    Register("Expansion ROM", 0x38, 4, BAR, why=_BAR_WHY),
    Register("Interrupt Line", 0x3C, 1, RESTORE, default_kind=RW),
    Register("Interrupt Pin", 0x3D, 1, why="RO"),
    BRIDGE_CONTROL,
)
# CardBus bridges (type 2): decoded as far as the common part; never restored.
TYPE2 = _COMMON_HEAD


def header_registers(header_type: int) -> tuple[Register, ...]:
    return {0: TYPE0, 1: TYPE1}.get(header_type & 0x7F, TYPE2)


# --- capabilities ------------------------------------------------------------------------

CAP_NAMES = {
    0x01: "Power Management", 0x02: "AGP", 0x03: "Vital Product Data", 0x04: "Slot ID",
    0x05: "MSI", 0x06: "CompactPCI Hot Swap", 0x07: "PCI-X", 0x08: "HyperTransport",
    0x09: "Vendor Specific", 0x0A: "Debug Port", 0x0B: "CompactPCI CRC", 0x0C: "PCI Hot-Plug",
    0x0D: "Subsystem ID", 0x0E: "AGP 8x", 0x0F: "Secure Device", 0x10: "PCI Express",
    0x11: "MSI-X", 0x12: "SATA", 0x13: "Advanced Features", 0x14: "Enhanced Allocation",
    0x15: "Flattening Portal Bridge",
}
EXT_CAP_NAMES = {
    0x01: "Advanced Error Reporting", 0x02: "Virtual Channel", 0x03: "Device Serial Number",
    0x04: "Power Budgeting", 0x05: "Root Complex Link Declaration",
    0x06: "Root Complex Internal Link Control", 0x07: "Root Complex Event Collector",
    0x08: "Multi-Function VC", 0x09: "Virtual Channel (MFVC)", 0x0A: "RCRB Header",
    0x0B: "Vendor Specific Extended", 0x0C: "Configuration Access Correlation",
    0x0D: "Access Control Services", 0x0E: "Alternative Routing-ID", 0x0F: "Address Translation",
    0x10: "SR-IOV", 0x11: "MR-IOV", 0x12: "Multicast", 0x13: "Page Request",
    0x15: "Resizable BAR", 0x16: "Dynamic Power Allocation", 0x17: "TPH Requester",
    0x18: "Latency Tolerance Reporting", 0x19: "Secondary PCI Express", 0x1A: "PMUX",
    0x1B: "PASID", 0x1C: "LN Requester", 0x1D: "Downstream Port Containment",
    0x1E: "L1 PM Substates", 0x1F: "Precision Time Measurement", 0x20: "M-PCIe",
    0x21: "FRS Queueing", 0x22: "Readiness Time Reporting", 0x23: "Designated Vendor-Specific",
    0x24: "VF Resizable BAR", 0x25: "Data Link Feature", 0x26: "Physical Layer 16.0 GT/s",
    0x27: "Lane Margining at the Receiver", 0x28: "Hierarchy ID", 0x29: "NPEM",
    0x2A: "Physical Layer 32.0 GT/s", 0x2B: "Alternate Protocol", 0x2C: "SFI",
    0x2E: "Data Object Exchange", 0x30: "Integrity and Data Encryption",
}

CAP_PM, CAP_MSI, CAP_SSVID, CAP_EXP, CAP_MSIX = 0x01, 0x05, 0x0D, 0x10, 0x11
EXT_AER, EXT_DSN, EXT_ACS, EXT_SRIOV, EXT_REBAR, EXT_LTR = 0x01, 0x03, 0x0D, 0x10, 0x15, 0x18

PM_REGS = (
    Register("PMC", 0x02, 2, why="RO"),
    Register("PMCSR", 0x04, 2, RESTORE, (
        F("Power State", 0, 2, fmt=_enum({0: "D0", 1: "D1", 2: "D2", 3: "D3hot"})),
        F("No Soft Reset", 3, kind=RO), F("PME Enable", 8), F("Data Select", 9, 4),
        F("Data Scale", 13, 2, RO), F("PME Status", 15, kind=W1C))),
)

_MSI_WHY = "MSI is left disabled for the capture kernel's driver to set up"
_MSIX_WHY = "MSI-X is left disabled for the capture kernel's driver to set up"


def msi_registers(ctrl: int) -> tuple[Register, ...]:
    """MSI's layout depends on its 64-bit (bit 7) and per-vector masking (bit 8) flags."""
    regs = [Register("Message Control", 0x02, 2, DRIVER, (
        F("Enable", 0), F("Multiple Message Capable", 1, 3, RO, lambda v: str(1 << v)),
        F("Multiple Message Enable", 4, 3, fmt=lambda v: str(1 << v)),
        F("64-bit", 7, kind=RO), F("Per-Vector Masking", 8, kind=RO)), _MSI_WHY),
        Register("Message Address", 0x04, 4, DRIVER, why=_MSI_WHY, default_kind=RW)]
    off = 0x08
    if ctrl & 0x80:
        regs.append(Register("Message Upper Address", 0x08, 4, DRIVER, why=_MSI_WHY,
                             default_kind=RW))
        off = 0x0C
    regs.append(Register("Message Data", off, 2, DRIVER, why=_MSI_WHY, default_kind=RW))
    if ctrl & 0x100:
        regs.append(Register("Mask Bits", off + 4, 4, DRIVER, why=_MSI_WHY, default_kind=RW))
        regs.append(Register("Pending Bits", off + 8, 4, DRIVER, why=_MSI_WHY))
    return tuple(regs)


MSIX_REGS = (
    Register("Message Control", 0x02, 2, DRIVER, (
        F("Table Size", 0, 11, RO, lambda v: str(v + 1)), F("Function Mask", 14),
        F("Enable", 15)), _MSIX_WHY),
    Register("Table Offset/BIR", 0x04, 4, why="RO"),
    Register("PBA Offset/BIR", 0x08, 4, why="RO"),
)

SSVID_REGS = (
    Register("Subsystem Vendor ID", 0x04, 2, why="identity (HwInit)"),
    Register("Subsystem ID", 0x06, 2, why="identity (HwInit)"),
)

# PCI Express capability (PCIe 6.0 §7.5.3). Device/port types from the flags register.
PCIE_TYPES = {0: "Endpoint", 1: "Legacy Endpoint", 4: "Root Port", 5: "Upstream Port",
              6: "Downstream Port", 7: "PCIe-to-PCI Bridge", 8: "PCI-to-PCIe Bridge",
              9: "Root Complex Integrated Endpoint", 10: "Root Complex Event Collector"}
PORT_TYPES_WITH_SLOT = (4, 6)
PORT_TYPES_WITH_ROOT = (4, 10)

_ERR_STATUS = (F("Correctable Error Detected", 0, kind=W1C),
               F("Non-Fatal Error Detected", 1, kind=W1C),
               F("Fatal Error Detected", 2, kind=W1C),
               F("Unsupported Request Detected", 3, kind=W1C),
               F("AUX Power Detected", 4, kind=RO), F("Transactions Pending", 5, kind=RO),
               F("Emergency Power Reduction Detected", 6, kind=W1C))

DEVCTL = Register("Device Control", 0x08, 2, RESTORE, (
    F("Correctable Error Reporting", 0), F("Non-Fatal Error Reporting", 1),
    F("Fatal Error Reporting", 2), F("Unsupported Request Reporting", 3),
    F("Relaxed Ordering", 4), F("Max Payload", 5, 3, fmt=_BYTES128), F("Extended Tag", 8),
    F("Phantom Functions", 9), F("AUX Power PM", 10), F("No Snoop", 11),
    F("Max Read Request", 12, 3, fmt=_BYTES128),
    F("Initiate FLR / Bridge Config Retry", 15, kind=ACTION, why="starts a function reset")))
LNKCTL = Register("Link Control", 0x10, 2, RESTORE, (
    F("ASPM Control", 0, 2, fmt=_enum({0: "Disabled", 1: "L0s", 2: "L1", 3: "L0s L1"})),
    F("PTM Propagation Delay Adaptation", 2), F("Read Completion Boundary", 3,
                                                fmt=_enum({0: "64 bytes", 1: "128 bytes"})),
    F("Link Disable", 4, kind=RW_KEEP, why="would take the link, and what is below it, down"),
    F("Retrain Link", 5, kind=ACTION, why="retrains the link"),
    F("Common Clock", 6), F("Extended Synch", 7), F("Clock PM", 8),
    F("HW Autonomous Width Disable", 9), F("Bandwidth Management Interrupt", 10),
    F("Autonomous Bandwidth Interrupt", 11), F("DRS Signaling Control", 14, 2)))
LNKSTA = Register("Link Status", 0x12, 2, NEVER, (
    F("Current Link Speed", 0, 4, RO, _SPEED), F("Link Width", 4, 6, RO, lambda v: f"x{v}"),
    F("Link Training", 11, kind=RO), F("Slot Clock", 12, kind=RO),
    F("Data Link Layer Active", 13, kind=RO),
    F("Link Bandwidth Management Status", 14, kind=W1C),
    F("Link Autonomous Bandwidth Status", 15, kind=W1C)), "status bits are RO or W1C")
SLTCTL = Register("Slot Control", 0x18, 2, RESTORE, (
    F("Attention Button Pressed Enable", 0), F("Power Fault Detected Enable", 1),
    F("MRL Sensor Changed Enable", 2), F("Presence Detect Changed Enable", 3),
    F("Command Completed Interrupt Enable", 4), F("Hot-Plug Interrupt Enable", 5),
    F("Attention Indicator", 6, 2, fmt=_INDICATOR), F("Power Indicator", 8, 2, fmt=_INDICATOR),
    F("Power Controller Control", 10, kind=RW_KEEP, why="would switch slot power"),
    F("Electromechanical Interlock Control", 11, kind=ACTION, why="toggles the interlock"),
    F("Data Link Layer State Changed Enable", 12), F("Auto Slot Power Limit Disable", 13)))
SLTSTA = Register("Slot Status", 0x1A, 2, NEVER, (
    F("Attention Button Pressed", 0, kind=W1C), F("Power Fault Detected", 1, kind=W1C),
    F("MRL Sensor Changed", 2, kind=W1C), F("Presence Detect Changed", 3, kind=W1C),
    F("Command Completed", 4, kind=W1C), F("MRL Sensor State", 5, kind=RO),
    F("Presence Detect State", 6, kind=RO), F("Electromechanical Interlock Status", 7, kind=RO),
    F("Data Link Layer State Changed", 8, kind=W1C)), "status bits are RO or W1C")
ROOTCTL = Register("Root Control", 0x1C, 2, RESTORE, (
    F("System Error on Correctable Error", 0), F("System Error on Non-Fatal Error", 1),
    F("System Error on Fatal Error", 2), F("PME Interrupt Enable", 3),
    F("CRS Software Visibility", 4)))
DEVCTL2 = Register("Device Control 2", 0x28, 2, RESTORE, (
    F("Completion Timeout Value", 0, 4), F("Completion Timeout Disable", 4),
    F("ARI Forwarding", 5), F("AtomicOp Requester", 6), F("AtomicOp Egress Blocking", 7),
    F("IDO Request", 8), F("IDO Completion", 9), F("LTR Mechanism", 10),
    F("Emergency Power Reduction Request", 11), F("10-Bit Tag Requester", 12),
    F("OBFF", 13, 2), F("End-End TLP Prefix Blocking", 15)))
LNKCTL2 = Register("Link Control 2", 0x30, 2, RESTORE, (
    F("Target Link Speed", 0, 4, fmt=_SPEED),
    F("Enter Compliance", 4, kind=RW_KEEP, why="test mode"),
    F("HW Autonomous Speed Disable", 5), F("Selectable De-emphasis", 6),
    F("Transmit Margin", 7, 3, RW_KEEP, why="test mode"),
    F("Enter Modified Compliance", 10, kind=RW_KEEP, why="test mode"),
    F("Compliance SOS", 11, kind=RW_KEEP, why="test mode"),
    F("Compliance Preset/De-emphasis", 12, 4, RW_KEEP, why="test mode")))

PCIE_REGS = (
    Register("Capabilities", 0x02, 2, NEVER, (
        F("Version", 0, 4, RO), F("Device/Port Type", 4, 4, RO, _enum(PCIE_TYPES)),
        F("Slot Implemented", 8, kind=RO), F("Interrupt Message Number", 9, 5, RO)), "RO"),
    Register("Device Capabilities", 0x04, 4, why="RO"),
    DEVCTL,
    Register("Device Status", 0x0A, 2, NEVER, _ERR_STATUS, "status bits are RO or W1C"),
    Register("Link Capabilities", 0x0C, 4, why="RO"),
    LNKCTL, LNKSTA,
    Register("Slot Capabilities", 0x14, 4, why="HwInit"),
    SLTCTL, SLTSTA, ROOTCTL,
    Register("Root Capabilities", 0x1E, 2, why="RO"),
    Register("Root Status", 0x20, 4, NEVER, (
        F("PME Requester ID", 0, 16, RO), F("PME Status", 16, kind=W1C),
        F("PME Pending", 17, kind=RO)), "status bits are RO or W1C"),
    Register("Device Capabilities 2", 0x24, 4, why="RO"),
    DEVCTL2,
    Register("Device Status 2", 0x2A, 2, why="RO"),
    Register("Link Capabilities 2", 0x2C, 4, why="RO"),
    LNKCTL2,
    Register("Link Status 2", 0x32, 2, NEVER, (
        F("Current De-emphasis", 0, kind=RO), F("Equalization Complete", 1, kind=RO),
        F("Link Equalization Request", 5, kind=W1C)), "status bits are RO or W1C"),
    Register("Slot Capabilities 2", 0x34, 4, why="RO"),
    Register("Slot Control 2", 0x38, 2, RESTORE, default_kind=RW),
    Register("Slot Status 2", 0x3A, 2, why="RO"),
)

AER_REGS = (
    Register("Uncorrectable Error Status", 0x04, 4, NEVER, why="W1C", default_kind=W1C),
    Register("Uncorrectable Error Mask", 0x08, 4, RESTORE, default_kind=RW),
    Register("Uncorrectable Error Severity", 0x0C, 4, RESTORE, default_kind=RW),
    Register("Correctable Error Status", 0x10, 4, NEVER, why="W1C", default_kind=W1C),
    Register("Correctable Error Mask", 0x14, 4, RESTORE, default_kind=RW),
    Register("Advanced Error Capabilities and Control", 0x18, 4, NORULE,
             why="ECRC settings are left to the AER driver"),
    Register("Header Log 0", 0x1C, 4, why="RO"), Register("Header Log 1", 0x20, 4, why="RO"),
    Register("Header Log 2", 0x24, 4, why="RO"), Register("Header Log 3", 0x28, 4, why="RO"),
)
AER_ROOT_REGS = (
    Register("Root Error Command", 0x2C, 4, RESTORE, (
        F("Correctable Error Reporting", 0), F("Non-Fatal Error Reporting", 1),
        F("Fatal Error Reporting", 2))),
    Register("Root Error Status", 0x30, 4, NEVER, why="W1C", default_kind=W1C),
    Register("Error Source Identification", 0x34, 4, why="RO"),
)
ACS_REGS = (
    Register("Capability", 0x04, 2, why="RO"),
    Register("Control", 0x06, 2, RESTORE, (
        F("Source Validation", 0), F("Translation Blocking", 1), F("P2P Request Redirect", 2),
        F("P2P Completion Redirect", 3), F("Upstream Forwarding", 4),
        F("P2P Egress Control", 5), F("Direct Translated P2P", 6))),
)
LTR_REGS = (
    Register("Max Snoop Latency", 0x04, 2, RESTORE, default_kind=RW),
    Register("Max No-Snoop Latency", 0x06, 2, RESTORE, default_kind=RW),
)
DSN_REGS = (Register("Serial Number Low", 0x04, 4, why="identity (RO)"),
            Register("Serial Number High", 0x08, 4, why="identity (RO)"))

# Why a capability without register rules is not restored (shown in plans and diffs).
NOT_RESTORED_WHY = {
    (False, 0x09): "vendor specific: handoff does not know its registers",
    (True, 0x0B): "vendor specific: handoff does not know its registers",
    (True, 0x23): "vendor specific: handoff does not know its registers",
    (True, EXT_SRIOV): "SR-IOV is re-enabled by the PF driver (sriov_numvfs)",
    (True, EXT_REBAR): "Resizable BAR is not restored: BAR sizes stay as they are",
    (True, 0x0F): "ATS is left to the IOMMU driver",
    (True, 0x13): "PRI is left to the IOMMU driver",
    (True, 0x1B): "PASID is left to the IOMMU driver",
    (True, 0x1D): "DPC is left to the DPC driver",
    (True, 0x1E): "L1 PM Substates are left to the ASPM driver",
    (True, 0x1F): "PTM is left to the kernel",
}


class Cap(Frozen):
    """A capability found in config space (``offset`` absolute)."""

    __slots__ = ("extended", "id", "offset", "version")
    offset: int
    id: int
    extended: bool
    version: int

    def __init__(self, offset: int, id: int, extended: bool = False, version: int = 0) -> None:
        _set(self, "offset", offset)
        _set(self, "id", id)
        _set(self, "extended", extended)
        _set(self, "version", version)

    @property
    def name(self) -> str:
        table = EXT_CAP_NAMES if self.extended else CAP_NAMES
        return table.get(self.id, f"{'extended ' if self.extended else ''}capability "
                                  f"{self.id:#x}")

    @property
    def short(self) -> str:
        return _SHORT.get((self.extended, self.id)) or self.name


_SHORT = {(False, CAP_EXP): "PCIe", (False, CAP_MSIX): "MSI-X", (False, CAP_MSI): "MSI",
          (False, CAP_PM): "PM", (False, CAP_SSVID): "SSVID", (True, EXT_AER): "AER",
          (True, EXT_ACS): "ACS", (True, EXT_LTR): "LTR", (True, EXT_DSN): "DSN"}
_CAPS: dict[bytes, tuple[Cap, ...]] = {}
_CAPS_MAX = 64  # config images kept: planning one device looks at its two images repeatedly


def find_caps(config: bytes) -> list[Cap]:
    """Every capability, through the bounded walks of handoff.devices.capabilities
    (memoized by the image's content)."""
    key = bytes(config)
    hit = _CAPS.get(key)
    if hit is None:
        if len(_CAPS) >= _CAPS_MAX:
            _CAPS.clear()
        hit = _CAPS[key] = tuple(Cap(c.offset, c.id, c.extended, c.version)
                                 for c in caps.capabilities(key))
    return list(hit)


def u(config: bytes, off: int, width: int) -> int | None:
    """Little-endian value at ``off``, or None when the bytes were not read."""
    if off < 0 or off + width > len(config):
        return None
    return int.from_bytes(config[off:off + width], "little")


def _pcie_regs(config: bytes, cap: Cap) -> Iterator[Register]:
    flags = u(config, cap.offset + 2, 2) or 0
    ptype = (flags >> 4) & 0xF
    v2 = (flags & 0xF) >= 2
    for r in PCIE_REGS:
        if r.offset >= 0x24 and not v2:
            continue  # version 1 capabilities end at Root Status
        if r.offset in (0x14, 0x18, 0x1A, 0x34, 0x38, 0x3A) and not (
                ptype in PORT_TYPES_WITH_SLOT and flags & 0x100):
            continue
        if r.offset in (0x1C, 0x1E, 0x20) and ptype not in PORT_TYPES_WITH_ROOT:
            continue
        if r.offset in (0x0C, 0x10, 0x12, 0x2C, 0x30, 0x32) and ptype == 9:
            continue  # integrated endpoints have no link
        yield r


def cap_registers(config: bytes, cap: Cap) -> tuple[Register, ...]:
    """The registers handoff knows in ``cap`` (offsets relative to the capability)."""
    if not cap.extended:
        if cap.id == CAP_PM:
            return PM_REGS
        if cap.id == CAP_MSI:
            return msi_registers(u(config, cap.offset + 2, 2) or 0)
        if cap.id == CAP_MSIX:
            return MSIX_REGS
        if cap.id == CAP_EXP:
            return tuple(_pcie_regs(config, cap))
        if cap.id == CAP_SSVID:
            return SSVID_REGS
        return ()
    if cap.id == EXT_AER:
        pcie = next((c for c in find_caps(config) if not c.extended and c.id == CAP_EXP), None)
        ptype = ((u(config, pcie.offset + 2, 2) or 0) >> 4) & 0xF if pcie else 0
        return AER_REGS + (AER_ROOT_REGS if ptype in PORT_TYPES_WITH_ROOT else ())
    return {EXT_ACS: ACS_REGS, EXT_LTR: LTR_REGS, EXT_DSN: DSN_REGS}.get(cap.id, ())


def pcie_port_type(config: bytes) -> int | None:
    for c in find_caps(config):
        if not c.extended and c.id == CAP_EXP:
            flags = u(config, c.offset + 2, 2)
            return None if flags is None else (flags >> 4) & 0xF
    return None


def is_all_ones(config: bytes) -> bool:
    """The vendor/device dword reads ~0: the device is gone or not answering."""
    return u(config, 0, 4) == 0xFFFFFFFF


# --- base address registers ---------------------------------------------------------------

def bar_layout(config: bytes, header_type: int) -> list[tuple[int, str, int]]:
    """(offset, name, writable mask) of each BAR dword, the upper half of 64-bit BARs
    included; the mask drops the RO type bits (PCI 3.0 §6.2.5.1)."""
    out: list[tuple[int, str, int]] = []
    n = 6 if header_type == 0 else 2 if header_type == 1 else 0
    i = 0
    while i < n:
        off = 0x10 + 4 * i
        v = u(config, off, 4) or 0
        if v & 1:  # I/O
            out.append((off, f"BAR{i}", 0xFFFFFFFC))
        else:
            out.append((off, f"BAR{i}", 0xFFFFFFF0))
            if (v >> 1) & 3 == 2 and i + 1 < n:  # 64-bit memory: the next dword is its top
                out.append((off + 4, f"BAR{i} upper 32", 0xFFFFFFFF))
                i += 1
        i += 1
    rom = 0x30 if header_type == 0 else 0x38
    if header_type in (0, 1):
        out.append((rom, "Expansion ROM", 0xFFFFF801))
    return out


def describe_bar(value: int, name: str) -> str:
    if name.endswith("upper 32"):
        return f"{value:#010x}"
    if name == "Expansion ROM":
        return f"{value & 0xFFFFF800:#x} ({'enabled' if value & 1 else 'disabled'})"
    if value & 1:
        return f"I/O at {value & 0xFFFFFFFC:#x}"
    kind = {0: "32-bit", 1: "below 1M", 2: "64-bit"}.get((value >> 1) & 3, "reserved type")
    pf = "prefetchable" if value & 8 else "non-prefetchable"
    return f"memory at {value & 0xFFFFFFF0:#x} ({kind}, {pf})"


# --- class codes, for people ---------------------------------------------------------------

CLASS_NAMES = {
    0x00: "Unclassified", 0x01: "Mass storage controller", 0x02: "Network controller",
    0x03: "Display controller", 0x04: "Multimedia controller", 0x05: "Memory controller",
    0x06: "Bridge", 0x07: "Communication controller", 0x08: "System peripheral",
    0x09: "Input device controller", 0x0A: "Docking station", 0x0B: "Processor",
    0x0C: "Serial bus controller", 0x0D: "Wireless controller", 0x0E: "Intelligent controller",
    0x0F: "Satellite controller", 0x10: "Encryption controller",
    0x11: "Signal processing controller", 0x12: "Processing accelerator",
    0x13: "Non-essential instrumentation", 0xFF: "Unassigned class",
}
SUBCLASS_NAMES = {
    0x0100: "SCSI storage controller", 0x0101: "IDE interface", 0x0104: "RAID bus controller",
    0x0106: "SATA controller", 0x0107: "Serial Attached SCSI controller",
    0x0108: "Non-Volatile memory controller", 0x0200: "Ethernet controller",
    0x0207: "InfiniBand controller", 0x0300: "VGA compatible controller",
    0x0302: "3D controller", 0x0600: "Host bridge", 0x0601: "ISA bridge",
    0x0604: "PCI bridge", 0x0609: "PCI bridge (subtractive)", 0x0C03: "USB controller",
    0x0C05: "SMBus", 0x0C04: "Fibre Channel", 0x1200: "Processing accelerator",
}


def class_name(class_code: int) -> str:
    sub = class_code >> 8
    return SUBCLASS_NAMES.get(sub) or CLASS_NAMES.get(sub >> 8, f"class {class_code:06x}")


# --- where each register sits in one config image ------------------------------------------

class Placed(Frozen):
    """A register at its absolute ``offset`` in one device's config space."""

    __slots__ = ("bar_mask", "cap", "offset", "reg")
    reg: Register
    offset: int
    cap: Cap | None
    bar_mask: int | None  # the writable bits of a BAR (type bits excluded)

    def __init__(self, reg: Register, offset: int, cap: Cap | None = None,
                 bar_mask: int | None = None) -> None:
        _set(self, "reg", reg)
        _set(self, "offset", offset)
        _set(self, "cap", cap)
        _set(self, "bar_mask", bar_mask)

    @property
    def label(self) -> str:
        return f"{self.cap.short} {self.reg.name}" if self.cap else self.reg.name

    @property
    def rw_mask(self) -> int:
        return self.bar_mask if self.bar_mask is not None else self.reg.rw_mask

    @property
    def keep_mask(self) -> int:
        return self.reg.full & ~self.rw_mask if self.bar_mask is not None else self.reg.keep_mask


_LAYOUTS: dict[tuple[object, ...], tuple[Placed, ...]] = {}
_LAYOUTS_MAX = 512  # distinct device layouts kept; a machine has a few dozen


def layout(config: bytes) -> list[Placed]:
    """Every register handoff knows in ``config``, in offset order: the header for its
    type (BARs as the image lays them out) and the registers of each known capability.

    Memoized by what the layout depends on: the image's size, header type, BAR types, and
    each capability's place, id, version and (standard ones) flags word, which selects the
    MSI and PCIe registers present. Devices of one kind share one layout."""
    if len(config) < 0x10:
        return []
    htype = config[0x0E] & 0x7F
    bars = bar_layout(config, htype)
    found = find_caps(config)
    key = (len(config), htype, tuple(bars),
           tuple((c.offset, c.id, c.extended, c.version,
                  None if c.extended else u(config, c.offset + 2, 2)) for c in found))
    hit = _LAYOUTS.get(key)
    if hit is None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        hit = _LAYOUTS[key] = tuple(_layout(config, htype, bars, found))
    return list(hit)


def _layout(config: bytes, htype: int, bar_list: list[tuple[int, str, int]],
            found: list[Cap]) -> list[Placed]:
    out: list[Placed] = []
    bars = {off: (name, mask) for off, name, mask in bar_list}
    for r in header_registers(htype):
        if r.rule == BAR:
            continue
        out.append(Placed(r, r.offset))
    for off, (name, mask) in bars.items():
        out.append(Placed(Register(name, off, 4, BAR, why=_BAR_WHY), off, None, mask))
    for cap in found:
        head = 4 if cap.extended else 2
        out.append(Placed(Register("Capability Header", 0, head, why="RO"), cap.offset, cap))
        for r in cap_registers(config, cap):
            out.append(Placed(r, cap.offset + r.offset, cap))
    out.sort(key=lambda p: p.offset)
    return [p for p in out if p.offset + p.reg.width <= len(config)]


def cap_at(config: bytes, offset: int) -> Cap | None:
    """The capability whose structure most likely holds ``offset``: the nearest one that
    starts at or below it in the same space (standard below 0x100, extended above)."""
    ext = offset >= 0x100
    found = [c for c in find_caps(config) if c.extended == ext and c.offset <= offset]
    return max(found, key=lambda c: c.offset) if found else None


def changed_fields(reg: Register, old: int, new: int, *, bar_name: str | None = None
                   ) -> list[tuple[str, str, str, str]]:
    """(field, old, new, kind) for each named field that differs; a register without fields
    (or a BAR) is one value. Bits no field names are reported as ``reserved bits``."""
    if old == new:
        return []
    if reg.rule == BAR:
        return [(bar_name or reg.name, describe_bar(old, bar_name or reg.name),
                 describe_bar(new, bar_name or reg.name), RW)]
    if not reg.fields:
        return [("value", f"{old:#0{2 + 2 * reg.width}x}", f"{new:#0{2 + 2 * reg.width}x}",
                 reg.default_kind)]
    out = []
    named = 0
    for f in reg.fields:
        named |= f.mask
        if f.value(old) != f.value(new):
            out.append((f.name, f.show(old), f.show(new), f.kind))
    rest = (old ^ new) & ~named
    if rest:
        out.append(("reserved bits", f"{old & rest:#x}", f"{new & rest:#x}", RO))
    return out


def show_changes(changes: list[tuple[str, str, str, str]], style: str = "arrow") -> str:
    """``"Bus Master 1 -> 0"``; with ``style="now-saved"``: ``"Enable: now 0, saved 1"``."""
    if style == "now-saved":
        return "; ".join(f"{n}: now {a}, saved {b}" for n, a, b, _ in changes)
    return ", ".join(f"{n} {a} -> {b}" for n, a, b, _ in changes)
