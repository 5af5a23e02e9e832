"""makedumpfile's dump formats: kdump-compressed ("KDUMP   ") and flattened ("makedumpfile").

Layouts follow makedumpfile's diskdump_mod.h and makedumpfile.h (LP64 targets):

- kdump-compressed: ``struct disk_dump_header`` at offset 0, ``struct kdump_sub_header`` at
  ``block_size`` (DISKDUMP_HEADER_BLOCKS = 1). The sub-header grew over time; a field is read
  only if ``header_version`` says it is there (vmcoreinfo from 3, notes from 4, eraseinfo from
  5, 64-bit pfns from 6). The note area holds the original vmcore's ELF notes.
- flattened (``makedumpfile -F``): a 4096-byte header with the signature, then a stream of
  chunks, each a big-endian (offset, size) pair and ``size`` bytes to place at ``offset`` of the
  dump, ended by (-1, -1). :class:`FlatView` reassembles only the byte ranges asked for,
  scanning chunk headers lazily and boundedly; page data is never read.

Nothing here reads page data. :func:`data_end` reads the second bitmap and the last page
descriptors, to tell a complete dump from a truncated copy.
"""

from __future__ import annotations

import struct

from handoff._slots import Slots
from handoff.budget import CHUNK_COST, Budget, spend
from handoff.errors import BadContainer
from handoff.formats.blob import Blob, read_exact
from handoff.formats.elfcore import MAX_NOTE_BYTES, Note, iter_notes

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096  # MAX_SIZE_MDF_HEADER
TYPE_FLAT_HEADER = 1
VERSION_FLAT_HEADER = 1
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8

MAX_HEADER_VERSION = 1000
MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 1 << 20
MAX_VMCOREINFO = 1 << 20
MAX_FLAT_CHUNKS = 1 << 20  # chunk headers scanned before giving up on a range
MAX_BITMAP_COUNTED = 32 << 20  # one bitmap: 1 TiB of 4 KiB pages; larger ones are not counted
PAGE_DESC = "qIIQ"  # struct page_desc: offset, size, flags, page_flags (diskdump_mod.h)
PAGE_DESC_SIZE = 24
TAIL_DESCS = 4096  # descriptors read from the end of the table
_32BIT_MACHINES = {"i386", "i486", "i586", "i686", "arm", "armv7l", "armv6l", "mips", "ppc", "s390"}

# struct disk_dump_header, LP64: timeval is 8-aligned, so 6 pad bytes follow utsname.
_DDH = "8si65s65s65s65s65s65s6xqqIiiIIIIIIi"
# struct kdump_sub_header, LP64.
_SUB = "QiiQQqQqQqQQQQ"
DDH_SIZE = struct.calcsize("<" + _DDH)
SUB_SIZE = struct.calcsize("<" + _SUB)
assert DDH_SIZE == 464 and SUB_SIZE == 104


class KdumpHeader(Slots):
    __slots__ = (
        "bitmap_blocks",
        "block_size",
        "dump_level",
        "endian",
        "header_version",
        "machine",
        "max_mapnr",
        "nodename",
        "notes",
        "nr_cpus",
        "offset_note",
        "offset_vmcoreinfo",
        "phys_base",
        "release",
        "size_note",
        "size_vmcoreinfo",
        "status",
        "sub_hdr_size",
        "sysname",
        "timestamp",
        "version",
        "vmcoreinfo",
    )
    _repr_skip = ('vmcoreinfo',)
    header_version: int
    endian: str
    sysname: str
    nodename: str
    release: str
    version: str
    machine: str
    timestamp: int  # tv_sec of struct timeval
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    nr_cpus: int
    phys_base: int
    dump_level: int | None
    max_mapnr: int | None
    offset_vmcoreinfo: int | None
    size_vmcoreinfo: int | None
    offset_note: int | None
    size_note: int | None
    notes: list[Note]
    vmcoreinfo: bytes | None

    def __init__(
        self,
        header_version: int,
        endian: str,
        sysname: str,
        nodename: str,
        release: str,
        version: str,
        machine: str,
        timestamp: int,
        status: int,
        block_size: int,
        sub_hdr_size: int,
        bitmap_blocks: int,
        nr_cpus: int,
        phys_base: int = 0,
        dump_level: int | None = None,
        max_mapnr: int | None = None,
        offset_vmcoreinfo: int | None = None,
        size_vmcoreinfo: int | None = None,
        offset_note: int | None = None,
        size_note: int | None = None,
        notes: list[Note] | None = None,
        vmcoreinfo: bytes | None = None,
    ) -> None:
        self.header_version = header_version
        self.endian = endian
        self.sysname = sysname
        self.nodename = nodename
        self.release = release
        self.version = version
        self.machine = machine
        self.timestamp = timestamp
        self.status = status
        self.block_size = block_size
        self.sub_hdr_size = sub_hdr_size
        self.bitmap_blocks = bitmap_blocks
        self.nr_cpus = nr_cpus
        self.phys_base = phys_base
        self.dump_level = dump_level
        self.max_mapnr = max_mapnr
        self.offset_vmcoreinfo = offset_vmcoreinfo
        self.size_vmcoreinfo = size_vmcoreinfo
        self.offset_note = offset_note
        self.size_note = size_note
        self.notes = [] if notes is None else notes
        self.vmcoreinfo = vmcoreinfo

    @property
    def incomplete(self) -> bool:
        return bool(self.status & DUMP_DH_COMPRESSED_INCOMPLETE)


