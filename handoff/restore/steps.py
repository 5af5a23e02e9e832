"""The units of a restore plan: config-space and sysfs steps, plugin steps, and the passes
they run in.

A :class:`Step` is one config-space or sysfs operation on one device, of one type per kind:
:class:`ConfigWrite`, :class:`LeftAlone` (a difference not written), :class:`Reset`,
:class:`Rescan` (remove + rescan) and :class:`Disable` (sysfs enable 1/0); a
:class:`PluginOp` is one device-plugin step (handoff.plugins) with the register accesses it
made or would make. :data:`PASSES` is the engine's order (docs/plugins.md "Phases and
ordering"); the kernel functions each pass follows are cited in plan.py and configplan.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

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
    """One config-space or sysfs operation on one device: the base of :class:`ConfigWrite`,
    :class:`LeftAlone`, :class:`Reset`, :class:`Rescan` and :class:`Disable`, which the
    executor (apply.py) dispatches on.

    ``op`` is what the step does: its type's :attr:`ACTION` while it is to act, ``refuse``
    when the kernel refused it (lockdown, no reset method) and ``skip`` when it is left out;
    ``status`` says how it went (planned, verified, unverified, done, refused, skipped).
    Fields only some types carry (``owner``, ``resource``, ``instead``) read as "not" here, so
    code that looks over all of a device's steps can ask any of them."""

    __slots__ = ("addr", "op", "phase", "reg", "result", "status", "why")
    ACTION: ClassVar[str] = ""  # the op of a step that acts; "" for one that never does
    addr: str
    phase: str
    reg: str  # the register, or what the sysfs operation is ("reset", "remove + rescan")
    op: str  # ACTION, REFUSE or SKIP_OP
    why: str
    status: str  # planned, verified, unverified, done, refused, skipped
    result: str | None  # what running it gave (apply fills it)

    def __init__(self, addr: str, phase: str, reg: str, why: str, op: str | None = None
                 ) -> None:
        self.addr = addr
        self.phase = phase
        self.reg = reg
        self.op = self.ACTION if op is None else op
        self.why = why
        self.status = _STATUS.get(self.op, "planned")
        self.result = None

    @property
    def acts(self) -> bool:
        """It will do something to the device (not refused, not left out)."""
        return bool(self.ACTION) and self.op == self.ACTION

    @property
    def is_config_write(self) -> bool:
        """A config-space register write, done or refused (what a restore wanted written)."""
        return False

    @property
    def owner(self) -> str | None:
        """The kernel component that owns a difference left alone (restore.owners)."""
        return None

    @property
    def resource(self) -> bool:
        """It concerns a resource the kernel placed (BAR, ROM, bus numbers, window)."""
        return False

    @property
    def instead(self) -> bool:
        """A fallback for something the kernel refused."""
        return False

    def refuse(self, why: str) -> None:
        """The kernel does not permit it: planned as refused, never attempted."""
        self.op, self.status, self.why = REFUSE, "refused", why

    def skip(self, why: str) -> None:
        """Left out: something else does its job."""
        self.op, self.status, self.why = SKIP_OP, "skipped", why

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"phase": self.phase, "reg": self.reg, "op": self.op}
        d.update(self._json_fields())
        d["why"] = self.why
        detail = self._json_detail()
        if detail:
            d["detail"] = detail
        d["status"] = self.status
        d.update(self._json_effect())
        if self.result:
            d["result"] = self.result
        return d

    # The parts of to_json a type adds: its own fields (between "op" and "why"), a decoded
    # change, and a side effect's state before and after.
    def _json_fields(self) -> dict[str, Any]:
        return {}

    def _json_detail(self) -> str:
        return ""

    def _json_effect(self) -> dict[str, Any]:
        return {}


_STATUS = {REFUSE: "refused", SKIP_OP: "skipped"}


class RegisterStep(Step):
    """A step about one config-space register whose value now differs from the one wanted:
    :class:`ConfigWrite` writes it, :class:`LeftAlone` reports why it does not."""

    __slots__ = ("current", "detail", "offset", "saved", "width")
    offset: int
    width: int
    current: int | None  # what the register should hold when the step runs
    saved: int | None  # the snapshot's value (restore phase)
    detail: str  # decoded change: "Bus Master 1 -> 0, INTx Disable 0 -> 1"

    def __init__(self, addr: str, phase: str, reg: str, offset: int, width: int, why: str,
                 current: int | None = None, saved: int | None = None, detail: str = "",
                 op: str | None = None) -> None:
        super().__init__(addr, phase, reg, why, op)
        self.offset = offset
        self.width = width
        self.current = current
        self.saved = saved
        self.detail = detail

    def _hex(self, d: dict[str, Any], **values: int | None) -> None:
        for k, v in values.items():
            if v is not None and self.width:
                d[k] = f"{v:#0{2 + 2 * self.width}x}"

    def _json_detail(self) -> str:
        return self.detail


