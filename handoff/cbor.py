"""Strict CBOR for record payloads: deterministic encoding out, R15-R19 enforced on the way in.

The decoder is written here rather than taken from cbor2 because a payload is untrusted input
and cbor2 decodes semantic tags (shared references, string references, sets, bignums) that
could build cyclic or exponentially large objects. This decoder accepts only the items R16
allows, checks the deterministic form of R15 as it goes, bounds depth (R18) before recursing,
and bounds every declared length by the bytes that remain before slicing.
"""

from __future__ import annotations

import sys

from handoff.errors import BadCBOR

TYPE_CHECKING = False  # typing costs every start-up; mypy reads the block below anyway
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

MAX_DEPTH = 16  # R18
_U64 = 1 << 64


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` in core deterministic CBOR (R15): the bytes of cbor2's canonical mode.

    For R16 types cbor2 produces exactly the bytes of :func:`dumps_checked` (a test holds the
    two to that). It does not refuse floats or tags; ``record.encode`` gets that from the C
    core, which checks every payload against R15-R21 before framing it.

    Fast path. Sorting every map's keys is most of cbor2's canonical cost, and needless when
    the caller built each map with its keys already in R15 order (:func:`canonical_order`,
    :func:`canonical`, the ``*_KEYS`` orders of handoff.payload). So when a cheap probe of
    ``obj`` (each map on the path through the first element of every array) finds no key out
    of order, ``obj`` is encoded without sorting and the C core's R15-R19 check
    (``handoff_cbor_check``) proves the result deterministic. Whatever that check refuses
    (a map out of order anywhere, a float, a tag, a depth over 16) is encoded again in
    canonical mode, so the output is the same bytes for every input; an unordered map only
    costs the time of the failed attempt. Without the C core, canonical mode is used.
    """
    import cbor2

    if _looks_ordered(obj, 0):
        check = _strict_check()
        if check is not None:
            try:
                fast = cbor2.dumps(obj)
            except Exception:  # noqa: BLE001 - canonical mode below raises its own, as before
                fast = b""
            if fast and check(fast):
                return fast
    return bytes(cbor2.dumps(obj, canonical=True))


_strict: Callable[[bytes], bool] | None = None
_strict_loaded = False


def _strict_check() -> Callable[[bytes], bool] | None:
    """The C core's yes/no R15-R19 check (handoff._binding.cbor_is_strict), or None."""
    global _strict, _strict_loaded
    if not _strict_loaded:
        try:
            from handoff._binding import cbor_is_strict as _strict
        except ImportError:  # the C core is not built: always sort
            _strict = None
        _strict_loaded = True
    return _strict


def _looks_ordered(obj: Any, depth: int) -> bool:
    """False if a map on the probed path has a key that is not text or is out of R15 order.

    Follows every map value and the first element of every array: cheap for a payload of many
    devices, and enough to skip a doomed fast attempt when maps are built in insertion order.
    True proves nothing; the C check after encoding decides.
    """
    if depth > MAX_DEPTH:
        return True  # let the encoder and the check see it
    t = type(obj)
    if t is dict:
        prev: tuple[int, bytes] | None = None
        for k, v in obj.items():
            if type(k) is not str:
                return False
            kb = k.encode("utf-8", "surrogatepass")
            cur = (len(kb), kb)
            if prev is not None and cur <= prev:
                return False
            prev = cur
            tv = type(v)
            if (tv is dict or tv is list or tv is tuple) and not _looks_ordered(v, depth + 1):
                return False
        return True
    if (t is list or t is tuple) and obj:
        return _looks_ordered(obj[0], depth + 1)
    return True


def canonical_key(key: str) -> tuple[int, bytes]:
    """Sort key of a text map key in R15 order.

    R15 orders keys by the bytewise order of their encodings. The head of a text string
    encodes its UTF-8 length, shortest form, big-endian, so for text keys that order is:
    shorter UTF-8 first, then bytewise UTF-8 ("v" < "ids" < "len" < "src" < "addr" < ...).
    """
    kb = key.encode("utf-8", "surrogatepass")  # a lone surrogate is the encoder's to refuse
    return len(kb), kb


def canonical_order(keys: Iterable[str]) -> tuple[str, ...]:
    """``keys`` sorted into R15 order: precompute it once for a map whose keys are fixed."""
    return tuple(sorted(keys, key=canonical_key))


def canonical(obj: Any) -> Any:
    """A copy of ``obj`` whose maps (at any depth) hold their keys in R15 order.

    Lists and tuples are copied as such; other values are shared, not copied. Meant for the
    small maps whose order the caller does not control, such as plugin sections: it walks and
    copies everything it is given (a whole 1024-device payload takes longer than sorting it in
    canonical mode), so build the large, fixed maps in order instead (handoff.payload's
    ``*_KEYS``). Non-text keys are left for the encoder to refuse.
    """
    t = type(obj)
    if t is dict or isinstance(obj, dict):
        items = [(k, canonical(v)) for k, v in obj.items()]
        if all(type(k) is str for k, _ in items):
            items.sort(key=lambda kv: canonical_key(kv[0]))
        return dict(items)
    if t is list or t is tuple:
        return t(canonical(v) for v in obj)
    return obj


def is_canonical(obj: Any) -> bool:
    """Whether every map in ``obj`` has text keys in R15 order (a test helper: it walks all)."""
    if isinstance(obj, dict):
        keys = list(obj)
        if not all(type(k) is str for k in keys):
            return False
        if keys != list(canonical_order(keys)):
            return False
        return all(is_canonical(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(is_canonical(v) for v in obj)
    return True


def dumps_checked(obj: Any) -> bytes:
    """The reference encoder: pure Python, raises ValueError on anything R16 forbids."""
    out = bytearray()
    _encode(obj, out, 1)
    return bytes(out)


def _head(major: int, n: int, out: bytearray) -> None:
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out += bytes((mt | 24, n))
    elif n < 0x10000:
        out.append(mt | 25)
        out += n.to_bytes(2, "big")
    elif n < 0x100000000:
        out.append(mt | 26)
        out += n.to_bytes(4, "big")
    else:
        out.append(mt | 27)
        out += n.to_bytes(8, "big")


def _encode(obj: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("CBOR nesting deeper than 16 (R18)")
    if obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        if 0 <= obj < _U64:
            _head(0, obj, out)
        elif -_U64 <= obj < 0:
            _head(1, -1 - obj, out)
        else:
            raise ValueError(f"integer {obj} does not fit in 64 bits (R16)")
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        _head(2, len(b), out)
        out += b
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        _head(3, len(b), out)
        out += b
    elif isinstance(obj, (list, tuple)):
        _head(4, len(obj), out)
        for item in obj:
            _encode(item, out, depth + 1)
    elif isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ValueError(f"map key {k!r} is not text (R16)")  # noqa: TRY004 (a rule, not a type)
            kb = bytearray()
            _encode(k, kb, depth + 1)
            items.append((bytes(kb), v))
        items.sort(key=lambda kv: kv[0])  # R15: bytewise order of encoded keys
        _head(5, len(items), out)
        for key, v in items:
            out += key
            _encode(v, out, depth + 1)
    else:
        raise ValueError(f"type {type(obj).__name__} is not allowed in a payload (R16)")


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one strict, deterministic CBOR item (R15, R16, R18, R19).

    Raises ``BadCBOR`` naming the payload offset and the rule broken. With the C core built,
    its check (``handoff_cbor_check``) proves the bytes strict first, and then cbor2 decodes
    them: a byte string holding no tags, floats, indefinite lengths or nesting deeper than 16
    decodes to exactly what :func:`loads_py` returns, ~8x faster. Without the C core,
    :func:`loads_py` does both.
    """
    buf = bytes(data)
    if len(buf) < FAST_LOADS_MIN and "cbor2" not in sys.modules:
        return loads_py(buf)  # a small record: cheaper than importing cbor2 and the C core
    fast = _fast_loads if _fast_loads is not None else _load_fast_loads()
    if fast is False:
        return loads_py(buf)
    return fast(buf)


def loads_py(data: bytes | bytearray | memoryview) -> Any:
    """The strict decoder in Python: the reference, independent of the C core (the spec
    vectors run through it and through the C core separately)."""
    buf = bytes(data)
    dec = _Decoder(buf)
    value = dec.item(1)
    if dec.pos != len(buf):
        raise BadCBOR(
            f"{len(buf) - dec.pos} byte(s) after the payload item at payload offset {dec.pos} (R19)",
            check="cbor",
            offset=dec.pos,
        )
    return value


_fast_loads: Any = None
# Below this size the Python decoder (~0.2 ms per KiB) costs less than importing cbor2 and
# the C core would (~5 ms) when nothing has imported them yet, as in `handoff inspect`.
FAST_LOADS_MIN = 32 * 1024


def _load_fast_loads() -> Any:
    global _fast_loads
    try:
        import cbor2

        from handoff._binding import cbor_check
    except ImportError:
        _fast_loads = False
        return False
    decode = cbor2.loads

    def fast(buf: bytes) -> Any:
        cbor_check(buf)  # raises BadCBOR (offset, rule) on anything loads_py refuses
        return decode(buf)

    _fast_loads = fast
    return fast


class _Decoder:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)

    def fail(self, msg: str, at: int) -> BadCBOR:
        return BadCBOR(f"{msg} at payload offset {at}", check="cbor", offset=at)

    def head(self) -> tuple[int, int, int]:
        """Return (major, info, argument) and check the shortest-form rule of R15."""
        at = self.pos
        if at >= self.end:
            raise self.fail("payload ends inside an item (R19)", at)
        ib = self.buf[at]
        major, info = ib >> 5, ib & 0x1F
        if info < 24:
            self.pos = at + 1
            return major, info, info
        if info > 27:
            if info == 31:
                raise self.fail("indefinite-length item (R15)", at)
            raise self.fail(f"reserved additional information {info}", at)
        if major == 7:
            raise self.fail("float or extended simple value (R16)", at)
        n = 1 << (info - 24)
        if at + 1 + n > self.end:
            raise self.fail("payload ends inside an item head (R19)", at)
        arg = int.from_bytes(self.buf[at + 1 : at + 1 + n], "big")
        self.pos = at + 1 + n
        if arg < (24 if n == 1 else 1 << (4 * n)):
            raise self.fail("integer or length not in its shortest form (R15)", at)
        return major, info, arg

    def item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail("nesting deeper than 16 (R18)", self.pos)
        at = self.pos
        major, info, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2 or major == 3:
            end = self.pos + arg
            if end > self.end:  # R18: bound the length before slicing
                raise self.fail(f"string of {arg} bytes runs past the payload end", at)
            raw = self.buf[self.pos : end]
            self.pos = end
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("text string is not UTF-8 (R16)", at) from None
        if major == 4:
            if arg > self.end - self.pos:  # every item takes at least one byte
                raise self.fail(f"array of {arg} items cannot fit in the payload", at)
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            if 2 * arg > self.end - self.pos:
                raise self.fail(f"map of {arg} pairs cannot fit in the payload", at)
            out: dict[str, Any] = {}
            prev: bytes | None = None
            for _ in range(arg):
                kat = self.pos
                key = self.item(depth + 1)
                if not isinstance(key, str):
                    raise self.fail("map key is not a text string (R16)", kat)
                kenc = self.buf[kat : self.pos]
                if prev is not None and kenc <= prev:
                    what = "duplicate" if kenc == prev else "unsorted"
                    raise self.fail(f"{what} map key {key!r} (R15)", kat)
                prev = kenc
                out[key] = self.item(depth + 1)
            return out
        if major == 6:
            raise self.fail(f"tag {arg} is not allowed (R16)", at)
        # major 7 with info < 24: simple values
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        raise self.fail(f"simple value {info} is not allowed (R16)", at)
