#!/usr/bin/env python3
"""Capture throughput: handoff's sparse ELF copy against `cp` and `dd bs=1M` of the same file.

Builds a vmcore-like ELF core (ELF header, one PT_NOTE, PT_LOADs) whose pages are a mix of
random and zero pages, written out in full (not sparse, like /proc/vmcore), then copies it with
each tool several times, interleaved, and prints the median MB/s and the ratio to `cp`, once
without and once with the data made durable (`cp` + `sync FILE`, `dd conv=fsync`, handoff's
fsync). Caches are warm unless --cold is given and /proc/sys/vm/drop_caches is writable.

Plain `cp` copies a regular file with copy_file_range(2), inside the kernel, which /proc/vmcore
does not offer; `cp --sparse=always` reads and writes like handoff does and makes holes too,
so it is the like-for-like comparison for a capture.

    python3 bench/capture_copy.py --size-mib 2048 --zero-fraction 0.5 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handoff.capture.save import copy_sparse

PAGE = 4096


def build_source(path: Path, size: int, zero_fraction: float, seed: int) -> None:
    """ELF64 core: header + PT_NOTE at 4 KiB, one PT_LOAD from 8 KiB covering ``size`` bytes."""
    rnd = random.Random(seed)
    note = struct.pack("<III", 11, 16, 0) + b"VMCOREINFO\x00\x00" + b"PAGESIZE=4096\n\x00\x00"
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + bytes(9),
        4,
        62,
        1,
        0,
        64,
        0,
        0,
        64,
        56,
        2,
        0,
        0,
        0,
    )
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, 4096, 0, 0, len(note), len(note), 4)
    phdrs += struct.pack("<IIQQQQQQ", 1, 7, 8192, 0xFFFF888000000000, 0, size, size, PAGE)
    pool = os.urandom(64 << 20)
    zero = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(ehdr + phdrs)
        f.write(bytes(4096 - f.tell()))
        f.write(note)
        f.write(bytes(8192 - f.tell()))
        left = size
        # runs of 1..64 pages, zero with probability zero_fraction (free memory comes in runs)
        while left:
            n = min(left, rnd.randint(1, 64) * PAGE)
            if rnd.random() < zero_fraction:
                while n:
                    k = min(n, len(zero))
                    f.write(zero[:k])
                    n -= k
                    left -= k
            else:
                at = rnd.randrange(0, len(pool) - n) & ~(PAGE - 1)
                f.write(pool[at : at + n])
                left -= n
        f.flush()
        os.fsync(f.fileno())


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of this process and its children: the
    CPU cost is what other load on a shared machine disturbs least."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    fn()
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        getattr(b, f) - getattr(a, f)
        for a, b in ((r0, r1), (c0, c1))
        for f in ("ru_utime", "ru_stime")
    )
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--zero-fraction", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir in /var/tmp)")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before every run")
    ap.add_argument(
        "--source",
        default=None,
        help="use this vmcore (e.g. a real one) instead of a synthetic one; it is "
        "copied in full (no holes) first",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="handoff-bench-", dir=a.dir or "/var/tmp"))
    src = work / "vmcore.src"
    dst = work / "vmcore.out"
    size = a.size_mib << 20
    try:
        if a.source:
            with open(a.source, "rb") as fi, src.open("wb") as fo:  # every byte, holes included
                while block := fi.read(1 << 20):
                    fo.write(block)
                fo.flush()
                os.fsync(fo.fileno())
        else:
            build_source(src, size, a.zero_fraction, seed=1)
        total = src.stat().st_size
        s = str(src)
        d = str(dst)

        def handoff(sync: bool) -> Callable[[], None]:
            def go() -> None:
                copy_sparse(s, d, sync=sync)

            return go

        def tool(*argvs: list[str]) -> Callable[[], None]:
            def go() -> None:
                for argv in argvs:
                    subprocess.run(argv, check=True)

            return go

        dd = ["dd", f"if={s}", f"of={d}", "bs=1M", "status=none"]
        tools: dict[str, Callable[[], None]] = {
            "handoff": handoff(False),
            "cp": tool(["cp", s, d]),
            "cp --sparse=always": tool(["cp", "--sparse=always", s, d]),
            "dd bs=1M": tool(dd),
            "handoff+fsync": handoff(True),
            "cp+sync": tool(["cp", s, d], ["sync", d]),
            "cp --sparse=always+sync": tool(["cp", "--sparse=always", s, d], ["sync", d]),
            "dd bs=1M conv=fsync": tool([*dd, "conv=fsync"]),
        }
        cold = a.cold and drop_caches()
        times: dict[str, list[float]] = {k: [] for k in tools}
        cpus: dict[str, list[float]] = {k: [] for k in tools}
        blocks: dict[str, int] = {}
        for name, fn in tools.items():  # warm-up (and page-cache fill) outside the timing
            fn()
            blocks[name] = os.stat(d).st_blocks * 512
            dst.unlink()
        for _ in range(a.runs):
            for name, fn in tools.items():
                os.sync()
                if cold:
                    drop_caches()
                wall, cpu = timed(fn)
                times[name].append(wall)
                cpus[name].append(cpu)
                dst.unlink()
        med = {k: statistics.median(v) for k, v in times.items()}
        rate = {k: total / v / 1e6 for k, v in med.items()}
        result = {
            "source_bytes": total,
            "source": a.source or "synthetic",
            "zero_fraction": a.zero_fraction if not a.source else None,
            "runs": a.runs,
            "cache": "cold" if cold else "warm",
            "load_average": os.getloadavg(),
            "mb_per_s": {k: round(v, 1) for k, v in rate.items()},
            "cpu_s_per_gib": {
                k: round(statistics.median(v) / (total / 2**30), 3) for k, v in cpus.items()
            },
            "ratio_to_cp": {
                "handoff / cp": round(rate["handoff"] / rate["cp"], 3),
                "handoff / cp --sparse=always": round(
                    rate["handoff"] / rate["cp --sparse=always"], 3
                ),
                "handoff / dd": round(rate["handoff"] / rate["dd bs=1M"], 3),
                "handoff+fsync / cp+sync": round(rate["handoff+fsync"] / rate["cp+sync"], 3),
                "handoff+fsync / cp --sparse=always+sync": round(
                    rate["handoff+fsync"] / rate["cp --sparse=always+sync"], 3
                ),
                "handoff+fsync / dd conv=fsync": round(
                    rate["handoff+fsync"] / rate["dd bs=1M conv=fsync"], 3
                ),
            },
            "allocated_bytes": blocks,
        }
        if a.json:
            print(json.dumps(result, indent=2))
        else:
            what = a.source or f"synthetic, {a.zero_fraction:.0%} zero pages"
            print(
                f"source {total / 2**20:.0f} MiB ({what}), "
                f"{result['cache']} cache, median of {a.runs}, load average "
                f"{os.getloadavg()[0]:.1f}"
            )
            for k in tools:
                cpu = result["cpu_s_per_gib"][k]  # type: ignore[index]
                print(
                    f"  {k:26s} {rate[k]:8.1f} MB/s  {cpu:6.3f} CPU s/GiB  "
                    f"(output allocates {blocks[k] / 2**20:.0f} MiB)"
                )
            for k, v in result["ratio_to_cp"].items():
                print(f"  {k:42s} {v:.3f}")
    finally:
        for p in (src, dst):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
