"""Plan and run plugin steps with containment: a plugin that raises, hangs or is refused by
the kernel is reported, and the run moves on.

- :func:`steps_for` asks every plugin that matches a device for its steps of one phase;
- :func:`run_step` runs one step in a worker thread under a deadline; if the body does not
  return in time its register access is revoked and the step is reported as a timeout;
  worker threads are long-lived and reused (starting a thread per step cost 0.35-2.5 ms
  each, docs/performance.md §4): one is replaced only when a step overran and was abandoned;
- :func:`run_plugins` does both over many devices and returns every result.

Where the restore engine calls these, relative to its config-space passes, is in
docs/plugins.md ("Phases and ordering").
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from handoff._slots import Slots
from handoff.devices.model import PciDevice
from handoff.plugins.api import (
    FAILED,
    NO_RESPONSE,
    OK,
    PHASES,
    PLANNED,
    READ_ONLY_PHASES,
    REFUSED,
    SAVE,
    TIMEOUT,
    NoResponse,
    Plugin,
    PluginStep,
    StepFailed,
    StepResult,
    StepTimeout,
    WriteRefused,
)
from handoff.plugins.bar import (
    CLAIMED_MESSAGE,
    BarBoundsError,
    BarClaimed,
    BarError,
    BarMappingRefused,
    BarSource,
    BarUnavailable,
    Clock,
    Deadline,
    RefusedBars,
    Sleep,
    SysfsBars,
)
from handoff.plugins.context import StepContext
from handoff.plugins.registry import (
    LoadProblem,
    PluginInfo,
    Registry,
    Selection,
    default_registry,
)
from handoff.sysfs import SysfsTree

GRACE_S = 0.5  # how long past its deadline a body may take to unwind on its own

BarsFor = Callable[[PciDevice, bool], BarSource]


def _state(info: PluginInfo, saved: PciDevice | None) -> tuple[Mapping[str, Any] | None,
                                                                str | None]:
    """The plugin's ext section of the saved device if its version is one the plugin reads."""
    if saved is None:
        return None, None
    section = saved.ext.get(info.name)
    if section is None:
        return None, None
    if not isinstance(section, dict) or not isinstance(section.get("v"), int):
        return None, f"saved ext section {info.name!r} has no integer 'v': ignored"
    if not info.plugin.reads_ext(section["v"]):
        return None, (f"saved ext section {info.name!r} is version {section['v']}; "
                      f"{info.name} {info.plugin.version} reads {info.plugin.ext_version}: "
                      "ignored")
    return section, None


def steps_for(device: PciDevice, phase: str, *, saved: PciDevice | None = None,
              registry: Registry | None = None,
              selection: Selection | None = None) -> list[PluginStep]:
    """The steps every plugin that takes ``device`` (the device as it is now) has for
    ``phase``, in plugin order. ``saved`` is the record's device, whose ``ext`` gives each
    plugin its state (default: ``device`` itself). ``selection`` is ``registry.select(device)``
    when the caller already has it (a restore plan selects once per device, not once per
    phase). Planning never touches the device; a plugin that raises while planning yields one
    step with ``problem`` set, which reports it when run.
    """
    if phase not in PHASES:
        raise ValueError(f"phase {phase!r} is not one of {', '.join(PHASES)}")
    reg = registry if registry is not None else default_registry()
    sel = selection if selection is not None else reg.select(device)
    out: list[PluginStep] = []
    for name, err in sel.errors.items():
        info = reg.get(name)
        if info is not None and phase in info.plugin.hooks():
            out.append(_problem(info, device, phase, "accepts", err))
    for info in sel.accepted:
        plugin = info.plugin
        if phase not in plugin.hooks():
            continue
        state, note = _state(info, saved if saved is not None else device)
        try:
            steps = list(getattr(plugin, phase)(device, state))
        except Exception as e:  # noqa: BLE001 - a planning bug becomes a failed step
            out.append(_problem(info, device, phase, "plan",
                                f"{phase}() raised {type(e).__name__}: {e}"))
            continue
        for s in steps:
            if not isinstance(s, PluginStep):
                out.append(_problem(info, device, phase, "plan",
                                    f"{phase}() returned a {type(s).__name__}, not a "
                                    "PluginStep"))
                continue
            s.plugin, s.addr, s.phase, s.device, s.state = (plugin.name, device.addr, phase,
                                                            device, state)
            s.ext_version = plugin.ext_version
            if s.timeout_s is None:
                s.timeout_s = plugin.step_timeout_s
            if note and s.problem is None:
                s.why = f"{s.why} ({note})"
            out.append(s)
    return out


