"""``handoff capture``: save /proc/vmcore in the capture kernel and keep the device state with it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
Save the crashed kernel's memory (/proc/vmcore) into DIR/<UTC timestamp>/vmcore, then add the
handoff record and the restore report to the dump as ELF notes (owner HANDOFF, types
0x48440001 and 0x48440002, spec §6), so post-mortem tools keep the device state with the dump.

--format elf (default) copies the ELF vmcore (mapped with mmap, as makedumpfile does; read
where it cannot be mapped) and writes only its pages that are not all zero: zero pages stay
holes. It keeps /proc/vmcore's layout with room after the notes (the memory data moves by
whole pages), so that the notes stay in the header area crash(8) reads (docs/dumps.md). With
--makedumpfile-args it runs `makedumpfile -E ARGS` instead (and lays its output out again
with that room). --format kdump runs makedumpfile (default arguments "-c -d 31") for a
kdump-compressed dump. Without makedumpfile the dump is saved as ELF and the exit code
is 4.

The dump is written as vmcore.incomplete, fsynced, and renamed to vmcore when done;
handoff-capture.json beside it records the source, sizes, format, times, the record's
generation and SHA-256, and tool versions. A missing or corrupt record never costs the dump:
the dump is saved, whatever exists is injected, and the exit code says what was missing.
"""

EPILOG = """\
examples:
  handoff capture --dump-dir /var/crash            # in the capture kernel (the hooks run it)
  handoff capture --vmcore vmcore.copy --dump-dir out --format kdump
  handoff capture --dump-dir /var/crash --dry-run   # the makedumpfile argv, nothing written

exit codes:
  0  dump saved, record (and report, if any) injected
  1  dump saved, but the report was unreadable or the notes could not be added (a report
     file that does not exist is only a warning: restore may not have run)
  2  usage error (nothing written)
  3  dump saved, but no valid record was found: nothing of the device state is in the dump
  4  no vmcore, unwritable or full dump directory, or makedumpfile missing or failed
     (then the dump was saved as ELF: see the output)
"""


