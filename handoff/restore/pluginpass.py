"""Device plugins in a restore: which plugin steps each device gets, and running one phase.

The engine interleaves plugin phases with its config-space passes in the order of
docs/plugins.md (steps.PASSES). Which phases a device gets follows its action: every action but
``skip`` gets save, quiesce and verify; ``reset`` adds the plugin reset and ``restore-*`` the
plugin restore. The policy turns plugins off globally or per device (``plugins = false`` or a
list of names). Running goes through :func:`handoff.plugins.run_plugins`, which contains
whatever a plugin does (raises, hangs, is refused) and reports it as the step's outcome.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from handoff._slots import Slots
from handoff.plugins import Deadline, Registry, run_plugins, steps_for
from handoff.plugins.bar import Clock, Sleep
from handoff.plugins.runner import GRACE_S, BarsFor
from handoff.restore.policy import QUIESCE, RESET, RESTORE_EARLY, RESTORE_LIVE, Plugins
from handoff.restore.steps import P_QUIESCE, P_RESET, P_RESTORE, P_SAVE, P_VERIFY, PluginOp
from handoff.sysfs import SysfsTree
from handoff.sysfs import paths as _paths

if TYPE_CHECKING:  # pragma: no cover
    from handoff.restore.deviceplan import DevicePlan
    from handoff.sysfs.probe import Environment

_PHASES_FOR = {
    QUIESCE: (P_SAVE, P_QUIESCE, P_VERIFY),
    RESET: (P_SAVE, P_QUIESCE, P_RESET, P_VERIFY),
    RESTORE_EARLY: (P_SAVE, P_QUIESCE, P_RESTORE, P_VERIFY),
    RESTORE_LIVE: (P_SAVE, P_QUIESCE, P_RESTORE, P_VERIFY),
}


class PluginRuntime(Slots):
    """How plugin steps reach the devices: the sysfs tree their BARs are mapped from (or the
    ``bars_for`` seam tests put register models in), the clock and sleep bounded waits use,
    and ``budget_s``, one bound on all plugin steps of the run (None: each step's own)."""

    __slots__ = (
        "_deadline",
        "bars_for",
        "budget_s",
        "clock",
        "grace_s",
        "isolate",
        "sleep",
        "tree",
    )
    _repr_skip = ("_deadline",)
    tree: SysfsTree | None
    bars_for: BarsFor | None
    clock: Clock
    sleep: Sleep
    isolate: bool
    budget_s: float | None
    grace_s: float
    _deadline: Deadline | None

    def __init__(self, tree: SysfsTree | None = None, bars_for: BarsFor | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep, isolate: bool = True,
                 budget_s: float | None = None, grace_s: float = GRACE_S,
                 _deadline: Deadline | None = None) -> None:
        self.tree = tree
        self.bars_for = bars_for
        self.clock = clock
        self.sleep = sleep
        self.isolate = isolate
        self.budget_s = budget_s
        self.grace_s = grace_s
        self._deadline = _deadline

    def remaining(self) -> float | None:
        if self.budget_s is None:
            return None
        if self._deadline is None:
            self._deadline = Deadline.after(self.budget_s, self.clock)
        return self._deadline.remaining()


def allowed(registry: Registry, plugins: Plugins) -> Registry | None:
    """The registry a device's plugin setting leaves: all, none (None) or the named ones."""
    if plugins is True:
        return registry
    if plugins is False:
        return None
    names = set(plugins)
    return Registry([i for i in registry.plugins if i.name in names], registry.problems)


def plan_device(dp: DevicePlan, registry: Registry, env: Environment) -> None:
    """Fill ``dp.plugin_ops`` with the plugin steps its action calls for, refused at once when
    the kernel will not map BARs (the kernel is then never asked)."""
    phases = _PHASES_FOR.get(dp.decision.action, ())
    if not phases or dp.match.current is None:
        return
    setting = dp.decision.plugins
    reg = allowed(registry, setting)
    if reg is None:
        dp.plugin_notes.append(f"device plugins are off for this device ({_by(dp)})")
        return
    if not isinstance(setting, bool):
        missing = [n for n in setting if registry.get(n) is None]
        if missing:
            dp.plugin_notes.append(f"plugin(s) {', '.join(missing)} named by the policy are "
                                   "not installed (`handoff plugins` lists what is)")
    current = dp.match.current
    sel = dp.selection = reg.select(current)  # once: run_phase reuses it
    dp.plugins = [i.name for i in sel.accepted]
    dp.plugin_notes.extend(f"{n} declined: {why}" for n, why in sel.declined.items())
    refusal = env.bar_refusal()
    for phase in phases:
        for s in steps_for(current, phase, saved=dp.saved, registry=reg, selection=sel):
            why = s.why if s.problem is None else f"{s.why}: {s.problem}"
            op = PluginOp(dp.addr, phase, s.plugin, s.name, why)
            if refusal and s.problem is None:
                op.status, op.refused_by, op.result = "refused", refusal, refusal
            dp.plugin_ops.append(op)


def _by(dp: DevicePlan) -> str:
    r = dp.decision.rule
    if r is not None and r.plugins is not None:
        return f"policy rule {r.index}" + (f", line {r.line}" if r.line else "")
    return "policy plugins = false"


def run_phase(devices: Iterable[DevicePlan], phase: str, registry: Registry, rt: PluginRuntime,
              env: Environment, *, dry_run: bool, blocked: dict[str, str]) -> None:
    """Run ``phase`` on ``devices`` in the order given, one device at a time, and fill in
    each op. A device in ``blocked`` (addr -> why) gets its ops refused without running."""
    refusal = None if dry_run else env.bar_refusal()
    # Messages name sysfs files relative to the tree ("bus/pci/devices/.../resource0"): the
    # same in /sys and in a copy, and shorter in the report note.
    root = _paths.pathstr(rt.tree.root_dir) if rt.tree is not None else ""
    roots = sorted({f"{root}/", f"{os.path.realpath(root)}/"}, key=len,
                   reverse=True) if rt.tree is not None else []
    for dp in devices:
        ops = [o for o in dp.plugin_ops if o.phase == phase]
        if not ops or dp.match.current is None:
            continue
        if dp.addr in blocked:
            for o in ops:
                o.status, o.result = "refused", "not attempted: " + blocked[dp.addr]
            continue
        reg = allowed(registry, dp.decision.plugins)
        if reg is None:
            continue
        budget = rt.remaining()
        run = run_plugins([dp.match.current], phase, registry=reg, tree=rt.tree,
                          saved={dp.addr: dp.saved}, dry_run=dry_run, budget_s=budget,
                          refuse_bars=refusal, bars_for=rt.bars_for, clock=rt.clock,
                          sleep=rt.sleep, isolate=rt.isolate, grace_s=rt.grace_s,
                          selections=None if dp.selection is None else
                          {dp.addr: dp.selection})
        todo = list(ops)
        for r in run.results:
            op = next((o for o in todo if (o.plugin, o.step) == (r.plugin, r.step)), None)
            if op is None:  # the hook planned differently this time: report what ran
                op = PluginOp(dp.addr, phase, r.plugin, r.step, r.why)
                dp.plugin_ops.append(op)
            else:
                todo.remove(op)
            op.take(r, keep_refusal=dry_run)
            for prefix in roots:
                op.result = op.result and op.result.replace(prefix, "")


__all__ = ["PluginRuntime", "allowed", "plan_device", "run_phase"]
