"""What the sources layer returns: records found, where, and what their container looked like."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from handoff.errors import InvalidRecord
    from handoff.record import Record
    from handoff.vmcoreinfo import VmcoreInfo

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


@dataclass(frozen=True)
class Location:
    """Where a record was found. ``offset`` is a file offset when the bytes are in the file as
    is; inside a compressed cpio archive only ``member`` and ``member_offset`` are meaningful."""

    offset: int | None = None
    slot: int | None = None
    member: str | None = None
    member_offset: int | None = None
    archive: int | None = None  # 1-based index of the cpio archive in the initrd
    archive_offset: int | None = None
    compression: str | None = None
    within: str | None = None  # container kind inside a cpio member ("note", "raw", "region")
    note: int | None = None  # index in the container's note list

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
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Problem:
    """Something wrong in a container that did not stop the scan (an initrd's bad archive)."""

    message: str
    offset: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class NoteInfo:
    owner: str
    type: int
    type_name: str
    size: int  # descriptor size
    offset: int  # of the note header, in the note area's coordinates (file offset if raw)
    member: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class SlotStatus:
    slot: int
    offset: int
    size: int
    status: str  # "valid", "empty", "invalid"
    generation: int | None = None
    error: InvalidRecord | None = None
    chosen: bool = False

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


@dataclass
class Report:
    """A restore report note (NT_HANDOFF_REPORT): a JSON document, or why it is unreadable."""

    offset: int
    size: int
    data: Any = None
    error: str | None = None

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


@dataclass
class Found:
    """One record found in a container: validated (``record``) or refused (``error``)."""

    kind: str
    location: Location
    record: Record | None = None
    error: InvalidRecord | None = None
    reports: list[Report] = field(default_factory=list)
    vmcoreinfo: VmcoreInfo | None = None
    container: Container | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.record is not None


@dataclass
class Container:
    """What a file turned out to be, whether or not it holds a record."""

    kind: str
    name: str
    size: int
    found: list[Found] = field(default_factory=list)
    notes: list[NoteInfo] = field(default_factory=list)
    vmcoreinfo: VmcoreInfo | None = None
    reports: list[Report] = field(default_factory=list)
    slots: list[SlotStatus] = field(default_factory=list)
    archives: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    missing_tools: list[str] = field(default_factory=list)

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
