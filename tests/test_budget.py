"""One budget per input (handoff.budget): no nesting or repetition multiplies the work.

Each test rebuilds one of issue 14's hostile inputs (overlapping note segments, many flattened
chunks, many cpio members over several archives, nested compressed initrds) and checks the
outcome: one line naming the limit, allocation bounded (tracemalloc), and work counted in
units that stay within FACTOR x size + CONSTANT. No timing: the bound is on the work itself.
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib

import pytest
from helpers import recordgen as G

from handoff import budget as BU
from handoff import errors as E
from handoff import sources
from handoff.formats import cpio, kdump
from handoff.sources.blob import BytesBlob

REC = G.make_record()


def peak_of(fn: object) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    err = None
    try:
        fn()  # type: ignore[operator]
    except Exception as e:  # noqa: BLE001 - the test checks the type itself
        err = e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return err, peak


def test_the_budget_is_a_few_times_the_size_plus_a_constant() -> None:
    b = BU.Budget(1000)
    assert b.limit == 8 * 1000 + (64 << 20)
    b.spend(b.limit, "x")
    with pytest.raises(BU.BudgetExceeded, match=r"^reading this 1000-byte input would cost "
                       r"more than its budget of 67116864 units \(8 per input byte \+ 64 MiB; "
                       r"exhausted by cpio members\): not a real dump or initrd$") as ei:
        b.spend(1, "cpio members", 7)
    assert ei.value.offset == 7 and isinstance(ei.value, E.BadContainer)


# --- 3. overlapping note segments --------------------------------------------------------------


def overlapping_notes_core(segments: int = 85, notes: int = 65536) -> bytes:
    """``segments`` PT_NOTE headers, all over one segment of ``notes`` empty notes."""
    seg = struct.pack("<III", 0, 0, 1) * notes
    phoff, phentsize = 64, 56
    data_at = phoff + phentsize * segments
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1, 0,
                       phoff, 0, 0, 64, phentsize, segments, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 0, data_at, 0, 0, len(seg), 0, 4)
    return ehdr + ph * segments + seg


def test_overlapping_note_segments_cost_one_bounded_reading() -> None:
    core = overlapping_notes_core()
    assert 700 << 10 < len(core) < 800 << 10  # the 773 KiB input
    err, peak = peak_of(lambda: sources.read_bytes(core))
    assert isinstance(err, E.BadContainer) and str(err) == "more than 65536 notes"
    assert peak < 96 << 20  # was 1.7 GiB


def test_notes_are_charged_across_segments() -> None:
    from handoff.formats import elfcore

    core = overlapping_notes_core(segments=8, notes=8000)
    b = BU.Budget(len(core), constant=4 << 20)
    with pytest.raises(BU.BudgetExceeded, match=r"exhausted by ELF notes"):
        elfcore.parse(BytesBlob(core), budget=b)
    # One segment alone fits the same budget: the repetition is what is refused.
    one = overlapping_notes_core(segments=1, notes=8000)
    assert len(elfcore.parse(BytesBlob(one), budget=BU.Budget(len(one), constant=4 << 20))
               .notes) == 8000


# --- 5. flattened dumps with many chunks -------------------------------------------------------


def test_many_empty_flattened_chunks_are_linear() -> None:
    n = 1 << 20
    body = struct.pack(">qq", 0, 0) * n
    flat = kdump.FLAT_SIGNATURE + bytes(4) + struct.pack(">qq", 1, 1)
    flat = flat.ljust(kdump.FLAT_HEADER_SIZE, b"\0") + body
    assert len(flat) > 16 << 20
    b = BU.Budget(len(flat))
    view = kdump.FlatView(BytesBlob(flat), b)
    with pytest.raises(E.BadContainer, match=r"^dump bytes \[0, 64\) are not in the flattened "
                       r"stream \(gave up after 1048576 chunks\)$"):
        view.pread(0, 64)
    assert view.scanned == n and view.chunks == []  # empty chunks are not kept
    # Each chunk header is paid once; nothing is re-sorted per round.
    assert b.used == n * BU.CHUNK_COST


def test_many_tiny_flattened_chunks_hit_the_budget() -> None:
    n = 200_000
    chunks = b"".join(struct.pack(">qq", i, 1) + b"x" for i in range(n))
    flat = (kdump.FLAT_SIGNATURE + bytes(4) + struct.pack(">qq", 1, 1)).ljust(
        kdump.FLAT_HEADER_SIZE, b"\0") + chunks
    b = BU.Budget(len(flat), constant=0)
    view = kdump.FlatView(BytesBlob(flat), b)
    with pytest.raises(BU.BudgetExceeded, match=r"exhausted by flattened"):
        for at in range(0, n - 8192, 4096):  # every read walks every chunk scanned so far
            view.pread(at, 8192)


# --- 6. many cpio members over several archives ------------------------------------------------


def empty_members_archive(n: int) -> bytes:
    one = cpio.header("a", 0o100644, 0, 1)
    return one * n + cpio.trailer()


def test_members_across_archives_share_one_budget() -> None:
    from handoff.sources import initrd as I
    from handoff.sources.detect import scan_blob

    # A member costs 112 bytes of output + MEMBER_COST + its name: 1137 units. One archive of
    # 20,000 fits 32 MiB; three, concatenated, do not: the cap is per input, not per archive.
    arc = gzip.compress(empty_members_archive(20_000), compresslevel=9, mtime=0)
    one = scan_blob(BytesBlob(arc), "x", ctx=I.Context(work=BU.Budget(len(arc),
                                                                    constant=32 << 20)))
    assert one.archives[0]["members"] == 20_000
    data = arc * 3
    with pytest.raises(BU.BudgetExceeded, match=rf"^reading this {len(data)}-byte input "):
        scan_blob(BytesBlob(data), "x", ctx=I.Context(work=BU.Budget(len(data),
                                                                    constant=32 << 20)))


def test_a_normal_initrd_is_far_below_its_budget() -> None:
    members = [(f"lib/m{i}.ko", bytes(range(256)) * 40) for i in range(200)]
    w = cpio.Writer()
    for name, d in members:
        w.file(name, d, parents=True)
    w.file("handoff/record.note", G.note(REC), parents=True)
    data = gzip.compress(w.finish(), mtime=0)
    b = BU.Budget(len(data))
    from handoff.sources import initrd as I
    from handoff.sources.detect import scan_blob

    c = scan_blob(BytesBlob(data), "initrd", ctx=I.Context(work=b))
    assert [f.ok for f in c.found] == [True]
    assert b.used < 4 << 20


# --- 7. nested compressed initrds --------------------------------------------------------------


def nested(levels: int, member: int) -> bytes:
    """``levels`` gzip cpio archives, each holding one ``member``-byte member that is the next
    level (followed by zeros), the innermost holding a record."""
    inner = cpio.Writer()
    inner.file("r.note", G.note(REC))
    data = gzip.compress(inner.finish(), mtime=0)
    for i in range(levels):
        w = cpio.Writer()
        w.file(f"level{i}", data + bytes(member - len(data)))
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        data = c.compress(w.finish()) + c.flush()
    return data


def test_nested_compressed_members_are_bounded() -> None:
    data = nested(3, 40 << 20)
    assert len(data) < 1 << 20
    err, peak = peak_of(lambda: sources.read_bytes(data))
    assert isinstance(err, BU.BudgetExceeded), err
    assert "exhausted by" in str(err)
    assert peak < 160 << 20  # was 335 MiB for three 64 MiB levels


def test_shallow_nesting_within_budget_still_finds_the_record() -> None:
    data = nested(2, 64 << 10)
    (f,) = sources.read_bytes(data)
    assert f.ok and f.location.member == "r.note"


def test_concatenated_gzip_archives_are_found_where_they_start() -> None:
    # Found while writing the test above: when zlib reached the end of a gzip stream in a call
    # whose output was limited, the leftover input was counted twice and the next archive was
    # looked for at a negative offset ("junk at offset -7683").
    arc = gzip.compress(empty_members_archive(12_000), compresslevel=9, mtime=0)
    assert len(empty_members_archive(12_000)) > 1 << 20  # more than one output-limited call
    c = sources.scan_bytes(arc * 3)
    assert [(a["offset"], a["members"], a["compressed_size"]) for a in c.archives] == [
        (i * len(arc), 12_000, len(arc)) for i in range(3)]
    assert c.problems == []
