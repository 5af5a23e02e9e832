"""Saving the dump (handoff.capture.save) and the whole `handoff capture` (pipeline, CLI).

The source is a vmcore-like ELF core written in full (zeros included, as /proc/vmcore reads):
the saved copy must equal it byte for byte, with its zero pages as holes (SEEK_DATA and
st_blocks say so). The pipeline tests check that the dump survives every missing or broken
input and that the exit code and the metadata file say what happened.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import dumpcheck as D
from helpers import elfwriter as W
from helpers import recordgen as G
from helpers.capture import PAGE, REPORT, run_capture, vmcore_like
from helpers.vmcore import E2E_RELEASE

from handoff import errors as E
from handoff import record as R
from handoff import sources
from handoff.capture import inject as I
from handoff.capture import layout as L
from handoff.capture import meta as M
from handoff.capture import pipeline as P
from handoff.capture import save as S
from handoff.cli import main

REC = G.make_record(generation=9)


def load_ranges(path: Path) -> list[tuple[int, int]]:
    data = path.read_bytes()[:4096]
    (phoff,) = struct.unpack_from("<Q", data, 32)
    (phnum,) = struct.unpack_from("<H", data, 56)
    out = []
    for i in range(phnum):
        t, _f, off, _v, _p, filesz, _m, _a = struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i)
        if t == 1:
            out.append((off, filesz))
    return out


def sha(path: Path, off: int = 0, n: int | None = None) -> str:
    with path.open("rb") as f:
        f.seek(off)
        return hashlib.sha256(f.read(n if n is not None else -1)).hexdigest()


def fs_block(path: Path) -> int:
    return os.statvfs(path).f_bsize


def assert_holes_where_zero(src: Path, dst: Path) -> None:
    """Every page-aligned all-zero page of ``src`` is a hole in ``dst``, every other is data."""
    if fs_block(dst) > PAGE:
        pytest.skip("file system blocks larger than a page")
    data = src.read_bytes()
    fd = os.open(dst, os.O_RDONLY)
    try:
        for off in range(0, len(data) - len(data) % PAGE, PAGE):
            zero = not any(data[off : off + PAGE])
            try:
                nxt = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                assert e.errno == errno.ENXIO
                nxt = len(data)
            if zero:
                assert nxt >= off + PAGE, f"zero page at {off:#x} was written"
            else:
                assert nxt == off, f"data page at {off:#x} is a hole"
    finally:
        os.close(fd)


# -- the sparse copy -----------------------------------------------------------------------------


def test_copy_equals_source_and_zero_pages_are_holes(tmp_path: Path) -> None:
    src = tmp_path / "vmcore"
    vmcore_like(src)
    dst = tmp_path / "copy"
    res = S.copy_sparse(str(src), str(dst))
    assert res.method == "sparse-copy" and res.format == "elf" and res.layout == "elf"
    assert res.reader == "mmap" and res.as_dict()["reader"] == "mmap"
    assert dst.stat().st_size == src.stat().st_size == res.size == res.source_size
    assert sha(dst) == sha(src)
    for off, n in load_ranges(src):
        assert sha(dst, off, n) == sha(src, off, n)
    assert_holes_where_zero(src, dst)
    data = src.read_bytes()
    nonzero = sum(PAGE for o in range(0, len(data), PAGE) if any(data[o : o + PAGE]))
    fd = os.open(src, os.O_RDONLY)
    ranges, why = S.copy_ranges(fd, src.stat().st_size)
    os.close(fd)
    assert why is None and ranges[0][0] == 0  # headers and notes, then the PT_LOADs
    assert res.copied <= nonzero and res.copied + res.zero_skipped == sum(b - a for a, b in ranges)
    # st_blocks also counts the extent tree's own blocks on a fragmented sparse file
    assert dst.stat().st_blocks * 512 == res.allocated <= nonzero + 4 * fs_block(dst)
    assert res.allocated < src.stat().st_size * 0.5
    assert res.unreadable == () and res.unreadable_bytes == 0
    assert oct(dst.stat().st_mode & 0o777) == "0o600"  # a dump holds all of memory


def test_copy_reports_progress_up_to_the_total(tmp_path: Path) -> None:
    src = tmp_path / "vmcore"
    vmcore_like(src)
    seen: list[tuple[int, int]] = []
    S.copy_sparse(str(src), str(tmp_path / "copy"), progress=lambda d, t: seen.append((d, t)),
                  chunk=1 << 20)
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(seen) >= 4
    assert (
        seen[-1][0]
        == seen[-1][1]
        == sum(b - a for a, b in S.copy_ranges(os.open(src, os.O_RDONLY), src.stat().st_size)[0])
    )


def test_unreadable_pages_become_holes_and_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "vmcore"
    loads = vmcore_like(src)
    off0 = load_ranges(src)[0][0]
    bad = off0 + 5 * PAGE  # a data page? make sure it is, whatever the seed
    src_bytes = bytearray(src.read_bytes())
    src_bytes[bad : bad + PAGE] = b"\x99" * PAGE
    src.write_bytes(bytes(src_bytes))
    real = os.preadv

    def preadv(fd: int, bufs: list[memoryview], offset: int) -> int:
        n = sum(len(b) for b in bufs)
        if offset < bad + PAGE and offset + n > bad:
            raise OSError(errno.EIO, "Input/output error")  # a hardware-poisoned page
        return real(fd, bufs, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    # Only the read path sees EIO: a mapped source that cannot be read fails the mmap itself.
    res = S.copy_sparse(str(src), str(tmp_path / "copy"), map_source=False)
    monkeypatch.undo()
    assert res.reader == "read"
    assert res.unreadable == ((bad, PAGE),) and res.unreadable_bytes == PAGE
    assert any("could not be read" in w for w in res.warnings)
    out = (tmp_path / "copy").read_bytes()
    assert out[bad : bad + PAGE] == bytes(PAGE)
    expect = bytes(src_bytes[:bad]) + bytes(PAGE) + bytes(src_bytes[bad + PAGE :])
    assert out == expect
    assert loads


def test_an_unmappable_source_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "vmcore"
    vmcore_like(src)
    real = S.mmap.mmap

    def no_file_maps(fd: int, *a: Any, **kw: Any) -> Any:
        if fd != -1:  # the read buffer (anonymous) still works
            raise OSError(errno.ENODEV, "No such device")
        return real(fd, *a, **kw)

    monkeypatch.setattr(S.mmap, "mmap", no_file_maps)
    res = S.copy_sparse(str(src), str(tmp_path / "copy"))
    monkeypatch.undo()
    assert res.reader == "read" and not res.warnings
    assert sha(tmp_path / "copy") == sha(src)
    assert_holes_where_zero(src, tmp_path / "copy")


def tricky_pages(seed: int, n: int) -> bytes:
    """Pages that defeat sampling: zero, random, one non-zero byte anywhere (mostly outside
    the sampled words), data only in a sampled word, and runs of each."""
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        kind = rnd.randrange(6)
        run = rnd.choice((1, 1, 2, 3, 17, 300))
        for _ in range(run):
            if kind in (0, 1):
                out.append(bytes(PAGE))
            elif kind == 2:
                out.append(rnd.randbytes(PAGE))
            else:
                p = bytearray(PAGE)
                at = rnd.randrange(PAGE) if kind != 4 else 8 * 64 * rnd.randrange(8)
                p[at] = rnd.randrange(1, 256)
                if kind == 5:
                    p[-1] = 1  # the last byte: never sampled
                out.append(bytes(p))
    return b"".join(out[:n])


@pytest.mark.parametrize("chunk,window,mapped", [
    (1 << 20, 1 << 20, True),  # a new mapping for nearly every chunk
    (4 << 20, 64 << 20, True),
    (3 * PAGE, 64 << 20, True),  # chunks of three pages
    (1 << 20, 64 << 20, False),
])
def test_zero_pages_are_found_exactly(tmp_path: Path, chunk: int, window: int,
                                      mapped: bool) -> None:
    a = tricky_pages(11, 1500)
    b = tricky_pages(12, 333) + b"\0" * 1000  # a partial last page of zeros: written
    src = tmp_path / "vmcore"
    with src.open("wb") as f:
        W.write_core(f, loads=[W.Load(0x100000, len(a), data=a),
                               W.Load(0x800000, len(b), data=b)])
    dst = tmp_path / "copy"
    res = S.copy_sparse(str(src), str(dst), chunk=chunk, window=window, map_source=mapped)
    assert res.reader == ("mmap" if mapped else "read")
    assert dst.read_bytes() == src.read_bytes()
    assert_holes_where_zero(src, dst)
    data = src.read_bytes()
    ranges = S.copy_ranges(os.open(src, os.O_RDONLY), len(data))[0]
    assert res.copied + res.zero_skipped == sum(y - x for x, y in ranges)
    want_skipped = 0
    for x, y in ranges:
        for c in range(x, y, chunk):
            e = min(y, c + chunk)
            want_skipped += sum(PAGE for o in range(c, e - PAGE + 1, PAGE)
                                if not any(data[o:o + PAGE]))
            if not any(data[c:e]) and (e - c) % PAGE:
                want_skipped += (e - c) % PAGE  # an all-zero chunk is skipped whole
    assert res.zero_skipped == want_skipped


def test_zero_page_test_without_sampling(tmp_path: Path) -> None:
    """A page size that is not a multiple of 64 bytes is compared page by page."""
    src = tmp_path / "blob"
    src.write_bytes(bytes(1000) + b"x" + bytes(999) + bytes(1000) + b"tail")
    dst = tmp_path / "copy"
    res = S.copy_sparse(str(src), str(dst), page=1000)
    assert dst.read_bytes() == src.read_bytes()
    assert res.zero_skipped == 2000 and res.copied == 1004


def test_a_source_that_is_not_elf_is_copied_whole(tmp_path: Path) -> None:
    src = tmp_path / "blob"
    src.write_bytes(random.Random(5).randbytes(3 * PAGE) + bytes(2 * PAGE) + b"end")
    res = S.copy_sparse(str(src), str(tmp_path / "copy"))
    assert res.layout == "whole-file" and res.warnings
    assert (tmp_path / "copy").read_bytes() == src.read_bytes()


def test_a_dump_is_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "vmcore"
    vmcore_like(src)
    dst = tmp_path / "copy"
    dst.write_bytes(b"precious")
    with pytest.raises(E.UsageError, match="already exists"):
        S.copy_sparse(str(src), str(dst))
    assert dst.read_bytes() == b"precious"


def test_makedumpfile_argv() -> None:
    assert S.makedumpfile_argv("m", ["-c", "-d", "31"], "/proc/vmcore", "/d/x", fmt="kdump") == [
        "m",
        "-c",
        "-d",
        "31",
        "/proc/vmcore",
        "/d/x",
    ]
    assert S.makedumpfile_argv("m", ["-d", "31"], "s", "d", fmt="elf") == [
        "m",
        "-E",
        "-d",
        "31",
        "s",
        "d",
    ]
    for bad in (["-F"], ["--split"], ["-E"]):
        with pytest.raises(E.UsageError):
            S.makedumpfile_argv("m", bad, "s", "d", fmt="kdump")


# -- the pipeline ----------------------------------------------------------------------------------


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "vmcore"
    vmcore_like(src)
    rec = tmp_path / "record.note"
    rec.write_bytes(G.note(REC))
    rep = tmp_path / "report.json"
    rep.write_bytes(REPORT)
    return {"vmcore": src, "record": rec, "report": rep, "dir": tmp_path / "crash"}


def dump_notes(path: Path) -> list[tuple[bytes, int, bytes]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [(n.name, n.type, n.desc) for n in I.read_note_area(fd, os.fstat(fd).st_size).notes]
    finally:
        os.close(fd)


def test_capture_saves_injects_and_describes(inputs: dict[str, Path]) -> None:
    res = run_capture(inputs)
    assert res.exit_code == 0 and res.warnings == []
    d = Path(res.directory)
    assert d.parent == inputs["dir"] and sorted(p.name for p in d.iterdir()) == [
        M.META_NAME,
        "vmcore",
    ]
    dump = d / "vmcore"
    src = inputs["vmcore"]
    # PT_LOAD contents are the source's, moved by whole pages to make room for the notes
    # after the note segment, in the header area crash reads (issue 13)
    shift = D.assert_same_loads(src, dump)
    D.assert_crash_layout(dump)
    assert res.save and res.save.data_shift == shift > 0
    ph = D.phdrs(dump)[0]
    assert ph[2] == D.phdrs(src)[0][2]  # the notes stay where /proc/vmcore has them
    room = min(o for _, o, _ in D.loads(dump)) - ph[2] - ph[5]
    assert res.save.note_room is not None and room == res.save.note_room - sum(
        len(I.encode_note(t, b)) for t, b in ((R.NT_HANDOFF_RECORD, REC),
                                               (R.NT_HANDOFF_REPORT, REPORT)))
    assert L.SPARE_ROOM <= room < L.SPARE_ROOM + 2 * PAGE  # what is left for later notes
    assert res.inject and res.inject.method == "in-place"
    if D.have_crash():
        assert D.crash_osrelease(dump)[:2] == D.crash_osrelease(src)[:2] == (0, "6.1.0-28-amd64")
    notes = dump_notes(dump)
    assert notes[-2:] == [
        (b"HANDOFF", R.NT_HANDOFF_RECORD, REC),
        (b"HANDOFF", R.NT_HANDOFF_REPORT, REPORT),
    ]
    found = sources.read_path(str(dump))
    assert [f.record.generation for f in found if f.record] == [9]
    meta = M.read_meta(str(d / M.META_NAME))
    assert meta["schema_version"] == 1 and meta["status"] == "saved"
    assert meta["dump"] == "vmcore" and meta["format"] == "elf" and meta["method"] == "sparse-copy"
    assert meta["source"] == str(src) and meta["source_size"] == src.stat().st_size
    assert meta["record"]["generation"] == 9
    assert meta["record"]["sha256"] == hashlib.sha256(REC).hexdigest()
    assert meta["report"]["sha256"] == hashlib.sha256(REPORT).hexdigest()
    assert set(meta["tools"]) >= {"handoff", "python", "capture_kernel"}
    assert meta["notes"]["path"] == str(dump) and meta["save"]["path"] == str(dump)
    assert meta["started"].endswith("Z") and meta["exit_code"] == 0


def test_no_record_still_saves_the_dump(inputs: dict[str, Path]) -> None:
    inputs["record"] = inputs["dir"].parent / "missing.note"
    res = run_capture(inputs)
    assert res.exit_code == E.EXIT_NO_RECORD
    dump = Path(res.dump)
    assert dump.is_file() and not Path(str(dump) + ".incomplete").exists()
    notes = dump_notes(dump)
    assert (b"HANDOFF", R.NT_HANDOFF_RECORD, REC) not in notes
    assert (b"HANDOFF", R.NT_HANDOFF_REPORT, REPORT) in notes  # what exists is injected
    meta = M.read_meta(str(Path(res.directory) / M.META_NAME))
    assert meta["record"]["status"] == "missing" and meta["exit_code"] == 3
    assert any("no record injected" in w for w in meta["warnings"])


def test_corrupt_record_still_saves_the_dump(inputs: dict[str, Path]) -> None:
    bad = bytearray(REC)
    bad[400] ^= 0x10
    inputs["record"].write_bytes(G.note(bytes(bad)))
    res = run_capture(inputs)
    assert res.exit_code == E.EXIT_NO_RECORD
    assert res.record["status"] == "invalid" and res.record["check"] == "digest"
    D.assert_same_loads(inputs["vmcore"], Path(res.dump))
    assert [t for _, t, _ in dump_notes(Path(res.dump))].count(R.NT_HANDOFF_RECORD) == 0


def test_unreadable_report_is_exit_1_but_the_record_is_injected(inputs: dict[str, Path]) -> None:
    inputs["report"].write_bytes(b"\xff\xfe not json")
    res = run_capture(inputs)
    assert res.exit_code == E.EXIT_INVALID
    assert (b"HANDOFF", R.NT_HANDOFF_RECORD, REC) in dump_notes(Path(res.dump))
    assert res.report and res.report["status"] == "invalid"


def test_a_missing_report_file_is_only_a_warning(inputs: dict[str, Path]) -> None:
    inputs["report"].unlink()
    res = run_capture(inputs)
    assert res.exit_code == 0 and res.report and res.report["status"] == "missing"
    assert any("no report injected" in w for w in res.warnings)
    assert (b"HANDOFF", R.NT_HANDOFF_RECORD, REC) in dump_notes(Path(res.dump))


def test_no_report_given_is_fine(inputs: dict[str, Path]) -> None:
    res = run_capture(inputs, report=None)
    if os.path.exists(P.DEFAULT_REPORT):
        pytest.skip(f"{P.DEFAULT_REPORT} exists on this machine")
    assert res.exit_code == 0 and res.report is None


def test_no_subdir_never_overwrites(inputs: dict[str, Path]) -> None:
    inputs["dir"].mkdir()
    (inputs["dir"] / "vmcore").write_bytes(b"old dump")
    with pytest.raises(E.UsageError, match="already exists"):
        run_capture(inputs, subdir=False)
    assert (inputs["dir"] / "vmcore").read_bytes() == b"old dump"


def test_two_captures_in_the_same_second_get_two_directories(inputs: dict[str, Path]) -> None:
    a = run_capture(inputs, clock=lambda: 1700000000.0)
    b = run_capture(inputs, clock=lambda: 1700000000.0)
    assert Path(a.directory).name == "20231114-221320"
    assert Path(b.directory).name == "20231114-221320-1"


def test_dry_run_writes_nothing(inputs: dict[str, Path]) -> None:
    res = run_capture(inputs, fmt="kdump", dry_run=True)
    assert res.dry_run and res.save is None and not inputs["dir"].exists()
    assert res.argv[-2:] == (str(inputs["vmcore"]), res.dump + ".incomplete")
    assert list(res.argv[1:4]) == ["-c", "-d", "31"]


def test_the_dump_is_fsynced_before_it_is_renamed_and_described(
    inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        log.append(("fsync", "tmp" if re.fullmatch(r"\.handoff-capture\.json\.[0-9a-f]{8}\.tmp",
                                                   name) else name))
        real_fsync(fd)

    def rename(a: str, b: str) -> None:
        log.append(("rename", Path(b).name))
        real_rename(a, b)

    def replace(a: str, b: str) -> None:
        log.append(("replace", Path(b).name))
        real_replace(a, b)

    real_link = os.link

    def link(a: str, b: str, **kw: object) -> None:
        log.append(("link", Path(b).name))
        real_link(a, b, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    res = run_capture(inputs)
    monkeypatch.undo()
    stamp = Path(res.directory).name
    assert log == [
        ("fsync", "vmcore.incomplete"),  # the copy
        ("fsync", "vmcore.incomplete"),  # the appended notes
        ("fsync", "vmcore.incomplete"),  # the PT_NOTE header
        ("link", "vmcore"),  # moved into place, never over a file that appeared meanwhile
        ("fsync", stamp),  # the directory entry
        ("fsync", "tmp"),  # the metadata, under a temporary name
        ("link", M.META_NAME),
        ("fsync", stamp),
    ]


def test_missing_makedumpfile_falls_back_to_elf(
    inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(S, "find_makedumpfile", lambda: None)
    res = run_capture(inputs, fmt="kdump")
    assert res.exit_code == E.EXIT_ENVIRONMENT
    assert res.save and res.save.format == "elf" and res.method == "sparse-copy"
    assert "makedumpfile not found" in res.warnings[0]
    assert (b"HANDOFF", R.NT_HANDOFF_RECORD, REC) in dump_notes(Path(res.dump))


@pytest.mark.skipif(not shutil.which("makedumpfile"), reason="makedumpfile not installed")
def test_failing_makedumpfile_falls_back_to_elf(inputs: dict[str, Path]) -> None:
    res = run_capture(inputs, fmt="kdump", makedumpfile_args=["--no-such-option"])
    assert res.exit_code == E.EXIT_ENVIRONMENT
    assert res.save and res.save.format == "elf"
    assert "makedumpfile failed (exit" in res.warnings[0]
    assert sorted(p.name for p in Path(res.directory).iterdir()) == [M.META_NAME, "vmcore"]


@pytest.mark.skipif(not shutil.which("makedumpfile"), reason="makedumpfile not installed")
@pytest.mark.parametrize(
    "fmt,args,want",
    [
        ("kdump", ["-c", "-d", "1"], "kdump"),
        ("kdump", ["-l", "-d", "1"], "kdump"),
        ("elf", ["-d", "1"], "elf"),
    ],
)
def test_capture_through_makedumpfile(
    tmp_path: Path, inputs: dict[str, Path], fmt: str, args: list[str], want: str
) -> None:
    with inputs["vmcore"].open("wb") as f:
        W.makedumpfile_core(f)
    res = run_capture(inputs, fmt=fmt, makedumpfile_args=args)
    assert res.exit_code == 0, res.warnings
    assert res.save and res.save.method == "makedumpfile" and res.save.format == want
    assert res.argv[1:] == tuple(
        S.makedumpfile_argv("x", args, str(inputs["vmcore"]), res.dump + ".incomplete", fmt=fmt)[1:]
    )
    notes = dump_notes(Path(res.dump))
    assert notes[-2:] == [
        (b"HANDOFF", R.NT_HANDOFF_RECORD, REC),
        (b"HANDOFF", R.NT_HANDOFF_REPORT, REPORT),
    ]
    meta = M.read_meta(str(Path(res.directory) / M.META_NAME))
    assert meta["tools"]["makedumpfile"].startswith("makedumpfile: version")
    if want == "elf":
        # makedumpfile -E leaves no room after the notes: the dump was laid out once more
        assert res.warnings == [("the ELF dump had no room for the notes before its memory "
                                 "data: copied it once more with room for them")]
        D.assert_crash_layout(Path(res.dump))
        assert res.save.size == Path(res.dump).stat().st_size
    else:
        assert res.warnings == []
    if D.have_crash():
        assert D.crash_osrelease(Path(res.dump))[:2] == (0, "6.1.0-28-amd64")


# -- the command -----------------------------------------------------------------------------------


def cli(inputs: dict[str, Path], *extra: str) -> list[str]:
    return [
        "capture",
        "--vmcore",
        str(inputs["vmcore"]),
        "--dump-dir",
        str(inputs["dir"]),
        "--record",
        str(inputs["record"]),
        "--report",
        str(inputs["report"]),
        *extra,
    ]


def test_cli_json(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cli(inputs, "--json", "--no-progress")) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["kind"] == "capture" and doc["schema_version"] == 1 and doc["exit_code"] == 0
    assert doc["save"]["format"] == "elf" and doc["record"]["generation"] == 9
    assert [n["type"] for n in doc["notes"]["added"]] == ["0x48440001", "0x48440002"]
    assert out.err == ""


def test_cli_progress_only_when_asked(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(cli(inputs)) == 0  # stderr is not a terminal here: no progress
    out = capsys.readouterr()
    assert "capture:" not in out.err and "saved " in out.out and "injected record" in out.out
    assert main(cli(inputs, "--progress")) == 0
    err = capsys.readouterr().err
    assert "\rcapture: 100.0%" in err and "MB/s" in err


def test_cli_exit_codes(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # a --vmcore the user named and that is missing: usage, as for every named input
    assert (
        main(["capture", "--vmcore", str(inputs["dir"] / "none"), "--dump-dir", str(inputs["dir"])])
        == E.EXIT_USAGE
    )
    assert f"--vmcore {inputs['dir'] / 'none'}: no such file" in capsys.readouterr().err
    assert main(cli(inputs, "--makedumpfile-args", "-c -F")) == E.EXIT_USAGE
    assert main(cli(inputs, "--makedumpfile-args", "-d 'unclosed")) == E.EXIT_USAGE
    assert not inputs["dir"].exists()  # nothing written on a usage error
    inputs["record"].write_bytes(b"")
    assert main(cli(inputs)) == E.EXIT_NO_RECORD
    err = capsys.readouterr().err
    assert "handoff: error: the dump is saved, but it carries no device state\n" in err
    assert main(cli(inputs, "--dry-run", "--format", "kdump", "--json")) == E.EXIT_NO_RECORD
    doc = json.loads(capsys.readouterr().out)  # the error contract's keys on its own document
    assert (doc["kind"], doc["exit_code"], doc["error"]) == (
        "capture", 3, "the dump would carry no device state (dry run)")
    assert doc["hint"].startswith("pass --record with the record")
    assert main(cli(inputs, "--dry-run", "--format", "kdump")) == E.EXIT_NO_RECORD
    assert "makedumpfile" in capsys.readouterr().out


# -- a real vmcore ---------------------------------------------------------------------------------


def test_capture_of_a_real_vmcore(tmp_path: Path) -> None:
    from helpers.vmcore import complete_core, no_real_vmcore, real_vmcore

    real = real_vmcore()
    if real is None:
        no_real_vmcore("no real vmcore (set HANDOFF_REAL_VMCORE or run the e2e harness)")
    src = tmp_path / "vmcore"
    subprocess.run(["cp", str(real), str(src)], check=True)  # a full, non-sparse source
    if not complete_core(src):
        no_real_vmcore(f"{real} is incomplete (being rewritten by the e2e harness?)")
    rec = tmp_path / "r.note"
    rec.write_bytes(G.note(REC))
    res = P.capture(dump_dir=str(tmp_path / "crash"), vmcore=str(src), record=str(rec))
    assert res.exit_code == 0, res.warnings
    dump = Path(res.dump)
    D.assert_same_loads(src, dump)
    D.assert_crash_layout(dump)
    assert res.save and res.save.allocated < src.stat().st_size
    if D.have_crash():  # the same release before and after (issue 13)
        before = D.crash_osrelease(src)
        assert before[0] == 0 and re.fullmatch(E2E_RELEASE, before[1]), before
        assert D.crash_osrelease(dump)[:2] == before[:2]
    if shutil.which("makedumpfile"):
        out = tmp_path / "dump.kdump"
        p = subprocess.run(
            ["makedumpfile", "-c", "-d", "31", str(dump), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert p.returncode == 0, p.stderr
        assert (b"HANDOFF", R.NT_HANDOFF_RECORD, REC) in dump_notes(out)
    if shutil.which("vmcore-dmesg"):
        p = subprocess.run(["vmcore-dmesg", str(dump)], capture_output=True, text=True, check=False)
        assert p.returncode == 0 and "Linux version" in p.stdout
