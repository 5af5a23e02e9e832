"""Records inside containers: a record at an offset, records in notes, the two-slot region (§7)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from handoff import errors as E
from handoff import record as R
from handoff.formats import region
from handoff.formats.blob import Blob, read_exact
from handoff.formats.elfcore import Note, note_type_name
from handoff.sources.model import Found, Location, NoteInfo, Report, SlotStatus

MAX_RECORD = R.MAX_HEADER_SIZE + R.MAX_PAYLOAD_SIZE  # R8 + R9: nothing bigger can be valid
MAX_REPORT = 4 << 20


def _shift(e: E.InvalidRecord, base: int) -> E.InvalidRecord:
    if e.offset is not None:
        e.offset += base
    else:
        e.offset = base
    return e


def parse_at(
    blob: Blob, offset: int, limit: int, *, exact: bool = False, base: int | None = None
) -> tuple[R.Record | None, E.InvalidRecord | None]:
    """Validate the record at ``blob[offset:]``, reading at most ``limit`` bytes.

    Reads the fixed header first and then only the length it declares (capped), so a slot or
    file larger than the record costs nothing. Error offsets are made absolute with ``base``
    (default ``offset``). With ``exact``, bytes after the record up to ``limit`` are refused.
    """
    base = offset if base is None else base
    limit = max(0, min(limit, blob.size - offset))
    head = blob.pread(offset, min(R.FIXED_HEADER_SIZE, limit))
    want = len(head)
    if len(head) == R.FIXED_HEADER_SIZE and head[:8] == R.MAGIC:
        hs, ps = R.FIXED.unpack(head)[3:5]  # untrusted until parse() checks the CRC: cap only
        want = min(limit, max(hs + ps, R.FIXED_HEADER_SIZE), MAX_RECORD)
    buf = head if want == len(head) else blob.pread(offset, want)
    try:
        rec = R.parse(buf, 0)
    except E.InvalidRecord as e:
        return None, _shift(e, base)
    if exact and limit > rec.size:
        return None, E.TrailingData(
            f"{limit - rec.size} byte(s) follow the record", check="trailing",
            offset=base + rec.size,
        )
    return rec, None


def record_in_desc(desc: bytes, base: int) -> tuple[R.Record | None, E.InvalidRecord | None]:
    """The record that is a note's descriptor (R24). Up to 3 zero bytes of padding may follow
    it inside the descriptor; anything else is trailing data."""
    try:
        rec = R.parse(desc, 0)
    except E.InvalidRecord as e:
        return None, _shift(e, base)
    extra = desc[rec.size :]
    if extra and (len(extra) > 3 or any(extra)):
        return None, E.TrailingData(
            f"{len(extra)} byte(s) follow the record in its note descriptor",
            check="trailing", offset=base + rec.size,
        )
    return rec, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def strict_json(data: bytes) -> Any:
    """Decode UTF-8 JSON as RFC 8259 defines it: Python's json also takes NaN and Infinity,
    which would then make ``inspect --json`` print invalid JSON. Raises ValueError
    (UnicodeDecodeError included) or RecursionError."""
    return json.loads(data.decode("utf-8"), parse_constant=_no_constant)


def parse_report(desc: bytes, offset: int) -> Report:
    if len(desc) > MAX_REPORT:
        return Report(offset, len(desc), error=f"larger than {MAX_REPORT} bytes")
    try:
        return Report(offset, len(desc), data=strict_json(desc))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return Report(offset, len(desc), error=f"not UTF-8 JSON: {str(e)[:80]}")


def from_notes(
    notes: Sequence[Note], kind: str, *, member: str | None = None,
    loc: dict[str, Any] | None = None, in_file: bool = True,
) -> tuple[list[NoteInfo], list[Found], list[Report], Any]:
    """Turn a note list into note summaries, records, reports and VMCOREINFO."""
    from handoff.formats import vmcoreinfo

    infos: list[NoteInfo] = []
    found: list[Found] = []
    reports: list[Report] = []
    vmci = None
    for i, n in enumerate(notes):
        infos.append(NoteInfo(n.owner, n.type, note_type_name(n.name, n.type), len(n.desc),
                              n.offset, member))
        if n.name == R.NOTE_OWNER and n.type == R.NT_HANDOFF_RECORD:
            rec, err = record_in_desc(n.desc, n.desc_offset)
            where = dict(loc or {})
            if in_file:
                where["offset"] = n.desc_offset
            else:
                where["member_offset"] = n.desc_offset
            found.append(Found(kind, Location(note=i, **where), rec, err))
        elif n.name == R.NOTE_OWNER and n.type == R.NT_HANDOFF_REPORT:
            reports.append(parse_report(n.desc, n.desc_offset))
        elif n.name == b"VMCOREINFO" and vmci is None:
            vmci = vmcoreinfo.parse(n.desc)
    return infos, found, reports, vmci


def parse_region(blob: Blob, kind: str = "region", loc: dict[str, Any] | None = None,
                 base: int | None = 0) -> tuple[list[SlotStatus], list[Found]]:
    """Validate a two-slot region (§7) and pick its current record (R25).

    ``base`` is the file offset of the region (None inside a compressed cpio member, where
    offsets are member offsets). A region's own errors are relative to the region.
    """
    off0 = base or 0
    header = region.parse_header(read_exact(blob, 0, region.HEADER_SIZE, "region header"),
                                 blob.size)
    ssize = header.slot_size
    s0, s1 = header.slots
    slots: list[SlotStatus] = []
    records: list[tuple[int, R.Record | None, E.InvalidRecord | None]] = []
    for i, s in enumerate((s0, s1)):
        head = blob.pread(s, 8)
        if head != R.MAGIC:
            # R26 step 1 zeroes the fixed header of the slot being rewritten; a never-written
            # slot of reserved memory may hold anything. Neither is a record.
            slots.append(SlotStatus(i, off0 + s, ssize, "empty"))
            records.append((i, None, None))
            continue
        rec, err = parse_at(blob, s, ssize, base=off0 + s)
        if rec is not None:
            slots.append(SlotStatus(i, off0 + s, ssize, "valid", generation=rec.generation))
        else:
            slots.append(SlotStatus(i, off0 + s, ssize, "invalid", error=err))
        records.append((i, rec, err))
    valid = [(i, r) for i, r, _ in records if r is not None]
    found: list[Found] = []

    def where(i: int) -> Location:
        d = dict(loc or {})
        d["slot"] = i
        if base is not None:
            d["offset"] = off0 + (s0, s1)[i]
        else:
            d["member_offset"] = (s0, s1)[i]
        return Location(**d)

    if valid:
        # R25: larger generation wins; equal generations, slot 0 wins (max keeps the first).
        best_i, best = max(valid, key=lambda t: (t[1].generation, -t[0]))
        slots[best_i].chosen = True
        found.append(Found(kind, where(best_i), best, None))
    else:
        for i, _, err in records:
            if err is not None:
                found.append(Found(kind, where(i), None, err))
    return slots, found
