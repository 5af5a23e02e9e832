"""The C core's record errors, as the binding words them: exact type, message, offset, hint.

Every invalid vector goes through handoff._binding.check_record; the table pins what a user
reads for each, so the one explainer per C error code (_binding._EXPLAIN) cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handoff import _binding as B
from handoff import errors as E

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"

EXPECTED = [
    ('bad-magic', 'BadMagic', 'bad magic 68414e444f464600: not a handoff record (R4)', 0, None),
    ('cbor-bad-utf8', 'BadCBOR', 'bad CBOR at payload offset 5: text string is not valid UTF-8 (R16)', 261, None),
    ('cbor-depth-17', 'BadCBOR', 'bad CBOR at payload offset 21: nesting deeper than 16 (R18)', 277, None),
    ('cbor-duplicate', 'BadCBOR', 'bad CBOR at payload offset 4: duplicate map key (R15)', 260, None),
    ('cbor-float', 'BadCBOR', 'bad CBOR at payload offset 3: float (R16)', 259, None),
    ('cbor-indefinite', 'BadCBOR', 'bad CBOR at payload offset 12: indefinite length (R15)', 268, None),
    ('cbor-int-key', 'BadCBOR', 'bad CBOR at payload offset 1: map key is not a text string (R16)', 257, None),
    ('cbor-length-overrun', 'BadCBOR', 'bad CBOR at payload offset 6: string length exceeds the bytes left (R18)', 262, None),
    ('cbor-non-shortest', 'BadCBOR', 'bad CBOR at payload offset 3: argument not in its shortest form (R15)', 259, None),
    ('cbor-tag', 'BadCBOR', 'bad CBOR at payload offset 3: tag (R16)', 259, None),
    ('cbor-trailing-item', 'BadCBOR', 'bad CBOR at payload offset 13: bytes follow the item (R19)', 269, None),
    ('cbor-undefined', 'BadCBOR', 'bad CBOR at payload offset 6: undefined (R16)', 262, None),
    ('cbor-unsorted', 'BadCBOR', 'bad CBOR at payload offset 10: map keys not in bytewise order (R15)', 266, None),
    ('check-alg-unknown', 'UnsupportedAlgorithm', 'header_check_alg 7 is not supported; this reader implements 1 (CRC-32C) (R23)', 40, 'read the record with a newer handoff'),
    ('digest-alg-unknown', 'UnsupportedAlgorithm', 'payload_digest_alg 9 is not supported; this reader implements 1 (SHA-256) (R23)', 42, 'read the record with a newer handoff'),
    ('digest-ext-flip', 'DigestMismatch', 'payload digest mismatch: header has 397a08d4b6bdf5b4..., bytes [128, 720) give bf1a2bbaf6466581... (R13)', 48, None),
    ('digest-field-flip', 'HeaderChecksumMismatch', 'header checksum mismatch: header_crc is 0x2e426fe1, bytes [0, 124) give 0xd0a50e46 (R12)', 124, None),
    ('digest-payload-flip', 'DigestMismatch', 'payload digest mismatch: header has 397a08d4b6bdf5b4..., bytes [128, 720) give f51731392caf0271... (R13)', 48, None),
    ('empty', 'TruncatedRecord', 'record truncated: 0 bytes, the fixed header needs 128', 0, None),
    ('header-crc-field', 'HeaderChecksumMismatch', 'header checksum mismatch: header_crc is 0xdeadbeef, bytes [0, 124) give 0x2e426fe1 (R12)', 124, None),
    ('header-crc-flip', 'HeaderChecksumMismatch', 'header checksum mismatch: header_crc is 0x2e426fe1, bytes [0, 124) give 0xe76df66c (R12)', 124, None),
    ('header-size-huge', 'BadHeaderSize', 'bad header_size 4294967288: must be a multiple of 8 in [256, 4096] (R8)', 12, None),
    ('header-size-small', 'BadHeaderSize', 'bad header_size 248: must be a multiple of 8 in [256, 4096] (R8)', 12, None),
    ('header-size-unaligned', 'BadHeaderSize', 'bad header_size 260: must be a multiple of 8 in [256, 4096] (R8)', 12, None),
    ('header-truncated', 'TruncatedRecord', 'record truncated: 200 bytes, the header needs 256', 200, None),
    ('major-0', 'UnsupportedVersion', 'record is format 0.0, this reader reads 1.x (R14)', 8, 'use a handoff release that reads format 0.x'),
    ('major-2', 'UnsupportedVersion', 'record is format 2.0, this reader reads 1.x (R14)', 8, 'use a handoff release that reads format 2.x'),
    ('payload-too-large', 'PayloadTooLarge', 'payload_size 1099511627776 exceeds the 16 MiB limit (R9)', 16, None),
    ('payload-truncated', 'TruncatedRecord', 'record truncated: 719 bytes, the record needs 720', 719, None),
    ('schema-addr-device-20', 'SchemaViolation', 'schema violation at payload.devices[0].addr: is not DDDD:BB:DD.F (R20)', 354, None),
    ('schema-addr-function-8', 'SchemaViolation', 'schema violation at payload.devices[0].addr: is not DDDD:BB:DD.F (R20)', 354, None),
    ('schema-addr-newline', 'SchemaViolation', 'schema violation at payload.devices[0].addr: is not DDDD:BB:DD.F (R20)', 354, None),
    ('schema-no-devices', 'SchemaViolation', 'schema violation at payload.devices: missing (R20)', 256, None),
    ('schema-pci-no-ids', 'SchemaViolation', 'schema violation at payload.devices[0].ids: missing (R20)', 269, None),
    ('schema-pci-no-policy', 'SchemaViolation', 'schema violation at payload.devices[0].policy: missing (R20)', 269, None),
    ('schema-snapshot-size', 'SchemaViolation', 'schema violation at payload.devices[0].live.size: must be 256 or 4096 (R20)', 463, None),
    ('schema-v2', 'SchemaViolation', 'schema violation at payload.v: must be 1 (R20)', 259, None),
    ('schema-vendor-range', 'SchemaViolation', 'schema violation at payload.devices[0].ids.vendor: out of range (R20)', 314, None),
    ('sparse-beyond-len', 'SchemaViolation', 'schema violation at payload.devices[0].live.data: run 0: [250, 260) is outside [0, len=256) (R21)', 415, None),
    ('sparse-empty-run', 'SchemaViolation', 'schema violation at payload.devices[0].live.data: run 0: length 0 (R21)', 415, None),
    ('sparse-overlap', 'SchemaViolation', 'schema violation at payload.devices[0].live.data: run 1: offset 2 overlaps or precedes run 0 (R21)', 423, None),
    ('text-after-nul', 'BadTextField', 'bad text field hostname at offset 195: not UTF-8 with NUL padding (R3)', 195, None),
    ('text-not-utf8', 'BadTextField', 'bad text field kernel_release at offset 131: not UTF-8 with NUL padding (R3)', 131, None),
    ('trailing-data', 'TrailingData', '1 byte(s) follow the 269-byte record', 269, None),
    ('truncated-fixed', 'TruncatedRecord', 'record truncated: 100 bytes, the fixed header needs 128', 100, None),
]


def test_the_table_covers_every_invalid_vector() -> None:
    names = sorted(p.stem.removeprefix("invalid-") for p in VECTORS.glob("invalid-*.json"))
    assert names == [row[0] for row in EXPECTED]


@pytest.mark.parametrize("name, kind, message, offset, hint", EXPECTED,
                         ids=[row[0] for row in EXPECTED])
def test_c_error_is_worded_exactly(name: str, kind: str, message: str, offset: int,
                                   hint: str | None) -> None:
    data = bytes.fromhex(json.loads((VECTORS / f"invalid-{name}.json").read_text())["record"])
    with pytest.raises(E.InvalidRecord) as ei:
        B.check_record(data, exact=True)
    e = ei.value
    assert (type(e).__name__, str(e), e.offset, e.hint) == (kind, message, offset, hint)