def register(sub: Any) -> None:
    from handoff.paths import CAPTURE_RECORD as DEFAULT_RECORD
    from handoff.paths import CAPTURE_REPORT as DEFAULT_REPORT
    from handoff.paths import VMCORE as DEFAULT_VMCORE

    p = sub.add_parser(
        "capture",
        help="save the vmcore and inject the device state (capture kernel)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    p.add_argument(
        "--vmcore",
        metavar="FILE",
        default=DEFAULT_VMCORE,
        help=f"the dump to save (default {DEFAULT_VMCORE})",
    )
    p.add_argument(
        "--dump-dir",
        metavar="DIR",
        required=True,
        help="where to save; a timestamped subdirectory is created in it",
    )
    p.add_argument(
        "--no-subdir",
        dest="subdir",
        action="store_false",
        help="save as DIR/vmcore instead of DIR/<timestamp>/vmcore",
    )
    p.add_argument(
        "--format",
        choices=("elf", "kdump"),
        default="elf",
        help="elf: sparse ELF copy (default); kdump: makedumpfile's compressed format",
    )
    p.add_argument(
        "--makedumpfile-args",
        metavar="ARGS",
        default=None,
        help='makedumpfile options, e.g. "-c -d 31" or "-l -d 31" (split like a '
        "shell would, never run by one)",
    )
    p.add_argument(
        "--record",
        metavar="SRC",
        default=None,
        help=f"record source: raw record, note file, region, initrd or vmcore "
        f"(default {DEFAULT_RECORD})",
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        default=None,
        help=f"restore report (JSON) to inject (default {DEFAULT_REPORT} if it exists)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: only when stderr is a terminal)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be done (and the makedumpfile command), write nothing",
    )
    p.add_argument("--force", action="store_true",
                   help="with --no-subdir, replace a handoff-capture.json that is not "
                        "capture metadata (a dump is never overwritten)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


class ProgressLine:
    """``capture:  42.0%  183.4/436.0 MiB  95.2 MB/s  eta 3s`` on one stderr line, 4 times/s."""

    def __init__(self, stream: Any = None, interval: float = 0.25) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and done < total:
            return
        self.last = now
        dt = max(now - self.t0, 1e-6)
        rate = done / dt
        pct = 100.0 * done / total if total else 100.0
        eta = f"  eta {int((total - done) / rate)}s" if rate > 0 and done < total else ""
        self.stream.write(
            f"\rcapture: {pct:5.1f}%  {done / 2**20:.1f}/{total / 2**20:.1f} MiB  "
            f"{rate / 1e6:.1f} MB/s{eta}   "
        )
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def run(args: argparse.Namespace) -> int:
    import shlex

    from handoff.capture.pipeline import capture
    from handoff.cli._output import emit_json
    from handoff.errors import HandoffError, UsageError

    mdf_args = None
    if args.makedumpfile_args is not None:
        try:
            mdf_args = shlex.split(args.makedumpfile_args)
        except ValueError as e:
            raise UsageError(f"--makedumpfile-args: {e}") from None
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressLine() if show and not args.dry_run else None
    try:
        res = capture(
            dump_dir=args.dump_dir,
            vmcore=args.vmcore,
            fmt=args.format,
            makedumpfile_args=mdf_args,
            record=args.record,
            report=args.report,
            subdir=args.subdir,
            progress=bar,
            show_tool_output=bool(show),
            dry_run=args.dry_run,
            force=args.force,
        )
    except HandoffError as e:
        for w in getattr(e, "warnings", ()):
            sys.stderr.write(f"handoff: warning: {w}\n")
        raise
    finally:
        if bar:
            bar.end()
    failure = _failure(res)
    if args.json:
        doc = res.as_dict()
        doc["exit_code"] = res.exit_code
        if failure:  # the error contract's keys (README, "Exit codes")
            doc.update(error=failure[0], hint=failure[1])
        emit_json("capture", doc)
        return res.exit_code
    _print_text(res, args.vmcore)
    for w in res.warnings:
        sys.stderr.write(f"handoff: warning: {w}\n")
    if failure:
        sys.stderr.write(f"handoff: error: {failure[0]}\nhandoff: hint: {failure[1]}\n")
    return res.exit_code


def _print_text(res: Any, vmcore: str) -> None:
    """What capture did (or would do), for people: the dump, the notes injected."""
    from handoff.record import NT_HANDOFF_RECORD

    out = sys.stdout.write
    if res.dry_run:
        out(f"would save {vmcore} to {res.dump} ({res.method})\n")
        if res.argv:
            from handoff.kexec.runner import format_argv

            out(f"  {format_argv(res.argv)}\n")
    else:
        s = res.save
        assert s is not None
        line = f"saved {res.dump}: {s.format}, {_size(s.size)}"
        if s.method == "sparse-copy":
            line += (
                f" ({_size(s.allocated)} on disk, {_size(s.zero_skipped)} of zero pages "
                f"skipped) in {s.seconds:.1f} s"
            )
        else:
            line += f" by makedumpfile ({_size(s.allocated)} on disk) in {s.seconds:.1f} s"
        out(line + "\n")
    rec = res.record
    if rec.get("status") == "ok":
        verb = "would inject" if res.dry_run else "injected"
        if res.inject and (NT_HANDOFF_RECORD, rec["size"]) in res.inject.skipped:
            verb = "already present:"
        out(
            f"{verb} record generation {rec['generation']} ({rec['size']} bytes, sha256 "
            f"{rec['sha256'][:16]}...) from {rec['source']}\n"
        )
    rep = res.report
    if rep and rep.get("status") == "ok":
        out(
            f"{'would inject' if res.dry_run else 'injected'} restore report ({rep['size']} "
            f"bytes) from {rep['source']}\n"
        )
    if res.meta:
        out(f"metadata: {res.meta}\n")


def _failure(res: Any) -> tuple[str, str] | None:
    """(error, hint) of a capture that saved the dump but did not do everything."""
    if res.exit_code == 0:
        return None
    if res.exit_code == 3:
        error = ("the dump would carry no device state (dry run)" if res.dry_run else
                 "the dump is saved, but it carries no device state")
        return error, ("pass --record with the record (e.g. the capture initrd's "
                       "handoff/record.note) and run `handoff inject-notes` on it")
    what = res.warnings[-1] if res.warnings else f"capture ended with exit code {res.exit_code}"
    return what, ("the warnings say what is missing" if res.dry_run else
                  "the dump is saved; the warnings say what is missing from it")
