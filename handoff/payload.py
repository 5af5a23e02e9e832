"""The payload schema (spec/payload.cddl, R20-R22) and the sparse config-space encoding (§4.1)."""

from __future__ import annotations

import struct

from handoff.errors import SchemaViolation

TYPE_CHECKING = False  # typing costs every start-up; mypy reads the block below anyway
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from typing import Any

SCHEMA_VERSION = 1
CONFIG_SIZES = (256, 4096)
CONFIG_MAX = 0xFFFF  # §4.1: run offsets and lengths are 16 bits
_RUN = struct.Struct("<HH")
_MIN_ZERO_GAP = 4  # §4.1: a run header costs 4 bytes, so shorter zero gaps stay inside a run

# The keys of each fixed map of payload.cddl in R15 order (handoff.cbor.canonical_order; a
# test holds them to it). Building a map in this order lets cbor.dumps skip sorting it.
PAYLOAD_KEYS = ("v", "ext", "capture", "devices")
DEVICE_KEYS = ("bus", "dsn", "ext", "ids", "addr", "bars", "live", "path", "early", "sriov",
               "driver", "parent", "policy", "classes", "reset_methods")
IDS_KEYS = ("class", "device", "vendor", "revision", "subdevice", "subvendor")
SNAPSHOT_KEYS = ("len", "src", "data", "size", "partial")
SRIOV_KEYS = ("num", "total")
CAPTURE_KEYS = ("cmdline", "blacklist")

_PATTERNS: dict[str | bytes, re.Pattern[Any]] = {}


def _re(pattern: str | bytes) -> re.Pattern[Any]:
    """``pattern`` compiled on first use: re (and enum under it) is not needed to write runs."""
    p = _PATTERNS.get(pattern)
    if p is None:
        import re

        p = _PATTERNS[pattern] = re.compile(pattern)
    return p


# R20: DDDD:BB:DD.F, lower-case, device <= 0x1f, function <= 7, as pci_name() prints it
# (drivers/pci/probe.c: "%04x:%02x:%02x.%d"). Matched whole (fullmatch): "$" would also
# accept a trailing newline.
_PCI_ADDR = r"[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]"
_MODULE_NAME = r"[A-Za-z0-9_\-]+"
_ZERO_GAP = rb"\x00{%d,}" % _MIN_ZERO_GAP


def sparse_encode(config: bytes) -> bytes:
    """Encode config bytes (at most CONFIG_MAX) as §4.1 runs, split only at zero gaps of 4 or more.

    Every run starts and ends on a non-zero byte. The C core writes them
    (``handoff._binding.sparse_encode``, about 6x faster) when it is built; otherwise
    :func:`sparse_encode_py`, the reference, does. Both give the same bytes for every input
    (tests/test_payload_sparse.py) and raise ValueError above CONFIG_MAX.
    """
    enc = _encoder
    if enc is None:
        enc = _load_encoder()
    return enc(config)


_encoder: Callable[[bytes], bytes] | None = None


def _load_encoder() -> Callable[[bytes], bytes]:
    global _encoder
    try:
        from handoff._binding import sparse_encode as native
    except ImportError:  # the C core is not built
        _encoder = sparse_encode_py
    else:
        _encoder = native
    return _encoder


def sparse_encode_py(config: bytes) -> bytes:
    """The reference §4.1 encoder in Python; what the C core's must match byte for byte.

    One regex scan finds the gaps (each a maximal run of >= 4 zeros), so every segment
    between gaps starts and ends on a non-zero byte, except that the first and last may
    carry up to 3 zeros to strip. This is 15-50x faster than a loop per byte.
    """
    n = len(config)
    if n > CONFIG_MAX:
        raise ValueError("config space larger than 64 KiB cannot be encoded")
    out = bytearray()
    pos = 0
    for m in _re(_ZERO_GAP).finditer(config):
        start, end = m.span()
        if start > pos:
            _run(out, config, pos, start)
        pos = end
    if pos < n:
        _run(out, config, pos, n)
    return bytes(out)


def _run(out: bytearray, config: bytes, start: int, end: int) -> None:
    seg = config[start:end]
    body = seg.strip(b"\x00")
    if body:
        first = start + len(seg) - len(seg.lstrip(b"\x00"))
        out += _RUN.pack(first, len(body))
        out += body