def _problem(info: PluginInfo, device: PciDevice, phase: str, name: str,
             problem: str) -> PluginStep:
    return PluginStep(name, "planning the step", None, 0.0, plugin=info.name,
                      addr=device.addr, phase=phase, device=device, problem=problem)


def _classify(e: BaseException, step: PluginStep) -> tuple[str, str]:
    if isinstance(e, StepTimeout):
        return TIMEOUT, str(e)
    if isinstance(e, NoResponse):
        return NO_RESPONSE, f"no response: {e}"
    if isinstance(e, (BarMappingRefused, BarClaimed, BarUnavailable, BarBoundsError,
                      WriteRefused)):
        return REFUSED, str(e) + (f" ({e.hint})" if getattr(e, "hint", None) else "")
    if isinstance(e, (StepFailed, BarError)):
        return FAILED, str(e)
    if isinstance(e, SystemExit):
        return FAILED, f"plugin {step.plugin} called exit({e.code!r}): contained"
    return FAILED, f"plugin {step.plugin} raised {type(e).__name__}: {e}"


def run_step(step: PluginStep, bars: BarSource | None, deadline: Deadline, *,
             dry_run: bool = False, sleep: Sleep = time.sleep, isolate: bool = True,
             grace_s: float = GRACE_S) -> StepResult:
    """Run one step; never raises for anything the plugin or the device does.

    The step gets ``deadline`` or its own ``timeout_s``, whichever is sooner; register access
    through its context ends at that deadline. With ``isolate`` (the default) the body runs in
    a daemon thread and the caller waits at most the remaining time plus ``grace_s``: a body
    stuck outside its context (a sleep, a loop) is abandoned and its context revoked, so it can
    touch no register afterwards. ``bars`` may be None for a dry run, which touches nothing.
    """
    clock = deadline.clock
    start = clock()

    def result(outcome: str, message: str, ctx: StepContext | None = None) -> StepResult:
        r = StepResult(step.plugin, step.addr, step.phase, step.name, step.why, outcome,
                       message, elapsed_s=max(0.0, clock() - start))
        if ctx is not None:
            r.accesses, r.dropped, r.notes = list(ctx.accesses), ctx.dropped, list(ctx.notes)
            if step.phase == SAVE and ctx.ext and outcome in (OK, PLANNED):
                r.ext = {"v": step.ext_version, **ctx.ext}
        return r

    if step.problem is not None:
        return result(FAILED, step.problem)
    if step.body is None:
        return result(PLANNED if dry_run else OK, "nothing to do")
    limit = step.timeout_s if step.timeout_s is not None else Plugin.step_timeout_s
    bound = deadline.within(limit)
    ctx = StepContext(step, bars, bound, dry_run=dry_run, sleep=sleep)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["message"] = step.body(ctx) if step.body else None
        except BaseException as e:  # noqa: BLE001 - contained: classified and reported below
            box["error"] = e

    if isolate:
        if not _run_isolated(target, bound.remaining() + grace_s,
                             f"handoff-plugin-{step.plugin}-{step.addr}"):
            ctx.revoke()
            return result(TIMEOUT, f"{step.label} did not return within its bound of "
                                   f"{limit:g} s: abandoned, its register access revoked",
                          ctx)
    else:
        target()
        if isinstance(box.get("error"), KeyboardInterrupt):
            raise box["error"]
    err = box.get("error")
    if err is not None:
        outcome, message = _classify(err, step)
        return result(outcome, message, ctx)
    message = box.get("message") or "done"
    if not isinstance(message, str):
        message = str(message)
    r = result(PLANNED if dry_run else OK, message, ctx)
    if bound.expired() and not dry_run:
        r.notes.append(f"ran {clock() - bound.at:.3g} s past its bound")
    return r


