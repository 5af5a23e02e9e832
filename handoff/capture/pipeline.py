"""`handoff capture` as a library call: save the vmcore, inject the record and report, describe.

The dump comes first. A missing or corrupt record, an unreadable report, a missing makedumpfile
or a failed injection never cost the dump: each is recorded in the result (``warnings`` and
``exit_code``) after the dump is saved and fsynced.

Files, in ``DIR/<UTC timestamp>/`` (or ``DIR/`` with ``subdir=False``):
``vmcore.incomplete`` while saving and injecting, renamed to ``vmcore`` when done (so a
``vmcore`` is always whole), and ``handoff-capture.json`` (:mod:`handoff.capture.meta`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from handoff import errors as E
from handoff import outfile, paths
from handoff._slots import Slots
from handoff.capture import meta as M
from handoff.capture import save as S
from handoff.capture.inject import (
    InjectResult,
    NoNoteRoom,
    inject_notes,
    inject_notes_copy,
    notes_size,
)
from handoff.capture.layout import SPARE_ROOM
from handoff.record import NT_HANDOFF_RECORD, NT_HANDOFF_REPORT, Record

DEFAULT_VMCORE = paths.VMCORE
DEFAULT_RECORD = paths.CAPTURE_RECORD
# Where the capture hooks have `handoff restore` write its report; used when it exists and no
# report is named.
DEFAULT_REPORT = paths.CAPTURE_REPORT
DUMP_NAME = "vmcore"
INCOMPLETE_SUFFIX = ".incomplete"
DEFAULT_MAKEDUMPFILE_ARGS = ("-c", "-d", "31")  # Debian kdump-tools' MAKEDUMP_ARGS
MAX_REPORT = 4 << 20  # what handoff.sources reads back (records.MAX_REPORT)


_CAPTURE_FIELDS = ("directory", "dump", "method", "argv", "save", "inject", "record", "report",
                   "meta", "warnings", "exit_code", "dry_run")


class CaptureResult(Slots):
    """What :func:`capture` did: where the dump is, how it was saved, what was injected."""

    __slots__ = _CAPTURE_FIELDS
    directory: str
    dump: str  # final path of the dump
    method: str
    argv: tuple[str, ...]
    save: S.SaveResult | None  # None in a dry run
    inject: InjectResult | None
    record: dict[str, Any]
    report: dict[str, Any] | None
    meta: str | None
    warnings: list[str]
    exit_code: int
    dry_run: bool

    def __init__(self, directory: str, dump: str, method: str, argv: tuple[str, ...] = (),
                 save: S.SaveResult | None = None, inject: InjectResult | None = None,
                 record: dict[str, Any] | None = None, report: dict[str, Any] | None = None,
                 meta: str | None = None, warnings: list[str] | None = None,
                 exit_code: int = E.EXIT_OK, dry_run: bool = False) -> None:
        self.directory, self.dump, self.method, self.argv = directory, dump, method, argv
        self.save, self.inject = save, inject
        self.record = {} if record is None else record
        self.report, self.meta = report, meta
        self.warnings = [] if warnings is None else warnings
        self.exit_code, self.dry_run = exit_code, dry_run

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "directory": self.directory,
            "dump": self.dump,
            "method": self.method,
            "argv": list(self.argv),
            "save": self.save.as_dict() if self.save else None,
            "notes": self.inject.as_dict() if self.inject else None,
            "record": self.record,
            "report": self.report,
            "meta": self.meta,
            "warnings": self.warnings,
            "exit_code": self.exit_code,
        }


def load_record(path: str | None) -> tuple[Record | None, dict[str, Any]]:
    """The newest valid record in ``path`` (default: the capture initrd's), never raising.

    ``info["status"]`` is "ok", "missing" (no file, or no record in it) or "invalid".
    """
    from handoff.sources import read_path

    src = path or DEFAULT_RECORD
    info: dict[str, Any] = {"source": src}
    if not os.path.exists(src):
        info.update(status="missing", error=f"no record file at {src}")
        return None, info
    try:
        found = read_path(src)
    except E.NoRecordFound as e:
        info.update(status="missing", error=str(e))
        return None, info
    except (E.HandoffError, OSError) as e:
        info.update(status="invalid", error=str(e))
        return None, info
    good = sorted((f for f in found if f.record is not None), key=lambda f: f.record.generation)  # type: ignore[union-attr]
    if not good:
        bad = next((f.error for f in found if f.error is not None), None)
        info.update(status="invalid", error=str(bad) if bad else "no valid record")
        if bad is not None:
            info["check"] = bad.check
        return None, info
    rec = good[-1].record
    assert rec is not None
    info.update(
        status="ok",
        location=str(good[-1].location),
        generation=rec.generation,
        size=rec.size,
        sha256=M.sha256_hex(rec.raw),
        kernel_release=rec.kernel_release,
        hostname=rec.hostname,
        boot_id=rec.boot_id,
        created_ns=rec.created_ns,
        devices=len(rec.devices),
    )
    if len(found) > 1:
        info["records_in_source"] = len(found)
    return rec, info


def load_report(path: str) -> tuple[bytes | None, dict[str, Any]]:
    """The restore report's exact bytes, if they are a UTF-8 JSON document of sane size."""
    info: dict[str, Any] = {"source": path}
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_REPORT + 1)
    except FileNotFoundError:
        info.update(status="missing", error=f"no report file at {path}")
        return None, info
    except OSError as e:
        info.update(status="invalid", error=f"cannot read {path}: {e.strerror}")
        return None, info
    if len(data) > MAX_REPORT:
        info.update(status="invalid", error=f"{path} is larger than {MAX_REPORT >> 20} MiB")
        return None, info
    from handoff.sources.records import strict_json

    try:
        strict_json(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        info.update(status="invalid", error=f"{path} is not a UTF-8 JSON document ({e})")
        return None, info
    info.update(status="ok", size=len(data), sha256=M.sha256_hex(data))
    return data, info


def _make_dir(dump_dir: str, subdir: bool, now: float) -> str:
    try:
        os.makedirs(dump_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        raise E.EnvironmentProblem(
            f"cannot create the dump directory {dump_dir}: {e.strerror}",
            hint="pass --dump-dir on a mounted, writable file system",
        ) from None
    if not subdir:
        for name in (DUMP_NAME, DUMP_NAME + INCOMPLETE_SUFFIX):
            if os.path.lexists(os.path.join(dump_dir, name)):
                raise E.UsageError(
                    f"{os.path.join(dump_dir, name)} already exists; a dump is never overwritten",
                    hint="move it away, or drop --no-subdir to save into a timestamped directory",
                )
        return dump_dir
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    for i in range(1000):
        d = os.path.join(dump_dir, stamp if i == 0 else f"{stamp}-{i}")
        try:
            os.mkdir(d, 0o700)
            return d
        except FileExistsError:
            continue
    raise E.EnvironmentProblem(f"cannot find a free directory name under {dump_dir}")


def capture(
    *,
    dump_dir: str,
    vmcore: str = DEFAULT_VMCORE,
    fmt: str = "elf",
    makedumpfile_args: Sequence[str] | None = None,
    record: str | None = None,
    report: str | None = None,
    subdir: bool = True,
    progress: S.ProgressFn | None = None,
    show_tool_output: bool = False,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
    force: bool = False,
) -> CaptureResult:
    """Save ``vmcore`` into ``dump_dir`` and inject the record and restore report as notes.

    Raises only before the dump exists (bad arguments, no vmcore, unwritable directory) or
    when saving itself fails (a full disk); everything later is reported in the result.
    """
    mdf_args = _check_inputs(fmt, makedumpfile_args, vmcore)
    method = "sparse-copy" if mdf_args is None else "makedumpfile"
    rec, rec_info = load_record(record)
    report_path = (
        report
        if report is not None
        else (DEFAULT_REPORT if os.path.exists(DEFAULT_REPORT) else None)
    )
    rep_bytes, rep_info = load_report(report_path) if report_path else (None, None)
    notes: list[tuple[int, bytes]] = []
    if rec is not None:
        notes.append((NT_HANDOFF_RECORD, rec.raw))
    if rep_bytes is not None:
        notes.append((NT_HANDOFF_REPORT, rep_bytes))
    started = clock()
    if dry_run:
        return _dry_run(dump_dir, subdir, started, vmcore, fmt, mdf_args, method, rec_info,
                        rep_info)

    directory = _make_dir(dump_dir, subdir, started)
    final = os.path.join(directory, DUMP_NAME)
    work = final + INCOMPLETE_SUFFIX
    result = CaptureResult(directory, final, method, record=rec_info, report=rep_info,
                           warnings=[])
    saved, fallback, mdf_version = _save(result, vmcore, work, fmt, mdf_args, notes, progress,
                                         show_tool_output, started, clock, force)
    saved, inject_failed = _inject(result, work, notes, saved)
    if rec is None:
        result.warnings.append(f"no record injected: {rec_info.get('error')}")
    if rep_info is not None and rep_bytes is None:
        result.warnings.append(f"no report injected: {rep_info.get('error')}")
    try:  # never over a file that appeared meanwhile (--no-subdir), never through a symlink
        outfile.rename_noreplace(work, final)
    except FileExistsError:
        raise E.UsageError(f"{final} appeared while the dump was saved; the dump is kept as "
                           f"{work}", hint="move one of them away") from None
    M.fsync_dir(directory)
    result.save = cast("S.SaveResult", saved.replace(path=final))
    if result.inject:
        result.inject = cast(InjectResult, result.inject.replace(path=final))
    result.exit_code = _exit_code(rec_info, rep_info, report, fallback, inject_failed)
    _write_meta(result, started, clock(), mdf_version, status="saved", force=force)
    return result


def _check_inputs(fmt: str, makedumpfile_args: Sequence[str] | None,
                  vmcore: str) -> list[str] | None:
    """makedumpfile's arguments (None: a sparse copy), after refusing bad options and a
    missing or unreadable vmcore, before anything is written."""
    if fmt not in ("elf", "kdump"):
        raise E.UsageError(f"--format must be elf or kdump, not {fmt!r}")
    mdf_args: list[str] | None = None
    if fmt == "kdump" or makedumpfile_args is not None:
        mdf_args = list(
            makedumpfile_args
            if makedumpfile_args is not None
            else (DEFAULT_MAKEDUMPFILE_ARGS if fmt == "kdump" else ())
        )
        S.makedumpfile_argv("makedumpfile", mdf_args, vmcore, "DUMP", fmt=fmt)
    if not os.path.exists(vmcore):
        raise E.EnvironmentProblem(
            f"no vmcore at {vmcore}",
            hint="run `handoff capture` in the kdump capture kernel, or pass --vmcore FILE",
        )
    if not os.access(vmcore, os.R_OK):
        raise E.EnvironmentProblem(f"cannot read {vmcore} (permission denied)", hint="run as root")
    return mdf_args


def _dry_run(dump_dir: str, subdir: bool, started: float, vmcore: str, fmt: str,
             mdf_args: list[str] | None, method: str, rec_info: dict[str, Any],
             rep_info: dict[str, Any] | None) -> CaptureResult:
    """Where the dump would go and the makedumpfile argv that would save it; nothing written."""
    d = (
        os.path.join(dump_dir, time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)))
        if subdir
        else dump_dir
    )
    dump = os.path.join(d, DUMP_NAME)
    argv: tuple[str, ...] = ()
    if mdf_args is not None:
        argv = tuple(
            S.makedumpfile_argv(
                S.find_makedumpfile() or "makedumpfile",
                mdf_args,
                vmcore,
                dump + INCOMPLETE_SUFFIX,
                fmt=fmt,
            )
        )
    return CaptureResult(
        d,
        dump,
        method,
        argv,
        record=rec_info,
        report=rep_info,
        exit_code=_exit_code(rec_info, rep_info, None, False, False),
        dry_run=True,
    )


