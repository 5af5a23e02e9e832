"""`handoff save` of this machine's /sys and of fake trees of 32, 256 and 1024 functions.

Peer: `lspci -xxxx -A linux-sysfs -O sysfs.path=ROOT/bus/pci`: pciutils reading the same files
(every function's config space, ids and resources) through the same sysfs access method, in C.
handoff additionally parses capabilities, topology and BARs, encodes and checksums a record and
writes it atomically (fsync + rename): that is the work a user asks `save` for.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench import inputs
from bench.core import Ctx
from bench.env import tool
from bench.measure import Cmd, repeat_in_process, series
from bench.table import CONTEXT, Figure, Row, not_available, ratio_at_most

GROUP = "handoff save"
SIZES = (32, 256, 1024)
IDS = ["save.sys"] + [f"save.{n}" for n in SIZES] + ["save.per-function", "save.start",
                                                      "save.1024.library"]
GOAL = "≤ 1.0x lspci"
# The least any Python command-line tool costs: the interpreter with site, and argparse
# (which imports re). Nothing handoff does comes before this.
ARGPARSE_FLOOR = "python3 -c 'import argparse'"


def run(ctx: Ctx) -> list[Row]:
    lspci = tool("lspci")
    trees: list[tuple[str, Path, str]] = []
    sys_pci = Path("/sys/bus/pci/devices")
    for n in SIZES:
        ctx.log(f"save: fake tree of {n} functions")
        trees.append((str(n), inputs.fake_tree(n), f"fake tree, {n} functions"))
    rows: list[Row] = []
    if sys_pci.is_dir() and any(sys_pci.iterdir()):
        trees.insert(0, ("sys", Path("/sys"),
                         f"this machine's /sys, {len(os.listdir(sys_pci))} functions"))
    else:
        rows.append(not_available("save.sys", GROUP, "`handoff save` vs lspci", "/sys",
                                  "this machine has no PCI devices in /sys"))
    if lspci is None:
        return rows + [not_available(f"save.{k}", GROUP, "`handoff save` vs lspci", d,
                                     "lspci missing (apt-get install pciutils)")
                       for k, _, d in trees]
    out = ctx.work / "save-out.bin"

    def fresh() -> None:  # a second save would read the first record to continue its generation
        out.unlink(missing_ok=True)

    walls: dict[str, tuple[float, float]] = {}
    floor_s = None
    for key, root, desc in trees:
        argv = ctx.handoff("save", "-o", str(out)) if key == "sys" else \
            ctx.handoff("save", "--sysfs-root", str(root), "-o", str(out))
        cmds = [Cmd("save", [argv], before=fresh),
                Cmd("lspci", [[lspci, "-xxxx", "-A", "linux-sysfs", "-O",
                               f"sysfs.path={root}/bus/pci"]])]
        if key == str(SIZES[0]):
            cmds.append(Cmd(ARGPARSE_FLOOR, [[ctx.install.python, "-c", "import argparse"]]))
        st = series(cmds, ctx.runs)
        fresh()
        walls[key] = (st["save"].wall, st["lspci"].wall)
        if ARGPARSE_FLOOR in st:
            floor_s = st[ARGPARSE_FLOOR].wall
        ours = Figure(st["save"].wall, "s", rss=st["save"].rss)
        peer = Figure(st["lspci"].wall, "s", rss=st["lspci"].rss,
                      label="lspci -xxxx -A linux-sysfs")
        rows.append(Row(f"save.{key}", GROUP, "`handoff save -o FILE` vs lspci -xxxx", desc,
                        ours, peer, ratio_at_most(1.0, GOAL),
                        details={"stats": {n: s.to_json() for n, s in st.items()}}))
        if key == str(SIZES[-1]):
            rows.append(_library(ctx, root, desc, peer))
    rows += _marginal(walls, floor_s)
    return rows


def _marginal(walls: dict[str, tuple[float, float]], floor_s: float | None) -> list[Row]:
    """What one more function costs (the slope between the smallest and largest trees), and
    what a Python command line costs before it does anything, against lspci's whole run at
    the smallest tree."""
    lo, hi = str(SIZES[0]), str(SIZES[-1])
    if lo not in walls or hi not in walls:
        return []
    n = SIZES[-1] - SIZES[0]
    ours = (walls[hi][0] - walls[lo][0]) / n
    peer = (walls[hi][1] - walls[lo][1]) / n
    rows = [Row("save.per-function", GROUP, "`handoff save` per function vs lspci -xxxx",
                f"slope between {SIZES[0]} and {SIZES[-1]} functions (fake trees)",
                Figure(ours, "s"), Figure(peer, "s", label="lspci -xxxx per function"),
                ratio_at_most(1.0, GOAL))]
    if floor_s is not None:
        rows.append(Row("save.start", GROUP,
                        f"`{ARGPARSE_FLOOR}` vs lspci's whole run",
                        f"fake tree, {SIZES[0]} functions",
                        Figure(floor_s, "s"),
                        Figure(walls[lo][1], "s", label="lspci -xxxx -A linux-sysfs"),
                        CONTEXT, note="the start of any Python command line (interpreter, "
                        "site, argparse and the re module it imports), before any work"))
    return rows


def _library(ctx: Ctx, root: Path, desc: str, peer: Figure) -> Row:
    """The save library call in this process: the CLI's figure minus interpreter start,
    imports and argument parsing (context for the profile)."""
    from handoff.save import save
    from handoff.sysfs import SysfsTree

    walls = repeat_in_process(lambda: save(None, SysfsTree(root), running_kernel=False),
                              ctx.runs_long)
    walls.sort()
    return Row("save.1024.library", GROUP, "handoff.save.save() in-process vs lspci", desc,
               Figure(walls[len(walls) // 2], "s"), peer, CONTEXT,
               details={"walls_s": walls})
