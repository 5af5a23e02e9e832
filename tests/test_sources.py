"""The sources layer: every container round trip, and agreement with independent readers."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from helpers import elfwriter as W
from helpers import kdumpwriter as K
from helpers import recordgen as G

from handoff import errors as E
from handoff import record as R
from handoff import sources
from handoff.formats import cpio, elfcore
from handoff.sources import records as S
from handoff.sources.blob import BytesBlob

REC = G.make_record()
REC2 = G.make_record(G.sample_payload(3), generation=2, hostname="other")
REPORT = b'{"summary": "restored 2 of 2 devices", "devices": [{"addr": "0000:00:03.0"}]}'


def only(found: list[sources.Found]) -> sources.Found:
    assert len(found) == 1
    return found[0]


# -- raw -----------------------------------------------------------------------------------------


def test_raw_record_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "rec.bin"
    p.write_bytes(REC)
    f = only(sources.read_path(str(p)))
    assert (f.kind, f.location.offset, f.error) == ("raw", 0, None)
    assert f.record is not None and f.record.raw == REC
    assert f.record.hostname == "testhost" and f.record.generation == 1
    assert f.container is not None and f.container.describe() == "a raw record"


def test_raw_record_with_trailing_data_is_refused() -> None:
    f = only(sources.read_bytes(REC + b"\x00" * 5))
    assert isinstance(f.error, E.TrailingData)
    assert (f.error.check, f.error.offset) == ("trailing", len(REC))
    assert str(f.error) == "5 byte(s) follow the record"


def test_raw_record_corruption_is_reported_not_swallowed() -> None:
    bad = bytearray(REC)
    bad[-1] ^= 0xFF  # payload byte: digest mismatch
    f = only(sources.read_bytes(bytes(bad)))
    assert f.record is None and isinstance(f.error, E.DigestMismatch)
    assert (f.error.check, f.error.offset) == ("digest", 48)


def test_newer_minor_with_larger_extended_header_is_read() -> None:
    rec = G.make_record(version=(1, 7), ext_extra=bytes(64))
    f = only(sources.read_bytes(rec))
    assert f.record is not None and f.record.version == "1.7" and f.record.header_size == 320


def test_c_encoder_records_are_found_everywhere() -> None:
    rec = G.native_record()
    assert rec == G.make_record()  # the pure-Python test encoder and the C core agree
    for data in (rec, G.note(rec), G.native().wrap_note(rec), W.core_bytes(W.default_notes()
                                                                          + [G.note(rec)])):
        assert only(sources.read_bytes(data)).record.raw == rec


# -- note file -----------------------------------------------------------------------------------


def test_note_file_with_two_records_and_a_report() -> None:
    data = G.note(REC) + G.note(REPORT, R.NT_HANDOFF_REPORT) + G.note(REC2)
    c = sources.scan_bytes(data, "notes")
    assert c.kind == "note" and c.describe() == "a note file with 3 notes"
    assert [f.location.offset for f in c.found] == [20, len(G.note(REC)) + len(G.note(REPORT,
                                                    R.NT_HANDOFF_REPORT)) + 20]
    assert [f.record.generation for f in c.found] == [1, 2]
    assert c.reports[0].data["summary"] == "restored 2 of 2 devices"
    assert [n.type_name for n in c.notes] == ["NT_HANDOFF_RECORD", "NT_HANDOFF_REPORT",
                                              "NT_HANDOFF_RECORD"]


def test_note_descriptor_may_carry_zero_padding_but_not_more() -> None:
    assert only(sources.read_bytes(G.note(REC + bytes(3)))).ok
    extra = G.note(REC + b"\x01\x00\x00\x00")
    f = only(sources.read_bytes(extra))
    assert isinstance(f.error, E.TrailingData) and f.error.offset == 20 + len(REC)


def test_handoff_type_with_other_owner_is_not_a_record() -> None:
    c = sources.scan_bytes(G.note(REC, name=b"CORE\x00"))
    assert c.kind == "note" and c.found == [] and c.notes[0].type_name == hex(
        R.NT_HANDOFF_RECORD)
    with pytest.raises(E.NoRecordFound) as ei:
        sources.records_of(c)
    assert str(ei.value) == "no handoff record in <bytes> (a note file with 1 note)"
    assert ei.value.container is c  # type: ignore[attr-defined]


# -- region --------------------------------------------------------------------------------------


def test_region_newest_valid_slot_wins() -> None:
    c = sources.scan_bytes(G.region(REC, REC2))
    f = only(c.found)
    assert (f.kind, f.location.slot, f.location.offset) == ("region", 1, 4096 + (64 << 10))
    assert f.record.generation == 2
    assert [s.describe() for s in c.slots] == ["valid, generation 1",
                                               "valid, generation 2 (current)"]


def test_region_equal_generations_slot0_wins() -> None:
    f = only(sources.read_bytes(G.region(REC2, REC2)))
    assert f.location.slot == 0


def test_region_torn_slot_keeps_previous_record() -> None:
    torn = bytearray(REC2)
    torn[10] ^= 1  # the header was half written when power went (R26 step 3)
    c = sources.scan_bytes(G.region(REC, bytes(torn)))
    assert only(c.found).location.slot == 0
    assert c.slots[1].status == "invalid" and c.slots[1].error.check == "header_crc"
    assert c.slots[1].error.offset == 4096 + (64 << 10)


def test_region_zeroed_slot_is_empty() -> None:
    zeroed = bytes(128) + REC2[128:]  # R26 step 1 done, step 2 done, step 3 not yet
    c = sources.scan_bytes(G.region(REC, zeroed))
    assert [s.status for s in c.slots] == ["valid", "empty"]


def test_region_without_records() -> None:
    with pytest.raises(E.NoRecordFound, match=r"^no handoff record in <bytes> \(a two-slot "
                       r"region \(slot 0: empty, slot 1: empty\)\)$"):
        sources.read_bytes(G.region(None, None))
    both_bad = sources.read_bytes(G.region(REC[:-1] + b"\x00", REC2[:200] + bytes(10)))
    assert [(f.location.slot, f.error.check) for f in both_bad] == [(0, "digest"),
                                                                    (1, "digest")]


def test_region_from_c_core_is_read_by_python() -> None:
    b = G.native()
    buf = bytearray(128 << 10)
    b.region_format_mem(buf)
    b.region_update_mem(buf, REC)
    b.region_update_mem(buf, G.make_record(generation=2))
    c = sources.scan_bytes(bytes(buf))
    assert only(c.found).record.generation == 2
    assert b.region_read_mem(buf).slot == only(c.found).location.slot


@pytest.mark.parametrize(
    ("mutate", "exc", "message"),
    [
        (lambda h: h, None, None),
        (lambda h: h[:60] + b"\x00\x00\x00\x00", E.RegionError,
         r"^region header checksum mismatch: stored 0x00000000, computed 0x[0-9a-f]{8}$"),
        (lambda h: G.region_header(1 << 40, 4096, 4096, 8192), E.RegionError,
         r"^region_size 1099511627776 is larger than the \d+ bytes present \(truncated region\)$"),
        (lambda h: G.region_header(12288, 4096, 4096, 6144), E.RegionError,
         r"^slots at 4096 and 6144 of 4096 bytes overlap$"),
        (lambda h: G.region_header(12288, 4096, 4100, 8192), E.RegionError,
         r"^slot 0 \[4100, 8196\) is misaligned or outside the region \[64, 12288\)$"),
        (lambda h: G.region_header(12288, 4096, 8192, 12288), E.RegionError,
         r"^slot 1 \[12288, 16384\) is misaligned or outside the region \[64, 12288\)$"),
        (lambda h: G.region_header(12288, 4096, 4096, 8192, version=(2, 0)), E.RegionError,
         r"^region is format 2.0, this reader reads 1.x$"),
    ],
)
def test_region_header_validation(mutate, exc, message) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(G.region(REC, None, slot_size=4096))
    data[:64] = mutate(bytes(data[:64]))
    if exc is None:
        assert only(sources.read_bytes(bytes(data))).ok
        return
    with pytest.raises(exc, match=message):
        sources.read_bytes(bytes(data))


# -- ELF vmcore ----------------------------------------------------------------------------------


def _core(tmp_path: Path, notes: list[bytes], **kw: object) -> Path:
    p = tmp_path / "vmcore"
    with open(p, "wb") as f:
        W.write_core(f, notes, **kw)  # type: ignore[arg-type]
    return p


def test_elf_vmcore_notes_report_and_vmcoreinfo(tmp_path: Path) -> None:
    p = _core(tmp_path, W.default_notes() + [G.note(REC), G.note(REPORT, R.NT_HANDOFF_REPORT)])
    c = sources.scan_path(str(p))
    assert c.kind == "elf-vmcore" and c.describe() == "an ELF vmcore with 5 notes"
    f = only(c.found)
    assert f.kind == "elf-vmcore" and f.location.note == 3 and f.record.raw == REC
    assert f.vmcoreinfo.osrelease == "6.1.0-28-amd64" and f.vmcoreinfo.crashtime == 1700000000
    assert f.reports[0].summary() == "restored 2 of 2 devices; 1 devices"
    assert [(n.owner, n.type_name) for n in c.notes] == [
        ("CORE", "NT_PRSTATUS"), ("CORE", "NT_PRSTATUS"), ("VMCOREINFO", "VMCOREINFO"),
        ("HANDOFF", "NT_HANDOFF_RECORD"), ("HANDOFF", "NT_HANDOFF_REPORT")]
    assert (c.details["pt_load"], c.details["phnum"]) == (1, 2)
    desc_at = f.location.offset
    assert p.read_bytes()[desc_at : desc_at + len(REC)] == REC


def test_elf_vmcore_without_record_describes_itself(tmp_path: Path) -> None:
    p = _core(tmp_path, W.default_notes())
    with pytest.raises(E.NoRecordFound) as ei:
        sources.read_path(str(p))
    assert str(ei.value) == f"no handoff record in {p} (an ELF vmcore with 3 notes)"


def test_elf_non_core_is_refused(tmp_path: Path) -> None:
    p = _core(tmp_path, [G.note(REC)], e_type=2)
    with pytest.raises(E.BadContainer,
                       match=r"is an ELF ET_EXEC file, not a core dump \(vmcore\)$"):
        sources.read_path(str(p))


def test_elf_pn_xnum_extended_phnum() -> None:
    notes = b"".join(W.default_notes() + [G.note(REC)])
    head, _ = W.core_header(notes, [W.Load(0, 4096)], phnum=0xFFFF)
    # Section header 0 carries the real count in sh_info (ELF gABI, PN_XNUM).
    shoff = len(head)
    img = bytearray(head + struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 2, 0, 0))
    struct.pack_into("<Q", img, 0x28, shoff)
    struct.pack_into("<H", img, 0x3A, 64)
    assert only(sources.read_bytes(bytes(img))).ok


def test_big_endian_elf_core_notes() -> None:
    be_note = struct.pack(">III", 8, len(REC), R.NT_HANDOFF_RECORD) + R.NOTE_NAME + REC + bytes(
        -len(REC) % 4)
    ident = b"\x7fELF" + bytes((2, 2, 1, 0)) + bytes(8)
    eh = struct.pack(">16sHHIQQQIHHHHHH", ident, 4, 22, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    ph = struct.pack(">IIQQQQQQ", 4, 0, 120, 0, 0, len(be_note), len(be_note), 0)
    c = sources.scan_bytes(eh + ph + be_note)
    assert c.details["byte_order"] == "big" and only(c.found).ok


def test_elf32_core_notes() -> None:
    """kexec-tools writes ELF32 elfcorehdrs for 32-bit kernels; the note layout is the same."""
    notes = b"".join(W.default_notes() + [G.note(REC)])
    ident = b"\x7fELF" + bytes((1, 1, 1, 0)) + bytes(8)
    eh = struct.pack("<16sHHIIIIIHHHHHH", ident, 4, 3, 1, 0, 52, 0, 0, 52, 32, 2, 0, 0, 0)
    ph = struct.pack("<IIIIIIII", 4, 116, 0, 0, len(notes), len(notes), 0, 0)
    ph += struct.pack("<IIIIIIII", 1, 4096, 0xC0000000, 0, 1 << 20, 1 << 20, 7, 0)
    c = sources.scan_bytes(eh + ph + notes)
    assert (c.details["elf_class"], c.details["machine"], c.details["pt_load"]) == (32, "i386", 1)
    assert only(c.found).record.raw == REC


def test_sparse_64_gib_vmcore_reads_only_headers(tmp_path: Path) -> None:
    p = _core(tmp_path, W.default_notes() + [G.note(REC)], loads=[W.Load(0, 64 << 30)])
    assert p.stat().st_size > 64 << 30 and p.stat().st_blocks * 512 < 1 << 20
    reads: list[tuple[int, int]] = []
    real = os.pread

    def spy(fd: int, n: int, off: int) -> bytes:
        reads.append((off, n))
        return real(fd, n, off)

    try:
        os.pread = spy  # type: ignore[assignment]
        f = only(sources.read_path(str(p)))
    finally:
        os.pread = real  # type: ignore[assignment]
    assert f.ok
    assert sum(n for _, n in reads) < 16 << 10
    assert max(off + n for off, n in reads) < 8192


def test_note_iteration_agrees_with_pyelftools(tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile

    notes = W.default_notes(cpus=3) + [G.note(REC), G.note(REPORT, R.NT_HANDOFF_REPORT),
                                       G.note(b"x", 7, b"ODD\x00"), G.note(b"", 0, b"A\x00")]
    p = _core(tmp_path, notes)
    ours = sources.scan_path(str(p)).notes
    with open(p, "rb") as fh:
        elf = ELFFile(fh)
        theirs = []
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_NOTE":  # never Segment.data() on PT_LOAD (STYLE.md)
                theirs += [(n["n_name"], n["n_descsz"], n["n_offset"], n["n_descdata"])
                           for n in seg.iter_notes()]
    assert [(n.owner, n.size, n.offset) for n in ours] == [t[:3] for t in theirs]
    core = elfcore.parse(BytesBlob(p.read_bytes()))
    assert [n.desc for n in core.notes] == [bytes(t[3]) for t in theirs]


@pytest.mark.parametrize("tool", ["readelf", "eu-readelf"])
def test_real_readelf_lists_our_notes(tmp_path: Path, tool: str) -> None:
    """binutils and elfutils list the same notes (owner, size, type) as our parser."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    p = _core(tmp_path, W.default_notes() + [G.note(REC), G.note(REPORT, R.NT_HANDOFF_REPORT)])
    out = subprocess.run([tool, "-n", str(p)], capture_output=True, text=True, check=True).stdout
    listed = []
    for line in out.splitlines():
        w = line.split()
        if w and w[0] in ("CORE", "VMCOREINFO", "HANDOFF"):
            size = int(w[1], 16) if tool == "readelf" else int(w[1])
            m = re.search(r"\(0x([0-9a-f]+)\)$" if tool == "readelf" else r"<unknown>: (\d+)$",
                          line)
            ntype = (int(m.group(1), 16 if tool == "readelf" else 10) if m else None)
            listed.append((w[0], size, ntype))
    ours = [(n.owner, n.size, n.type if n.owner != "CORE" else None)
            for n in sources.scan_path(str(p)).notes]
    assert listed == ours
    assert ("HANDOFF", len(REC), R.NT_HANDOFF_RECORD) in listed


# -- makedumpfile formats (synthetic writer) -----------------------------------------------------


def test_kdump_compressed_round_trip() -> None:
    data = K.kdump_bytes(W.default_notes() + [G.note(REC), G.note(REPORT, R.NT_HANDOFF_REPORT)])
    c = sources.scan_bytes(data)
    assert c.kind == "kdump-compressed"
    assert c.describe() == "a makedumpfile kdump-compressed dump with 5 notes"
    f = only(c.found)
    assert f.record.raw == REC and f.vmcoreinfo.osrelease == "6.1.0-28-amd64"
    assert data[f.location.offset : f.location.offset + len(REC)] == REC
    assert c.details["header_version"] == 6 and c.details["nodename"] == "testhost"
    assert len(f.reports) == 1


def test_kdump_big_endian_header() -> None:
    be_notes = [struct.pack(">III", 8, len(REC), R.NT_HANDOFF_RECORD) + R.NOTE_NAME + REC
                + bytes(-len(REC) % 4)]
    c = sources.scan_bytes(K.kdump_bytes(be_notes, endian=">", machine="s390x"))
    assert c.details["byte_order"] == "big" and only(c.found).ok


def test_kdump_header_version_3_has_vmcoreinfo_but_no_notes() -> None:
    c = sources.scan_bytes(K.kdump_bytes(W.default_notes() + [G.note(REC)], header_version=3))
    assert c.found == [] and c.notes == [] and c.vmcoreinfo.osrelease == "6.1.0-28-amd64"
    assert c.details["note_area"] == "none (header_version 3 < 4)"
    with pytest.raises(E.NoRecordFound,
                       match=r"\(a makedumpfile kdump-compressed dump with 0 notes\)$"):
        sources.records_of(c)


