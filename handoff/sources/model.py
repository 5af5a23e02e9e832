"""What the sources layer returns: records found, where, and what their container looked like."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handoff._slots import Frozen, Slots

if TYPE_CHECKING:  # pragma: no cover
    from handoff.errors import InvalidRecord
    from handoff.formats.vmcoreinfo import VmcoreInfo
    from handoff.record import Record

KINDS = ("raw", "note", "region", "initrd", "elf-vmcore", "kdump-compressed", "flattened")

_DESCRIPTIONS = {
    "raw": "a raw record",
    "note": "a note file",
    "region": "a two-slot region",
    "initrd": "an initrd",
    "elf-vmcore": "an ELF vmcore",
    "kdump-compressed": "a makedumpfile kdump-compressed dump",
    "flattened": "a makedumpfile flattened dump",
    "empty": "an empty file",
    "unknown": "not a known container",
}


class Location(Frozen):
    """Where a record was found. ``offset`` is a file offset when the bytes are in the file as
    is; inside a compressed cpio archive only ``member`` and ``member_offset`` are meaningful."""

    __slots__ = (
        "archive",
        "archive_offset",
        "compression",
        "member",
        "member_offset",
        "note",
        "offset",
        "slot",
        "within",
    )
    offset: int | None
    slot: int | None
    member: str | None
    member_offset: int | None
    archive: int | None  # 1-based index of the cpio archive in the initrd
    archive_offset: int | None
    compression: str | None
    within: str | None  # container kind inside a cpio member ("note", "raw", "region")
    note: int | None  # index in the container's note list

    def __init__(
        self,
        offset: int | None = None,
        slot: int | None = None,
        member: str | None = None,
        member_offset: int | None = None,
        archive: int | None = None,
        archive_offset: int | None = None,
        compression: str | None = None,
        within: str | None = None,
        note: int | None = None,
    ) -> None:
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "slot", slot)
        object.__setattr__(self, "member", member)
        object.__setattr__(self, "member_offset", member_offset)
        object.__setattr__(self, "archive", archive)
        object.__setattr__(self, "archive_offset", archive_offset)
        object.__setattr__(self, "compression", compression)
        object.__setattr__(self, "within", within)
        object.__setattr__(self, "note", note)

    def __str__(self) -> str:
        parts = []
        if self.member is not None:
            arch = f"archive {self.archive}"
            if self.compression:
                arch += f", {self.compression}"
            arch += f", at offset {self.archive_offset}"
            parts.append(f"cpio member {self.member} ({arch})")
            if self.within and self.within != "raw":
                parts.append(f"{self.within} at member offset {self.member_offset}")
            elif self.member_offset:
                parts.append(f"member offset {self.member_offset}")
        if self.slot is not None:
            parts.append(f"slot {self.slot}")
        if self.offset is not None:
            parts.append(f"offset {self.offset}")
        return ", ".join(parts) or "?"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.as_dict().items() if v is not None}


class Problem(Frozen):
    """Something wrong in a container that did not stop the scan (an initrd's bad archive)."""

    __slots__ = ("message", "offset")
    message: str
    offset: int | None

    def __init__(self, message: str, offset: int | None = None) -> None:
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "offset", offset)

    def __str__(self) -> str:
        return self.message


class NoteInfo(Frozen):
    __slots__ = ("member", "offset", "owner", "size", "type", "type_name")
    owner: str
    type: int
    type_name: str
    size: int  # descriptor size
    offset: int  # of the note header, in the note area's coordinates (file offset if raw)
    member: str | None

    def __init__(
        self,
        owner: str,
        type: int,
        type_name: str,
        size: int,
        offset: int,
        member: str | None = None,
    ) -> None:
        object.__setattr__(self, "owner", owner)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "type_name", type_name)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "member", member)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.as_dict().items() if v is not None}


class SlotStatus(Slots):
    __slots__ = ("chosen", "error", "generation", "offset", "size", "slot", "status")
    slot: int
    offset: int
    size: int
    status: str  # "valid", "empty", "invalid"
    generation: int | None
    error: InvalidRecord | None
    chosen: bool

    def __init__(
        self,
        slot: int,
        offset: int,
        size: int,
        status: str,
        generation: int | None = None,
        error: InvalidRecord | None = None,
        chosen: bool = False,
    ) -> None:
        self.slot = slot
        self.offset = offset
        self.size = size
        self.status = status
        self.generation = generation
        self.error = error
        self.chosen = chosen

    def describe(self) -> str:
        if self.status == "valid":
            return f"valid, generation {self.generation}" + (" (current)" if self.chosen else "")
        if self.status == "invalid" and self.error is not None:
            return f"invalid: {self.error} (check {self.error.check}, offset {self.error.offset})"
        return self.status

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"slot": self.slot, "offset": self.offset, "size": self.size,
                             "status": self.status, "chosen": self.chosen}
        if self.generation is not None:
            d["generation"] = self.generation
        if self.error is not None:
            d["error"] = error_json(self.error)
        return d


