"""A vmcore-like source for the capture tests, and running the capture pipeline on it."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from handoff.capture import pipeline as P
from helpers import elfwriter as W

PAGE = 4096
REPORT = b'{"summary": "restored 2 of 2 devices", "devices": []}'


def pages(seed: int, n: int, zero_fraction: float = 0.5) -> tuple[bytes, list[bool]]:
    """``n`` pages, each random or zero; also which ones are zero."""
    rnd = random.Random(seed)
    out, zero = [], []
    for _ in range(n):
        z = rnd.random() < zero_fraction
        zero.append(z)
        out.append(bytes(PAGE) if z else rnd.randbytes(PAGE))
    return b"".join(out), zero


def vmcore_like(path: Path) -> list[W.Load]:
    """Header, notes, four PT_LOADs (mixed, a partial last page, all zero, all data), written
    in full so that the source itself has no holes."""
    mixed, _ = pages(1, 600)  # 2.3 MiB: more than two 1 MiB chunks
    partial = pages(2, 159)[0] + b"\x77" * 3072  # 0x9ec00 bytes, like a real x86 low-memory load
    loads = [
        W.Load(0x1000000, len(mixed), data=mixed),
        W.Load(0x1000, len(partial), data=partial),
        W.Load(0x100000, 1 << 20, data=bytes(1 << 20)),
        W.Load(0x200000, 3 * PAGE, data=pages(3, 3, 0.0)[0]),
    ]
    with path.open("wb") as f:
        W.write_core(f, loads=loads)
        f.flush()
        os.fsync(f.fileno())
    assert path.stat().st_blocks * 512 >= path.stat().st_size - PAGE  # not sparse
    return loads


def run_capture(inputs: dict[str, Path], **kw: Any) -> P.CaptureResult:
    args: dict[str, Any] = {
        "dump_dir": str(inputs["dir"]),
        "vmcore": str(inputs["vmcore"]),
        "record": str(inputs["record"]),
        "report": str(inputs["report"]),
    }
    args.update(kw)
    return P.capture(**args)
