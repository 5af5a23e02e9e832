"""Who owns each config-space field in the capture kernel: the PCI core, the bound driver (or
a port service), or nobody (firmware set it and no kernel component writes it again).

By the time ``handoff restore`` runs, the capture kernel's PCI core has enumerated every
function (drivers/pci/probe.c pci_scan_device() -> pci_setup_device(), pci_configure_device(),
pci_init_capabilities()) and bound ``pcieport`` to the PCIe ports. A userspace write to a
field the kernel owns leaves the kernel's view and the hardware disagreeing: a BAR moved under
a kept ``resource`` made the nvme driver map the wrong address, and Bus Master cleared on a
bound root port stayed cleared because ``is_busmaster`` said it was on
(shared facts: capture-kernel-pci-core.md). So the planner writes only :data:`NOBODY` fields;
everything else is reported as a difference the kernel owns. docs/policy.md ("Who owns each
register") is this table in prose, one row per entry.

An entry names a register by its plan label (``"COMMAND"``, ``"PCIe Device Control"``); a
register with mixed ownership lists its fields. ``BAR*`` covers every BAR dword. Registers
that no entry names keep their pciregs rule (identity, status and read-only registers are
never written anyway; a capability handoff does not decode is never written).
"""

from __future__ import annotations

from handoff._slots import Frozen
from handoff.restore import pciregs as R

_set = object.__setattr__

CORE = "pci-core"  # the PCI core, at enumeration or when a function is enabled
DRIVER = "driver"  # the driver that binds (or a pcieport service already bound)
NOBODY = "firmware"  # firmware or the dead kernel set it; no capture-kernel code writes it
OWNERS = (CORE, DRIVER, NOBODY)
RESOURCE = "resource"  # kind of a kernel-owned field that places a resource (step 3)


class Owner(Frozen):
    """Who owns a field, the kernel function that makes it so, and whether the field places
    a resource (a BAR, the ROM, bus numbers, a window: only remove + rescan moves those)."""

    __slots__ = ("by", "kind", "who")
    who: str
    by: str  # the kernel function(s), drivers/pci/*.c unless said
    kind: str | None

    def __init__(self, who: str, by: str, kind: str | None = None) -> None:
        _set(self, "who", who)
        _set(self, "by", by)
        _set(self, "kind", kind)

    @property
    def kernel(self) -> bool:
        return self.who != NOBODY

    def why(self) -> str:
        who = {CORE: "the PCI core", DRIVER: "the driver", NOBODY: "nobody"}[self.who]
        return f"kernel owns: {who} ({self.by})" if self.kernel else f"firmware: {self.by}"


def _o(who: str, by: str, kind: str | None = None) -> Owner:
    return Owner(who, by, kind)


_BAR = _o(CORE, "__pci_read_base() reads it at enumeration; pci_assign_resource() and "
                "pci_std_update_resource() place it", RESOURCE)
_ENABLE = _o(CORE, "pci_enable_device() -> pci_enable_resources(); pci_disable_device()")
_MASTER = _o(CORE, "pci_set_master()/pci_clear_master() track it in is_busmaster; "
                   "pci_enable_bridge() sets it only when is_busmaster is false")
_INTX = _o(DRIVER, "pci_intx(), and pci_msi/msix enable set it")
_MSI = _o(CORE, "pci_msi_init()/pci_msix_init() clear Enable at enumeration; the driver's "
                "pci_alloc_irq_vectors() programs the rest")
_AER = _o(DRIVER, "the AER service of pcieport: aer_enable_rootport(); pci_aer_init()")
_NONE = _o(NOBODY, "no capture-kernel code writes it")
_HPX = _o(NOBODY, "firmware; pci_configure_device() applies ACPI _HPX over it when present")

