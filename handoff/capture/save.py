"""Save /proc/vmcore: a sparse ELF copy that never writes zero pages, or through makedumpfile.

The sparse copy reads the ELF headers, the notes and each PT_LOAD range in 4 MiB chunks and
writes only the pages that are not all zero, with ``pwrite`` at their own offsets, so zero
pages become holes. The output keeps the source's layout byte for byte, or, with ``note_room``
(what ``handoff capture`` asks for), /proc/vmcore's layout with that much room after the notes:
the segments' bytes unchanged, moved by whole pages (:mod:`handoff.capture.layout`).

**Reading.** The source is mapped (``mmap``, 64 MiB windows), as makedumpfile does by default:
for /proc/vmcore the kernel maps the old memory once per window, where every ``read`` would
map and unmap each 4 KiB page in turn (x86 ``copy_oldmem_page``), and the data is copied only
once, from the mapping into the page cache. A source that cannot be mapped is read with
``preadv`` into one page-aligned buffer; on that path a page the kernel cannot read (``EIO``)
is left as a hole and reported, so one bad page never costs the dump.

**Finding zero pages** costs a few calls per chunk, not one per page (under QEMU's TCG, where
the capture kernel of the tests runs, each Python-level step costs 20-50 times its native
time): a chunk that is all zero is one ``memcmp`` (``bytes.startswith`` of a zero buffer,
23-35 GB/s on the development host); otherwise eight 8-byte words of every page are gathered
with one strided ``memoryview`` slice and OR-folded per page with big-integer shifts, which
yields one byte per page, zero only where all 64 sampled bytes are zero. Only those candidate
pages are compared in full, each run of consecutive candidates with one ``memcmp`` first.
Measured in the e2e guest (QEMU TCG) on a 404 MiB vmcore with 217 MiB of data: 0.5 s to
classify every page (reading it with ``preadv`` alone took 1.1 s) and 2.3-3.0 s to save it,
where reading and testing each page in Python took 4.9-6.0 s and ``dd bs=1M`` of the whole
vmcore 4.3-5.0 s.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from handoff import errors as E
from handoff._slots import Frozen
from handoff.capture import layout as L

CHUNK = 4 << 20  # bytes tested and written per step
WINDOW = 64 << 20  # bytes of the source mapped at a time
PAGE = 4096
SAMPLES = 8  # words sampled per page before a page is compared in full
MAX_UNREADABLE_RANGES = 1000  # kept in the result; the byte count is always exact

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)

_PHDR64 = struct.Struct("<IIQQQQQQ")
_PHDR64_BE = struct.Struct(">IIQQQQQQ")


_SAVE_FIELDS = ("path", "method", "format", "source", "source_size", "size", "allocated",
                "copied", "zero_skipped", "unreadable", "unreadable_bytes", "seconds", "argv",
                "layout", "reader", "warnings", "note_room", "data_shift")


class SaveResult(Frozen):
    """How a dump was saved. Sizes in bytes; ``allocated`` is what the file takes on disk."""

    __slots__ = _SAVE_FIELDS
    path: str
    method: str  # "sparse-copy" or "makedumpfile"
    format: str  # "elf" or "kdump" (what the file turned out to be)
    source: str
    source_size: int
    size: int
    allocated: int
    copied: int  # bytes written (sparse copy)
    zero_skipped: int  # bytes of zero pages not written (sparse copy)
    unreadable: tuple[tuple[int, int], ...]  # (offset, length) left as holes
    unreadable_bytes: int
    seconds: float
    argv: tuple[str, ...]
    layout: str  # how the source was read: "elf" (headers + segments) or "whole-file"
    reader: str  # "mmap" (mapped windows) or "read" (preadv; unreadable pages found)
    warnings: tuple[str, ...]
    note_room: int | None  # bytes free after the notes, before the first PT_LOAD (layout.py)
    data_shift: int  # how far the segments' data moved from their source offsets

    def __init__(self, path: str, method: str, format: str, source: str, source_size: int,
                 size: int, allocated: int, copied: int = 0, zero_skipped: int = 0,
                 unreadable: tuple[tuple[int, int], ...] = (), unreadable_bytes: int = 0,
                 seconds: float = 0.0, argv: tuple[str, ...] = (), layout: str = "elf",
                 reader: str = "mmap", warnings: tuple[str, ...] = (),
                 note_room: int | None = None, data_shift: int = 0) -> None:
        values = (path, method, format, source, source_size, size, allocated, copied,
                  zero_skipped, unreadable, unreadable_bytes, seconds, argv, layout, reader,
                  warnings, note_room, data_shift)
        for name, value in zip(_SAVE_FIELDS, values):
            object.__setattr__(self, name, value)

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
                reader=self.reader,
                note_room=self.note_room,
                data_shift=self.data_shift,
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
    return L.merge_ranges([(0, max(head_end, min(first_load, size)))] + segs), None


class _Sink:
    """Writes the pages of a chunk that are not all zero at their offsets; counts the rest."""

    def __init__(self, fd: int, chunk: int, page: int) -> None:
        self.fd = fd
        self.page = page
        self.zero = bytes(max(chunk, page))  # calloc'd: untouched zero pages cost no memory
        self.copied = 0
        self.skipped = 0
        words = page // 8
        # Sampling needs whole 8-byte words and a power-of-two sample count per page.
        self.samples = SAMPLES if page % (8 * SAMPLES) == 0 and words >= SAMPLES else 0
        self.stride = words // SAMPLES if self.samples else 0

    def put(self, view: memoryview, offset: int) -> None:
        """Write the non-zero pages of ``view`` (a byte view), which came from ``offset``.

        Pages count from the start of ``view``; a partial last page is always written
        (ftruncate makes a zero tail a hole anyway).
        """
        n = len(view)
        zero = self.zero
        if zero.startswith(view):  # one memcmp: the long zero runs of unused memory
            self.skipped += n
            return
        page = self.page
        pages = n // page
        if pages == 0:
            self._write(view, offset)
            return
        flags = self._flags(view, pages)
        i = flags.find(0)
        if i < 0:  # every page has a non-zero sample: all data
            self._write(view, offset)
            return
        done = 0  # view[:done] is written or skipped
        while i >= 0:
            rest = flags[i:]
            j = i + len(rest) - len(rest.lstrip(b"\0"))  # candidates i..j-1
            a, b = i * page, j * page
            if zero.startswith(view[a:b]):
                holes = [(a, b)]
            else:  # some candidate has data beyond the samples: compare page by page
                holes = [(k, k + page) for k in range(a, b, page)
                         if zero.startswith(view[k:k + page])]
            for ha, hb in holes:
                if ha > done:
                    self._write(view[done:ha], offset + done)
                self.skipped += hb - ha
                done = hb
            i = flags.find(0, j)
        if done < n:
            self._write(view[done:], offset + done)

    def _flags(self, view: memoryview, pages: int) -> bytes:
        """One byte per page of ``view``: 0 when the sampled words of the page are all zero
        (a candidate zero page), non-zero when the page certainly holds data."""
        if not self.samples:
            zp, page = self.zero[: self.page], self.page
            return bytes(view[k * page:(k + 1) * page] != zp for k in range(pages))
        s = self.samples
        # SAMPLES words of every page, evenly spaced, in one strided copy.
        acc = int.from_bytes(view[: pages * self.page].cast("Q")[:: self.stride], "little")
        # OR-fold each page's group of s words (8*s bytes) into its lowest byte: shifting by
        # half, a quarter... of the group width brings every byte of a group onto byte 0
        # of that group (bits shifted in from the next group land only on bytes above it).
        sh = s * 32
        while sh >= 8:
            acc |= acc >> sh
            sh >>= 1
        return acc.to_bytes(pages * s * 8, "little")[:: s * 8]

    def _write(self, data: memoryview, offset: int) -> None:
        self.copied += len(data)
        while data:
            w = os.pwrite(self.fd, data, offset)
            data = data[w:]
            offset += w


class _Mapper:
    """Views of the source through ``mmap`` windows; ``view`` returns None once mapping
    has failed (the caller reads instead)."""

    def __init__(self, fd: int, size: int, window: int) -> None:
        self.fd = fd
        self.size = size
        self.window = window
        self.start = self.end = 0
        self.mv: memoryview | None = None
        self.ok = True

    def view(self, offset: int, length: int) -> memoryview | None:
        if not self.ok:
            return None
        if self.mv is None or not (self.start <= offset and offset + length <= self.end):
            self.mv = None  # unmapped once the last view of it is gone
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            end = min(self.size, max(start + self.window, offset + length))
            try:
                m = mmap.mmap(self.fd, end - start, access=mmap.ACCESS_READ, offset=start)
            except (OSError, ValueError, OverflowError):
                # not mappable (a pipe, an old kernel's /proc/vmcore, ...): read it
                self.ok = False
                return None
            self.mv, self.start, self.end = memoryview(m), start, end
        o = offset - self.start
        return self.mv[o:o + length]

    def close(self) -> None:
        self.mv = None


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
    map_source: bool = True,
    window: int = WINDOW,
    note_room: int = 0,
) -> SaveResult:
    """Copy the vmcore ``src`` to the new file ``dst`` (created, never overwritten), leaving
    zero pages as holes. Fsyncs ``dst`` unless ``sync`` is false. The source is mapped
    unless ``map_source`` is false or it cannot be; then it is read.

    With ``note_room``, the copy has at least that many free bytes between its notes and the
    first PT_LOAD's data (:mod:`handoff.capture.layout`), so that notes added later stay in
    the header area crash reads; the segments' data then moves by whole pages."""
    t0 = time.monotonic()
    sfd = _open_source(src)
    try:
        size = source_size(sfd)
        plan, kept = (L.plan_copy(sfd, size, note_room) if note_room else (None, ""))
        if plan is not None:
            ranges, why = list(plan.ranges), None
        else:
            ranges, why = copy_ranges(sfd, size)
        shift = plan.delta if plan is not None else 0
        mapper = _Mapper(sfd, size, max(window, chunk + mmap.ALLOCATIONGRANULARITY)) \
            if map_source and size else None
        sink, bad, bad_bytes, st = _write_copy(
            dst, sfd, ranges, shift, plan, size, mapper, chunk, page, progress, sync)
    finally:
        os.close(sfd)
    warnings = [why] if why else []
    if note_room and plan is None and why is None:
        warnings.append(f"kept the source's layout ({kept}): notes added later may lie "
                        "outside the header area crash reads")
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
        reader="mmap" if mapper and mapper.ok else "read",
        warnings=tuple(warnings),
        note_room=plan.room if plan is not None else None,
        data_shift=shift,
    )


