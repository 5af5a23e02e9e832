"""One grammar for naming PCI devices: ids, classes, drivers, addresses, lspci's -s and -d.

Restore policy files (docs/policy.md), plugin match rules (docs/plugins.md) and the command
line's ``-s``/``-d`` all parse through here, so a pattern means the same thing everywhere.
The built-in default action of a device (what ``save`` records and ``restore`` falls back to)
lives here too, once.

Forms (case-insensitive):

- id: ``VVVV:DDDD``; either half may be ``*``, ``xxxx`` or empty (any); the device half may
  be an inclusive range ``DDDD-DDDD``.
- class: ``0x0108xx``, ``010802``, ``0108`` (base and sub-class), ``01`` (base), or
  ``01:08[:02]`` with ``xx`` or ``*`` for any byte; ``x`` is a wildcard hex digit.
- driver: a module name as sysfs ``driver`` shows it (``[A-Za-z0-9_-]+``).
- lspci ``-s [[domain:]bus:][dev][.fn]`` and ``-d [vendor]:[device][:class[:prog-if]]``,
  with pciutils' rules (lib/filter.c ``pci_filter_parse_slot``/``pci_filter_parse_id``): an
  empty or ``*`` part matches anything, numbers are hex, a missing domain is any domain.

Deliberately no ``re``: ``save`` imports this module for :func:`default_action`, and every
millisecond of import is paid by every save.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from handoff._slots import Frozen

if TYPE_CHECKING:  # pragma: no cover
    from handoff.devices.model import PciDevice

_set = object.__setattr__
_HEX = frozenset("0123456789abcdef")
_MODULE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _is_hex(s: str) -> bool:
    return bool(s) and all(c in _HEX for c in s)


# --- ids -----------------------------------------------------------------------------------


class IdPattern(Frozen):
    """Vendor and device id; None is any. ``device_last`` makes ``device..device_last`` an
    inclusive range. ``text`` is what the user wrote (equality ignores it)."""

    __slots__ = ("device", "device_last", "text", "vendor")
    _eq_skip = ("text",)
    vendor: int | None
    device: int | None
    device_last: int | None
    text: str

    def __init__(self, vendor: int | None = None, device: int | None = None,
                 device_last: int | None = None, text: str | None = None) -> None:
        _set(self, "vendor", vendor)
        _set(self, "device", device)
        _set(self, "device_last", device_last)
        _set(self, "text", str(self) if text is None else text)

    def matches(self, vendor: int, device: int) -> bool:
        if self.vendor is not None and vendor != self.vendor:
            return False
        if self.device is None:
            return True
        last = self.device if self.device_last is None else self.device_last
        return self.device <= device <= last

    def __str__(self) -> str:
        v = "*" if self.vendor is None else f"{self.vendor:04x}"
        if self.device is None:
            return f"{v}:*"
        if self.device_last is None or self.device_last == self.device:
            return f"{v}:{self.device:04x}"
        return f"{v}:{self.device:04x}-{self.device_last:04x}"


def _id_half(part: str, what: str, text: str) -> int | None:
    if part in ("", "*", "xxxx"):
        return None
    if len(part) != 4 or not _is_hex(part):
        raise ValueError(f"id {text!r}: {what} {part!r} is not 4 hex digits, '*' or 'xxxx'")
    return int(part, 16)


def parse_id(text: str) -> IdPattern:
    """``"8086:10d3"``, ``"1af4:1040-107f"`` (inclusive), ``"8086:*"``, ``"*:10d3"``."""
    t = text.strip().lower()
    parts = t.split(":")
    if len(parts) != 2:
        raise ValueError(f"id {text!r} is not VVVV:DDDD (4 hex digits, '*' or 'xxxx' each; "
                         "the device may be a range DDDD-DDDD)")
    vendor = _id_half(parts[0], "vendor", text)
    first_s, dash, last_s = parts[1].partition("-")
    if dash and first_s in ("", "*", "xxxx"):
        raise ValueError(f"id {text!r}: a range needs a first device id, not '*'")
    first = _id_half(first_s, "device", text)
    last = _id_half(last_s, "device", text) if dash else None
    if dash and last is None:
        raise ValueError(f"id {text!r}: a range needs a last device id")
    if first is not None and last is not None and last < first:
        raise ValueError(f"id {text!r}: range ends before it starts")
    return IdPattern(vendor, first, last, text)


# --- classes -------------------------------------------------------------------------------


class ClassPattern(Frozen):
    """A class-code pattern: ``value`` and ``mask`` over base << 16 | sub << 8 | prog-if."""

    __slots__ = ("mask", "text", "value")
    _eq_skip = ("text",)
    value: int
    mask: int
    text: str

    def __init__(self, value: int, mask: int = 0xFFFFFF, text: str | None = None) -> None:
        _set(self, "value", value & mask)
        _set(self, "mask", mask)
        _set(self, "text", str(self) if text is None else text)

    def matches(self, class_code: int) -> bool:
        return class_code & self.mask == self.value

    def __str__(self) -> str:
        digits = []
        for shift in range(20, -4, -4):
            m = (self.mask >> shift) & 0xF
            if m == 0xF:
                digits.append(f"{(self.value >> shift) & 0xF:x}")
            elif m == 0:
                digits.append("x")
            else:
                return f"{self.value:06x}/{self.mask:06x}"
        return "".join(digits)


def parse_class(text: str) -> ClassPattern:
    """``"0x0108xx"``, ``"010802"``, ``"0108"`` (base and sub-class), ``"01"``, ``"01:08"`` or
    ``"01:08:02"``; ``x`` is a wildcard hex digit and ``*`` (or ``xx``) a wildcard byte."""
    t = text.strip().lower()
    if ":" in t:
        parts = t.split(":")
        if len(parts) > 3 or not all(
                p == "*" or (len(p) == 2 and all(c in _HEX or c == "x" for c in p))
                for p in parts):
            raise ValueError(f"class {text!r} is not BB[:SS[:PP]] (hex, 'xx' or '*' per byte)")
        digits = "".join("xx" if p == "*" else p for p in parts)
    else:
        digits = t.removeprefix("0x")
        if len(digits) not in (2, 4, 6) or not all(c in _HEX or c == "x" for c in digits):
            raise ValueError(f"class {text!r} is not 2, 4 or 6 hex digits ('x' = any digit), "
                             "e.g. \"0x0108xx\" or \"01:08\"")
    digits = digits.ljust(6, "x")
    value = mask = 0
    for ch in digits:
        value, mask = value << 4, mask << 4
        if ch != "x":
            value |= int(ch, 16)
            mask |= 0xF
    return ClassPattern(value, mask, text)


# --- drivers and addresses -------------------------------------------------------------------


def parse_driver(text: str) -> str:
    """A driver (module) name as sysfs shows it: letters, digits, ``_`` and ``-``."""
    t = text.strip()
    if not t or not all(c in _MODULE_CHARS for c in t):
        raise ValueError(f"driver {text!r} is not a module name (letters, digits, _ and -)")
    return t


def parse_address(text: str) -> str:
    """A full address ``"0000:01:00.0"``, one without domain (``"01:00.0"``), or a glob
    (``*``, ``?``, ``[...]``) over the full address, as policy files write them."""
    t = text.strip().lower()
    if t.count(":") == 1:
        t = "0000:" + t
    if any(c in t for c in "*?[]"):
        if not t or not all(c in _HEX or c in ":.*?[]-" for c in t):
            raise ValueError(f"address pattern {text!r} has characters other than hex, ':', "
                             "'.', and the glob characters * ? [ ]")
        why = _glob_problem(t)
        if why:
            raise ValueError(f"address pattern {text!r}: {why}")
        return t
    dom, _, rest = t.partition(":")
    bus, _, rest = rest.partition(":")
    dev, dot, fn = rest.partition(".")
    if not (len(dom) == 4 and _is_hex(dom) and len(bus) == 2 and _is_hex(bus)
            and len(dev) == 2 and _is_hex(dev) and int(dev, 16) <= 0x1F and dot
            and len(fn) == 1 and fn in "01234567"):
        raise ValueError(f"address {text!r} is not DDDD:BB:DD.F (e.g. \"0000:03:00.0\")")
    return t


def _glob_problem(t: str) -> str | None:
    """Why ``t`` is not a glob fnmatch reads as intended: fnmatch takes an unclosed "[" or a
    stray "]" literally, so such a pattern silently matches no address."""
    i = 0
    while i < len(t):
        c = t[i]
        if c == "]":
            return f"']' at position {i + 1} closes no '['"
        if c == "[":
            j = t.find("]", i + 2 if t[i + 1 : i + 2] == "]" else i + 1)
            if j < 0:
                return f"'[' at position {i + 1} is never closed"
            if "[" in t[i + 1 : j]:
                return f"'[' at position {i + 1} holds another '['"
            if j == i + 1 or (j == i + 2 and t[i + 1] in "!^"):
                return f"'[' at position {i + 1} holds nothing"
            i = j
        i += 1
    return None


# --- lspci -s and -d -------------------------------------------------------------------------


def _lspci_num(part: str, limit: int, what: str, text: str) -> int | None:
    """One field of an lspci filter: empty or ``*`` is any; else hex up to ``limit``."""
    if part in ("", "*"):
        return None
    if not _is_hex(part.lower()) or int(part, 16) > limit:
        raise ValueError(f"{text!r}: invalid {what} {part!r} (hex, at most {limit:x})")
    return int(part, 16)


class SlotFilter(Frozen):
    """lspci's ``-s [[domain:]bus:][dev][.fn]``; a None field matches anything."""

    __slots__ = ("bus", "dev", "domain", "fn", "text")
    _eq_skip = ("text",)
    domain: int | None
    bus: int | None
    dev: int | None
    fn: int | None
    text: str

    def __init__(self, domain: int | None = None, bus: int | None = None,
                 dev: int | None = None, fn: int | None = None, text: str = "") -> None:
        _set(self, "domain", domain)
        _set(self, "bus", bus)
        _set(self, "dev", dev)
        _set(self, "fn", fn)
        _set(self, "text", text)

    def matches(self, addr: str) -> bool:
        """``addr`` is sysfs's ``DDDD:BB:DD.F``."""
        try:
            dom_s, bus_s, rest = addr.split(":")
            dev_s, fn_s = rest.split(".")
            got = (int(dom_s, 16), int(bus_s, 16), int(dev_s, 16), int(fn_s, 16))
        except ValueError:
            return False
        return all(w is None or w == g
                   for w, g in zip((self.domain, self.bus, self.dev, self.fn), got))


