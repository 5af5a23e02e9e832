"""The QEMU round trip: per-stage wall times of a handoff scenario against the baseline.

Read from tests/e2e/cache/timings-*.json, which the e2e harness writes after each run:
`timings-baseline.json` is the peer (a plain `kexec -p` of the same capture initrd, no
handoff), `timings-handoff*.json` are scenarios with handoff. The bench runs QEMU only with
`--e2e` (a round trip takes about a minute under TCG). The goal compares crash → vmcore saved,
which is only meaningful when both scenarios save the whole vmcore: a scenario that saves only
the head of the dump is reported, with the goal marked n/a.

Runs on another kernel line than the default (tests/e2e/e2e_harness/config.py KERNEL_LINES)
are named `<scenario>-<line>` (e.g. timings-handoff-kdump-6.12.json) and compared with that
line's baseline (timings-baseline-6.12.json); the DMA rows get one set per line (ids suffixed
`.6.12`). `--e2e` runs the DMA scenarios on every line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from bench.core import Ctx
from bench.env import ROOT
from bench.table import CONTEXT, Figure, Goal, Row, not_available, ratio_at_most

GROUP = "QEMU round trip (e2e)"
E2E_DIR = ROOT / "tests" / "e2e"
CACHE = Path(os.environ.get("HANDOFF_E2E_CACHE", E2E_DIR / "cache"))  # as the harness does
IDS = ["e2e.crash-to-dump-saved", "e2e.crash-to-dump-saved.less-checks",
       "e2e.capture-memory-added"]
MEMORY_LIMIT = 20 << 20  # issue 16: what handoff may add at Debian's crashkernel=128M
# The DMA scenarios (issue 15; tests/e2e/test_dma_e2e.py): dma-<name>.json, written by the
# harness after each run of dma-baseline and dma-handoff.
DMA_IDS = ["e2e.dma.pages-changed-after-hooks", "e2e.dma.pages-changed-at-arrival",
           "e2e.dma.post-crash-frames-in-dump", "e2e.dma.frames-after-first-hook-0.2s",
           "e2e.dma.hook-start-to-dma-stopped"]
IDS += DMA_IDS
# The Debian 12 system (issue 16; tests/e2e/test_debian_system_e2e.py): kdump-tools with
# handoff and without, two boots of one disk; the harness writes debsys-memory.json.
DEBSYS = "debian-system"
DEBSYS_IDS = ["e2e.debian.capture-memory-added", "e2e.debian.crash-to-dump-saved"]
IDS += DEBSYS_IDS
DMA_SCENARIOS = ["dma-baseline", "dma-handoff"]
# The e2e harness's kernel lines (its config.py is not importable from here without its path).
DEFAULT_LINE = "6.1"
OTHER_LINES = ["6.12"]
# Stages that are the harness's own checks, not handoff's work, in PRIMARY's capture kernel:
# `after-restore` reads every register back after `handoff restore` (hook 31), and
# `drivers-checked` exercises the bound drivers (hook 50). The baseline runs neither.
# (`before-restore`, hook 29, is left in: its span also holds /init's own start.)
HARNESS_CHECKS = ("after-restore", "drivers-checked")
GOAL = "handoff adds < 10% (≤ 1.10x)"
# The scenario that runs handoff as a user would (save, load, crash, restore, capture): its
# stages get rows of their own. Other comparable scenarios get the crash → dump row only.
PRIMARY = "handoff-kdump"


def scenario_opts(name: str) -> dict[str, Any]:
    toml = E2E_DIR / "scenarios" / name / "scenario.toml"
    try:
        return tomllib.loads(toml.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def handoff_scenarios() -> list[str]:
    out = []
    for d in sorted((E2E_DIR / "scenarios").iterdir()):
        if d.is_dir() and (d / "first.sh").exists() and d.name != "baseline" and \
                scenario_opts(d.name).get("with_handoff", True):
            out.append(d.name)
    return out


def run_qemu(ctx: Ctx) -> str:
    """Run the baseline and the primary handoff scenario back to back (TCG varies by ±30%
    between runs, and more between hours of a shared machine: the pair is comparable, timings
    left by other runs are not). BENCH_E2E_SCENARIOS=all runs every handoff scenario."""
    import os

    others = handoff_scenarios() if os.environ.get("BENCH_E2E_SCENARIOS") == "all" else \
        [n for n in handoff_scenarios() if n == PRIMARY]
    names = ["baseline", *others, *DMA_SCENARIOS]
    # the Debian 12 system runs once, with the default kernel line
    runs = [[*names, DEBSYS], *(["--kernel", line, *DMA_SCENARIOS] for line in OTHER_LINES)]
    problems = []
    for i, argv in enumerate(runs):
        ctx.log(f"e2e: running QEMU scenarios {' '.join(argv)} (one to two minutes each)")
        r = subprocess.run([sys.executable, "-m", "e2e_harness", *argv], cwd=E2E_DIR,
                           capture_output=True, text=True, check=False)
        log = ctx.work / f"e2e-run{'' if i == 0 else f'-{i}'}.log"
        log.write_text(r.stdout + "\n--- stderr\n" + r.stderr)
        if r.returncode != 0:
            failed = [ln for ln in r.stderr.splitlines() if "FAILED" in ln] or \
                r.stderr.strip().splitlines()[-1:]
            problems.append(f"the --e2e run exited {r.returncode} ({'; '.join(failed)[:300]}; "
                            f"see {log.relative_to(ROOT)})")
    if problems:
        return "; ".join(problems) + ": figures below come from the last runs that completed"
    return ""


def at(doc: dict[str, Any], stage: str) -> float | None:
    for s in doc.get("stages", []):
        if s["stage"] == stage:
            return float(s["at_s"])
    return None


def _mem_available(scenario: str) -> int | None:
    """MemAvailable (bytes) when the capture kernel's /init started, from the harness's copy
    of /proc/meminfo (guest/capture-init.sh)."""
    try:
        text = (CACHE / "runs" / scenario / "out" / "capture" / "meminfo-at-init").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def memory_row() -> Row:
    """What handoff adds to the capture kernel's peak, measured in the same pair of QEMU runs:
    MemAvailable at /init without handoff minus with it (the unpacked runtime, record and
    hooks, at the same reservation), plus restore's own peak measured by `handoff load`."""
    what = "capture kernel memory handoff adds (QEMU)"
    goal = ratio_at_most(1.0, "≤ 20 MiB added (Debian's crashkernel=128M)")
    base, ours = _mem_available("baseline"), _mem_available(PRIMARY)
    try:
        load = json.loads((CACHE / "runs" / PRIMARY / "out" / "first" / "load.json").read_text())
        peak = int(load["runtime"]["peak_private"])
    except (OSError, ValueError, KeyError, TypeError):
        load, peak = None, None
    if base is None or ours is None or load is None or peak is None:
        return not_available("e2e.capture-memory-added", GROUP, what, "—",
                             "no baseline and handoff-kdump runs with meminfo-at-init and "
                             "load.json (run `bench/run --e2e`)", goal)
    inp = (f"{PRIMARY} vs baseline (busybox capture initrd, no libc to reuse), crashkernel="
           f"{load.get('crash_size', 0) >> 20}M, runs {_when(PRIMARY)} / {_when('baseline')}")
    added = base - ours + peak
    return Row("e2e.capture-memory-added", GROUP, what, inp,
               Figure(added, "bytes", detail=(
                   f"MemAvailable at /init {base / 2**20:.1f} - {ours / 2**20:.1f} MiB, + "
                   f"restore's own peak {peak / 2**20:.1f} MiB")),
               Figure(MEMORY_LIMIT, "bytes", label="limit"), goal,
               details={"mem_available_baseline": base, "mem_available_handoff": ours,
                        "peak_private": peak})


