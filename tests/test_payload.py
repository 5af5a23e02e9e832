"""Sparse config-space runs (spec §4.1) and the payload schema checks (R20, R21)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from helpers.reference import sparse_runs_ref

from handoff import payload as P
from handoff.errors import SchemaViolation

FIX = Path(__file__).resolve().parent / "fixtures"


def samples() -> list[bytes]:
    rng = random.Random(20240)
    out = [p.read_bytes() for p in FIX.rglob("*.bin")]
    assert out, "real config fixtures are missing"
    for _ in range(3000):
        n = rng.choice([0, 1, 3, 4, 5, 7, 8, 63, 64, 256, 4096])
        out.append(bytes(rng.choice([0, 0, 0, 0, 0, 1, 0xFF]) for _ in range(n)))
    return out


def test_encoder_matches_the_reference_and_round_trips() -> None:
    for s in samples():
        enc = P.sparse_encode(s)
        assert enc == sparse_runs_ref(s), s.hex()
        assert P.sparse_decode(enc, len(s)) == s


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x00\x00", "truncated run header"),
        (struct.pack("<HH", 0, 0), "empty run"),
        (struct.pack("<HH", 0, 2) + b"ab" + struct.pack("<HH", 1, 1) + b"c", "overlaps"),
        (struct.pack("<HH", 250, 10) + b"x" * 10, "outside"),
        (struct.pack("<HH", 0, 5) + b"ab", "truncated"),
    ],
)
def test_bad_runs_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(SchemaViolation, match=fragment):
        P.sparse_decode(data, 256)
