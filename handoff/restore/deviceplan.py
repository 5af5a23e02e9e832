"""One device's part of a restore plan: what was decided for it, its steps (config and
sysfs, steps.py) and plugin steps, and the fallback when the kernel refused something.

plan.py makes them; pluginpass.py, resources.py, apply.py and report.py fill them in or read
them, which is why this type sits below them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handoff._slots import Slots
from handoff.devices.model import PciDevice
from handoff.restore import pciregs as R
from handoff.restore.fallback import Fallback
from handoff.restore.match import DeviceMatch
from handoff.restore.policy import Decision
from handoff.restore.steps import PluginOp, Step

if TYPE_CHECKING:  # pragma: no cover
    from handoff.plugins.registry import Selection


class DevicePlan(Slots):
    __slots__ = (
        "decision",
        "fallback",
        "match",
        "notes",
        "outcome",
        "plugin_notes",
        "plugin_ops",
        "plugins",
        "saved",
        "selection",
        "snapshot",
        "status",
        "steps",
        "why",
    )
    _repr_skip = ("selection",)
    _eq_skip = ("selection",)
    saved: PciDevice
    match: DeviceMatch
    decision: Decision
    status: str  # planned, nothing, skip, refused
    why: str
    steps: list[Step]
    snapshot: str | None  # "early" / "live" for restores
    notes: list[str]
    outcome: str | None  # set by apply: done, partial, failed, refused, nothing, skipped
    plugin_ops: list[PluginOp]
    plugins: list[str]  # plugins that took the device
    plugin_notes: list[str]
    fallback: Fallback | None
    # plugins.registry.Selection made while planning plugin steps; running them reuses it
    selection: Selection | None

    def __init__(self, saved: PciDevice, match: DeviceMatch, decision: Decision, status: str,
                 why: str, steps: list[Step] | None = None, snapshot: str | None = None,
                 notes: list[str] | None = None, outcome: str | None = None,
                 plugin_ops: list[PluginOp] | None = None, plugins: list[str] | None = None,
                 plugin_notes: list[str] | None = None, fallback: Fallback | None = None,
                 selection: Selection | None = None) -> None:
        self.saved = saved
        self.match = match
        self.decision = decision
        self.status = status
        self.why = why
        self.steps = [] if steps is None else steps
        self.snapshot = snapshot
        self.notes = [] if notes is None else notes
        self.outcome = outcome
        self.plugin_ops = [] if plugin_ops is None else plugin_ops
        self.plugins = [] if plugins is None else plugins
        self.plugin_notes = [] if plugin_notes is None else plugin_notes
        self.fallback = fallback
        self.selection = selection

    @property
    def addr(self) -> str:
        return self.saved.addr

    @property
    def depth(self) -> int:
        dev = self.match.current or self.saved
        return sum(1 for c in dev.path[:-1] if _is_addr(c))

    def active(self) -> list[Step]:
        return [s for s in self.steps if s.acts]

    def live_ops(self) -> list[PluginOp]:
        """Plugin steps that will run (not refused at plan time)."""
        return [o for o in self.plugin_ops if not o.refused_by]

    def to_json(self) -> dict[str, Any]:
        ids = self.saved.ids
        d: dict[str, Any] = {
            "addr": self.addr, "ids": ids.short(), "class": f"{ids.class_code:06x}",
            "name": R.class_name(ids.class_code), "driver": self.saved.driver,
            "action": self.decision.action, "decided_by": self.decision.why,
            "match": self.match.status, "status": self.status, "why": self.why}
        if self.match.reasons:
            d["match_reasons"] = self.match.reasons
        if self.snapshot:
            d["snapshot"] = self.snapshot
        if self.notes:
            d["notes"] = self.notes
        if self.outcome:
            d["outcome"] = self.outcome
        if self.fallback:
            d["fallback"] = self.fallback.to_json()
        d["steps"] = [s.to_json() for s in self.steps]
        if self.plugins or self.plugin_notes:
            d["plugins"] = self.plugins
        if self.plugin_notes:
            d["plugin_notes"] = self.plugin_notes
        if self.plugin_ops:
            d["plugin_steps"] = [o.to_json() for o in self.plugin_ops]
        return d


def _is_addr(s: str) -> bool:
    return len(s) == 12 and s[4] == ":" and s[7] == ":" and s[10] == "."


__all__ = ["DevicePlan"]
