#!/usr/bin/env python3
"""Regenerate spec/vectors/*.json from the rules of spec/format.md, with the stdlib only.

This is a third, deliberately separate writer: it shares no code with the C core or the
Python reader (only the tests' reference CRC and runs, tests/helpers/reference.py), so a vector
checks both against the text of the spec. Each vector file holds the record bytes as hex, the
requirement it exercises, and either the decoded fields a reader must report (valid) or the
mutation applied and the error a reader must raise (invalid).

Run: python3 spec/vectors/generate.py   (rewrites the files; the output is deterministic)
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAGIC = b"HANDOFF\x00"
FIXED = struct.Struct("<8sHHIQQQHHI32s16s16s12sI")
BOOT_ID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
MACHINE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")

# §5 CRC-32C and §4.1 runs: the tests' one reference of each (stdlib only, written from the
# spec, sharing nothing with the C core or the reader).
sys.path.insert(0, str(HERE.parents[1] / "tests"))
from helpers.reference import crc32c_ref as crc32c
from helpers.reference import sparse_runs_ref as runs


# --- a minimal core-deterministic CBOR encoder (RFC 8949 §4.2.1) -----------------------------
def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(n)


def cbor(obj: object) -> bytes:
    if obj is False:
        return b"\xf4"
    if obj is True:
        return b"\xf5"
    if obj is None:
        return b"\xf6"
    if isinstance(obj, int):
        return _head(0, obj) if obj >= 0 else _head(1, -1 - obj)
    if isinstance(obj, bytes):
        return _head(2, len(obj)) + obj
    if isinstance(obj, str):
        b = obj.encode()
        return _head(3, len(b)) + b
    if isinstance(obj, list):
        return _head(4, len(obj)) + b"".join(cbor(x) for x in obj)
    if isinstance(obj, dict):
        items = sorted((cbor(k), cbor(v)) for k, v in obj.items())
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    raise TypeError(type(obj))


def text(s: str | bytes, size: int = 64) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return b + bytes(size - len(b))


def record(
    payload: bytes,
    *,
    major: int = 1,
    minor: int = 0,
    header_size: int = 256,
    generation: int = 1,
    created_ns: int = 1_764_000_000_000_000_000,
    check_alg: int = 1,
    digest_alg: int = 1,
    release: bytes = text("6.1.0-56-amd64"),
    hostname: bytes = text("vector-host"),
    ext_extra: bytes = b"",
    payload_size: int | None = None,
    digest: bytes | None = None,
) -> bytes:
    ext = release + hostname + ext_extra
    ext += bytes(header_size - 128 - len(ext)) if header_size - 128 > len(ext) else b""
    ext = ext[: max(header_size - 128, 0)] if header_size >= 128 else ext
    body = ext + payload
    if digest is None:
        digest = hashlib.sha256(body).digest()
    psize = len(payload) if payload_size is None else payload_size
    head = FIXED.pack(MAGIC, major, minor, header_size, psize, generation, created_ns,
                      check_alg, digest_alg, 0, digest, BOOT_ID, MACHINE_ID, bytes(12), 0)
    head = head[:124] + struct.pack("<I", crc32c(head[:124]))
    return head + body


def restamp(rec: bytes) -> bytes:
    """Recompute header_crc after a deliberate header mutation, so a later check is reached."""
    return rec[:124] + struct.pack("<I", crc32c(rec[:124])) + rec[128:]


def redigest(rec: bytes) -> bytes:
    """Recompute payload_digest (and header_crc) after mutating bytes the digest covers."""
    hs, ps = struct.unpack_from("<IQ", rec, 12)
    d = hashlib.sha256(rec[128 : hs + ps]).digest()
    return restamp(rec[:48] + d + rec[80:])


def put(rec: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(rec)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def with_payload(p: bytes, **kw: object) -> bytes:
    return record(p, **kw)  # type: ignore[arg-type]


# --- payload pieces --------------------------------------------------------------------------
def pci_config(vendor: int, device: int, cls: int, size: int = 256) -> bytes:
    c = bytearray(size)
    struct.pack_into("<HHHH", c, 0, vendor, device, 0x0507, 0x0010)
    c[8] = 2
    c[9:12] = cls.to_bytes(3, "little")
    struct.pack_into("<I", c, 0x10, 0xFEBD0000)
    struct.pack_into("<HH", c, 0x2C, 0x1AF4, 0x1100)
    c[0x34] = 0x40
    c[0x40:0x44] = bytes([0x11, 0x00, 0x3F, 0x00])  # MSI-X capability header
    return bytes(c)


def device(addr: str = "0000:01:00.0", *, size: int = 4096, early: bool = True,
           live_override: dict | None = None) -> dict:
    cfg = pci_config(0x1B36, 0x0010, 0x010802, size)
    d = {
        "bus": "pci",
        "addr": addr,
        "ids": {"vendor": 0x1B36, "device": 0x0010, "subvendor": 0x1AF4, "subdevice": 0x1100,
                "class": 0x010802, "revision": 2},
        "driver": "nvme",
        "classes": ["nvme"],
        "parent": "0000:00:01.0",
        "path": ["pci0000:00", "0000:00:01.0", addr],
        "bars": [[0, 0xFEBD0000, 0x4000, 0x140204]],
        "reset_methods": ["flr", "bus"],
        "live": {"src": "live", "size": size, "len": size, "data": runs(cfg)},
        "policy": "restore-early",
    }
    if early:
        d["early"] = {"src": "earlydump", "size": size, "len": 256, "data": runs(cfg[:256]),
                      "partial": "earlydump prints 256 bytes"}
    if live_override is not None:
        d["live"].update(live_override)
    return d


def payload(devices: list | None = None, **extra: object) -> bytes:
    p = {"v": 1, "devices": devices if devices is not None else []}
    p.update(extra)
    return cbor(p)


def expect(rec: bytes, **more: object) -> dict:
    hs, ps, gen = struct.unpack_from("<IQQ", rec, 12)
    major, minor = struct.unpack_from("<HH", rec, 8)
    out = {"version": f"{major}.{minor}", "header_size": hs, "payload_size": ps,
           "generation": gen, "boot_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
           "machine_id": MACHINE_ID.hex(), "created_ns": struct.unpack_from("<Q", rec, 32)[0]}
    out.update(more)
    return out


def vectors() -> list[dict]:
    V: list[dict] = []

    def valid(name: str, req: str, what: str, rec: bytes, **exp: object) -> None:
        V.append({"name": name, "requirement": req, "valid": True, "description": what,
                  "record": rec.hex(), "expect": expect(rec, **exp)})

    def invalid(name: str, req: str, mutation: str, rec: bytes, error: str) -> None:
        V.append({"name": name, "requirement": req, "valid": False, "mutation": mutation,
                  "record": rec.hex(), "error": error})

    base = record(payload())
    one = record(payload([device()]))

    # ---- valid ------------------------------------------------------------------------------
    valid("minimal", "R4 R5 R6 R8 R12 R13 R15 R20", "empty device list", base,
          kernel_release="6.1.0-56-amd64", hostname="vector-host", devices=0)
    valid("one-pci-device", "R20 R21", "an nvme function with early and live snapshots", one,
          kernel_release="6.1.0-56-amd64", hostname="vector-host", devices=1)
    valid("newer-minor-bigger-header", "R7 R22",
          "format 1.7 with a 264-byte header and unknown payload keys; a 1.0 reader accepts it",
          record(payload([device()], future={"x": 1}), minor=7, header_size=264,
                 ext_extra=b"\x01" * 8), kernel_release="6.1.0-56-amd64",
          hostname="vector-host", devices=1)
    valid("full-width-text", "R3", "kernel_release of exactly 64 bytes has no NUL",
          record(payload(), release=text("r" * 64), hostname=text("h" * 64)),
          kernel_release="r" * 64, hostname="h" * 64, devices=0)
    valid("big-generation", "R17", "generation 2^63 + 5", record(payload(), generation=2**63 + 5),
          kernel_release="6.1.0-56-amd64", hostname="vector-host", devices=0)
    valid("other-bus-opaque", "R22", "a device of a bus schema 1 does not define is kept opaque",
          record(payload([{"bus": "usb", "addr": "1-1.2", "speed": 480}])),
          kernel_release="6.1.0-56-amd64", hostname="vector-host", devices=1)
    valid("ext-sections", "R22", "a versioned plugin section at top level and in a device",
          record(payload([dict(device(), ext={"nvme": {"v": 1, "cc": 0x460001}})],
                          ext={"vendor.example": {"v": 3}})),
          kernel_release="6.1.0-56-amd64", hostname="vector-host", devices=1)
    odd = {"src": "live", "size": 256, "len": 16,
           "data": struct.pack("<HH", 0, 2) + b"\x86\x80" + struct.pack("<HH", 3, 1) + b"\x12"}
    valid("sparse-any-split", "R21", "runs split at a 1-byte gap are valid (readers accept any split)",
          record(payload([device(size=256, early=False, live_override=odd)])),
          kernel_release="6.1.0-56-amd64", hostname="vector-host", devices=1)
    valid("old-minor-header-256", "R7", "format 1.0 record read by any 1.x reader",
          record(payload(), minor=0, generation=42), kernel_release="6.1.0-56-amd64",
          hostname="vector-host", devices=0)

    # ---- invalid: header ---------------------------------------------------------------------
    invalid("truncated-fixed", "§8.1", "only the first 100 bytes", base[:100], "TruncatedRecord")
    invalid("empty", "§8.1", "zero bytes", b"", "TruncatedRecord")
    invalid("bad-magic", "R4", "byte 0 'H' -> 'h'", b"h" + base[1:], "BadMagic")
    invalid("check-alg-unknown", "R10 R23", "header_check_alg = 7",
            put(base, 40, "<H", 7), "UnsupportedAlgorithm")
    invalid("header-crc-flip", "R12", "bit 0 of generation flipped, crc not updated",
            put(base, 24, "<Q", 0), "HeaderChecksumMismatch")
    invalid("header-crc-field", "R12", "header_crc itself changed",
            put(base, 124, "<I", 0xDEADBEEF), "HeaderChecksumMismatch")
    invalid("digest-field-flip", "R12",
            "a bit of payload_digest flipped (covered by header_crc, caught there)",
            base[:50] + bytes([base[50] ^ 1]) + base[51:], "HeaderChecksumMismatch")
    invalid("major-2", "R14", "version_major = 2, crc restamped",
            restamp(put(base, 8, "<H", 2)), "UnsupportedVersion")
    invalid("major-0", "R14", "version_major = 0, crc restamped",
            restamp(put(base, 8, "<H", 0)), "UnsupportedVersion")
    invalid("header-size-small", "R8", "header_size = 248, crc restamped",
            restamp(put(base, 12, "<I", 248)), "BadHeaderSize")
    invalid("header-size-unaligned", "R8", "header_size = 260, crc restamped",
            restamp(put(base, 12, "<I", 260)), "BadHeaderSize")
    invalid("header-size-huge", "R8", "header_size = 0xFFFFFFF8, crc restamped",
            restamp(put(base, 12, "<I", 0xFFFFFFF8)), "BadHeaderSize")
    invalid("header-truncated", "§8.6", "cut at byte 200 (inside the extended header)",
            base[:200], "TruncatedRecord")
    invalid("payload-too-large", "R9", "payload_size = 2^40, crc restamped",
            restamp(put(base, 16, "<Q", 1 << 40)), "PayloadTooLarge")
    invalid("payload-truncated", "§8.7", "last byte of the payload removed", one[:-1],
            "TruncatedRecord")
    invalid("digest-alg-unknown", "R11 R23", "payload_digest_alg = 9, crc restamped",
            restamp(put(base, 42, "<H", 9)), "UnsupportedAlgorithm")
    flip = bytearray(one)
    flip[-3] ^= 0x10
    invalid("digest-payload-flip", "R13", "one payload bit flipped", bytes(flip), "DigestMismatch")
    flip = bytearray(one)
    flip[130] ^= 0x01
    invalid("digest-ext-flip", "R13", "one kernel_release bit flipped", bytes(flip),
            "DigestMismatch")
    invalid("text-after-nul", "R3", "hostname 'ab\\0c', digest recomputed",
            record(payload(), hostname=text(b"ab\x00c")), "BadTextField")
    invalid("text-not-utf8", "R3", "kernel_release holds 0xff, digest recomputed",
            record(payload(), release=text(b"6.1\xff")), "BadTextField")
    invalid("trailing-data", "§8", "one zero byte appended to a raw record", base + b"\x00",
            "TrailingData")

    # ---- invalid: CBOR (R15, R16, R18, R19) ---------------------------------------------------
    def bad(name: str, req: str, mutation: str, p: bytes, error: str = "BadCBOR") -> None:
        invalid(name, req, mutation, record(p), error)

    bad("cbor-non-shortest", "R15", "v encoded as 0x18 0x01", b"\xa2\x61v\x18\x01\x67devices\x80")
    bad("cbor-unsorted", "R15", "keys in order devices, v", b"\xa2\x67devices\x80\x61v\x01")
    bad("cbor-duplicate", "R15", "key v twice", b"\xa3\x61v\x01\x61v\x01\x67devices\x80")
    bad("cbor-indefinite", "R15", "devices as an indefinite array",
        b"\xa2\x61v\x01\x67devices\x9f\xff")
    bad("cbor-tag", "R16", "v wrapped in tag 1", b"\xa2\x61v\xc1\x01\x67devices\x80")
    bad("cbor-float", "R16", "v as half float 1.0", b"\xa2\x61v\xf9\x3c\x00\x67devices\x80")
    bad("cbor-undefined", "R16", "extra key with undefined",
        b"\xa3\x61v\x01\x61x\xf7\x67devices\x80")
    bad("cbor-int-key", "R16", "a map key that is an integer", b"\xa3\x01\x01\x61v\x01\x67devices\x80")
    bad("cbor-bad-utf8", "R16", "text key with byte 0xff", b"\xa3\x61v\x01\x61\xff\x00\x67devices\x80")
    deep = b"\x81" * 16 + b"\x00"
    bad("cbor-depth-17", "R18", "an array nested 17 deep under key 'x'",
        b"\xa3\x61v\x01\x61x" + deep + b"\x67devices\x80")
    bad("cbor-length-overrun", "R18", "byte string claiming 2^32 bytes",
        b"\xa3\x61v\x01\x61x\x5b\x00\x00\x00\x01\x00\x00\x00\x00\x67devices\x80")
    bad("cbor-trailing-item", "R19", "a second item after the payload map",
        payload() + b"\x00")

    # ---- invalid: schema (R20, R21) ----------------------------------------------------------
    bad("schema-v2", "R20", "top-level v = 2", cbor({"v": 2, "devices": []}), "SchemaViolation")
    bad("schema-no-devices", "R20", "devices key missing", cbor({"v": 1}), "SchemaViolation")
    bad("schema-snapshot-size", "R20", "live size 300",
        payload([device(live_override={"size": 300})]), "SchemaViolation")
    overlap = struct.pack("<HH", 0, 4) + b"\x01\x02\x03\x04" + struct.pack("<HH", 2, 1) + b"\x05"
    bad("sparse-overlap", "R21", "second run starts inside the first",
        payload([device(early=False, live_override={"data": overlap})]), "SchemaViolation")
    beyond = struct.pack("<HH", 250, 10) + b"\x01" * 10
    bad("sparse-beyond-len", "R21", "run 250+10 with len 256",
        payload([device(size=256, early=False,
                        live_override={"len": 256, "data": beyond})]), "SchemaViolation")
    bad("sparse-empty-run", "R21", "a run of length 0",
        payload([device(early=False, live_override={"data": struct.pack("<HH", 0, 0)})]),
        "SchemaViolation")
    # The whole of schema 1, in C and Python alike: R25's "valid" includes these.
    bad("schema-addr-function-8", "R20", "pci addr 0000:01:00.8 (function > 7)",
        payload([device("0000:01:00.8")]), "SchemaViolation")
    bad("schema-addr-device-20", "R20", "pci addr 0000:01:20.0 (device > 0x1f)",
        payload([device("0000:01:20.0")]), "SchemaViolation")
    bad("schema-addr-newline", "R20", "pci addr with a trailing newline",
        payload([device("0000:01:00.0\n")]), "SchemaViolation")
    no_ids = device()
    del no_ids["ids"]
    bad("schema-pci-no-ids", "R20", "a pci device without ids", payload([no_ids]),
        "SchemaViolation")
    big_vendor = device()
    big_vendor["ids"] = dict(big_vendor["ids"], vendor=0x10000)
    bad("schema-vendor-range", "R20", "ids.vendor 0x10000", payload([big_vendor]),
        "SchemaViolation")
    no_policy = device()
    del no_policy["policy"]
    bad("schema-pci-no-policy", "R20", "a pci device without policy", payload([no_policy]),
        "SchemaViolation")
    return V


def main() -> int:
    out = HERE
    old = {p.name for p in out.glob("*.json")}
    written = set()
    for v in vectors():
        kind = "valid" if v["valid"] else "invalid"
        name = f"{kind}-{v['name']}.json"
        (out / name).write_text(json.dumps(v, indent=1, sort_keys=True) + "\n")
        written.add(name)
    for stale in old - written:
        (out / stale).unlink()
    print(f"wrote {len(written)} vectors to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
