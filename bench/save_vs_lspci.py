#!/usr/bin/env python3
"""handoff save against lspci -xxxx on real /sys and fake trees of 32, 256 and 1024 functions.

Now one section of the benchmark: the same as `bench/run --only save` (options pass through,
e.g. --quick or --runs N); results go to bench/work/results-save.json unless --out is given.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.__main__ import main

args = sys.argv[1:]
if not any(a == "--out" or a.startswith("--out=") for a in args):
    args += ["--out", str(Path(__file__).resolve().parent / "work" / "results-save.json")]
sys.exit(main(["--only", "save", *args]))