def _save(result: CaptureResult, vmcore: str, work: str, fmt: str,
          mdf_args: list[str] | None, notes: list[tuple[int, bytes]],
          progress: S.ProgressFn | None, show_tool_output: bool, started: float,
          clock: Callable[[], float], force: bool) -> tuple[S.SaveResult, bool, str | None]:
    """Save the dump to ``work`` with makedumpfile, or as a sparse ELF copy when it is not
    wanted or fails: (what was saved, whether that was a fallback, makedumpfile's version).
    A failure to save at all is written to the metadata file and raised."""
    fallback = False
    saved: S.SaveResult | None = None
    mdf_version: str | None = None
    warnings = result.warnings
    try:
        if mdf_args is not None:
            tool = S.find_makedumpfile()
            if tool is None:
                warnings.append("makedumpfile not found on PATH: saved an ELF dump instead")
                fallback = True
            else:
                mdf_version = S.makedumpfile_version(tool)
                argv = tuple(S.makedumpfile_argv(tool, mdf_args, vmcore, work, fmt=fmt))
                result.argv = argv
                try:
                    saved = S.run_makedumpfile(argv, show_output=show_tool_output)
                except E.EnvironmentProblem as e:
                    warnings.append(f"{e}; saved an ELF dump instead")
                    fallback = True
        if saved is None:
            # The notes go where /proc/vmcore has them, with room after them (layout.py).
            saved = S.copy_sparse(vmcore, work, progress=progress,
                                  note_room=notes_size(notes) + SPARE_ROOM)
            result.method = "sparse-copy"
        result.save = saved
        warnings.extend(saved.warnings)
    except E.HandoffError as e:
        result.warnings.append(str(e))
        result.exit_code = e.exit_code
        _write_meta(result, started, clock(), mdf_version, status="failed", force=force)
        # The caller prints these with the error: a missing metadata file must be said.
        e.warnings = [w for w in result.warnings if w != str(e)]  # type: ignore[attr-defined]
        raise
    return saved, fallback, mdf_version


