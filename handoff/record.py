"""The record header (spec/format.md §2-3, §8): parse and validate, independently of the C writer.

This module re-implements validation in Python on purpose: the C core writes records and the
reader must not share its code, so that a bug in one is caught by the other (spec vectors run
through both). Encoding goes through the C core (``handoff._binding``).
"""

from __future__ import annotations

import struct
from typing import Any

from handoff import errors as E
from handoff._slots import Frozen

MAGIC = b"HANDOFF\x00"  # R4
VERSION_MAJOR = 1  # R5
VERSION_MINOR = 0  # R6
FIXED_HEADER_SIZE = 128
HEADER_SIZE_V1_0 = 256
MIN_HEADER_SIZE = 256  # R8
MAX_HEADER_SIZE = 4096  # R8
MAX_PAYLOAD_SIZE = 16 * 1024 * 1024  # R9
CRC_OFFSET = 124  # R12
CHECK_CRC32C = 1  # R10, §5
DIGEST_SHA256 = 1  # R11, §5
NT_HANDOFF_RECORD = 0x48440001  # R24
NT_HANDOFF_REPORT = 0x48440002  # R24
NOTE_NAME = b"HANDOFF\x00"
NOTE_OWNER = NOTE_NAME[:-1]  # the owner as note readers report it: without the NUL

# §2: magic, major, minor, header_size, payload_size, generation, created_ns,
# header_check_alg, payload_digest_alg, flags, payload_digest, boot_id, machine_id, reserved, crc
FIXED = struct.Struct("<8sHHIQQQHHI32s16s16s12sI")
assert FIXED.size == FIXED_HEADER_SIZE  # R1: layout pinned
EXT_1_0 = struct.Struct("<64s64s")  # §3: kernel_release, hostname
assert FIXED_HEADER_SIZE + EXT_1_0.size == HEADER_SIZE_V1_0


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (CRC RevEng "CRC-32/ISCSI"); check value of b"123456789" is 0xE3069283."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


_CHECKS = {CHECK_CRC32C: ("CRC-32C", crc32c)}


def _sha256(data: bytes | memoryview) -> bytes:
    import hashlib  # only when a record is read: OpenSSL's _hashlib costs every start-up

    return hashlib.sha256(data).digest()


_DIGESTS = {DIGEST_SHA256: ("SHA-256", _sha256)}


_FIELDS = ("version_major", "version_minor", "header_size", "payload_size", "generation",
           "created_ns", "header_check_alg", "payload_digest_alg", "flags", "payload_digest",
           "boot_id", "machine_id", "kernel_release", "hostname", "payload", "raw")


class Record(Frozen):
    """A validated record. ``payload`` is the decoded CBOR payload (a dict)."""

    __slots__ = _FIELDS
    _repr_skip = ("payload", "raw")
    version_major: int
    version_minor: int
    header_size: int
    payload_size: int
    generation: int
    created_ns: int
    header_check_alg: int
    payload_digest_alg: int
    flags: int
    payload_digest: bytes
    boot_id: str
    machine_id: str
    kernel_release: str
    hostname: str
    payload: dict[str, Any]
    raw: bytes

    def __init__(self, version_major: int, version_minor: int, header_size: int,
                 payload_size: int, generation: int, created_ns: int, header_check_alg: int,
                 payload_digest_alg: int, flags: int, payload_digest: bytes, boot_id: str,
                 machine_id: str, kernel_release: str, hostname: str,
                 payload: dict[str, Any], raw: bytes) -> None:
        values = locals()
        for n in _FIELDS:
            object.__setattr__(self, n, values[n])

    def __hash__(self) -> int:  # type: ignore[override]  # the payload is a dict: hash the bytes
        return hash(self.raw)

    @property
    def size(self) -> int:
        return self.header_size + self.payload_size

    @property
    def version(self) -> str:
        return f"{self.version_major}.{self.version_minor}"

    @property
    def devices(self) -> list[dict[str, Any]]:
        return list(self.payload.get("devices", []))

    def producer(self) -> dict[str, Any]:
        return {
            "kernel_release": self.kernel_release,
            "hostname": self.hostname,
            "boot_id": self.boot_id,
            "machine_id": self.machine_id,
            "created_ns": self.created_ns,
            "generation": self.generation,
        }


