"""Minimal ELF core reader: ELF header, program headers and PT_NOTE notes, never PT_LOAD data.

A vmcore can be tens of GiB; everything here reads only the header ranges it needs through a
``Blob`` (``size`` and ``pread``), bounds every count, size and offset against the file before
reading, and turns every malformation into :class:`handoff.errors.BadContainer` with the offset.
pyelftools is deliberately not used: it renames note types by number regardless of the owner
(STYLE.md) and importing it costs more than parsing the few structures needed here. Tests use it
as an independent oracle.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from handoff._slots import Frozen, Slots
from handoff.budget import NOTE_COST, Budget, spend
from handoff.errors import BadContainer
from handoff.formats.blob import Blob, read_exact
from handoff.record import NOTE_OWNER, NT_HANDOFF_RECORD, NT_HANDOFF_REPORT

ELF_MAGIC = b"\x7fELF"
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF  # e_phnum escape: the real count is shdr[0].sh_info (large vmcores)
EM_NAMES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390", 40: "arm", 62: "x86-64",
            183: "aarch64", 243: "riscv", 258: "loongarch"}

# Bounds on hostile input. A real vmcore has a few hundred PT_LOADs at most, and its notes are a
# few KiB per CPU; a record is at most 16 MiB + 4 KiB (R8, R9).
MAX_PHNUM = 1 << 20
MAX_NOTE_BYTES = 64 << 20  # total bytes of PT_NOTE segments read
MAX_NOTES = 1 << 16  # in one note area, and in all PT_NOTE segments of a file together
NOTE_ALIGN = 4  # R24 and every Linux core-file writer: name and desc padded to 4 bytes


class Note(Frozen):
    """One ELF note. ``desc_offset`` is the descriptor's offset in the file (or note buffer)."""

    __slots__ = ("desc", "desc_offset", "name", "offset", "type")
    _repr_skip = ('desc',)
    name: bytes  # owner, without the terminating NUL
    type: int
    desc: bytes
    offset: int  # of the note header
    desc_offset: int

    def __init__(self, name: bytes, type: int, desc: bytes, offset: int, desc_offset: int) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "desc_offset", desc_offset)

    @property
    def owner(self) -> str:
        return self.name.decode("latin-1")


_NHDR = {"<": struct.Struct("<III"), ">": struct.Struct(">III")}


def iter_notes(
    buf: bytes | memoryview, base: int = 0, *, endian: str = "<", strict: bool = True,
    budget: Budget | None = None, max_notes: int = MAX_NOTES,
) -> Iterator[Note]:
    """Iterate the notes in ``buf`` (a PT_NOTE segment or a note file).

    ``base`` is the file offset of ``buf[0]``, used in notes and error messages. An all-zero
    header ends the iteration (padding after the last note, as kernels leave in note buffers);
    with ``strict``, anything else that does not parse is an error. Each note is charged to
    ``budget``; more than ``max_notes`` is an error.
    """
    nhdr = _NHDR[endian]
    n = len(buf)
    pos = 0
    count = 0
    while pos < n:
        if n - pos < 12:
            if not strict or not any(buf[pos:]):
                return
            raise BadContainer(
                f"truncated note header at offset {base + pos} ({n - pos} of 12 bytes)",
                offset=base + pos,
            )
        namesz, descsz, ntype = nhdr.unpack_from(buf, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            if strict and any(buf[pos:]):
                raise BadContainer(
                    f"empty note at offset {base + pos} followed by data", offset=base + pos
                )
            return
        count += 1
        if count > max_notes:
            raise BadContainer(f"more than {MAX_NOTES} notes", offset=base + pos)
        name_at = pos + 12
        name_end = name_at + namesz
        desc_at = name_at + _pad(namesz)
        desc_end = desc_at + descsz
        if desc_at > n or desc_end > n:
            what = "name" if name_end > n else "descriptor"
            raise BadContainer(
                f"note at offset {base + pos} claims a {namesz}-byte name and a {descsz}-byte "
                f"descriptor ({what} extends past the end of its {n}-byte segment)",
                offset=base + pos,
            )
        spend(budget, NOTE_COST + namesz + descsz, "ELF notes", base + pos)
        name = bytes(buf[name_at:name_end])
        if namesz and name[-1:] == b"\x00":
            name = name[:-1]
        yield Note(name, ntype, bytes(buf[desc_at:desc_end]), base + pos, base + desc_at)
        pos = desc_at + _pad(descsz)


def _pad(n: int) -> int:
    return (n + NOTE_ALIGN - 1) & ~(NOTE_ALIGN - 1)


class Phdr(Frozen):
    __slots__ = ("align", "filesz", "flags", "memsz", "offset", "paddr", "type", "vaddr")
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int

    def __init__(
        self,
        type: int,
        flags: int,
        offset: int,
        vaddr: int,
        paddr: int,
        filesz: int,
        memsz: int,
        align: int,
    ) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "vaddr", vaddr)
        object.__setattr__(self, "paddr", paddr)
        object.__setattr__(self, "filesz", filesz)
        object.__setattr__(self, "memsz", memsz)
        object.__setattr__(self, "align", align)


