#!/usr/bin/env python3
"""Profile the CLI paths the benchmark finds slow; reports go to bench/work/profiles/.

For each command: a pyinstrument call tree (``pip install pyinstrument``) and the import
times (``-X importtime``, the minimum of 5 runs per module, so a busy machine inflates them
less). Run from the repository root with the interpreter that has pyinstrument:

    python bench/profiling.py [inspect save restore-dry restore-apply record capture]
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import inputs
from bench.env import WORK
from bench.sections.restore import capture_kernel_view

OUT = WORK / "profiles"


def importtime(argv: list[str], runs: int = 5) -> str:
    """Import tree of ``python -m handoff ARGV``: cumulative and self µs, minimum over runs."""
    best: dict[str, tuple[int, int, int]] = {}
    order: list[str] = []
    for i in range(runs):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "handoff", *argv],
                           capture_output=True, text=True, check=False)
        for line in r.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not m:
                continue
            name, self_us, cum_us, depth = m[4], int(m[1]), int(m[2]), len(m[3])
            if i == 0:
                order.append(name)
            old = best.get(name, (self_us, cum_us, depth))
            best[name] = (min(old[0], self_us), min(old[1], cum_us), depth)
    top = sum(best[n][1] for n in order if best[n][2] == 1)
    lines = [f"sum of top-level imports: {top / 1000:.1f} ms (min of {runs} runs)",
             "   cum ms  self ms  module"]
    for n in order:
        s, c, d = best[n]
        if c >= 1000 or d == 1:
            lines.append(f"{c / 1000:9.1f} {s / 1000:8.1f}  {'  ' * (d - 1)}{n}")
    return "\n".join(lines) + "\n"


def pyinstrument(name: str, argv: list[str]) -> None:
    out = OUT / f"{name}.pyinstrument.txt"
    subprocess.run([sys.executable, "-m", "pyinstrument", "-i", "0.0002", "-r", "text",
                    "--show", "*handoff*", "-o", str(out), "-m", "handoff", *argv],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def in_process(name: str, fn: object) -> None:
    pr = cProfile.Profile()
    pr.enable()
    fn()  # type: ignore[operator]
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(25)
    (OUT / f"{name}.cprofile.txt").write_text(buf.getvalue())


def main() -> int:
    which = sys.argv[1:] or ["inspect", "save", "restore-dry", "restore-apply", "record",
                             "capture"]
    OUT.mkdir(parents=True, exist_ok=True)
    rec = inputs.sample_record(13)
    core = inputs.elf_core(WORK / "profile-vmcore.elf", 64 << 20, rec)
    cmds: dict[str, list[str]] = {"inspect": ["inspect", str(core)]}
    t32 = inputs.fake_tree(32)
    cmds["save"] = ["save", "--sysfs-root", str(t32), "-o", str(WORK / "profile-save.bin")]
    tree = inputs.scratch() / "profile-restore"
    shutil.copytree(inputs.fake_tree(64), tree, symlinks=True)
    rfile = WORK / "profile-restore.bin"
    rfile.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "handoff", "save", "--sysfs-root", str(tree), "-o",
                    str(rfile)], check=True, capture_output=True)
    proc = inputs.fake_proc(inputs.scratch() / "profile-proc", rfile.read_bytes())
    capture_kernel_view(tree)
    base = ["restore", "--record", str(rfile), "--sysfs-root", str(tree), "--proc-root", str(proc)]
    cmds["restore-dry"] = [*base, "--dry-run"]
    cmds["restore-apply"] = base
    for name in which:
        if name in cmds:
            print(f"profiling {name}: {' '.join(cmds[name])}")
            (OUT / f"{name}.importtime.txt").write_text(importtime(cmds[name]))
            pyinstrument(name, cmds[name])
            if name == "save":
                Path(cmds["save"][-1]).unlink(missing_ok=True)
    if "record" in which:
        import uuid

        from handoff import record

        payload, _ = inputs.device_payload(256)
        prod = record.Producer("6.1.0-bench-amd64", "benchhost", str(uuid.uuid4()),
                               uuid.uuid4().hex, 1)
        raw = record.encode(payload, prod, 1)
        in_process("record-encode", lambda: [record.encode(payload, prod, 1) for _ in range(10)])
        in_process("record-decode", lambda: [record.parse(raw) for _ in range(10)])
    if "capture" in which:
        from handoff.capture.save import copy_sparse

        src = inputs.vmcore_like(WORK / "profile-capture.elf", 256 << 20)
        dst = WORK / "profile-capture.out"
        dst.unlink(missing_ok=True)
        in_process("capture-copy_sparse", lambda: copy_sparse(str(src), str(dst), sync=False))
        dst.unlink(missing_ok=True)
        for p in (src, src.with_suffix(".ok")):
            p.unlink(missing_ok=True)
    print(f"reports in {OUT}: {', '.join(sorted(os.listdir(OUT)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
