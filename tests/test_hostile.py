"""Hostile input: never a traceback, never a large allocation, never a hang.

Every malformed container must end in BadContainer (one line, with an offset) or NoRecordFound;
a corrupt record inside a good container is a Found with an InvalidRecord. Property tests fuzz
every parser with random bytes and with mutations of valid inputs (seeded, reproducible).
"""

from __future__ import annotations

import gzip
import lzma
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import elfwriter as W
from helpers import kdumpwriter as K
from helpers import recordgen as G
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff import errors as E
from handoff import record as R
from handoff import sources
from handoff.formats import cpio, elfcore, kdump
from handoff.sources import context, initrd
from handoff.sources.blob import BytesBlob

REC = G.make_record()
NOTES = W.default_notes() + [G.note(REC)]


def bad(data: bytes, message: str, exc: type[Exception] = E.BadContainer) -> E.HandoffError:
    with pytest.raises(exc, match=message) as ei:
        sources.read_bytes(data)
    e = ei.value
    assert "\n" not in str(e)
    return e  # type: ignore[return-value]


def _core_with_note_seg(seg: bytes) -> bytes:
    head, _ = W.core_header(seg, [W.Load(0, 4096)])
    return head


# -- ELF -----------------------------------------------------------------------------------------


def test_note_claiming_4_gib_descriptor() -> None:
    seg = struct.pack("<III", 8, 0xFFFFFFFF, R.NT_HANDOFF_RECORD) + R.NOTE_NAME + bytes(32)
    e = bad(_core_with_note_seg(seg), r"^note at offset 176 claims a 8-byte name and a "
            r"4294967295-byte descriptor \(descriptor extends past the end of its 52-byte "
            r"segment\)$")
    assert e.offset == 176  # type: ignore[attr-defined]


def test_note_name_past_segment() -> None:
    seg = struct.pack("<III", 0x7FFFFFFF, 0, 1) + b"CORE"
    bad(_core_with_note_seg(seg), r"claims a 2147483647-byte name and a 0-byte descriptor "
        r"\(name extends past")


def test_pt_note_out_of_file() -> None:
    img = bytearray(W.core_bytes(NOTES))
    struct.pack_into("<Q", img, 64 + 8, 1 << 40)  # p_offset of PT_NOTE
    bad(bytes(img), r"^PT_NOTE segment at offset 1099511627776 \(\d+ bytes\) extends past the end "
        r"of the file \(\d+ bytes\)$")


def test_pt_note_total_is_capped_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "core"
    with open(p, "wb") as f:
        W.write_core(f, NOTES, [W.Load(0, 256 << 20)])
    with open(p, "rb") as f:
        img = bytearray(f.read(4096))
    struct.pack_into("<Q", img, 64 + 32, 100 << 20)  # p_filesz: 100 MiB of notes
    with open(p, "r+b") as f:
        f.write(img)
    tracemalloc.start()
    try:
        with pytest.raises(E.BadContainer, match=r"^PT_NOTE segments total more than 64 MiB$"):
            sources.read_path(str(p))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0x38, "<H", 0xFFF0, r"^65520 program headers of 56 bytes at offset 64 extend past"),
        (0x36, "<H", 8, r"^e_phentsize 8 is smaller than a program header \(56 bytes\)$"),
        (0x20, "<Q", 1 << 62, r"program headers of 56 bytes at offset 4611686018427387904 extend"),
        (4, "B", 3, r"^ELF class 3 is neither ELFCLASS32 nor ELFCLASS64$"),
        (5, "B", 9, r"^ELF data encoding 9 is neither LSB nor MSB$"),
    ],
)
def test_elf_header_fields(offset: int, fmt: str, value: int, message: str) -> None:
    img = bytearray(W.core_bytes(NOTES))
    struct.pack_into(fmt, img, offset, value)
    bad(bytes(img), message)


def test_pn_xnum_with_absurd_count() -> None:
    head, _ = W.core_header(b"".join(NOTES), [W.Load(0, 4096)], phnum=0xFFFF)
    img = bytearray(head + struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 1 << 31, 0, 0))
    struct.pack_into("<Q", img, 0x28, len(head))
    struct.pack_into("<H", img, 0x3A, 64)
    bad(bytes(img), r"^e_phnum 2147483648 is absurd \(limit 1048576\)$")