def _write_copy(dst: str, sfd: int, ranges: list[tuple[int, int]], shift: int,
                plan: L.CopyPlan | None, size: int, mapper: _Mapper | None, chunk: int,
                page: int, progress: ProgressFn | None, sync: bool
                ) -> tuple[_Sink, list[tuple[int, int]], int, os.stat_result]:
    """Create ``dst`` and copy ``ranges`` into it (moved by ``shift``; ``plan``'s headers
    first), zero pages and the tail left as holes. Returns the sink (what was copied and
    skipped), the unreadable ranges, their bytes and ``dst``'s stat."""
    dfd = _create(dst)
    try:
        sink = _Sink(dfd, chunk, page)
        if plan is not None:  # headers and notes, in the new layout
            sink.put(memoryview(plan.head), 0)
        bad, bad_bytes = _copy(sfd, ranges, shift, sink, mapper, chunk, page, progress)
        if mapper:
            mapper.close()
        # trailing zero pages become a hole too
        os.ftruncate(dfd, plan.size if plan is not None else size)
        if sync:
            os.fsync(dfd)
        return sink, bad, bad_bytes, os.fstat(dfd)
    except OSError as ex:
        if ex.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise E.EnvironmentProblem(
                f"no space left writing {dst} ({ex.strerror}); the partial dump is kept",
                hint="free space in the dump directory or use --format kdump (makedumpfile)",
            ) from None
        raise
    finally:
        os.close(dfd)


