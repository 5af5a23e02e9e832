"""The only module that calls the C core (``handoff._native``): checks, buffers, exceptions.

Every function validates its arguments, hands the C code buffers Python owns, and turns each
C error code into the one exception ``ERRORS`` names for it, with a one-line message that says
what failed and where (offsets are from the start of the buffer passed in, except that payload
offsets are named as such).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any, NamedTuple

from handoff import errors as E
from handoff._native import ffi, lib

if TYPE_CHECKING:
    from collections.abc import Callable

NT_HANDOFF_RECORD: int = lib.NT_HANDOFF_RECORD  # R24
NT_HANDOFF_REPORT: int = lib.NT_HANDOFF_REPORT  # R24
PAYLOAD_SIZE_MAX: int = lib.HANDOFF_PAYLOAD_SIZE_MAX  # R9
RECORD_SIZE_MAX: int = lib.HANDOFF_RECORD_SIZE_MAX
HEADER_SIZE_V1_0: int = lib.HANDOFF_HEADER_SIZE_V1_0
TEXT_SIZE: int = lib.HANDOFF_TEXT_SIZE
SPARSE_CONFIG_MAX: int = lib.HANDOFF_SPARSE_CONFIG_MAX  # §4.1: 16-bit offsets and lengths

Buffer = bytes | bytearray | memoryview
PathArg = str | os.PathLike[str]

# One exception class per C error code (csrc/handoff.h). OSError carries errno and the path.
ERRORS: dict[int, type[Exception]] = {
    lib.HANDOFF_E_INVAL: E.InvalidArgument,
    lib.HANDOFF_E_TRUNCATED: E.TruncatedRecord,
    lib.HANDOFF_E_MAGIC: E.BadMagic,
    lib.HANDOFF_E_HEADER_CRC: E.HeaderChecksumMismatch,
    lib.HANDOFF_E_VERSION: E.UnsupportedVersion,
    lib.HANDOFF_E_HEADER_SIZE: E.BadHeaderSize,
    lib.HANDOFF_E_PAYLOAD_SIZE: E.PayloadTooLarge,
    lib.HANDOFF_E_DIGEST: E.DigestMismatch,
    lib.HANDOFF_E_ALG: E.UnsupportedAlgorithm,
    lib.HANDOFF_E_TEXT: E.BadTextField,
    lib.HANDOFF_E_NOSPACE: E.NoSpace,
    lib.HANDOFF_E_IO: OSError,
    lib.HANDOFF_E_NO_RECORD: E.NoRecordFound,
    lib.HANDOFF_E_REGION: E.RegionError,
    lib.HANDOFF_E_INTERRUPTED: E.UpdateInterrupted,
    lib.HANDOFF_E_TRAILING: E.TrailingData,
    lib.HANDOFF_E_CBOR: E.BadCBOR,
    lib.HANDOFF_E_SCHEMA: E.SchemaViolation,
}

# InvalidRecord.check names, shared with the Python reader (handoff/record.py).
CHECKS: dict[int, str] = {
    lib.HANDOFF_E_TRUNCATED: "truncated",
    lib.HANDOFF_E_MAGIC: "magic",
    lib.HANDOFF_E_ALG: "algorithm",
    lib.HANDOFF_E_HEADER_CRC: "header_crc",
    lib.HANDOFF_E_VERSION: "version",
    lib.HANDOFF_E_HEADER_SIZE: "header_size",
    lib.HANDOFF_E_PAYLOAD_SIZE: "payload_size",
    lib.HANDOFF_E_DIGEST: "digest",
    lib.HANDOFF_E_TEXT: "text",
    lib.HANDOFF_E_TRAILING: "trailing",
    lib.HANDOFF_E_CBOR: "cbor",
    lib.HANDOFF_E_SCHEMA: "schema",
}

_CRC_IMPLS = {
    "auto": lib.HANDOFF_CRC32C_AUTO,
    "table": lib.HANDOFF_CRC32C_TABLE,
    "sse42": lib.HANDOFF_CRC32C_SSE42,
}
_SHA256_IMPLS = {
    "auto": lib.HANDOFF_SHA256_AUTO,
    "portable": lib.HANDOFF_SHA256_PORTABLE,
    "shani": lib.HANDOFF_SHA256_SHANI,
}
_U64 = 1 << 64
# Parsed once: ffi.new() with a C type string parses it on every call, which per-snapshot
# calls (sparse_encode) notice. Output buffers the C side fills need no zeroing.
_U8_ARRAY = ffi.typeof("uint8_t[]")
_SIZE_P = ffi.typeof("size_t *")
_new_raw = ffi.new_allocator(should_clear_after_alloc=False)


def strerror(err: int) -> str:
    """The C core's one-line description of an error code."""
    return str(ffi.string(lib.handoff_strerror(err)).decode())