def run(ctx: Ctx) -> list[Row]:
    problem = run_qemu(ctx) if ctx.e2e else ""
    return _round_trip(problem) + _dma_rows(problem) + _debian_rows(problem)


def _debian_rows(problem: str) -> list[Row]:
    """The real Debian 12 system at crashkernel=128M: what handoff adds to the capture kernel
    (runtime unpacked + restore's own peak, and the same measured by MemAvailable at one
    init-top point of both boots), and crash → dump saved (QEMU's exit at kdump-tools'
    `reboot -f`) against the same disk booted with kdump-tools alone."""
    mem_goal = ratio_at_most(1.0, "≤ 20 MiB added (Debian's crashkernel=128M)")
    time_goal = ratio_at_most(1.10, GOAL)
    f = CACHE / "debsys-memory.json"
    try:
        doc = json.loads(f.read_text())
    except (OSError, ValueError):
        why = "no Debian system run yet" + (f" ({problem})" if problem else
                                            " (run `bench/run --e2e` or test_debian_system_e2e.py)")
        return [not_available(DEBSYS_IDS[0], GROUP, "capture memory handoff adds (Debian 12)",
                              "—", why, mem_goal),
                not_available(DEBSYS_IDS[1], GROUP, "crash → dump saved (Debian 12)", "—", why,
                              time_goal)]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.stat().st_mtime))
    inp = (f"Debian 12 + kdump-tools, {doc['memory']} guest, crashkernel={doc['crashkernel']}, "
           f"kernel {doc['kernel']}, run {when}")
    top = doc.get("mem_available_init_top", {})
    measured = doc.get("added_measured")
    mem = Row(DEBSYS_IDS[0], GROUP, "capture memory handoff adds (Debian 12, kdump-tools)", inp,
              Figure(doc["added"], "bytes", detail=(
                  f"runtime unpacked {doc['runtime_unpacked'] / 2**20:.1f} MiB + restore's own "
                  f"peak in the capture kernel {(doc['peak_private'] or 0) / 2**20:.1f} MiB; "
                  "by MemAvailable at init-top, "
                  + ("n/a" if measured is None else
                     f"{top['baseline'] / 2**20:.1f} - {top['handoff'] / 2**20:.1f} MiB + peak = "
                     f"{measured / 2**20:.1f} MiB"))),
              Figure(MEMORY_LIMIT, "bytes", label="limit"), mem_goal, details=doc)
    t = doc["crash_to_saved_s"]
    crash = Row(DEBSYS_IDS[1], GROUP, "crash → dump saved, Debian 12 (QEMU exit at reboot -f)",
                inp, Figure(t["handoff"], "s", detail="restore + kdump-tools' save + notes"),
                Figure(t["baseline"], "s", label="kdump-tools alone"), time_goal, details=doc)
    if problem:
        mem.note = crash.note = problem
    return [mem, crash]


