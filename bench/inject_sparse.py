#!/usr/bin/env python3
"""Note injection does not grow with the dump: inject into 1 GiB and 16 GiB sparse dumps (ELF
and kdump-compressed), next to `cp --sparse=always` of the same file.

A dump is built once per format and size: 64 KiB of data in every MiB (--data-kib), the rest
holes, like a capture of a machine with much unused memory (1 GiB of data in the 16 GiB dump).
Each run restores the dump to its original bytes (header rewritten, file truncated back),
times `inject_notes` (a 2.6 KiB record and a report, both fsyncs included), then
`cp --sparse=always` of the same file, and prints the medians and their ratio. Injection reads
headers and notes only; cp reads every data extent.

    python3 bench/inject_sparse.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import elfwriter as W
import kdumpwriter as K
import recordgen as G

from handoff.capture.inject import inject_notes
from handoff.record import NT_HANDOFF_RECORD, NT_HANDOFF_REPORT


def build(path: Path, fmt: str, size: int, data_kib: int) -> None:
    """A sparse dump of ``size`` bytes with ``data_kib`` KiB of data at the start of every MiB."""
    data = os.urandom(data_kib << 10)
    if fmt == "elf":
        with path.open("wb") as f:
            W.write_core(f, loads=[W.Load(0x100000, size - 8192)])
        base = 8192
    else:
        head = K.kdump_bytes(max_mapnr=size // 4096)
        path.write_bytes(head)
        base = -(-len(head) // (1 << 20)) * (1 << 20)
    with path.open("r+b") as f:
        for off in range(base, size - len(data), 1 << 20):
            f.seek(off)
            f.write(data)
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes-gib", default="1,16")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--data-kib", type=int, default=64, help="KiB of data per MiB of dump")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rec = G.make_record(G.sample_payload(8))
    report = json.dumps({"summary": "restored 8 of 8 devices"}).encode()
    notes = [(NT_HANDOFF_RECORD, rec), (NT_HANDOFF_REPORT, report)]
    work = Path(tempfile.mkdtemp(prefix="handoff-inject-bench-", dir=a.dir))
    rows = []
    try:
        for fmt in ("elf", "kdump"):
            for gib in (int(x) for x in a.sizes_gib.split(",")):
                size = gib << 30
                t_inj: list[float] = []
                t_nosync: list[float] = []
                t_cp: list[float] = []
                appended = 0
                dump = work / f"dump.{fmt}"
                build(dump, fmt, size, a.data_kib)
                with dump.open("rb") as fr:
                    pristine = fr.read(1 << 16)
                allocated = dump.stat().st_blocks * 512
                for _ in range(a.runs):
                    for sync in (False, True):
                        with dump.open("r+b") as f:  # back to the original bytes
                            f.write(pristine)
                            f.truncate(size)
                        os.sync()
                        t = time.perf_counter()
                        inject_notes(dump, notes, sync=sync)
                        (t_inj if sync else t_nosync).append(time.perf_counter() - t)
                    with dump.open("r+b") as f:
                        f.write(pristine)
                        f.truncate(size)
                    os.sync()
                    res = inject_notes(dump, notes, sync=False)
                    appended = res.appended
                    t = time.perf_counter()
                    subprocess.run(
                        ["cp", "--sparse=always", str(dump), str(work / "copy")], check=True
                    )
                    t_cp.append(time.perf_counter() - t)
                    (work / "copy").unlink()
                    os.sync()
                dump.unlink()
                mi, mc = statistics.median(t_inj), statistics.median(t_cp)
                rows.append(
                    {
                        "format": fmt,
                        "size_gib": gib,
                        "runs": a.runs,
                        "data_mib": allocated >> 20,
                        "inject_ms": round(mi * 1e3, 2),
                        "inject_nosync_ms": round(statistics.median(t_nosync) * 1e3, 2),
                        "cp_sparse_ms": round(mc * 1e3, 1),
                        "cp_over_inject": round(mc / mi, 1),
                        "inject_ms_all": [round(x * 1e3, 2) for x in t_inj],
                        "appended_bytes": appended,
                    }
                )
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"note injection vs cp --sparse=always, median of {a.runs} "
        f"({len(rec)}-byte record + {len(report)}-byte report); 'inject' includes both fsyncs"
    )
    print(
        f"  {'format':6s} {'size':>7s} {'on disk':>9s} {'inject':>10s} {'no fsync':>10s} "
        f"{'cp':>10s} {'cp/inject':>10s} {'appended':>9s}"
    )
    for r in rows:
        print(
            f"  {r['format']:6s} {r['size_gib']:>4d} GiB {r['data_mib']:>5d} MiB "
            f"{r['inject_ms']:>7.2f} ms {r['inject_nosync_ms']:>7.2f} ms "
            f"{r['cp_sparse_ms']:>7.1f} ms {r['cp_over_inject']:>9.1f}x "
            f"{r['appended_bytes']:>7d} B"
        )
    for key, label in (("inject_ms", "inject"), ("inject_nosync_ms", "inject without fsync")):
        by = {(r["format"], r["size_gib"]): r[key] for r in rows}
        for fmt in ("elf", "kdump"):
            sizes = sorted(g for f, g in by if f == fmt)
            if len(sizes) > 1:
                lo, hi = sizes[0], sizes[-1]
                print(
                    f"  {fmt}: {label} time {hi} GiB / {lo} GiB = "
                    f"{by[(fmt, hi)] / by[(fmt, lo)]:.2f} (size ratio {hi // lo})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