def test_truncated_elf_header() -> None:
    bad(W.core_bytes(NOTES)[:30], r"^ELF header at offset 0 \(64 bytes\) extends past the end of "
        r"the file \(30 bytes\)$")


def test_pt_load_out_of_file_is_never_touched() -> None:
    img = bytearray(W.core_bytes(NOTES))
    struct.pack_into("<Q", img, 64 + 56 + 8, 1 << 50)  # PT_LOAD p_offset far past the end
    assert sources.read_bytes(bytes(img))[0].ok


def test_overlapping_note_segments() -> None:
    notes = b"".join(NOTES)
    head, _ = W.core_header(notes, [W.Load(0, 4096)])
    img = bytearray(head)
    # Turn the PT_LOAD into a second PT_NOTE over the same bytes: two copies, both reported.
    img[64 + 56 : 64 + 112] = img[64 : 64 + 56]
    c = sources.scan_bytes(bytes(img))
    assert len(c.found) == 2 and c.found[0].location.offset == c.found[1].location.offset


def test_data_after_terminating_empty_note() -> None:
    bad(_core_with_note_seg(b"".join(NOTES) + bytes(12) + b"junk"),
        r"^empty note at offset \d+ followed by data$")


# -- kdump-compressed ----------------------------------------------------------------------------


def _kd(**kw: object) -> bytearray:
    return bytearray(K.kdump_bytes(NOTES, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (8, "<i", 0x7FFF0000, r"^kdump header_version 2147418112 is absurd$"),
        (428, "<i", 0, r"^kdump block_size 0 is not a power of two in \[512, 1048576\]$"),
        (428, "<i", 3000, r"^kdump block_size 3000 is not"),
        (428, "<i", 1 << 30, r"^kdump block_size 1073741824 is not"),
        (432, "<i", -5, r"^kdump sub_hdr_size -5 blocks is absurd$"),
        (4096 + 48, "<q", 1 << 50, (r"^kdump note area at offset 1125899906842624 \(\d+ bytes\) "
                                    r"extends past the end of the file")),
        (4096 + 48, "<q", 100, (r"^kdump note area at offset 100 overlaps the main header "
                                r"\(block size 4096\)$")),
        (4096 + 56, "<Q", 1 << 40, r"^kdump note area size 1099511627776 exceeds 67108864 bytes$"),
        (4096 + 32, "<q", -4096, r"^kdump VMCOREINFO at offset -4096 overlaps the main header"),
    ],
)
def test_kdump_header_fields(offset: int, fmt: str, value: int, message: str) -> None:
    img = _kd()
    struct.pack_into(fmt, img, offset, value)
    bad(bytes(img), message)


def test_kdump_note_area_past_end_of_file() -> None:
    img = _kd(sub_hdr_size=1000)[:8192]  # the sub-header area claims 4 MiB; the file is shorter
    struct.pack_into("<Q", img, 4096 + 56, 3 << 20)
    bad(bytes(img), r"^kdump note area at offset 4200 \(3145728 bytes\) extends past the end of "
        r"the file")


def test_kdump_truncated() -> None:
    bad(bytes(_kd()[:100]), r"^kdump header at offset 0 \(464 bytes\) extends past the end of "
        r"the file \(100 bytes\)$")
    bad(bytes(_kd()[:4100]), r"^kdump sub-header at offset 4096 \(104 bytes\) extends past")


def test_kdump_32bit_and_diskdump() -> None:
    bad(K.kdump_bytes(NOTES, machine="i686"),
        r"^kdump-compressed dump of a 32-bit machine \(i686\) is not supported$")
    bad(b"DISKDUMP" + bytes(600), r"old diskdump \(\"DISKDUMP\"\) dump, which handoff does not")


# -- flattened -----------------------------------------------------------------------------------


