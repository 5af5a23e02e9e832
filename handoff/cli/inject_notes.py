"""``handoff inject-notes``: add a record (and a restore report) to a dump saved by other tools."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
Add the newest valid handoff record found in RECORD (a raw record, note file, region, initrd or
dump: anything `handoff inspect` reads) and, if given, the restore report REPORT (a JSON file)
to DUMP as ELF notes (owner HANDOFF, types 0x48440001 and 0x48440002, spec §6).

DUMP is an ELF vmcore or a makedumpfile kdump-compressed dump (header version 4 or later).
A flattened dump (makedumpfile -F) must be converted first: makedumpfile -R OUT < DUMP.

Nothing in DUMP moves: the existing notes plus the new ones are appended at its end and only
the pointer to the note area is rewritten (PT_NOTE's p_offset/p_filesz, or the sub-header's
offset_note/size_note), after the appended bytes are on disk. Running it again appends again;
earlier HANDOFF notes stay, readers take the last of each type, and a note identical to one
already present is not added twice.
"""

EPILOG = """\
exit codes:
  0  notes added (or already present)
  1  DUMP is malformed, truncated or of an unsupported format, RECORD holds only invalid
     records, or REPORT is not a JSON document (DUMP is unchanged)
  2  usage error, or DUMP/RECORD does not exist
  3  RECORD holds no handoff record
  4  DUMP cannot be written (permission, read-only file system, locked by another process)
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "inject-notes",
        help="add a record and restore report to a saved dump",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    p.add_argument("dump", metavar="DUMP", help="ELF vmcore or kdump-compressed dump")
    p.add_argument("record", metavar="RECORD", help="where to read the record from")
    p.add_argument("report", metavar="REPORT", nargs="?", help="restore report (JSON)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import errno
    import os

    from handoff.capture.inject import inject_notes
    from handoff.capture.pipeline import load_record, load_report
    from handoff.cli._output import emit_json
    from handoff.errors import BadContainer, InvalidRecord, NoRecordFound, UsageError
    from handoff.record import NT_HANDOFF_RECORD, NT_HANDOFF_REPORT

    for what, path in (("dump", args.dump), ("record source", args.record)):
        if not os.path.isfile(path):
            raise UsageError(f"{what} {path}: no such file")
    rec, rec_info = load_record(args.record)
    if rec is None:
        msg = f"{args.record}: {rec_info.get('error')}"
        if rec_info["status"] == "missing":
            raise NoRecordFound(
                msg, hint="RECORD must hold a handoff record (see `handoff inspect`)"
            )
        raise InvalidRecord(
            msg, check=rec_info.get("check", "container"), hint="check it with `handoff inspect`"
        )
    notes = [(NT_HANDOFF_RECORD, rec.raw)]
    rep_info = None
    if args.report is not None:
        data, rep_info = load_report(args.report)
        if data is None:
            if rep_info["status"] == "missing":
                raise UsageError(f"report {args.report}: no such file")
            raise BadContainer(
                str(rep_info.get("error")),
                hint="REPORT must be the JSON that `handoff restore --report` wrote",
            )
        notes.append((NT_HANDOFF_REPORT, data))
    try:
        res = inject_notes(args.dump, notes)
    except OSError as e:  # ENOSPC, EIO: say which file, never a traceback
        from handoff.errors import EnvironmentProblem

        raise EnvironmentProblem(
            f"cannot write {args.dump}: {e.strerror or e}",
            hint="free space on its file system (the dump's header was not changed)"
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else None) from None
    if args.json:
        emit_json("inject-notes", {"result": res.as_dict(), "record": rec_info, "report": rep_info})
        return 0
    names = {NT_HANDOFF_RECORD: "record", NT_HANDOFF_REPORT: "restore report"}
    for t, size in res.added:
        extra = f" generation {rec.generation}" if t == NT_HANDOFF_RECORD else ""
        print(f"added {names[t]}{extra} ({size} bytes) to {args.dump}")
    for t, size in res.skipped:
        print(f"{names[t]} ({size} bytes) already in {args.dump}: not added again")
    if res.changed:
        print(
            f"note area now at offset {res.note_offset} ({res.note_size} bytes); "
            f"{res.appended} bytes appended, nothing else changed"
        )
    sys.stdout.flush()
    return 0
