"""What a plugin step body works through: logged, bounded, revocable register access.

Every read, write and poll goes through :class:`StepContext`, which

- logs it (capped at :data:`MAX_LOGGED` entries per step; the rest are counted),
- refuses it once the step's deadline has passed (:class:`StepTimeout`) or once the runner has
  abandoned the step (:class:`StepAbandoned`) - so a plugin that overstays cannot touch the
  device after the runner moved on,
- refuses writes in the read-only phases (save, verify),
- and in a dry run touches nothing: reads return the step's ``assume`` values, writes and polls
  are logged as what they would do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from handoff.plugins.api import (
    READ_ONLY_PHASES,
    SAVE,
    Access,
    PluginStep,
    StepAbandoned,
    StepTimeout,
    WriteRefused,
)
from handoff.plugins.bar import (
    BarAccessor,
    BarSource,
    Deadline,
    PollResult,
    Sleep,
    check_access,
    poll,
)

if TYPE_CHECKING:  # pragma: no cover
    from handoff.devices.model import PciDevice

MAX_LOGGED = 256
DEFAULT_INTERVAL = 0.005


class StepContext:
    """The device as one step sees it. Attributes: ``device`` (the current device model),
    ``state`` (the plugin's saved ext section, or None), ``phase``, ``dry_run``, ``deadline``."""

    def __init__(self, step: PluginStep, bars: BarSource | None, deadline: Deadline, *,
                 dry_run: bool = False, sleep: Sleep = time.sleep) -> None:
        self.step = step
        self.device: PciDevice | None = step.device
        self.state: Mapping[str, Any] | None = step.state
        self.phase = step.phase
        self.dry_run = dry_run
        self.deadline = deadline
        self.accesses: list[Access] = []
        self.dropped = 0
        self.ext: dict[str, Any] = {}
        self.notes: list[str] = []
        self._bars = bars
        self._sleep = sleep
        self._lock = threading.Lock()
        self._revoked = False
        self._sizes = {b.index: b.size for b in (step.device.bars if step.device else [])
                       if b.size}

    # -- what bodies call -----------------------------------------------------------------

    def read(self, bar: int, offset: int, width: int, *, name: str | None = None) -> int:
        """Read a register. In a dry run nothing is read: the step's ``assume`` value (0 if
        none) is returned and the access is logged as not read."""
        self._enter()
        if self.dry_run:
            check_access(bar, offset, width, self._sizes.get(bar))
            value = self.step.assume.get((bar, offset), 0)
            self._log(Access(bar, offset, width, "read", None,
                             f"not read (dry run); assumed {value:#x}", name))
            return value
        acc = self._bar(bar)
        with self._lock:
            self._check_revoked()
            value = acc.read(offset, width)
        self._log(Access(bar, offset, width, "read", value, "ok", name))
        return value

    def write(self, bar: int, offset: int, width: int, value: int, *,
              name: str | None = None) -> None:
        self._enter()
        if self.phase in READ_ONLY_PHASES:
            raise WriteRefused(f"{self.step.label}: {self.phase} steps only read; the write of "
                               f"{value:#x} to BAR{bar}+{offset:#x} was refused")
        if self.dry_run:
            check_access(bar, offset, width, self._sizes.get(bar))
            self._log(Access(bar, offset, width, "write", value, "not written (dry run)", name))
            return
        acc = self._bar(bar)
        with self._lock:
            self._check_revoked()
            acc.write(offset, width, value)
        self._log(Access(bar, offset, width, "write", value, "ok", name))

    def modify(self, bar: int, offset: int, width: int, *, set_bits: int = 0,
               clear_bits: int = 0, name: str | None = None) -> tuple[int, int]:
        """Read-modify-write; returns (old, new). Skips the write when nothing changes."""
        old = self.read(bar, offset, width, name=name)
        new = (old & ~clear_bits | set_bits) & ((1 << (8 * width)) - 1)
        if new != old:
            self.write(bar, offset, width, new, name=name)
        return old, new

    def poll(self, bar: int, offset: int, width: int, *, mask: int, want: int,
             timeout_s: float, interval: float = DEFAULT_INTERVAL,
             name: str | None = None) -> PollResult:
        """Read until ``value & mask == want`` or ``timeout_s`` (cut to the step's remaining
        time) has passed; logged as one ``poll`` access. The caller decides what a timeout
        means (most raise :class:`StepTimeout` with the register's name)."""
        self._enter()
        bound = min(timeout_s, self.deadline.remaining())
        cut = " (cut to the step's remaining time)" if bound < timeout_s else ""
        if self.dry_run:
            check_access(bar, offset, width, self._sizes.get(bar))
            assumed = (self.step.assume.get((bar, offset), 0) & ~mask) | (want & mask)
            self._log(Access(bar, offset, width, "poll", None,
                             f"not polled (dry run): would wait up to {bound:.3g} s{cut} "
                             f"for & {mask:#x} == {want:#x}", name))
            return PollResult(True, assumed, 0, 0.0)
        acc = self._bar(bar)
        check_access(bar, offset, width, acc.size)

        def read_once() -> int:
            with self._lock:
                self._check_revoked()
                return acc.read(offset, width)

        res = poll(read_once, lambda v: v & mask == want, bound, interval,
                   clock=self.deadline.clock, sleep=self._sleep_revocable)
        if res.ok:
            what = f"& {mask:#x} == {want:#x} after {res.reads} read(s), {res.elapsed:.3g} s"
        else:
            what = (f"timeout: & {mask:#x} != {want:#x} after {res.reads} read(s), "
                    f"{res.elapsed:.3g} s (bound {bound:.3g} s{cut})")
        self._log(Access(bar, offset, width, "poll", res.value, what, name))
        return res

    def sleep(self, seconds: float) -> None:
        """Sleep, but never past the step's deadline; a dry run does not sleep."""
        self._enter()
        if self.dry_run:
            return
        self._sleep_revocable(min(seconds, self.deadline.remaining()))

    def bar_size(self, bar: int) -> int | None:
        """The BAR's size: from the mapping, or in a dry run from the device model."""
        if self.dry_run:
            return self._sizes.get(bar)
        return self._bar(bar).size

    def record(self, key: str, value: Any) -> None:
        """Put ``key`` in the plugin's ext section (save phase only). Values must be CBOR
        payload values (R16): ints, text, bytes, bools, None, lists, maps; never floats."""
        if self.phase != SAVE:
            raise WriteRefused(f"{self.step.label}: only save steps record ext state")
        if key == "v":
            raise ValueError("'v' is the section's version; the runner sets it")
        _check_cbor(value, key)
        self.ext[key] = value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def remaining(self) -> float:
        return self.deadline.remaining()

    # -- runner side ------------------------------------------------------------------------

    def revoke(self, wait_s: float = 1.0) -> None:
        """Refuse every later access; waits (bounded) for an access in progress to end."""
        got = self._lock.acquire(timeout=wait_s)
        self._revoked = True
        if got:
            self._lock.release()

    def _enter(self) -> None:
        self._check_revoked()
        if self.deadline.expired():
            raise StepTimeout(f"{self.step.label} ran past its time bound")

    def _check_revoked(self) -> None:
        if self._revoked:
            raise StepAbandoned(f"{self.step.label} was abandoned by the runner; register "
                                "access refused")

    def _sleep_revocable(self, seconds: float) -> None:
        self._check_revoked()
        if seconds > 0:
            self._sleep(seconds)

    def _bar(self, index: int) -> BarAccessor:
        if self._bars is None:
            raise RuntimeError("no BARs given to a step that is not a dry run")
        return self._bars.bar(index)

    def _log(self, a: Access) -> None:
        if len(self.accesses) < MAX_LOGGED:
            self.accesses.append(a)
        else:
            self.dropped += 1


def _check_cbor(value: Any, where: str, depth: int = 0) -> None:
    if depth > 8:  # a section value sits at payload depth 6 (R18 allows 16)
        raise ValueError(f"ext value {where!r} nests too deeply")
    if value is None or isinstance(value, (bool, int, str, bytes)):
        if isinstance(value, int) and not isinstance(value, bool) and \
                not -(1 << 64) <= value < 1 << 64:
            raise ValueError(f"ext value {where!r} does not fit in 64 bits")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_cbor(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"ext map keys are text (R16): {where!r} has {k!r}")
            _check_cbor(v, f"{where}.{k}", depth + 1)
        return
    raise TypeError(f"ext value {where!r} is a {type(value).__name__}: payloads hold ints, "
                     "text, bytes, bools, None, lists and maps (no floats, R16)")
