"""The restore summary does not contradict itself: a dry run restores nothing (it says what
the plan would do), and "refused" counts devices only once."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from helpers import fakesysfs as F

from handoff.cli import main


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_dry_run_and_refusal_summaries(tmp_path: Path) -> None:
    tree = F.build_tree(tmp_path / "sys")
    rec = tmp_path / "rec.bin"
    assert _run("save", "--sysfs-root", str(tree), "-o", str(rec))[0] == 0
    # the capture kernel's view: the e1000's driver not loaded yet, so its quiesce is planned
    # (nothing is planned under a bound driver, and the rest equals the record)
    now = F.build_tree(tmp_path / "capture", drivers={"0000:00:05.0": None})
    base = ("restore", "--record", str(rec), "--sysfs-root", str(now), "--dry-run",
            "--no-plugins", "--proc-root", str(tmp_path))
    rc, out, _ = _run(*base)  # no VMCOREINFO, no handoff.boot_id=: refused
    assert rc == 1
    last2 = out.splitlines()[-2:]
    n = int(last2[1].split()[0])
    assert last2[0] == (f"planned: 0 config register(s), 0 plugin step(s); the plan would "
                        f"restore fully 0, partially 0, not {n}; 0 fallback(s)")
    assert f"{n} refused" in last2[1] and len(re.findall(r"refused", last2[1])) == 1
    rc, out, _ = _run(*base, "--force")
    last2 = out.splitlines()[-2:]
    assert "restored" not in out and "applied" not in out
    planned = int(re.search(r"(\d+) planned", last2[1]).group(1))
    fully = int(re.search(r"restore fully (\d+)", last2[0]).group(1))
    assert fully + int(re.search(r"partially (\d+)", last2[0]).group(1)) == planned > 0
    assert " 0 refused" in last2[1] and len(re.findall(r"refused", last2[1])) == 1