def error(err: int, message: str, **fields: Any) -> Exception:
    """Build the exception ``ERRORS`` maps ``err`` to; ``fields`` are its keyword fields."""
    cls = ERRORS.get(err)
    if cls is None:
        return RuntimeError(f"{message}: unknown C error code {err}")
    if cls is OSError:
        errno = ffi.errno
        return OSError(errno, f"{message}: {os.strerror(errno)}", fields.get("filename"))
    if issubclass(cls, E.InvalidRecord):
        keep = ("offset", "expected", "actual", "hint")
        return cls(message, check=CHECKS[err], **{k: v for k, v in fields.items() if k in keep})
    if issubclass(cls, E.BadContainer):
        return cls(message, offset=fields.get("offset"), hint=fields.get("hint"))
    assert issubclass(cls, E.HandoffError)
    return cls(message, hint=fields.get("hint"))


def _buf(data: Buffer, what: str, *, writable: bool = False) -> tuple[Any, int]:
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes-like, not {type(data).__name__}")
    n = memoryview(data).nbytes
    if writable and memoryview(data).readonly:
        raise TypeError(f"{what} must be writable (a bytearray)")
    if n == 0:
        return ffi.NULL, 0
    return ffi.from_buffer("uint8_t[]", data, require_writable=writable), n


