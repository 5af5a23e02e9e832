"""The strict CBOR codec: deterministic output, and every R15/R16/R18/R19 refusal."""

from __future__ import annotations

import cbor2
import pytest
from helpers.strategies import values
from hypothesis import given, settings
from hypothesis import strategies as st

from handoff import cbor
from handoff.errors import BadCBOR


@settings(derandomize=True, max_examples=300)
@given(values)
def test_round_trip_and_matches_cbor2_canonical(v: object) -> None:
    enc = cbor.dumps(v)
    assert enc == cbor.dumps_checked(v) == cbor2.dumps(v, canonical=True)
    assert cbor.loads(enc) == v


@settings(derandomize=True, max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    """Random bytes are refused with BadCBOR, or they were the one canonical encoding of what
    they decode to (R15-R19 leave no other way to write a value)."""
    try:
        value = cbor.loads(data)
    except BadCBOR as e:
        assert str(e)
    else:
        assert cbor.dumps(value) == data


@pytest.mark.parametrize(
    "hexdata, fragment",
    [
        ("1801", "shortest form"),
        ("190017", "shortest form"),
        ("1a0000ffff", "shortest form"),
        ("1b00000000ffffffff", "shortest form"),
        ("9f01ff", "indefinite-length"),
        ("c101", "tag 1 is not allowed"),
        ("f93c00", "float"),
        ("f7", "simple value 23"),
        ("a2616101616101", "duplicate map key"),
        ("a2616201616101", "unsorted map key"),
        ("a10101", "not a text string"),
        ("0000", "after the payload item"),
        ("5bffffffffffffffff", "runs past the payload end"),
        ("9bffffffffffffffff", "cannot fit"),
        ("bbffffffffffffffff", "cannot fit"),
        ("81" * 16 + "00", "deeper than 16"),
        ("61ff", "not UTF-8"),
        ("1c", "reserved additional information"),
        ("", "ends inside an item"),
        ("19", "ends inside an item head"),
    ],
)
def test_refusals(hexdata: str, fragment: str) -> None:
    with pytest.raises(BadCBOR) as ei:
        cbor.loads_py(bytes.fromhex(hexdata))
    assert fragment in str(ei.value)
    assert ei.value.check == "cbor"
    # The fast path (the C core's check, then cbor2) refuses the same bytes at the same item
    # (the C core points into a bad string's bytes rather than at its head, and words its
    # messages its own way).
    fast = cbor._fast_loads if cbor._fast_loads is not None else cbor._load_fast_loads()
    if fast is not False:
        with pytest.raises(BadCBOR) as ef:
            fast(bytes.fromhex(hexdata))
        assert ef.value.check == "cbor"
        assert 0 <= (ef.value.offset or 0) - (ei.value.offset or 0) <= 1, (ef.value, ei.value)


def test_depth_16_is_allowed() -> None:
    assert cbor.loads(bytes.fromhex("81" * 15 + "00")) is not None


@pytest.mark.parametrize("bad, message", [
    (1.5, "type float is not allowed in a payload (R16)"),
    ({1: 2}, "map key 1 is not text (R16)"),
    ({"a": {1, 2}}, "type set is not allowed in a payload (R16)"),
    (2**64, "integer 18446744073709551616 does not fit in 64 bits (R16)"),
    (-(2**64) - 1, "integer -18446744073709551617 does not fit in 64 bits (R16)"),
])
def test_encoder_refuses_what_r16_forbids(bad: object, message: str) -> None:
    with pytest.raises(ValueError) as ei:
        cbor.dumps_checked(bad)
    assert type(ei.value) is ValueError and str(ei.value) == message


def test_record_encode_refuses_a_float_in_the_payload() -> None:
    from handoff import record
    from handoff.errors import BadCBOR

    with pytest.raises(BadCBOR, match="R16"):
        record.encode({"v": 1, "devices": [], "x": 1.5}, record.Producer())