def _line(doc: dict[str, Any]) -> str:
    return str(doc.get("kernel_line") or DEFAULT_LINE)


def _scenario_dir(doc: dict[str, Any]) -> str:
    """scenarios/<dir> of a run: a run on another line is named <dir>-<line>."""
    name, line = doc["scenario"], _line(doc)
    return name if line == DEFAULT_LINE else name.removesuffix(f"-{line}")


def _run_name(scenario: str, line: str) -> str:
    return scenario if line == DEFAULT_LINE else f"{scenario}-{line}"


def _round_trip(problem: str) -> list[Row]:
    base_file = CACHE / "timings-baseline.json"
    ours_files = sorted(CACHE.glob("timings-handoff*.json"))
    if not base_file.exists() or not ours_files:
        why = "no e2e timings yet" + (f" ({problem})" if problem else
                                      " (run `bench/run --e2e` or the e2e tests)")
        return [not_available(i, GROUP, "crash → vmcore saved", "—", why,
                              ratio_at_most(1.10, GOAL)) for i in IDS[:2]] + [memory_row()]
    bases: dict[str, dict[str, Any]] = {}
    for line in [DEFAULT_LINE, *OTHER_LINES]:
        try:
            bases[line] = json.loads((CACHE / f"timings-{_run_name('baseline', line)}.json")
                                     .read_text())
        except (OSError, ValueError):
            pass
    base_mode = scenario_opts("baseline").get("vmcore", "full")
    # Only runs whose line has a baseline run are compared (each with its own line's).
    docs = [d for d in (json.loads(f.read_text()) for f in ours_files) if _line(d) in bases]
    # Scenarios that save the whole dump (as the baseline does) first, PRIMARY on the default
    # line before them; the others get the goal marked n/a. Only the first gets per-stage rows.
    docs.sort(key=lambda d: (bool(_incomparable(_scenario_dir(d), base_mode)),
                             d["scenario"] != PRIMARY, d["scenario"]))
    rows: list[Row] = []
    for i, doc in enumerate(docs):
        name, sdir, base = doc["scenario"], _scenario_dir(doc), bases[_line(doc)]
        peer = _run_name("baseline", _line(doc))
        mode = scenario_opts(sdir).get("vmcore", "full")
        suffix = "" if i == 0 else f".{name}"
        inp = (f"{name} (vmcore {mode}, run {_when(name)}) vs {peer} (vmcore {base_mode}, "
               f"run {_when(peer)}), kernel {doc.get('kernel')}")
        c_ours = _span(doc, "crash", "vmcore-saved")
        c_base = _span(base, "crash", "vmcore-saved")
        row = Row(f"e2e.crash-to-dump-saved{suffix}", GROUP, "crash → vmcore saved", inp,
                  Figure(c_ours, "s"), Figure(c_base, "s", label="plain kexec -p (baseline)"),
                  ratio_at_most(1.10, GOAL),
                  details={"handoff": doc, "baseline": base, "files": [str(base_file)] +
                           [str(f) for f in ours_files]})
        if c_ours is None or c_base is None:
            row.not_comparable = "the scenario has no `crash` → `vmcore-saved` span"
        else:
            row.not_comparable = _incomparable(sdir, base_mode)
        row.note = "; ".join(x for x in (row.not_comparable, problem if i == 0 else "") if x)
        rows.append(row)
        if i == 0:
            rows += _less_checks(doc, base, inp, c_ours, c_base)
            rows.append(memory_row())
            rows += _stages(doc, base, name, suffix)
    return rows


