"""Write synthetic makedumpfile dumps for tests: kdump-compressed ("KDUMP   ") and flattened.

The layout is the one makedumpfile 1.7 writes (diskdump_mod.h, write_kdump_header()):
disk_dump_header in block 0, kdump_sub_header at block 1 followed by the ELF notes (VMCOREINFO
is the descriptor of the VMCOREINFO note, so offset_vmcoreinfo points into the note area), then
the two bitmaps. No page is marked dumpable, so there is no page data; readers that open the
file (drgn/libkdumpfile) see an all-excluded dump.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from helpers.elfwriter import default_notes

BLOCK = 4096
DDH = "8si65s65s65s65s65s65s6xqqIiiIIIIIIi"
SUB = "QiiQQqQqQqQQQQ"
SUB_SIZE = struct.calcsize("<" + SUB)


def _uts(s: str) -> bytes:
    return s.encode()[:64]


def kdump_bytes(
    notes: Sequence[bytes] | None = None,
    *,
    header_version: int = 6,
    block_size: int = BLOCK,
    release: str = "6.1.0-28-amd64",
    nodename: str = "testhost",
    machine: str = "x86_64",
    timestamp: int = 1700000000,
    nr_cpus: int = 2,
    max_mapnr: int = 0x8000,
    dump_level: int = 31,
    status: int = 1,  # DUMP_DH_COMPRESSED_ZLIB, as makedumpfile -c sets it
    endian: str = "<",
    note_offset: int | None = None,
    vmcoreinfo_range: tuple[int, int] | None = None,
    sub_hdr_size: int | None = None,
) -> bytes:
    """A complete kdump-compressed file. ``note_offset``/``vmcoreinfo_range``/``sub_hdr_size``
    override the computed layout (hostile tests)."""
    note_list = list(notes if notes is not None else default_notes())
    blob = b"".join(note_list)
    noff = block_size + SUB_SIZE
    # VMCOREINFO is the descriptor of the note named VMCOREINFO, as in makedumpfile.
    voff = vsize = 0
    at = noff
    for n in note_list:
        namesz, descsz = struct.unpack_from("<II", n)
        if n[12 : 12 + namesz] == b"VMCOREINFO\x00":
            voff = at + 12 + (-(-namesz // 4) * 4)
            vsize = descsz
        at += len(n)
    if vmcoreinfo_range is not None:
        voff, vsize = vmcoreinfo_range
    if header_version < 3:
        voff = vsize = 0
    sub_blocks = -(-(SUB_SIZE + len(blob)) // block_size)
    if sub_hdr_size is not None:
        sub_blocks = sub_hdr_size
    bitmap_bytes = -(-max_mapnr // 8)
    bitmap_blocks = 2 * -(-bitmap_bytes // block_size)
    utsname = [_uts(x) for x in ("Linux", nodename, release, "#1 SMP Debian", machine, "(none)")]
    dh = struct.pack(endian + DDH, b"KDUMP   ", header_version, *utsname, timestamp, 0, status,
                     block_size, sub_blocks, bitmap_blocks, max_mapnr & 0xFFFFFFFF, 0, 0, 0, 0,
                     nr_cpus)
    sub = struct.pack(endian + SUB, 0, dump_level, 0, 0, 0, voff, vsize,
                      note_offset if note_offset is not None else noff,
                      len(blob) if header_version >= 4 else 0, 0, 0, 0, 0, max_mapnr)
    out = bytearray(block_size * (1 + sub_blocks + bitmap_blocks))
    out[: len(dh)] = dh
    out[block_size : block_size + SUB_SIZE] = sub
    if header_version >= 3:
        out[noff : noff + len(blob)] = blob
    # First bitmap: every pfn is RAM; second (dumpable): none.
    b1 = (1 + sub_blocks) * block_size
    out[b1 : b1 + bitmap_bytes] = b"\xff" * bitmap_bytes
    return bytes(out)


FLAT_SIG = b"makedumpfile".ljust(16, b"\x00")


def flatten(image: bytes, *, chunk: int = 4096, order: Sequence[int] | None = None,
            extra: Sequence[tuple[int, bytes]] = (), end_marker: bool = True) -> bytes:
    """``image`` as makedumpfile -F writes it: a 4096-byte header, then big-endian
    (offset, size) chunks. ``order`` permutes the chunks; ``extra`` chunks are appended
    (later ones override earlier ones when reassembled)."""
    out = bytearray(FLAT_SIG + struct.pack(">qq", 1, 1))
    out += bytes(4096 - len(out))
    pieces = [(o, image[o : o + chunk]) for o in range(0, len(image), chunk)]
    if order is not None:
        pieces = [pieces[i] for i in order]
    for off, data in list(pieces) + list(extra):
        out += struct.pack(">qq", off, len(data)) + data
    if end_marker:
        out += struct.pack(">qq", -1, -1)
    return bytes(out)