class _Worker:
    """A daemon thread that runs step bodies one at a time, handed over through a lock.

    Starting a thread per step made every step wait for a new thread to be scheduled
    (``Thread.start()`` blocks until it runs): 0.35-2.5 ms each, hundreds of steps per
    restore. A worker instead waits on its ``_go`` lock between steps. One that is still
    running a body when the caller's wait ends is *abandoned*: it is never given another job
    and ends once the stuck body returns (if ever; it is a daemon thread).
    """

    __slots__ = ("_go", "_job", "abandoned", "thread")

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()  # released by run() when a job is there
        self._job: tuple[Callable[[], None], Any] | None = None
        self.abandoned = False
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name="handoff-plugin-worker")
        self.thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            job, self._job = self._job, None
            if job is None:
                return  # abandoned while waiting for a job
            fn, done = job
            try:
                fn()  # contains whatever the body raises (run_step's target)
            finally:
                done.release()
            if self.abandoned:
                return

    def run(self, fn: Callable[[], None], timeout: float, name: str) -> bool:
        """Run ``fn`` here; True if it returned within ``timeout`` seconds. False: it is
        still running, and this worker is abandoned."""
        done = threading.Lock()
        done.acquire()
        self.thread.name = name
        self._job = (fn, done)
        self._go.release()
        if timeout < threading.TIMEOUT_MAX:
            finished = done.acquire(timeout=max(0.0, timeout))
        else:  # an unbounded step (Thread.join would raise OverflowError here)
            finished = done.acquire()
        if not finished:
            self.abandoned = True
            try:
                self._go.release()  # a thread back at _go.acquire() wakes to no job and ends
            except RuntimeError:
                pass  # it has not taken the job yet: it ends after running it
        return finished


_idle: list[_Worker] = []
_idle_lock = threading.Lock()


def _run_isolated(fn: Callable[[], None], timeout: float, name: str) -> bool:
    """Run ``fn`` in an idle worker thread (a new one if none is idle, e.g. the last one was
    abandoned or another thread is running steps too); True if it returned in time."""
    with _idle_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
    if not worker.run(fn, timeout, name):
        return False
    worker.thread.name = "handoff-plugin-worker"
    with _idle_lock:
        _idle.append(worker)
    return True


def _forget_workers() -> None:
    """After fork(): the parent's worker threads do not exist in the child."""
    global _idle_lock
    _idle.clear()
    _idle_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


class PluginRun(Slots):
    """Every step result of one phase over a set of devices, and the registry's problems."""

    __slots__ = ("dry_run", "phase", "problems", "results")
    phase: str
    dry_run: bool
    results: list[StepResult]
    problems: list[LoadProblem]

    def __init__(self, phase: str, dry_run: bool, results: list[StepResult] | None = None,
                 problems: list[LoadProblem] | None = None) -> None:
        self.phase = phase
        self.dry_run = dry_run
        self.results = [] if results is None else results
        self.problems = [] if problems is None else problems

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def for_device(self, addr: str) -> list[StepResult]:
        return [r for r in self.results if r.addr == addr]

    def ext(self, addr: str) -> dict[str, dict[str, Any]]:
        """The ext sections the save steps of one device recorded, by plugin name."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.for_device(addr):
            if r.ext is not None:
                out.setdefault(r.plugin, {}).update(r.ext)
        return out

    def to_json(self, max_accesses: int | None = None) -> dict[str, Any]:
        return {"phase": self.phase, "dry_run": self.dry_run,
                "results": [r.to_json(max_accesses) for r in self.results],
                "problems": [p.to_json() for p in self.problems]}


def apply_ext(devices: Iterable[PciDevice], run: PluginRun) -> None:
    """Store what a save run recorded in each device's ``ext`` map (payload.cddl ``ext``)."""
    for d in devices:
        for name, section in run.ext(d.addr).items():
            d.ext[name] = section