class ElfCore(Slots):
    """What inspect needs from an ELF file: the header facts, segment summary and notes."""

    __slots__ = (
        "data_end",
        "e_type",
        "elf_class",
        "endian",
        "first_type",
        "header_end",
        "load_count",
        "load_memsz",
        "machine",
        "note_segments",
        "notes",
        "phnum",
    )
    elf_class: int  # 32 or 64
    endian: str  # "<" or ">"
    e_type: int
    machine: int
    phnum: int
    notes: list[Note]
    note_segments: list[Phdr]
    load_count: int
    load_memsz: int
    data_end: int  # where the furthest segment ends: a complete file is at least this long
    first_type: int  # p_type of the first program header (crash takes it as the PT_NOTE)
    header_end: int | None  # lowest non-zero p_offset after the first: crash's header area

    def __init__(
        self,
        elf_class: int,
        endian: str,
        e_type: int,
        machine: int,
        phnum: int,
        notes: list[Note],
        note_segments: list[Phdr],
        load_count: int,
        load_memsz: int,
        data_end: int = 0,
        first_type: int = PT_NOTE,
        header_end: int | None = None,
    ) -> None:
        self.elf_class = elf_class
        self.endian = endian
        self.e_type = e_type
        self.machine = machine
        self.phnum = phnum
        self.notes = notes
        self.note_segments = note_segments
        self.load_count = load_count
        self.load_memsz = load_memsz
        self.data_end = data_end
        self.first_type = first_type
        self.header_end = header_end

    def crash_problem(self) -> str | None:
        """Why crash(8) cannot read this dump's notes, or None. crash reads the header area
        only, up to the lowest non-zero p_offset after the first program header, and takes
        the first program header as the PT_NOTE (netdump.c, resize_elf_header())."""
        if not self.note_segments:
            return None
        if self.first_type != PT_NOTE:
            return "its first program header is not the PT_NOTE"
        end = max(p.offset + p.filesz for p in self.note_segments)
        if self.header_end is not None and end > self.header_end:
            return (f"its notes end at offset {end}, past the header area crash reads (up to "
                    f"the first PT_LOAD's data, offset {self.header_end})")
        return None

    def truncation(self, size: int) -> str | None:
        """Why a ``size``-byte file with these headers is not whole, or None."""
        if self.data_end <= size:
            return None
        return (f"the dump is truncated: its segments end at offset {self.data_end}, but the "
                f"file has only {size} bytes ({self.data_end - size} missing)")

    @property
    def type_name(self) -> str:
        return ET_NAMES.get(self.e_type, f"type {self.e_type:#x}")

    @property
    def machine_name(self) -> str:
        return EM_NAMES.get(self.machine, f"machine {self.machine}")