def test_flattened_chunk_with_huge_size() -> None:
    data = K.FLAT_SIG + struct.pack(">qq", 1, 1)
    data += bytes(4096 - len(data)) + struct.pack(">qq", 0, 1 << 62) + b"KDUMP   "
    bad(data, r"^dump bytes \[0, 464\) are not in the flattened stream \(the file ends inside "
        r"the chunk at offset 4096, which claims 4611686018427387904 bytes\)$")
    data = data[:4096] + struct.pack(">qq", 1 << 62, 1 << 62)
    bad(data, r"^flattened chunk at offset 4096 has offset 4611686018427387904 and size "
        r"4611686018427387904$")


def test_flattened_truncated_copy_keeps_what_is_there() -> None:
    kd = K.kdump_bytes(NOTES)
    flat = K.flatten(kd, chunk=len(kd))  # one big chunk
    assert sources.read_bytes(flat[:4096 + 16 + 9000])[0].ok  # the note area is in the head
    bad(flat[:4096 + 16 + 4000], r"^dump bytes \[4096, 4200\) are not in the flattened stream "
        r"\(the file ends inside the chunk at offset 4096, which claims \d+ bytes\)$")


def test_flattened_negative_offset_and_bad_header() -> None:
    data = K.FLAT_SIG + struct.pack(">qq", 1, 1)
    data += bytes(4096 - len(data)) + struct.pack(">qq", -5, 8) + b"KDUMP   "
    bad(data, r"^flattened chunk at offset 4096 has offset -5 and size 8$")
    bad(K.FLAT_SIG + struct.pack(">qq", 2, 1) + bytes(4096),
        r"^flattened header type 2 is not 1$")
    bad(K.FLAT_SIG + struct.pack(">qq", 1, 9) + bytes(4096),
        r"^flattened format version 9 is not 1 \(this reader reads version 1\)$")


def test_flattened_missing_ranges() -> None:
    kd = K.kdump_bytes(NOTES)
    cut = K.flatten(kd[:4096], end_marker=False)  # the sub-header never arrives
    bad(cut, r"^dump bytes \[4096, 4200\) are not in the flattened stream \(the file ends "
        r"without an end marker\)$")
    bad(K.flatten(b""), r"^the flattened stream holds no data at offset 0$")


def test_flattened_chunk_scan_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kdump, "MAX_FLAT_CHUNKS", 1000)
    kd = K.kdump_bytes(NOTES)
    noise = [(1 << 40 + i % 3, b"x") for i in range(5000)]
    data = K.flatten(kd[:4096]) [:-16] + b"".join(
        struct.pack(">qq", o, len(d)) + d for o, d in noise) + K.flatten(kd)[4096:]
    bad(data, r"^dump bytes \[4096, 4200\) are not in the flattened stream \(gave up after 1000 "
        r"chunks\)$")


# -- initrd / cpio -------------------------------------------------------------------------------


def _arc(*members: tuple[str, bytes]) -> bytes:
    w = cpio.Writer()
    for name, data in members:
        w.file(name, data, parents=True)
    return w.finish()


def test_decompression_bomb_total_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "MAX_DECOMPRESSED", 8 << 20)
    body = cpio.header("zeros", 0o100644, 64 << 20, 1)
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = c.compress(body) + b"".join(c.compress(bytes(1 << 20)) for _ in range(64)) + c.flush()
    assert len(bomb) < 100 << 10
    tracemalloc.start()
    try:
        bad(bomb, r"^<bytes>: gzip archive at offset 0: decompressed output exceeds 8 MiB in total "
            r"\(a decompression bomb\?\)$")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20


def test_decompression_bomb_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    from handoff.sources import decompress

    monkeypatch.setattr(decompress, "RATIO_FLOOR", 1 << 20)
    monkeypatch.setattr(decompress, "MAX_RATIO", 50)
    body = cpio.header("zeros", 0o100644, 16 << 20, 1)
    bomb = lzma.compress(body + bytes(16 << 20))
    bad(bomb, r"^<bytes>: xz archive at offset 0: expands more than 50:1 \(a decompression "
        r"bomb\?\)$")


