"""Add ELF notes to a saved dump (ELF or kdump-compressed) without moving any of its bytes.

ELF: the new notes are written right after the last note, into the gap before the first
PT_LOAD's data, so they stay in the header area crash(8) reads (:mod:`handoff.capture.layout`,
docs/dumps.md); then the PT_NOTE program header's ``p_filesz``/``p_memsz`` are rewritten. A dump
without the room (a plain /proc/vmcore copy, makedumpfile -E output) is refused with
:class:`NoNoteRoom`, unchanged; :func:`inject_notes_copy` writes a copy laid out with room.

kdump-compressed: crash, makedumpfile and libkdumpfile take the note area from the sub-header's
``offset_note``/``size_note`` wherever it is, so the note area is copied to the end of the file
(8-byte aligned) with the new notes after it, and those two fields are rewritten.

Either way every PT_LOAD byte, every page descriptor and every byte of the original notes stays
where it was, so the cost is O(notes), not O(dump).

Order (crash safety): the new notes are written and fsynced *before* the header field is
rewritten (one ``pwrite`` of one program header or of 16 bytes, inside one sector), and that is
fsynced too. An interruption before the rewrite leaves the original dump, plus unreferenced
bytes in the gap or past its old end, which every reader ignores; a failed write (a full disk)
puts those bytes back.

Injecting again adds the new notes after the current ones: earlier notes are never replaced or
removed, and a reader takes the *last* note of each type as the newest. A note identical to one
already present (owner, type and descriptor) is not added twice.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

from handoff import errors as E
from handoff._slots import Frozen, Slots
from handoff.formats import kdump
from handoff.formats.blob import read_exact
from handoff.formats.dumpformat import dump_format  # re-exported: handoff.capture
from handoff.formats.elfcore import (
    _PHDR32,
    _PHDR64,
    ET_CORE,
    MAX_NOTE_BYTES,
    MAX_PHNUM,
    NOTE_ALIGN,
    PN_XNUM,
    PT_NOTE,
    Note,
    iter_notes,
)
from handoff.record import NOTE_NAME, NT_HANDOFF_RECORD, NT_HANDOFF_REPORT

__all__ = [
    "NT_HANDOFF_RECORD",
    "NT_HANDOFF_REPORT",
    "InjectResult",
    "NoNoteRoom",
    "NoteArea",
    "dump_format",
    "encode_note",
    "inject_notes",
    "inject_notes_copy",
    "notes_size",
    "read_note_area",
]

MAX_DESC = 32 << 20  # one new descriptor; a record is at most 16 MiB + 4 KiB (R8, R9)
AREA_ALIGN = 8  # where the appended note area starts

# The ELF program header and kdump sub-header layouts are handoff.formats' (defined once).
_KDUMP_SUB = kdump._SUB
_SUB_OFFSET_NOTE = 48  # offsetof(struct kdump_sub_header, offset_note); size_note follows
_SUB_SIZE_BY_VERSION = {4: 64, 5: 80}  # bytes of the sub-header that exist in that version
_SUB_SIZE_V6 = 104

assert struct.calcsize("<" + _PHDR64) == 56 and struct.calcsize("<" + _PHDR32) == 32
assert struct.calcsize("<" + _KDUMP_SUB) == _SUB_SIZE_V6
assert struct.calcsize("<QiiQQqQ") == _SUB_OFFSET_NOTE


_AREA_FIELDS = ("format", "endian", "offset", "size", "notes", "own_notes", "used",
                "file_size", "detail", "room_end", "no_room", "_patch")


class NoteArea(Frozen):
    """Where a dump keeps its notes, and the header field that says so."""

    __slots__ = _AREA_FIELDS
    _repr_skip = ("_patch",)
    _eq_skip = ("_patch",)
    format: str  # "elf" or "kdump"
    endian: str  # "<" or ">"
    offset: int  # file offset of the note area
    size: int  # its size in bytes (p_filesz or size_note)
    notes: tuple[Note, ...]  # every note of the dump (all PT_NOTE segments)
    own_notes: tuple[Note, ...]  # the notes of this area only
    used: int  # bytes taken by notes; any rest is zero padding
    file_size: int
    detail: dict[str, Any]  # format facts for reports
    # ELF: the area may grow in place up to here (the first PT_LOAD's data: crash's header
    # area end); None when it cannot grow in place, and ``no_room`` says why
    room_end: int | None
    no_room: str
    # (file offset, new header bytes) for a new area at (offset, size); internal
    _patch: Callable[[int, int], tuple[int, bytes]] | None

    def __init__(self, format: str, endian: str, offset: int, size: int,
                 notes: tuple[Note, ...], own_notes: tuple[Note, ...], used: int,
                 file_size: int, detail: dict[str, Any] | None = None,
                 room_end: int | None = None, no_room: str = "",
                 _patch: Callable[[int, int], tuple[int, bytes]] | None = None) -> None:
        values = (format, endian, offset, size, notes, own_notes, used, file_size,
                  {} if detail is None else detail, room_end, no_room, _patch)
        for name, value in zip(_AREA_FIELDS, values):
            object.__setattr__(self, name, value)


_INJECT_FIELDS = ("path", "format", "added", "skipped", "note_offset_before",
                  "note_size_before", "note_offset", "note_size", "appended", "file_size",
                  "method")


class InjectResult(Frozen):
    """What :func:`inject_notes` did. ``added``/``skipped`` hold (n_type, descriptor size)."""

    __slots__ = _INJECT_FIELDS
    path: str
    format: str
    added: tuple[tuple[int, int], ...]
    skipped: tuple[tuple[int, int], ...]
    note_offset_before: int
    note_size_before: int
    note_offset: int
    note_size: int
    appended: int  # bytes the file grew by
    file_size: int
    method: str  # "in-place" (ELF: the note segment grew), "appended" (kdump), "none"

    def __init__(self, path: str, format: str, added: tuple[tuple[int, int], ...],
                 skipped: tuple[tuple[int, int], ...], note_offset_before: int,
                 note_size_before: int, note_offset: int, note_size: int, appended: int,
                 file_size: int, method: str = "none") -> None:
        values = (path, format, added, skipped, note_offset_before, note_size_before,
                  note_offset, note_size, appended, file_size, method)
        for name, value in zip(_INJECT_FIELDS, values):
            object.__setattr__(self, name, value)

    @property
    def changed(self) -> bool:
        return bool(self.added)

    def renamed(self, path: str) -> InjectResult:
        """The same result for the file now at ``path`` (a reassembled dump, renamed)."""
        return InjectResult(path, *(getattr(self, f) for f in _INJECT_FIELDS[1:]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "changed": self.changed,
            "method": self.method,
            "added": [{"type": f"{t:#x}", "size": s} for t, s in self.added],
            "skipped_duplicates": [{"type": f"{t:#x}", "size": s} for t, s in self.skipped],
            "note_area_before": {"offset": self.note_offset_before, "size": self.note_size_before},
            "note_area": {"offset": self.note_offset, "size": self.note_size},
            "appended_bytes": self.appended,
            "file_size": self.file_size,
        }


def _pad(n: int, align: int = NOTE_ALIGN) -> int:
    return (n + align - 1) & ~(align - 1)


def encode_note(n_type: int, desc: bytes, name: bytes = NOTE_NAME, endian: str = "<") -> bytes:
    """One ELF note (R24): namesz, descsz, type, then name and descriptor padded to 4 bytes.

    ``name`` includes its terminating NUL, as ``n_namesz`` counts it.
    """
    if not 0 <= n_type <= 0xFFFFFFFF:
        raise ValueError(f"note type {n_type} does not fit in 32 bits")
    head = struct.pack(endian + "III", len(name), len(desc), n_type)
    return b"".join(
        (head, name, bytes(_pad(len(name)) - len(name)), desc, bytes(_pad(len(desc)) - len(desc)))
    )


def notes_size(notes: Sequence[tuple[int, bytes]], name: bytes = NOTE_NAME) -> int:
    """Bytes that ``notes`` take in a note segment (R24 padding included)."""
    return sum(12 + _pad(len(name)) + _pad(len(d)) for _, d in notes)


class _FileBlob:
    """The Blob protocol of handoff.formats.blob over an open file descriptor."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def pread(self, offset: int, length: int) -> bytes:
        parts = []
        while length > 0:
            b = os.pread(self.fd, min(length, 1 << 24), offset)
            if not b:
                break
            parts.append(b)
            offset += len(b)
            length -= len(b)
        return b"".join(parts)