def parse_slot(text: str) -> SlotFilter:
    """lspci's ``-s``: ``[[domain:]bus:][dev][.fn]`` (pciutils lib/filter.c
    ``pci_filter_parse_slot``: the last ``:`` splits bus from device, the first ``.`` after
    it device from function)."""
    t = text.strip()
    domain = bus = None
    head, colon, mid = t.rpartition(":")
    if not colon:
        mid = t
    else:
        dom_s, colon2, bus_s = head.partition(":")
        if not colon2:
            dom_s, bus_s = "", head
        if ":" in bus_s:
            raise ValueError(f"slot {text!r} is not [[domain:]bus:][dev][.fn]")
        domain = _lspci_num(dom_s, 0x7FFFFFFF, "domain", text)
        bus = _lspci_num(bus_s, 0xFF, "bus", text)
    dev_s, dot, fn_s = mid.partition(".")
    dev = _lspci_num(dev_s, 0x1F, "device (slot) number", text)
    fn = _lspci_num(fn_s, 7, "function", text) if dot else None
    return SlotFilter(domain, bus, dev, fn, text)


class DeviceFilter(Frozen):
    """lspci's ``-d [vendor]:[device][:class[:prog-if]]``: ids and, when given, a class."""

    __slots__ = ("cls", "id", "text")
    _eq_skip = ("text",)
    id: IdPattern
    cls: ClassPattern | None
    text: str

    def __init__(self, id: IdPattern, cls: ClassPattern | None = None, text: str = "") -> None:
        _set(self, "id", id)
        _set(self, "cls", cls)
        _set(self, "text", text)

    def matches(self, vendor: int, device: int, class_code: int) -> bool:
        return self.id.matches(vendor, device) and (self.cls is None
                                                    or self.cls.matches(class_code))


