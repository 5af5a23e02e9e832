"""The Python reader of spec §8, on records built without the C core (tests/vectorgen)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

from handoff import errors as E
from handoff import record

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("vecgen", ROOT / "spec" / "vectors" / "generate.py")
assert _spec and _spec.loader
vecgen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vecgen)


def test_crc32c_check_value() -> None:
    assert record.crc32c(b"123456789") == 0xE3069283  # §5


def test_fixed_header_layout_is_pinned() -> None:
    assert record.FIXED.size == 128
    assert struct.calcsize("<8sHHIQQQHHI") == 48  # payload_digest at offset 48 (§2)


def _big_record() -> bytes:
    devs = [vecgen.device(f"0000:0{i}:00.0") for i in range(1, 10)]
    rec = vecgen.record(vecgen.payload(devs))
    assert len(rec) >= 4096
    return rec


def test_every_single_bit_flip_is_detected() -> None:
    """Exhaustive over every bit of a >= 4 KiB record (issue: integrity)."""
    rec = bytearray(_big_record())
    record.parse(bytes(rec), exact=True)
    undetected = []
    for i in range(len(rec)):
        for bit in range(8):
            rec[i] ^= 1 << bit
            try:
                record.parse(rec, exact=True)
                undetected.append((i, bit))
            except E.InvalidRecord:
                pass
            rec[i] ^= 1 << bit
    assert undetected == []


def test_record_fields_decode() -> None:
    r = record.parse(vecgen.record(vecgen.payload([vecgen.device()]), generation=7))
    assert r.version == "1.0"
    assert r.generation == 7
    assert r.kernel_release == "6.1.0-56-amd64"
    assert r.hostname == "vector-host"
    assert r.boot_id == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert r.machine_id == "00112233445566778899aabbccddeeff"
    assert r.devices[0]["addr"] == "0000:01:00.0"


def test_record_inside_a_larger_buffer_at_an_offset() -> None:
    rec = vecgen.record(vecgen.payload())
    buf = b"\xaa" * 37 + rec + b"\xbb" * 11
    assert record.record_size(buf, 37) == len(rec)
    assert record.parse(buf, 37).raw == rec
    with pytest.raises(E.TrailingData):
        record.parse(buf, 37, exact=True)


def test_major_version_error_names_both_versions() -> None:
    rec = vecgen.restamp(vecgen.put(vecgen.record(vecgen.payload()), 8, "<H", 3))
    with pytest.raises(E.UnsupportedVersion, match=r"format 3\.0, this reader reads 1\.x"):
        record.parse(rec)


def test_hostile_sizes_refused_before_allocation() -> None:
    rec = vecgen.restamp(vecgen.put(vecgen.record(vecgen.payload()), 16, "<Q", 2**63))
    with pytest.raises(E.PayloadTooLarge):
        record.parse(rec)
