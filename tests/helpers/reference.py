"""The one slow, obvious reference for each algorithm the tests hold the product to.

Written from the spec's text, sharing no code with the C core or the Python reader, so a
test comparing either against these compares it against spec/format.md. spec/vectors/
generate.py uses them too (it is the third, independent writer of the vectors).
"""

from __future__ import annotations

import struct

CRC32C_POLY = 0x82F63B78  # §5: CRC-32/ISCSI, reflected polynomial (0x1EDC6F41 reversed)
CRC32C_CHECK = 0xE3069283  # §5: the check value of b"123456789"


def crc32c_ref(data: bytes, crc: int = 0) -> int:
    """Bit-at-a-time CRC-32C straight from the §5 catalogue definition; chainable."""
    c = crc ^ 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ CRC32C_POLY if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def sparse_runs_ref(config: bytes) -> bytes:
    """§4.1 runs of the non-zero stretches of ``config``: a run ends after 4 zero bytes in a row."""
    out, i, n = b"", 0, len(config)
    while i < n:
        if not config[i]:
            i += 1
            continue
        start = last = i
        while i < n and (config[i] or i - last < 4):
            if config[i]:
                last = i
            i += 1
        out += struct.pack("<HH", start, last + 1 - start) + config[start : last + 1]
        i = last + 1
    return out


# SHA-256: the FIPS 180-2 examples and the spec §5 one, as (message, hex digest).
SHA256_VECTORS = [
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
    (b"123456789", "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"),  # §5
]
SHA256_IDS = ["abc", "empty", "448-bit", "million-a", "spec"]

assert crc32c_ref(b"123456789") == CRC32C_CHECK