def _inject(result: CaptureResult, work: str, notes: list[tuple[int, bytes]],
            saved: S.SaveResult) -> tuple[S.SaveResult, bool]:
    """Add the notes to the saved dump; (the saved dump as it is now, whether that failed).
    A failure is a warning: the dump is saved either way."""
    if not notes:
        return saved, False
    try:
        try:
            result.inject = inject_notes(work, notes)
        except NoNoteRoom:
            # makedumpfile -E puts the memory data right after the notes: lay the dump
            # out again with room for them, so that crash still reads it.
            result.inject = _inject_relaid(work, notes, result.warnings)
            st = os.stat(work)
            saved = cast("S.SaveResult", saved.replace(
                size=st.st_size, allocated=st.st_blocks * 512))
    except (E.HandoffError, OSError) as e:
        result.warnings.append(f"could not add the notes to the dump: {e}")
        return saved, True
    return saved, False


def _inject_relaid(work: str, notes: list[tuple[int, bytes]],
                   warnings: list[str]) -> InjectResult:
    """Copy ``work`` with room for ``notes`` after its note segment, inject, and put the copy
    in its place; the first copy is kept if that fails."""
    relaid = work + ".relayout"
    res = inject_notes_copy(work, relaid, notes)
    os.replace(relaid, work)
    warnings.append("the ELF dump had no room for the notes before its memory data: "
                    "copied it once more with room for them")
    return cast(InjectResult, res.replace(path=work))