def run_plugins(devices: Iterable[PciDevice], phase: str, *,
                registry: Registry | None = None, tree: SysfsTree | None = None,
                saved: Mapping[str, PciDevice] | None = None, dry_run: bool = False,
                budget_s: float | None = None, refuse_bars: str | None = None,
                bars_for: BarsFor | None = None, clock: Clock = time.monotonic,
                sleep: Sleep = time.sleep, isolate: bool = True,
                grace_s: float = GRACE_S, allow_bound: bool = False,
                selections: Mapping[str, Selection] | None = None) -> PluginRun:
    """Run ``phase`` of every matching plugin on ``devices``, in the order given.

    ``saved`` maps addresses to the record's devices (their ext sections become the plugins'
    state). ``budget_s`` bounds the whole phase: steps that would start after it ran out end
    ``timeout`` without touching anything. ``refuse_bars`` (e.g. "kernel lockdown (integrity)
    refuses BAR mapping") makes every register access a refusal without asking the kernel.
    Once a step of a plugin does not end ok, that plugin's later steps on the same device are
    not attempted (``refused``); other plugins still run. BARs are opened from ``tree``
    (default /sys) read-only in the save and verify phases; ``bars_for(device, writable)``
    overrides how. Devices with a driver bound in the running kernel get no writing phase:
    their steps are refused (the same refusal mmap gives when the driver claimed the BAR)
    unless ``allow_bound``. ``selections`` maps addresses to ``registry.select(device)`` made
    earlier (a plan's), so plugins' ``accepts`` are not asked again.
    """
    reg = registry if registry is not None else default_registry()
    run = PluginRun(phase, dry_run, problems=list(reg.problems))
    overall = Deadline.after(budget_s, clock) if budget_s is not None else Deadline.never(clock)
    writable = phase not in READ_ONLY_PHASES
    sysfs = tree or SysfsTree()
    for dev in devices:
        steps = steps_for(dev, phase, saved=(saved or {}).get(dev.addr), registry=reg,
                          selection=(selections or {}).get(dev.addr))
        if not steps:
            continue
        bars: BarSource | None = None
        if not dry_run:
            if refuse_bars is not None:
                bars = RefusedBars(refuse_bars)
            elif bars_for is not None:
                bars = bars_for(dev, writable)
            else:
                bars = SysfsBars(sysfs, dev.addr, writable=writable)
        stopped: dict[str, str] = {}
        if writable and dev.driver and not allow_bound:
            # mmap fails with EINVAL for a driver that claimed its region; one that did not
            # must not have its device reset underneath it either.
            for p in dict.fromkeys(s.plugin for s in steps):
                stopped[p] = f"{dev.addr}: {CLAIMED_MESSAGE} (bound to {dev.driver})"
        try:
            for step in steps:
                if step.plugin in stopped:
                    why = stopped[step.plugin]
                    run.results.append(_skipped(step, REFUSED, why if "bound to" in why
                                                else "not attempted: " + why))
                    continue
                if overall.expired():
                    run.results.append(_skipped(step, TIMEOUT, "not started: the "
                                                f"{phase} phase's budget of {budget_s:g} s "
                                                "ran out"))
                    continue
                r = run_step(step, bars, overall, dry_run=dry_run, sleep=sleep,
                             isolate=isolate, grace_s=grace_s)
                # Side effects of reaching the BARs (Memory Space on for the step, and off
                # again) are operations of this step: reported with before and after.
                end = getattr(bars, "end_step", None)
                if end is not None:
                    r.notes.extend(end())
                run.results.append(r)
                if not r.ok:
                    stopped[step.plugin] = f"{r.label} ended {r.outcome}"
        finally:
            if bars is not None:
                bars.close()
    return run


def _skipped(step: PluginStep, outcome: str, message: str) -> StepResult:
    return StepResult(step.plugin, step.addr, step.phase, step.name, step.why, outcome, message)
