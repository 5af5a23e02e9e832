"""The shared test helpers hold: the references match their spec check values, and
raises_exactly refuses a subclass."""

from __future__ import annotations

import pytest
from helpers.asserts import raises_exactly
from helpers.reference import CRC32C_CHECK, crc32c_ref, sparse_runs_ref

from handoff.errors import BadCBOR


def test_raises_exactly_refuses_a_subclass() -> None:
    with raises_exactly(ValueError, match="^plain$"):
        raise ValueError("plain")
    with (pytest.raises(AssertionError, match="BadCBOR, not exactly ValueError"),
          raises_exactly(ValueError)):
        raise BadCBOR("an input problem is a ValueError too", check="cbor")


def test_reference_crc_and_runs_match_the_spec() -> None:
    assert crc32c_ref(b"123456789") == CRC32C_CHECK  # §5
    assert crc32c_ref(b"6789", crc32c_ref(b"12345")) == CRC32C_CHECK  # chainable
    # §4.1: a gap of 4 zeros splits a run, a gap of 3 does not
    assert sparse_runs_ref(b"\x01\x00\x00\x00\x02") == b"\x00\x00\x05\x00\x01\x00\x00\x00\x02"
    assert sparse_runs_ref(b"\x01\x00\x00\x00\x00\x02") == (
        b"\x00\x00\x01\x00\x01" + b"\x05\x00\x01\x00\x02")