def _exit_code(
    rec_info: dict[str, Any],
    rep_info: dict[str, Any] | None,
    report_arg: str | None,
    fallback: bool,
    inject_failed: bool,
) -> int:
    if rec_info.get("status") != "ok":
        return E.EXIT_NO_RECORD
    if fallback:
        return E.EXIT_ENVIRONMENT
    # A report that does not exist is only a warning: restore may not have run (or not got as
    # far as writing one); one that exists but is unreadable is an error.
    if inject_failed or (rep_info is not None and rep_info.get("status") == "invalid"):
        return E.EXIT_INVALID
    return E.EXIT_OK


def _write_meta(
    result: CaptureResult, started: float, finished: float, mdf_version: str | None, *,
    status: str, force: bool = False,
) -> None:
    save = result.save
    doc: dict[str, Any] = {
        "status": status,
        "dump": os.path.basename(result.dump)
        if status == "saved"
        else os.path.basename(result.dump) + INCOMPLETE_SUFFIX,
        "format": save.format if save else None,
        "method": result.method,
        "source": save.source if save else None,
        "source_size": save.source_size if save else None,
        "size": save.size if save else None,
        "allocated": save.allocated if save else None,
        "started": M.iso_time(started),
        "finished": M.iso_time(finished),
        "seconds": round(finished - started, 3),
        "record": result.record,
        "report": result.report,
        "notes": result.inject.as_dict() if result.inject else None,
        "save": save.as_dict() if save else None,
        "tools": M.tool_versions(mdf_version),
        "warnings": result.warnings,
        "exit_code": result.exit_code,
    }
    try:
        result.meta = M.write_meta(result.directory, doc, force=force)
    except (E.HandoffError, OSError) as e:  # the dump matters more than its description
        result.warnings.append(f"no metadata saved: {e}")