class ConfigWrite(RegisterStep):
    """A config register write: ``(current & keep) | (target & mask)`` is written and
    verified by ``readback & mask == target & mask``, retried up to ``retries`` times."""

    __slots__ = (
        "delay_ms",
        "keep",
        "mask",
        "readback",
        "retries",
        "target",
        "transient",
        "value",
    )
    ACTION = WRITE
    value: int | None  # what is written (apply: what was)
    mask: int
    target: int
    keep: int
    retries: int
    delay_ms: int  # wait after it (D3hot -> D0)
    transient: bool  # an intermediate value of a sequence (bridge windows)
    readback: int | None  # apply fills it

    def __init__(self, addr: str, phase: str, reg: str, offset: int, width: int, why: str,
                 current: int | None, saved: int | None, value: int | None, mask: int,
                 target: int, keep: int, retries: int = 0, delay_ms: int = 0,
                 transient: bool = False, detail: str = "") -> None:
        super().__init__(addr, phase, reg, offset, width, why, current, saved, detail)
        self.value = value
        self.mask = mask
        self.target = target
        self.keep = keep
        self.retries = retries
        self.delay_ms = delay_ms
        self.transient = transient
        self.readback = None

    @property
    def is_config_write(self) -> bool:
        return self.op == WRITE or (self.op == REFUSE and self.phase in (
            QUIESCE_PHASE, RESTORE_PHASE) and self.width > 0)

    def _json_fields(self) -> dict[str, Any]:
        d: dict[str, Any] = {"off": self.offset, "width": self.width} if self.width else {}
        self._hex(d, current=self.current, saved=self.saved, value=self.value,
                  readback=self.readback)
        if self.retries:
            d["retries"] = self.retries
        if self.transient:
            d["transient"] = True
        return d


class LeftAlone(RegisterStep):
    """A register difference that is not written, and why: read-only or write-1-to-clear
    bits, a field a kernel component owns (``owner``; ``resource`` when it places one), a
    register left for the driver, a device already quiet."""

    __slots__ = ("owner", "resource")
    owner: str | None
    resource: bool

    def __init__(self, addr: str, phase: str, reg: str, offset: int, width: int, why: str,
                 current: int | None = None, saved: int | None = None, detail: str = "",
                 owner: str | None = None, resource: bool = False) -> None:
        super().__init__(addr, phase, reg, offset, width, why, current, saved, detail,
                         op=SKIP_OP)
        self.owner = owner
        self.resource = resource

    def _json_fields(self) -> dict[str, Any]:
        d: dict[str, Any] = {"off": self.offset, "width": self.width} if self.width else {}
        self._hex(d, current=self.current, saved=self.saved)
        if self.owner:
            d["owner"] = self.owner
        if self.resource:
            d["resource"] = True
        return d


class SysfsStep(Step):
    """A sysfs operation (reset, remove + rescan, enable 1/0): the kernel does it, and its
    side effect is reported as the state ``before`` and ``after`` it (apply fills them)."""

    __slots__ = ("after", "before", "instead")
    instead: bool
    before: str | None
    after: str | None

    def __init__(self, addr: str, phase: str, reg: str, why: str, op: str | None = None,
                 instead: bool = False) -> None:
        super().__init__(addr, phase, reg, why, op)
        self.instead = instead
        self.before = None
        self.after = None

    def _json_fields(self) -> dict[str, Any]:
        return {"instead": True} if self.instead else {}

    def _json_effect(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.before is not None:
            d["before"] = self.before
        if self.after is not None:
            d["after"] = self.after
        return d


class Reset(SysfsStep):
    """A function reset through sysfs ``reset`` with ``method`` written to ``reset_method``
    first (None: the kernel picks)."""

    __slots__ = ("method",)
    ACTION = DO_RESET
    method: str | None

    def __init__(self, addr: str, why: str, method: str | None = None, *,
                 op: str | None = None, instead: bool = False) -> None:
        super().__init__(addr, RESET_PHASE, "reset", why, op, instead)
        self.method = method

    def _json_fields(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method} if self.method else {}
        return {**d, **super()._json_fields()}


class Rescan(SysfsStep):
    """Remove the function (a bridge: its subtree), then one bus rescan; ``resource``: it
    hands written BARs/windows to the kernel (kernel_owned = "rescan"), which is checked."""

    __slots__ = ("resource",)
    ACTION = DO_RESCAN
    resource: bool

    def __init__(self, addr: str, why: str, *, op: str | None = None, instead: bool = False,
                 resource: bool = False) -> None:
        super().__init__(addr, RESCAN_PHASE, "remove + rescan", why, op, instead)
        self.resource = resource

    def _json_fields(self) -> dict[str, Any]:
        d = super()._json_fields()
        if self.resource:
            d["resource"] = True
        return d


class Disable(SysfsStep):
    """Bus Master off by the kernel: sysfs ``enable`` 1, then 0; judged by reading COMMAND
    (``current`` before, ``readback`` after; ``detail`` the change)."""

    __slots__ = ("current", "detail", "readback")
    ACTION = DO_DISABLE
    current: int | None
    readback: int | None
    detail: str

    def __init__(self, addr: str, why: str, *, instead: bool = False) -> None:
        super().__init__(addr, QUIESCE_PHASE, "COMMAND", why, instead=instead)
        self.current = None
        self.readback = None
        self.detail = ""

    def _json_detail(self) -> str:
        return self.detail


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
    "ConfigWrite",
    "Disable",
    "LeftAlone",
    "PluginOp",
    "RegisterStep",
    "Rescan",
    "Reset",
    "Step",
    "SysfsStep",
]