def _text(raw: bytes, name: str, at: int) -> str:
    """R3: UTF-8, NUL padded, zeros after the first NUL."""
    nul = raw.find(b"\x00")
    value, pad = (raw, b"") if nul < 0 else (raw[:nul], raw[nul:])
    if pad.strip(b"\x00"):
        raise E.BadTextField(
            f"header field {name} has bytes after its NUL padding (R3)", check="text", offset=at
        )
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise E.BadTextField(
            f"header field {name} is not UTF-8 (R3)", check="text", offset=at
        ) from None


def _uuid_text(raw: bytes, dashed: bool) -> str:
    if not any(raw):
        return ""
    h = raw.hex()  # uuid.UUID would import platform and _hashlib on every start-up
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" if dashed else h


def record_size(buf: bytes | memoryview, offset: int = 0) -> int:
    """Validate the fixed header at ``offset`` (§8 steps 1-6) and return the record's length.

    Containers use this to learn how many bytes to hand to :func:`parse` without trusting
    an unchecked size.
    """
    h = _fixed(buf, offset)
    return h[3] + h[4]


def _fixed(buf: bytes | memoryview, offset: int) -> tuple[Any, ...]:
    n = len(buf) - offset
    if n < FIXED_HEADER_SIZE:  # step 1
        raise E.TruncatedRecord(
            f"truncated header: {max(n, 0)} of {FIXED_HEADER_SIZE} bytes",
            check="truncated",
            offset=offset,
        )
    head = bytes(buf[offset : offset + FIXED_HEADER_SIZE])
    if head[:8] != MAGIC:  # step 2, R4
        raise E.BadMagic("not a handoff record (bad magic)", check="magic", offset=offset)
    h = FIXED.unpack(head)
    check_alg = h[7]
    if check_alg not in _CHECKS:  # step 3, R23
        raise E.UnsupportedAlgorithm(
            f"header check algorithm {check_alg} is not supported (this reader knows 1 = CRC-32C)",
            check="algorithm",
            offset=offset + 40,
            actual=check_alg,
            hint="read it with a newer handoff",
        )
    want = _CHECKS[check_alg][1](head[:CRC_OFFSET])
    if want != h[14]:  # step 4, R12
        raise E.HeaderChecksumMismatch(
            f"header checksum mismatch: stored {h[14]:#010x}, computed {want:#010x}",
            check="header_crc",
            offset=offset,
            expected=want,
            actual=h[14],
        )
    if h[1] != VERSION_MAJOR:  # step 5, R14
        raise E.UnsupportedVersion(
            f"record is format {h[1]}.{h[2]}, this reader reads {VERSION_MAJOR}.x",
            check="version",
            offset=offset + 8,
            expected=VERSION_MAJOR,
            actual=h[1],
            hint="use a handoff release that reads this major version",
        )
    hs, ps = h[3], h[4]
    if hs < MIN_HEADER_SIZE or hs > MAX_HEADER_SIZE or hs % 8:  # step 6, R8
        raise E.BadHeaderSize(
            f"header_size {hs} is outside [256, 4096] or not a multiple of 8 (R8)",
            check="header_size",
            offset=offset + 12,
            actual=hs,
        )
    if n < hs:
        raise E.TruncatedRecord(
            f"truncated header: {n} of {hs} bytes", check="truncated", offset=offset
        )
    if ps > MAX_PAYLOAD_SIZE:  # step 7, R9
        raise E.PayloadTooLarge(
            f"payload_size {ps} exceeds the 16 MiB limit (R9)",
            check="payload_size",
            offset=offset + 16,
            actual=ps,
        )
    if n < hs + ps:
        raise E.TruncatedRecord(
            f"truncated payload: {n - hs} of {ps} bytes",
            check="truncated",
            offset=offset,
        )
    return h


