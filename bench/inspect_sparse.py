"""How fast is `handoff inspect` on a huge vmcore? (Not a test: prints a table.)

Builds two sparse ELF vmcores that differ only in memory size (64 MiB and 64 GiB of PT_LOAD,
same notes, one HANDOFF record), then times, as separate processes, median of --runs:

- ``python3 -S -c pass``: the floor for any Python command;
- ``handoff inspect FILE`` (``python3 -m handoff``), and the inspect command's ``run()``
  alone (the difference is what building the other commands' parsers costs);
- ``readelf -n FILE`` and ``eu-readelf -n FILE``: C tools that read the same notes.

The ratio of the two inspect times should be ~1: only headers and notes are read.

    python3 bench/inspect_sparse.py [--runs 15] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import elfwriter as W
import recordgen as G


def build(path: Path, mem: int) -> None:
    rec = G.make_record(G.sample_payload(13))
    with open(path, "wb") as f:
        # Four PT_LOADs, like the vmcore of a QEMU guest (facts/kdump-in-qemu.md).
        q = mem // 4
        W.write_core(f, W.default_notes(cpus=2) + [G.note(rec)],
                     [W.Load(i * q, q) for i in range(4)])


def timed(argv: list[str], runs: int) -> tuple[float, float]:
    times = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"{argv} exited {r.returncode}")
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--keep", action="store_true", help="keep bench/work/ afterwards")
    args = ap.parse_args()
    work = ROOT / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    small, big = work / "vmcore-64MiB", work / "vmcore-64GiB"
    build(small, 64 << 20)
    build(big, 64 << 30)
    for p in (small, big):
        st = p.stat()
        print(f"{p.name}: {st.st_size / 2**30:.2f} GiB apparent, {st.st_blocks * 512} bytes "
              "allocated")
    py = sys.executable
    rows: list[tuple[str, float, float, float, float]] = []
    cmds: list[tuple[str, list[str] | None]] = [
        ("python3 -S -c pass", [py, "-S", "-c", "pass"]),
        ("python3 -c pass", [py, "-c", "pass"]),
        ("handoff inspect", [py, "-m", "handoff", "inspect"]),
        ("handoff inspect --json", [py, "-m", "handoff", "inspect", "--json"]),
        # The inspect command alone, without building every other command's parser:
        ("inspect run() only", [py, "-c", ("import sys, argparse; from handoff.cli.inspect "
                                "import run; sys.exit(run(argparse.Namespace(path=sys.argv[1], "
                                "json=False)))")]),
        ("readelf -n", ["readelf", "-n"] if shutil.which("readelf") else None),
        ("eu-readelf -n", ["eu-readelf", "-n"] if shutil.which("eu-readelf") else None),
    ]
    for name, argv in cmds:
        if argv is None:
            continue
        takes_file = argv[-1] != "pass"
        s = timed(argv + ([str(small)] if takes_file else []), args.runs)
        b = timed(argv + ([str(big)] if takes_file else []), args.runs)
        rows.append((name, s[0], b[0], s[1], b[1]))
    floor = rows[0][1]
    print(f"\nmedian of {args.runs} runs (min in brackets), milliseconds")
    print(f"{'command':26} {'64 MiB':>16} {'64 GiB':>16} {'64G/64M':>8} {'vs -S pass':>10}")
    for name, s, b, smin, bmin in rows:
        print(f"{name:26} {s * 1e3:8.1f} ({smin * 1e3:5.1f}) {b * 1e3:8.1f} ({bmin * 1e3:5.1f}) "
              f"{b / s:8.2f} {b / floor:10.2f}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