def _refuse_format(fmt: str, path: str) -> E.HandoffError:
    if fmt == "flattened":
        return E.BadContainer(
            f"{path} is in makedumpfile's flattened format, which has no note area to extend",
            offset=0,
            hint=f"let `handoff inject-notes --reassemble` convert it, or convert it first: "
            f"makedumpfile -R {path}.kdump < {path}, then inject into {path}.kdump",
        )
    if fmt == "diskdump":
        return E.BadContainer(
            f"{path} is an old diskdump file, whose header has no note fields", offset=0
        )
    return E.BadContainer(
        f"{path} is neither an ELF core nor a kdump-compressed dump (unknown signature)",
        offset=0,
        hint="inject-notes accepts an ELF vmcore or a makedumpfile kdump-compressed dump",
    )


def read_note_area(fd: int, size: int, path: str = "dump") -> NoteArea:
    """Validate the dump open at ``fd`` (``size`` bytes) and return its note area.

    Reads only headers and notes. Raises :class:`handoff.errors.BadContainer` on anything
    malformed, truncated or absurd.
    """
    blob = _FileBlob(fd, size)
    head = blob.pread(0, 16)
    fmt = dump_format(head)
    if fmt == "elf":
        return _elf_area(blob)
    if fmt == "kdump":
        return _kdump_area(blob)
    raise _refuse_format(fmt, path)