def parse_device_filter(text: str) -> DeviceFilter:
    """lspci's ``-d``. As in pciutils (``pci_filter_parse_id``), the class is base and
    sub-class as one hex number (``0200``), optionally followed by ``:prog-if``."""
    t = text.strip().lower()
    parts = t.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise ValueError(f"device filter {text!r} is not [vendor]:[device][:class[:prog-if]]")
    vendor = _lspci_num(parts[0], 0xFFFF, "vendor id", text)
    device = _lspci_num(parts[1], 0xFFFF, "device id", text)
    cls = None
    if len(parts) >= 3:
        c = _lspci_num(parts[2], 0xFFFF, "class", text)
        p = _lspci_num(parts[3], 0xFF, "prog-if", text) if len(parts) == 4 else None
        if c is not None:
            value, mask = c << 8, 0xFFFF00
            if p is not None:
                value, mask = value | p, 0xFFFFFF
            cls = ClassPattern(value, mask)
        elif p is not None:
            cls = ClassPattern(p, 0xFF)
    return DeviceFilter(IdPattern(vendor, device), cls, text)


class Selection(Frozen):
    """The command line's ``-s`` and ``-d`` together (both must match, as in lspci)."""

    __slots__ = ("device", "slot")
    slot: SlotFilter | None
    device: DeviceFilter | None

    def __init__(self, slot: SlotFilter | None = None,
                 device: DeviceFilter | None = None) -> None:
        _set(self, "slot", slot)
        _set(self, "device", device)

    def __bool__(self) -> bool:
        return self.slot is not None or self.device is not None

    def matches(self, addr: str, vendor: int, device: int, class_code: int) -> bool:
        if self.slot is not None and not self.slot.matches(addr):
            return False
        return self.device is None or self.device.matches(vendor, device, class_code)

    def matches_device(self, dev: PciDevice) -> bool:
        return self.matches(dev.addr, dev.ids.vendor, dev.ids.device, dev.ids.class_code)

    def describe(self) -> str:
        parts = []
        if self.slot is not None:
            parts.append(f"-s {self.slot.text}")
        if self.device is not None:
            parts.append(f"-d {self.device.text}")
        return " ".join(parts)