def _cstr(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("utf-8", "replace")


def is_kdump(head: bytes) -> bool:
    return head[:8] == KDUMP_SIGNATURE


def is_flattened(head: bytes) -> bool:
    return head[:16] == FLAT_SIGNATURE + bytes(4)


def parse(blob: Blob, *, read_notes: bool = True, budget: Budget | None = None) -> KdumpHeader:
    """Parse a kdump-compressed dump's headers and note area, charging ``budget``."""
    raw = read_exact(blob, 0, DDH_SIZE, "kdump header")
    if raw[:8] == DISKDUMP_SIGNATURE:
        raise BadContainer(
            "this is an old diskdump (\"DISKDUMP\") dump, which handoff does not read", offset=0
        )
    if raw[:8] != KDUMP_SIGNATURE:
        raise BadContainer("not a kdump-compressed dump (bad signature)", offset=0)
    # The header is in the dumped machine's byte order; header_version tells which.
    e = "<"
    (ver,) = struct.unpack_from("<i", raw, 8)
    if not 0 <= ver <= MAX_HEADER_VERSION:
        (bver,) = struct.unpack_from(">i", raw, 8)
        if not 0 <= bver <= MAX_HEADER_VERSION:
            raise BadContainer(f"kdump header_version {ver} is absurd", offset=8)
        e = ">"
    h = struct.unpack(e + _DDH, raw)
    machine = _cstr(h[6])
    if machine in _32BIT_MACHINES:
        raise BadContainer(
            f"kdump-compressed dump of a 32-bit machine ({machine}) is not supported", offset=12
        )
    kh = KdumpHeader(
        header_version=h[1], endian=e, sysname=_cstr(h[2]), nodename=_cstr(h[3]),
        release=_cstr(h[4]), version=_cstr(h[5]), machine=machine, timestamp=h[8],
        status=h[10], block_size=h[11], sub_hdr_size=h[12], bitmap_blocks=h[13], nr_cpus=h[19],
    )
    bs = kh.block_size
    if bs < MIN_BLOCK_SIZE or bs > MAX_BLOCK_SIZE or bs & (bs - 1):
        raise BadContainer(
            f"kdump block_size {bs} is not a power of two in [{MIN_BLOCK_SIZE}, {MAX_BLOCK_SIZE}]",
            offset=428,
        )
    if kh.sub_hdr_size < 1 or kh.sub_hdr_size > (1 << 20):
        raise BadContainer(f"kdump sub_hdr_size {kh.sub_hdr_size} blocks is absurd", offset=432)
    if kh.header_version < 1:
        return kh
    sub = struct.unpack(e + _SUB, read_exact(blob, bs, SUB_SIZE, "kdump sub-header"))
    kh.phys_base, kh.dump_level = sub[0], sub[1]
    if kh.header_version >= 6:
        kh.max_mapnr = sub[13]
    if kh.header_version >= 3:
        kh.offset_vmcoreinfo, kh.size_vmcoreinfo = sub[5], sub[6]
        if kh.size_vmcoreinfo:
            _check_range(kh.offset_vmcoreinfo, kh.size_vmcoreinfo, bs, MAX_VMCOREINFO,
                         "VMCOREINFO", bs + 32)
            spend(budget, kh.size_vmcoreinfo, "VMCOREINFO", kh.offset_vmcoreinfo)
            kh.vmcoreinfo = read_exact(blob, kh.offset_vmcoreinfo, kh.size_vmcoreinfo,
                                       "kdump VMCOREINFO")
    if kh.header_version >= 4:
        kh.offset_note, kh.size_note = sub[7], sub[8]
        if kh.size_note and read_notes:
            _check_range(kh.offset_note, kh.size_note, bs, MAX_NOTE_BYTES, "note area",
                         bs + 48)
            spend(budget, kh.size_note, "the note area", kh.offset_note)
            buf = read_exact(blob, kh.offset_note, kh.size_note, "kdump note area")
            kh.notes = list(iter_notes(buf, kh.offset_note, endian=e, budget=budget))
    return kh


def data_end(blob: Blob, kh: KdumpHeader) -> tuple[int, str]:
    """How large a complete copy of this dump is at least, and what ends there.

    makedumpfile writes (write_kdump_header(), write_kdump_pages_and_bitmap_cyclic()) the
    headers, the two bitmaps (``bitmap_blocks`` blocks after the sub-header), one page
    descriptor per page set in the second bitmap, then the page data in pfn order, and the
    eraseinfo last; so the end is the furthest of the bitmaps, the descriptor table, what
    the last descriptors point at, and the eraseinfo. Only the bitmap and the last
    :data:`TAIL_DESCS` descriptors are read.
    """
    bs, e = kh.block_size, kh.endian
    bitmap_at = (1 + kh.sub_hdr_size) * bs
    desc_at = bitmap_at + kh.bitmap_blocks * bs
    if desc_at > blob.size:
        return desc_at, "the bitmaps"
    end, what = desc_at, "the bitmaps"
    if kh.header_version >= 5:
        raw = read_exact(blob, bs + 64, 16, "kdump sub-header eraseinfo")
        off_erase, size_erase = struct.unpack(e + "qQ", raw)
        if size_erase and off_erase + size_erase > end:
            end, what = off_erase + size_erase, "the eraseinfo"
    half = kh.bitmap_blocks * bs // 2
    if half > MAX_BITMAP_COUNTED:
        return end, what + " (the page table is too large to count)"
    bitmap2 = read_exact(blob, bitmap_at + half, half, "kdump second bitmap")
    pages = int.from_bytes(bitmap2, "little").bit_count()
    table_end = desc_at + pages * PAGE_DESC_SIZE
    if table_end > blob.size:
        return max(end, table_end), f"the page descriptors ({pages} pages)"
    if table_end > end:
        end, what = table_end, f"the page descriptors ({pages} pages)"
    n = min(pages, TAIL_DESCS)
    tail = read_exact(blob, table_end - n * PAGE_DESC_SIZE, n * PAGE_DESC_SIZE,
                      "kdump page descriptors")
    for off, size, _flags, _pf in struct.iter_unpack(e + PAGE_DESC, tail):
        if off + size > end:
            end, what = off + size, "the page data"
    return end, what


def truncation(blob: Blob, kh: KdumpHeader) -> str | None:
    """Why this kdump-compressed file is not whole, or None if it is (see :func:`data_end`)."""
    end, what = data_end(blob, kh)
    if end <= blob.size:
        return None
    return (f"the dump is truncated: {what} end at offset {end}, but the file has only "
            f"{blob.size} bytes ({end - blob.size} missing)")


def _check_range(off: int, size: int, bs: int, cap: int, what: str, field_at: int) -> None:
    # makedumpfile puts both right after the sub-header, but note injection (handoff capture)
    # may move the note area elsewhere, as readers such as crash and libkdumpfile allow: only
    # the size cap and the file bounds (read_exact) apply, and the main header block is off
    # limits.
    if size > cap:
        raise BadContainer(f"kdump {what} size {size} exceeds {cap} bytes", offset=field_at)
    if off < bs:
        raise BadContainer(
            f"kdump {what} at offset {off} overlaps the main header (block size {bs})",
            offset=field_at,
        )


class FlatView:
    """The dump inside a flattened file, reassembled on demand from its chunk stream.

    ``pread`` scans chunk headers only until the requested range is covered (later chunks
    override earlier ones among those scanned) and reads only the overlapping bytes.
    The logical size is unknown until the end, so ``size`` is a large bound: callers must
    cap their own reads, as elfcore and :func:`parse` do.
    """

    size = 1 << 62

    def __init__(self, blob: Blob, budget: Budget | None = None) -> None:
        head = read_exact(blob, 0, 32, "flattened header")
        if not is_flattened(head):
            raise BadContainer("not a makedumpfile flattened file (bad signature)", offset=0)
        ftype, fver = struct.unpack_from(">qq", head, 16)
        if ftype != TYPE_FLAT_HEADER:
            raise BadContainer(f"flattened header type {ftype} is not 1", offset=16)
        if fver != VERSION_FLAT_HEADER:
            raise BadContainer(
                f"flattened format version {fver} is not 1 (this reader reads version 1)",
                offset=24,
            )
        self.blob = blob
        self.budget = budget
        self.scanned = 0  # chunk headers scanned, empty ones included
        self.chunks: list[tuple[int, int, int]] = []  # (dump offset, size, file offset)
        self.pos = FLAT_HEADER_SIZE
        self.done = False
        self.why = ""  # why scanning stopped
        self._win_at = 0
        self._win = b""

    def _header(self, at: int) -> bytes:
        if not (self._win_at <= at and at + 16 <= self._win_at + len(self._win)):
            self._win_at = at
            self._win = self.blob.pread(at, min(64 << 10, max(self.blob.size - at, 0)))
        o = at - self._win_at
        return self._win[o : o + 16]

    def _scan(self, budget: int) -> None:
        for _ in range(budget):
            if self.done:
                return
            if self.scanned >= MAX_FLAT_CHUNKS:
                self.done = True
                self.why = f"gave up after {self.scanned} chunks"
                return
            at = self.pos
            if at >= self.blob.size:
                self.done = True  # no end marker: makedumpfile was interrupted, or a head copy
                self.why = "the file ends without an end marker"
                return
            hdr = self._header(at)
            if len(hdr) < 16:
                self.done = True
                self.why = f"the file ends inside the chunk header at offset {at}"
                return
            off, size = struct.unpack(">qq", hdr)
            if off == -1 and size == -1:
                self.done = True
                self.why = "the stream ends"
                return
            if off < 0 or size < 0 or size > (1 << 62) - off:
                raise BadContainer(
                    f"flattened chunk at offset {at} has offset {off} and size {size}", offset=at
                )
            self.scanned += 1
            spend(self.budget, CHUNK_COST, "flattened chunks", at)
            have = self.blob.size - at - 16
            if size > have:
                # A truncated copy: keep what is there; ranges it misses are reported by pread.
                self.chunks.append((off, have, at + 16))
                self.pos = self.blob.size
                self.done = True
                self.why = (f"the file ends inside the chunk at offset {at}, which claims "
                            f"{size} bytes")
                return
            if size:  # an empty chunk places nothing: keeping it would only cost every pread
                self.chunks.append((off, size, at + 16))
            self.pos = at + 16 + size

    def pread(self, offset: int, length: int) -> bytes:
        end = offset + length
        covered: list[tuple[int, int]] = []  # disjoint, sorted parts of [offset, end) seen
        seen = 0
        budget = 16  # headers come first in makedumpfile's stream: look a little, then more
        while True:
            new = [(max(o, offset), min(o + s, end)) for o, s, _ in self.chunks[seen:]
                   if o < end and o + s > offset]
            # Each chunk is looked at once per pread, whatever the number of rounds.
            spend(self.budget, len(self.chunks) - seen, "flattened chunk lookups", offset)
            seen = len(self.chunks)
            if new:  # merge the sorted new spans into the disjoint list: no re-sort of all
                covered = _merge(covered + new) if len(new) > 1 or covered else new
            if covered and covered[0][0] <= offset and covered[0][1] >= end:
                break
            if self.done:
                raise BadContainer(
                    f"dump bytes [{offset}, {end}) are not in the flattened stream ({self.why})",
                    offset=offset,
                )
            self._scan(budget)
            budget = min(budget * 2, 4096)
        out = bytearray(length)
        spend(self.budget, len(self.chunks) + length, "flattened reads", offset)
        for o, s, src in self.chunks:  # in stream order: a later chunk overrides an earlier one
            a, b = max(o, offset), min(o + s, end)
            if a < b:
                out[a - offset : b - offset] = self.blob.pread(src + (a - o), b - a)
        return bytes(out)

    def head(self, length: int) -> bytes:
        """The first bytes of the dump, as many as the stream has up to ``length``."""
        for n in (length, 8):
            try:
                return self.pread(0, n)
            except BadContainer:
                if not self.done:
                    raise  # a malformed chunk, not a short stream
                continue
        raise BadContainer("the flattened stream holds no data at offset 0",
                           offset=FLAT_HEADER_SIZE)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out
