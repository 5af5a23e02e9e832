#!/usr/bin/env python3
"""capture to ELF with zero pages skipped against cp and dd bs=1M.

Now one section of the benchmark: the same as `bench/run --only capture` (options pass through,
e.g. --quick or --runs N); results go to bench/work/results-capture.json unless --out is given.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.__main__ import main

args = sys.argv[1:]
if not any(a == "--out" or a.startswith("--out=") for a in args):
    args += ["--out", str(Path(__file__).resolve().parent / "work" / "results-capture.json")]
sys.exit(main(["--only", "capture", *args]))
