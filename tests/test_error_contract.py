"""The error contract (README, "Exit codes"): every command, given bad input, exits with the
code of that class of problem, says so in one ``handoff: error:`` line (and at most one
hint) that names the user's path, never a traceback, ``None`` or ``[Errno``; with ``--json``
it prints one JSON object carrying ``error``, ``exit_code`` and ``hint``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from helpers import fakesysfs as F

from handoff.cli import COMMANDS, main
from handoff.errors import EXIT_ENVIRONMENT, EXIT_INVALID, EXIT_NO_RECORD, EXIT_USAGE


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    tree = F.build_tree(d / "sys")
    (d / "garbage.bin").write_bytes(b"garbage\n")
    (d / "empty").mkdir()
    (d / "bad.toml").write_text("[[rule]]\nid = \"zz\"\naction = \"skip\"\n")
    rec = d / "rec.bin"
    rc, _, err = _run(["save", "--sysfs-root", str(tree), "-o", str(rec)])
    assert rc == 0, err
    data = bytearray(rec.read_bytes())
    data[-1] ^= 0xFF  # the payload's last byte: the digest check fails
    (d / "corrupt.bin").write_bytes(bytes(data))
    return {"dir": d, "sys": tree, "missing": d / "no-such-file", "garbage": d / "garbage.bin",
            "empty": d / "empty", "badpolicy": d / "bad.toml", "corrupt": d / "corrupt.bin",
            "record": rec}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


# (argv with {placeholders}, exit code, the path the message must name)
CASES = [
    ("save --sysfs-root {missing}", EXIT_USAGE, "missing"),
    ("save --sysfs-root {empty}", EXIT_ENVIRONMENT, "empty"),
    ("save --sysfs-root {sys} --early-snapshot {missing}", EXIT_USAGE, "missing"),
    ("save --sysfs-root {sys} --early-log {missing}", EXIT_USAGE, "missing"),
    ("save --sysfs-root {sys} -d zz", EXIT_USAGE, None),
    ("inspect {missing}", EXIT_USAGE, "missing"),
    ("inspect {garbage}", EXIT_NO_RECORD, "garbage"),
    ("inspect {corrupt}", EXIT_INVALID, "corrupt"),
    ("inspect {empty}", EXIT_USAGE, "empty"),
    ("diff --record {missing} --sysfs-root {sys}", EXIT_USAGE, "missing"),
    ("diff --record {garbage} --sysfs-root {sys}", EXIT_NO_RECORD, "garbage"),
    ("diff --record {corrupt} --sysfs-root {sys}", EXIT_INVALID, None),
    ("restore --record {missing} --sysfs-root {sys} --dry-run", EXIT_USAGE, "missing"),
    ("restore --record {garbage} --sysfs-root {sys} --dry-run", EXIT_NO_RECORD, "garbage"),
    ("restore --record {record} --sysfs-root {sys} --dry-run --policy {missing}", EXIT_USAGE,
     "missing"),
    ("restore --record {record} --sysfs-root {sys} --dry-run --policy {badpolicy}", EXIT_USAGE,
     "badpolicy"),
    ("restore --record {record} --sysfs-root {missing} --dry-run", EXIT_USAGE, "missing"),
    ("load --dry-run --record {missing}", EXIT_USAGE, "missing"),
    ("load --dry-run --kernel {missing}", EXIT_USAGE, "missing"),
    ("load --dry-run --policy {empty}", EXIT_USAGE, "empty"),
    ("unload --dry-run --sysfs-root {missing}", EXIT_USAGE, "missing"),
    ("status --sysfs-root {missing}", EXIT_USAGE, "missing"),
    ("estimate --initrd {missing}", EXIT_USAGE, "missing"),
    ("capture --vmcore {missing} --dump-dir {dir}", EXIT_USAGE, "missing"),
    ("capture --vmcore {garbage}", EXIT_USAGE, None),  # --dump-dir is required
    ("inject-notes {missing} {record}", EXIT_USAGE, "missing"),
    ("inject-notes {garbage} {garbage}", EXIT_NO_RECORD, "garbage"),
    ("plugins --sysfs-root {missing}", EXIT_USAGE, "missing"),
    ("plugins --sysfs-root {sys} -s 1:2:3:4", EXIT_USAGE, None),
    ("no-such-command", EXIT_USAGE, None),
] + [(f"{c.replace('_', '-')} --no-such-option", EXIT_USAGE, None) for c in COMMANDS]


def _check_stderr(err: str) -> tuple[str, str | None]:
    assert "Traceback" not in err and "[Errno" not in err
    lines = [ln for ln in err.splitlines()
             if not ln.startswith(("handoff: warning:", "handoff: note:"))]
    assert len(lines) in (1, 2), err
    assert lines[0].startswith("handoff: error: "), err
    assert "None" not in lines[0], err
    hint = None
    if len(lines) == 2:
        assert lines[1].startswith("handoff: hint: "), err
        hint = lines[1].removeprefix("handoff: hint: ")
    return lines[0].removeprefix("handoff: error: "), hint


@pytest.mark.parametrize("argv,code,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input(files: dict[str, Path], argv: str, code: int, names: str | None) -> None:
    args = [a.format(**files) for a in argv.split()]
    rc, out, err = _run(args)
    assert rc == code, err
    msg, hint = _check_stderr(err)
    if names is not None:
        assert str(files[names]) in msg
    assert "/tmp/tmp" not in msg  # never a temporary file of ours
    rc, out, err = _run(args + ["--json"])
    assert rc == code, err
    assert _check_stderr(err) == (msg, hint)
    doc = json.loads(out)  # exactly one document
    assert doc["schema_version"] == 1
    assert (doc["error"], doc["exit_code"], doc["hint"]) == (msg if doc["kind"] == "error"
                                                            else doc["error"], code, hint)
    assert isinstance(doc["error"], str) and doc["error"]


def test_the_installed_entry_point_follows_it(files: dict[str, Path]) -> None:
    r = subprocess.run([sys.executable, "-m", "handoff", "inspect", str(files["missing"]),
                        "--json"], capture_output=True, text=True, check=False)
    assert r.returncode == EXIT_USAGE
    assert json.loads(r.stdout)["exit_code"] == EXIT_USAGE
    assert r.stderr == (f"handoff: error: {files['missing']}: no such file\n"
                        "handoff: hint: check the path\n")
