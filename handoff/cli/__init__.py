"""The ``handoff`` command line: argument parsing, error reporting and exit codes.

Each subcommand lives in its own module here with ``register(subparsers)``, which adds the
parser and sets ``func``; implementation modules are imported inside ``func`` so that
``handoff --help`` and ``handoff inspect`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from handoff.errors import (
    EXIT_ENVIRONMENT,
    EXIT_INVALID,
    EXIT_NO_RECORD,
    EXIT_OK,
    EXIT_USAGE,
    HandoffError,
)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, wrapped to the terminal. argparse's own default width comes
    from ``shutil.get_terminal_size``, and importing shutil (with bz2, lzma and fnmatch) costs
    every command ~3 ms even when no help is printed; this reads the same $COLUMNS and
    terminal size directly."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    import os

    try:
        n = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        n = 0
    if n > 0:
        return n
    try:
        out = sys.__stdout__  # None when Python runs without a stdout
        return os.get_terminal_size(out.fileno()).columns or 80 if out else 80
    except (AttributeError, ValueError, OSError):
        return 80


# Order is the order of `handoff --help`.
COMMANDS = (
    "save",
    "inspect",
    "diff",
    "restore",
    "load",
    "unload",
    "status",
    "estimate",
    "capture",
    "inject_notes",
    "plugins",
)

EPILOG = f"""\
examples:
  sudo handoff save -o rec.bin && handoff inspect rec.bin
  handoff estimate                    # the crashkernel= size this machine needs
  sudo handoff load --dry-run         # the kexec argv, what it replaces, the sizes

exit codes (the same for every command):
  {EXIT_OK}  success
  {EXIT_INVALID}  invalid input or a failed check (corrupt record, refused restore step)
  {EXIT_USAGE}  usage error (wrong arguments, a path you named is missing, bad policy file)
  {EXIT_NO_RECORD}  no handoff record found in the input
  {EXIT_ENVIRONMENT}  environment problem (missing tool, not root, no crashkernel, kernel refused)

Run `handoff COMMAND --help` for each command. Every command takes --json; on failure it
prints one JSON object with error, exit_code and hint.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors follow the error contract: one ``handoff: error:`` line,
    one hint, EXIT_USAGE, and with ``--json`` one JSON error object on stdout."""

    json_errors = False  # set by main() when --json is on the command line

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        fail(f"{self.prog.removeprefix('handoff ')}: {message}"
             if self.prog != "handoff" else message,
             EXIT_USAGE, f"try `{self.prog} --help`", json_doc=_Parser.json_errors)
        raise SystemExit(EXIT_USAGE)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or with ``only`` just for that one (start-up time: each
    command module and its arguments cost a few ms, and a run needs one)."""
    parser = _Parser(
        prog="handoff",
        description=(
            "Carry PCI device state across kexec/kdump. Save it in the production kernel, "
            "hand it to the capture kernel in the crashkernel region, restore devices "
            "there, and keep it with the dump."
        ),
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    from handoff import __version__

    parser.add_argument("--version", action="version", version=f"handoff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"handoff.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"handoff.cli.{name}":
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


def _command_module(argv: Sequence[str]) -> str | None:
    """The module of the command named in ``argv``, if it is one we know."""
    for a in argv:
        if not a.startswith("-"):
            name = a.replace("-", "_")
            return name if name in COMMANDS else None
        if a in ("-h", "--help", "--version"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    json_errors = "--json" in (argv[:argv.index("--")] if "--" in argv else argv)
    _Parser.json_errors = json_errors
    try:
        parser = build_parser(_command_module(argv))
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) and usage errors (2, already reported)
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        _check_inputs(args, argv)
        rc = args.func(args)
    except HandoffError as e:
        _report(e, json_errors)
        return e.exit_code
    except BrokenPipeError:  # `handoff ... | head`: not an error (and an OSError subclass)
        return EXIT_OK
    except OSError as e:
        # Library code lets OSError through with its errno and path; say it in one line.
        from handoff.errors import os_reason

        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{os_reason(e)}", EXIT_ENVIRONMENT,
             "check the path and its permissions (some inputs need root)", json_doc=json_errors)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        fail("interrupted", 130, None, json_doc=json_errors)
        return 130
    return EXIT_OK if rc is None else int(rc)


# Inputs named on the command line: (option, attribute, "file" or "dir", commands or None for
# every command that has it). A missing one is a usage error (exit 2) before any work starts,
# whatever the command; the defaults (/sys, /proc/vmcore, ...) are the environment's (exit 4).
# Two exceptions keep the capture kernel's promises: `restore --record` checks its own (exit 2
# too) so that it can still write the refusal report, and `capture` saves the dump whatever
# became of the record and the report (the capture hooks pass both explicitly).
INPUTS = (
    ("--sysfs-root", "sysfs_root", "dir", None),
    ("--proc-root", "proc_root", "dir", None),
    ("--policy", "policy", "file", None),
    ("--record", "record", "file", ("diff", "load")),
    ("--early-snapshot", "early_snapshot", "file", None),
    ("--early-log", "early_log", "file", None),
    ("--kernel", "kernel", "file", None),
    ("--initrd", "initrd", "file", None),
    ("--vmcore", "vmcore", "file", None),
)


def _given(argv: Sequence[str], option: str) -> bool:
    end = argv.index("--") if "--" in argv else len(argv)
    return any(a == option or a.startswith(option + "=") for a in argv[:end])


def _check_inputs(args: argparse.Namespace, argv: Sequence[str]) -> None:
    import os

    from handoff.errors import MissingInput

    for option, attr, kind, commands in INPUTS:
        value = getattr(args, attr, None)
        if not isinstance(value, str) or not _given(argv, option):
            continue
        if commands is not None and args.command not in commands:
            continue
        if not os.path.exists(value):
            raise MissingInput(f"{option} {value}: no such {'directory' if kind == 'dir' else 'file'}",
                               hint=f"check the path given to {option}")
        if kind == "dir" and not os.path.isdir(value):
            raise MissingInput(f"{option} {value}: not a directory",
                               hint=f"{option} takes a directory")
        if kind == "file" and os.path.isdir(value):
            raise MissingInput(f"{option} {value}: is a directory, not a file",
                               hint=f"{option} takes a file")


def fail(message: str, exit_code: int, hint: str | None, *, json_doc: bool,
         extra: dict[str, object] | None = None) -> None:
    """Report a failure: one ``handoff: error:`` line and at most one ``handoff: hint:`` line
    on stderr; with ``json_doc`` also one JSON object on stdout (README, "Exit codes")."""
    sys.stderr.write(f"handoff: error: {message}\n")
    if hint:
        sys.stderr.write(f"handoff: hint: {hint}\n")
    if json_doc:
        from handoff.cli._output import emit_json

        doc: dict[str, object] = {"error": message, "exit_code": exit_code, "hint": hint}
        doc.update(extra or {})
        emit_json("error", doc)


def _report(e: HandoffError, json_doc: bool = False) -> None:
    msg = str(e)
    offset = getattr(e, "offset", None)
    check = getattr(e, "check", None)
    if check is not None and offset is not None and f"offset {offset}" not in msg:
        msg += f" (check {check}, offset {offset})"
    extra: dict[str, object] = {"type": type(e).__name__}
    if check is not None:
        extra["check"] = check
    if offset is not None:
        extra["offset"] = offset
    fail(msg, e.exit_code, e.hint, json_doc=json_doc, extra=extra)


__all__ = ["EXIT_ENVIRONMENT", "EXIT_INVALID", "EXIT_NO_RECORD", "build_parser", "main"]
