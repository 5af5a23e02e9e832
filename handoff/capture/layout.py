"""Where an ELF dump keeps its notes: the header area crash(8) reads, and the room left in it.

crash reads an ELF vmcore's *header area* only: the bytes from offset 0 up to the lowest
non-zero ``p_offset`` of the program headers after the first (crash's netdump.c,
``resize_elf_header()``). It takes the first program header as the PT_NOTE segment and walks
its notes inside that area; a note past it ends the walk with "Elf64_Nhdr pointer: ... ELF
header end: ..." (``dump_Elf64_Nhdr()``), and then crash finds no VMCOREINFO and cannot open
the dump. /proc/vmcore has this shape: ``merge_note_headers_elf64()`` (fs/proc/vmcore.c) puts
one merged PT_NOTE first, with ``p_filesz`` exactly the notes' size, its notes on the page after
the program headers, and the PT_LOAD data on the page after the notes.

So a dump stays readable by crash as long as its notes only grow into the gap between the end
of the note segment and the first PT_LOAD's data. :func:`plan_copy` plans a copy of an ELF
dump in that shape with a gap of at least the room asked for: the ELF header and program
headers first, then the notes, then every other segment's bytes, unchanged, at its old offset
plus a whole number of pages (so page alignment, which ``mmap`` of /proc/vmcore and crash's
kdump detection look at, is kept).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from handoff._slots import Frozen

PAGE = 4096
PT_NOTE = 4
PN_XNUM = 0xFFFF
EHDR64_SIZE = 64
PHDR64_SIZE = 56
MAX_PHNUM = 1 << 20
MAX_NOTES_COPIED = 64 << 20  # what handoff.formats.elfcore reads (MAX_NOTE_BYTES)
# Room kept beyond the notes a copy is made for: a later `inject-notes` of a newer restore
# report fits in place. Zero bytes of a sparse file: no disk, and crash reads them once.
SPARE_ROOM = 64 << 10

_PHDR = {"<": struct.Struct("<IIQQQQQQ"), ">": struct.Struct(">IIQQQQQQ")}


def header_end(offsets: list[int]) -> int | None:
    """crash's header area end: the lowest non-zero ``p_offset`` of the segments other than
    the PT_NOTE (``resize_elf_header()`` skips zero offsets); None if there is none."""
    nonzero = [o for o in offsets if o]
    return min(nonzero) if nonzero else None


def page_up(n: int, page: int = PAGE) -> int:
    return -(-n // page) * page


class CopyPlan(Frozen):
    """A copy of an ELF dump with room after its notes.

    ``head`` is written at offset 0 (ELF header, program headers with the new offsets, the
    note segment at ``note_offset``); ``ranges`` are the source's segment bytes to copy, each
    to its offset plus ``delta``; the copy is ``size`` bytes, and ``room`` bytes are free
    between the end of the notes and the first PT_LOAD's data.
    """

    __slots__ = ("delta", "head", "note_offset", "notes_size", "ranges", "room", "size")
    _repr_skip = ("head",)
    head: bytes
    note_offset: int
    notes_size: int
    delta: int
    ranges: tuple[tuple[int, int], ...]
    room: int
    size: int

    def __init__(self, head: bytes, note_offset: int, notes_size: int, delta: int,
                 ranges: tuple[tuple[int, int], ...], room: int, size: int) -> None:
        for name, value in zip(self.__slots__, (delta, head, note_offset, notes_size, ranges,
                                                room, size)):
            object.__setattr__(self, name, value)


def plan_copy(fd: int, size: int, room: int) -> tuple[CopyPlan | None, str]:
    """Plan a copy of the ELF64 core open at ``fd`` with at least ``room`` free bytes after
    its notes. Returns (None, why) when the source is not a dump this can lay out: the caller
    then copies it as it is."""
    head = os.pread(fd, EHDR64_SIZE, 0)
    if len(head) < EHDR64_SIZE or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] not in (1, 2):
        return None, "not an ELF64 file"
    e = "<" if head[5] == 1 else ">"
    phoff, shoff = struct.unpack_from(e + "QQ", head, 32)
    phentsize, phnum, _shentsize, shnum = struct.unpack_from(e + "HHHH", head, 54)
    if phnum in (0, PN_XNUM) or phnum > MAX_PHNUM or phentsize != PHDR64_SIZE:
        return None, f"program header table not laid out as /proc/vmcore's ({phnum} entries)"
    if shoff or shnum:
        return None, "the dump has section headers"
    table_end = phoff + phnum * PHDR64_SIZE
    if phoff < EHDR64_SIZE or table_end > size:
        return None, "the program headers lie outside the file"
    table = os.pread(fd, phnum * PHDR64_SIZE, phoff)
    if len(table) != phnum * PHDR64_SIZE:
        return None, "short read of the program headers"
    phs = _PHDR[e]
    phdrs = [list(phs.unpack_from(table, i * PHDR64_SIZE)) for i in range(phnum)]
    notes = [i for i, p in enumerate(phdrs) if p[0] == PT_NOTE]
    if len(notes) != 1:
        return None, f"{len(notes)} PT_NOTE segments (crash reads one, the first)"
    ni = notes[0]
    n_off, n_size = phdrs[ni][2], phdrs[ni][5]
    if n_size > MAX_NOTES_COPIED or n_off + n_size > size:
        return None, "the note segment is absurd or lies past the end of the file"
    others = [p for i, p in enumerate(phdrs) if i != ni]
    for p in others:
        if p[2] + p[5] > size:
            return None, "a segment extends past the end of the file (truncated)"
        if p[5] and not p[2]:
            return None, "a segment starts at offset 0, inside the ELF header"
    first = header_end([p[2] for p in others])
    if first is None:
        return None, "no segment besides PT_NOTE"
    # The notes stay where they are if they already sit between the headers and the data
    # (the kernel's page after the program headers); otherwise they go there.
    if table_end <= n_off and n_off + n_size <= first:
        new_note = n_off
    else:
        new_note = page_up(EHDR64_SIZE + phnum * PHDR64_SIZE)
    need = new_note + n_size + room
    delta = page_up(need - first) if need > first else 0
    notes_bytes = os.pread(fd, n_size, n_off)
    if len(notes_bytes) != n_size:
        return None, "short read of the notes"
    # The PT_NOTE goes first, as crash expects; the rest keep their order.
    order = [ni] + [i for i in range(phnum) if i != ni]
    out_table = bytearray()
    for i in order:
        p = list(phdrs[i])
        if i == ni:
            p[2] = new_note
        elif p[2]:
            p[2] += delta
        out_table += phs.pack(*p)
    ehdr = bytearray(head)
    struct.pack_into(e + "Q", ehdr, 32, EHDR64_SIZE)  # e_phoff: the table right after
    out = ehdr + out_table
    out += bytes(new_note - len(out)) + notes_bytes
    merged = merge_ranges((p[2], p[2] + p[5]) for p in others if p[5])
    end = max([b + delta for _, b in merged] + [len(out)])
    return CopyPlan(bytes(out), new_note, n_size, delta, tuple(merged),
                    first + delta - (new_note + n_size), end), ""


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` ranges sorted, with overlapping or touching ones joined."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged
