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
    from handoff.capture.addnotes import add_notes
    from handoff.cli._output import emit_json
    from handoff.record import NT_HANDOFF_RECORD, NT_HANDOFF_REPORT

    done = add_notes(args.dump, args.record, report=args.report, output=args.output,
                     reassemble=args.reassemble)
    res, target_name = done.result, done.target
    for w in done.warnings:  # after the notes are in: a refusal's own line says what matters
        sys.stderr.write(f"handoff: warning: {w}\n")
    if args.json:
        emit_json("inject-notes", {"result": res.as_dict(), "record": done.record_info,
                                   "report": done.report_info,
                                   "dump_osrelease": done.dump_osrelease,
                                   "warnings": done.warnings, "reassembled": done.reassembled})
        return 0
    if done.reassembled:
        print(f"reassembled {args.dump} from makedumpfile's flattened format "
              f"({done.reassembled})")
    names = {NT_HANDOFF_RECORD: "record", NT_HANDOFF_REPORT: "restore report"}
    for t, size in res.added:
        extra = f" generation {done.record.generation}" if t == NT_HANDOFF_RECORD else ""
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
