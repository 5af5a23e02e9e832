"""Typed views of the devices a record carries, and their mapping to payload maps.

The payload (spec/payload.cddl) is the wire form; these classes are what library users and the
restore engine work with. A device is keyed by (bus, addr); the bus decides the meaning of the
ids and of the config snapshots, so a new bus adds a class here without a new major version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handoff import payload as P


@dataclass(frozen=True)
class PciIds:
    vendor: int
    device: int
    subvendor: int
    subdevice: int
    class_code: int  # base << 16 | sub << 8 | prog-if
    revision: int

    def to_payload(self) -> dict[str, int]:
        return {"vendor": self.vendor, "device": self.device, "subvendor": self.subvendor,
                "subdevice": self.subdevice, "class": self.class_code, "revision": self.revision}

    @classmethod
    def from_payload(cls, m: dict[str, Any]) -> PciIds:
        return cls(m["vendor"], m["device"], m["subvendor"], m["subdevice"], m["class"],
                   m["revision"])

    def short(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"


@dataclass(frozen=True)
class Snapshot:
    """Config space as read from one source. ``data`` holds ``len(data)`` bytes read of ``size``."""

    source: str  # "collector", "earlydump", "live"
    size: int  # 256 or 4096: the device's config space size
    data: bytes
    partial: str | None = None  # why fewer than ``size`` bytes were read

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.size

    def to_payload(self) -> dict[str, Any]:
        return P.snapshot(self.source, self.data, self.size, self.partial)

    @classmethod
    def from_payload(cls, m: dict[str, Any]) -> Snapshot:
        return cls(m["src"], m["size"], P.snapshot_bytes(m), m.get("partial"))


@dataclass(frozen=True)
class Bar:
    index: int  # 0-5, 6 = expansion ROM
    start: int
    size: int
    flags: int  # IORESOURCE_* flags from sysfs "resource"

    @property
    def is_io(self) -> bool:
        return bool(self.flags & 0x100)  # IORESOURCE_IO

    @property
    def is_mem(self) -> bool:
        return bool(self.flags & 0x200)  # IORESOURCE_MEM


@dataclass
class PciDevice:
    """A PCI function in the Linux device model."""

    addr: str  # "0000:00:03.0"
    ids: PciIds
    path: list[str]  # components under /sys/devices, ending with addr
    live: Snapshot
    early: Snapshot | None = None
    driver: str | None = None
    classes: list[str] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    reset_methods: list[str] = field(default_factory=list)
    sriov: tuple[int, int] | None = None  # (total, num)
    dsn: int | None = None
    policy: str = "skip"
    ext: dict[str, Any] = field(default_factory=dict)

    bus = "pci"

    @property
    def parent(self) -> str | None:
        """Address of the upstream bridge, from the sysfs path (None at a root bus)."""
        pci = [c for c in self.path[:-1] if _is_pci_addr(c)]
        return pci[-1] if pci else None

    @property
    def is_bridge(self) -> bool:
        return (self.ids.class_code >> 8) == 0x0604

    @property
    def header_type(self) -> int:
        return self.live.data[0x0E] & 0x7F if len(self.live.data) > 0x0E else 0

    def to_payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "bus": "pci",
            "addr": self.addr,
            "ids": self.ids.to_payload(),
            "path": list(self.path),
            "live": self.live.to_payload(),
            "policy": self.policy,
        }
        if self.early is not None:
            d["early"] = self.early.to_payload()
        if self.driver:
            d["driver"] = self.driver
        if self.classes:
            d["classes"] = sorted(self.classes)
        if self.parent:
            d["parent"] = self.parent
        if self.bars:
            d["bars"] = [[b.index, b.start, b.size, b.flags] for b in self.bars]
        if self.reset_methods:
            d["reset_methods"] = list(self.reset_methods)
        if self.sriov is not None:
            d["sriov"] = {"total": self.sriov[0], "num": self.sriov[1]}
        if self.dsn is not None:
            d["dsn"] = self.dsn
        if self.ext:
            d["ext"] = self.ext
        return d

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> PciDevice:
        sr = d.get("sriov")
        return cls(
            addr=d["addr"],
            ids=PciIds.from_payload(d["ids"]),
            path=list(d["path"]),
            live=Snapshot.from_payload(d["live"]),
            early=Snapshot.from_payload(d["early"]) if "early" in d else None,
            driver=d.get("driver"),
            classes=list(d.get("classes", [])),
            bars=[Bar(*b) for b in d.get("bars", [])],
            reset_methods=list(d.get("reset_methods", [])),
            sriov=(sr["total"], sr["num"]) if sr else None,
            dsn=d.get("dsn"),
            policy=d.get("policy", "skip"),
            ext=dict(d.get("ext", {})),
        )


def _is_pci_addr(s: str) -> bool:
    return len(s) == 12 and s[4] == ":" and s[7] == ":" and s[10] == "."


def devices_from_payload(p: dict[str, Any]) -> list[PciDevice]:
    """The PCI devices of a validated payload; devices of other buses are skipped."""
    return [PciDevice.from_payload(d) for d in p.get("devices", []) if d.get("bus") == "pci"]