def _uint(value: int, what: str, lo: int = 0, hi: int = _U64 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise E.InvalidArgument(f"{what} {value} is outside [{lo}, {hi}]")
    return value


def _str(cdata: Any) -> str:
    return str(ffi.string(cdata).decode("utf-8", "replace"))


# --- checksums -------------------------------------------------------------------------------
def crc32c_available(impl: str) -> bool:
    """Whether CRC-32C implementation ``impl`` ("auto", "table", "sse42") runs on this CPU."""
    if impl not in _CRC_IMPLS:
        raise E.InvalidArgument(f"unknown CRC-32C implementation {impl!r}")
    return bool(lib.handoff_crc32c_available(_CRC_IMPLS[impl]) == 0)


def crc32c(data: Buffer, *, impl: str = "auto", crc: int = 0) -> int:
    """CRC-32C of ``data`` (§5); ``crc`` continues an earlier result, like zlib.crc32."""
    if not crc32c_available(impl):
        raise E.InvalidArgument(f"CRC-32C implementation {impl!r} is not available on this CPU")
    p, n = _buf(data, "data")
    out = ffi.new("uint32_t *")
    err = lib.handoff_crc32c(_uint(crc, "crc", hi=0xFFFFFFFF), p, n, _CRC_IMPLS[impl], out)
    if err:
        raise error(err, "crc32c failed")
    return int(out[0])


def sha256_available(impl: str) -> bool:
    """Whether SHA-256 implementation ``impl`` ("auto", "portable", "shani") runs on this CPU."""
    if impl not in _SHA256_IMPLS:
        raise E.InvalidArgument(f"unknown SHA-256 implementation {impl!r}")
    return bool(lib.handoff_sha256_available(_SHA256_IMPLS[impl]) == 0)


def sha256(data: Buffer, *, impl: str = "auto") -> bytes:
    """SHA-256 of ``data`` (§5), computed by the C core's own implementation.

    ``impl`` picks the block function ("auto": the x86 SHA extensions when the CPU has them,
    else "portable"); every other digest the C core takes uses "auto".
    """
    if not sha256_available(impl):
        raise E.InvalidArgument(f"SHA-256 implementation {impl!r} is not available on this CPU")
    p, n = _buf(data, "data")
    out = ffi.new("uint8_t[32]")
    err = lib.handoff_sha256_using(p, n, _SHA256_IMPLS[impl], out)
    if err:
        raise error(err, "sha256 failed")
    return bytes(ffi.buffer(out))


class Sha256:
    """Incremental SHA-256 through the C core, with hashlib's ``update``/``digest`` shape."""

    def __init__(self, data: Buffer = b"") -> None:
        self._ctx = ffi.new("struct handoff_sha256 *")
        lib.handoff_sha256_init(self._ctx)
        self.update(data)

    def update(self, data: Buffer) -> None:
        p, n = _buf(data, "data")
        lib.handoff_sha256_update(self._ctx, p, n)

    def digest(self) -> bytes:
        ctx = ffi.new("struct handoff_sha256 *", self._ctx[0])  # finalising consumes the state
        out = ffi.new("uint8_t[32]")
        lib.handoff_sha256_final(ctx, out)
        return bytes(ffi.buffer(out))


# --- records ---------------------------------------------------------------------------------
def _text_field(value: str, name: str) -> bytes:
    """R3: UTF-8, at most 64 bytes; a NUL inside would not read back."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raw = b"\x00"  # an unpaired surrogate: refused below like a NUL
    if b"\x00" in raw or len(raw) > TEXT_SIZE:
        raise E.BadTextField(
            f"{name} {value!r} cannot be stored: it must be UTF-8 of at most {TEXT_SIZE} bytes "
            "without NUL (R3)",
            check="text",
        )
    return raw


def encode_record(
    payload: Buffer,
    *,
    generation: int,
    created_ns: int,
    boot_id: bytes,
    machine_id: bytes,
    kernel_release: str,
    hostname: str,
    check: bool = True,
) -> bytes:
    """Build a version 1.0 record (header_size 256) around a CBOR payload.

    With ``check`` (the default) the payload is validated first (§8 step 10), so that no
    record a reader would refuse is ever written.
    """
    p, n = _buf(payload, "payload")
    producer = ffi.new("struct handoff_producer *")
    producer.generation = _uint(generation, "generation", lo=1)  # R17
    producer.created_ns = _uint(created_ns, "created_ns")
    for name, value in (("boot_id", boot_id), ("machine_id", machine_id)):
        if not isinstance(value, (bytes, bytearray)) or len(value) != 16:
            raise E.InvalidArgument(f"{name} must be 16 bytes")
        ffi.memmove(getattr(producer, name), value, 16)
    for name, text in (("kernel_release", kernel_release), ("hostname", hostname)):
        raw = _text_field(text, name)
        ffi.memmove(getattr(producer, name), raw, len(raw))
    if check:
        check_payload(payload)
    if n > PAYLOAD_SIZE_MAX:
        raise E.PayloadTooLarge(
            f"payload of {n} bytes exceeds the 16 MiB limit (R9)", check="payload_size", actual=n
        )
    out = _new_raw(_U8_ARRAY, HEADER_SIZE_V1_0 + n)  # the C side writes every byte of it
    size = ffi.new(_SIZE_P)
    err = lib.handoff_record_encode(p, n, producer, out, len(out), size)
    if err:
        raise error(err, f"cannot encode record: {strerror(err)}")
    return bytes(ffi.buffer(out, size[0]))


def _info_dict(info: Any) -> dict[str, Any]:
    return {
        "version_major": info.version_major,
        "version_minor": info.version_minor,
        "header_size": info.header_size,
        "payload_size": info.payload_size,
        "record_size": info.record_size,
        "generation": info.generation,
        "created_ns": info.created_ns,
        "header_check_alg": info.header_check_alg,
        "payload_digest_alg": info.payload_digest_alg,
        "flags": info.flags,
        "header_crc": info.header_crc,
        "payload_digest": bytes(ffi.buffer(info.payload_digest)),
        "boot_id": bytes(ffi.buffer(info.boot_id)),
        "machine_id": bytes(ffi.buffer(info.machine_id)),
        "kernel_release": _str(info.kernel_release),
        "hostname": _str(info.hostname),
    }


def _record_error(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    """One-line message for a failed record check, from the C diagnostics: one explainer per
    error code (``_EXPLAIN``), each naming the requirement the record broke."""
    if err in (lib.HANDOFF_E_CBOR, lib.HANDOFF_E_SCHEMA):
        return _payload_error(err, info.diag, base=info.header_size)
    explain = _EXPLAIN.get(err)
    if explain is None:
        return error(err, f"record check failed: {strerror(err)}")
    return explain(err, info, buf, n)


def _truncated(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    if _str(info.diag.path) == "payload":
        need, part = info.header_size + info.payload_size, "record"
    elif n < 128:
        need, part = 128, "fixed header"
    else:
        need, part = info.header_size, "header"
    return error(err, f"record truncated: {n} bytes, the {part} needs {need}",
                 offset=n, expected=need, actual=n)


def _bad_magic(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    got = bytes(memoryview(buf)[:8])
    return error(err, f"bad magic {got.hex()}: not a handoff record (R4)",
                 offset=0, expected=b"HANDOFF\x00", actual=got)


def _unknown_alg(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    field = _str(info.diag.path)
    alg = info.header_check_alg if field == "header_check_alg" else info.payload_digest_alg
    known = "1 (CRC-32C)" if field == "header_check_alg" else "1 (SHA-256)"
    return error(err, f"{field} {alg} is not supported; this reader implements {known} (R23)",
                 offset=int(info.diag.offset), actual=alg,
                 hint="read the record with a newer handoff")


def _header_crc(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    return error(err, f"header checksum mismatch: header_crc is {info.header_crc:#010x}, "
                      f"bytes [0, 124) give {info.computed_crc:#010x} (R12)",
                 offset=int(info.diag.offset), expected=info.computed_crc,
                 actual=info.header_crc)


def _version(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    major, minor = info.version_major, info.version_minor
    return error(err, f"record is format {major}.{minor}, this reader reads "
                      f"{lib.HANDOFF_VERSION_MAJOR}.x (R14)",
                 offset=int(info.diag.offset), expected=lib.HANDOFF_VERSION_MAJOR, actual=major,
                 hint=f"use a handoff release that reads format {major}.x")


def _header_size(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    hs = info.header_size
    return error(err, f"bad header_size {hs}: must be a multiple of 8 in [256, 4096] (R8)",
                 offset=int(info.diag.offset), actual=hs)


def _payload_size(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    ps = info.payload_size
    return error(err, f"payload_size {ps} exceeds the 16 MiB limit (R9)",
                 offset=int(info.diag.offset), actual=ps)


def _digest(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    stored = bytes(ffi.buffer(info.payload_digest))
    computed = bytes(ffi.buffer(info.computed_digest))
    return error(err, f"payload digest mismatch: header has {stored.hex()[:16]}..., bytes "
                      f"[128, {info.header_size + info.payload_size}) give "
                      f"{computed.hex()[:16]}... (R13)",
                 offset=int(info.diag.offset), expected=computed, actual=stored)


def _text(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    off = int(info.diag.offset)
    return error(err, f"bad text field {_str(info.diag.path)} at offset {off}: "
                      f"{_str(info.diag.what)} (R3)", offset=off)


def _trailing(err: int, info: Any, buf: Buffer, n: int) -> Exception:
    return error(err, f"{n - info.record_size} byte(s) follow the {info.record_size}-byte record",
                 offset=info.record_size)


_EXPLAIN: dict[int, Callable[[int, Any, Buffer, int], Exception]] = {
    lib.HANDOFF_E_TRUNCATED: _truncated,
    lib.HANDOFF_E_MAGIC: _bad_magic,
    lib.HANDOFF_E_ALG: _unknown_alg,
    lib.HANDOFF_E_HEADER_CRC: _header_crc,
    lib.HANDOFF_E_VERSION: _version,
    lib.HANDOFF_E_HEADER_SIZE: _header_size,
    lib.HANDOFF_E_PAYLOAD_SIZE: _payload_size,
    lib.HANDOFF_E_DIGEST: _digest,
    lib.HANDOFF_E_TEXT: _text,
    lib.HANDOFF_E_TRAILING: _trailing,
}


def _payload_error(err: int, d: Any, base: int = 0) -> Exception:
    off, what, path, rule = int(d.offset), _str(d.what), _str(d.path), int(d.rule)
    if err == lib.HANDOFF_E_CBOR:
        msg = f"bad CBOR at payload offset {off}: {what} (R{rule})"
    elif err == lib.HANDOFF_E_SCHEMA:
        msg = f"schema violation at {path}: {what} (R{rule})"
    else:
        msg = f"payload refused: {strerror(err)}"
    return error(err, msg, offset=base + off)


def _check(buf: Buffer, flags: int) -> dict[str, Any]:
    p, n = _buf(buf, "record")
    info = ffi.new("struct handoff_record_info *")
    err = lib.handoff_record_check(p, n, flags, info)
    if err:
        raise _record_error(err, info, buf, n)
    return _info_dict(info)


def verify_record(buf: Buffer, *, exact: bool = False) -> dict[str, Any]:
    """Validate the record at the start of ``buf`` (§8 steps 1-9) and return its header.

    With ``exact`` the buffer is a raw record file and bytes after the record are refused.
    """
    return _check(buf, lib.HANDOFF_CHECK_EXACT if exact else 0)


def check_record(buf: Buffer, *, exact: bool = False) -> dict[str, Any]:
    """Validate the record at the start of ``buf`` with every step of §8 (1-10)."""
    return _check(buf, lib.HANDOFF_CHECK_PAYLOAD | (lib.HANDOFF_CHECK_EXACT if exact else 0))


def check_payload(payload: Buffer) -> None:
    """Validate a CBOR payload (§8 step 10); exception offsets are payload offsets."""
    p, n = _buf(payload, "payload")
    diag = ffi.new("struct handoff_diag *")
    err = lib.handoff_payload_check(p, n, diag)
    if err == lib.HANDOFF_E_PAYLOAD_SIZE:
        raise E.PayloadTooLarge(
            f"payload of {n} bytes exceeds the 16 MiB limit (R9)", check="payload_size", actual=n
        )
    if err:
        raise _payload_error(err, diag)


def cbor_check(data: Buffer) -> None:
    """Check ``data`` is one item of strict, deterministic CBOR (R15, R16, R18, R19), no schema.

    Raises BadCBOR naming the offset and the rule, like check_payload; any length is allowed.
    """
    p, n = _buf(data, "data")
    diag = ffi.new("struct handoff_diag *")
    err = lib.handoff_cbor_check(p, n, diag)
    if err:
        raise _payload_error(err, diag)


def cbor_is_strict(data: bytes) -> bool:
    """Whether ``data`` passes cbor_check; the fast yes/no for a writer's safety net."""
    return not lib.handoff_cbor_check(data, len(data), ffi.NULL) if data else False


def sparse_encode(config: Buffer) -> bytes:
    """The §4.1 runs of ``config`` (at most SPARSE_CONFIG_MAX bytes), written by the C core.

    Byte for byte the runs of handoff.payload's reference encoder: split only at zero gaps of
    4 or more bytes, no zeros at either end of a run. Raises ValueError above 64 KiB - 1.
    """
    # The hot path (one call per snapshot) goes through module-level aliases: attribute
    # lookups on ffi and lib were a fifth of its cost.
    if type(config) is bytes:
        p, n = config, len(config)
    else:
        p, n = _buf(config, "config")
    if n > SPARSE_CONFIG_MAX:
        raise ValueError("config space larger than 64 KiB cannot be encoded")
    out = _new_raw(_U8_ARRAY, n + 4)  # HANDOFF_SPARSE_ENCODED_MAX(n); C writes what is read
    size = _new(_SIZE_P)
    err = _sparse_encode(p, n, out, n + 4, size)
    if err:
        raise error(err, f"cannot encode {n} config bytes as runs: {strerror(err)}")
    return _buffer(out, size[0])[:]


_new, _buffer, _sparse_encode = ffi.new, ffi.buffer, lib.handoff_sparse_encode


def set_generation(buf: Buffer, generation: int) -> bytes:
    """Return a copy of the record in ``buf`` with a new generation (R17) and header_crc."""
    verify_record(buf)  # raises the detailed error; the C side checks again
    out = bytearray(buf)
    p, n = _buf(out, "record", writable=True)
    err = lib.handoff_record_set_generation(p, n, _uint(generation, "generation", lo=1))
    if err:
        raise error(err, f"cannot set generation: {strerror(err)}")
    return bytes(out)


def wrap_note(desc: Buffer, n_type: int = NT_HANDOFF_RECORD) -> bytes:
    """Wrap ``desc`` as one ELF note named "HANDOFF" (R24), padded to 4 bytes."""
    if n_type not in (NT_HANDOFF_RECORD, NT_HANDOFF_REPORT):
        raise E.InvalidArgument(f"n_type {n_type:#x} is not a handoff note type")
    p, n = _buf(desc, "desc")
    out = ffi.new("uint8_t[]", 20 + (n + 3) // 4 * 4)
    size = ffi.new("size_t *")
    err = lib.handoff_note_wrap(p, n, n_type, out, len(out), size)
    if err:
        raise error(err, f"cannot wrap note: {strerror(err)}")
    return bytes(ffi.buffer(out, size[0]))


# --- two-slot regions ------------------------------------------------------------------------
class RegionRecord(NamedTuple):
    """The valid record of a region (R25)."""

    record: bytes
    generation: int
    slot: int
    offset: int  # of the record from the region start


class RegionUpdate(NamedTuple):
    """Where region_update put the record, and the generation it was given (R26)."""

    slot: int
    generation: int


def _region_dict(info: Any) -> dict[str, Any]:
    slots = []
    for s in (0, 1):
        status = info.slot_status[s]
        slots.append(
            {
                "offset": info.slot_offset[s],
                "valid": status == 0,
                "error": None if status == 0 else ERRORS.get(status, RuntimeError).__name__,
                "generation": info.slot_generation[s] if status == 0 else None,
                "length": info.slot_length[s] if status == 0 else None,
            }
        )
    valid = any(s["valid"] for s in slots)
    return {
        "version": f"{info.version_major}.{info.version_minor}",
        "region_size": info.region_size,
        "slot_size": info.slot_size,
        "slots": slots,
        "newest": info.newest if valid else None,
    }


def _region_error(err: int, info: Any, where: str, *, record_len: int = 0) -> Exception:
    if err == lib.HANDOFF_E_REGION:
        d = info.diag
        return error(
            err, f"bad region {where}: {_str(d.path)}: {_str(d.what)}", offset=int(d.offset)
        )
    if err == lib.HANDOFF_E_NO_RECORD:
        why = ", ".join(f"slot {s}: {strerror(info.slot_status[s])}" for s in (0, 1))
        return error(err, f"region {where} holds no valid record ({why})")
    if err == lib.HANDOFF_E_NOSPACE:
        return error(
            err,
            f"record of {record_len} bytes does not fit the "
            f"{info.slot_size}-byte slots of region {where}",
        )
    if err == lib.HANDOFF_E_INTERRUPTED:
        return error(err, f"update of region {where} interrupted: the write budget ran out")
    if err == lib.HANDOFF_E_IO:  # OSError adds errno's text and the path
        return error(err, "region I/O failed", filename=where)
    return error(err, f"region {where}: {strerror(err)}")


def region_format_mem(buf: bytearray | memoryview, *, slot_size: int = 0) -> None:
    """Lay out an empty two-slot region (§7) over all of ``buf``; slot_size 0 = largest."""
    p, n = _buf(buf, "region", writable=True)
    err = lib.handoff_region_format(p, n, _uint(slot_size, "slot_size"))
    if err:
        raise E.InvalidArgument(
            f"a region of {n} bytes cannot hold two slots of {slot_size} "
            "bytes (slot_size must be a multiple of 8, at least 256)"
        )


def region_inspect_mem(buf: Buffer) -> dict[str, Any]:
    """Layout and per-slot status of the region in ``buf``; raises RegionError if bad."""
    p, n = _buf(buf, "region")
    info = ffi.new("struct handoff_region_info *")
    err = lib.handoff_region_inspect(p, n, info)
    if err and err != lib.HANDOFF_E_NO_RECORD:
        raise _region_error(err, info, "in memory")
    return _region_dict(info)


def region_read_mem(buf: Buffer) -> RegionRecord:
    """The valid record of the region in ``buf`` (R25)."""
    p, n = _buf(buf, "region")
    info = ffi.new("struct handoff_region_info *")
    err = lib.handoff_region_inspect(p, n, info)
    if err:
        raise _region_error(err, info, "in memory")
    s = info.newest
    off, length = info.slot_offset[s], info.slot_length[s]
    mv = memoryview(buf).cast("B")
    return RegionRecord(bytes(mv[off : off + length]), info.slot_generation[s], s, off)


def region_update_mem(
    buf: bytearray | memoryview, record: Buffer, *, budget: int | None = None
) -> RegionUpdate:
    """Store ``record`` in the region in ``buf`` following R26.

    ``budget`` (fault injection) is the number of bytes the update may write before it stops
    as a power cut would, raising UpdateInterrupted.
    """
    check_record(record, exact=True)  # the detailed error; the C side checks again
    p, n = _buf(buf, "region", writable=True)
    r, rn = _buf(record, "record")
    b = ffi.NULL if budget is None else ffi.new("uint64_t *", _uint(budget, "budget"))
    slot, gen = ffi.new("unsigned *"), ffi.new("uint64_t *")
    err = lib.handoff_region_update_mem(p, n, r, rn, b, ffi.NULL, ffi.NULL, slot, gen)
    if err:
        info = ffi.new("struct handoff_region_info *")
        lib.handoff_region_inspect(p, n, info)
        raise _region_error(err, info, "in memory", record_len=rn)
    return RegionUpdate(int(slot[0]), int(gen[0]))


def _file_range(path: PathArg, offset: int, size: int | None) -> tuple[bytes, int, int]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    raw = os.fsencode(path)
    _uint(offset, "offset")
    if size is None:
        st = os.stat(raw)
        if not stat.S_ISREG(st.st_mode):
            raise E.InvalidArgument(f"{os.fsdecode(raw)}: give the region size for a device")
        size = st.st_size - offset
    if _uint(size, "size") == 0:
        raise E.InvalidArgument(f"{os.fsdecode(raw)}: empty region at offset {offset}")
    return raw, offset, size


def region_format_file(
    path: PathArg, *, offset: int = 0, size: int | None = None, slot_size: int = 0
) -> None:
    """Format ``size`` bytes at ``offset`` of a file or device as a region (extends a file)."""
    raw, offset, size = _file_range(path, offset, size)
    err = lib.handoff_region_format_file(raw, offset, size, _uint(slot_size, "slot_size"))
    if err == lib.HANDOFF_E_INVAL:
        raise E.InvalidArgument(
            f"a region of {size} bytes cannot hold two slots of {slot_size} "
            "bytes (slot_size must be a multiple of 8, at least 256)"
        )
    if err:
        raise error(err, "cannot format region", filename=os.fsdecode(raw))


def region_inspect_file(
    path: PathArg, *, offset: int = 0, size: int | None = None
) -> dict[str, Any]:
    """region_inspect_mem() for a byte range of a file or device."""
    raw, offset, size = _file_range(path, offset, size)
    info = ffi.new("struct handoff_region_info *")
    err = lib.handoff_region_inspect_file(raw, offset, size, info)
    if err and err != lib.HANDOFF_E_NO_RECORD:
        raise _region_error(err, info, os.fsdecode(raw))
    return _region_dict(info)


def region_read_file(path: PathArg, *, offset: int = 0, size: int | None = None) -> RegionRecord:
    """region_read_mem() for a byte range of a file or device."""
    raw, offset, size = _file_range(path, offset, size)
    out = ffi.new("uint8_t[]", min(size, RECORD_SIZE_MAX))
    off, length = ffi.new("uint64_t *"), ffi.new("size_t *")
    gen, slot = ffi.new("uint64_t *"), ffi.new("unsigned *")
    err = lib.handoff_region_read_file(raw, offset, size, out, len(out), off, length, gen, slot)
    if err:
        info = ffi.new("struct handoff_region_info *")
        if err != lib.HANDOFF_E_IO:
            lib.handoff_region_inspect_file(raw, offset, size, info)
        raise _region_error(err, info, os.fsdecode(raw))
    return RegionRecord(bytes(ffi.buffer(out, length[0])), int(gen[0]), int(slot[0]), int(off[0]))


def region_update_file(
    path: PathArg,
    record: Buffer,
    *,
    offset: int = 0,
    size: int | None = None,
    budget: int | None = None,
) -> RegionUpdate:
    """region_update_mem() for a byte range of a file or device, msync'ed after each phase."""
    check_record(record, exact=True)
    raw, offset, size = _file_range(path, offset, size)
    r, rn = _buf(record, "record")
    b = ffi.NULL if budget is None else ffi.new("uint64_t *", _uint(budget, "budget"))
    slot, gen = ffi.new("unsigned *"), ffi.new("uint64_t *")
    err = lib.handoff_region_update_file(raw, offset, size, r, rn, b, slot, gen)
    if err:
        where = os.fsdecode(raw)
        info = ffi.new("struct handoff_region_info *")
        if err != lib.HANDOFF_E_IO:
            lib.handoff_region_inspect_file(raw, offset, size, info)
        raise _region_error(err, info, where, record_len=rn)
    return RegionUpdate(int(slot[0]), int(gen[0]))


def region_format(
    target: bytearray | memoryview | PathArg,
    *,
    offset: int = 0,
    size: int | None = None,
    slot_size: int = 0,
) -> None:
    """Format a region in a writable buffer or in a file or device (str or PathLike)."""
    if isinstance(target, (str, os.PathLike)):
        region_format_file(target, offset=offset, size=size, slot_size=slot_size)
    else:
        region_format_mem(_window(target, offset, size), slot_size=slot_size)


def region_read(
    target: Buffer | PathArg, *, offset: int = 0, size: int | None = None
) -> RegionRecord:
    """The valid record (R25) of a region in a buffer or in a file or device."""
    if isinstance(target, (str, os.PathLike)):
        return region_read_file(target, offset=offset, size=size)
    return region_read_mem(_window(target, offset, size))


def region_update(
    target: bytearray | memoryview | PathArg,
    record: Buffer,
    *,
    offset: int = 0,
    size: int | None = None,
    budget: int | None = None,
) -> RegionUpdate:
    """Store a record (R26) in a region in a writable buffer or in a file or device."""
    if isinstance(target, (str, os.PathLike)):
        return region_update_file(target, record, offset=offset, size=size, budget=budget)
    return region_update_mem(_window(target, offset, size), record, budget=budget)


def region_inspect(
    target: Buffer | PathArg, *, offset: int = 0, size: int | None = None
) -> dict[str, Any]:
    """Layout and slot status of a region in a buffer or in a file or device."""
    if isinstance(target, (str, os.PathLike)):
        return region_inspect_file(target, offset=offset, size=size)
    return region_inspect_mem(_window(target, offset, size))


def _window(buf: Buffer, offset: int, size: int | None) -> memoryview:
    mv = memoryview(buf).cast("B")
    _uint(offset, "offset", hi=len(mv))
    end = len(mv) if size is None else offset + _uint(size, "size", hi=len(mv) - offset)
    return mv[offset:end]