_EHDR64 = "16sHHIQQQIHHHHHH"
_EHDR32 = "16sHHIIIIIHHHHHH"
_PHDR64 = "IIQQQQQQ"  # type, flags, offset, vaddr, paddr, filesz, memsz, align
_PHDR32 = "IIIIIIII"  # type, offset, vaddr, paddr, filesz, memsz, flags, align
_SHDR0_64 = "IIQQQQIIQQ"
_SHDR0_32 = "IIIIIIIIII"


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def parse(blob: Blob, *, read_notes: bool = True, hole_ok: bool = False,
          budget: Budget | None = None) -> ElfCore:
    """Parse the ELF header, program headers and (with ``read_notes``) the PT_NOTE notes.

    With ``hole_ok`` (a flattened dump, whose view may not hold every program header), program
    headers that cannot be read are skipped instead of refused. Everything read is charged to
    ``budget``; the notes of all PT_NOTE segments together (overlapping ones count each time)
    are at most :data:`MAX_NOTES`.
    """
    h = _header(blob, hole_ok)
    t = _Table()
    _read_table(blob, h, t, hole_ok, budget)
    notes = _read_notes(blob, t.note_segs, h.endian, budget) if read_notes else []
    return ElfCore(
        elf_class=64 if h.is64 else 32,
        endian=h.endian,
        e_type=h.e_type,
        machine=h.machine,
        phnum=h.phnum,
        notes=notes,
        note_segments=t.note_segs,
        load_count=t.loads,
        load_memsz=t.load_memsz,
        data_end=t.data_end,
        first_type=t.first_type,
        header_end=t.header_end,
    )


class _Header(Slots):
    """What the ELF header says about the program header table."""

    __slots__ = ("e_type", "endian", "is64", "machine", "phentsize", "phnum", "phoff", "phs")
    endian: str  # struct's "<" or ">"
    is64: bool
    e_type: int
    machine: int
    phoff: int
    phentsize: int
    phnum: int  # the real count (PN_XNUM resolved)
    phs: struct.Struct  # one program header

    def __init__(self, endian: str, is64: bool, e_type: int, machine: int, phoff: int,
                 phentsize: int, phnum: int, phs: struct.Struct) -> None:
        self.endian = endian
        self.is64 = is64
        self.e_type = e_type
        self.machine = machine
        self.phoff = phoff
        self.phentsize = phentsize
        self.phnum = phnum
        self.phs = phs


def _header(blob: Blob, hole_ok: bool) -> _Header:
    """The identification and ELF header, checked, and the program header count bounded."""
    ident = read_exact(blob, 0, 16, "ELF identification")
    if ident[:4] != ELF_MAGIC:
        raise BadContainer("not an ELF file (bad magic)", offset=0)
    cls, data = ident[4], ident[5]
    if cls not in (1, 2):
        raise BadContainer(f"ELF class {cls} is neither ELFCLASS32 nor ELFCLASS64", offset=4)
    if data not in (1, 2):
        raise BadContainer(f"ELF data encoding {data} is neither LSB nor MSB", offset=5)
    e = "<" if data == 1 else ">"
    is64 = cls == 2
    ehs = struct.Struct(e + (_EHDR64 if is64 else _EHDR32))
    h = ehs.unpack(read_exact(blob, 0, ehs.size, "ELF header"))
    e_type, machine = h[1], h[2]
    phoff, shoff = h[5], h[6]
    phentsize, phnum, shentsize = h[9], h[10], h[11]
    phs = struct.Struct(e + (_PHDR64 if is64 else _PHDR32))
    if phnum == PN_XNUM:
        shs = struct.Struct(e + (_SHDR0_64 if is64 else _SHDR0_32))
        if shentsize < shs.size:
            raise BadContainer(
                f"e_phnum is PN_XNUM but e_shentsize {shentsize} is too small", offset=shoff
            )
        phnum = shs.unpack(read_exact(blob, shoff, shs.size, "section header 0"))[7]
    if phnum and phentsize < phs.size:
        raise BadContainer(
            f"e_phentsize {phentsize} is smaller than a program header ({phs.size} bytes)",
            offset=0x36 if is64 else 0x2A,
        )
    if phnum > MAX_PHNUM:
        raise BadContainer(f"e_phnum {phnum} is absurd (limit {MAX_PHNUM})", offset=phoff)
    if not hole_ok and phnum and (phoff > blob.size or phnum * phentsize > blob.size - phoff):
        raise BadContainer(
            f"{phnum} program headers of {phentsize} bytes at offset {phoff} extend past the "
            f"end of the file ({blob.size} bytes)",
            offset=phoff,
        )
    return _Header(e, is64, e_type, machine, phoff, phentsize, phnum, phs)