@pytest.mark.parametrize("chunk", [64, 1000, 4096, 1 << 20])
def test_flattened_round_trip(chunk: int) -> None:
    kd = K.kdump_bytes(W.default_notes() + [G.note(REC)])
    c = sources.scan_bytes(K.flatten(kd, chunk=chunk))
    assert c.kind == "flattened" and c.details["inner"] == "kdump-compressed"
    f = only(c.found)
    assert f.record.raw == REC and f.location.offset == only(sources.read_bytes(kd)).location.offset


def test_flattened_out_of_order_and_overriding_chunks() -> None:
    kd = K.kdump_bytes(W.default_notes() + [G.note(REC)])
    n = -(-len(kd) // 512)
    order = list(range(n))[::-1]
    # A later chunk replaces the note area's record with a corrupt one: later wins.
    at = only(sources.read_bytes(kd)).location.offset
    c = sources.scan_bytes(K.flatten(kd, chunk=512, order=order, extra=[(at + 200, b"\xff")]))
    f = only(c.found)
    assert isinstance(f.error, E.DigestMismatch)


def test_flattened_elf_inside() -> None:
    core = W.core_bytes(W.default_notes() + [G.note(REC)])
    c = sources.scan_bytes(K.flatten(core, chunk=256))
    assert c.details["inner"] == "ELF" and only(c.found).record.raw == REC
    assert c.describe() == "a makedumpfile flattened dump (ELF inside) with 4 notes"


def test_flattened_stops_reading_once_headers_are_covered() -> None:
    kd = K.kdump_bytes(W.default_notes() + [G.note(REC)], max_mapnr=1 << 22)
    huge_tail = [(len(kd) + i * 4096, bytes(4096)) for i in range(2000)]
    c = sources.scan_bytes(K.flatten(kd, chunk=4096, extra=huge_tail))
    assert only(c.found).ok and c.details["chunks_scanned"] < 4096 + 100


# -- real makedumpfile ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """makedumpfile's own outputs from a synthetic ELF vmcore that carries a record."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile not installed")
    d = tmp_path_factory.mktemp("mdf")
    core = d / "vmcore"
    with open(core, "wb") as f:
        W.makedumpfile_core(f, [G.note(REC), G.note(REPORT, R.NT_HANDOFF_REPORT)])
    out = {"elf": core}
    for name, argv in (("kdump", ["-c", "-d", "1"]), ("elf-out", ["-E", "-d", "1"])):
        subprocess.run(["makedumpfile", *argv, str(core), str(d / name)], check=True,
                       capture_output=True, timeout=120)
        out[name] = d / name
    for name, argv in (("flat", ["-F", "-c", "-d", "1"]), ("flat-elf", ["-F", "-E", "-d", "1"])):
        with open(d / name, "wb") as fh:
            subprocess.run(["makedumpfile", *argv, str(core)], check=True, stdout=fh,
                           stderr=subprocess.DEVNULL, timeout=120)
        out[name] = d / name
    return out


@pytest.mark.parametrize(("name", "kind"), [
    ("elf", "elf-vmcore"), ("kdump", "kdump-compressed"), ("elf-out", "elf-vmcore"),
    ("flat", "flattened"), ("flat-elf", "flattened"),
])
def test_record_survives_real_makedumpfile(real_dumps: dict[str, Path], name: str,
                                           kind: str) -> None:
    c = sources.scan_path(str(real_dumps[name]))
    assert c.kind == kind
    f = only(c.found)
    assert f.record.raw == REC
    assert f.vmcoreinfo.osrelease == "6.1.0-28-amd64" and f.vmcoreinfo.crashtime == 1700000000
    assert [r.data["summary"] for r in f.reports] == ["restored 2 of 2 devices"]


def test_our_kdump_writer_matches_makedumpfile_layout(real_dumps: dict[str, Path]) -> None:
    real = real_dumps["kdump"].read_bytes()[:16384]
    notes = sources.scan_path(str(real_dumps["elf"]))
    ours = K.kdump_bytes([G.note(REC)])
    sub_real = struct.unpack_from("<" + K.SUB, real, 4096)
    sub_ours = struct.unpack_from("<" + K.SUB, ours, 4096)
    assert sub_real[7] == sub_ours[7] == 4096 + K.SUB_SIZE  # offset_note right after sub-header
    assert struct.unpack_from("<i", real, 8) == struct.unpack_from("<i", ours, 8) == (6,)
    assert len(notes.notes) == 5


def test_real_dump_head_is_enough(real_dumps: dict[str, Path]) -> None:
    """A head-of-file fixture (as we will keep of a real guest dump) still yields the record."""
    head = real_dumps["kdump"].read_bytes()[: 64 << 10]
    assert only(sources.read_bytes(head)).record.raw == REC


def test_drgn_opens_our_synthetic_dumps(tmp_path: Path) -> None:
    drgn = pytest.importorskip("drgn")
    kd = tmp_path / "k.kdump"
    kd.write_bytes(K.kdump_bytes(W.default_notes() + [G.note(REC)]))
    core = _core(tmp_path, W.default_notes() + [G.note(REC)])
    for p in (kd, core):
        prog = drgn.Program()
        prog.set_core_dump(str(p))
        assert prog.platform.arch == drgn.Architecture.X86_64


# -- initrd --------------------------------------------------------------------------------------


def _archive(*members: tuple[str, bytes]) -> bytes:
    w = cpio.Writer()
    w.directory("bin")
    w.file("bin/sh", b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00" + bytes(200), 0o755)
    for name, data in members:
        w.file(name, data, parents=True)
    return w.finish()


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", "--no-check"], input=data, capture_output=True,
                          check=True).stdout


@pytest.mark.parametrize("method", ["raw", "gzip", "xz", "lzma", "bzip2", "zstd"])
def test_initrd_each_compression(method: str) -> None:
    if method == "zstd" and shutil.which("zstd") is None:
        pytest.skip("zstd not installed")
    a = _archive(("handoff/record.note", G.note(REC)))
    data = {"raw": lambda b: b, "gzip": lambda b: gzip.compress(b, mtime=0), "xz": lzma.compress,
            "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE), "bzip2": bz2.compress,
            "zstd": _zstd}[method](a)
    c = sources.scan_bytes(data)
    f = only(c.found)
    assert f.kind == "initrd" and f.location.member == "handoff/record.note"
    assert f.location.within == "note" and f.record.raw == REC
    assert c.archives[0]["compression"] == (None if method == "raw" else method)


def test_initrd_concatenation_with_padding_and_records_by_content() -> None:
    first = gzip.compress(_archive(), mtime=0)
    raw = _archive(("etc/anything.bin", REC2))  # a raw record under an arbitrary name
    third = lzma.compress(_archive(("x/notes", G.note(REC))) + bytes(512)
                          + _archive(("y/region", G.region(None, REC, slot_size=4096))))
    data = first + cpio.align_for_append(len(first)) + raw + bytes(1024) + third
    c = sources.scan_bytes(data, "initrd.img")
    assert c.problems == []
    got = [(f.location.archive, f.location.member, f.location.within, f.record.generation)
           for f in c.found]
    assert got == [(2, "etc/anything.bin", "raw", 2), (3, "x/notes", "note", 1),
                   (3, "y/region", "region", 1)]
    # The raw archive's member is in the file as is: its offset is a file offset.
    f = c.found[0]
    assert data[f.location.offset : f.location.offset + len(REC2)] == REC2
    assert c.describe() == "an initrd of 3 cpio archives (gzip, uncompressed, xz), 14 members"


def test_initrd_misaligned_raw_archive_is_what_the_kernel_drops() -> None:
    first = gzip.compress(_archive(), mtime=0)
    pad = cpio.align_for_append(len(first)) + b"\x00"  # one byte too many
    data = first + pad + _archive(("r", REC))
    with pytest.raises(E.BadContainer, match=r"uncompressed cpio archive at offset \d+ is not "
                       r"4-byte aligned: the kernel ignores it"):
        sources.read_bytes(data)


def test_initrd_without_record() -> None:
    with pytest.raises(E.NoRecordFound,
                       match=r"^no handoff record in <bytes> \(an initrd of 1 cpio archive "
                             r"\(gzip\), 2 members\)$"):
        sources.read_bytes(gzip.compress(_archive()))


def test_initrd_zstd_without_the_zstd_program(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd not installed (needed to build the input)")
    from handoff.sources import context

    monkeypatch.setattr(context, "find_zstd", lambda: None)
    data = _zstd(_archive(("n", G.note(REC))))
    with pytest.raises(E.EnvironmentProblem) as ei:
        sources.read_bytes(data + _archive())
    assert str(ei.value) == (
        "no handoff record found in <bytes> outside what could not be examined: zstd-compressed "
        "archive at offset 0: the zstd program is not installed, so handoff cannot look inside "
        "it (install zstd)")
    # What follows the zstd frames is still read.
    c = sources.scan_bytes(data + bytes(-len(data) % 4) + _archive(("r", REC)))
    assert only(c.found).record.raw == REC and c.missing_tools == ["zstd"]


def test_initrd_zstd_multi_frame_stream() -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd not installed")
    a = _archive(("n", G.note(REC)))
    half = len(a) // 2
    data = _zstd(a[:half]) + _zstd(a[half:])  # one cpio stream split across two frames
    assert only(sources.read_bytes(data)).ok


def test_initrd_nested_archive_in_member() -> None:
    inner = gzip.compress(_archive(("deep/record", REC)))
    f = only(sources.read_bytes(_archive(("early.cpio.gz", inner))))
    assert f.location.member == "deep/record" and f.ok


def test_c_wrapped_note_in_initrd_from_kexec_builder() -> None:
    b = G.native()
    data = _archive(("handoff/record.note", b.wrap_note(REC)))
    assert only(sources.read_bytes(data)).record.raw == REC


# -- fixtures ------------------------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "containers"
FIXTURE_KINDS = {  # name: (kind, OSRELEASE of the dumped kernel)
    "gnu-cpio-newc.cpio.gz": ("initrd", None),
    "makedumpfile-E-d1.elf": ("elf-vmcore", "6.1.0-28-amd64"),
    "makedumpfile-F-c-d1.flat": ("flattened", "6.1.0-28-amd64"),
    "makedumpfile-c-d1.kdump": ("kdump-compressed", "6.1.0-28-amd64"),
    # Heads of a real QEMU guest's dump (Debian 6.1 kernel, crashed with sysrq-c):
    "qemu-guest-vmcore-head.elf": ("elf-vmcore", "6.1.0-56-amd64"),
    "qemu-guest-makedumpfile-c-d31.kdump.head": ("kdump-compressed", "6.1.0-56-amd64"),
    "qemu-guest-makedumpfile-F-c-d31.flat.head": ("flattened", "6.1.0-56-amd64"),
}


def test_fixture_list_is_complete() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir() if p.suffix != ".py") == sorted(
        FIXTURE_KINDS)
    assert all(p.stat().st_size < 2 << 20 for p in FIXTURES.iterdir())


@pytest.mark.parametrize(("name", "kind", "release"),
                         sorted((k, *v) for k, v in FIXTURE_KINDS.items()))
def test_committed_fixtures(name: str, kind: str, release: str | None) -> None:
    """Small files written by the real tools (fixtures/containers/regen.py), read tool-free."""
    c = sources.scan_path(str(FIXTURES / name))
    assert c.kind == kind
    f = only(c.found)
    assert f.record.raw == REC
    if release is not None:
        assert f.vmcoreinfo.osrelease == release and f.vmcoreinfo.crashtime is not None
        assert [r.data["summary"] for r in f.reports] == ["restored 2 of 2 devices"]
        assert [n.owner for n in c.notes] == ["CORE", "CORE", "VMCOREINFO", "HANDOFF", "HANDOFF"]


def test_real_guest_vmcore_head_agrees_with_readelf() -> None:
    if shutil.which("readelf") is None:
        pytest.skip("readelf not installed")
    p = FIXTURES / "qemu-guest-vmcore-head.elf"
    out = subprocess.run(["readelf", "-n", str(p)], capture_output=True, text=True,
                         check=True).stdout
    sizes = [int(line.split()[1], 16) for line in out.splitlines()
             if line.strip().startswith(("CORE", "VMCOREINFO", "HANDOFF"))]
    assert sizes == [n.size for n in sources.scan_path(str(p)).notes]


def test_records_at_slot_with_garbage_size_are_bounded() -> None:
    # A slot whose header claims a huge payload: only the capped length is read.
    hdr = bytearray(REC[:128])
    struct.pack_into("<Q", hdr, 16, 1 << 40)
    blob = BytesBlob(bytes(hdr) + bytes(1000))
    rec, err = S.parse_at(blob, 0, blob.size)
    assert rec is None and err.check == "header_crc"
