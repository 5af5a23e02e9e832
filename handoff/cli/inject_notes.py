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
A flattened dump (makedumpfile -F, what Debian's kdump-tools saves) has no note area: with
--reassemble, `makedumpfile -R` first turns it into the kdump-compressed dump it streams, in a
new file beside it that replaces it by one rename once the notes are in (it needs as much free
space again); without it, a flattened DUMP is refused.

Nothing in DUMP moves. In an ELF dump the new notes go right after the existing ones, into
the gap before the first PT_LOAD's data, so they stay in the header area that crash(8) reads
(as in /proc/vmcore and in what `handoff capture` saves); then PT_NOTE's p_filesz is rewritten.
A dump without that room (a plain copy of /proc/vmcore, makedumpfile -E output) is refused and
left unchanged: --output NEW writes a copy laid out with room for the notes instead (PT_LOAD
bytes unchanged, moved by whole pages; zero pages stay holes). In a kdump-compressed dump the
note area is copied to the end of the file with the new notes after it, and the sub-header's
offset_note/size_note are rewritten. Either way the new bytes are on disk before the header
field that points at them. Running it again adds again; earlier HANDOFF notes stay, readers
take the last of each type, and a note identical to one already present is not added twice.

A warning is printed when the record was made on another kernel than the one in DUMP
(VMCOREINFO's OSRELEASE): the record may belong to another crash.
"""

EPILOG = """\
examples:
  handoff inject-notes /var/crash/202612061200/vmcore rec.bin report.json
  handoff inject-notes --output vmcore.notes /var/crash/202612061200/vmcore rec.bin
  handoff inject-notes --json dump.kdump /boot/initrd.img-handoff

exit codes:
  0  notes added (or already present)
  1  DUMP is malformed, truncated or of an unsupported format, an ELF DUMP has no room for
     the notes where crash reads them (use --output), RECORD holds only invalid records, or
     REPORT is not a JSON document (DUMP is unchanged)
  2  usage error, or DUMP/RECORD does not exist, or NEW already exists
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
    p.add_argument("--reassemble", action="store_true",
                   help="turn a flattened DUMP into a kdump-compressed one first (same name)")
    p.add_argument("-o", "--output", metavar="NEW",
                   help="write a copy of DUMP with the notes to the new file NEW; DUMP is "
                   "only read")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import errno
    import os

    from handoff.capture.inject import inject_notes, inject_notes_copy
    from handoff.capture.pipeline import load_record, load_report
    from handoff.cli._output import emit_json
    from handoff.errors import (
        BadContainer,
        EnvironmentProblem,
        InvalidRecord,
        NoRecordFound,
        UsageError,
    )
    from handoff.record import NT_HANDOFF_RECORD, NT_HANDOFF_REPORT
    from handoff.sources.crosscheck import osrelease, release_mismatch

    for what, path in (("dump", args.dump), ("record source", args.record)):
        if not os.path.isfile(path):
            raise UsageError(f"{what} {path}: no such file")
    if args.output is not None and os.path.lexists(args.output):
        raise UsageError(f"{args.output} already exists; a dump is never overwritten",
                         hint="name a new file with --output")
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
    if args.reassemble and args.output is not None:
        raise UsageError("--reassemble replaces DUMP and --output writes a copy: give one")
    warnings = []
    dump_release = osrelease(args.dump)
    if dump_release and rec.kernel_release and dump_release != rec.kernel_release:
        warnings.append(release_mismatch(rec.generation, rec.kernel_release, dump_release))
    target_name = args.output if args.output is not None else args.dump
    target, reassembled = args.dump, None
    if args.reassemble and _is_flattened(args.dump):
        from handoff.capture import reassemble
        from handoff.capture.save import find_makedumpfile

        tool = find_makedumpfile()
        if tool is None:
            raise EnvironmentProblem("makedumpfile is not installed: it reassembles a "
                                     "flattened dump", hint="install makedumpfile")
        reassembled = reassemble.reassemble(args.dump, tool)
        target = reassemble.pending(args.dump)
    try:
        if args.output is not None:
            res = inject_notes_copy(args.dump, args.output, notes)
        else:
            res = inject_notes(target, notes)
    except OSError as e:  # ENOSPC, EIO: say which file, never a traceback
        if target != args.dump:
            os.unlink(target)  # the original flattened dump stays as it was
        raise EnvironmentProblem(
            f"cannot write {target_name}: {e.strerror or e}",
            hint="free space on its file system (the dump's header was not changed)"
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else None) from None
    except BaseException:
        if target != args.dump:
            os.unlink(target)
        raise
    if target != args.dump:
        from handoff.capture import reassemble

        reassemble.replace(args.dump)
        res = res.renamed(args.dump)
    for w in warnings:  # after the notes are in: a refusal's own line says what matters
        sys.stderr.write(f"handoff: warning: {w}\n")
    if args.json:
        emit_json("inject-notes", {"result": res.as_dict(), "record": rec_info, "report": rep_info,
                                   "dump_osrelease": dump_release, "warnings": warnings,
                                   "reassembled": reassembled})
        return 0
    if reassembled:
        print(f"reassembled {args.dump} from makedumpfile's flattened format ({reassembled})")
    names = {NT_HANDOFF_RECORD: "record", NT_HANDOFF_REPORT: "restore report"}
    for t, size in res.added:
        extra = f" generation {rec.generation}" if t == NT_HANDOFF_RECORD else ""
        print(f"added {names[t]}{extra} ({size} bytes) to {target_name}")
    for t, size in res.skipped:
        print(f"{names[t]} ({size} bytes) already in {target_name}: not added again")
    if args.output is not None:
        print(f"{target_name}: a copy of {args.dump} with room for the notes; {args.dump} is "
              "unchanged")
    if res.changed and res.method == "in-place":
        print(f"note segment now {res.note_size} bytes at offset {res.note_offset}, grown in "
              "place; nothing else changed")
    elif res.changed:
        print(
            f"note area now at offset {res.note_offset} ({res.note_size} bytes); "
            f"{res.appended} bytes appended, nothing else changed"
        )
    sys.stdout.flush()
    return 0


def _is_flattened(path: str) -> bool:
    from handoff.capture.inject import dump_format

    with open(path, "rb") as f:
        return dump_format(f.read(16)) == "flattened"
