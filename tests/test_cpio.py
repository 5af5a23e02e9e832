"""handoff.formats.cpio: the newc writer and reader, checked against GNU cpio."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from helpers import recordgen as G

from handoff import errors as E
from handoff import sources
from handoff.formats import cpio

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")


def sample() -> bytes:
    w = cpio.Writer()
    w.directory("etc")
    w.file("etc/hostname", b"testhost\n")
    w.file("handoff/record.note", G.note(G.make_record()), 0o600, parents=True)
    w.symlink("init", "bin/busybox")
    w.file("empty", b"")
    w.file("odd", b"abcde")  # data needs padding
    return w.finish()


def test_writer_is_reproducible_and_aligned() -> None:
    a, b = sample(), sample()
    assert a == b and len(a) % 4 == 0
    members = cpio.list_members(a)
    assert [m.name for m in members] == ["etc", "etc/hostname", "handoff", "handoff/record.note",
                                         "init", "empty", "odd"]
    for m in members:
        assert m.offset % 4 == 0 and m.data_offset % 4 == 0
        assert (m.uid, m.gid, m.mtime) == (0, 0, 0)
    assert [m.ino for m in members] == list(range(1, 8))
    modes = {m.name: m.mode for m in members}
    assert modes["etc"] == stat.S_IFDIR | 0o755 and modes["handoff"] == stat.S_IFDIR | 0o755
    assert modes["handoff/record.note"] == stat.S_IFREG | 0o600
    assert modes["init"] == stat.S_IFLNK | 0o777
    assert a.endswith(cpio.trailer())


def test_header_bytes_exact() -> None:
    h = cpio.header("ab", stat.S_IFREG | 0o644, 5, 7)
    assert h == (b"070701" + b"00000007" + b"000081A4" + b"00000000" * 2 + b"00000001"
                 + b"00000000" + b"00000005" + b"00000000" * 4 + b"00000003" + b"00000000"
                 + b"ab\x00" + bytes(3))  # 110 + 3 name bytes, padded to 116
    assert len(h) == 116


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../b", "a//b", "", "a/", "./a", "a/."])
def test_writer_refuses_unsafe_or_unnormalised_names(name: str) -> None:
    with pytest.raises(ValueError, match="cpio member name"):
        cpio.Writer().file(name, b"x")


def test_writer_refuses_duplicates_and_use_after_finish() -> None:
    w = cpio.Writer()
    w.file("a", b"")
    with pytest.raises(ValueError, match=r"^duplicate cpio member 'a'$"):
        w.file("a", b"")
    w.finish()
    with pytest.raises(ValueError, match=r"^archive already finished$"):
        w.file("b", b"")


def test_align_for_append() -> None:
    assert [len(cpio.align_for_append(n)) for n in range(6)] == [0, 3, 2, 1, 0, 3]


@needs_cpio
def test_gnu_cpio_extracts_our_archive(tmp_path: Path) -> None:
    w = cpio.Writer()
    w.file("a/b/c.txt", b"hello", parents=True)
    w.file("a/x.bin", bytes(range(256)) * 3, 0o755)
    w.symlink("a/link", "b/c.txt")
    w.directory("d", 0o700)
    (tmp_path / "x.cpio").write_bytes(w.finish())
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(["cpio", "-idv", "--no-absolute-filenames", "-F", str(tmp_path / "x.cpio")],
                       cwd=out, capture_output=True, text=True, check=True)
    assert r.stderr.split()[:5] == ["a", "a/b", "a/b/c.txt", "a/x.bin", "a/link"]
    assert (out / "a/b/c.txt").read_bytes() == b"hello"
    assert (out / "a/x.bin").read_bytes() == bytes(range(256)) * 3
    assert os.readlink(out / "a/link") == "b/c.txt"
    assert stat.S_IMODE((out / "a/x.bin").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "d").stat().st_mode) == 0o700
    listing = subprocess.run(["cpio", "-tv", "-F", str(tmp_path / "x.cpio")],
                             capture_output=True, text=True, check=True).stdout
    assert "Jan  1  1970" in listing and " root " in listing


@needs_cpio
def test_we_read_gnu_cpio_archives(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "handoff").mkdir(parents=True)
    rec = G.make_record()
    (src / "handoff" / "record.note").write_bytes(G.note(rec))
    (src / "odd").write_bytes(b"123")
    os.symlink("odd", src / "ln")
    names = "handoff\nhandoff/record.note\nodd\nln\n"
    arc = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=src, input=names.encode(),
                         capture_output=True, check=True).stdout
    members = cpio.list_members(arc)
    assert [m.name for m in members] == ["handoff", "handoff/record.note", "odd", "ln"]
    assert len(arc) % 512 == 0  # GNU cpio pads to 512: zeros the kernel skips
    f = sources.read_bytes(arc)[0]
    assert f.record is not None and f.record.raw == rec


def test_reader_flags_unsafe_names_and_never_follows_them() -> None:
    rec = G.make_record()
    body = (cpio.header("../evil", stat.S_IFREG | 0o644, len(rec), 1) + rec + bytes(-len(rec) % 4)
            + cpio.header("/abs", stat.S_IFREG | 0o644, len(rec), 2) + rec
            + bytes(-len(rec) % 4) + cpio.trailer())
    assert [m.unsafe for m in cpio.list_members(body)] == ["'..' component", "absolute path"]
    with pytest.raises(E.BadContainer, match=r"^<bytes>: refused cpio member '\.\./evil' at "
                       r"offset 0 \('\.\.' component\); not examined$"):
        sources.read_bytes(body)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"070707" + b"0" * 104, (r"^old \(odc\) cpio archive at offset 0: the kernel reads only "
                                 r"newc$")),
        (b"070701" + b"zzzzzzzz" + b"0" * 96, r"^cpio header at offset 0: field ino is not hex"),
        (cpio.header("a", 0o100644, 100, 1)[:110] + b"a\x00" + bytes(2),
         r"^cpio member 'a' at offset 0: data truncated \(2 of 100 bytes\)$"),
        (cpio.header("a", 0o100644, 0, 1)[:94] + b"00000000" + b"00000000",
         r"^cpio member at offset 0: name size 0 is outside \[1, 4096\]$"),
        (cpio.header("a", 0o100644, 0, 1)[:94] + b"00002000" + b"00000000",
         r"^cpio member at offset 0: name size 8192 is outside \[1, 4096\]$"),
        (cpio.header("ab", 0o100644, 0, 1)[:110] + b"abc", r"name is not one NUL-terminated"),
        (cpio.header("a", 0o100644, 0, 1), (r"^truncated cpio header at offset 112 \(archive has "
                                           r"no TRAILER!!!\)$")),
    ],
)
def test_reader_refuses_malformed_headers(data: bytes, message: str) -> None:
    with pytest.raises(E.BadContainer, match=message):
        cpio.list_members(data)


def test_member_with_size_past_the_end_is_refused_in_an_initrd() -> None:
    data = cpio.header("big", 0o100644, 0xFFFFFFFF, 1) + b"x" * 10
    with pytest.raises(E.BadContainer, match=r"^<bytes>: cpio member 'big' at offset 0: data "
                       r"truncated \(10 of 4294967295 bytes\)$"):
        sources.read_bytes(data)


@needs_cpio
def test_device_node_for_dev_console(tmp_path: Path) -> None:
    w = cpio.Writer()
    w.directory("dev")
    w.node("dev/console", stat.S_IFCHR, 5, 1)
    data = w.finish()
    (m,) = [m for m in cpio.list_members(data) if m.name == "dev/console"]
    assert (stat.S_ISCHR(m.mode), m.rdevmajor, m.rdevminor, m.size) == (True, 5, 1, 0)
    (tmp_path / "d.cpio").write_bytes(data)
    listing = subprocess.run(["cpio", "-tv", "-F", str(tmp_path / "d.cpio")],
                             capture_output=True, text=True, check=True).stdout
    (line,) = [ln for ln in listing.splitlines() if ln.endswith("dev/console")]
    assert line.startswith("crw-------") and " 5,   1 " in line
    with pytest.raises(ValueError, match="node kind must be S_IFCHR or S_IFBLK"):
        w.node("dev/x", stat.S_IFREG, 1, 1)