def sparse_decode(data: bytes, length: int, *, where: str = "data") -> bytes:
    """Expand §4.1 runs into ``length`` bytes; refuse runs that break R21."""
    out = bytearray(length)
    pos = 0
    prev_end = 0
    first = True
    n = len(data)
    while pos < n:
        if n - pos < 4:
            raise SchemaViolation(f"{where}: truncated run header (R21)", check="schema")
        off, ln = _RUN.unpack_from(data, pos)
        pos += 4
        if ln == 0:
            raise SchemaViolation(f"{where}: empty run at offset {off} (R21)", check="schema")
        if not first and off < prev_end:
            raise SchemaViolation(
                f"{where}: run at offset {off} overlaps or is out of order (R21)", check="schema"
            )
        if off + ln > length:
            raise SchemaViolation(
                f"{where}: run {off}+{ln} lies outside [0, {length}) (R21)", check="schema"
            )
        if n - pos < ln:
            raise SchemaViolation(f"{where}: run at offset {off} is truncated (R21)", check="schema")
        out[off : off + ln] = data[pos : pos + ln]
        pos += ln
        prev_end = off + ln
        first = False
    return bytes(out)


def _fail(path: str, msg: str, base_offset: int | None) -> SchemaViolation:
    return SchemaViolation(f"payload{path}: {msg} (R20)", check="schema", offset=base_offset)


def _want(obj: dict[str, Any], key: str, typ: type | tuple[type, ...], path: str,
          base: int | None, required: bool = True) -> Any:
    if key not in obj:
        if required:
            raise _fail(path, f"missing key {key!r}", base)
        return None
    v = obj[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise _fail(f"{path}.{key}", f"expected {tname}, got {type(v).__name__}", base)
    return v


def _uint(obj: dict[str, Any], key: str, path: str, base: int | None, maximum: int,
          required: bool = True) -> int | None:
    v = _want(obj, key, int, path, base, required)
    if v is not None and not 0 <= v <= maximum:
        raise _fail(f"{path}.{key}", f"{v} is outside [0, {maximum:#x}]", base)
    return v


def validate(p: Any, base_offset: int | None = None) -> None:
    """Check a decoded payload against payload.cddl; unknown keys are ignored (R22)."""
    if not isinstance(p, dict):
        raise _fail("", "top level is not a map", base_offset)
    v = _want(p, "v", int, "", base_offset)
    if v != SCHEMA_VERSION:
        raise _fail(".v", f"schema {v} is not {SCHEMA_VERSION}", base_offset)
    devices = _want(p, "devices", list, "", base_offset)
    for i, d in enumerate(devices):
        validate_device(d, f".devices[{i}]", base_offset)
    cap = _want(p, "capture", dict, "", base_offset, required=False)
    if cap is not None:
        bl = _want(cap, "blacklist", list, ".capture", base_offset, required=False)
        for j, m in enumerate(bl or []):
            if not isinstance(m, str) or not _re(_MODULE_NAME).fullmatch(m):
                raise _fail(f".capture.blacklist[{j}]", "not a module name", base_offset)
        _want(cap, "cmdline", str, ".capture", base_offset, required=False)
    _validate_ext(p, "", base_offset)


def _validate_ext(obj: dict[str, Any], path: str, base: int | None) -> None:
    ext = _want(obj, "ext", dict, path, base, required=False)
    for name, section in (ext or {}).items():
        if not isinstance(section, dict):
            raise _fail(f"{path}.ext.{name}", "section is not a map", base)
        _uint(section, "v", f"{path}.ext.{name}", base, 0xFFFFFFFF)


def is_pci_addr(s: object) -> bool:
    """Whether ``s`` is a PCI address as the schema takes it (R20): the one rule that save,
    the reader, policy and restore share."""
    return isinstance(s, str) and _re(_PCI_ADDR).fullmatch(s) is not None


def validate_device(d: Any, path: str, base: int | None) -> None:
    if not isinstance(d, dict):
        raise _fail(path, "device is not a map", base)
    bus = _want(d, "bus", str, path, base)
    addr = _want(d, "addr", str, path, base)
    if bus != "pci":
        return  # other buses are opaque to schema 1 readers
    if not is_pci_addr(addr):
        raise _fail(f"{path}.addr", f"{addr!r} is not DDDD:BB:DD.F", base)
    ids = _want(d, "ids", dict, path, base)
    for key, mx in (("vendor", 0xFFFF), ("device", 0xFFFF), ("subvendor", 0xFFFF),
                    ("subdevice", 0xFFFF), ("class", 0xFFFFFF), ("revision", 0xFF)):
        _uint(ids, key, f"{path}.ids", base, mx)
    _want(d, "driver", str, path, base, required=False)
    for key in ("classes", "path", "reset_methods"):
        lst = _want(d, key, list, path, base, required=(key == "path"))
        for j, s in enumerate(lst or []):
            if not isinstance(s, str):
                raise _fail(f"{path}.{key}[{j}]", "not a text string", base)
    parent = _want(d, "parent", str, path, base, required=False)
    if parent is not None and not is_pci_addr(parent):
        raise _fail(f"{path}.parent", f"{parent!r} is not DDDD:BB:DD.F", base)
    for j, bar in enumerate(_want(d, "bars", list, path, base, required=False) or []):
        if (not isinstance(bar, list) or len(bar) != 4
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                           for x in bar) or bar[0] > 6):
            raise _fail(f"{path}.bars[{j}]", "expected [index<=6, start, size, flags]", base)
    sriov = _want(d, "sriov", dict, path, base, required=False)
    if sriov is not None:
        _uint(sriov, "total", f"{path}.sriov", base, 0xFFFF)
        _uint(sriov, "num", f"{path}.sriov", base, 0xFFFF)
    _uint(d, "dsn", path, base, (1 << 64) - 1, required=False)
    for key in ("early", "live"):
        snap = _want(d, key, dict, path, base, required=(key == "live"))
        if snap is not None:
            validate_snapshot(snap, f"{path}.{key}", base)
    _want(d, "policy", str, path, base)
    _validate_ext(d, path, base)


