"""Every command's --help has two or three real examples (each parses with the command's own
parser) and its exit codes, all of them among the README's documented codes."""

from __future__ import annotations

import io
import re
import shlex
from contextlib import redirect_stdout

import pytest

from handoff.cli import COMMANDS, build_parser, main


def _help(command: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([command, "--help"]) == 0
    return out.getvalue()


@pytest.mark.parametrize("command", [c.replace("_", "-") for c in COMMANDS])
def test_help_has_examples_and_exit_codes(command: str) -> None:
    text = _help(command)
    block = re.search(r"^examples:\n((?:  .*\n)+)", text, re.MULTILINE)
    assert block, f"`handoff {command} --help` has no examples"
    examples = [ln.strip() for ln in block.group(1).splitlines()]
    assert 2 <= len(examples) <= 3, examples
    parser = build_parser(command.replace("-", "_"))
    for ex in examples:
        cmd = re.split(r"\s+#\s|\s\|\s|\s*>/dev/null|;", ex)[0].strip()
        argv = shlex.split(cmd)
        argv = argv[1:] if argv[0] == "sudo" else argv
        assert argv[:2] == ["handoff", command], ex
        parser.parse_args(argv[1:])  # SystemExit (a usage error) fails the test
    codes = re.search(r"^exit (?:codes|status):.*\n((?:  .*\n)+)", text, re.MULTILINE)
    assert codes, f"`handoff {command} --help` lists no exit codes"
    listed = {int(m) for m in re.findall(r"^  (\d+)  ", codes.group(1), re.MULTILINE)}
    assert 0 in listed and listed <= {0, 1, 2, 3, 4}, listed


def test_top_level_help_too() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--help"]) == 0
    text = out.getvalue()
    assert "examples:" in text and "exit codes (the same for every command):" in text
