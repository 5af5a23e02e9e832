"""Timing primitives: run a child, take its wall time and its own peak RSS; interleaved series.

Peak RSS comes from ``/usr/bin/time -f %M`` (GNU time's "Maximum resident set size", the
child's ``ru_maxrss`` from ``wait4(2)``), never an estimate. Not from a child this process forks
itself: Linux carries the high-water mark of the mm a process had before ``execve`` into its
``ru_maxrss`` (``exec_mmap`` → ``setmax_mm_hiwater_rss``), so every child of the bench would
report at least the bench's own ~25 MiB. GNU time forks from its own ~2 MiB. The untimed
warm-up rounds run under GNU time and give the RSS; the timed rounds run the command directly,
so the wall times carry no wrapper.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class CommandFailed(RuntimeError):
    """A measured command exited with an unexpected code; carries the tail of its stderr."""

    def __init__(self, argv: Sequence[str], rc: int, stderr: str) -> None:
        tail = stderr.strip().splitlines()[-3:]
        super().__init__(f"{' '.join(argv)} exited {rc}: {' | '.join(tail) or 'no stderr'}")
        self.argv = list(argv)
        self.rc = rc


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    rss: int  # bytes, peak resident set of the process (max over the steps of a Cmd)


GNU_TIME = "/usr/bin/time"


def run_child(argv: Sequence[str], *, ok: Sequence[int] = (0,), env: dict[str, str] | None = None,
              cwd: str | None = None, rss: bool = False) -> Sample:
    """Run ``argv`` (no shell) with stdout discarded; wall time from just before fork to reap.
    With ``rss``, run it under GNU time and return its peak RSS (the wall time then includes
    GNU time's own fork and exec, ~1 ms)."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as tm:
        full = list(argv)
        timed = rss and os.access(GNU_TIME, os.X_OK)
        if timed:
            full = [GNU_TIME, "-f", "%M", "-o", tm.name, *full]
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=env, cwd=cwd)
        _, status, _ = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode not in ok:
            err.seek(0)
            raise CommandFailed(argv, p.returncode, err.read().decode(errors="replace"))
        peak = 0
        if timed:
            lines = [x for x in tm.read().split() if x.isdigit()]
            peak = int(lines[-1]) * 1024 if lines else 0
    return Sample(wall, peak)


@dataclass
class Cmd:
    """One measured thing: one or more argvs run back to back (e.g. ``cp`` then ``sync``), or
    an in-process callable. ``before``/``after`` run outside the timing (resetting inputs)."""

    name: str
    argvs: list[list[str]] = field(default_factory=list)
    fn: Callable[[], object] | None = None
    ok: Sequence[int] = (0,)
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    env: dict[str, str] | None = None

    def once(self, rss: bool = False) -> Sample:
        if self.before:
            self.before()
        if self.fn is not None:
            t0 = time.perf_counter()
            self.fn()
            s = Sample(time.perf_counter() - t0, 0)
        else:
            wall, peak = 0.0, 0
            for argv in self.argvs:
                one = run_child(argv, ok=self.ok, env=self.env, rss=rss)
                wall += one.wall
                peak = max(peak, one.rss)
            s = Sample(wall, peak)
        if self.after:
            self.after()
        return s


@dataclass
class Stats:
    """Summary of a series: the median is the quoted figure; everything is kept for the JSON."""

    walls: list[float]
    rsses: list[int]  # from the untimed warm-up rounds, run under GNU time

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def rss(self) -> int:
        return int(statistics.median(self.rsses)) if self.rsses else 0

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.wall, "min_s": min(self.walls), "max_s": max(self.walls),
                "runs": len(self.walls), "walls_s": [round(w, 6) for w in self.walls],
                "median_rss_bytes": self.rss, "max_rss_bytes": max(self.rsses, default=0)}


def series(cmds: Sequence[Cmd], runs: int, *, warmup: int = 1) -> dict[str, Stats]:
    """Run every command ``runs`` times, interleaved (round r starts at command r mod n, so no
    command always runs right after the same one), after ``warmup`` untimed rounds that fill
    the page cache and measure peak RSS. Returns the stats by command name."""
    out: dict[str, Stats] = {c.name: Stats([], []) for c in cmds}
    for _ in range(max(1, warmup)):
        for c in cmds:
            s = c.once(rss=True)
            if c.fn is None:
                out[c.name].rsses.append(s.rss)
    n = len(cmds)
    for r in range(runs):
        for i in range(n):
            c = cmds[(r + i) % n]
            out[c.name].walls.append(c.once().wall)
    return out


def repeat_in_process(fn: Callable[[], object], runs: int, *, inner: int = 1,
                      warmup: int = 1) -> list[float]:
    """Seconds per call of ``fn``: ``runs`` figures, each the mean over ``inner`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t0) / inner)
    return out
