"""`handoff inspect` on ELF vmcores of 64 MiB and 64 GiB and on a kdump-compressed dump.

Peers: `readelf -n` (C, reads the same notes), drgn opening the dump (what a developer reaches
for first; a C library behind a Python CLI), `makedumpfile --dump-dmesg` (the kdump tool that
reads a kdump-compressed dump and finds the kernel log in it). The floor is `python3 -S -c
pass`: no Python command can start faster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench import inputs
from bench.core import Ctx
from bench.env import tool
from bench.measure import Cmd, series
from bench.table import CONTEXT, Figure, Row, not_available, ratio_at_most, ratio_below

GROUP = "handoff inspect, ELF vmcore (sparse)"
GROUP_KDUMP = "handoff inspect, kdump-compressed dump"
SIZES = (("64M", 64 << 20, "64 MiB"), ("64G", 64 << 30, "64 GiB"))
FLAT = 1.10  # "flat": the 64 GiB median within 10% of the 64 MiB median (medians vary ~2-5%)
IDS = [f"inspect.elf.{k}.{p}" for k, _, _ in SIZES for p in ("floor", "drgn", "readelf")] + [
    "inspect.elf.flat", "inspect.python-site", "inspect.kdump.makedumpfile",
    "inspect.kdump.drgn"]


def fig(stats: dict, name: str, label: str = "") -> Figure:
    s = stats[name]
    return Figure(s.wall, "s", rss=s.rss, label=label)


def run(ctx: Ctx) -> list[Row]:
    rows = run_elf(ctx)
    rows += run_kdump(ctx)
    return rows


def run_elf(ctx: Ctx) -> list[Row]:
    rec = inputs.sample_record(13)
    files = {k: inputs.elf_core(ctx.work / f"vmcore-{k}.elf", size, rec) for k, size, _ in SIZES}
    py = ctx.install.python
    cmds = [ctx.floor(), Cmd("python3 -c pass", [[py, "-c", "pass"]])]
    dev_py = os.path.realpath(sys.executable) != os.path.realpath(py) or sys.executable != py
    if dev_py:
        cmds.append(Cmd("dev python3 -c pass", [[sys.executable, "-c", "pass"]]))
    readelf = tool("readelf")
    for k, f in files.items():
        cmds.append(Cmd(f"inspect {k}", [ctx.handoff("inspect", str(f))]))
        if readelf:
            cmds.append(Cmd(f"readelf {k}", [[readelf, "-n", str(f)]]))
        if ctx.install.drgn:
            cmds.append(Cmd(f"drgn {k}", [[*ctx.install.drgn, "-c", str(f),
                                            "--no-default-symbols", "-e", "pass"]]))
    ctx.log(f"inspect: {len(cmds)} commands x {ctx.runs} runs, interleaved")
    st = series(cmds, ctx.runs)
    rows: list[Row] = []
    for k, size, label in SIZES:
        f = files[k]
        inp = f"{label} ELF, 4 PT_LOAD, {f.stat().st_blocks * 512 // 1024} KiB on disk"
        ours = fig(st, f"inspect {k}")
        rows.append(Row(f"inspect.elf.{k}.floor", GROUP, "`handoff inspect` vs the Python floor",
                        inp, ours, fig(st, "python3 -S -c pass", "python3 -S -c pass"),
                        ratio_at_most(2.0, "≤ 2x the floor")))
        if ctx.install.drgn:
            rows.append(Row(f"inspect.elf.{k}.drgn", GROUP, "`handoff inspect` vs drgn opening it",
                            inp, ours, fig(st, f"drgn {k}", "drgn -c F --no-default-symbols -e pass"),
                            ratio_below(1.0, "faster than drgn (< 1x)")))
        else:
            rows.append(not_available(f"inspect.elf.{k}.drgn", GROUP, "`handoff inspect` vs drgn",
                                      inp, "drgn is not installed (pip install drgn)"))
        if readelf:
            rows.append(Row(f"inspect.elf.{k}.readelf", GROUP, "`handoff inspect` vs readelf -n",
                            inp, ours, fig(st, f"readelf {k}", "readelf -n"), CONTEXT))
        else:
            rows.append(not_available(f"inspect.elf.{k}.readelf", GROUP, "vs readelf -n", inp,
                                      "readelf missing (apt-get install binutils)"))
    rows.append(Row("inspect.elf.flat", GROUP, "`handoff inspect` flat in dump size",
                    "64 GiB vs 64 MiB ELF", fig(st, "inspect 64G"),
                    fig(st, "inspect 64M", "same at 64 MiB"),
                    ratio_at_most(FLAT, f"flat (≤ {FLAT:g}x)")))
    site = Row("inspect.python-site", GROUP, "`python3 -c pass` (with site) vs `-S`",
               "handoff's interpreter", fig(st, "python3 -c pass"),
               fig(st, "python3 -S -c pass", "python3 -S -c pass"), CONTEXT)
    if dev_py:
        site.details["dev_env_python_c_pass"] = st["dev python3 -c pass"].to_json()
        site.note = (f"the development interpreter ({sys.executable}, editable install and "
                     f"other .pth files) needs {st['dev python3 -c pass'].wall * 1e3:.1f} ms "
                     "for `-c pass`")
    rows.append(site)
    for r in rows:
        r.details.setdefault("stats", {n: s.to_json() for n, s in st.items()})
    return rows


def run_kdump(ctx: Ctx) -> list[Row]:
    rec = inputs.sample_record(13)
    try:
        dump = inputs.kdump_dump(ctx.work, rec)
    except (OSError, RuntimeError, ValueError) as e:
        why = f"cannot make a kdump-compressed dump: {e}"
        return [not_available(i, GROUP_KDUMP, "`handoff inspect` kdump", "—", why)
                for i in ("inspect.kdump.makedumpfile", "inspect.kdump.drgn")]
    out = ctx.work / "dmesg.txt"
    mdf = tool("makedumpfile")
    cmds = [Cmd("inspect", [ctx.handoff("inspect", str(dump.path))])]
    if dump.real_log and mdf:
        cmds.append(Cmd("makedumpfile --dump-dmesg",
                        [[mdf, "--dump-dmesg", str(dump.path), str(out)]],
                        before=lambda: out.unlink(missing_ok=True)))
    if ctx.install.drgn:
        cmds.append(Cmd("drgn", [[*ctx.install.drgn, "-c", str(dump.path),
                                  "--no-default-symbols", "-e", "pass"]]))
    ctx.log(f"inspect kdump: {dump.label}")
    st = series(cmds, ctx.runs)
    ours = Figure(st["inspect"].wall, "s", rss=st["inspect"].rss)
    rows = []
    if "makedumpfile --dump-dmesg" in st:
        rows.append(Row("inspect.kdump.makedumpfile", GROUP_KDUMP,
                        "`handoff inspect` vs `makedumpfile --dump-dmesg`", dump.label, ours,
                        fig(st, "makedumpfile --dump-dmesg", "makedumpfile --dump-dmesg"),
                        ratio_below(1.0, "faster (< 1x)")))
    else:
        rows.append(not_available(
            "inspect.kdump.makedumpfile", GROUP_KDUMP, "vs makedumpfile --dump-dmesg",
            dump.label, "no dump with a real kernel log: the e2e vmcore "
            f"({inputs.E2E_VMCORE.relative_to(inputs.ROOT)}) is missing" if mdf
            else "makedumpfile is not installed", ratio_below(1.0, "faster (< 1x)")))
    if "drgn" in st:
        rows.append(Row("inspect.kdump.drgn", GROUP_KDUMP, "`handoff inspect` vs drgn opening it",
                        dump.label, ours, fig(st, "drgn", "drgn -c F --no-default-symbols -e pass"),
                        ratio_below(1.0, "faster (< 1x)")))
    else:
        rows.append(not_available("inspect.kdump.drgn", GROUP_KDUMP, "vs drgn", dump.label,
                                  "drgn is not installed"))
    for r in rows:
        r.details["stats"] = {n: s.to_json() for n, s in st.items()}
        r.details["input"] = str(Path(dump.path).relative_to(inputs.ROOT))
    out.unlink(missing_ok=True)
    return rows