def _less_checks(doc: dict[str, Any], base: dict[str, Any], inp: str, c_ours: float | None,
                 c_base: float | None) -> list[Row]:
    """crash → vmcore saved without the harness's check hooks, which only the handoff
    scenario runs: what handoff itself adds to the time a user waits for the dump."""
    what = "crash → vmcore saved, less the harness's own checks"
    if doc.get("scenario") != PRIMARY or c_ours is None or c_base is None:
        return [not_available("e2e.crash-to-dump-saved.less-checks", GROUP, what, inp,
                              f"no {PRIMARY} timings with a crash → vmcore-saved span",
                              ratio_at_most(1.10, GOAL))]
    crash, saved = at(doc, "crash"), at(doc, "vmcore-saved")
    checks = {s["stage"]: float(s["delta_s"]) for s in doc.get("stages", [])
              if s["stage"] in HARNESS_CHECKS and crash is not None and saved is not None
              and crash < float(s["at_s"]) <= saved}
    if set(checks) != set(HARNESS_CHECKS):
        return [not_available("e2e.crash-to-dump-saved.less-checks", GROUP, what, inp,
                              f"{PRIMARY}'s timings lack the stages {', '.join(HARNESS_CHECKS)}",
                              ratio_at_most(1.10, GOAL))]
    spent = sum(checks.values())
    return [Row("e2e.crash-to-dump-saved.less-checks", GROUP, what, inp,
                Figure(c_ours - spent, "s",
                       detail=f"{c_ours:.1f} s less {spent:.2f} s in "
                              f"{', '.join(HARNESS_CHECKS)}"),
                Figure(c_base, "s", label="plain kexec -p (baseline)"),
                ratio_at_most(1.10, GOAL), details={"checks_s": checks},
                note="the baseline runs no check hooks; handoff-kdump reads every register "
                     "back after restore and exercises the drivers, which a user's capture "
                     "kernel does not")]


def _incomparable(name: str, base_mode: str) -> str:
    """Why crash → vmcore saved of scenario ``name`` cannot be held against the baseline's
    ("" when it can): both must save the whole dump, the baseline by /init's copy, a handoff
    scenario the same way or by its own `handoff capture` hook (vmcore = "none" tells /init
    to save nothing itself)."""
    mode = scenario_opts(name).get("vmcore", "full")
    if mode == base_mode:
        return ""
    hooks = E2E_DIR / "scenarios" / name / "hooks" / "pre-pivot"
    saves = mode == "none" and hooks.is_dir() and any(
        "capture" in p.read_text() for p in hooks.glob("*.sh"))
    if saves:
        return ""
    return (f"{name} saves the vmcore {mode!r}, the baseline {base_mode!r}: the dump copy "
            "dominates this span")


def _when(scenario: str) -> str:
    """When the harness wrote a scenario's timings (one QEMU run each: not a median)."""
    f = CACHE / f"timings-{scenario}.json"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(f.stat().st_mtime))
    except OSError:
        return "?"


def _span(doc: dict[str, Any], a: str, b: str) -> float | None:
    x, y = at(doc, a), at(doc, b)
    return None if x is None or y is None else y - x