def parse(
    buf: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    exact: bool = False,
    validate_schema: bool = True,
) -> Record:
    """Validate the record at ``buf[offset:]`` (spec §8) and return it.

    With ``exact``, bytes after the record are refused (a raw record file). Raises a
    subclass of :class:`handoff.errors.InvalidRecord` naming the failed check.
    """
    mv = memoryview(buf)
    h = _fixed(mv, offset)
    hs, ps = h[3], h[4]
    end = offset + hs + ps
    digest_alg = h[8]
    if digest_alg not in _DIGESTS:  # step 8, R23
        raise E.UnsupportedAlgorithm(
            f"payload digest algorithm {digest_alg} is not supported "
            "(this reader knows 1 = SHA-256)",
            check="algorithm",
            offset=offset + 42,
            actual=digest_alg,
            hint="read it with a newer handoff",
        )
    name, fn = _DIGESTS[digest_alg]
    got = fn(mv[offset + FIXED_HEADER_SIZE : end])
    stored = h[10][: len(got)]
    if got != stored or any(h[10][len(got) :]):  # R13
        raise E.DigestMismatch(
            f"payload digest mismatch ({name} of bytes {FIXED_HEADER_SIZE}..{hs + ps})",
            check="digest",
            offset=offset + 48,
        )
    release, hostname = EXT_1_0.unpack_from(mv, offset + FIXED_HEADER_SIZE)  # step 9, R7
    kernel_release = _text(release, "kernel_release", offset + 128)
    host = _text(hostname, "hostname", offset + 192)

    from handoff import cbor, payload  # step 10

    try:
        decoded = cbor.loads(mv[offset + hs : end])
    except E.BadCBOR as e:
        e.offset = offset + hs + (e.offset or 0)
        raise
    if validate_schema:
        payload.validate(decoded, base_offset=offset + hs)
    if exact and len(mv) != end:  # checked last: §8, final paragraph
        raise E.TrailingData(
            f"{len(mv) - end} byte(s) follow the record", check="trailing", offset=end
        )
    return Record(
        version_major=h[1],
        version_minor=h[2],
        header_size=hs,
        payload_size=ps,
        generation=h[5],
        created_ns=h[6],
        header_check_alg=h[7],
        payload_digest_alg=digest_alg,
        flags=h[9],
        payload_digest=bytes(h[10]),
        boot_id=_uuid_text(h[11], True),
        machine_id=_uuid_text(h[12], False),
        kernel_release=kernel_release,
        hostname=host,
        payload=decoded,
        raw=bytes(mv[offset:end]),
    )


class Producer(Frozen):
    """Who made a record (§2-3). ``boot_id`` is a UUID string, ``machine_id`` 32 hex digits."""

    __slots__ = ("boot_id", "created_ns", "hostname", "kernel_release", "machine_id")
    kernel_release: str
    hostname: str
    boot_id: str
    machine_id: str
    created_ns: int

    def __init__(self, kernel_release: str = "", hostname: str = "", boot_id: str = "",
                 machine_id: str = "", created_ns: int = 0) -> None:
        object.__setattr__(self, "kernel_release", kernel_release)
        object.__setattr__(self, "hostname", hostname)
        object.__setattr__(self, "boot_id", boot_id)
        object.__setattr__(self, "machine_id", machine_id)
        object.__setattr__(self, "created_ns", created_ns)

    def boot_id_bytes(self) -> bytes:
        if not self.boot_id:
            return bytes(16)
        raw = bytes.fromhex(self.boot_id.replace("-", ""))  # ValueError on anything else
        if len(raw) != 16:
            raise ValueError(f"boot id {self.boot_id!r} is not a UUID")
        return raw

    def machine_id_bytes(self) -> bytes:
        return bytes.fromhex(self.machine_id) if self.machine_id else bytes(16)


def encode(payload_obj: dict[str, Any], producer: Producer, generation: int = 1) -> bytes:
    """Encode a record through the C core: deterministic CBOR payload plus a v1.0 header."""
    from handoff import _binding, cbor

    body = cbor.dumps(payload_obj)
    return _binding.encode_record(
        body,
        generation=generation,
        created_ns=producer.created_ns,
        boot_id=producer.boot_id_bytes(),
        machine_id=producer.machine_id_bytes(),
        kernel_release=producer.kernel_release,
        hostname=producer.hostname,
    )