def _scan(
    blob: _FileBlob, offset: int, size: int, endian: str, what: str
) -> tuple[list[Note], int]:
    """Read and strictly parse a note area; return its notes and the bytes they take."""
    if size > MAX_NOTE_BYTES:
        raise E.BadContainer(
            f"{what} claims {size} bytes, more than the {MAX_NOTE_BYTES >> 20} MiB limit",
            offset=offset,
        )
    data = read_exact(blob, offset, size, what)
    notes = list(iter_notes(data, offset, endian=endian))
    used = 0
    if notes:
        last = notes[-1]
        used = last.desc_offset - offset + _pad(len(last.desc))
    return notes, used


class _ElfTable(Slots):
    """An ELF core's program header table, checked: where each segment lies, which are
    PT_NOTE (the first is the one that may grow)."""

    __slots__ = ("endian", "headers_end", "is64", "note_index", "note_phdrs", "phentsize",
                 "phoff", "phs", "sections", "segments")
    endian: str
    is64: bool
    phoff: int
    phentsize: int
    phs: struct.Struct
    segments: list[tuple[int, int, int]]  # (index, p_offset, p_filesz)
    note_phdrs: list[tuple[int, tuple[int, ...]]]  # (index, unpacked program header)
    note_index: int  # the first PT_NOTE
    headers_end: int  # the ELF header and program headers end here
    sections: tuple[int, int] | None  # the section header table (offset, bytes)

    def __init__(self, endian: str, is64: bool, phoff: int, phentsize: int, phs: struct.Struct,
                 segments: list[tuple[int, int, int]],
                 note_phdrs: list[tuple[int, tuple[int, ...]]], note_index: int,
                 headers_end: int, sections: tuple[int, int] | None) -> None:
        self.endian = endian
        self.is64 = is64
        self.phoff = phoff
        self.phentsize = phentsize
        self.phs = phs
        self.segments = segments
        self.note_phdrs = note_phdrs
        self.note_index = note_index
        self.headers_end = headers_end
        self.sections = sections

    def phdr_at(self, index: int) -> int:
        return self.phoff + index * self.phentsize


