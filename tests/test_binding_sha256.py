"""Both SHA-256 block functions of the C core (portable C, x86 SHA extensions) give hashlib's digest.

Every digest the C core takes (record encode and verify, regions) uses "auto", which is the SHA
extensions on CPUs that have them; these tests hold each implementation to the NIST vectors and
to hashlib at every length around the block and padding boundaries.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from helpers.reference import SHA256_IDS
from helpers.reference import SHA256_VECTORS as NIST  # FIPS 180-2 examples and the spec §5 one

from handoff import _binding as B
from handoff import errors as E

IMPLS = [i for i in ("portable", "shani", "auto") if B.sha256_available(i)]


def test_portable_and_auto_always_run() -> None:
    assert B.sha256_available("portable") and B.sha256_available("auto")


@pytest.mark.parametrize("impl", ["portable", "shani", "auto"])
@pytest.mark.parametrize("data, digest", NIST, ids=SHA256_IDS)
def test_nist_vectors(impl: str, data: bytes, digest: str) -> None:
    if not B.sha256_available(impl):
        pytest.skip(f"{impl} does not run on this CPU")
    assert B.sha256(data, impl=impl).hex() == digest


def test_every_length_and_alignment_matches_hashlib() -> None:
    blob = random.Random(9).randbytes(5000)
    for n in list(range(300)) + [511, 512, 513, 4095, 4096, 4097]:
        for start in (0, 1, 7):  # unaligned input
            data = blob[start : start + n]
            want = hashlib.sha256(data).digest()
            for impl in IMPLS:
                assert B.sha256(data, impl=impl) == want, (impl, n, start)


def test_large_random_inputs_match_hashlib() -> None:
    rng = random.Random(10)
    for _ in range(20):
        data = rng.randbytes(rng.randrange(1, 1 << 20))
        want = hashlib.sha256(data).digest()
        assert {B.sha256(data, impl=i) for i in IMPLS} == {want}


def test_incremental_state_uses_auto_and_matches() -> None:
    data = random.Random(11).randbytes(10_000)
    h = B.Sha256()
    for i in range(0, len(data), 333):
        h.update(data[i : i + 333])
    assert h.digest() == hashlib.sha256(data).digest() == B.sha256(data, impl="portable")


def test_unknown_or_unavailable_impl_is_refused() -> None:
    with pytest.raises(E.InvalidArgument):
        B.sha256(b"x", impl="sha3")
    with pytest.raises(E.InvalidArgument):
        B.sha256_available("sha3")
    assert B.lib.handoff_sha256_using(b"x", 1, 99, B.ffi.new("uint8_t[32]")) == B.lib.HANDOFF_E_INVAL
    if not B.sha256_available("shani"):
        with pytest.raises(E.InvalidArgument, match="not available"):
            B.sha256(b"x", impl="shani")
