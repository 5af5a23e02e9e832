"""The C core's §4.1 encoder (handoff_sparse_encode) against the Python reference, byte for byte.

payload.sparse_encode_py is the reference; _binding.sparse_encode is what payload.sparse_encode
uses when the C core is built. Both must give the same runs for every input: real config dumps,
random bytes of every density, and the patterns around the 4-byte gap rule and the word-at-a-time
zero scan (lengths and offsets near multiples of 8 and 32).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handoff import _binding as B
from handoff import payload as P

HERE = Path(__file__).resolve().parent
DUMP_DIRS = [HERE / "fixtures", HERE.parents[1] / "shared" / "data"]


def real_configs() -> list[bytes]:
    out = []
    for d in DUMP_DIRS:
        if d.is_dir():
            out += [p.read_bytes() for p in sorted(d.rglob("*.bin"))]
            out += [p.read_bytes() for p in sorted(d.rglob("config")) if p.is_file()]
    assert out, "real config dumps are missing"
    return out


def same(config: bytes) -> bytes:
    """Assert C and Python agree on ``config`` and that the runs decode back; return the runs."""
    want = P.sparse_encode_py(config)
    got = B.sparse_encode(config)
    assert got == want, f"C and Python differ for {config.hex()}"
    assert P.sparse_decode(got, len(config)) == config
    return got


def test_payload_uses_the_c_encoder() -> None:
    P.sparse_encode(b"\x01")
    assert P._encoder is B.sparse_encode


def test_real_dumps_and_their_damaged_copies() -> None:
    rng = random.Random(41)
    for cfg in real_configs():
        same(cfg)
        same(cfg[: rng.randrange(len(cfg) + 1)])  # a partial read
        b = bytearray(cfg)
        for _ in range(20):  # zero or set single bytes: gaps appear, merge and split
            b[rng.randrange(len(b))] = rng.choice([0, 0, 1, 0xFF])
            same(bytes(b))


@pytest.mark.parametrize("density", [0.0, 0.02, 0.1, 0.3, 0.5, 0.8, 0.97, 1.0])
def test_random_configs_of_every_density(density: float) -> None:
    rng = random.Random(int(density * 1000))
    for _ in range(400):
        n = rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 63, 64, 65, 255, 256, 257, 4096])
        same(bytes(rng.randrange(1, 256) if rng.random() < density else 0 for _ in range(n)))


def test_every_gap_length_at_every_alignment() -> None:
    # a non-zero byte, a gap of g zeros, a non-zero byte; shifted through two 32-byte blocks,
    # with leading and trailing zeros of every count up to past a word
    for g in range(12):
        for shift in range(70):
            for tail in (0, 1, 3, 4, 9):
                cfg = bytes(shift) + b"\x5a" + bytes(g) + b"\xa5" + bytes(tail)
                runs = same(cfg)
                assert len(runs) == (4 + 2 + g if g < 4 else 10)


def test_zero_runs_of_3_and_4_alternating() -> None:
    for pattern in ([1, 0, 0, 0] * 64, [1, 0, 0, 0, 0] * 64, [0, 0, 0, 1] * 64,
                    [1, 0, 0, 0, 1, 0, 0, 0, 0] * 30, [0] * 255 + [1], [1] + [0] * 255):
        same(bytes(pattern))


def test_edge_cases_and_the_size_bound() -> None:
    assert same(b"") == b""
    assert same(bytes(4096)) == b""
    assert same(b"\x00\x00\x00") == b""
    full = bytes([0xFF]) * P.CONFIG_MAX
    assert same(full) == struct.pack("<HH", 0, P.CONFIG_MAX) + full
    # worst case of the output bound n + 4: one byte, then runs of 1 after 4-zero gaps
    worst = (b"\x01" + bytes(4)) * 100 + b"\x01"
    assert len(same(worst)) == len(worst) + 4
    last = bytes(P.CONFIG_MAX - 1) + b"\x07"
    assert same(last) == struct.pack("<HH", P.CONFIG_MAX - 1, 1) + b"\x07"


def test_too_large_is_refused_by_both() -> None:
    big = bytes(P.CONFIG_MAX + 1)
    for enc in (P.sparse_encode_py, B.sparse_encode, P.sparse_encode):
        with pytest.raises(ValueError, match="64 KiB"):
            enc(big)


def test_bytes_like_inputs() -> None:
    cfg = b"\x00\x01\x00\x00\x00\x00\x02\x03"
    want = P.sparse_encode_py(cfg)
    assert B.sparse_encode(bytearray(cfg)) == want
    assert B.sparse_encode(memoryview(cfg)) == want
    with pytest.raises(TypeError):
        B.sparse_encode("not bytes")  # type: ignore[arg-type]


def test_c_api_bounds_and_needed_size() -> None:
    ffi, lib = B.ffi, B.lib
    cfg = b"\x01\x02" + bytes(10) + b"\x03"
    want = P.sparse_encode_py(cfg)
    size = ffi.new("size_t *")
    for cap in range(len(want)):  # too small: NOSPACE, the size needed, and no byte past cap
        out = ffi.new("uint8_t[]", len(want) + 8)
        for i in range(len(out)):
            out[i] = 0xEE
        assert lib.handoff_sparse_encode(cfg, len(cfg), out, cap, size) == lib.HANDOFF_E_NOSPACE
        assert size[0] == len(want)
        assert all(out[i] == 0xEE for i in range(cap, len(out)))
    assert lib.handoff_sparse_encode(cfg, len(cfg), ffi.NULL, 0, size) == lib.HANDOFF_E_NOSPACE
    assert size[0] == len(want)
    out = ffi.new("uint8_t[]", len(want))
    assert lib.handoff_sparse_encode(cfg, len(cfg), out, len(want), size) == 0
    assert bytes(ffi.buffer(out, size[0])) == want
    assert lib.handoff_sparse_encode(ffi.NULL, 1, out, 1, size) == lib.HANDOFF_E_INVAL
    assert lib.handoff_sparse_encode(cfg, len(cfg), ffi.NULL, 5, size) == lib.HANDOFF_E_INVAL
    assert lib.handoff_sparse_encode(cfg, len(cfg), out, len(want), ffi.NULL) == lib.HANDOFF_E_INVAL
    assert lib.handoff_sparse_encode(bytes(0x10000), 0x10000, out, 1, size) == lib.HANDOFF_E_INVAL
    assert lib.handoff_sparse_encode(ffi.NULL, 0, ffi.NULL, 0, size) == 0 and size[0] == 0


@settings(derandomize=True, max_examples=600)
@given(st.lists(st.tuples(st.integers(0, 9), st.binary(min_size=1, max_size=12)), max_size=40))
def test_hypothesis_zero_gaps_between_chunks(parts: list[tuple[int, bytes]]) -> None:
    same(b"".join(bytes(gap) + chunk for gap, chunk in parts))


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=600))
def test_hypothesis_any_bytes(cfg: bytes) -> None:
    same(cfg)
