"""Note injection (handoff.capture.inject): nothing of the dump moves, and real tools agree.

Every round trip hashes each PT_LOAD (or, for kdump-compressed, every original byte) before and
after, checks the original notes byte for byte, and asks independent readers (readelf,
eu-readelf, pyelftools, drgn, makedumpfile, crash) what they see. Dumps are synthetic
(tests/helpers/elfwriter.py, tests/helpers/kdumpwriter.py) unless a real one is available: set
HANDOFF_REAL_VMCORE to an ELF vmcore, or let the e2e harness leave one under tests/e2e/cache;
the real-dump cases are skipped, never faked, when there is none.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import dumpcheck as D
from helpers import elfwriter as W
from helpers import kdumpwriter as K
from helpers import recordgen as G
from helpers.vmcore import (
    E2E_RELEASE,
    PHDR,
    complete_core,
    elf_loads,
    no_real_vmcore,
    real_vmcore,
)

from handoff import errors as E
from handoff import record as R
from handoff import sources
from handoff.capture import inject as I
from handoff.capture import layout as L
from handoff.cli import main

ROOT = Path(__file__).resolve().parents[1]
REC = G.make_record(generation=3)
REPORT = json.dumps({"summary": "restored 2 of 2 devices", "devices": []}).encode()
NOTES = [(R.NT_HANDOFF_RECORD, REC), (R.NT_HANDOFF_REPORT, REPORT)]


# -- finding a real dump -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_master(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A private, complete copy of the real vmcore, made once per session."""
    src = real_vmcore()
    if src is None:
        return None
    dst = tmp_path_factory.mktemp("real") / "vmcore"
    for _ in range(3):
        if complete_core(src):
            subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
            if complete_core(dst):
                return dst
        import time

        time.sleep(5)
    no_real_vmcore(f"{src} is incomplete (being rewritten by the e2e harness?)")
    return None


def need_real(master: Path | None, dst: Path) -> Path:
    if master is None:
        no_real_vmcore("no real vmcore (set HANDOFF_REAL_VMCORE or run the e2e harness)")
    assert master is not None
    return copy_dump(master, dst)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


# -- building dumps ------------------------------------------------------------------------------


