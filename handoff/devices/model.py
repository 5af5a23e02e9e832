"""Typed views of the devices a record carries, and their mapping to payload maps.

The payload (spec/payload.cddl) is the wire form; these classes are what library users and the
restore engine work with. A device is keyed by (bus, addr); the bus decides the meaning of the
ids and of the config snapshots, so a new bus adds a class here without a new major version.
"""

from __future__ import annotations

from typing import Any

from handoff import payload as P
from handoff._slots import Frozen, Slots

_set = object.__setattr__


class PciIds(Frozen):
    """The ids a PCI function reports; ``class_code`` is base << 16 | sub << 8 | prog-if."""

    __slots__ = ("class_code", "device", "revision", "subdevice", "subvendor", "vendor")
    vendor: int
    device: int
    subvendor: int
    subdevice: int
    class_code: int
    revision: int

    def __init__(self, vendor: int, device: int, subvendor: int, subdevice: int,
                 class_code: int, revision: int) -> None:
        _set(self, "vendor", vendor)
        _set(self, "device", device)
        _set(self, "subvendor", subvendor)
        _set(self, "subdevice", subdevice)
        _set(self, "class_code", class_code)
        _set(self, "revision", revision)

    def to_payload(self) -> dict[str, int]:
        return P.pci_ids(self.vendor, self.device, self.subvendor, self.subdevice,
                         self.class_code, self.revision)

    @classmethod
    def from_payload(cls, m: dict[str, Any]) -> PciIds:
        return cls(m["vendor"], m["device"], m["subvendor"], m["subdevice"], m["class"],
                   m["revision"])

    def short(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"


class Snapshot(Frozen):
    """Config space as read from one source. ``data`` holds ``len(data)`` bytes read of ``size``.

    ``source`` is "collector", "earlydump" or "live"; ``size`` the device's config space size
    (256 or 4096); ``partial`` says why fewer than ``size`` bytes were read.
    """

    __slots__ = ("data", "partial", "size", "source")
    _repr_skip = ("data",)
    source: str
    size: int
    data: bytes
    partial: str | None

    def __init__(self, source: str, size: int, data: bytes, partial: str | None = None) -> None:
        _set(self, "source", source)
        _set(self, "size", size)
        _set(self, "data", data)
        _set(self, "partial", partial)

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.size

    def to_payload(self) -> dict[str, Any]:
        return P.snapshot(self.source, self.data, self.size, self.partial)

    @classmethod
    def from_payload(cls, m: dict[str, Any]) -> Snapshot:
        return cls(m["src"], m["size"], P.snapshot_bytes(m), m.get("partial"))


class Bar(Frozen):
    """A BAR resource: ``index`` 0-5 (6 = expansion ROM), ``flags`` are the IORESOURCE_*
    flags from sysfs ``resource``."""

    __slots__ = ("flags", "index", "size", "start")
    index: int
    start: int
    size: int
    flags: int

    def __init__(self, index: int, start: int, size: int, flags: int) -> None:
        _set(self, "index", index)
        _set(self, "start", start)
        _set(self, "size", size)
        _set(self, "flags", flags)

    @property
    def is_io(self) -> bool:
        return bool(self.flags & 0x100)  # IORESOURCE_IO

    @property
    def is_mem(self) -> bool:
        return bool(self.flags & 0x200)  # IORESOURCE_MEM


class PciDevice(Slots):
    """A PCI function in the Linux device model.

    ``addr`` is "0000:00:03.0"; ``path`` the components of its directory under
    /sys/devices, ending with ``addr``; ``sriov`` is (total, num) VFs.
    """

    __slots__ = (
        "addr",
        "bars",
        "classes",
        "driver",
        "dsn",
        "early",
        "ext",
        "ids",
        "live",
        "path",
        "policy",
        "reset_methods",
        "sriov",
    )
    addr: str
    ids: PciIds
    path: list[str]
    live: Snapshot
    early: Snapshot | None
    driver: str | None
    classes: list[str]
    bars: list[Bar]
    reset_methods: list[str]
    sriov: tuple[int, int] | None
    dsn: int | None
    policy: str
    ext: dict[str, Any]

    bus = "pci"

    def __init__(self, addr: str, ids: PciIds, path: list[str], live: Snapshot,
                 early: Snapshot | None = None, driver: str | None = None,
                 classes: list[str] | None = None, bars: list[Bar] | None = None,
                 reset_methods: list[str] | None = None, sriov: tuple[int, int] | None = None,
                 dsn: int | None = None, policy: str = "skip",
                 ext: dict[str, Any] | None = None) -> None:
        self.addr = addr
        self.ids = ids
        self.path = path
        self.live = live
        self.early = early
        self.driver = driver
        self.classes = [] if classes is None else classes
        self.bars = [] if bars is None else bars
        self.reset_methods = [] if reset_methods is None else reset_methods
        self.sriov = sriov
        self.dsn = dsn
        self.policy = policy
        self.ext = {} if ext is None else ext

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
        """The payload map (payload.cddl pci-device), built with its keys already in R15
        order (payload.DEVICE_KEYS: shorter first, then bytewise), so the encoder need not
        sort 1,000 maps; an out-of-order map would still encode right, only slower."""
        d: dict[str, Any] = {"bus": "pci"}
        if self.dsn is not None:
            d["dsn"] = self.dsn
        if self.ext:
            from handoff import cbor

            d["ext"] = cbor.canonical(self.ext)
        ids = self.ids
        d["ids"] = P.pci_ids(ids.vendor, ids.device, ids.subvendor, ids.subdevice,
                             ids.class_code, ids.revision)
        d["addr"] = self.addr
        if self.bars:
            d["bars"] = [[b.index, b.start, b.size, b.flags] for b in self.bars]
        d["live"] = self.live.to_payload()
        d["path"] = list(self.path)
        if self.early is not None:
            d["early"] = self.early.to_payload()
        if self.sriov is not None:
            d["sriov"] = {"num": self.sriov[1], "total": self.sriov[0]}
        if self.driver:
            d["driver"] = self.driver
        parent = self.parent
        if parent:
            d["parent"] = parent
        d["policy"] = self.policy
        if self.classes:
            d["classes"] = sorted(self.classes)
        if self.reset_methods:
            d["reset_methods"] = list(self.reset_methods)
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
    from handoff.payload import is_pci_addr

    return is_pci_addr(s)  # the reader's rule (R20): what it refuses, save never writes


def devices_from_payload(p: dict[str, Any]) -> list[PciDevice]:
    """The PCI devices of a validated payload; devices of other buses are skipped."""
    return [PciDevice.from_payload(d) for d in p.get("devices", []) if d.get("bus") == "pci"]
