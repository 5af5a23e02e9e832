#!/usr/bin/env python3
"""Time `handoff save -o /dev/null` against `lspci -xxxx` on the same PCI trees.

Builds synthetic fake sysfs trees of 32, 256 and 1024 functions (tests/fakesysfs.py
synthetic_tree, replicating real config dumps), adds the real /sys, and for each prints the
median wall time of several runs of

  lspci -xxxx -A linux-sysfs -O sysfs.path=ROOT/bus/pci        (C, the reference)
  python -m handoff save --sysfs-root ROOT -o /dev/null        (whole CLI, interpreter start included)
  handoff.save.save(None, tree) in-process                     (library: walk + payload + record)

and the ratios to lspci. A benchmark, not a test: nothing is asserted.

usage: python bench/save_vs_lspci.py [--runs N] [--sizes 32,256,1024] [--no-real]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fakesysfs

STAT: Callable[[list[float]], float] = statistics.median


def wall(argv: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       env=env)
        times.append(time.perf_counter() - t)
    return STAT(times)


def in_process(root: Path, runs: int) -> float:
    from handoff.save import save
    from handoff.sysfs import SysfsTree

    times = []
    for _ in range(runs):
        t = time.perf_counter()
        save(None, SysfsTree(root), running_kernel=False if root != Path("/sys") else None)
        times.append(time.perf_counter() - t)
    return STAT(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--sizes", default="32,256,1024")
    ap.add_argument("--no-real", action="store_true", help="skip the real /sys")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="how to summarise the runs (min is steadier on a loaded machine)")
    args = ap.parse_args()
    global STAT
    STAT = min if args.stat == "min" else statistics.median  # type: ignore[assignment]
    if not shutil.which("lspci"):
        print("lspci not found: apt-get install pciutils", file=sys.stderr)
        return 4
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp:
        trees: list[tuple[str, Path]] = []
        for n in (int(s) for s in args.sizes.split(",") if s):
            trees.append((f"synthetic {n}", fakesysfs.synthetic_tree(Path(tmp) / f"t{n}", n)))
        if not args.no_real and os.path.isdir("/sys/bus/pci/devices"):
            trees.append(("real /sys", Path("/sys")))
        for name, root in trees:
            ndev = len(os.listdir(root / "bus" / "pci" / "devices"))
            lspci = wall(["lspci", "-xxxx", "-A", "linux-sysfs", "-O",
                          f"sysfs.path={root}/bus/pci"], args.runs, env)
            cli = wall([sys.executable, "-m", "handoff", "save", "--sysfs-root", str(root),
                        "-o", "/dev/null"], args.runs, env)
            lib = in_process(root, args.runs)
            rows.append((name, ndev, lspci, cli, lib))
    start = wall([sys.executable, "-c", "pass"], args.runs, env)
    print(f"{args.stat} of {args.runs} runs; python interpreter start alone: {start * 1e3:.1f} ms")
    print(f"{'tree':<16}{'devices':>8}{'lspci ms':>10}{'save CLI ms':>13}{'CLI/lspci':>11}"
          f"{'save lib ms':>13}{'lib/lspci':>11}")
    for name, ndev, lspci, cli, lib in rows:
        print(f"{name:<16}{ndev:>8}{lspci * 1e3:>10.1f}{cli * 1e3:>13.1f}{cli / lspci:>11.2f}"
              f"{lib * 1e3:>13.1f}{lib / lspci:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