# label -> Owner (whole register) or {field name -> Owner} (fields not listed: NOBODY).
TABLE: dict[str, Owner | dict[str, Owner]] = {
    # --- header, types 0 and 1 (PCI 3.0 §6.2; probe.c pci_setup_device()) ---
    "COMMAND": {
        "I/O Space": _ENABLE, "Memory Space": _ENABLE, "Bus Master": _MASTER,
        "INTx Disable": _INTX,
        "Memory Write and Invalidate": _o(DRIVER, "pci_set_mwi()/pci_clear_mwi()"),
        "Parity Error Response": _HPX, "SERR# Enable": _HPX,
    },
    "Cache Line Size": _o(CORE, "pci_set_cacheline_size() from pci_set_mwi(); _HPX"),
    "Latency Timer": _o(CORE, "pci_set_master() -> pcibios_set_master()"),
    "Interrupt Line": _o(CORE, "pci_read_irq() at enumeration; the arch writes the routed "
                               "IRQ when the function is enabled (pcibios_enable_irq())"),
    "BAR*": _BAR,
    "Expansion ROM": _o(CORE, "__pci_read_base() for PCI_ROM_RESOURCE; pci_enable_rom() "
                              "sets its enable bit", RESOURCE),
    "Bus Numbers": _o(CORE, "pci_scan_bridge_extend() reads or assigns them", RESOURCE),
    "I/O Base/Limit": _o(CORE, "pci_read_bridge_io(); pci_setup_bridge_io()", RESOURCE),
    "I/O Base/Limit Upper 16": _o(CORE, "pci_setup_bridge_io()", RESOURCE),
    "Memory Base/Limit": _o(CORE, "pci_read_bridge_mmio(); pci_setup_bridge_mmio()",
                            RESOURCE),
    "Prefetchable Base/Limit": _o(CORE, "pci_read_bridge_mmio_pref(); "
                                        "pci_setup_bridge_mmio_pref()", RESOURCE),
    "Prefetchable Base Upper 32": _o(CORE, "pci_setup_bridge_mmio_pref()", RESOURCE),
    "Prefetchable Limit Upper 32": _o(CORE, "pci_setup_bridge_mmio_pref()", RESOURCE),
    "Bridge Control": _o(CORE, "__pci_setup_bridge() writes bus->bridge_ctl; "
                               "pci_configure_serr() sets SERR#; pci_reset_secondary_bus()"),
    # --- capabilities ---
    "PM PMCSR": _o(CORE, "pci_pm_init() disables PME; pci_enable_device() -> "
                         "pci_set_power_state(D0)"),
    "MSI Message Control": _MSI, "MSI Message Address": _MSI,
    "MSI Message Upper Address": _MSI, "MSI Message Data": _MSI, "MSI Mask Bits": _MSI,
    "MSI-X Message Control": _MSI,
    "PCIe Device Control": {
        "Correctable Error Reporting": _AER, "Non-Fatal Error Reporting": _AER,
        "Fatal Error Reporting": _AER, "Unsupported Request Reporting": _AER,
        "Relaxed Ordering": _o(CORE, "pci_configure_relaxed_ordering()"),
        "Max Payload": _o(CORE, "pci_configure_mps() (pcie_bus_configure_settings())"),
        "Extended Tag": _o(CORE, "pci_configure_extended_tags()"),
        "No Snoop": _o(DRIVER, "the driver (pcie_capability_clear_word(... NOSNOOP_EN))"),
        "Max Read Request": _o(CORE, "pci_configure_mps() -> pcie_set_readrq(); drivers"),
        "Initiate FLR / Bridge Config Retry": _o(CORE, "pcie_flr()"),
    },
    "PCIe Link Control": {
        "ASPM Control": _o(CORE, "pcie_aspm_init_link_state() (aspm.c)"),
        "Common Clock": _o(CORE, "pcie_aspm_configure_common_clock() (aspm.c)"),
        "Clock PM": _o(CORE, "pcie_set_clkpm() (aspm.c)"),
        "Read Completion Boundary": _o(CORE, "pci_configure_rcb()"),
        "Link Disable": _o(CORE, "pcie_aspm / hotplug link control"),
        "Retrain Link": _o(CORE, "pcie_retrain_link()"),
        "Bandwidth Management Interrupt": _o(DRIVER, "the pcieport bandwidth service"),
        "Autonomous Bandwidth Interrupt": _o(DRIVER, "the pcieport bandwidth service"),
    },
    "PCIe Slot Control": _o(DRIVER, "pciehp of pcieport: pcie_enable_notification(), "
                                    "pciehp_power_on_slot()"),
    "PCIe Root Control": _o(DRIVER, "pcieport services: pcie_pme_interrupt_enable(), "
                                    "aer_enable_rootport(); pci_enable_rrs_sv() (CRS)"),
    "PCIe Device Control 2": {
        "ARI Forwarding": _o(CORE, "pci_configure_ari()"),
        "AtomicOp Requester": _o(DRIVER, "pci_enable_atomic_ops_to_root()"),
        "IDO Request": _o(DRIVER, "pci_enable_ido()"),
        "IDO Completion": _o(DRIVER, "pci_enable_ido()"),
        "LTR Mechanism": _o(CORE, "pci_configure_ltr()"),
        "10-Bit Tag Requester": _o(CORE, "pci_configure_10bit_tags()"),
        "OBFF": _o(DRIVER, "pci_enable_obff()"),
        "End-End TLP Prefix Blocking": _o(CORE, "pci_configure_eetlp_prefix()"),
    },
    "PCIe Link Control 2": _o(NOBODY, "firmware; no 6.1 code writes Target Link Speed (the "
                                      "bandwidth controller of 6.13 does)"),
    "PCIe Slot Control 2": _NONE,
    "AER Uncorrectable Error Mask": _HPX,
    "AER Uncorrectable Error Severity": _HPX,
    "AER Correctable Error Mask": _HPX,
    "AER Root Error Command": _AER,
    "ACS Control": _o(CORE, "pci_acs_init() -> pci_enable_acs() at enumeration"),
    "LTR Max Snoop Latency": _o(NOBODY, "firmware (ACPI _DSM latency values); the kernel "
                                        "only saves and restores it around a reset"),
    "LTR Max No-Snoop Latency": _o(NOBODY, "firmware; saved and restored around a reset"),
}