def _elf_area(blob: _FileBlob) -> NoteArea:
    t = _elf_table(blob)
    notes, (a_off, a_size, a_used, v0, own) = _elf_notes(blob, t)
    busy = [(o, f) for i, o, f in t.segments if i != t.note_index and f]
    busy.append((0, t.headers_end))  # the ELF header and the program headers
    if t.sections is not None:
        busy.append(t.sections)
    room_end, no_room = _room(a_off, a_size, a_used,
                              [o for i, o, _ in t.segments if i != t.note_index], busy,
                              t.note_index)
    return NoteArea(
        format="elf",
        endian=t.endian,
        offset=a_off,
        size=a_size,
        notes=tuple(notes),
        own_notes=own,
        used=a_used,
        file_size=blob.size,
        detail={"elf_class": 64 if t.is64 else 32, "phnum": len(t.segments),
                "pt_note_index": t.note_index},
        room_end=room_end,
        no_room=no_room,
        _patch=_elf_patch(t, v0),
    )


def _elf_table(blob: _FileBlob) -> _ElfTable:
    """Read and check the ELF header and program header table of a core: every segment must
    lie inside the file, and one must be PT_NOTE."""
    ident = read_exact(blob, 0, 16, "ELF identification")
    cls, data = ident[4], ident[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise E.BadContainer(f"ELF class {cls} / data encoding {data} is not valid", offset=4)
    e = "<" if data == 1 else ">"
    is64 = cls == 2
    ehs = struct.Struct(e + ("16sHHIQQQIHHHHHH" if is64 else "16sHHIIIIIHHHHHH"))
    h = ehs.unpack(read_exact(blob, 0, ehs.size, "ELF header"))
    e_type, phoff, shoff, phentsize, phnum, shentsize = h[1], h[5], h[6], h[9], h[10], h[11]
    if e_type != ET_CORE:
        raise E.BadContainer(f"ELF file is not a core dump (e_type {e_type}, want 4)", offset=16)
    phs = struct.Struct(e + (_PHDR64 if is64 else _PHDR32))
    if phnum == PN_XNUM:  # the real count is section header 0's sh_info
        shs = struct.Struct(e + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII"))
        if shentsize < shs.size:
            raise E.BadContainer("e_phnum is PN_XNUM but there is no section header 0", offset=0)
        phnum = shs.unpack(read_exact(blob, shoff, shs.size, "section header 0"))[7]
    if phnum == 0 or phnum > MAX_PHNUM or phentsize < phs.size:
        raise E.BadContainer(
            f"absurd program header table: {phnum} entries of {phentsize} bytes", offset=phoff
        )
    table = read_exact(blob, phoff, phnum * phentsize, "program header table")
    note_index = -1
    note_phdrs: list[tuple[int, tuple[int, ...]]] = []
    segments: list[tuple[int, int, int]] = []
    for i in range(phnum):
        v = phs.unpack_from(table, i * phentsize)
        p_type, p_offset, p_filesz = (v[0], v[2], v[5]) if is64 else (v[0], v[1], v[4])
        segments.append((i, p_offset, p_filesz))
        end = p_offset + p_filesz
        if end > blob.size:
            kind = "PT_NOTE" if p_type == PT_NOTE else f"segment {i} (type {p_type:#x})"
            raise E.BadContainer(
                f"{kind} at offset {p_offset} ({p_filesz} bytes) extends past the end of the "
                f"file ({blob.size} bytes): the dump is truncated or corrupt",
                offset=phoff + i * phentsize,
                hint="inject into a complete dump (saving again from /proc/vmcore, if possible)",
            )
        if p_type == PT_NOTE:
            note_phdrs.append((i, v))
            if note_index < 0:
                note_index = i
    if note_index < 0:
        raise E.BadContainer(
            "the ELF core has no PT_NOTE segment to extend",
            offset=phoff,
            hint="a kdump vmcore always has one; is this a process core?",
        )
    sections = (shoff, max(h[12], 1) * shentsize) if shoff else None
    return _ElfTable(e, is64, phoff, phentsize, phs, segments, note_phdrs, note_index,
                     phoff + phnum * phentsize, sections)


def _elf_notes(blob: _FileBlob, t: _ElfTable
               ) -> tuple[list[Note], tuple[int, int, int, tuple[int, ...], tuple[Note, ...]]]:
    """Every PT_NOTE segment's notes, strictly parsed, and the first one's area: (offset,
    size, bytes used, its program header, its notes)."""
    notes: list[Note] = []
    area: tuple[int, int, int, tuple[int, ...], tuple[Note, ...]] | None = None
    for i, v in t.note_phdrs:
        p_offset, p_filesz, p_align = (v[2], v[5], v[7]) if t.is64 else (v[1], v[4], v[7])
        if p_align > NOTE_ALIGN:
            raise E.BadContainer(
                f"PT_NOTE {i} uses {p_align}-byte note alignment; kdump notes use 4",
                offset=t.phdr_at(i),
            )
        got, used = _scan(blob, p_offset, p_filesz, t.endian, "PT_NOTE segment")
        notes.extend(got)
        if i == t.note_index:
            area = (p_offset, p_filesz, used, v, tuple(got))
    assert area is not None  # note_index is one of note_phdrs
    return notes, area


def _elf_patch(t: _ElfTable, v0: tuple[int, ...]) -> Callable[[int, int], tuple[int, bytes]]:
    """How to rewrite the first PT_NOTE program header for a note area at (offset, size)."""
    phdr_at, is64, phs = t.phdr_at(t.note_index), t.is64, t.phs

    def patch(new_offset: int, new_size: int) -> tuple[int, bytes]:
        if not is64 and new_offset + new_size > 0xFFFFFFFF:
            raise E.BadContainer(
                "ELF32 dump: the new note area would lie past 4 GiB, out of p_offset's range",
                offset=phdr_at,
            )
        w = list(v0)
        if is64:  # p_memsz follows p_filesz only where the writer kept them equal (the kernel)
            w[2], w[6] = new_offset, (new_size if v0[6] == v0[5] else v0[6])
            w[5] = new_size
        else:
            w[1], w[5] = new_offset, (new_size if v0[5] == v0[4] else v0[5])
            w[4] = new_size
        return phdr_at, phs.pack(*w)

    return patch


def _room(offset: int, size: int, used: int, others: list[int],
          busy: list[tuple[int, int]], index: int) -> tuple[int | None, str]:
    """How far the note segment at ``offset`` may grow in place, or (None, why not).

    It may grow into the gap before the first PT_LOAD's data, the end of the header area
    crash reads (layout.header_end), where nothing the headers point at lies (``busy``).
    """
    from handoff.capture.layout import header_end

    end = offset + size
    data = header_end(others)
    if index != 0:
        return None, f"its PT_NOTE is program header {index}, and crash reads only the first"
    if data is None:
        return None, "it has no PT_LOAD data to bound its header area"
    if end > data:
        return None, (f"its notes (offset {offset}) lie after the first PT_LOAD's data "
                      f"(offset {data}), outside the header area crash reads")
    if used != size:
        return None, f"its note segment ends in {size - used} bytes of padding"
    limit = data
    for o, n in busy:
        if o < end < o + n:
            return None, f"its note segment overlaps other data at offset {o}"
        if end <= o < limit:
            limit = o
    return limit, ""


def _kdump_area(blob: _FileBlob) -> NoteArea:
    # handoff.formats.kdump validates the header (signature, byte order, version, block size, 32-bit
    # layouts, VMCOREINFO); the note fields are checked here, against the file rather than the
    # sub-header area, because an injected note area lives at the end of the file.
    kh = kdump.parse(blob, read_notes=False)
    e, version, bs = kh.endian, kh.header_version, kh.block_size
    if version < 4:
        raise E.BadContainer(
            f"kdump-compressed header version {version} has no note fields "
            "(offset_note/size_note arrived in version 4)",
            offset=8,
            hint="re-save the dump with a newer makedumpfile, or as ELF (makedumpfile -E)",
        )
    sub_len = _SUB_SIZE_BY_VERSION.get(version, _SUB_SIZE_V6)
    raw = read_exact(blob, bs, sub_len, "kdump sub-header") + bytes(_SUB_SIZE_V6 - sub_len)
    s = struct.unpack(e + _KDUMP_SUB, raw)
    off_note, size_note = s[7], s[8]
    off_erase, size_erase = (s[9], s[10]) if version >= 5 else (0, 0)
    for what, off, size in (
        ("note area", off_note, size_note),
        ("eraseinfo", off_erase, size_erase),
    ):
        if size and 0 <= off < bs:
            raise E.BadContainer(
                f"kdump-compressed {what} at offset {off} overlaps the main header "
                f"(block size {bs})",
                offset=bs + _SUB_OFFSET_NOTE,
            )
        if size and (off < 0 or off > blob.size or size > blob.size - off):
            raise E.BadContainer(
                f"kdump-compressed {what} at offset {off} ({size} bytes) extends past the end "
                f"of the file ({blob.size} bytes): the dump is truncated or corrupt",
                offset=bs + _SUB_OFFSET_NOTE,
            )
    cut = kdump.truncation(blob, kh)
    if cut is not None:
        raise E.BadContainer(
            f"{cut}; notes are not added to an incomplete copy",
            offset=blob.size,
            hint="inject into the complete dump (copy it again, or save it again)",
        )
    notes, used = _scan(blob, off_note, size_note, e, "kdump note area") if size_note else ([], 0)
    patch_at = bs + _SUB_OFFSET_NOTE

    def patch(new_offset: int, new_size: int) -> tuple[int, bytes]:
        return patch_at, struct.pack(e + "qQ", new_offset, new_size)

    return NoteArea(
        format="kdump",
        endian=e,
        offset=off_note,
        size=size_note,
        notes=tuple(notes),
        own_notes=tuple(notes),
        used=used,
        file_size=blob.size,
        detail={"header_version": version, "block_size": bs, "machine": kh.machine},
        _patch=patch,
    )


def _open_rw(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise E.UsageError(f"no such dump: {path}") from None
    except IsADirectoryError:
        raise E.UsageError(f"{path} is a directory, not a dump") from None
    except PermissionError:
        raise E.EnvironmentProblem(
            f"cannot open {path} for writing (permission denied)",
            hint="run as a user that may write the dump, or copy it first",
        ) from None
    except OSError as ex:
        if ex.errno == errno.EROFS:
            raise E.EnvironmentProblem(
                f"{path} is on a read-only file system", hint="copy the dump somewhere writable"
            ) from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise E.EnvironmentProblem(
            f"{path} is locked by another process (a capture or injection still running?)",
            hint="wait for it to finish, then try again",
        ) from None
    return fd


def _write_all(fd: int, data: bytes, offset: int) -> None:
    mv = memoryview(data)
    while mv:
        n = os.pwrite(fd, mv, offset)
        mv = mv[n:]
        offset += n


def inject_notes(
    path: str | os.PathLike[str],
    notes: Sequence[tuple[int, bytes]],
    *,
    name: bytes = NOTE_NAME,
    sync: bool = True,
) -> InjectResult:
    """Add ``notes`` ((n_type, descriptor) pairs, owner ``name``) to the dump at ``path``.

    Validates the whole dump header first and changes nothing on refusal. Raises
    :class:`handoff.errors.BadContainer` for a malformed, truncated or unsupported dump.
    """
    path = os.fspath(path)
    for t, d in notes:
        if len(d) > MAX_DESC:
            raise E.UsageError(f"note type {t:#x}: {len(d)}-byte descriptor exceeds 32 MiB")
    fd = _open_rw(path)
    try:
        size = os.fstat(fd).st_size
        area = read_note_area(fd, size, path)
        add, skipped = _new_notes(area, notes, name)
        base: dict[str, Any] = {
            "path": path,
            "format": area.format,
            "skipped": tuple(skipped),
            "note_offset_before": area.offset,
            "note_size_before": area.size,
        }
        if not add:
            return InjectResult(
                added=(),
                note_offset=area.offset,
                note_size=area.size,
                appended=0,
                file_size=size,
                **base,  # type: ignore[arg-type]
            )
        added = b"".join(encode_note(t, d, name, area.endian) for t, d in add)
        if area.used + len(added) > MAX_NOTE_BYTES:
            raise E.BadContainer(
                f"the note area would grow to {area.used + len(added)} bytes, past the "
                f"{MAX_NOTE_BYTES >> 20} MiB readers accept",
                offset=area.offset,
            )
        new_offset, new_size, write_at, data, method = _placement(fd, size, path, area, added)
        patch_at, old_patch = _commit(fd, area, new_offset, new_size, write_at, data, size,
                                      sync)
        final = os.fstat(fd).st_size
        _verify(fd, final, path, area, add, name, patch_at, old_patch, sync)
        return InjectResult(
            added=tuple((t, len(d)) for t, d in add),
            note_offset=new_offset,
            note_size=new_size,
            appended=final - size,
            file_size=final,
            method=method,
            **base,  # type: ignore[arg-type]
        )
    finally:
        os.close(fd)


def _new_notes(area: NoteArea, notes: Sequence[tuple[int, bytes]], name: bytes
               ) -> tuple[list[tuple[int, bytes]], list[tuple[int, int]]]:
    """The notes to add, and (type, size) of those already present (never added twice)."""
    # Compare on name and type as well as descriptor: another owner's note may be identical.
    present = {(n.name + b"\x00", n.type, n.desc) for n in area.notes}
    add: list[tuple[int, bytes]] = []
    skipped: list[tuple[int, int]] = []
    for t, d in notes:
        if (name, t, bytes(d)) in present:
            skipped.append((t, len(d)))
        else:
            present.add((name, t, bytes(d)))
            add.append((t, bytes(d)))
    return add, skipped


def _placement(fd: int, size: int, path: str, area: NoteArea, added: bytes
               ) -> tuple[int, int, int, bytes, str]:
    """Where the notes go: (new area offset, new area size, write offset, bytes to write,
    method); an ELF dump without room is refused (:class:`NoNoteRoom`)."""
    if area.format == "elf":
        # The note segment grows in place, into the gap before the first PT_LOAD's data,
        # so it stays in the header area crash reads (layout.py); it never moves.
        at = area.offset + area.size
        if area.room_end is None or at + len(added) > area.room_end:
            raise _no_room(path, area, len(added))
        return area.offset, area.size + len(added), at, added, "in-place"
    # kdump-compressed: readers (crash, makedumpfile, libkdumpfile) take the note area
    # from offset_note/size_note wherever it is, so a copy of it goes at the end.
    old = read_exact(_FileBlob(fd, size), area.offset, area.used, "note area")
    new_offset = _pad(size, AREA_ALIGN)
    return (new_offset, area.used + len(added), size, bytes(new_offset - size) + old + added,
            "appended")


def _commit(fd: int, area: NoteArea, new_offset: int, new_size: int, write_at: int,
            data: bytes, size: int, sync: bool) -> tuple[int, bytes]:
    """Write the notes, durable, then the one header field that points at them (the module
    docstring's order); returns where that field is and its old bytes, for :func:`_verify`."""
    assert area._patch is not None
    patch_at, patch = area._patch(new_offset, new_size)
    old_patch = os.pread(fd, len(patch), patch_at)
    # 1. the new notes, durable before anything points at them
    before = os.pread(fd, len(data), write_at)  # the gap's bytes (b"" past the end)
    try:
        _write_all(fd, data, write_at)
        if sync:
            os.fsync(fd)
    except OSError:
        _undo(fd, before, write_at, size)
        raise
    # 2. the one header field, in one write
    _write_all(fd, patch, patch_at)
    if sync:
        os.fsync(fd)
    return patch_at, old_patch


class NoNoteRoom(E.BadContainer):
    """An ELF dump's notes cannot grow where crash reads them; nothing was written."""

    def __init__(self, message: str, *, offset: int | None, hint: str, need: int) -> None:
        super().__init__(message, offset=offset, hint=hint)
        self.need = need


def _no_room(path: str, area: NoteArea, need: int) -> NoNoteRoom:
    if area.room_end is None:
        why = area.no_room
    else:
        free = area.room_end - area.offset - area.size
        why = (f"the notes need {need} bytes and only {free} are free between its note "
               f"segment and the first PT_LOAD's data (offset {area.room_end})")
    return NoNoteRoom(
        f"cannot add the notes to {path} in place: {why}; nothing was written",
        offset=area.offset,
        need=need,
        hint=f"write a copy with room for them (PT_LOAD data unchanged): handoff inject-notes "
        f"--output NEW {path} RECORD [REPORT]",
    )


def _undo(fd: int, before: bytes, at: int, size: int) -> None:
    """After a failed write of new notes (a full disk): put back the bytes they replaced and
    the old file size, so the file is as it was. Best effort, page by page: a page the write
    never reached is still a hole, and rewriting it could fail for the same reason."""
    for i in range(0, len(before), 4096):
        try:
            _write_all(fd, before[i:i + 4096], at + i)
        except OSError:
            pass
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def _verify(
    fd: int,
    size: int,
    path: str,
    before: NoteArea,
    added: list[tuple[int, bytes]],
    name: bytes,
    patch_at: int,
    old_patch: bytes,
    sync: bool,
) -> None:
    """Re-read the dump as a reader would; on a mismatch put the old header field back."""
    try:
        after = read_note_area(fd, size, path)
        got = [(n.name, n.type, n.desc) for n in after.own_notes]
        want = [(n.name, n.type, n.desc) for n in before.own_notes]
        want += [(name.rstrip(b"\x00"), t, d) for t, d in added]
        if got != want or len(after.notes) != len(before.notes) + len(added):
            raise E.BadContainer("the notes read back differ from the notes written", offset=0)
    except E.BadContainer as ex:
        _write_all(fd, old_patch, patch_at)
        if sync:
            os.fsync(fd)
        raise E.BadContainer(
            f"injection into {path} did not verify ({ex}); the original header was restored",
            offset=patch_at,
        ) from ex


def inject_notes_copy(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    notes: Sequence[tuple[int, bytes]],
    *,
    name: bytes = NOTE_NAME,
    sync: bool = True,
) -> InjectResult:
    """Write a copy of the dump ``src`` to the new file ``dst`` with ``notes`` added; ``src``
    is only read.

    An ELF dump is copied in /proc/vmcore's layout with room for the notes after its note
    segment (:mod:`handoff.capture.layout`): its segments' bytes are unchanged, moved by whole
    pages, and zero pages stay holes. A kdump-compressed dump is copied as it is and the notes
    are appended to the copy. ``dst`` is removed again if anything fails.
    """
    from handoff.capture import save as S
    from handoff.capture.layout import SPARE_ROOM

    src, dst = os.fspath(src), os.fspath(dst)
    try:
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise E.UsageError(f"no such dump: {src}") from None
    try:
        read_note_area(fd, os.fstat(fd).st_size, src)  # refuse what inject_notes would
    finally:
        os.close(fd)
    room = notes_size(notes, name) + SPARE_ROOM
    try:
        S.copy_sparse(src, dst, note_room=room, sync=sync)
    except E.UsageError:
        raise  # dst exists, and is not ours to remove
    except BaseException:
        _remove(dst)
        raise
    try:
        return inject_notes(dst, notes, name=name, sync=sync)
    except BaseException:
        _remove(dst)
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
