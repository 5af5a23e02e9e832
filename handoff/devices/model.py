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
    """Config space as read from one source. ``data`` holds ``length`` bytes read of ``size``.

    ``source`` is "collector", "earlydump" or "live"; ``size`` the device's config space size
    (256 or 4096); ``partial`` says why fewer than ``size`` bytes were read.

    One read from a record (:meth:`from_payload`) keeps the sparse runs (§4.1) and decodes
    them on the first use of ``data``: ``inspect`` lists a 2,000-device record's table
    without expanding 4,000 config spaces it never shows.
    """

    __slots__ = ("_data", "_runs", "partial", "size", "source")
    _fields = ("data", "partial", "size", "source")  # data: decoded on first use
    _repr_skip = ("data",)
    source: str
    size: int
    partial: str | None
    _data: bytes | None
    _runs: tuple[bytes, int] | None  # (sparse runs, len) until decoded

    def __init__(self, source: str, size: int, data: bytes, partial: str | None = None) -> None:
        _set(self, "source", source)
        _set(self, "size", size)
        _set(self, "_data", data)
        _set(self, "_runs", None)
        _set(self, "partial", partial)

    @property
    def data(self) -> bytes:
        d = self._data
        if d is None:
            assert self._runs is not None
            d = P.sparse_decode(*self._runs)
            _set(self, "_data", d)
            _set(self, "_runs", None)
        return d

    @property
    def length(self) -> int:
        """How many bytes were read (``len(data)``, without decoding them)."""
        return len(self._data) if self._data is not None else self._runs[1]  # type: ignore[index]

    @property
    def complete(self) -> bool:
        return self.length >= self.size

    def to_payload(self) -> dict[str, Any]:
        return P.snapshot(self.source, self.data, self.size, self.partial)

    def replace(self, **changes: object) -> Snapshot:
        kw: dict[str, Any] = {**self.as_dict(), **changes}
        return Snapshot(kw["source"], kw["size"], kw["data"], kw["partial"])

    @classmethod
    def from_payload(cls, m: dict[str, Any]) -> Snapshot:
        """From a validated snapshot map (payload.cddl snapshot); ``data`` is decoded later."""
        s = object.__new__(cls)
        _set(s, "source", m["src"])
        _set(s, "size", m["size"])
        _set(s, "_data", None)
        _set(s, "_runs", (m["data"], m["len"]))
        _set(s, "partial", m.get("partial"))
        return s


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
        """From a validated payload map. Fields are set directly rather than through
        ``__init__``'s keywords: ``inspect`` reads every device of a record this way."""
        self = object.__new__(cls)
        self.addr = d["addr"]
        self.ids = PciIds.from_payload(d["ids"])
        self.path = list(d["path"])
        self.live = Snapshot.from_payload(d["live"])
        early = d.get("early")
        self.early = None if early is None else Snapshot.from_payload(early)
        self.driver = d.get("driver")
        self.classes = list(d.get("classes", ()))
        bars = d.get("bars")
        self.bars = [Bar(*b) for b in bars] if bars else []
        self.reset_methods = list(d.get("reset_methods", ()))
        sr = d.get("sriov")
        self.sriov = (sr["total"], sr["num"]) if sr else None
        self.dsn = d.get("dsn")
        self.policy = d.get("policy", "skip")
        ext = d.get("ext")
        self.ext = dict(ext) if ext else {}
        return self


def _is_pci_addr(s: str) -> bool:
    from handoff.payload import is_pci_addr

    return is_pci_addr(s)  # the reader's rule (R20): what it refuses, save never writes


class OtherDevice(Frozen):
    """A device of a bus schema 1 does not define: a reader keeps it opaque (payload.cddl
    other-device, R20), so ``fields`` is its map as the record holds it."""

    __slots__ = ("addr", "bus", "fields")
    _repr_skip = ("fields",)
    bus: str
    addr: str
    fields: dict[str, Any]

    def __init__(self, bus: str, addr: str, fields: dict[str, Any]) -> None:
        _set(self, "bus", bus)
        _set(self, "addr", addr)
        _set(self, "fields", fields)


def devices_of(devices: list[dict[str, Any]]) -> list[PciDevice | OtherDevice]:
    """Every device of a validated payload's ``devices``, in record order: PCI ones typed,
    the others opaque."""
    return [PciDevice.from_payload(d) if d["bus"] == "pci" else
            OtherDevice(d["bus"], d["addr"], d) for d in devices]


def devices_from_payload(p: dict[str, Any]) -> list[PciDevice]:
    """The PCI devices of a validated payload; devices of other buses are skipped."""
    return [PciDevice.from_payload(d) for d in p.get("devices", []) if d.get("bus") == "pci"]