class _Table(Slots):
    """What the program header table holds, gathered as it is read."""

    __slots__ = ("data_end", "first_type", "header_end", "load_memsz", "loads", "note_segs")
    note_segs: list[Phdr]
    loads: int
    load_memsz: int
    data_end: int  # the end of the furthest segment in the file
    first_type: int  # the type of program header 0
    header_end: int | None  # the lowest segment offset after header 0's

    def __init__(self) -> None:
        self.note_segs = []
        self.loads = 0
        self.load_memsz = 0
        self.data_end = 0
        self.first_type = PT_NOTE
        self.header_end = None

    def add(self, index: int, p: Phdr) -> None:
        self.data_end = max(self.data_end, p.offset + p.filesz)
        if index == 0:
            self.first_type = p.type
        elif p.offset and (self.header_end is None or p.offset < self.header_end):
            self.header_end = p.offset
        if p.type == PT_LOAD:
            self.loads += 1
            self.load_memsz += p.memsz
        elif p.type == PT_NOTE:
            self.note_segs.append(p)


def _read_table(blob: Blob, h: _Header, t: _Table, hole_ok: bool,
                budget: Budget | None) -> None:
    """Read the program headers 64 KiB at a time into ``t``; with ``hole_ok`` a chunk that
    cannot be read is skipped."""
    phentsize, phs = h.phentsize, h.phs
    chunk = max(1, (64 << 10) // max(phentsize, 1))
    for first in range(0, h.phnum, chunk):
        count = min(chunk, h.phnum - first)
        at = h.phoff + first * phentsize
        spend(budget, count * max(phentsize, 64), "program headers", at)
        if hole_ok:
            try:
                table = read_exact(blob, at, count * phentsize, "program headers")
            except BadContainer:
                continue
        else:
            table = read_exact(blob, at, count * phentsize, "program headers")
        for i in range(count):
            v = phs.unpack_from(table, i * phentsize)
            if h.is64:
                p = Phdr(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
            else:
                p = Phdr(v[0], v[6], v[1], v[2], v[3], v[4], v[5], v[7])
            t.add(first + i, p)


def _read_notes(blob: Blob, segs: list[Phdr], endian: str,
                budget: Budget | None) -> list[Note]:
    """The notes of every PT_NOTE segment, at most MAX_NOTE_BYTES and MAX_NOTES in all."""
    notes: list[Note] = []
    total = 0
    for p in segs:
        total += p.filesz
        if total > MAX_NOTE_BYTES:
            raise BadContainer(
                f"PT_NOTE segments total more than {MAX_NOTE_BYTES >> 20} MiB", offset=p.offset
            )
        spend(budget, p.filesz, "PT_NOTE segments", p.offset)
        seg = read_exact(blob, p.offset, p.filesz, "PT_NOTE segment")
        notes.extend(iter_notes(seg, p.offset, endian=endian, budget=budget,
                                max_notes=MAX_NOTES - len(notes)))
    return notes


# Note types whose meaning depends on the owner name (STYLE.md: never match on type alone).
_NOTE_TYPES: dict[tuple[bytes, int], str] = {
    (b"CORE", 1): "NT_PRSTATUS",
    (b"CORE", 2): "NT_PRFPREG",
    (b"CORE", 3): "NT_PRPSINFO",
    (b"CORE", 4): "NT_TASKSTRUCT",
    (b"CORE", 6): "NT_AUXV",
    (b"CORE", 0x53494749): "NT_SIGINFO",
    (b"CORE", 0x46494C45): "NT_FILE",
    (b"LINUX", 0x202): "NT_X86_XSTATE",
    (b"VMCOREINFO", 0): "VMCOREINFO",
    (b"Xen", 0x1000000): "XEN_ELFNOTE_CRASH_INFO",
    (NOTE_OWNER, NT_HANDOFF_RECORD): "NT_HANDOFF_RECORD",
    (NOTE_OWNER, NT_HANDOFF_REPORT): "NT_HANDOFF_REPORT",
}


def note_type_name(name: bytes, ntype: int) -> str:
    return _NOTE_TYPES.get((name, ntype), f"{ntype:#x}")