def test_real_one_gib_bomb_is_stopped() -> None:
    """Default limits: 1.5 GiB of zeros in a ~7 MiB gzip stops at the input's work budget
    (8 units per input byte + 64 MiB, handoff.budget), long before 1 GiB, in bounded memory."""
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = c.compress(cpio.header("z", 0o100644, 0xC0000000, 1)) + c.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor starts afresh, so 16 MiB of zeros always compresses to
    # the same bytes: repeat them instead of compressing 1.5 GiB.
    block = c.compress(bytes(16 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    bomb = head + block * 96 + c.flush()
    assert len(bomb) < 8 << 20  # level 1: zlib inflates it 4x faster than level 9
    tracemalloc.start()
    try:
        e = bad(bomb, rf"^reading this {len(bomb)}-byte input would cost more than its budget "
                rf"of {8 * len(bomb) + (64 << 20)} units \(8 per input byte \+ 64 MiB; exhausted "
                r"by gzip output\): not a real dump or initrd$")
        assert type(e).__name__ == "BudgetExceeded"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20


def test_nesting_is_limited() -> None:
    data = _arc(("r", REC))
    for i in range(6):
        data = gzip.compress(_arc((f"level{i}", data)), mtime=0)
    bad(data, r"^<bytes>: cpio member 'level5': cpio member 'level4': cpio member 'level3': "
        r"cpio member 'level2': containers nested deeper than 3; not examined$")


def test_member_larger_than_the_examination_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(initrd, "MAX_MEMBER", 500)
    data = gzip.compress(_arc(("big", REC)))
    bad(data, r"^<bytes>: cpio member 'big' is 865 bytes, more than the 500-byte examination "
        r"limit; not examined$")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gzip.compress(_arc(("a", b"x")))[:-20],
         r"^<bytes>: gzip archive at offset 0 is truncated$"),
        (gzip.compress(_arc(("a", b"x")))[:10] + b"\xff" * 40,
         r"^<bytes>: gzip archive at offset 0 is corrupt: "),
        (_arc(("a", b"x")) + b"JUNK", (r"^<bytes>: junk at offset \d+ of the initrd \(not a cpio "
                                       r"archive or a known compression: 4a554e4b\)$")),
        (b"\x02\x21\x4c\x18" + bytes(60), (r"^<bytes>: lz4-compressed archive at offset 0: handoff "
                                          r"does not read lz4$")),
        (gzip.compress(b"hello world, not a cpio"),
         r"^<bytes>: junk within the gzip archive at offset 0 \(decompressed offset 0\)$"),
        (gzip.compress(cpio.header("a", 0o100644, 100, 1) + b"x"),
         r"^<bytes>: cpio member 'a' at offset 0: data truncated \(1 of 100 bytes\)$"),
    ],
)
def test_initrd_malformations(data: bytes, message: str) -> None:
    bad(data, message)


def test_zstd_frame_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from handoff.sources import decompress

    monkeypatch.setattr(decompress, "MAX_ZSTD_BLOCKS", 1000)
    # Frame header (no checksum, window descriptor) then empty raw blocks that never end.
    frame = b"\x28\xb5\x2f\xfd" + b"\x00\x58" + b"\x00\x00\x00" * 5000
    bad(frame, r"^<bytes>: zstd stream at offset 0 has more than 1000 frames and blocks$")


def test_sparse_file_of_zeros_is_quick(tmp_path: Path) -> None:
    p = tmp_path / "zeros"
    with open(p, "wb") as f:
        f.truncate(64 << 30)
    with pytest.raises(E.NoRecordFound, match=r"\(not a known container \(starts with zero "
                       r"bytes\)\)$"):
        sources.read_path(str(p))


def test_leading_zeros_before_an_initrd() -> None:
    assert sources.read_bytes(bytes(4096) + _arc(("r", REC)))[0].ok
    bad(bytes(100), r"^no handoff record in <bytes> \(not a known container \(starts with zero "
        r"bytes\)\)$", E.NoRecordFound)


def test_note_file_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "notes"
    with open(p, "wb") as f:
        f.write(G.note(REC))
        f.truncate(65 << 20)
    with pytest.raises(E.BadContainer,
                       match=r"^note file of 68157440 bytes is larger than 64 MiB$"):
        sources.read_path(str(p))


