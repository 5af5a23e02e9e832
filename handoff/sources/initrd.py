"""Initrds: concatenated cpio archives, each raw newc or compressed, as init/initramfs.c reads them.

The kernel's ``unpack_to_rootfs()`` skips NUL bytes between archives, reads an uncompressed
archive only where it starts on a 4-byte boundary, and otherwise picks a decompressor by magic.
Inside decompressed output, archives may follow each other with NUL padding. This module
follows the same rules and looks inside every member *by content* (a record, note file, region
or nested initrd), never by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from handoff._slots import Slots
from handoff.budget import MEMBER_COST, BudgetExceeded, spend
from handoff.errors import BadContainer
from handoff.formats import cpio
from handoff.formats.blob import Blob
from handoff.sources.blob import BytesBlob, SubBlob
from handoff.sources.context import Context, MissingTool
from handoff.sources.model import Container, Problem
from handoff.sources.sniff import SNIFF, SUPPORTED, compression_of, looks_like_initrd, sniff

MAX_MEMBER = 64 << 20  # a compressed member read into memory to look inside
MAX_DEPTH = 3  # initrd inside a cpio member inside ...
MAX_ZERO_RUN = 1 << 30

__all__ = ["BlobStream", "Context", "MissingTool", "compression_of", "looks_like_initrd",
           "scan_initrd"]

# Examines one member by content, as detect.scan_blob does (which passes itself here).
Scan = Callable[..., Container]


class BlobStream:
    """A cpio :class:`handoff.formats.cpio.Stream` over a blob, from ``pos``."""

    def __init__(self, blob: Blob, pos: int) -> None:
        self.blob = blob
        self.pos = pos

    def read(self, n: int) -> bytes:
        out = self.blob.pread(self.pos, n)
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        k = max(0, min(n, self.blob.size - self.pos))
        self.pos += k
        return k

    def peek(self, n: int) -> bytes:
        return self.blob.pread(self.pos, n)

    def skip_zeros(self, limit: int = MAX_ZERO_RUN) -> int:
        start = self.pos
        while self.pos - start < limit:
            w = self.blob.pread(self.pos, 1 << 16)
            if not w:
                break
            nz = len(w) - len(w.lstrip(b"\x00"))
            self.pos += nz
            if nz < len(w):
                break
        return self.pos - start


class Part(Slots):
    """One archive of an initrd, as :func:`archives` yields it. ``stream`` reads the archive's
    cpio data (raw or decompressed), or is None when it cannot be read here (zstd without the
    zstd program); ``raw`` says the stream reads the file as is."""

    __slots__ = ("compressed_size", "index", "method", "offset", "raw", "stream")
    index: int
    offset: int
    method: str | None
    stream: Any
    raw: bool
    compressed_size: int | None

    def __init__(
        self,
        index: int,
        offset: int,
        method: str | None,
        stream: Any,
        raw: bool,
        compressed_size: int | None = None,
    ) -> None:
        self.index = index
        self.offset = offset
        self.method = method
        self.stream = stream
        self.raw = raw
        self.compressed_size = compressed_size


def archives(blob: Blob, ctx: Context) -> Iterator[Part]:
    """The concatenated archives of an initrd, walked as the kernel does (init/initramfs.c):
    zero padding skipped, an uncompressed archive only at a 4-byte-aligned offset, each
    compressed one decompressed within ``ctx``'s limits. The caller reads members from
    ``part.stream``; on resuming, the rest of the part is drained and the walk moves on.
    Junk, an unknown compression or a misaligned archive raise :class:`BadContainer`."""
    # Imported here: the decompressors bring subprocess and threading, which a scan of a file
    # that holds no compressed archive (a vmcore, a raw record) should not pay for.
    from handoff.sources.decompress import Decompressed, zstd_frames_length

    pos = 0
    index = 0
    while pos < blob.size:
        zs = BlobStream(blob, pos)
        zs.skip_zeros()
        pos = zs.pos
        if pos >= blob.size:
            return
        head = blob.pread(pos, 8)
        method = compression_of(head)
        index += 1
        if head[:5] == b"07070":
            if pos % 4:
                raise BadContainer(
                    f"uncompressed cpio archive at offset {pos} is not 4-byte aligned: the "
                    "kernel ignores it (\"invalid magic at start of compressed archive\")",
                    offset=pos,
                )
            bs = BlobStream(blob, pos)
            yield Part(index, pos, None, bs, raw=True)
            pos = bs.pos
        elif method == "zstd" and ctx.zstd() is None:
            length = zstd_frames_length(blob, pos)
            yield Part(index, pos, method, None, raw=False, compressed_size=length)
            pos += length
        elif method in SUPPORTED:
            ds = Decompressed(blob, pos, method, ctx)
            part = Part(index, pos, method, ds, raw=False)
            try:
                yield part
                ds.drain()
            finally:
                ds.close()
            assert ds.end is not None
            part.compressed_size = ds.end - pos
            pos = ds.end
        elif method:
            raise BadContainer(
                f"{method}-compressed archive at offset {pos}: handoff does not read {method}",
                offset=pos,
            )
        else:
            raise BadContainer(
                f"junk at offset {pos} of the initrd (not a cpio archive or a known "
                f"compression: {head[:4].hex()})",
                offset=pos,
            )


def scan_initrd(blob: Blob, c: Container, ctx: Context, base: int | None, scan: Scan) -> None:
    """Walk the archives of an initrd, filling ``c`` (archives, found, notes, problems).

    A structural problem stops the walk, as it stops the kernel; it is kept in ``c.problems``
    (the caller decides whether it is fatal) and records found before it are kept. ``base`` is
    the file offset of ``blob[0]``, or None if ``blob`` is decompressed data. ``scan`` examines
    a member that is itself a container.
    """
    parts: list[tuple[dict[str, Any], Part]] = []
    try:
        for part in archives(blob, ctx):
            info = _archive_info(part.index, part.offset, part.method)
            c.archives.append(info)
            parts.append((info, part))
            if part.stream is None:  # zstd, and no zstd program
                info["examined"] = False
                c.problems.append(Problem(
                    f"zstd-compressed archive at offset {part.offset}: the zstd program is not "
                    "installed, so handoff cannot look inside it (install zstd)", part.offset))
                c.missing_tools.append("zstd")
            elif part.raw:
                _walk_archives(part.stream, c, ctx, info, scan, raw=blob, base=base,
                               single=True)
            else:
                _walk_archives(part.stream, c, ctx, info, scan)
    except BudgetExceeded:
        raise  # the whole input is refused, not one archive of it
    except BadContainer as e:
        c.problems.append(Problem(str(e), e.offset))
    for info, part in parts:  # a compressed part's size is known once the walk passed it
        if part.compressed_size is not None:
            info["compressed_size"] = part.compressed_size


def _archive_info(index: int, offset: int, method: str | None) -> dict[str, Any]:
    return {"index": index, "offset": offset, "compression": method, "members": 0,
            "unsafe_names": []}


def _walk_archives(s: Any, c: Container, ctx: Context, info: dict[str, Any], scan: Scan, *,
                   raw: Blob | None = None, base: int | None = None, single: bool = False) -> None:
    """Archives in one stream; a decompressed stream may hold several, NUL-padded.

    ``raw`` is the blob the stream reads as is (an uncompressed archive), so member data can be
    examined in place; ``base`` is its file offset, if any.
    """
    while True:
        s.skip_zeros()
        head = s.peek(6)
        if not head:
            return
        if head[:5] != b"07070":
            raise BadContainer(
                f"junk within the {info['compression']} archive at offset {info['offset']} "
                f"(decompressed offset {s.pos})",
                offset=info["offset"],
            )
        reader = cpio.ArchiveReader(s)
        for m in reader.members():
            info["members"] += 1
            # Members of every archive of the input count against one budget.
            spend(ctx.work, MEMBER_COST + len(m.name), "cpio members", m.offset)
            why = m.unsafe
            if why:
                info["unsafe_names"].append(m.name)
                c.problems.append(Problem(
                    f"refused cpio member {m.name!r} at offset {m.offset} ({why}); not examined",
                    m.offset))
                continue
            if not m.is_file or m.size == 0:
                continue
            loc = {"member": m.name, "archive": info["index"], "archive_offset": info["offset"],
                   "compression": info["compression"]}
            if raw is not None:
                sub: Blob = SubBlob(raw, m.data_offset, m.size)
                _look_inside(sub, c, ctx, loc, None if base is None else base + m.data_offset,
                             scan)
            else:
                head = reader.read_data(SNIFF)
                if not _interesting(head):
                    continue
                if m.size > MAX_MEMBER:
                    c.problems.append(Problem(
                        f"cpio member {m.name!r} is {m.size} bytes, more than the "
                        f"{MAX_MEMBER}-byte examination limit; not examined", m.offset))
                    continue
                spend(ctx.work, m.size, "cpio member data held for examination", m.offset)
                data = head + reader.read_data(m.size - len(head))
                _look_inside(BytesBlob(data), c, ctx, loc, None, scan)
        if single:
            return


def _interesting(head: bytes) -> bool:
    return sniff(head) not in ("unknown", "empty", "elf")


def _look_inside(sub: Blob, c: Container, ctx: Context, loc: dict[str, Any],
                 file_offset: int | None, scan: Scan) -> None:
    """Examine one member by content; its own problems are reported, never fatal."""
    kind = sniff(sub.pread(0, SNIFF))
    if kind in ("unknown", "empty", "elf"):
        return
    if ctx.depth >= MAX_DEPTH:
        c.problems.append(Problem(f"cpio member {loc['member']!r}: containers nested deeper "
                                  f"than {MAX_DEPTH}; not examined", file_offset))
        return
    ctx.depth += 1
    try:
        inner = scan(sub, loc["member"], ctx=ctx, member_loc=loc, base=file_offset)
    except BudgetExceeded:
        raise
    except BadContainer as e:
        if isinstance(e, MissingTool):
            c.missing_tools.append("zstd")
        c.problems.append(Problem(f"cpio member {loc['member']!r}: {e}", e.offset))
        return
    finally:
        ctx.depth -= 1
    if inner.kind == "unknown":
        return
    for f in inner.found:
        f.container = c
        c.found.append(f)
    c.notes.extend(inner.notes)
    c.reports.extend(inner.reports)
    c.slots.extend(inner.slots)
    c.problems.extend(Problem(f"cpio member {loc['member']!r}: {p}", p.offset)
                      for p in inner.problems)
    c.missing_tools.extend(inner.missing_tools)
    if inner.vmcoreinfo is not None and c.vmcoreinfo is None:
        c.vmcoreinfo = inner.vmcoreinfo
