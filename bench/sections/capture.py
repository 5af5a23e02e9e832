"""Capture to ELF with zero-page skipping, from a vmcore-like file, against `cp` and `dd bs=1M`.

The source is an ELF core written in full (no holes, like /proc/vmcore) whose pages come in
runs, half of them zero. Two comparisons:

- `handoff capture --vmcore SRC --dump-dir D --no-subdir` (the CLI: interpreter start, record
  check, copy, fsync, note injection, metadata) against `cp SRC DST; sync DST` and
  `dd bs=1M conv=fsync`: the dump is durable at the end of each;
- `copy_sparse(sync=False)` (the copy loop alone) against plain `cp` and `dd bs=1M`.

Caches are warm (the source is read once before timing). Plain `cp` copies a regular file
with copy_file_range(2), inside the kernel, which /proc/vmcore does not offer; `cp
--sparse=always` (reading and writing like handoff does) is kept in results.json for context.
"""

from __future__ import annotations

import os
import shutil
import time

from bench import inputs
from bench.core import Ctx
from bench.measure import Cmd, series
from bench.table import CONTEXT, Figure, Row, ratio_at_least

GROUP = "capture to ELF, zero pages skipped"
IDS = ["capture.cli.cp", "capture.cli.dd", "capture.library.cp", "capture.library.dd"]


def run(ctx: Ctx) -> list[Row]:
    from handoff.capture.save import copy_sparse

    size = (64 << 20) if ctx.quick else (1 << 30)
    ctx.log(f"capture: writing a {size >> 20} MiB vmcore-like source (half zero pages)")
    src = inputs.vmcore_like(ctx.work / f"capture-src-{size >> 20}M.elf", size)
    rec = ctx.work / "capture-record.bin"
    rec.write_bytes(inputs.sample_record(8))
    out = ctx.work / "capture-out"
    dst = out / "vmcore"

    def clean() -> None:
        for attempt in range(5):
            try:
                shutil.rmtree(out)
                break
            except FileNotFoundError:
                break
            except OSError:  # seen once: ENOTEMPTY right after a run; retry, then fail loudly
                if attempt == 4:
                    raise
                time.sleep(0.2)
        out.mkdir(parents=True, exist_ok=True)
        os.sync()

    s, d = str(src), str(dst)
    dd = ["dd", f"if={s}", f"of={d}", "bs=1M", "status=none"]
    cmds = [
        Cmd("handoff capture", [ctx.handoff("capture", "--vmcore", s, "--dump-dir", str(out),
                                            "--no-subdir", "--record", str(rec),
                                            "--no-progress")], before=clean),
        Cmd("cp+sync", [["cp", s, d], ["sync", d]], before=clean),
        Cmd("dd conv=fsync", [[*dd, "conv=fsync"]], before=clean),
        Cmd("copy_sparse", fn=lambda: copy_sparse(s, d, sync=False), before=clean),
        Cmd("cp", [["cp", s, d]], before=clean),
        Cmd("dd", [dd], before=clean),
        Cmd("cp --sparse=always", [["cp", "--sparse=always", s, d]], before=clean),
    ]
    total = src.stat().st_size
    st = series(cmds, ctx.runs_long)
    clean()
    if not ctx.quick:
        src.unlink()  # 1 GiB: rebuilt next time rather than left in the work dir
        src.with_suffix(".ok").unlink(missing_ok=True)

    def mbs(name: str, label: str = "") -> Figure:
        return Figure(total / st[name].wall / 1e6, "MB/s", rss=st[name].rss or None, label=label)

    inp = f"{total >> 20} MiB ELF core, half zero pages (runs of 1-64 pages), warm cache"
    details = {"stats": {n: x.to_json() for n, x in st.items()}, "source_bytes": total,
               "mb_per_s": {n: total / x.wall / 1e6 for n, x in st.items()}}
    goal = ratio_at_least(0.95, "≥ 0.95x cp")
    return [
        Row("capture.cli.cp", GROUP, "`handoff capture` (durable) vs cp + sync", inp,
            mbs("handoff capture"), mbs("cp+sync", "cp; sync FILE"), goal, details=details),
        Row("capture.cli.dd", GROUP, "`handoff capture` (durable) vs dd conv=fsync", inp,
            mbs("handoff capture"), mbs("dd conv=fsync", "dd bs=1M conv=fsync"), CONTEXT,
            details=details),
        Row("capture.library.cp", GROUP, "copy_sparse() (no fsync) vs cp", inp,
            mbs("copy_sparse"), mbs("cp", "cp"), goal, details=details),
        Row("capture.library.dd", GROUP, "copy_sparse() (no fsync) vs dd bs=1M", inp,
            mbs("copy_sparse"), mbs("dd", "dd bs=1M"), CONTEXT, details=details),
    ]