def test_raw_record_claiming_huge_payload_reads_little(tmp_path: Path) -> None:
    hdr = bytearray(REC[:128])
    struct.pack_into("<Q", hdr, 16, (1 << 63))
    hdr = bytearray(G.refresh_crc(bytes(hdr)))
    p = tmp_path / "r"
    with open(p, "wb") as f:
        f.write(hdr)
        f.truncate(8 << 30)  # sparse 8 GiB
    f0 = sources.read_path(str(p))[0]
    assert isinstance(f0.error, E.PayloadTooLarge) and f0.error.offset == 16


# -- property tests ------------------------------------------------------------------------------

SEEDS: dict[str, bytes] = {
    "raw": REC,
    "note": b"".join(NOTES),
    "region": G.region(REC, G.make_record(generation=3), slot_size=2048),
    "initrd": _arc(("n", G.note(REC))) + bytes(8) + gzip.compress(_arc(("r", REC)), mtime=0),
    "elf": W.core_bytes(NOTES + [G.note(b'{"a": 1}', R.NT_HANDOFF_REPORT)]),
    "kdump": K.kdump_bytes(NOTES),
    "flattened": K.flatten(K.kdump_bytes(NOTES), chunk=700),
    "flattened-elf": K.flatten(W.core_bytes(NOTES), chunk=900),
}
MAGICS = [b"", R.MAGIC, b"HDOFREGN", b"\x7fELF\x02\x01\x01", b"KDUMP   ", K.FLAT_SIG,
          b"070701", b"\x1f\x8b\x08", b"\xfd7zXZ\x00", b"BZh9", b"\x28\xb5\x2f\xfd",
          b"\x08\x00\x00\x00"]
FUZZ = settings(derandomize=True, max_examples=150, deadline=5000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALLOWED = (E.BadContainer, E.NoRecordFound, E.EnvironmentProblem)


def _survives(data: bytes) -> None:
    try:
        found = sources.read_bytes(data)
    except ALLOWED as e:
        assert str(e) and "\n" not in str(e)
        return
    for f in found:
        assert (f.record is None) != (f.error is None)
        if f.error is not None:
            assert isinstance(f.error, E.InvalidRecord) and f.error.check


@FUZZ
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=2048))
def test_fuzz_random_bytes_after_each_magic(magic: bytes, tail: bytes) -> None:
    _survives(magic + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "word", "cut", "insert"]))
        i = draw(st.integers(0, max(len(seed) - 1, 0)))
        if op == "flip" and seed:
            seed[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "word" and len(seed) >= i + 8:
            v = draw(st.sampled_from([0, 1, 0xFFFFFFFF, 1 << 31, (1 << 64) - 1, 1 << 40, 4096,
                                      0x7FFFFFFFFFFFFFFF]))
            seed[i : i + 8] = (v & ((1 << 64) - 1)).to_bytes(8, draw(st.sampled_from(
                ["little", "big"])))
        elif op == "cut":
            del seed[i:]
        elif op == "insert":
            seed[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(seed)


@FUZZ
@given(data=mutated())
def test_fuzz_mutations_of_valid_containers(data: bytes) -> None:
    _survives(data)


PARSERS: dict[str, Callable[[bytes], object]] = {
    "iter_notes": lambda b: list(elfcore.iter_notes(b)),
    "elfcore": lambda b: elfcore.parse(BytesBlob(b)),
    "kdump": lambda b: kdump.parse(BytesBlob(b)),
    "flatview": lambda b: kdump.FlatView(BytesBlob(b)).head(64),
    "cpio": lambda b: cpio.list_members(b),
    "region": lambda b: sources.records.parse_region(BytesBlob(b)),  # type: ignore[attr-defined]
}


@FUZZ
@given(name=st.sampled_from(sorted(PARSERS)), data=mutated())
def test_fuzz_each_parser_directly(name: str, data: bytes) -> None:
    try:
        PARSERS[name](data)
    except E.BadContainer as e:
        assert "\n" not in str(e)


def test_seeds_are_valid() -> None:
    for name, data in SEEDS.items():
        assert all(f.ok for f in sources.read_bytes(data)), name