def validate_snapshot(s: dict[str, Any], path: str, base: int | None) -> None:
    _want(s, "src", str, path, base)
    size = _want(s, "size", int, path, base)
    if size not in CONFIG_SIZES:
        raise _fail(f"{path}.size", f"{size} is not 256 or 4096", base)
    length = _uint(s, "len", path, base, size)
    _want(s, "partial", str, path, base, required=False)
    data = _want(s, "data", bytes, path, base)
    try:
        sparse_decode(data, length or 0, where=f"payload{path}.data")
    except SchemaViolation as e:
        e.offset = base
        raise


def snapshot(src: str, config: bytes, size: int, partial: str | None = None) -> dict[str, Any]:
    """Build a snapshot map from the config bytes that were read (maybe fewer than ``size``).

    Its keys are in R15 order (SNAPSHOT_KEYS), so cbor.dumps need not sort them.
    """
    enc = _encoder or _load_encoder()
    s: dict[str, Any] = {"len": len(config), "src": src, "data": enc(config), "size": size}
    if partial:
        s["partial"] = partial
    return s


def pci_ids(vendor: int, device: int, subvendor: int, subdevice: int, class_code: int,
            revision: int) -> dict[str, int]:
    """The "ids" map of a PCI device (payload.cddl pci-ids), keys in R15 order (IDS_KEYS)."""
    return {"class": class_code, "device": device, "vendor": vendor, "revision": revision,
            "subdevice": subdevice, "subvendor": subvendor}


def ordered(m: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``m`` with its keys in the order of ``keys`` (one of the ``*_KEYS`` orders above).

    For a map built in another order. Keys ``keys`` does not name (an unknown or misspelt
    key) are never dropped: then the whole map is sorted (cbor.canonical_order) instead.
    Values are not reordered; nested maps need their own call.
    """
    out = {k: m[k] for k in keys if k in m}
    if len(out) != len(m):
        from handoff.cbor import canonical_key

        return dict(sorted(m.items(), key=lambda kv: canonical_key(kv[0])))
    return out


def snapshot_bytes(s: dict[str, Any]) -> bytes:
    """The config bytes a validated snapshot holds (``len`` bytes)."""
    return sparse_decode(s["data"], s["len"])
