"""Memory and time of the Debian system's two boots, for its test and `bench/run --e2e`."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from . import jsonfile
from .config import CACHE_DIR, REPO_ROOT
from .debsys_boots import Boot, Pair
from .debsys_image import CRASHKERNEL, MEMORY

_MEM_AT_RESTORE = re.compile(r"handoff: restore, record generation \d+ \(MemAvailable:\s+(\d+) kB")
_MEM_INIT_TOP = re.compile(r"init-top MemAvailable:\s+(\d+) kB")
FIGURES = CACHE_DIR / "debsys-memory.json"


def _kb(lines: list[str], pattern: re.Pattern[str]) -> int | None:
    found = [int(m[1]) * 1024 for ln in lines if (m := pattern.search(ln.rstrip()))]
    return found[-1] if found else None


def restore_report(boot: Boot) -> dict[str, Any] | None:
    """The restore report in the boot's one saved dump, by `handoff inspect --json` of the
    working tree (None without one)."""
    import sys

    dumps = boot.dumps()
    if len(dumps) != 1:
        return None
    proc = subprocess.run([sys.executable, "-m", "handoff", "inspect", "--json", str(dumps[0])],
                          capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    try:
        reports = json.loads(proc.stdout)["container"]["reports"]
    except (ValueError, KeyError, TypeError):
        return None
    return reports[0]["report"] if len(reports) == 1 else None


def figures(pair: Pair) -> dict[str, Any]:
    """Memory and time of the two boots, for the test and `bench/run --e2e` (FIGURES).

    handoff's addition to the capture kernel's peak (issue 16): its runtime as unpacked plus
    restore's own peak, measured in the capture kernel (the report's `memory`: VmHWM less the
    file pages, which are the unpacked runtime). Cross-checked by MemAvailable at one init-top
    point (after restore, before udev) of both boots, plus that peak."""
    h, b = pair.handoff, pair.baseline
    (rt_json,) = sorted((h.out / "e2e/handoff/runtime-cache").glob("*/runtime.json"))
    rt = json.loads(rt_json.read_text())
    report = restore_report(h) or {}
    mem = report.get("memory") or {}
    ours_top = _kb(h.outcome.infos, _MEM_INIT_TOP)
    base_top = _kb(b.outcome.infos, _MEM_INIT_TOP)
    peak = mem.get("peak_private")
    unpacked = int(rt["unpacked_size"])
    doc = {
        "kernel": pair.release,
        "crashkernel": CRASHKERNEL,
        "memory": MEMORY,
        "runtime_unpacked": unpacked,
        "runtime_cpio": int(rt.get("cpio_size", 0)),
        "peak_private": peak,  # restore in the capture kernel
        "restore_peak_rss": mem.get("peak_rss"),
        "load_peak_private": int(rt["peak_private"]),  # measured by `handoff load`
        "added": None if peak is None else unpacked + peak,
        "mem_available_at_restore": _kb(h.outcome.lines, _MEM_AT_RESTORE),
        "mem_available_init_top": {"handoff": ours_top, "baseline": base_top},
        "added_measured": None if ours_top is None or base_top is None or peak is None
        else base_top - ours_top + peak,
        "crash_to_saved_s": {"handoff": round(h.crash_to_exit_s, 2),
                             "baseline": round(b.crash_to_exit_s, 2)},
        "qemu_s": {"handoff": round(h.outcome.wall_s, 1), "baseline": round(b.outcome.wall_s, 1)},
        "phases_s": pair.phases,
    }
    jsonfile.replace(FIGURES, doc)
    return doc