def owner(label: str, field: str | None = None) -> Owner | None:
    """Who owns ``field`` of the register labelled ``label`` (the whole register when
    ``field`` is None and it has one owner); None when the table has no entry."""
    entry = TABLE.get("BAR*" if label.startswith("BAR") else label)
    if entry is None:
        return None
    if isinstance(entry, Owner):
        return entry
    if field is None:
        return None
    return entry.get(field, _NONE)


def kernel_mask(p: R.Placed) -> int:
    """The bits of ``p``'s writable mask that a kernel component owns."""
    entry = TABLE.get("BAR*" if p.label.startswith("BAR") else p.label)
    if entry is None:
        return 0
    if isinstance(entry, Owner):
        return p.rw_mask if entry.kernel else 0
    m = 0
    for f in p.reg.fields:
        o = entry.get(f.name)
        if o is not None and o.kernel:
            m |= f.mask
    return m & p.rw_mask


def owners_of(p: R.Placed, bits: int) -> list[tuple[str, Owner]]:
    """(field name, owner) of the kernel-owned fields among ``bits`` of ``p``."""
    entry = TABLE.get("BAR*" if p.label.startswith("BAR") else p.label)
    if entry is None:
        return []
    if isinstance(entry, Owner):
        return [(p.label, entry)] if entry.kernel and bits else []
    out = []
    for f in p.reg.fields:
        o = entry.get(f.name)
        if o is not None and o.kernel and bits & f.mask:
            out.append((f.name, o))
    return out


__all__ = ["CORE", "DRIVER", "NOBODY", "OWNERS", "RESOURCE", "TABLE", "Owner", "kernel_mask",
           "owner", "owners_of"]
