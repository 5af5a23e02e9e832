"""Save /proc/vmcore: a sparse ELF copy that never writes zero pages, or through makedumpfile.

The sparse copy reads the ELF headers, the notes and each PT_LOAD range 1 MiB at a time with
``preadv`` into one preallocated, page-aligned buffer. A chunk that is all zero (one ``memcmp``
against a zero buffer, through ``bytes.startswith``) is skipped; other chunks are split into
pages, and runs of non-zero pages are written with ``pwrite`` at their own offsets, so zero
pages become holes. (Measured on the development host: ``startswith`` compares at 23-35 GB/s;
``memoryview == memoryview`` goes item by item at 0.5 GB/s, ``not any(buf)`` at 0.17 GB/s.)
The output keeps the source's layout byte for byte, so every offset in its headers stays true.

A page the kernel cannot read (``EIO`` on hardware-poisoned memory) is left as a hole and
reported, so one bad page never costs the dump.
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from handoff import errors as E

CHUNK = 1 << 20
PAGE = 4096
MAX_UNREADABLE_RANGES = 1000  # kept in the result; the byte count is always exact

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)

_PHDR64 = struct.Struct("<IIQQQQQQ")
_PHDR64_BE = struct.Struct(">IIQQQQQQ")


@dataclass(frozen=True)
class SaveResult:
    """How a dump was saved. Sizes in bytes; ``allocated`` is what the file takes on disk."""

    path: str
    method: str  # "sparse-copy" or "makedumpfile"
    format: str  # "elf" or "kdump" (what the file turned out to be)
    source: str
    source_size: int
    size: int
    allocated: int
    copied: int = 0  # bytes written (sparse copy)
    zero_skipped: int = 0  # bytes of zero pages not written (sparse copy)
    unreadable: tuple[tuple[int, int], ...] = ()  # (offset, length) left as holes
    unreadable_bytes: int = 0
    seconds: float = 0.0
    argv: tuple[str, ...] = ()
    layout: str = "elf"  # how the source was read: "elf" (headers + segments) or "whole-file"
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "method": self.method,
            "format": self.format,
            "source": self.source,
            "source_size": self.source_size,
            "size": self.size,
            "allocated": self.allocated,
            "seconds": round(self.seconds, 3),
        }
        if self.method == "sparse-copy":
            d.update(
                copied=self.copied,
                zero_skipped=self.zero_skipped,
                layout=self.layout,
                unreadable_bytes=self.unreadable_bytes,
                unreadable=[list(r) for r in self.unreadable],
            )
        else:
            d["argv"] = list(self.argv)
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d


def source_size(fd: int) -> int:
    """Size of a vmcore: ``st_size`` (true for /proc/vmcore), else the end by seeking."""
    st = os.fstat(fd)
    if st.st_size:
        return st.st_size
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    except OSError:
        return 0


def copy_ranges(fd: int, size: int) -> tuple[list[tuple[int, int]], str | None]:
    """The byte ranges of an ELF core worth copying: everything before the first PT_LOAD
    (ELF header, program headers, notes) and every segment's file bytes, merged.

    Returns ``([(0, size)], reason)`` when the file is not an ELF64 core this can read: the
    caller then copies it whole, since losing a dump to a header we do not understand is worse
    than copying a few gap bytes.
    """
    whole = [(0, size)]
    head = os.pread(fd, 64, 0)
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] not in (1, 2):
        return whole, "source is not an ELF64 file; copied it whole"
    e = "<" if head[5] == 1 else ">"
    phoff, phentsize, phnum = (
        struct.unpack_from(e + "Q", head, 32)[0],
        *struct.unpack_from(e + "HH", head, 54),
    )
    if phnum in (0, 0xFFFF) or phentsize < 56 or phoff + phnum * phentsize > size:
        return whole, "ELF program headers unusable for a segment-wise copy; copied it whole"
    table = os.pread(fd, phnum * phentsize, phoff)
    if len(table) != phnum * phentsize:
        return whole, "short read of the program headers; copied it whole"
    phs = _PHDR64 if e == "<" else _PHDR64_BE
    segs = []
    for i in range(phnum):
        p_type, _fl, off, _va, _pa, filesz, _ms, _al = phs.unpack_from(table, i * phentsize)
        if p_type == 0 or filesz == 0:
            continue
        if off + filesz > size:
            return whole, f"segment {i} extends past the end of the source; copied it whole"
        segs.append((off, off + filesz))
    first_load = min((a for a, _ in segs), default=size)
    head_end = max(64, phoff + phnum * phentsize)
    ranges = sorted([(0, max(head_end, min(first_load, size)))] + segs)
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged, None


class _Sink:
    """Writes the non-zero pages of the chunk in ``buf`` at their offsets; counts the rest."""

    def __init__(self, fd: int, buf: mmap.mmap, page: int) -> None:
        self.fd = fd
        self.buf = buf
        self.mv = memoryview(buf)
        self.page = page
        self.zero_page = bytes(page)
        self.zero = bytes(len(buf))
        self.copied = 0
        self.skipped = 0

    def put(self, n: int, offset: int) -> None:
        """Write the non-zero pages of ``buf[:n]``, which came from file offset ``offset``."""
        # Two C-level tests, measured on the development host: ``zeros.startswith(view)`` is
        # one memcmp of the whole chunk (23-35 GB/s), which settles the long zero runs of
        # unused memory; ``buf.find(zero_page, i, i + page)`` tests one page without creating
        # a slice: 40 us per MiB of data pages in one list comprehension, against 200 us for
        # slices and startswith, 150 us in 64 KiB blocks. ``memoryview ==`` would go byte by
        # byte at 0.5 GB/s, ``not any(buf)`` at 0.17 GB/s.
        mv = self.mv
        if self.zero.startswith(mv[:n]):
            self.skipped += n
            return
        page, zp, find = self.page, self.zero_page, self.buf.find
        # -1 for a page with data, its offset for a zero page. A partial last page never
        # matches a whole zero page: it is written (ftruncate makes a zero tail a hole anyway).
        hits = [find(zp, i, i + page) for i in range(0, n, page)]
        if max(hits) < 0:
            self._write(mv[:n], offset)
            return
        start = -1  # start of the current run of data pages
        for i, hit in zip(range(0, n, page), hits):
            if hit >= 0:
                if start >= 0:
                    self._write(mv[start:i], offset + start)
                    start = -1
                self.skipped += page
            elif start < 0:
                start = i
        if start >= 0:
            self._write(mv[start:n], offset + start)

    def _write(self, data: memoryview, offset: int) -> None:
        self.copied += len(data)
        while data:
            w = os.pwrite(self.fd, data, offset)
            data = data[w:]
            offset += w


def _read_into(fd: int, mv: memoryview, offset: int) -> int:
    """Fill ``mv`` from ``offset``; fewer bytes only at end of file."""
    got = 0
    while got < len(mv):
        n = os.preadv(fd, [mv[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


def copy_sparse(
    src: str,
    dst: str,
    *,
    progress: ProgressFn | None = None,
    chunk: int = CHUNK,
    page: int = PAGE,
    sync: bool = True,
) -> SaveResult:
    """Copy the vmcore ``src`` to the new file ``dst`` (created, never overwritten), leaving
    zero pages as holes. Fsyncs ``dst`` unless ``sync`` is false."""
    t0 = time.monotonic()
    try:
        sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise E.EnvironmentProblem(
            f"no vmcore at {src}", hint="run this in the kdump capture kernel, or pass --vmcore"
        ) from None
    except PermissionError:
        raise E.EnvironmentProblem(f"cannot read {src} (permission denied)", hint="run as root")
    try:
        size = source_size(sfd)
        try:  # a larger readahead on a regular file, as cp asks for; /proc/vmcore ignores it
            os.posix_fadvise(sfd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
        ranges, why = copy_ranges(sfd, size)
        total = sum(b - a for a, b in ranges)
        dfd = _create(dst)
        try:
            # Page-aligned (anonymous mmap): the kernel copies into it at memory speed, where a
            # bytearray's malloc'd, 16-byte-offset buffer made reads 5x slower (measured).
            buf = mmap.mmap(-1, chunk)
            mv = memoryview(buf)
            sink = _Sink(dfd, buf, page)
            done = 0
            bad: list[tuple[int, int]] = []
            bad_bytes = 0
            for a, b in ranges:
                off = a
                while off < b:
                    want = min(chunk, b - off)
                    try:
                        n = _read_into(sfd, mv[:want], off)
                    except OSError as ex:
                        if ex.errno not in (errno.EIO, errno.EFAULT, errno.ENXIO, errno.EINVAL):
                            raise
                        n, lost = _read_pagewise(sfd, mv, want, off, page, bad)
                        bad_bytes += lost
                    if n < want:  # the source ended early: keep what there is
                        bad_bytes += _note_bad(bad, off + n, want - n)
                    if n:
                        sink.put(n, off)
                    off += want
                    done += want
                    if progress:
                        progress(done, total)
            os.ftruncate(dfd, size)  # trailing zero pages become a hole too
            if sync:
                os.fsync(dfd)
            st = os.fstat(dfd)
        except OSError as ex:
            if ex.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise E.EnvironmentProblem(
                    f"no space left writing {dst} ({ex.strerror}); the partial dump is kept",
                    hint="free space in the dump directory or use --format kdump (makedumpfile)",
                ) from None
            raise
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    warnings = [why] if why else []
    if bad_bytes:
        warnings.append(f"{bad_bytes} bytes of the source could not be read; saved as zeros")
    return SaveResult(
        path=dst,
        method="sparse-copy",
        format="elf" if why is None else "unknown",
        source=src,
        source_size=size,
        size=st.st_size,
        allocated=st.st_blocks * 512,
        copied=sink.copied,
        zero_skipped=sink.skipped,
        unreadable=tuple(bad[:MAX_UNREADABLE_RANGES]),
        unreadable_bytes=bad_bytes,
        seconds=time.monotonic() - t0,
        layout="elf" if why is None else "whole-file",
        warnings=tuple(warnings),
    )


def _note_bad(bad: list[tuple[int, int]], offset: int, length: int) -> int:
    if bad and bad[-1][0] + bad[-1][1] == offset:
        bad[-1] = (bad[-1][0], bad[-1][1] + length)
    else:
        bad.append((offset, length))
    return length


def _read_pagewise(
    fd: int, mv: memoryview, want: int, offset: int, page: int, bad: list[tuple[int, int]]
) -> tuple[int, int]:
    """Re-read a chunk that failed, page by page; zero the pages that fail again."""
    lost = 0
    i = 0
    while i < want:
        j = min(i + page, want)
        try:
            n = _read_into(fd, mv[i:j], offset + i)
        except OSError:
            n = 0
            lost += _note_bad(bad, offset + i, j - i)
        if n < j - i:
            mv[i + n : j] = bytes(j - i - n)
        i = j
    return want, lost


def _create(path: str) -> int:
    try:
        # 0600: a dump holds all of the dead kernel's memory (makedumpfile does the same)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise E.UsageError(f"{path} already exists; a dump is never overwritten") from None
    except PermissionError:
        raise E.EnvironmentProblem(f"cannot create {path} (permission denied)") from None


# --- makedumpfile ----------------------------------------------------------------------------

# Options whose output handoff cannot put notes into, or that write several files.
_REFUSED_OPTIONS = {
    "-F": "flattened output has no note area; drop -F",
    "--split": "split dumps are several files; drop --split",
    "--reassemble": "not a capture option",
    "-R": "not a capture option",
    "--dump-dmesg": "not a capture option",
}


def makedumpfile_argv(tool: str, args: Sequence[str], src: str, dst: str, *, fmt: str) -> list[str]:
    """The makedumpfile command line for a capture in ``fmt`` ("kdump" or "elf")."""
    for a in args:
        opt = a.split("=", 1)[0]
        if opt in _REFUSED_OPTIONS:
            raise E.UsageError(f"makedumpfile option {a}: {_REFUSED_OPTIONS[opt]}")
    if fmt == "elf" and "-E" not in args:
        args = ["-E", *args]
    if fmt == "kdump" and "-E" in args:
        raise E.UsageError("--format kdump conflicts with makedumpfile -E (ELF output)")
    return [tool, *args, src, dst]


def find_makedumpfile() -> str | None:
    return shutil.which("makedumpfile")


def makedumpfile_version(tool: str) -> str | None:
    """``makedumpfile -v``'s version line, e.g. "makedumpfile: version 1.7.2 (...)"."""
    try:
        p = subprocess.run([tool, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (p.stdout + p.stderr).splitlines():
        if "version" in line:
            return line.strip()
    return None


def run_makedumpfile(
    argv: Sequence[str],
    *,
    show_output: bool = False,
    sync: bool = True,
) -> SaveResult:
    """Run makedumpfile (argv from :func:`makedumpfile_argv`); its progress goes to our stderr
    when ``show_output``. Raises EnvironmentProblem if it fails, after removing its output."""
    t0 = time.monotonic()
    src, dst = argv[-2], argv[-1]
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, shell=False
        )
    except OSError as ex:
        raise E.EnvironmentProblem(f"cannot run {argv[0]}: {ex.strerror}") from None
    tail = b""
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    for block in iter(lambda: os.read(out_fd, 65536), b""):
        if show_output:
            sys.stderr.buffer.write(block)
            sys.stderr.buffer.flush()
        tail = (tail + block)[-4096:]
    rc = proc.wait()
    if rc != 0:
        try:
            os.unlink(dst)
        except FileNotFoundError:
            pass
        last = [
            ln
            for ln in tail.decode("utf-8", "replace").replace("\r", "\n").splitlines()
            if ln.strip() and "%]" not in ln
        ]
        raise E.EnvironmentProblem(
            f"makedumpfile failed (exit {rc}): {' / '.join(last[-3:]) or 'no message'}",
            hint="check the makedumpfile arguments, or capture with --format elf",
        )
    fd = os.open(dst, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if sync:
            os.fsync(fd)
        st = os.fstat(fd)
        head = os.pread(fd, 16, 0)
    finally:
        os.close(fd)
    from handoff.capture.inject import dump_format

    try:
        ssize = os.stat(src).st_size
    except OSError:
        ssize = 0
    return SaveResult(
        path=dst,
        method="makedumpfile",
        format=dump_format(head),
        source=src,
        source_size=ssize,
        size=st.st_size,
        allocated=st.st_blocks * 512,
        seconds=time.monotonic() - t0,
        argv=tuple(argv),
    )
