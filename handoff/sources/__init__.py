"""The sources layer: find handoff records in any container, by content, never by file name.

Containers (``Found.kind``): ``raw`` (one record, nothing else), ``note`` (a file of ELF notes,
§6), ``region`` (two-slot region, §7), ``initrd`` (concatenated cpio archives, raw or
gzip/xz/bzip2/lzma/zstd), ``elf-vmcore`` (ELF ET_CORE; notes from PT_NOTE only),
``kdump-compressed`` and ``flattened`` (makedumpfile). Records inside an initrd have kind
``initrd`` and say in ``location.within`` which container the member was.

- :func:`read_path` / :func:`read_bytes`: the records (valid or refused); raise
  :class:`~handoff.errors.NoRecordFound` if there are none, with the container attached as
  ``.container``.
- :func:`scan_path` / :func:`scan_bytes`: the :class:`Container` (kind, notes, VMCOREINFO,
  restore reports, region slots, cpio archives, problems) whether or not it holds a record.

Every malformation raises :class:`~handoff.errors.BadContainer` (one line, with an offset);
nothing reads more than the headers and notes of a dump. A missing or unreadable path raises
the ``OSError`` from ``open``.
"""

from __future__ import annotations

from handoff.sources.model import (
    KINDS,
    Container,
    Found,
    Location,
    NoteInfo,
    Problem,
    Report,
    SlotStatus,
)

__all__ = [
    "KINDS",
    "Container",
    "Found",
    "Location",
    "NoteInfo",
    "Problem",
    "Report",
    "SlotStatus",
    "read_bytes",
    "read_path",
    "records_of",
    "scan_bytes",
    "scan_path",
]


def scan_path(path: str) -> Container:
    """Recognise the file at ``path`` and collect everything it holds."""
    from handoff.sources.blob import FileBlob
    from handoff.sources.detect import scan_blob

    with FileBlob(path) as blob:
        return scan_blob(blob, str(path))


def scan_bytes(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> Container:
    """Like :func:`scan_path`, for bytes already in memory."""
    from handoff.sources.blob import BytesBlob
    from handoff.sources.detect import scan_blob

    return scan_blob(BytesBlob(data), name)


def records_of(c: Container) -> list[Found]:
    """The records of a scanned container, or the error that explains why there are none."""
    from handoff.errors import BadContainer, EnvironmentProblem, NoRecordFound

    if c.found:
        return list(c.found)
    if c.missing_tools:
        err: Exception = EnvironmentProblem(
            f"no handoff record found in {c.name} outside what could not be examined: "
            f"{c.problems[0]}",
            hint="install " + " and ".join(sorted(set(c.missing_tools))),
        )
    elif c.problems:
        err = BadContainer(f"{c.name}: {c.problems[0]}", offset=c.problems[0].offset)
    else:
        err = NoRecordFound(f"no handoff record in {c.name} ({c.describe()})")
    err.container = c  # type: ignore[attr-defined]
    raise err


def read_path(path: str) -> list[Found]:
    """Every record in the file at ``path``: validated, or refused with the failed check."""
    return records_of(scan_path(path))


def read_bytes(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> list[Found]:
    """Every record in ``data``; see :func:`read_path`."""
    return records_of(scan_bytes(data, name))