def _stages(doc: dict[str, Any], base: dict[str, Any], name: str, suffix: str) -> list[Row]:
    """Every stage's wall time since the previous stage, ours beside the baseline's."""
    rows = []
    bd = {s["stage"]: s["delta_s"] for s in base.get("stages", [])}
    for s in doc.get("stages", []):
        peer = bd.get(s["stage"])
        rows.append(Row(f"e2e.stage.{s['stage']}{suffix}", GROUP,
                        f"stage `{s['stage']}` (since the previous stage)", name,
                        Figure(s["delta_s"], "s"),
                        Figure(peer, "s", label="baseline") if peer is not None else
                        Figure(None, "s", label="baseline: no such stage"), CONTEXT))
    for key in ("qemu_s",):
        if key in doc and key in base:
            rows.append(Row(f"e2e.{key}{suffix}", GROUP, "QEMU wall, boot to power-off", name,
                            Figure(doc[key], "s"), Figure(base[key], "s", label="baseline"),
                            CONTEXT))
    return rows



def _dma_rows(problem: str) -> list[Row]:
    """The DMA rows for each kernel line: ids as DMA_IDS on the default line, suffixed with
    the line (".6.12") on the others."""
    rows = _dma_line(problem, DEFAULT_LINE)
    for line in OTHER_LINES:
        for row in _dma_line(problem, line):
            row.id += f".{line}"
            rows.append(row)
    return rows


def _dma_line(problem: str, line: str) -> list[Row]:
    """Old memory the NIC changed during the capture, and its frames in the dump, without and
    with handoff; how long handoff-quiesce took from its start to the last Bus Master."""
    docs = {}
    for name in DMA_SCENARIOS:
        try:
            docs[name] = json.loads((CACHE / f"dma-{_run_name(name, line)}.json").read_text())
        except (OSError, ValueError):
            pass
    base, ours = docs.get("dma-baseline"), docs.get("dma-handoff")
    if base is None or ours is None:
        why = f"no DMA scenario figures on {line} yet" + (
            f" ({problem})" if problem else " (run `bench/run --e2e` or test_dma_e2e.py)")
        return [not_available(i, GROUP, i.split(".", 2)[2], "—", why) for i in DMA_IDS]
    run_b, run_h = _run_name("dma-baseline", line), _run_name("dma-handoff", line)
    inp = (f"e1000e, 4096 RX descriptors, 50 frames/s; {run_h} (run {_when(run_h)}) "
           f"vs {run_b} (run {_when(run_b)}), kernel {ours.get('kernel')}")
    zero = Goal("0 with handoff", lambda r: r.ours is not None and r.ours.value == 0)

    def pages(doc: dict[str, Any], window: str) -> float | None:
        v = doc.get("pages", {}).get(window)
        return None if v is None else float(v)

    def frames(doc: dict[str, Any], key: str) -> float | None:
        v = doc.get("frames", {}).get(key)
        return None if v is None else float(v)

    rows = [
        Row("e2e.dma.pages-changed-after-hooks", GROUP,
            "old-memory pages changed in 1 s after handoff's hooks (after restore)", inp,
            Figure(pages(ours, "after-hooks"), "pages"),
            Figure(pages(base, "after-hooks"), "pages", label="no handoff (baseline)"), zero),
        Row("e2e.dma.pages-changed-at-arrival", GROUP,
            "old-memory pages changed in 1 s at the capture kernel's first hooks", inp,
            Figure(pages(ours, "arrival"), "pages",
                   detail="after handoff-quiesce, which runs first"),
            Figure(pages(base, "arrival"), "pages", label="no handoff (baseline)"), CONTEXT),
        Row("e2e.dma.post-crash-frames-in-dump", GROUP,
            "frames sent > 1 s after the crash, found in the saved dump", inp,
            Figure(frames(ours, "sent_after_crash"), "frames"),
            Figure(frames(base, "sent_after_crash"), "frames", label="no handoff (baseline)"),
            CONTEXT),
        Row("e2e.dma.frames-after-first-hook-0.2s", GROUP,
            "frames sent > 0.2 s after the first capture hook started, in the dump", inp,
            Figure(frames(ours, "sent_after_first_hook_plus_0.2s"), "frames"),
            Figure(frames(base, "sent_after_first_hook_plus_0.2s"), "frames",
                   label="no handoff (baseline)"), zero),
    ]
    q = ours.get("quiescer_ms")
    rows.append(Row("e2e.dma.hook-start-to-dma-stopped", GROUP,
                    "hook start to the last Bus Master cleared (handoff-quiesce)", inp,
                    Figure(None if q is None else q / 1000, "s",
                           detail=f"cleared {', '.join(ours.get('quiescer_cleared', []))}"),
                    Figure(ours.get("restore_s"), "s", label="handoff restore (Python), whole"),
                    Goal("≤ 0.2 s", lambda r: r.ours is not None and r.ours.value is not None
                         and r.ours.value <= 0.2)))
    return rows
