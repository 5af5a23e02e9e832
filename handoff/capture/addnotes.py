"""Add a record (and a restore report) to a dump saved by other tools: inject-notes as one call.

The dump keeps every byte it had (handoff.capture.inject); a flattened dump is reassembled
first when asked (handoff.capture.reassemble); with ``output`` a copy gets the notes instead.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from handoff._slots import Slots


class Added(Slots):
    """What add_notes did: the injection result and what it read, for the CLI to print."""

    __slots__ = ("dump_osrelease", "reassembled", "record", "record_info", "report_info",
                 "result", "target", "warnings")
    result: Any  # handoff.capture.inject.InjectResult
    record: Any  # handoff.record.Record
    record_info: dict[str, Any]
    report_info: dict[str, Any] | None
    dump_osrelease: str | None
    warnings: list[str]
    reassembled: Any  # what reassemble() returned, or None
    target: str  # the file that holds the notes now (output, else the dump)

    def __init__(self, result: Any, record: Any, record_info: dict[str, Any],
                 report_info: dict[str, Any] | None, dump_osrelease: str | None,
                 warnings: list[str], reassembled: Any, target: str) -> None:
        self.result = result
        self.record = record
        self.record_info = record_info
        self.report_info = report_info
        self.dump_osrelease = dump_osrelease
        self.warnings = warnings
        self.reassembled = reassembled
        self.target = target


def add_notes(dump: str, record: str, *, report: str | None = None, output: str | None = None,
              reassemble: bool = False) -> Added:
    """Add the newest valid record in ``record`` (and the report at ``report``) to ``dump``,
    or to a new copy ``output``. Raises UsageError, NoRecordFound, InvalidRecord,
    BadContainer or EnvironmentProblem naming what to fix; the dump is then unchanged."""
    from handoff.errors import UsageError
    from handoff.sources.crosscheck import osrelease, release_mismatch

    for what, path in (("dump", dump), ("record source", record)):
        if not os.path.isfile(path):
            raise UsageError(f"{what} {path}: no such file")
    if output is not None and os.path.lexists(output):
        raise UsageError(f"{output} already exists; a dump is never overwritten",
                         hint="name a new file with --output")
    rec, rec_info, rep_info, notes = _notes(record, report)
    if reassemble and output is not None:
        raise UsageError("--reassemble replaces DUMP and --output writes a copy: give one")
    warnings = []
    dump_release = osrelease(dump)
    if dump_release and rec.kernel_release and dump_release != rec.kernel_release:
        warnings.append(release_mismatch(rec.generation, rec.kernel_release, dump_release))
    target_name = output if output is not None else dump
    target, reassembled = _reassembled(dump) if reassemble and _is_flattened(dump) \
        else (dump, None)
    res = _inject(dump, target, output, target_name, notes)
    return Added(res, rec, rec_info, rep_info, dump_release, warnings, reassembled,
                 target_name)


def _notes(record: str, report: str | None
           ) -> tuple[Any, dict[str, Any], dict[str, Any] | None, list[tuple[int, bytes]]]:
    """The record (and report) to add, what loading each said, and the notes they make."""
    from handoff.capture.pipeline import load_record, load_report
    from handoff.errors import BadContainer, InvalidRecord, NoRecordFound, UsageError
    from handoff.record import NT_HANDOFF_RECORD, NT_HANDOFF_REPORT

    rec, rec_info = load_record(record)
    if rec is None:
        msg = f"{record}: {rec_info.get('error')}"
        if rec_info["status"] == "missing":
            raise NoRecordFound(
                msg, hint="RECORD must hold a handoff record (see `handoff inspect`)"
            )
        raise InvalidRecord(
            msg, check=rec_info.get("check", "container"), hint="check it with `handoff inspect`"
        )
    notes = [(NT_HANDOFF_RECORD, rec.raw)]
    rep_info = None
    if report is not None:
        data, rep_info = load_report(report)
        if data is None:
            if rep_info["status"] == "missing":
                raise UsageError(f"report {report}: no such file")
            raise BadContainer(
                str(rep_info.get("error")),
                hint="REPORT must be the JSON that `handoff restore --report` wrote",
            )
        notes.append((NT_HANDOFF_REPORT, data))
    return rec, rec_info, rep_info, notes


def _reassembled(dump: str) -> tuple[str, Any]:
    """A flattened dump reassembled beside itself by makedumpfile: (the pending file the
    notes go into, what reassembling did)."""
    from handoff.capture import reassemble as R
    from handoff.capture.save import find_makedumpfile
    from handoff.errors import EnvironmentProblem

    tool = find_makedumpfile()
    if tool is None:
        raise EnvironmentProblem("makedumpfile is not installed: it reassembles a "
                                 "flattened dump", hint="install makedumpfile")
    reassembled = R.reassemble(dump, tool)
    return R.pending(dump), reassembled


def _inject(dump: str, target: str, output: str | None, target_name: str,
            notes: list[tuple[int, bytes]]) -> Any:
    """Inject into ``target`` (or a copy at ``output``); a reassembled ``target`` then
    replaces ``dump``, and is removed if anything failed."""
    from handoff.capture.inject import inject_notes, inject_notes_copy
    from handoff.errors import EnvironmentProblem

    try:
        if output is not None:
            res = inject_notes_copy(dump, output, notes)
        else:
            res = inject_notes(target, notes)
    except OSError as e:  # ENOSPC, EIO: say which file, never a traceback
        if target != dump:
            os.unlink(target)  # the original flattened dump stays as it was
        raise EnvironmentProblem(
            f"cannot write {target_name}: {e.strerror or e}",
            hint="free space on its file system (the dump's header was not changed)"
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else None) from None
    except BaseException:
        if target != dump:
            os.unlink(target)
        raise
    if target != dump:
        from handoff.capture import reassemble as R

        R.replace(dump)
        res = res.renamed(dump)
    return res


def _is_flattened(path: str) -> bool:
    from handoff.formats.dumpformat import dump_format

    with open(path, "rb") as f:
        return dump_format(f.read(16)) == "flattened"