class Report(Slots):
    """A restore report note (NT_HANDOFF_REPORT): a JSON document, or why it is unreadable."""

    __slots__ = ("data", "error", "offset", "size")
    offset: int
    size: int
    data: Any
    error: str | None

    def __init__(self, offset: int, size: int, data: Any = None, error: str | None = None) -> None:
        self.offset = offset
        self.size = size
        self.data = data
        self.error = error

    def summary(self) -> str:
        if self.error:
            return f"unreadable report ({self.error})"
        d = self.data
        if not isinstance(d, dict):
            return f"a JSON {type(d).__name__}"
        for key in ("summary", "result", "status", "outcome"):
            if isinstance(d.get(key), str):
                s = d[key]
                break
        else:
            s = ""
        counts = [f"{len(v)} {k}" for k, v in d.items() if isinstance(v, list)]
        return "; ".join(x for x in [s, ", ".join(counts)] if x) or f"{len(d)} keys"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"offset": self.offset, "size": self.size}
        if self.error:
            d["error"] = self.error
        else:
            d["report"] = self.data
        return d


class Found(Slots):
    """One record found in a container: validated (``record``) or refused (``error``)."""

    __slots__ = ("container", "error", "kind", "location", "record", "reports", "vmcoreinfo")
    _eq_skip = ('container',)
    _repr_skip = ('container',)
    kind: str
    location: Location
    record: Record | None
    error: InvalidRecord | None
    reports: list[Report]
    vmcoreinfo: VmcoreInfo | None
    container: Container | None

    def __init__(
        self,
        kind: str,
        location: Location,
        record: Record | None = None,
        error: InvalidRecord | None = None,
        reports: list[Report] | None = None,
        vmcoreinfo: VmcoreInfo | None = None,
        container: Container | None = None,
    ) -> None:
        self.kind = kind
        self.location = location
        self.record = record
        self.error = error
        self.reports = [] if reports is None else reports
        self.vmcoreinfo = vmcoreinfo
        self.container = container

    @property
    def ok(self) -> bool:
        return self.record is not None


class Container(Slots):
    """What a file turned out to be, whether or not it holds a record."""

    __slots__ = (
        "archives",
        "details",
        "found",
        "kind",
        "missing_tools",
        "name",
        "notes",
        "problems",
        "reports",
        "size",
        "slots",
        "vmcoreinfo",
    )
    kind: str
    name: str
    size: int
    found: list[Found]
    notes: list[NoteInfo]
    vmcoreinfo: VmcoreInfo | None
    reports: list[Report]
    slots: list[SlotStatus]
    archives: list[dict[str, Any]]
    details: dict[str, Any]
    problems: list[Problem]
    missing_tools: list[str]

    def __init__(
        self,
        kind: str,
        name: str,
        size: int,
        found: list[Found] | None = None,
        notes: list[NoteInfo] | None = None,
        vmcoreinfo: VmcoreInfo | None = None,
        reports: list[Report] | None = None,
        slots: list[SlotStatus] | None = None,
        archives: list[dict[str, Any]] | None = None,
        details: dict[str, Any] | None = None,
        problems: list[Problem] | None = None,
        missing_tools: list[str] | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.size = size
        self.found = [] if found is None else found
        self.notes = [] if notes is None else notes
        self.vmcoreinfo = vmcoreinfo
        self.reports = [] if reports is None else reports
        self.slots = [] if slots is None else slots
        self.archives = [] if archives is None else archives
        self.details = {} if details is None else details
        self.problems = [] if problems is None else problems
        self.missing_tools = [] if missing_tools is None else missing_tools

    def describe(self) -> str:
        """A short phrase: "an ELF vmcore with 3 notes"."""
        base = _DESCRIPTIONS.get(self.kind, self.kind)
        if self.kind in ("note", "elf-vmcore", "kdump-compressed", "flattened"):
            inner = self.details.get("inner")
            if self.kind == "flattened" and inner:
                base += f" ({inner} inside)"
            n = len(self.notes)
            return f"{base} with {n} note{'s' if n != 1 else ''}"
        if self.kind == "region":
            return base + " (" + ", ".join(
                f"slot {s.slot}: {s.status}" for s in self.slots) + ")"
        if self.kind == "initrd":
            n = len(self.archives)
            methods = ", ".join(a["compression"] or "uncompressed" for a in self.archives)
            members = sum(a["members"] for a in self.archives)
            return (f"{base} of {n} cpio archive{'s' if n != 1 else ''}"
                    + (f" ({methods})" if n else "") + f", {members} members")
        if self.kind == "unknown" and "first_bytes" in self.details:
            return f"{base} (starts with {self.details['first_bytes']})"
        return base


def error_json(e: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"type": type(e).__name__, "message": str(e)}
    for k in ("check", "offset"):
        v = getattr(e, k, None)
        if v is not None:
            d[k] = v
    return d