# --- the built-in default action (docs/policy.md, "Default policy") --------------------------

QUIESCE, RESET, RESTORE_EARLY, RESTORE_LIVE, SKIP = (
    "quiesce", "reset", "restore-early", "restore-live", "skip")
ACTIONS = (QUIESCE, RESET, RESTORE_EARLY, RESTORE_LIVE, SKIP)


def is_bridge(dev: PciDevice) -> bool:
    """A PCI-to-PCI (or subtractive/semi-transparent) bridge: devices sit behind it."""
    return dev.header_type == 1 or dev.ids.class_code >> 8 in (0x0604, 0x0609)


def bus_master(dev: PciDevice) -> bool | None:
    """Whether the live COMMAND register has Bus Master on (None: not read)."""
    data = dev.live.data
    return bool(data[4] & 0x04) if len(data) > 4 else None


def default_rule(dev: PciDevice, blacklist: Iterable[str] = ()) -> tuple[str, str]:
    """(action, why) for ``dev`` by the built-in defaults; the first match wins."""
    cls = dev.ids.class_code
    restore = RESTORE_EARLY if dev.early is not None else RESTORE_LIVE
    snap = "early" if dev.early is not None else "live (no early snapshot in the record)"
    if is_bridge(dev):
        return restore, (f"PCI-to-PCI bridge: bus numbers and windows route everything "
                         f"below it; restore the {snap} state")
    if dev.driver and dev.driver in set(blacklist):
        return QUIESCE, (f"its driver {dev.driver} is blacklisted in the capture kernel: "
                         "nothing will drive it, stop its DMA and INTx")
    if cls >> 16 == 0x01:
        return restore, (f"storage controller: the dump may be written through it; "
                         f"restore the {snap} state")
    if cls >> 16 == 0x06:
        return SKIP, "host, ISA or other chipset bridge: left alone"
    if cls >> 16 == 0x03:
        return SKIP, "display controller: may carry the console, left alone"
    bm = bus_master(dev)
    if bm or bm is None:
        return QUIESCE, ("bus-mastering device with no driver yet in the capture kernel: "
                         "stop its DMA and INTx until a driver takes it")
    return SKIP, "not bus-mastering: nothing to stop"


def default_action(dev: PciDevice, *, blacklist: Iterable[str] = ()) -> str:
    """The default action for ``dev`` (what ``handoff save`` records)."""
    return default_rule(dev, blacklist)[0]


def payload_matches(sel: Selection, d: dict[str, Any]) -> bool:
    """``sel`` on a payload device map (payload.cddl pci-device); a device of another bus, or
    one whose ids are not numbers (other buses are opaque to the schema, R20), never matches."""
    ids = d.get("ids")
    if d.get("bus", "pci") != "pci" or not isinstance(ids, dict):
        return False
    vendor, device, cls = (ids.get(k) for k in ("vendor", "device", "class"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (vendor, device, cls)):
        return False
    return sel.matches(str(d.get("addr", "")), vendor, device, cls)  # type: ignore[arg-type]


def filter_payload(sel: Selection | None, devices: Iterable[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The payload devices ``sel`` keeps (all of them when ``sel`` is empty or None)."""
    return [d for d in devices if not sel or payload_matches(sel, d)]
