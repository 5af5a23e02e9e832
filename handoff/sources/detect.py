"""Recognise a container by its content and collect what it holds into a :class:`Container`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handoff.budget import Budget, spend
from handoff.errors import BadContainer
from handoff.formats import elfcore, kdump
from handoff.formats.blob import Blob, read_exact
from handoff.sources import initrd as I
from handoff.sources import records as S
from handoff.sources.blob import SubBlob
from handoff.sources.context import Context
from handoff.sources.model import Container, Found, Location
from handoff.sources.sniff import SNIFF, sniff

MAX_LEADING_ZEROS = 1 << 20  # an initrd may start with NUL padding; look this far for it


def scan_blob(
    blob: Blob,
    name: str,
    *,
    ctx: Context | None = None,
    member_loc: dict[str, Any] | None = None,
    base: int | None = 0,
) -> Container:
    """Recognise ``blob`` and collect its records, notes and metadata.

    ``member_loc`` describes the cpio member ``blob`` is (None at top level); ``base`` is the
    file offset of ``blob[0]``, or None when it is decompressed data with no file offset.
    Structural errors raise BadContainer; an initrd's problems are kept in ``problems``.
    """
    ctx = ctx or Context(work=Budget(blob.size))
    head = blob.pread(0, SNIFF)
    kind = _kind(blob, head)
    c = Container(kind, name, blob.size)
    loc = dict(member_loc or {})
    scanner = _SCANNERS.get(kind)
    if scanner is not None:
        scanner(c, blob, loc, member_loc, base, ctx)
    elif kind == "unknown":
        c.details["first_bytes"] = head[:8].hex(" ") if any(head[:8]) else "zero bytes"
    for f in c.found:
        f.container = c
        if kind in ("elf-vmcore", "kdump-compressed", "flattened"):
            f.reports = c.reports
            f.vmcoreinfo = c.vmcoreinfo
    return c


def _kind(blob: Blob, head: bytes) -> str:
    """What ``blob`` is by its first bytes; an initrd may start with zero padding."""
    kind = sniff(head)
    if kind == "unknown" and head and not any(head):
        zs = I.BlobStream(blob, 0)
        zs.skip_zeros(MAX_LEADING_ZEROS)
        after = sniff(blob.pread(zs.pos, SNIFF))
        if zs.pos < min(blob.size, MAX_LEADING_ZEROS) and after == "initrd":
            kind = "initrd"
    return kind


# Each kind's scanner: (container, blob, location so far, member_loc, base, ctx), as
# scan_blob's arguments say.
_Scanner = Callable[[Container, Blob, dict[str, Any], dict[str, Any] | None, int | None,
                     Context], None]


def _scan_raw(c: Container, blob: Blob, loc: dict[str, Any], member_loc: dict[str, Any] | None,
              base: int | None, ctx: Context) -> None:
    in_file = base is not None
    off0 = base or 0
    rec, err = S.parse_at(blob, 0, blob.size, exact=True, base=off0)
    where = {**loc, ("offset" if in_file else "member_offset"): off0 if in_file else 0}
    if member_loc is not None:
        where["within"] = "raw"
    c.found.append(Found("raw" if member_loc is None else "initrd", Location(**where),
                         rec, err))


def _scan_note(c: Container, blob: Blob, loc: dict[str, Any], member_loc: dict[str, Any] | None,
               base: int | None, ctx: Context) -> None:
    in_file = base is not None
    off0 = base or 0
    if blob.size > elfcore.MAX_NOTE_BYTES:
        raise BadContainer(
            f"note file of {blob.size} bytes is larger than {elfcore.MAX_NOTE_BYTES >> 20} MiB",
            offset=0,
        )
    spend(ctx.work, blob.size, "the note file", off0)
    buf = read_exact(blob, 0, blob.size, "note file")
    notes = list(elfcore.iter_notes(buf, off0 if in_file else 0, budget=ctx.work))
    if member_loc is not None:
        loc["within"] = "note"
    _add_notes(c, notes, "note" if member_loc is None else "initrd", loc, in_file, member_loc)


def _scan_region(c: Container, blob: Blob, loc: dict[str, Any],
                 member_loc: dict[str, Any] | None, base: int | None, ctx: Context) -> None:
    if member_loc is not None:
        loc["within"] = "region"
    c.slots, c.found = S.parse_region(blob, "region" if member_loc is None else "initrd",
                                      loc, base)


def _scan_vmcore(c: Container, blob: Blob, loc: dict[str, Any],
                 member_loc: dict[str, Any] | None, base: int | None, ctx: Context) -> None:
    core = elfcore.parse(blob, budget=ctx.work)
    _elf_details(c, core)
    c.details["truncated"] = core.truncation(blob.size)
    c.details["crash_cannot_read_notes"] = core.crash_problem()
    _add_notes(c, core.notes, "elf-vmcore", loc, base is not None, member_loc)


def _scan_elf(c: Container, blob: Blob, loc: dict[str, Any], member_loc: dict[str, Any] | None,
              base: int | None, ctx: Context) -> None:
    core = elfcore.parse(blob, read_notes=False, budget=ctx.work)
    _elf_details(c, core)
    if member_loc is None:
        raise BadContainer(
            f"{c.name} is an ELF {core.type_name} file, not a core dump (vmcore)", offset=16
        )


def _scan_kdump(c: Container, blob: Blob, loc: dict[str, Any],
                member_loc: dict[str, Any] | None, base: int | None, ctx: Context) -> None:
    kh = kdump.parse(blob, budget=ctx.work)
    _kdump_details(c, kh)
    c.details["truncated"] = kdump.truncation(blob, kh) if kh.header_version >= 1 else None
    _add_notes(c, kh.notes, "kdump-compressed", loc, base is not None, member_loc)
    _kdump_vmcoreinfo(c, kh)


def _scan_flat(c: Container, blob: Blob, loc: dict[str, Any],
               member_loc: dict[str, Any] | None, base: int | None, ctx: Context) -> None:
    _scan_flattened(c, blob, loc, member_loc, ctx.work)


def _scan_initrd(c: Container, blob: Blob, loc: dict[str, Any],
                 member_loc: dict[str, Any] | None, base: int | None, ctx: Context) -> None:
    I.scan_initrd(blob, c, ctx, base, scan_blob)


_SCANNERS: dict[str, _Scanner] = {
    "raw": _scan_raw, "note": _scan_note, "region": _scan_region, "elf-vmcore": _scan_vmcore,
    "elf": _scan_elf, "kdump-compressed": _scan_kdump, "flattened": _scan_flat,
    "initrd": _scan_initrd,
}


def _add_notes(c: Container, notes: list[elfcore.Note], kind: str, loc: dict[str, Any],
               in_file: bool, member_loc: dict[str, Any] | None) -> None:
    member = member_loc.get("member") if member_loc else None
    infos, found, reports, vmci = S.from_notes(notes, kind, member=member, loc=loc,
                                               in_file=in_file)
    c.notes.extend(infos)
    c.found.extend(found)
    c.reports.extend(reports)
    if vmci is not None and c.vmcoreinfo is None:
        c.vmcoreinfo = vmci


def _elf_details(c: Container, core: elfcore.ElfCore) -> None:
    c.details.update({
        "elf_class": core.elf_class,
        "byte_order": "little" if core.endian == "<" else "big",
        "e_type": core.type_name,
        "machine": core.machine_name,
        "phnum": core.phnum,
        "pt_note": len(core.note_segments),
        "pt_load": core.load_count,
        "memory": core.load_memsz,
    })


def _kdump_details(c: Container, kh: kdump.KdumpHeader) -> None:
    c.details.update({
        "header_version": kh.header_version,
        "byte_order": "little" if kh.endian == "<" else "big",
        "release": kh.release,
        "nodename": kh.nodename,
        "machine": kh.machine,
        "timestamp": kh.timestamp,
        "block_size": kh.block_size,
        "dump_level": kh.dump_level,
        "nr_cpus": kh.nr_cpus,
        "incomplete": kh.incomplete,
    })
    if kh.header_version < 4:
        c.details["note_area"] = f"none (header_version {kh.header_version} < 4)"


def _kdump_vmcoreinfo(c: Container, kh: kdump.KdumpHeader) -> None:
    if c.vmcoreinfo is None and kh.vmcoreinfo:
        from handoff.formats import vmcoreinfo

        c.vmcoreinfo = vmcoreinfo.parse(kh.vmcoreinfo)


def _scan_flattened(c: Container, blob: Blob, loc: dict[str, Any],
                    member_loc: dict[str, Any] | None, work: Budget | None) -> None:
    view = kdump.FlatView(blob, work)
    head = view.head(SNIFF)
    inner = sniff(head)
    c.details["offsets"] = "in the reassembled dump"
    if inner == "kdump-compressed":
        c.details["inner"] = "kdump-compressed"
        kh = kdump.parse(view, budget=work)
        _kdump_details(c, kh)
        _add_notes(c, kh.notes, "flattened", loc, True, member_loc)
        _kdump_vmcoreinfo(c, kh)
    elif inner in ("elf-vmcore", "elf"):
        c.details["inner"] = "ELF"
        core = elfcore.parse(view, hole_ok=True, budget=work)
        _elf_details(c, core)
        if core.e_type != elfcore.ET_CORE:
            raise BadContainer(f"the flattened dump holds an ELF {core.type_name}, not a core",
                               offset=kdump.FLAT_HEADER_SIZE)
        _add_notes(c, core.notes, "flattened", loc, True, member_loc)
    else:
        raise BadContainer(
            "the flattened dump holds neither a kdump-compressed nor an ELF dump "
            f"(starts with {head[:8].hex(' ')})",
            offset=kdump.FLAT_HEADER_SIZE,
        )
    c.details["chunks_scanned"] = view.scanned


__all__ = ["SubBlob", "scan_blob", "sniff"]
