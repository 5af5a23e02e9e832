"""handoff's benchmark: one table of our figures beside a peer's, measured in the same run.

    bench/run                 # full run (a few minutes), writes bench/results.json
    bench/run --quick         # CI: every row runs once or twice on smaller inputs (< 1 min)
    bench/run --e2e           # also run the QEMU baseline and handoff-kdump (~3-4 min more)
    bench/run --only inspect,save

Medians of several runs are quoted; peak RSS is each child's ru_maxrss from wait4(2).
Nothing is asserted: a goal that is missed shows NO in the table.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import env
from bench.core import Ctx
from bench.table import Row, render

SECTIONS = ("inspect", "save", "record", "restore", "inject", "capture", "runtime", "e2e")
SCHEMA_VERSION = 1


def expected_ids(sections: tuple[str, ...] = SECTIONS) -> list[str]:
    """The row ids every run produces (the e2e adds per-stage rows when timings exist)."""
    out: list[str] = []
    for name in sections:
        out += importlib.import_module(f"bench.sections.{name}").IDS
    return out


def run_section(ctx: Ctx, name: str) -> list[Row]:
    mod = importlib.import_module(f"bench.sections.{name}")
    ctx.sample_load(f"{name} start")
    t0 = time.monotonic()
    try:
        rows = mod.run(ctx)
    except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
        ctx.log(f"{name}: FAILED: {e}")
        tb = traceback.format_exc()
        return [Row(i, getattr(mod, "GROUP", name), i, "—", None, None, status="error",
                    note=f"{type(e).__name__}: {e}", details={"traceback": tb})
                for i in mod.IDS]
    finally:
        ctx.sample_load(f"{name} end")
    ctx.log(f"{name}: {len(rows)} rows in {time.monotonic() - t0:.1f} s")
    produced = {r.id for r in rows}
    for i in mod.IDS:
        if i not in produced:
            rows.append(Row(i, getattr(mod, "GROUP", name), i, "—", None, None, status="error",
                            note="the section did not produce this row"))
    for r in rows:
        r.details.setdefault("section_wall_s", round(time.monotonic() - t0, 3))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="CI mode: fewer repetitions, smaller inputs where allowed, the current "
                         "environment's handoff; checks that every row runs")
    ap.add_argument("--e2e", action="store_true",
                    help="run the QEMU baseline and handoff-kdump scenarios back to back "
                         "(BENCH_E2E_SCENARIOS=all: every handoff scenario)")
    ap.add_argument("--only", default="", help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--runs", type=int, default=None, help="repetitions per command (override)")
    ap.add_argument("--venv", dest="venv", action="store_true", default=None,
                    help="measure a non-editable install in bench/work/venv (default unless "
                         "--quick)")
    ap.add_argument("--no-venv", dest="venv", action="store_false",
                    help="measure the current environment's `handoff` console script")
    ap.add_argument("--out", default=str(env.ROOT / "bench" / "results.json"),
                    help="where to write the results (default bench/results.json)")
    ap.add_argument("--list", action="store_true", help="print the row ids and exit")
    args = ap.parse_args(argv)
    sections = tuple(s for s in args.only.split(",") if s) or SECTIONS
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.list:
        print("\n".join(expected_ids(sections)))
        return 0
    t0 = time.monotonic()
    started = datetime.now(UTC)
    env.WORK.mkdir(parents=True, exist_ok=True)
    use_venv = (not args.quick) if args.venv is None else args.venv
    install = env.current_install()
    if use_venv:
        try:
            install = env.build_venv(lambda m: sys.stderr.write(f"[bench] {m}\n"))
        except (OSError, RuntimeError, Exception) as e:  # noqa: BLE001
            install.notes.append(f"bench/work/venv could not be built ({e}); measured the "
                                 "current environment instead")
    ctx = Ctx(quick=args.quick, install=install, work=env.WORK, e2e=args.e2e,
              runs_override=args.runs)
    ctx.log(f"handoff under test: {install.how}")
    ctx.sample_load("start")
    rows: list[Row] = []
    for name in sections:
        ctx.log(f"section {name}")
        rows += run_section(ctx, name)
    ctx.sample_load("end")
    duration = time.monotonic() - t0
    table = render(rows)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "mode": "quick" if args.quick else "full",
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(duration, 1),
        "sections": list(sections),
        "machine": env.machine(),
        "load_average": [{"where": w, "1min": a, "5min": b, "15min": c}
                         for w, a, b, c in ctx.loadavg],
        "install": install.to_json(),
        "tools": env.tools_json(install),
        "rows": [r.to_json() for r in rows],
        "table_markdown": table,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env.dump_json(out, doc)
    m = doc["machine"]
    loads = [x[1] for x in ctx.loadavg]
    print(f"handoff bench ({doc['mode']}), {started:%Y-%m-%d %H:%M} UTC, {m['nproc']} x "
          f"{m['model_name']}, {m['mem_total_bytes'] / 2**30:.0f} GiB, kernel {m['kernel']}; "
          f"load average {min(loads):.2f}-{max(loads):.2f}; handoff: {install.how}")
    print()
    print(table)
    notes = [r for r in rows if r.note and r.status == "ok"]
    if notes:
        print()
        for r in notes:
            print(f"- {r.id}: {r.note}")
    missed = [r.id for r in rows if r.met is False]
    errors = [r.id for r in rows if r.status == "error"]
    print()
    print(f"{len(rows)} rows; goals missed: {', '.join(missed) or 'none'}; "
          f"errors: {', '.join(errors) or 'none'}; {duration:.0f} s; results in {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
