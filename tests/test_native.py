"""Tests of the C core through handoff._binding: checksums, records, payload checks, notes, regions."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import struct
import tracemalloc
from pathlib import Path

import cbor2
import pytest
from helpers.reference import SHA256_IDS, SHA256_VECTORS, crc32c_ref, sparse_runs_ref

from handoff import _binding as B
from handoff import errors as E

lib = B.lib  # tests reach the C constants through the binding, the one importer of _native

PRODUCER = {
    "created_ns": 1_764_000_000_123_456_789,
    "boot_id": bytes(range(16)),
    "machine_id": bytes(range(16, 32)),
    "kernel_release": "6.1.0-56-amd64",
    "hostname": "testhost",
}


# --- builders --------------------------------------------------------------------------------
def config_space(size: int, seed: int) -> bytes:
    """Mostly non-zero config space with a zero gap at the end of every 64-byte block."""
    rnd = random.Random(seed)
    c = bytearray(size)
    for block in range(0, size, 64):
        for i in range(block, block + rnd.randrange(48, 61)):
            c[i] = rnd.randrange(1, 256)
    return bytes(c)


def pci_device(addr: str, seed: int) -> dict[str, object]:
    live = config_space(4096, seed)
    early = config_space(256, seed + 1)
    return {
        "bus": "pci",
        "addr": addr,
        "ids": {
            "vendor": 0x8086,
            "device": 0x153C,
            "subvendor": 0,
            "subdevice": 0,
            "class": 0x020000,
            "revision": 2,
        },
        "path": ["pci0000:00", addr],
        "early": {"src": "collector", "size": 256, "len": 256, "data": sparse_runs_ref(early)},
        "live": {"src": "live", "size": 4096, "len": 4096, "data": sparse_runs_ref(live)},
        "policy": "restore-live",
    }


def payload_small() -> bytes:
    return cbor2.dumps({"v": 1, "devices": []}, canonical=True)


def payload_medium() -> bytes:
    body = {"v": 1, "devices": [{"bus": "usb", "addr": "1-1", "blob": bytes(900)}]}
    return cbor2.dumps(body, canonical=True)


def payload_pci() -> bytes:
    p = cbor2.dumps({"v": 1, "devices": [pci_device("0000:01:00.0", 7)]}, canonical=True)
    assert 4096 < len(p) < 8192
    return p


def record(payload: bytes, generation: int = 1, **kw: object) -> bytes:
    args = {**PRODUCER, **kw}
    return B.encode_record(payload, generation=generation, **args)  # type: ignore[arg-type]


def restamp(rec: bytes | bytearray, **fields: int) -> bytes:
    """Set fixed-header fields and recompute header_crc, so that later §8 steps are reached."""
    offsets = {
        "version_major": (8, "<H"),
        "version_minor": (10, "<H"),
        "header_size": (12, "<I"),
        "payload_size": (16, "<Q"),
        "generation": (24, "<Q"),
        "header_check_alg": (40, "<H"),
        "payload_digest_alg": (42, "<H"),
    }
    b = bytearray(rec)
    for name, value in fields.items():
        off, fmt = offsets[name]
        struct.pack_into(fmt, b, off, value)
    struct.pack_into("<I", b, 124, crc32c_ref(bytes(b[:124])))
    return bytes(b)


# --- CRC-32C and SHA-256 -----------------------------------------------------------------------
IMPLS = [i for i in ("table", "sse42", "auto") if B.crc32c_available(i)]


@pytest.mark.parametrize("impl", ["table", "sse42", "auto"])
def test_crc32c_check_value(impl: str) -> None:
    if not B.crc32c_available(impl):
        pytest.skip(f"{impl} CRC-32C not available on this CPU")
    assert B.crc32c(b"123456789", impl=impl) == 0xE3069283  # §5
    assert B.crc32c(b"", impl=impl) == 0


def test_crc32c_impls_agree_on_random_data() -> None:
    rnd = random.Random(1)
    blob = rnd.randbytes(70_000)
    for _ in range(400):
        start = rnd.randrange(64)  # unaligned starts exercise the 8-byte loop's edges
        data = memoryview(blob)[
            start : start + rnd.choice([0, 1, 7, 8, 9, 63, 64, 65, 1000, 65536])
        ]
        results = {B.crc32c(data, impl=i) for i in IMPLS}
        assert len(results) == 1
    assert B.crc32c(blob[:333], impl="table") == crc32c_ref(blob[:333])


def test_crc32c_chains_like_zlib() -> None:
    data = random.Random(2).randbytes(1000)
    for impl in IMPLS:
        assert B.crc32c(data[300:], impl=impl, crc=B.crc32c(data[:300], impl=impl)) == B.crc32c(
            data
        )


def test_crc32c_refuses_unknown_impl() -> None:
    with pytest.raises(E.InvalidArgument):
        B.crc32c(b"x", impl="pclmul")


NIST = SHA256_VECTORS


@pytest.mark.parametrize("data,digest", NIST, ids=SHA256_IDS)
def test_sha256_nist_vectors(data: bytes, digest: str) -> None:
    assert B.sha256(data).hex() == digest
    h = B.Sha256()
    for i in range(0, len(data), 4099):  # odd chunks cross block boundaries
        h.update(data[i : i + 4099])
    assert h.digest().hex() == digest


def test_sha256_incremental_matches_hashlib_at_every_split() -> None:
    data = random.Random(3).randbytes(300)
    for n in range(200):
        for split in {0, n // 3, n // 2, n}:
            h = B.Sha256(data[:split])
            h.update(data[split:n])
            assert h.digest() == hashlib.sha256(data[:n]).digest()
            assert h.digest() == h.digest()  # digest() does not consume the state


# --- records -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [payload_small, payload_pci])
def test_encode_verify_round_trip(make: object) -> None:
    payload = make()  # type: ignore[operator]
    rec = record(payload, generation=42)
    assert len(rec) == 256 + len(payload)
    assert rec[256:] == payload
    info = B.check_record(rec, exact=True)
    assert info == {
        "version_major": 1,
        "version_minor": 0,
        "header_size": 256,
        "payload_size": len(payload),
        "record_size": len(rec),
        "generation": 42,
        "created_ns": PRODUCER["created_ns"],
        "header_check_alg": 1,
        "payload_digest_alg": 1,
        "flags": 0,
        "header_crc": struct.unpack_from("<I", rec, 124)[0],
        "payload_digest": hashlib.sha256(rec[128:]).digest(),
        "boot_id": PRODUCER["boot_id"],
        "machine_id": PRODUCER["machine_id"],
        "kernel_release": "6.1.0-56-amd64",
        "hostname": "testhost",
    }
    assert crc32c_ref(rec[:124]) == info["header_crc"]
    assert rec[112:124] == bytes(12)  # R2 reserved
    assert rec[128 + 14 : 192] == bytes(50)  # R3 NUL padding
    assert B.verify_record(rec + b"tail") == info  # containers may have bytes after a record


def test_encode_full_width_text_and_refusals() -> None:
    rec = record(payload_small(), kernel_release="r" * 64, hostname="é" * 32)
    info = B.verify_record(rec)
    assert info["kernel_release"] == "r" * 64 and info["hostname"] == "é" * 32
    with pytest.raises(E.BadTextField):
        record(payload_small(), hostname="h" * 65)
    with pytest.raises(E.BadTextField):
        record(payload_small(), hostname="a\0b")
    with pytest.raises(E.BadTextField):
        record(payload_small(), hostname="\udc80")
    with pytest.raises(E.InvalidArgument):
        record(payload_small(), generation=0)  # R17
    with pytest.raises(E.InvalidArgument):
        record(payload_small(), boot_id=b"short")
    with pytest.raises(E.BadCBOR):
        record(b"\xa1\x61v\x18\x01")  # checked before it is written
    with pytest.raises(E.PayloadTooLarge):
        record(bytes(B.PAYLOAD_SIZE_MAX + 1), check=False)


def test_every_bit_flip_is_detected() -> None:
    rec = bytearray(record(payload_pci()))
    assert len(rec) >= 4096
    for i in range(len(rec)):
        # The first failing step of §8 decides the error.
        want: type[E.InvalidRecord]
        if i < 8:
            want = E.BadMagic
        elif 40 <= i < 42:
            want = E.UnsupportedAlgorithm  # step 3 comes before the CRC
        elif i < 128:
            want = E.HeaderChecksumMismatch
        else:
            want = E.DigestMismatch
        for bit in range(8):
            rec[i] ^= 1 << bit
            with pytest.raises(want):
                B.verify_record(rec)
            rec[i] ^= 1 << bit
    B.check_record(rec, exact=True)


def test_step_order_and_messages() -> None:
    rec = record(payload_small())
    with pytest.raises(
        E.UnsupportedVersion, match=r"^record is format 2\.7, this reader reads 1\.x"
    ):
        B.verify_record(restamp(rec, version_major=2, version_minor=7, header_size=3))  # 5 before 6
    b = bytearray(restamp(rec, version_major=2))
    struct.pack_into("<H", b, 10, 7)
    with pytest.raises(E.HeaderChecksumMismatch) as ei:  # step 4 before 5
        B.verify_record(b)
    assert ei.value.check == "header_crc" and ei.value.offset == 124
    with pytest.raises(E.UnsupportedAlgorithm, match="header_check_alg 2"):
        B.verify_record(restamp(rec, header_check_alg=2, version_major=9))
    with pytest.raises(E.UnsupportedAlgorithm, match="payload_digest_alg 3"):
        B.verify_record(restamp(rec, payload_digest_alg=3))
    with pytest.raises(E.TruncatedRecord, match="header needs 1024"):
        B.verify_record(restamp(rec, header_size=1024))
    with pytest.raises(E.TruncatedRecord, match="268 bytes, the record needs 269"):
        B.verify_record(rec[:-1])
    for bad in (0, 8, 248, 260, 4104):
        with pytest.raises(E.BadHeaderSize):
            B.verify_record(restamp(rec, header_size=bad))


def test_hostile_sizes_refused_without_allocation() -> None:
    rec = record(payload_small())
    tracemalloc.start()
    try:
        with pytest.raises(E.PayloadTooLarge):
            B.verify_record(restamp(rec, payload_size=1 << 40))
        with pytest.raises(E.PayloadTooLarge):
            B.verify_record(restamp(rec, payload_size=(1 << 64) - 1))
        with pytest.raises(E.BadHeaderSize):
            B.verify_record(restamp(rec, header_size=0xFFFFFFFF))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # the C side allocates nothing; these sizes are never trusted


def test_payload_and_trailing_checks() -> None:
    bad = b"\xa2\x61v\x01\x67devices\x9f\xff"  # indefinite array
    rec = record(bad, check=False)
    B.verify_record(rec)  # steps 1-9 do not look inside the payload
    with pytest.raises(E.BadCBOR, match="payload offset 12: indefinite length") as ei:
        B.check_record(rec)
    assert ei.value.offset == 256 + 12 and ei.value.check == "cbor"
    with pytest.raises(E.BadCBOR):  # §8: the record's own checks come before trailing data
        B.check_record(rec + b"\0", exact=True)
    good = record(payload_small())
    with pytest.raises(E.TrailingData, match="1 byte"):
        B.verify_record(good + b"\0", exact=True)


def test_set_generation() -> None:
    rec = record(payload_pci(), generation=5)
    out = B.set_generation(rec, 6)
    assert B.check_record(out)["generation"] == 6
    assert out[:24] == rec[:24] and out[32:124] == rec[32:124] and out[128:] == rec[128:]
    with pytest.raises(E.InvalidArgument):
        B.set_generation(rec, 0)
    broken = bytearray(rec)
    broken[30] ^= 1
    with pytest.raises(E.HeaderChecksumMismatch):  # never re-stamps a damaged header
        B.set_generation(broken, 7)


# --- payload checker (§8 step 10) ------------------------------------------------------------
KEY = b"\x68zzzzzzzz"  # a key that sorts after "devices"
X = 22  # payload offset of KEY's value in top(value)


def top(value: bytes | None = None) -> bytes:
    """{"v": 1, "devices": []}, plus KEY: ``value`` when given."""
    if value is None:
        return b"\xa2\x61v\x01\x67devices\x80"
    return b"\xa3\x61v\x01\x67devices\x80" + KEY + value


def enc(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


CBOR_BAD = [
    # (name, payload, rule, payload offset)
    ("non-shortest int", b"\xa2\x61v\x18\x01\x67devices\x80", 15, 3),
    ("non-shortest 16-bit", top(b"\x19\x00\xff"), 15, X),
    ("non-shortest 32-bit", top(b"\x1a\x00\x00\xff\xff"), 15, X),
    ("non-shortest 64-bit", top(b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff"), 15, X),
    ("non-shortest length", top(b"\x58\x01\x00"), 15, X),
    ("unsorted keys", b"\xa2\x67devices\x80\x61v\x01", 15, 10),
    ("length-first order", b"\xa2\x62aa\x01\x61b\x01", 15, 5),
    ("duplicate key", b"\xa3\x61v\x01\x61v\x01\x67devices\x80", 15, 4),
    ("tag", b"\xa2\x61v\xc1\x01\x67devices\x80", 16, 3),
    ("float", b"\xa2\x61v\xf9\x3c\x00\x67devices\x80", 16, 3),
    ("double", b"\xa2\x61v\xfb" + bytes(8) + b"\x67devices\x80", 16, 3),
    ("undefined", top(b"\xf7"), 16, X),
    ("simple value", top(b"\xf8\x20"), 16, X),
    ("int key", b"\xa3\x01\x01\x61v\x01\x67devices\x80", 16, 1),
    ("bad UTF-8", top(b"\x62\xc0\xaf"), 16, X + 1),
    ("surrogate", top(b"\x63\xed\xa0\x80"), 16, X + 1),
    ("indefinite array", b"\xa2\x61v\x01\x67devices\x9f\xff", 15, 12),
    ("indefinite map", b"\xbf\x61v\x01\xff", 15, 0),
    ("indefinite string", top(b"\x5f\x41\x00\xff"), 15, X),
    ("reserved info", top(b"\x1c"), 15, X),
    ("stray break", top(b"\xff"), 15, X),
    ("depth 17", top(b"\x81" * 15 + b"\x80"), 18, X + 15),
    ("trailing byte", top() + b"\x00", 19, 13),
    ("empty", b"", 19, 0),
    ("bstr 2^32", top(b"\x5b\x00\x00\x00\x01\x00\x00\x00\x00"), 18, X),
    ("bstr 2^64-1", top(b"\x5b" + b"\xff" * 8), 18, X),
    ("array count", top(b"\x9a\xff\xff\xff\xff"), 18, X),
    ("map count", top(b"\xbb" + b"\x7f" * 8), 18, X),
    ("cut argument", top(b"\x1a\x00"), 18, X),
    ("missing value", top(b""), 18, X),
]


@pytest.mark.parametrize("name,payload,rule,offset", CBOR_BAD, ids=[c[0] for c in CBOR_BAD])
def test_cbor_refused(name: str, payload: bytes, rule: int, offset: int) -> None:
    with pytest.raises(E.BadCBOR) as ei:
        B.check_payload(payload)
    assert f"(R{rule})" in str(ei.value)
    assert ei.value.offset == offset and f"payload offset {offset}" in str(ei.value)


def test_cbor_depth_16_and_edge_values_accepted() -> None:
    B.check_payload(top(b"\x81" * 14 + b"\x80"))  # arrays from depth 2 down to depth 16
    ints = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -24, -25, -(2**64)]
    B.check_payload(enc({"v": 1, "devices": [], "x": ints}))
    B.check_payload(enc({"v": 1, "devices": [], "b": 1, "aa": 2}))


def random_item(rnd: random.Random, depth: int) -> object:
    kinds = ["int", "neg", "bytes", "text", "bool", "none"]
    if depth < 15:
        kinds += ["list", "map"]
    k = rnd.choice(kinds)
    if k == "int":
        return rnd.choice([0, 23, 24, 255, 256, 2**16, 2**32, 2**64 - 1, rnd.randrange(2**40)])
    if k == "neg":
        return -rnd.randrange(1, 2**64)
    if k == "bytes":
        return rnd.randbytes(rnd.choice([0, 1, 23, 24, 300]))
    if k == "text":
        return "".join(rnd.choice("aé€😀\0z") for _ in range(rnd.randrange(30)))
    if k == "bool":
        return rnd.random() < 0.5
    if k == "none":
        return None
    if k == "list":
        return [random_item(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {
        f"k{rnd.randrange(50)}" * rnd.randrange(1, 4): random_item(rnd, depth + 1)
        for _ in range(rnd.randrange(4))
    }


def test_cbor_accepts_random_canonical_payloads() -> None:
    rnd = random.Random(4)
    for _ in range(300):
        # Inside a device of another bus: opaque to the schema (R20), so only R15-R19 apply.
        obj = {"v": 1, "devices": [{"bus": "usb", "addr": "1-1", "x": random_item(rnd, 2)}]}
        B.check_payload(cbor2.dumps(obj, canonical=True))


def snapshot(**over: object) -> dict[str, object]:
    snap: dict[str, object] = {
        "src": "live",
        "size": 256,
        "len": 256,
        "data": struct.pack("<HH", 0, 2) + b"\x86\x80",
    }
    snap.update(over)
    return {k: v for k, v in snap.items() if v is not None}


def pci(**over: object) -> bytes:
    dev: dict[str, object] = {"bus": "pci", "addr": "0000:00:02.0", "live": snapshot(),
                              "ids": {"vendor": 0x8086, "device": 0x10D3, "subvendor": 0,
                                      "subdevice": 0, "class": 0x020000, "revision": 0},
                              "path": ["pci0000:00", "0000:00:02.0"], "policy": "skip"}
    dev.update(over)
    dev = {k: v for k, v in dev.items() if v is not None}
    return enc({"v": 1, "devices": [{"bus": "usb", "addr": "1-1"}, dev]})


SCHEMA_BAD = [
    ("top not a map", enc([1]), "payload", "must be a map"),
    ("v missing", enc({"devices": []}), "payload.v", "missing"),
    ("v is 2", enc({"v": 2, "devices": []}), "payload.v", "must be 1"),
    ("v is text", enc({"v": "1", "devices": []}), "payload.v", "unsigned"),
    ("devices missing", enc({"v": 1}), "payload.devices", "missing"),
    ("devices a map", enc({"v": 1, "devices": {}}), "payload.devices", "array"),
    ("device not a map", enc({"v": 1, "devices": [1]}), "payload.devices[0]", "map"),
    ("bus missing", enc({"v": 1, "devices": [{}]}), "payload.devices[0].bus", "missing"),
    ("bus not text", enc({"v": 1, "devices": [{"bus": 1}]}), "payload.devices[0].bus", "text"),
    ("addr missing", enc({"v": 1, "devices": [{"bus": "usb"}]}), "payload.devices[0].addr",
     "missing"),
    ("addr device 0x20", pci(addr="0000:00:20.0"), "payload.devices[1].addr", "DDDD:BB:DD.F"),
    ("addr function 8", pci(addr="0000:00:02.8"), "payload.devices[1].addr", "DDDD:BB:DD.F"),
    ("addr upper case", pci(addr="0000:00:0A.0"), "payload.devices[1].addr", "DDDD:BB:DD.F"),
    ("addr newline", pci(addr="0000:00:02.0\n"), "payload.devices[1].addr", "DDDD:BB:DD.F"),
    ("parent bad", pci(parent="0000:00:1c"), "payload.devices[1].parent", "DDDD:BB:DD.F"),
    ("ids missing", pci(ids=None), "payload.devices[1].ids", "missing"),
    ("vendor too big", pci(ids={"vendor": 0x10000, "device": 0, "subvendor": 0, "subdevice": 0,
                                "class": 0, "revision": 0}), "vendor", "out of range"),
    ("revision missing", pci(ids={"vendor": 1, "device": 0, "subvendor": 0, "subdevice": 0,
                                  "class": 0}), "revision", "missing"),
    ("path missing", pci(path=None), "payload.devices[1].path", "missing"),
    ("path item not text", pci(path=[1]), "payload.devices[1].path", "text"),
    ("classes not array", pci(classes="net"), "payload.devices[1].classes", "array"),
    ("driver not text", pci(driver=1), "payload.devices[1].driver", "text"),
    ("policy missing", pci(policy=None), "payload.devices[1].policy", "missing"),
    ("bar index 7", pci(bars=[[7, 0, 0, 0]]), "payload.devices[1].bars", "index<=6"),
    ("bar of 3", pci(bars=[[0, 0, 0]]), "payload.devices[1].bars", "index<=6"),
    ("sriov num missing", pci(sriov={"total": 4}), "sriov.num", "missing"),
    ("dsn negative", pci(dsn=-1), "payload.devices[1].dsn", "unsigned"),
    ("src missing", pci(live=snapshot(src=None)), "live.src", "missing"),
    ("partial not text", pci(live=snapshot(partial=1)), "live.partial", "text"),
    ("ext section not map", pci(ext={"x": 1}), "payload.devices[1].ext", "maps"),
    ("ext v missing", enc({"v": 1, "devices": [], "ext": {"x": {}}}), "payload.ext.v",
     "missing"),
    ("blacklist bad name", enc({"v": 1, "devices": [], "capture": {"blacklist": ["a b"]}}),
     "payload.capture.blacklist", "module name"),
    ("cmdline not text", enc({"v": 1, "devices": [], "capture": {"cmdline": 1}}),
     "payload.capture.cmdline", "text"),
    ("pci without live", pci(live=None), "payload.devices[1].live", "required"),
    ("live not a map", pci(live=[]), "payload.devices[1].live", "map"),
    ("size 300", pci(live=snapshot(size=300)), "payload.devices[1].live.size", "256 or 4096"),
    ("size missing", pci(live=snapshot(size=None)), "payload.devices[1].live.size", "missing"),
    ("len > size", pci(early=snapshot(len=257)), "payload.devices[1].early.len", "exceeds"),
    ("data text", pci(live=snapshot(data="x")), "payload.devices[1].live.data", "byte string"),
    ("data missing", pci(live=snapshot(data=None)), "payload.devices[1].live.data", "missing"),
    ("run header cut", pci(live=snapshot(data=b"\x00\x00\x01")), "live.data", "cut short"),
    ("run length 0", pci(live=snapshot(data=b"\x00\x00\x00\x00")), "live.data", "length 0"),
    ("run bytes cut", pci(live=snapshot(data=b"\x00\x00\x03\x00ab")), "live.data", "claimed"),
    (
        "run beyond len",
        pci(live=snapshot(len=16, data=b"\x0f\x00\x02\x00ab")),
        "live.data",
        "outside",
    ),
    (
        "runs overlap",
        pci(live=snapshot(data=b"\x00\x00\x02\x00ab\x01\x00\x01\x00c")),
        "live.data",
        "overlaps",
    ),
    (
        "runs out of order",
        pci(live=snapshot(data=b"\x08\x00\x01\x00a\x00\x00\x01\x00b")),
        "live.data",
        "precedes",
    ),
]


@pytest.mark.parametrize("name,payload,path,what", SCHEMA_BAD, ids=[c[0] for c in SCHEMA_BAD])
def test_schema_refused(name: str, payload: bytes, path: str, what: str) -> None:
    with pytest.raises(E.SchemaViolation) as ei:
        B.check_payload(payload)
    msg = str(ei.value)
    assert msg.startswith("schema violation at ") and path in msg and what in msg
    assert ei.value.check == "schema"


def test_schema_accepts_adjacent_runs_other_buses_and_no_early() -> None:
    B.check_payload(pci(live=snapshot(data=b"\x00\x00\x01\x00a\x01\x00\x01\x00b")))
    B.check_payload(pci(live=snapshot(len=0, data=b"")))
    B.check_payload(enc({"v": 1, "devices": [{"bus": "usb", "addr": "1-1", "live": 5,
                                              "ids": {"vendor": "any"}}]}))
    B.check_payload(payload_pci())


# --- error table -----------------------------------------------------------------------------
def test_every_error_code_maps_to_one_exception() -> None:
    codes = {getattr(lib, n): n for n in dir(lib) if n.startswith("HANDOFF_E_")}
    assert sorted(codes) == list(range(-18, 0))
    assert set(B.ERRORS) == set(codes)
    assert len(set(B.ERRORS.values())) == len(B.ERRORS)  # one class per code, one code per class
    for code, cls in B.ERRORS.items():
        assert B.strerror(code) != "unknown error"
        exc = B.error(code, "message")
        assert type(exc) is cls or cls is OSError and isinstance(exc, OSError)
        assert cls is OSError or issubclass(cls, E.HandoffError)
        if issubclass(cls, E.InvalidRecord):
            assert isinstance(exc, E.InvalidRecord) and exc.check == B.CHECKS[code]
    assert B.strerror(1) == "unknown error"


# --- ELF notes -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(9))
def test_wrap_note(n: int) -> None:
    desc = bytes(range(1, n + 1))
    note = B.wrap_note(desc, B.NT_HANDOFF_REPORT if n % 2 else B.NT_HANDOFF_RECORD)
    namesz, descsz, n_type = struct.unpack_from("<III", note)
    assert (namesz, descsz) == (8, n)
    assert n_type == (0x48440002 if n % 2 else 0x48440001)
    assert note[12:20] == b"HANDOFF\0"
    assert note[20 : 20 + n] == desc
    assert len(note) % 4 == 0 and len(note) == 20 + (n + 3) // 4 * 4
    assert not any(note[20 + n :])
    with pytest.raises(E.InvalidArgument):
        B.wrap_note(desc, 4)


def elf_core_with_note(note: bytes) -> bytes:
    """A minimal ELF64 little-endian core file: one PT_NOTE segment holding ``note``."""
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)  # ELFCLASS64, ELFDATA2LSB, EV_CURRENT
    # e_type ET_CORE, e_machine x86-64, e_version, e_entry, e_phoff, e_shoff, e_flags,
    # e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    fields = (4, 62, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, *fields)
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 120, 0, 0, len(note), 0, 4)  # PT_NOTE at offset 120
    return ehdr + phdr + note


def test_wrapped_record_note_parses_with_pyelftools() -> None:
    import io

    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import NoteSegment

    rec = record(payload_small())
    elf = ELFFile(io.BytesIO(elf_core_with_note(B.wrap_note(rec))))
    notes = [
        n for seg in elf.iter_segments() if isinstance(seg, NoteSegment) for n in seg.iter_notes()
    ]
    assert len(notes) == 1
    assert notes[0]["n_name"] == "HANDOFF" and notes[0]["n_type"] == B.NT_HANDOFF_RECORD
    desc = notes[0]["n_desc"]
    desc = desc if isinstance(desc, bytes) else desc.encode("latin-1")
    assert B.check_record(desc, exact=True)["record_size"] == len(rec)


# --- regions ---------------------------------------------------------------------------------
def region_with(records: list[bytes], slot_size: int) -> bytearray:
    buf = bytearray(64 + 2 * slot_size)
    B.region_format_mem(buf, slot_size=slot_size)
    for rec in records:
        B.region_update_mem(buf, rec)
    return buf


def test_region_basics() -> None:
    buf = bytearray(4096)
    B.region_format_mem(buf)
    info = B.region_inspect_mem(buf)
    assert info["slot_size"] == (4096 - 64) // 2 // 8 * 8 and info["newest"] is None
    with pytest.raises(E.NoRecordFound, match="slot 0: bad magic"):
        B.region_read_mem(buf)
    a, b, c = (record(payload_small(), generation=g) for g in (9, 1, 1))
    assert B.region_update_mem(buf, a) == (0, 1)  # generation 1 in an empty region
    assert B.region_update_mem(buf, b) == (1, 2)
    assert B.region_update_mem(buf, c) == (0, 3)
    got = B.region_read_mem(buf)
    assert (got.generation, got.slot, got.offset) == (3, 0, 64)
    assert got.record == B.set_generation(c, 3)
    assert B.region_read(buf) == got
    with pytest.raises(E.NoSpace):
        B.region_update_mem(buf, record(payload_pci()))
    with pytest.raises(E.InvalidArgument):
        B.region_format_mem(bytearray(500))


def test_region_r25_tie_and_corrupt_slot() -> None:
    rec = record(payload_small())
    buf = region_with([rec, rec], 512)
    # Make both slots hold generation 1: slot 0 wins the tie (R25).
    buf[64 + 512 : 64 + 512 + len(rec)] = B.set_generation(rec, 1)
    assert B.region_read_mem(buf).slot == 0
    buf[64 + 200] ^= 1  # corrupt slot 0's payload: slot 1 is the valid one
    got = B.region_read_mem(buf)
    assert got.slot == 1
    assert B.region_update_mem(buf, rec) == (0, 2)  # overwrite the bad slot, not the good one


def test_region_header_refusals() -> None:
    buf = region_with([], 512)
    for off, fmt, value, what in [
        (0, "<B", ord("X"), "bad magic"),
        (8, "<H", 2, "major"),
        (12, "<I", 60, "header_size"),
        (12, "<I", 4104, "header_size"),
        (12, "<I", 128, "region header"),  # a grown header is fine, but slot 0 is inside it
        (16, "<Q", 1 << 60, "region_size"),
        (24, "<Q", 1 << 62, "slot"),
        (24, "<Q", 12, "multiple of 8"),
        (32, "<Q", 8, "region header"),
        (40, "<Q", (1 << 64) - 8, "past region_size"),
        (40, "<Q", 64 + 256, "overlap"),
        (40, "<Q", 64 + 512 + 4, "8-aligned"),
    ]:
        bad = bytearray(buf)
        struct.pack_into(fmt, bad, off, value)
        if off:
            struct.pack_into("<I", bad, 60, crc32c_ref(bytes(bad[:60])))
        with pytest.raises(E.RegionError, match=what):
            B.region_read_mem(bad)
    bad = bytearray(buf)
    bad[20] ^= 1
    with pytest.raises(E.RegionError, match="checksum"):
        B.region_read_mem(bad)


def test_region_accepts_newer_minor_and_grown_header() -> None:
    buf = region_with([], 512)
    struct.pack_into("<HHIQQQQ", buf, 8, 1, 5, 128, len(buf), 480, 128, 608)
    struct.pack_into("<I", buf, 60, crc32c_ref(bytes(buf[:60])))
    info = B.region_inspect_mem(buf)
    assert info["version"] == "1.5" and info["slot_size"] == 480
    B.region_update_mem(buf, record(payload_small()))
    assert B.region_read_mem(buf).offset == 128


TORN_PAYLOADS = [payload_small, payload_medium, payload_pci]


@pytest.mark.parametrize("make", TORN_PAYLOADS, ids=["small", "medium", "pci"])
def test_region_torn_update_at_every_byte(make: object) -> None:
    payload = make()  # type: ignore[operator]
    old, a = record(payload, generation=1), record(payload, generation=1, hostname="A")
    b = record(payload, generation=1, hostname="B")
    slot_size = (len(b) + 7) // 8 * 8 + 64
    base = region_with([old, a], slot_size)  # slot 0: gen 1, slot 1: A as gen 2
    a2, b3 = B.set_generation(a, 2), B.set_generation(b, 3)
    total = len(b) + 128  # R26: 128 zero bytes, [128, end), then the 128-byte header
    seen = set()
    for budget in range(total + 1):
        region = bytearray(base)
        try:
            assert B.region_update_mem(region, b, budget=budget) == (0, 3)
            assert budget == total
        except E.UpdateInterrupted:
            assert budget < total
        got = B.region_read_mem(region)
        if (got.record, got.generation, got.slot) == (a2, 2, 1):
            seen.add("A")
            assert budget < total
        else:
            assert (got.record, got.generation, got.slot) == (b3, 3, 0)
            assert budget >= total - 128  # not before the new header is being written
            seen.add("B")
        # Bytes outside the target slot never change.
        assert region[:64] == base[:64] and region[64 + slot_size :] == base[64 + slot_size :]
    assert seen == {"A", "B"}


def test_region_torn_first_update() -> None:
    rec = record(payload_small())
    base = region_with([], 512)
    for budget in range(len(rec) + 129):
        region = bytearray(base)
        try:
            B.region_update_mem(region, rec, budget=budget)
        except E.UpdateInterrupted:
            pass
        try:
            got = B.region_read_mem(region)
        except E.NoRecordFound:
            assert budget < len(rec) + 128
            continue
        assert got.record == rec and got.generation == 1


def test_region_file_round_trip_unaligned(tmp_path: Path) -> None:
    path = tmp_path / "region.bin"
    offset, size = 3 * 4096 + 123, 3000
    prefix = random.Random(5).randbytes(offset)
    path.write_bytes(prefix)
    B.region_format(str(path), offset=offset, size=size, slot_size=1024)
    assert path.stat().st_size == offset + size  # extended to hold the region
    suffix = b"keep me"
    with open(path, "ab") as f:
        f.write(suffix)
    a, b = record(payload_small(), hostname="A"), record(payload_small(), hostname="B")
    assert B.region_update(path, a, offset=offset, size=size) == (0, 1)
    assert B.region_update(path, b, offset=offset, size=size) == (1, 2)
    got = B.region_read(path, offset=offset, size=size)
    assert (got.record, got.generation, got.slot, got.offset) == (
        B.set_generation(b, 2),
        2,
        1,
        64 + 1024,
    )
    data = path.read_bytes()
    assert data[:offset] == prefix and data[offset + size :] == suffix
    assert B.region_read_mem(data[offset : offset + size]) == got
    assert B.region_read(data, offset=offset, size=size) == got
    info = B.region_inspect(path, offset=offset, size=size)
    assert [s["generation"] for s in info["slots"]] == [1, 2] and info["newest"] == 1
    with pytest.raises(E.UpdateInterrupted):
        B.region_update(path, a, offset=offset, size=size, budget=200)
    assert B.region_read(path, offset=offset, size=size) == got
    with pytest.raises(E.RegionError, match="ends before"):
        B.region_read(path, offset=offset + 100, size=size)
    with pytest.raises(FileNotFoundError) as ei:
        B.region_read(tmp_path / "missing", size=4096)
    assert ei.value.errno == errno.ENOENT


def test_region_file_format_needs_existing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        B.region_format_file(tmp_path / "nope", size=4096)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(E.InvalidArgument):
        B.region_format_file(tmp_path / "fifo", size=4096)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_region_file_fallback_without_mmap() -> None:
    # /dev/full and /dev/null cannot be mapped, so these go through pread()/pwrite().
    with pytest.raises(OSError) as ei:
        B.region_format_file("/dev/full", size=4096)  # pwrite() fails with ENOSPC
    assert type(ei.value) is OSError and ei.value.errno == errno.ENOSPC
    with pytest.raises(E.RegionError, match="bad magic"):
        B.region_read_file("/dev/full", size=4096)  # reads as zeros
    with pytest.raises(E.RegionError, match="ends before"):
        B.region_read_file("/dev/null", size=4096)  # reads as empty
