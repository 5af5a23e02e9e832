"""Note injection (handoff.capture.inject): nothing of the dump moves, and real tools agree.

Every round trip hashes each PT_LOAD (or, for kdump-compressed, every original byte) before and
after, checks the original notes byte for byte, and asks independent readers (readelf,
eu-readelf, pyelftools, drgn, makedumpfile, crash) what they see. Dumps are synthetic
(tests/helpers/elfwriter.py, tests/helpers/kdumpwriter.py) unless a real one is available: set
HANDOFF_REAL_VMCORE to an ELF vmcore, or let the e2e harness leave one under tests/e2e/cache;
the real-dump cases are skipped, never faked, when there is none.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import elfwriter as W
from helpers import kdumpwriter as K
from helpers import recordgen as G
from helpers.vmcore import PHDR, complete_core, elf_loads, no_real_vmcore, real_vmcore

from handoff import errors as E
from handoff import record as R
from handoff import sources
from handoff.capture import inject as I
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


def assert_dmesg_survives_injection(dump: Path, tmp: Path) -> None:
    before = dump_dmesg(dump, tmp / "d1")
    I.inject_notes(dump, NOTES)
    assert dump_dmesg(dump, tmp / "d2") == before


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


def sha_range(path: Path, off: int, size: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(off)
        left = size
        while left:
            b = f.read(min(left, 1 << 20))
            assert b, "short read"
            h.update(b)
            left -= len(b)
    return h.hexdigest()


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


def test_elf_round_trip_moves_nothing(elf_dump: Path, tmp_path: Path) -> None:
    orig = copy_dump(elf_dump, tmp_path / "orig")
    loads = elf_loads(orig)
    load_hashes = [sha_range(orig, o, n) for o, n in loads]
    ph_at, ph = elf_note_phdr(orig)
    old_notes = (
        orig.open("rb").read()[ph[2] : ph[2] + ph[5]]
        if not is_real(orig)
        else _read(orig, ph[2], ph[5])
    )
    size = orig.stat().st_size

    res = I.inject_notes(elf_dump, NOTES)

    assert res.format == "elf" and res.changed
    assert res.added == ((R.NT_HANDOFF_RECORD, len(REC)), (R.NT_HANDOFF_REPORT, len(REPORT)))
    assert elf_loads(elf_dump) == loads
    assert [sha_range(elf_dump, o, n) for o, n in loads] == load_hashes
    # Outside the PT_NOTE header's p_offset, p_filesz and p_memsz, not a byte changed.
    assert_same_except(orig, elf_dump, [(ph_at + 8, 8), (ph_at + 32, 16)])
    new_at, new = elf_note_phdr(elf_dump)
    assert new_at == ph_at
    assert new[2] == -(-size // 8) * 8 and new[2] >= size  # appended, 8-byte aligned
    assert new[5] == new[6]  # p_memsz follows p_filesz, as the kernel writes them
    area = _read(elf_dump, new[2], new[5])
    assert area[: len(old_notes)] == old_notes  # the original notes, byte for byte
    assert area[len(old_notes) :] == I.encode_note(*NOTES[0]) + I.encode_note(*NOTES[1])
    # O(notes): the file grew by the notes and the copied note area, nothing else
    assert elf_dump.stat().st_size - size < len(old_notes) + len(area) + 8
    # handoff's own reader finds the record and the report
    found = sources.read_path(str(elf_dump))
    assert [f.record.raw for f in found if f.record] == [REC]
    assert found[0].reports and found[0].reports[0].data["summary"].startswith("restored")


def _read(p: Path, off: int, n: int) -> bytes:
    with p.open("rb") as f:
        f.seek(off)
        return f.read(n)


@pytest.mark.parametrize("tool", ["readelf", "eu-readelf"])
def test_readelf_lists_injected_notes(elf_dump: Path, tool: str) -> None:
    if not have(tool):
        pytest.skip(f"{tool} not installed")
    before = subprocess.run(
        [tool, "-n", str(elf_dump)], capture_output=True, text=True, check=False
    )
    I.inject_notes(elf_dump, NOTES)
    p = subprocess.run([tool, "-n", str(elf_dump)], capture_output=True, text=True, check=False)
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


def test_pyelftools_iterates_injected_notes(elf_dump: Path) -> None:
    from elftools.elf.elffile import ELFFile

    I.inject_notes(elf_dump, NOTES)
    with elf_dump.open("rb") as f:
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


def test_drgn_opens_injected_elf(elf_dump: Path) -> None:
    pytest.importorskip("drgn")
    before = _drgn_view(elf_dump)
    I.inject_notes(elf_dump, NOTES)
    assert _drgn_view(elf_dump) == before


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
    """makedumpfile reads the moved PT_NOTE and carries our notes into its output."""
    I.inject_notes(elf_dump, NOTES)
    out = kdump_from(elf_dump, tmp_path / "out.kdump", "31" if is_real(elf_dump) else "1")
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
    assert_dmesg_survives_injection(dump, tmp_path)
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


def test_order_is_append_fsync_then_header_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = synthetic_elf(tmp_path / "vmcore")
    size = dump.stat().st_size
    ph_at, _ = elf_note_phdr(dump)
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
    assert log == [("write", size), ("fsync", 0), ("write", ph_at), ("fsync", 0)]


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
    assert_same_except(orig, dump, [])  # every original byte, header included
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
    assert "hint: convert it first: makedumpfile -R" in capsys.readouterr().err
    assert main(["inject-notes", str(dump), str(raw)]) == 0