def _open_source(src: str) -> int:
    try:
        return os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise E.EnvironmentProblem(
            f"no vmcore at {src}", hint="run this in the kdump capture kernel, or pass --vmcore"
        ) from None
    except PermissionError:
        raise E.EnvironmentProblem(f"cannot read {src} (permission denied)", hint="run as root")


def _copy(sfd: int, ranges: list[tuple[int, int]], shift: int, sink: _Sink,
          mapper: _Mapper | None, chunk: int, page: int,
          progress: ProgressFn | None) -> tuple[list[tuple[int, int]], int]:
    """Copy ``ranges`` of the source into ``sink``, ``shift`` bytes later, a chunk at a time:
    through the mapping where it maps, else read; a range that cannot be read (a poisoned
    page) is copied page by page and what stays unreadable is zeros. Returns the unreadable
    ranges and their byte count."""
    total = sum(b - a for a, b in ranges)
    buf: memoryview | None = None
    done = 0
    bad: list[tuple[int, int]] = []
    bad_bytes = 0
    for a, b in ranges:
        off = a
        while off < b:
            want = min(chunk, b - off)
            view = mapper.view(off, want) if mapper else None
            if view is None:
                if buf is None:
                    # Page-aligned (anonymous mmap): the kernel copies into it at memory
                    # speed, where a bytearray's malloc'd, 16-byte-offset buffer made reads
                    # 5x slower (measured).
                    buf = memoryview(mmap.mmap(-1, chunk))
                    _advise_sequential(sfd)
                try:
                    n = _read_into(sfd, buf[:want], off)
                except OSError as ex:
                    if ex.errno not in (errno.EIO, errno.EFAULT, errno.ENXIO, errno.EINVAL):
                        raise
                    n, lost = _read_pagewise(sfd, buf, want, off, page, bad)
                    bad_bytes += lost
                if n < want:  # the source ended early: keep what there is
                    bad_bytes += _note_bad(bad, off + n, want - n)
                view = buf[:n]
            if len(view):
                sink.put(view, off + shift)
            del view
            off += want
            done += want
            if progress:
                progress(done, total)
    return bad, bad_bytes


def _advise_sequential(fd: int) -> None:
    try:  # a larger readahead on a regular file, as cp asks for; /proc/vmcore ignores it
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except OSError:
        pass


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
    from handoff import outfile

    # 0600: a dump holds all of the dead kernel's memory (makedumpfile does the same).
    # O_EXCL|O_NOFOLLOW: a name planted there, symlink or not, is refused, never followed.
    return outfile.create_new(path, 0o600)


# --- makedumpfile ----------------------------------------------------------------------------

# Options whose output handoff cannot put notes into, or that write several files.
_REFUSED_OPTIONS = {
    "-F": "flattened output has no note area; drop -F",
    "--split": "split dumps are several files; drop --split",
    "--reassemble": "not a capture option",
    "-R": "not a capture option",
    "--dump-dmesg": "not a capture option",
    "-f": "it overwrites an existing file (and follows a symlink there); a dump is never "
          "overwritten",
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
    import shutil

    return shutil.which("makedumpfile")


def makedumpfile_version(tool: str) -> str | None:
    """``makedumpfile -v``'s version line, e.g. "makedumpfile: version 1.7.2 (...)"."""
    import subprocess

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
    import subprocess

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
    from handoff.formats.dumpformat import dump_format

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
