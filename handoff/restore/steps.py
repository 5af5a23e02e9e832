"""The units of a restore plan: config-space and sysfs steps, plugin steps, and the passes
they run in.

A :class:`Step` is one config write, sysfs reset or remove + rescan on one device; a
:class:`PluginOp` is one device-plugin step (handoff.plugins) with the register accesses it
made or would make. :data:`PASSES` is the engine's order (docs/plugins.md "Phases and
ordering"); the kernel functions each pass follows are cited in plan.py and configplan.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handoff._slots import Slots

if TYPE_CHECKING:  # pragma: no cover
    from handoff.plugins.api import Access, StepResult

# Config / sysfs passes.
QUIESCE_PHASE, RESET_PHASE, RESCAN_PHASE, RESTORE_PHASE = "quiesce", "reset", "rescan", "restore"
WRITE, DO_RESET, DO_RESCAN, SKIP_OP, REFUSE = "write", "reset", "rescan", "skip", "refuse"
DO_DISABLE = "disable"  # sysfs enable 1 then 0: the kernel clears Bus Master itself

# Plugin phases (handoff.plugins.api names them the same).
P_SAVE, P_QUIESCE, P_RESET, P_RESTORE, P_VERIFY = "save", "quiesce", "reset", "restore", "verify"
PLUGIN_WRITING = (P_QUIESCE, P_RESET, P_RESTORE)

CONFIG, PLUGIN = "config", "plugin"
UP, DOWN = "bottom-up", "top-down"  # below a bridge before it / a bridge before its devices

# The engine's order. Each entry: (kind, phase, device order, what it does).
PASSES: tuple[tuple[str, str, str, str], ...] = (
    (PLUGIN, P_SAVE, DOWN, "plugin save: read what the crashed kernel left (no writes)"),
    (CONFIG, QUIESCE_PHASE, UP, "config quiesce: Bus Master off, INTx Disable on"),
    (PLUGIN, P_QUIESCE, UP, "plugin quiesce: stop the device's own engines"),
    (CONFIG, RESET_PHASE, DOWN, "sysfs reset"),
    (PLUGIN, P_RESET, DOWN, "plugin reset (the only reset where the kernel has none)"),
    (CONFIG, RESCAN_PHASE, UP, "remove, then one bus rescan (lockdown fallback)"),
    (CONFIG, RESTORE_PHASE, DOWN, "config restore (bridges first; COMMAND last)"),
    (PLUGIN, P_RESTORE, DOWN, "plugin restore"),
    (PLUGIN, P_VERIFY, DOWN, "plugin verify"),
)


class Step(Slots):
    """One operation on one device. For config writes, the value written is
    ``(current & keep) | (target & mask)``, verified by ``readback & mask == target & mask``."""

    __slots__ = (
        "addr",
        "after",
        "before",
        "current",
        "delay_ms",
        "detail",
        "instead",
        "keep",
        "mask",
        "method",
        "offset",
        "op",
        "owner",
        "phase",
        "readback",
        "reg",
        "resource",
        "result",
        "retries",
        "saved",
        "status",
        "target",
        "transient",
        "value",
        "why",
        "width",
    )
    addr: str
    phase: str
    reg: str
    offset: int
    width: int
    op: str  # write, reset, rescan, skip, refuse
    why: str
    current: int | None  # what the register should hold when the step runs
    saved: int | None  # the snapshot's value (restore phase)
    value: int | None  # what is written
    mask: int
    target: int
    keep: int
    retries: int
    delay_ms: int
    transient: bool  # an intermediate value of a sequence (bridge windows)
    method: str | None  # reset method; None with op reset: the kernel's choice
    detail: str  # decoded change: "Bus Master 1 -> 0, INTx Disable 0 -> 1"
    instead: bool  # a fallback for something the kernel refused
    owner: str | None  # a difference a kernel component owns (restore.owners): not written
    before: str | None  # a side effect's state before and after it ran (apply fills them):
    after: str | None  # COMMAND around sysfs enable 1/0 or a reset, BARs around a rescan
    resource: bool  # ... and it places a resource (BAR, ROM, bus numbers, window)
    # filled in by apply
    status: str  # planned, verified, unverified, done, refused, skipped
    result: str | None
    readback: int | None

    def __init__(self, addr: str, phase: str, reg: str, offset: int, width: int, op: str, why: str,
                 current: int | None = None, saved: int | None = None, value: int | None = None,
                 mask: int = 0, target: int = 0, keep: int = 0, retries: int = 0,
                 delay_ms: int = 0, transient: bool = False, method: str | None = None,
                 detail: str = "", instead: bool = False, status: str = "planned",
                 result: str | None = None, readback: int | None = None,
                 owner: str | None = None, resource: bool = False) -> None:
        self.addr = addr
        self.phase = phase
        self.reg = reg
        self.offset = offset
        self.width = width
        self.op = op
        self.why = why
        self.current = current
        self.saved = saved
        self.value = value
        self.mask = mask
        self.target = target
        self.keep = keep
        self.retries = retries
        self.delay_ms = delay_ms
        self.transient = transient
        self.method = method
        self.detail = detail
        self.instead = instead
        self.status = status
        self.result = result
        self.readback = readback
        self.owner = owner
        self.resource = resource
        self.before: str | None = None
        self.after: str | None = None

    @property
    def acts(self) -> bool:
        return self.op in (WRITE, DO_RESET, DO_RESCAN, DO_DISABLE)

    @property
    def is_config_write(self) -> bool:
        """A config-space register write, done or refused (what a restore wanted written)."""
        return self.op == WRITE or (self.op == REFUSE and self.phase in (
            QUIESCE_PHASE, RESTORE_PHASE) and self.width > 0)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"phase": self.phase, "reg": self.reg, "op": self.op}
        if self.op not in (DO_RESET, DO_RESCAN, DO_DISABLE) and self.width:
            d.update(off=self.offset, width=self.width)
        for k in ("current", "saved", "value", "readback"):
            v = getattr(self, k)
            if v is not None and self.width:
                d[k] = f"{v:#0{2 + 2 * self.width}x}"
        if self.method:
            d["method"] = self.method
        if self.retries:
            d["retries"] = self.retries
        if self.transient:
            d["transient"] = True
        if self.instead:
            d["instead"] = True
        if self.owner:
            d["owner"] = self.owner
        if self.resource:
            d["resource"] = True
        d["why"] = self.why
        if self.detail:
            d["detail"] = self.detail
        d["status"] = self.status
        if self.before is not None:
            d["before"] = self.before
        if self.after is not None:
            d["after"] = self.after
        if self.result:
            d["result"] = self.result
        return d


class PluginOp(Slots):
    """One device-plugin step in the plan: planned from the plugin's hook, then filled in from
    the :class:`~handoff.plugins.api.StepResult` a (dry or real) run gave."""

    __slots__ = (
        "accesses",
        "addr",
        "dropped",
        "elapsed_s",
        "ext",
        "notes",
        "phase",
        "plugin",
        "refused_by",
        "result",
        "status",
        "step",
        "why",
    )
    addr: str
    phase: str  # save, quiesce, reset, restore, verify
    plugin: str
    step: str
    why: str
    status: str  # planned, ok, failed, refused, timeout
    result: str | None  # the step's message, or why it was refused
    refused_by: str | None  # refused at plan time (lockdown): the kernel is not asked
    accesses: list[Access]
    dropped: int
    elapsed_s: float
    notes: list[str]
    ext: dict[str, Any] | None

    def __init__(self, addr: str, phase: str, plugin: str, step: str, why: str,
                 status: str = "planned", result: str | None = None, refused_by: str | None = None,
                 accesses: list[Access] | None = None, dropped: int = 0, elapsed_s: float = 0.0,
                 notes: list[str] | None = None, ext: dict[str, Any] | None = None) -> None:
        self.addr = addr
        self.phase = phase
        self.plugin = plugin
        self.step = step
        self.why = why
        self.status = status
        self.result = result
        self.refused_by = refused_by
        self.accesses = [] if accesses is None else accesses
        self.dropped = dropped
        self.elapsed_s = elapsed_s
        self.notes = [] if notes is None else notes
        self.ext = ext

    @property
    def label(self) -> str:
        return f"{self.plugin}:{self.step}"

    @property
    def writes(self) -> bool:
        return self.phase in PLUGIN_WRITING

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def take(self, r: StepResult, *, keep_refusal: bool = False) -> None:
        """Fill in what running the step gave. ``keep_refusal`` (a dry run): a step the plan
        refused (no BAR mapping) lists the accesses it wanted and stays refused, unless it
        made none: a step that needs no register (msix reads config space) is not refused."""
        self.accesses, self.dropped = list(r.accesses), r.dropped
        self.elapsed_s, self.notes, self.ext = r.elapsed_s, list(r.notes), r.ext
        if self.refused_by and (r.accesses or r.dropped) and (keep_refusal or
                                                                r.outcome == "refused"):
            self.status, self.result = "refused", self.refused_by if keep_refusal \
                else r.message
            return
        self.refused_by = None
        # A dry run's message is computed from assumed register values ("NVMe 0.0.0"): the
        # step's purpose and its access list say more.
        self.status, self.result = r.outcome, None if r.outcome == "planned" else r.message

    def to_json(self, max_accesses: int | None = None) -> dict[str, Any]:
        from handoff.plugins.api import accesses_json

        d: dict[str, Any] = {"phase": self.phase, "plugin": self.plugin, "step": self.step,
                             "why": self.why, "status": self.status}
        if self.result:
            d["result"] = self.result
        d.update(accesses_json(self.accesses, self.dropped, self.notes, self.ext, max_accesses))
        return d


__all__ = [
    "CONFIG",
    "DOWN",
    "DO_DISABLE",
    "DO_RESCAN",
    "DO_RESET",
    "PASSES",
    "PLUGIN",
    "PLUGIN_WRITING",
    "QUIESCE_PHASE",
    "REFUSE",
    "RESCAN_PHASE",
    "RESET_PHASE",
    "RESTORE_PHASE",
    "SKIP_OP",
    "UP",
    "WRITE",
    "PluginOp",
    "Step",
]
