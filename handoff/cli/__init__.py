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
exit codes:
  {EXIT_OK}  success
  {EXIT_INVALID}  invalid input or a failed check (corrupt record, refused restore step)
  {EXIT_USAGE}  usage error (wrong arguments, bad policy file)
  {EXIT_NO_RECORD}  no handoff record found in the input
  {EXIT_ENVIRONMENT}  environment problem (missing tool, not root, no crashkernel, kernel refused)

Run `handoff COMMAND --help` for each command. Every command that reports takes --json.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors carry a hint and exit with EXIT_USAGE."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"handoff: error: {message}\n")
        sys.stderr.write(f"handoff: try `{self.prog} --help`\n")
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
    parser = build_parser(_command_module(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        rc = args.func(args)
    except HandoffError as e:
        _report(e)
        return e.exit_code
    except BrokenPipeError:  # `handoff ... | head`: not an error (and an OSError subclass)
        return EXIT_OK
    except OSError as e:
        # Library code lets OSError through with its errno and path; say it in one line.
        where = f"{e.filename}: " if e.filename else ""
        sys.stderr.write(f"handoff: error: {where}{e.strerror or e}\n")
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        sys.stderr.write("handoff: interrupted\n")
        return 130
    return EXIT_OK if rc is None else int(rc)


def _report(e: HandoffError) -> None:
    msg = f"handoff: error: {e}"
    offset = getattr(e, "offset", None)
    check = getattr(e, "check", None)
    if check is not None and offset is not None and f"offset {offset}" not in msg:
        msg += f" (check {check}, offset {offset})"
    sys.stderr.write(msg + "\n")
    if e.hint:
        sys.stderr.write(f"handoff: hint: {e.hint}\n")


__all__ = ["EXIT_ENVIRONMENT", "EXIT_INVALID", "EXIT_NO_RECORD", "build_parser", "main"]