def synthetic_elf(path: Path, *, ram: int = 8 << 20, seed: int = 7) -> Path:
    """A vmcore makedumpfile accepts (-d 1), with random pages among zero pages."""
    with path.open("wb") as f:
        W.makedumpfile_core(f, ram=ram)
    rnd = random.Random(seed)
    loads = elf_loads(path)
    with path.open("r+b") as f:
        off, size = loads[0][0], loads[0][1]
        for page in range(32, size // 4096, 3):  # past the page tables and utsname
            if rnd.random() < 0.5:
                f.seek(off + page * 4096)
                f.write(rnd.randbytes(4096))
    return path


def kdump_from(elf: Path, out: Path, level: str) -> Path:
    subprocess.run(
        ["makedumpfile", "-c", "-d", level, str(elf), str(out)], check=True, capture_output=True
    )
    return out


def dump_dmesg(dump: Path, out: Path) -> bytes:
    """The kernel log makedumpfile --dump-dmesg finds in ``dump``."""
    p = subprocess.run(["makedumpfile", "--dump-dmesg", str(dump), str(out)],
                       capture_output=True, check=False)
    assert p.returncode == 0, p.stderr
    return out.read_bytes()


def assert_dmesg_survives_injection(dump: Path, tmp: Path) -> Path:
    before = dump_dmesg(dump, tmp / "d1")
    after = injected(dump, tmp)
    assert dump_dmesg(after, tmp / "d2") == before
    return after


def elf_note_phdr(path: Path) -> tuple[int, tuple[int, ...]]:
    """File offset of the PT_NOTE program header, and its fields."""
    data = path.open("rb").read(1 << 16)
    (phoff,) = struct.unpack_from("<Q", data, 32)
    (phnum,) = struct.unpack_from("<H", data, 56)
    for i in range(phnum):
        at = phoff + i * 56
        with path.open("rb") as f:
            f.seek(at)
            p = PHDR.unpack(f.read(56))
        if p[0] == 4:
            return at, p
    raise AssertionError("no PT_NOTE")


sha_range = D.sha_range


def sha_file(path: Path) -> str:
    return sha_range(path, 0, path.stat().st_size)


def assert_same_except(before: Path, after: Path, allowed: list[tuple[int, int]]) -> None:
    """Every byte of ``before`` is in ``after`` at the same offset, outside ``allowed`` ranges."""
    size = before.stat().st_size
    assert after.stat().st_size >= size
    edges = sorted(allowed)
    pos = 0
    for a, n in edges + [(size, 0)]:
        if a > pos:
            assert sha_range(before, pos, a - pos) == sha_range(after, pos, a - pos), (pos, a)
        pos = max(pos, a + n)


def copy_dump(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst


@pytest.fixture(params=["synthetic", "real"])
def elf_dump(request: pytest.FixtureRequest, tmp_path: Path, real_master: Path | None) -> Path:
    if request.param == "synthetic":
        return synthetic_elf(tmp_path / "vmcore")
    return need_real(real_master, tmp_path / "vmcore")


def is_real(p: Path) -> bool:
    return p.stat().st_size > (64 << 20)


# -- the note encoding ---------------------------------------------------------------------------


def test_encode_note_matches_r24() -> None:
    assert I.encode_note(R.NT_HANDOFF_RECORD, REC) == G.note(REC)
    n = I.encode_note(R.NT_HANDOFF_REPORT, b"{}")
    assert n == struct.pack("<III", 8, 2, 0x48440002) + b"HANDOFF\x00" + b"{}\x00\x00"
    assert len(I.encode_note(1, b"abcde")) % 4 == 0


# -- ELF round trip ------------------------------------------------------------------------------


def test_elf_round_trip_grows_the_note_segment_in_place(tmp_path: Path) -> None:
    """/proc/vmcore's layout with room after the notes: they grow there, nothing moves."""
    dump = synthetic_elf(tmp_path / "vmcore")
    orig = copy_dump(dump, tmp_path / "orig")
    loads = elf_loads(orig)
    load_hashes = [sha_range(orig, o, n) for o, n in loads]
    ph_at, ph = elf_note_phdr(orig)
    old_notes = _read(orig, ph[2], ph[5])
    size = orig.stat().st_size
    added = I.encode_note(*NOTES[0]) + I.encode_note(*NOTES[1])
    assert ph[2] + ph[5] + len(added) <= loads[0][0]  # the synthetic dump has the room

    res = I.inject_notes(dump, NOTES)

    assert res.format == "elf" and res.changed and res.method == "in-place"
    assert res.added == ((R.NT_HANDOFF_RECORD, len(REC)), (R.NT_HANDOFF_REPORT, len(REPORT)))
    assert elf_loads(dump) == loads
    assert [sha_range(dump, o, n) for o, n in loads] == load_hashes
    # Outside the PT_NOTE header's p_filesz and p_memsz and the gap the notes grew into, not
    # a byte changed; the file did not grow.
    end = ph[2] + ph[5]
    assert_same_except(orig, dump, [(ph_at + 32, 16), (end, len(added))])
    assert dump.stat().st_size == size and res.appended == 0
    new_at, new = elf_note_phdr(dump)
    assert new_at == ph_at and new[2] == ph[2] and new[5] == new[6] == ph[5] + len(added)
    area = _read(dump, new[2], new[5])
    assert area == old_notes + added  # the original notes, byte for byte, then ours
    D.assert_crash_layout(dump)
    found = sources.read_path(str(dump))
    assert [f.record.raw for f in found if f.record] == [REC]
    assert found[0].reports and found[0].reports[0].data["summary"].startswith("restored")


def test_no_room_is_refused_and_the_dump_is_unchanged(tmp_path: Path) -> None:
    """A /proc/vmcore copy keeps less than a page after its notes: refused, with the way out."""
    notes = b"".join(W.default_notes())
    dump = tmp_path / "vmcore"
    dump.write_bytes(W.core_bytes([notes]))
    _, ph = elf_note_phdr(dump)
    free = elf_loads(dump)[0][0] - ph[2] - ph[5]
    big = G.make_record(G.sample_payload(40), generation=4)
    assert len(I.encode_note(R.NT_HANDOFF_RECORD, big)) > free
    h = sha_file(dump)
    with pytest.raises(I.NoNoteRoom) as ei:
        I.inject_notes(dump, [(R.NT_HANDOFF_RECORD, big)])
    need = len(I.encode_note(R.NT_HANDOFF_RECORD, big))
    assert str(ei.value) == (
        f"cannot add the notes to {dump} in place: the notes need {need} bytes and only "
        f"{free} are free between its note segment and the first PT_LOAD's data (offset "
        f"{elf_loads(dump)[0][0]}); nothing was written"
    )
    assert ei.value.hint == (f"write a copy with room for them (PT_LOAD data unchanged): "
                             f"handoff inject-notes --output NEW {dump} RECORD [REPORT]")
    assert ei.value.exit_code == E.EXIT_INVALID
    assert sha_file(dump) == h


def test_notes_after_the_data_are_refused(tmp_path: Path) -> None:
    """A dump whose notes an older handoff moved to the end: crash cannot read it, and adding
    more there would not help; refused, and --output makes a readable copy."""
    dump = tmp_path / "vmcore"
    dump.write_bytes(W.core_bytes())
    ph_at, ph = elf_note_phdr(dump)
    size = dump.stat().st_size
    with dump.open("r+b") as f:  # the old layout: the note area copied to the end
        f.seek(size)
        f.write(_read(dump, ph[2], ph[5]))
        f.seek(ph_at)
        f.write(PHDR.pack(4, 0, size, 0, 0, ph[5], ph[5], 0))
    h = sha_file(dump)
    with pytest.raises(I.NoNoteRoom, match=(
            rf"its notes \(offset {size}\) lie after the first PT_LOAD's data \(offset "
            rf"\d+\), outside the header area crash reads; nothing was written$")):
        I.inject_notes(dump, NOTES)
    assert sha_file(dump) == h
    out = tmp_path / "fixed"
    res = I.inject_notes_copy(dump, out, NOTES)
    assert res.method == "in-place"
    D.assert_crash_layout(out)
    D.assert_same_loads(dump, out)
    assert [(n.name, n.type) for n in _area(out).notes][-2:] == [
        (b"HANDOFF", R.NT_HANDOFF_RECORD), (b"HANDOFF", R.NT_HANDOFF_REPORT)]


def test_copy_with_room_keeps_every_load_and_note(elf_dump: Path, tmp_path: Path) -> None:
    """inject-notes --output: /proc/vmcore's layout with room; PT_LOAD bytes hash-equal."""
    _, ph = elf_note_phdr(elf_dump)
    old_notes = _read(elf_dump, ph[2], ph[5])
    h = sha_file(elf_dump)
    out = tmp_path / "with-notes"
    res = I.inject_notes_copy(elf_dump, out, NOTES)
    assert sha_file(elf_dump) == h  # the source is only read
    assert res.method == "in-place" and res.path == str(out)
    shift = D.assert_same_loads(elf_dump, out)
    D.assert_crash_layout(out)
    _, new = elf_note_phdr(out)
    assert new[2] == ph[2]  # the notes stay on the page after the program headers
    added = I.encode_note(*NOTES[0]) + I.encode_note(*NOTES[1])
    assert _read(out, new[2], new[5]) == old_notes + added
    first = min(o for o, _ in elf_loads(out))
    room = first - new[2] - new[5]
    assert L.SPARE_ROOM <= room < L.SPARE_ROOM + 2 * 4096  # the spare, rounded to pages
    assert shift == (first - min(o for o, _ in elf_loads(elf_dump)))
    # zero pages stay holes: a few pages more on disk at most (the notes), not the spare room
    assert out.stat().st_blocks * 512 <= elf_dump.stat().st_blocks * 512 + 8 * 4096
    with pytest.raises(E.UsageError, match="already exists"):
        I.inject_notes_copy(elf_dump, out, NOTES)  # never overwritten
    assert out.exists()


def _read(p: Path, off: int, n: int) -> bytes:
    with p.open("rb") as f:
        f.seek(off)
        return f.read(n)


def _area(p: Path) -> I.NoteArea:
    fd = os.open(p, os.O_RDONLY)
    try:
        return I.read_note_area(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def injected(dump: Path, tmp_path: Path) -> Path:
    """``dump`` with NOTES added: in place when it has the room (the synthetic dumps), else
    (a real /proc/vmcore copy) in a copy with room, as `inject-notes --output` makes."""
    try:
        I.inject_notes(dump, NOTES)
        return dump
    except I.NoNoteRoom:
        out = tmp_path / (dump.name + ".notes")
        I.inject_notes_copy(dump, out, NOTES)
        return out


@pytest.mark.parametrize("tool", ["readelf", "eu-readelf"])
def test_readelf_lists_injected_notes(elf_dump: Path, tool: str, tmp_path: Path) -> None:
    if not have(tool):
        pytest.skip(f"{tool} not installed")
    before = subprocess.run(
        [tool, "-n", str(elf_dump)], capture_output=True, text=True, check=False
    )
    dump = injected(elf_dump, tmp_path)
    p = subprocess.run([tool, "-n", str(dump)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr.lower() and "error" not in p.stderr.lower(), p.stderr
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.strip().startswith("HANDOFF")]
    if tool == "readelf":
        got = [(int(r[1], 16), r[-1].strip("()")) for r in rows]
        assert got == [(len(REC), "0x48440001"), (len(REPORT), "0x48440002")]
    else:
        got = [(int(r[1]), r[-1]) for r in rows]
        assert got == [(len(REC), str(0x48440001)), (len(REPORT), str(0x48440002))]
    # and every note listed before is still listed, in the same order
    old = [
        ln for ln in before.stdout.splitlines() if ln.startswith("  ") and not ln.startswith("   ")
    ]
    new = [ln for ln in p.stdout.splitlines() if ln.startswith("  ") and not ln.startswith("   ")]
    assert new[: len(old)] == old


def test_pyelftools_iterates_injected_notes(elf_dump: Path, tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile

    dump = injected(elf_dump, tmp_path)
    with dump.open("rb") as f:
        elf = ELFFile(f)
        notes = [
            n
            for seg in elf.iter_segments()
            if seg["p_type"] == "PT_NOTE"
            for n in seg.iter_notes()  # type: ignore[attr-defined]
        ]
    ours = [n for n in notes if n["n_name"] == "HANDOFF"]
    assert [(n["n_type"], bytes(n["n_descdata"])) for n in ours] == [
        (R.NT_HANDOFF_RECORD, REC),
        (R.NT_HANDOFF_REPORT, REPORT),
    ]
    assert any(n["n_name"] == "VMCOREINFO" for n in notes)


def test_drgn_opens_injected_elf(elf_dump: Path, tmp_path: Path) -> None:
    pytest.importorskip("drgn")
    before = _drgn_view(elf_dump)
    assert _drgn_view(injected(elf_dump, tmp_path)) == before


@pytest.mark.skipif(not D.have_crash(), reason="crash not installed")
def test_crash_reads_injected_elf(elf_dump: Path, tmp_path: Path) -> None:
    """crash --osrelease finds VMCOREINFO in the header area, before and after (issue 13)."""
    before = D.crash_osrelease(elf_dump)
    assert before[:2] == (0, "6.1.0-28-amd64" if not is_real(elf_dump) else before[1])
    assert re.fullmatch(E2E_RELEASE, before[1]), before
    dump = injected(elf_dump, tmp_path)
    after = D.crash_osrelease(dump)
    assert after[:2] == before[:2] and "WARNING" not in after[2], after


@pytest.mark.skipif(not D.have_crash(), reason="crash not installed")
def test_crash_reads_a_refused_dump_unchanged(tmp_path: Path) -> None:
    """makedumpfile -E puts the memory right after the notes: refused, and crash still reads
    it; the --output copy is readable by crash too."""
    if not have("makedumpfile"):
        pytest.skip("makedumpfile not installed")
    src = synthetic_elf(tmp_path / "vmcore")
    dump = tmp_path / "mdf.elf"
    subprocess.run(["makedumpfile", "-E", "-d", "1", str(src), str(dump)], check=True,
                   capture_output=True)
    with pytest.raises(I.NoNoteRoom):
        I.inject_notes(dump, NOTES)
    assert D.crash_osrelease(dump)[:2] == (0, "6.1.0-28-amd64")
    out = tmp_path / "out"
    I.inject_notes_copy(dump, out, NOTES)
    assert D.crash_osrelease(out)[:2] == (0, "6.1.0-28-amd64")
    D.assert_same_loads(dump, out)


def _drgn_view(p: Path) -> dict[str, Any]:
    """VMCOREINFO and a page of memory as drgn reads them, in a child (drgn keeps files open)."""
    code = (
        "import drgn, json, sys, hashlib\n"
        "p = drgn.Program(); p.set_core_dump(sys.argv[1])\n"
        "vmci = p['VMCOREINFO'].string_().decode()\n"
        "mem = {}\n"
        "for a in (0, 0x10000, 0x20000, 0x100000):\n"
        "    try: mem[a] = hashlib.sha256(p.read(a, 4096, True)).hexdigest()\n"
        "    except drgn.FaultError: mem[a] = None\n"
        "print(json.dumps({'vmcoreinfo': vmci, 'release': p['UTS_RELEASE'].string_().decode(),"
        " 'mem': mem}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not have("makedumpfile"), reason="makedumpfile not installed")
def test_makedumpfile_recompresses_injected_elf_and_keeps_the_notes(
    elf_dump: Path, tmp_path: Path
) -> None:
    """makedumpfile reads the grown PT_NOTE and carries our notes into its output."""
    dump = injected(elf_dump, tmp_path)
    out = kdump_from(dump, tmp_path / "out.kdump", "31" if is_real(elf_dump) else "1")
    fd = os.open(out, os.O_RDONLY)
    try:
        area = I.read_note_area(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    assert area.format == "kdump"
    ours = [(n.type, n.desc) for n in area.notes if n.name == b"HANDOFF"]
    assert ours == [(R.NT_HANDOFF_RECORD, REC), (R.NT_HANDOFF_REPORT, REPORT)]


@pytest.mark.skipif(not have("makedumpfile"), reason="makedumpfile not installed")
def test_makedumpfile_dump_dmesg_on_real_dump(tmp_path: Path, real_master: Path | None) -> None:
    dump = need_real(real_master, tmp_path / "vmcore")
    dump = assert_dmesg_survives_injection(dump, tmp_path)
    if have("vmcore-dmesg"):
        a = subprocess.run(["vmcore-dmesg", str(dump)], capture_output=True, check=False)
        assert a.returncode == 0 and a.stdout, a.stderr


# -- kdump-compressed round trip -----------------------------------------------------------------


@pytest.fixture(params=["writer", "makedumpfile", "real"])
def kdump_dump(request: pytest.FixtureRequest, tmp_path: Path, real_master: Path | None) -> Path:
    if request.param == "writer":
        p = tmp_path / "dump.kdump"
        p.write_bytes(K.kdump_bytes())
        return p
    if not have("makedumpfile"):
        pytest.skip("makedumpfile not installed")
    if request.param == "makedumpfile":
        return kdump_from(synthetic_elf(tmp_path / "vmcore"), tmp_path / "dump.kdump", "1")
    if real_master is None:
        no_real_vmcore("no real vmcore (set HANDOFF_REAL_VMCORE or run the e2e harness)")
    assert real_master is not None
    return kdump_from(real_master, tmp_path / "dump.kdump", "31")


def test_kdump_round_trip_moves_nothing(kdump_dump: Path, tmp_path: Path) -> None:
    orig = copy_dump(kdump_dump, tmp_path / "orig")
    head = orig.read_bytes()[:8192]
    (bs,) = struct.unpack_from("<i", head, 428)
    off_note, size_note = struct.unpack_from("<qQ", head, bs + 48)
    old_notes = _read(orig, off_note, size_note)
    size = orig.stat().st_size

    res = I.inject_notes(kdump_dump, NOTES)

    assert res.format == "kdump" and res.note_offset_before == off_note
    # every byte but offset_note/size_note is where it was (page data, bitmaps, VMCOREINFO,
    # eraseinfo, the original notes)
    assert_same_except(orig, kdump_dump, [(bs + 48, 16)])
    new_off, new_size = struct.unpack_from("<qQ", _read(kdump_dump, bs + 48, 16))
    assert new_off == -(-size // 8) * 8
    area = _read(kdump_dump, new_off, new_size)
    assert area[:size_note] == old_notes
    assert area[size_note:] == I.encode_note(*NOTES[0]) + I.encode_note(*NOTES[1])
    assert kdump_dump.stat().st_size - size < len(area) + 8


@pytest.mark.parametrize("version", [4, 5, 6])
def test_kdump_header_versions_with_note_fields(tmp_path: Path, version: int) -> None:
    p = tmp_path / "d.kdump"
    p.write_bytes(K.kdump_bytes(header_version=version))
    orig = copy_dump(p, tmp_path / "orig")
    res = I.inject_notes(p, NOTES)
    assert res.format == "kdump" and res.changed
    assert_same_except(orig, p, [(4096 + 48, 16)])
    fd = os.open(p, os.O_RDONLY)
    area = I.read_note_area(fd, os.fstat(fd).st_size)
    os.close(fd)
    assert area.detail["header_version"] == version
    assert [n.type for n in area.notes if n.name == b"HANDOFF"] == [
        R.NT_HANDOFF_RECORD,
        R.NT_HANDOFF_REPORT,
    ]


def test_handoff_reader_finds_notes_injected_into_kdump(kdump_dump: Path) -> None:
    """handoff inspect must read what handoff capture writes (the note area is at the end)."""
    I.inject_notes(kdump_dump, NOTES)
    found = sources.read_path(str(kdump_dump))
    assert [f.record.raw for f in found if f.record] == [REC]


def test_drgn_opens_injected_kdump(kdump_dump: Path) -> None:
    pytest.importorskip("drgn")
    before = _drgn_view(kdump_dump)
    I.inject_notes(kdump_dump, NOTES)
    assert _drgn_view(kdump_dump) == before


@pytest.mark.skipif(not have("crash"), reason="crash not installed")
def test_crash_reads_injected_kdump_header(kdump_dump: Path) -> None:
    before = subprocess.run(
        ["crash", "--osrelease", str(kdump_dump)], capture_output=True, text=True, check=False
    )
    I.inject_notes(kdump_dump, NOTES)
    after = subprocess.run(
        ["crash", "--osrelease", str(kdump_dump)], capture_output=True, text=True, check=False
    )
    assert (after.returncode, after.stdout) == (before.returncode, before.stdout)
    assert before.returncode == 0 and before.stdout.strip() not in ("", "unknown")


@pytest.mark.skipif(not have("makedumpfile"), reason="makedumpfile not installed")
def test_makedumpfile_dump_dmesg_on_injected_real_kdump(
    tmp_path: Path, real_master: Path | None
) -> None:
    if real_master is None:
        no_real_vmcore("no real vmcore (set HANDOFF_REAL_VMCORE or run the e2e harness)")
    assert real_master is not None
    dump = kdump_from(real_master, tmp_path / "dump.kdump", "31")
    assert_dmesg_survives_injection(dump, tmp_path)


# -- other ELF layouts ----------------------------------------------------------------------------


def other_core(cls: int, endian: str) -> bytes:
    """A small ELF32 or big-endian ELF64 core: header, PT_NOTE (CORE + VMCOREINFO), one PT_LOAD."""
    e = endian
    notes = b"".join(
        I.encode_note(t, d, n, e)
        for t, d, n in ((1, bytes(144), b"CORE\x00"), (0, b"OSRELEASE=6.1.0\n", b"VMCOREINFO\x00"))
    )
    if cls == 32:
        eh, ph = struct.Struct(e + "16sHHIIIIIHHHHHH"), struct.Struct(e + "IIIIIIII")
    else:
        eh, ph = struct.Struct(e + "16sHHIQQQIHHHHHH"), struct.Struct(e + "IIQQQQQQ")
    noff = eh.size + 2 * ph.size
    ident = b"\x7fELF" + bytes((1 if cls == 32 else 2, 1 if e == "<" else 2, 1)) + bytes(9)
    head = eh.pack(
        ident, 4, 3 if cls == 32 else 22, 1, 0, eh.size, 0, 0, eh.size, ph.size, 2, 0, 0, 0
    )
    if cls == 32:  # type, offset, vaddr, paddr, filesz, memsz, flags, align
        phs = ph.pack(4, noff, 0, 0, len(notes), len(notes), 0, 4) + ph.pack(
            1, 4096, 0xC0000000, 0, 8192, 8192, 7, 4096
        )
    else:  # type, flags, offset, vaddr, paddr, filesz, memsz, align
        phs = ph.pack(4, 0, noff, 0, 0, len(notes), len(notes), 4) + ph.pack(
            1, 7, 4096, 0, 0, 8192, 8192, 4096
        )
    body = bytearray(head + phs + notes)
    body += bytes(4096 - len(body)) + b"\x5a" * 8192
    return bytes(body)


@pytest.mark.parametrize("cls,endian", [(32, "<"), (64, ">")], ids=["elf32", "elf64-msb"])
def test_elf32_and_big_endian_cores(tmp_path: Path, cls: int, endian: str) -> None:
    dump = tmp_path / "core"
    dump.write_bytes(other_core(cls, endian))
    orig = dump.read_bytes()
    res = I.inject_notes(dump, NOTES)
    assert res.changed
    after = dump.read_bytes()
    assert after[4096 : 4096 + 8192] == orig[4096 : 4096 + 8192]
    fd = os.open(dump, os.O_RDONLY)
    area = I.read_note_area(fd, os.fstat(fd).st_size)
    os.close(fd)
    assert [(n.name, n.type, n.desc) for n in area.notes][-2:] == [
        (b"HANDOFF", R.NT_HANDOFF_RECORD, REC),
        (b"HANDOFF", R.NT_HANDOFF_REPORT, REPORT),
    ]
    found = sources.read_path(str(dump))
    assert [f.record.raw for f in found if f.record] == [REC]
    if have("readelf"):
        p = subprocess.run(
            ["readelf", "-n", str(dump)], capture_output=True, text=True, check=False
        )
        assert p.returncode == 0 and "warning" not in p.stderr.lower(), p.stderr
        assert p.stdout.count("HANDOFF") == 2 and "0x48440002" in p.stdout


# -- injecting again -----------------------------------------------------------------------------


def test_reinjection_appends_and_keeps_earlier_notes(tmp_path: Path) -> None:
    dump = synthetic_elf(tmp_path / "vmcore")
    I.inject_notes(dump, NOTES)
    rep2 = b'{"summary": "second"}'
    res = I.inject_notes(dump, [(R.NT_HANDOFF_RECORD, REC), (R.NT_HANDOFF_REPORT, rep2)])
    assert res.added == ((R.NT_HANDOFF_REPORT, len(rep2)),)
    assert res.skipped == ((R.NT_HANDOFF_RECORD, len(REC)),)
    fd = os.open(dump, os.O_RDONLY)
    area = I.read_note_area(fd, os.fstat(fd).st_size)
    os.close(fd)
    ours = [(n.type, n.desc) for n in area.notes if n.name == b"HANDOFF"]
    assert ours == [
        (R.NT_HANDOFF_RECORD, REC),
        (R.NT_HANDOFF_REPORT, REPORT),
        (R.NT_HANDOFF_REPORT, rep2),
    ]
    c = sources.scan_path(str(dump))
    assert [r.data["summary"] for r in c.reports][-1] == "second"  # the last is the newest


def test_identical_notes_leave_the_file_untouched(tmp_path: Path) -> None:
    dump = synthetic_elf(tmp_path / "vmcore")
    I.inject_notes(dump, NOTES)
    h = sha_file(dump)
    res = I.inject_notes(dump, NOTES)
    assert not res.changed and res.appended == 0 and len(res.skipped) == 2
    assert sha_file(dump) == h


def test_other_owner_with_same_type_and_bytes_is_not_a_duplicate(tmp_path: Path) -> None:
    dump = tmp_path / "vmcore"
    dump.write_bytes(W.core_bytes(W.default_notes() + [G.note(REC, name=b"OTHER\x00")]))
    res = I.inject_notes(dump, NOTES[:1])
    assert res.added == ((R.NT_HANDOFF_RECORD, len(REC)),)


# -- crash safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["elf", "kdump"])
def test_order_is_notes_fsync_then_header_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "elf":
        dump = synthetic_elf(tmp_path / "vmcore")
        ph_at, ph = elf_note_phdr(dump)
        first, header = ph[2] + ph[5], ph_at  # the gap after the notes; PT_NOTE's header
    else:
        dump = tmp_path / "d.kdump"
        dump.write_bytes(K.kdump_bytes())
        first, header = dump.stat().st_size, 4096 + 48  # the end; offset_note/size_note
    log: list[tuple[str, int]] = []
    real_pwrite, real_fsync = os.pwrite, os.fsync

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        log.append(("write", offset))
        return real_pwrite(fd, data, offset)

    def fsync(fd: int) -> None:
        log.append(("fsync", 0))
        real_fsync(fd)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fsync", fsync)
    I.inject_notes(dump, NOTES)
    assert log == [("write", first), ("fsync", 0), ("write", header), ("fsync", 0)]


@pytest.mark.parametrize("kind", ["elf", "kdump"])
def test_interrupted_before_the_header_write_leaves_the_original_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    dump = synthetic_elf(tmp_path / "vmcore") if kind == "elf" else tmp_path / "d.kdump"
    if kind == "kdump":
        dump.write_bytes(K.kdump_bytes())
    orig = copy_dump(dump, tmp_path / "orig")

    def boom(fd: int) -> None:
        raise KeyboardInterrupt  # the power fails right after the appended bytes hit the disk

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        I.inject_notes(dump, NOTES)
    monkeypatch.undo()
    # Every original byte, header included; only the unreferenced gap after an ELF dump's
    # notes (where they grow) may hold the orphaned new ones.
    gap: list[tuple[int, int]] = []
    if kind == "elf":
        _, ph = elf_note_phdr(orig)
        gap = [(ph[2] + ph[5], elf_loads(orig)[0][0] - ph[2] - ph[5])]
    assert_same_except(orig, dump, gap)
    fd = os.open(dump, os.O_RDONLY)
    area = I.read_note_area(fd, os.fstat(fd).st_size)
    os.close(fd)
    assert not [n for n in area.notes if n.name == b"HANDOFF"]
    # and injecting again works, after the orphaned bytes
    res = I.inject_notes(dump, NOTES)
    assert res.changed


def test_a_locked_dump_is_refused(tmp_path: Path) -> None:
    import fcntl

    dump = synthetic_elf(tmp_path / "vmcore")
    with dump.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(E.EnvironmentProblem, match="locked by another process"):
            I.inject_notes(dump, NOTES)


# -- a large sparse dump -------------------------------------------------------------------------


def test_16_gib_sparse_dump_costs_only_its_notes(tmp_path: Path) -> None:
    """Functional check only; bench/inject_sparse.py measures the time against cp."""
    dump = tmp_path / "vmcore"
    with dump.open("wb") as f:
        W.write_core(f, loads=[W.Load(0x100000, 16 << 30, data=b"\x5a" * 4096)])
    blocks = dump.stat().st_blocks
    res = I.inject_notes(dump, NOTES)
    assert res.appended < 4096 + len(REC) + len(REPORT)
    assert dump.stat().st_blocks - blocks <= 16  # a few KiB more on disk, not GiBs


# -- hostile dumps: refused in one line, file unchanged ------------------------------------------


def _refused(path: Path, match: str, exc: type[Exception] = E.BadContainer) -> None:
    h = sha_file(path)
    size = path.stat().st_size
    with pytest.raises(exc, match=match) as ei:
        I.inject_notes(path, NOTES)
    assert "\n" not in str(ei.value)
    assert path.stat().st_size == size and sha_file(path) == h


def _elf_with(tmp_path: Path, **phdr: int) -> Path:
    """A small core whose PT_NOTE header has some fields replaced."""
    data = bytearray(W.core_bytes())
    at = 64
    p = list(PHDR.unpack_from(data, at))
    names = ["type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align"]
    for k, v in phdr.items():
        p[names.index(k)] = v
    PHDR.pack_into(data, at, *p)
    path = tmp_path / "bad.core"
    path.write_bytes(bytes(data))
    return path


def test_hostile_pt_note_beyond_eof(tmp_path: Path) -> None:
    _refused(
        _elf_with(tmp_path, offset=1 << 40),
        r"^PT_NOTE at offset 1099511627776 \(\d+ bytes\) extends past the end of the file",
    )


def test_hostile_pt_note_absurd_size(tmp_path: Path) -> None:
    _refused(_elf_with(tmp_path, filesz=(1 << 64) - 1), r"^PT_NOTE at offset \d+ .* extends past")


def test_hostile_pt_note_larger_than_readers_accept(tmp_path: Path) -> None:
    p = _elf_with(tmp_path, offset=0, filesz=80 << 20)
    with p.open("r+b") as f:
        f.truncate(96 << 20)
    _refused(p, r"^PT_NOTE segment claims 83886080 bytes, more than the 64 MiB limit$")


def test_hostile_truncated_pt_load(tmp_path: Path) -> None:
    p = tmp_path / "trunc.core"
    p.write_bytes(W.core_bytes()[:-4096])
    _refused(
        p,
        r"^segment 1 \(type 0x1\) at offset \d+ \(65536 bytes\) extends past the end "
        r"of the file \(\d+ bytes\): the dump is truncated or corrupt$",
    )


def test_hostile_note_descriptor_past_segment(tmp_path: Path) -> None:
    seg = struct.pack("<III", 8, 1 << 20, R.NT_HANDOFF_RECORD) + R.NOTE_NAME + bytes(8)
    p = tmp_path / "n.core"
    p.write_bytes(W.core_bytes([seg]))
    _refused(p, r"descriptor extends past the end of its 28-byte segment")


def test_hostile_absurd_phnum(tmp_path: Path) -> None:
    data = bytearray(W.core_bytes())
    struct.pack_into("<H", data, 56, 0xFFF0)
    p = tmp_path / "ph.core"
    p.write_bytes(bytes(data))
    _refused(p, r"^program header table at offset 64 \(\d+ bytes\) extends past the end")


def test_refuses_a_non_core_elf(tmp_path: Path) -> None:
    data = bytearray(W.core_bytes())
    struct.pack_into("<H", data, 16, 2)
    p = tmp_path / "exec"
    p.write_bytes(bytes(data))
    _refused(p, r"^ELF file is not a core dump \(e_type 2, want 4\)$")


def test_refuses_a_core_without_pt_note(tmp_path: Path) -> None:
    _refused(_elf_with(tmp_path, type=0), r"^the ELF core has no PT_NOTE segment to extend$")


def test_refuses_flattened_with_a_hint(tmp_path: Path) -> None:
    p = tmp_path / "flat"
    p.write_bytes(K.flatten(K.kdump_bytes()))
    h = sha_file(p)
    with pytest.raises(E.BadContainer) as ei:
        I.inject_notes(p, NOTES)
    assert "flattened format" in str(ei.value)
    assert ei.value.hint and "makedumpfile -R" in ei.value.hint
    assert sha_file(p) == h


def test_refuses_kdump_header_version_3(tmp_path: Path) -> None:
    p = tmp_path / "v3"
    p.write_bytes(K.kdump_bytes(header_version=3))
    _refused(p, r"^kdump-compressed header version 3 has no note fields")


def test_hostile_kdump_note_offset_beyond_eof(tmp_path: Path) -> None:
    p = tmp_path / "k"
    p.write_bytes(K.kdump_bytes(note_offset=1 << 50))
    _refused(
        p,
        r"^kdump-compressed note area at offset 1125899906842624 \(\d+ bytes\) extends "
        r"past the end of the file",
    )


def test_hostile_kdump_note_area_in_the_main_header(tmp_path: Path) -> None:
    p = tmp_path / "k"
    p.write_bytes(K.kdump_bytes(note_offset=16))
    _refused(p, r"^kdump-compressed note area at offset 16 overlaps the main header")


def test_hostile_kdump_note_size_absurd(tmp_path: Path) -> None:
    data = bytearray(K.kdump_bytes())
    struct.pack_into("<Q", data, 4096 + 56, (1 << 64) - 1)
    p = tmp_path / "k"
    p.write_bytes(bytes(data))
    _refused(
        p,
        r"^kdump-compressed note area at offset \d+ \(18446744073709551615 bytes\) "
        r"extends past the end of the file",
    )


def test_hostile_kdump_block_size(tmp_path: Path) -> None:
    data = bytearray(K.kdump_bytes())
    struct.pack_into("<i", data, 428, 12345)
    p = tmp_path / "k"
    p.write_bytes(bytes(data))
    _refused(p, r"block_size 12345 is not a power of two")


def test_refuses_unknown_files(tmp_path: Path) -> None:
    p = tmp_path / "junk"
    p.write_bytes(b"\x00" * 100)
    _refused(p, r"neither an ELF core nor a kdump-compressed dump")


# -- the command ---------------------------------------------------------------------------------


def test_cli_inject_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = synthetic_elf(tmp_path / "vmcore")
    note_file = tmp_path / "record.note"
    note_file.write_bytes(G.note(REC))
    rep = tmp_path / "report.json"
    rep.write_bytes(REPORT)
    assert main(["inject-notes", str(dump), str(note_file), str(rep), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "inject-notes" and doc["schema_version"] == 1
    assert doc["result"]["added"] == [
        {"type": "0x48440001", "size": len(REC)},
        {"type": "0x48440002", "size": len(REPORT)},
    ]
    assert doc["record"]["generation"] == 3
    assert main(["inject-notes", str(dump), str(note_file)]) == 0
    assert "already in" in capsys.readouterr().out


def test_cli_inject_notes_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = synthetic_elf(tmp_path / "vmcore")
    h = sha_file(dump)
    raw = tmp_path / "rec.bin"
    raw.write_bytes(REC)
    nothing = tmp_path / "empty.note"
    nothing.write_bytes(W.default_notes()[0])
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(REC[:300] + bytes([REC[300] ^ 1]) + REC[301:])
    badjson = tmp_path / "bad.json"
    badjson.write_bytes(b"{not json")
    flat = tmp_path / "flat"
    flat.write_bytes(K.flatten(K.kdump_bytes()))
    assert main(["inject-notes", str(tmp_path / "nope"), str(raw)]) == 2
    assert main(["inject-notes", str(dump), str(tmp_path / "nope")]) == 2
    assert main(["inject-notes", str(dump), str(nothing)]) == 3
    assert main(["inject-notes", str(dump), str(corrupt)]) == 1
    assert main(["inject-notes", str(dump), str(raw), str(badjson)]) == 1
    assert sha_file(dump) == h  # nothing written on any refusal
    err = capsys.readouterr().err
    assert "digest mismatch" in err and "not a UTF-8 JSON document" in err
    assert main(["inject-notes", str(flat), str(raw)]) == 1
    assert "hint: let `handoff inject-notes --reassemble` convert it, or convert it first: " \
        "makedumpfile -R" in capsys.readouterr().err
    assert main(["inject-notes", str(dump), str(raw)]) == 0


# -- truncated dumps, other kernels, and --output (issue 13) -------------------------------------


@pytest.mark.skipif(not have("makedumpfile"), reason="makedumpfile not installed")
def test_truncated_kdump_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = kdump_from(synthetic_elf(tmp_path / "vmcore"), tmp_path / "whole.kdump", "1")
    size = whole.stat().st_size
    cut = tmp_path / "cut.kdump"
    cut.write_bytes(whole.read_bytes()[: size - 1])
    _refused(cut, rf"^the dump is truncated: the page data end at offset {size}, but the file "
                  rf"has only {size - 1} bytes \(1 missing\); notes are not added to an "
                  r"incomplete copy$")
    raw = tmp_path / "rec.bin"
    raw.write_bytes(REC)
    h = sha_file(cut)
    assert main(["inject-notes", str(cut), str(raw)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("handoff: error: the dump is truncated: the page data end at")
    assert err[1] == ("handoff: hint: inject into the complete dump (copy it again, or save it "
                      "again)")
    assert sha_file(cut) == h
    assert I.inject_notes(whole, NOTES).changed  # the whole one is fine


def test_cli_refuses_no_room_and_output_writes_a_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = tmp_path / "vmcore"
    dump.write_bytes(W.core_bytes())
    big = G.make_record(G.sample_payload(40), generation=5)
    raw = tmp_path / "rec.bin"
    raw.write_bytes(big)
    h = sha_file(dump)
    assert main(["inject-notes", str(dump), str(raw)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"handoff: error: cannot add the notes to {dump} in place: ")
    assert err[-1] == (f"handoff: hint: write a copy with room for them (PT_LOAD data "
                       f"unchanged): handoff inject-notes --output NEW {dump} RECORD [REPORT]")
    assert sha_file(dump) == h
    out = tmp_path / "new"
    assert main(["inject-notes", "--output", str(out), str(dump), str(raw)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"added record generation 5 ({len(big)} bytes) to {out}"
    assert lines[1] == f"{out}: a copy of {dump} with room for the notes; {dump} is unchanged"
    assert sha_file(dump) == h
    D.assert_same_loads(dump, out)
    D.assert_crash_layout(out)
    assert [f.record.raw for f in sources.read_path(str(out)) if f.record] == [big]
    # NEW is never overwritten
    assert main(["inject-notes", "--output", str(out), str(dump), str(raw)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_warns_when_the_record_is_of_another_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = synthetic_elf(tmp_path / "vmcore")  # OSRELEASE 6.1.0-28-amd64
    raw = tmp_path / "rec.bin"
    raw.write_bytes(REC)  # made on 6.1.0-test-amd64
    assert main(["inject-notes", str(dump), str(raw), "--json"]) == 0
    out, err = capsys.readouterr()
    want = ("the record (generation 3) was made on kernel 6.1.0-test-amd64, but the dump is of "
            "kernel 6.1.0-28-amd64 (VMCOREINFO OSRELEASE): the record may belong to another "
            "crash")
    assert err == f"handoff: warning: {want}\n"
    doc = json.loads(out)
    assert doc["warnings"] == [want] and doc["dump_osrelease"] == "6.1.0-28-amd64"
    assert doc["result"]["method"] == "in-place"
    same = tmp_path / "same.bin"
    same.write_bytes(G.make_record(generation=4, kernel_release="6.1.0-28-amd64"))
    assert main(["inject-notes", str(dump), str(same)]) == 0
    assert capsys.readouterr().err == ""


MAKEDUMPFILE = shutil.which("makedumpfile")


@pytest.mark.skipif(MAKEDUMPFILE is None, reason="needs makedumpfile (apt install makedumpfile)")
def test_cli_reassembles_a_flattened_dump_then_adds_the_notes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Debian's kdump-tools saves `makedumpfile -F` output: --reassemble turns it into the
    kdump-compressed dump it streams (real makedumpfile -R), under the same name and mode,
    then adds the notes; the dump's own bytes are makedumpfile -R's but for the note pointer."""
    image = K.kdump_bytes()
    flat = tmp_path / "dump.202612061500"
    flat.write_bytes(K.flatten(image, chunk=1000))
    flat.chmod(0o640)
    note_file = tmp_path / "record.note"
    note_file.write_bytes(G.note(REC))
    rep = tmp_path / "report.json"
    rep.write_bytes(REPORT)
    assert main(["inject-notes", "--reassemble", str(flat), str(note_file), str(rep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"reassembled {flat} from makedumpfile's flattened format (kdump)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dump.202612061500", "record.note", "report.json"]  # no leftover, no second dump
    assert flat.stat().st_mode & 0o777 == 0o640
    data = flat.read_bytes()
    assert data[:8] == b"KDUMP   "
    # the sub-header's offset_note/size_note moved to the appended area; nothing else did
    changed = [i for i in range(len(image)) if data[i] != image[i]]
    assert 0 < len(changed) <= 16 and changed[-1] - changed[0] < 16
    found = sources.read_path(str(flat))
    assert [f.record.raw for f in found if f.record] == [REC]
    # without --reassemble a kdump-compressed DUMP is taken as it is; the notes are there
    assert main(["inject-notes", "--reassemble", str(flat), str(note_file), str(rep)]) == 0
    assert "already in" in capsys.readouterr().out


@pytest.mark.skipif(MAKEDUMPFILE is None, reason="needs makedumpfile (apt install makedumpfile)")
def test_cli_reassemble_refuses_a_stream_without_its_end(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flat = tmp_path / "dump.1"
    flat.write_bytes(K.flatten(K.kdump_bytes())[:-16])  # makedumpfile -R would wait forever
    h = sha_file(flat)
    raw = tmp_path / "rec.bin"
    raw.write_bytes(REC)
    assert main(["inject-notes", "--reassemble", str(flat), str(raw)]) == 1
    err = capsys.readouterr().err
    assert f"{flat} does not end with the flattened format's end marker" in err
    assert sha_file(flat) == h
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.1", "rec.bin"]


def test_cli_reassemble_without_makedumpfile_is_an_environment_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    flat = tmp_path / "dump.1"
    flat.write_bytes(K.flatten(K.kdump_bytes()))
    h = sha_file(flat)
    raw = tmp_path / "rec.bin"
    raw.write_bytes(REC)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["inject-notes", "--reassemble", str(flat), str(raw)]) == 4
    assert "makedumpfile is not installed" in capsys.readouterr().err
    assert sha_file(flat) == h
    # --reassemble replaces DUMP, --output writes a copy: not both
    assert main(["inject-notes", "--reassemble", "-o", str(tmp_path / "new"), str(flat),
                 str(raw)]) == 2
    assert "--reassemble replaces DUMP and --output writes a copy: give one" in \
        capsys.readouterr().err
    assert sha_file(flat) == h and not (tmp_path / "new").exists()
