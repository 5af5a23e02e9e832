"""What every section gets: the install under test, the work dir, repetition counts, a log."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.env import Install
from bench.measure import Cmd


@dataclass
class Ctx:
    quick: bool
    install: Install
    work: Path
    e2e: bool = False
    runs_override: int | None = None
    loadavg: list[tuple[str, float, float, float]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    @property
    def runs(self) -> int:
        """Repetitions of a command that takes ~0.1 s (the median of these is quoted)."""
        return self.runs_override or (2 if self.quick else 15)

    @property
    def runs_long(self) -> int:
        """Repetitions of a command that takes a second or more."""
        return self.runs_override or (2 if self.quick else 5)

    def log(self, msg: str) -> None:
        sys.stderr.write(f"[bench {time.monotonic() - self.t0:6.1f} s] {msg}\n")
        sys.stderr.flush()

    def sample_load(self, where: str) -> None:
        self.loadavg.append((where, *os.getloadavg()))

    def handoff(self, *args: str) -> list[str]:
        return [*self.install.handoff, *args]

    def floor(self) -> Cmd:
        """The floor of any Python command: the interpreter starting without site."""
        return Cmd("python3 -S -c pass", [[self.install.python, "-S", "-c", "pass"]])


Section = Callable[[Ctx], list]
