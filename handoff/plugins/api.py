"""The plugin contract: what a device plugin declares (match rules, hooks) and what its steps
report (register accesses and an outcome).

This is a contract with third-party code: a plugin written against ``API_VERSION`` 1 keeps
working as long as it stays 1. Adding optional fields or hooks does not bump it; changing the
meaning of a field, a hook's arguments or a step body's contract does.

A plugin is planned and run in two stages, so a dry run can show what it would do:

1. a *hook* (``save``, ``quiesce``, ``reset``, ``restore``, ``verify``) looks only at the device
   model (ids, config snapshot, the plugin's saved ext section) and returns ``PluginStep``\\ s;
2. the runner calls each step's *body* with a :class:`~handoff.plugins.context.StepContext`,
   the only way a body touches the device (register reads, writes and bounded polls through
   the device's BARs), so every access is logged, bounded in time and can be revoked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from handoff._slots import Frozen, Slots
from handoff.devices.patterns import (
    ClassPattern,
    IdPattern,
    parse_class,
    parse_id,
)
from handoff.errors import HandoffError

_set = object.__setattr__

if TYPE_CHECKING:  # pragma: no cover
    from handoff.devices.model import PciDevice
    from handoff.plugins.context import StepContext

API_VERSION = 1

SAVE, QUIESCE, RESET, RESTORE, VERIFY = "save", "quiesce", "reset", "restore", "verify"
PHASES = (SAVE, QUIESCE, RESET, RESTORE, VERIFY)
READ_ONLY_PHASES = (SAVE, VERIFY)  # steps of these phases may not write a register

OK, FAILED, REFUSED, TIMEOUT, PLANNED = "ok", "failed", "refused", "timeout", "planned"
NO_RESPONSE = "no-response"  # a read the device cannot have answered: never "ok"
OUTCOMES = (OK, FAILED, REFUSED, TIMEOUT, PLANNED, NO_RESPONSE)

# An ext-section key (payload.cddl ``ext``): lower case, so two plugins cannot differ by case.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class PluginError(HandoffError):
    """A plugin step could not do what it set out to do."""


class StepFailed(PluginError):
    """The device did not behave as the step needs (raised by step bodies)."""


class NoResponse(StepFailed):
    """A read the device cannot have answered: all ones, or zero from a register that cannot
    be zero (e1000 STATUS, NVMe CAP/VS, virtio num_queues). A device that is not decoding
    (Memory Space off: QEMU then returns 0) or is gone reads so; the step's outcome is
    ``no-response``, never ``ok``."""


class StepTimeout(PluginError):
    """A bounded wait ran out, or the step ran past its time bound."""


class StepAbandoned(StepTimeout):
    """The runner gave up on this step; its register access has been revoked."""


class WriteRefused(PluginError):
    """A save or verify step tried to write a register: those phases only read."""


# --- match rules --------------------------------------------------------------------------


# One grammar for ids and classes (handoff.devices.patterns); the plugin API's names stay.
IdRule = IdPattern
ClassRule = ClassPattern


class Match(Frozen):
    """Which devices a plugin is offered: one matching rule is enough. ``ids`` and ``classes``
    compare the device's ids; ``caps`` are standard capability ids (PCI 3.0 §6.7) of which the
    device's config snapshot must hold one; ``any_device`` offers every device. The plugin's
    ``accepts`` then decides on a device it was offered."""

    __slots__ = ("any_device", "caps", "classes", "ids")
    ids: tuple[IdRule, ...]
    classes: tuple[ClassRule, ...]
    caps: tuple[int, ...]
    any_device: bool

    def __init__(self, ids: tuple[IdRule, ...] = (), classes: tuple[ClassRule, ...] = (),
                 caps: tuple[int, ...] = (), any_device: bool = False) -> None:
        _set(self, "ids", ids)
        _set(self, "classes", classes)
        _set(self, "caps", caps)
        _set(self, "any_device", any_device)

    @classmethod
    def of(cls, ids: Sequence[str] = (), classes: Sequence[str] = (), caps: Sequence[int] = (),
           any_device: bool = False) -> Match:
        return cls(tuple(parse_id(i) for i in ids), tuple(parse_class(c) for c in classes),
                   tuple(caps), any_device)

    def matches(self, device: PciDevice) -> bool:
        if self.any_device:
            return True
        ids = device.ids
        if any(r.matches(ids.vendor, ids.device) for r in self.ids) or \
                any(r.matches(ids.class_code) for r in self.classes):
            return True
        if self.caps:
            from handoff.devices.capabilities import walk_standard

            return any(c.id in self.caps for c in walk_standard(device.live.data).caps)
        return False

    def describe(self) -> list[str]:
        """One string per rule: ``"id 8086:100e"``, ``"class 010802"``, ``"capability 0x11"``,
        ``"any device"``."""
        if self.any_device:
            return ["any device"]
        return ([f"id {r}" for r in self.ids] + [f"class {r}" for r in self.classes]
                + [f"capability {c:#04x}" for c in self.caps])


# --- steps and results ----------------------------------------------------------------------

StepBody = Callable[["StepContext"], "str | None"]


class PluginStep(Slots):
    """One planned unit of a plugin's work on one device.

    A hook builds it with ``name``, ``why``, ``body`` and optionally ``timeout_s`` (None: the
    plugin's ``step_timeout_s``) and ``assume``: the values register reads return in a dry run,
    keyed by ``(bar, offset)`` (a dry run never reads the device; say what the step is for, e.g.
    "CC.EN is 1"). The runner fills in ``plugin``, ``addr``, ``phase``, ``device`` and ``state``
    (the plugin's saved ext section, or None) itself. ``problem`` set means planning failed:
    running the step reports it and touches nothing.
    """

    __slots__ = (
        "addr",
        "assume",
        "body",
        "device",
        "ext_version",
        "name",
        "phase",
        "plugin",
        "problem",
        "state",
        "timeout_s",
        "why",
    )
    name: str
    why: str
    body: StepBody | None
    timeout_s: float | None
    assume: Mapping[tuple[int, int], int]
    plugin: str
    addr: str
    phase: str
    device: PciDevice | None
    state: Mapping[str, Any] | None
    ext_version: int
    problem: str | None

    def __init__(self, name: str, why: str, body: StepBody | None, timeout_s: float | None = None,
                 assume: Mapping[tuple[int, int], int] | None = None, plugin: str = "",
                 addr: str = "", phase: str = "", device: PciDevice | None = None,
                 state: Mapping[str, Any] | None = None, ext_version: int = 1,
                 problem: str | None = None) -> None:
        self.name = name
        self.why = why
        self.body = body
        self.timeout_s = timeout_s
        self.assume = {} if assume is None else assume
        self.plugin = plugin
        self.addr = addr
        self.phase = phase
        self.device = device
        self.state = state
        self.ext_version = ext_version
        self.problem = problem

    @property
    def label(self) -> str:
        return f"{self.plugin}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"plugin": self.plugin, "addr": self.addr, "phase": self.phase,
                             "step": self.name, "why": self.why, "timeout_s": self.timeout_s}
        if self.problem:
            d["problem"] = self.problem
        return d


def _hex(v: int | None, width: int) -> str | None:
    return None if v is None else f"{v:#0{2 + 2 * width}x}"


class Access(Frozen):
    """One register access: ``op`` is read, write or poll (a bounded series of reads, logged
    once with the last value read); ``value`` is what was read or written (None when a dry run
    did not read); ``result`` says what happened ("ok", "not written (dry run)", ...)."""

    __slots__ = ("bar", "name", "offset", "op", "result", "value", "width")
    bar: int
    offset: int
    width: int
    op: str
    value: int | None
    result: str
    name: str | None

    def __init__(self, bar: int, offset: int, width: int, op: str, value: int | None, result: str,
                 name: str | None = None) -> None:
        _set(self, "bar", bar)
        _set(self, "offset", offset)
        _set(self, "width", width)
        _set(self, "op", op)
        _set(self, "value", value)
        _set(self, "result", result)
        _set(self, "name", name)

    def as_tuple(self) -> tuple[int, int, int, str, int | None, str]:
        return (self.bar, self.offset, self.width, self.op, self.value, self.result)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"bar": self.bar, "off": f"{self.offset:#x}", "width": self.width,
                             "op": self.op, "value": _hex(self.value, self.width),
                             "result": self.result}
        if self.name:
            d["reg"] = self.name
        return d

    def __str__(self) -> str:
        reg = self.name or f"{self.offset:#x}"
        val = _hex(self.value, self.width) or "?"
        return f"BAR{self.bar}+{self.offset:#x} {reg} {self.op} {val}: {self.result}"


class StepResult(Slots):
    """What running one :class:`PluginStep` did. ``outcome`` is one of :data:`OUTCOMES`; a dry
    run's steps end ``planned``. ``ext`` is the section a save step recorded (with its "v")."""

    __slots__ = (
        "accesses",
        "addr",
        "dropped",
        "elapsed_s",
        "ext",
        "message",
        "notes",
        "outcome",
        "phase",
        "plugin",
        "step",
        "why",
    )
    plugin: str
    addr: str
    phase: str
    step: str
    why: str
    outcome: str
    message: str
    accesses: list[Access]
    dropped: int  # accesses not logged (the log is capped per step)
    elapsed_s: float
    ext: dict[str, Any] | None
    notes: list[str]

    def __init__(self, plugin: str, addr: str, phase: str, step: str, why: str, outcome: str,
                 message: str, accesses: list[Access] | None = None, dropped: int = 0,
                 elapsed_s: float = 0.0, ext: dict[str, Any] | None = None,
                 notes: list[str] | None = None) -> None:
        self.plugin = plugin
        self.addr = addr
        self.phase = phase
        self.step = step
        self.why = why
        self.outcome = outcome
        self.message = message
        self.accesses = [] if accesses is None else accesses
        self.dropped = dropped
        self.elapsed_s = elapsed_s
        self.ext = ext
        self.notes = [] if notes is None else notes

    @property
    def ok(self) -> bool:
        return self.outcome in (OK, PLANNED)

    @property
    def label(self) -> str:
        return f"{self.plugin}:{self.step}"

    def line(self) -> str:
        """A short line for the restore report: ``nvme:disable-controller ok``, or with the
        message when it did not go well."""
        text = f"{self.label} {self.outcome}"
        if self.outcome not in (OK, PLANNED) and self.message:
            return f"{text}: {self.message}"
        return text

    def to_json(self, max_accesses: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "plugin": self.plugin, "addr": self.addr, "phase": self.phase, "step": self.step,
            "why": self.why, "outcome": self.outcome, "message": self.message,
            "elapsed_s": round(self.elapsed_s, 6)}
        d.update(accesses_json(self.accesses, self.dropped, self.notes, self.ext, max_accesses))
        return d


def accesses_json(accesses: list[Access], dropped: int, notes: list[str],
                  ext: dict[str, Any] | None, max_accesses: int | None) -> dict[str, Any]:
    """What a step did, as JSON: its accesses (at most ``max_accesses``, the rest counted in
    ``more_accesses`` with those the step's log dropped), notes and ext section. Shared by a
    run's :class:`StepResult` and the restore plan's plugin operations."""
    acc = accesses if max_accesses is None else accesses[:max_accesses]
    d: dict[str, Any] = {"accesses": [a.to_json() for a in acc]}
    more = dropped + len(accesses) - len(acc)
    if more:
        d["more_accesses"] = more
    if notes:
        d["notes"] = list(notes)
    if ext is not None:
        d["ext"] = ext
    return d


# --- the plugin base class ------------------------------------------------------------------


class Plugin:
    """Base class of every device plugin (built-in or from the ``handoff.plugins`` entry-point
    group). Subclasses set the class attributes and override the hooks they implement; a hook
    returns the steps for one device and never touches the device itself.

    ``name`` is the key of the plugin's section in a device's ``ext`` map, so it is unique
    among installed plugins. ``ext_version`` is the section's ``"v"``: bump it when a key
    changes meaning or a key a restore relies on goes away (adding keys does not bump it; readers
    ignore keys they do not know). ``reads_ext`` says which versions a hook can use; others reach
    the hook as ``state=None``. ``order`` sorts plugins that match the same device (lower runs
    first; device-specific plugins use the default 50, generic ones such as msix run later).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    match: ClassVar[Match] = Match()
    requires: ClassVar[str] = ""  # what accepts() checks beyond ``match``, in words
    api_version: ClassVar[int] = API_VERSION
    ext_version: ClassVar[int] = 1
    order: ClassVar[int] = 50
    step_timeout_s: ClassVar[float] = 5.0

    def accepts(self, device: PciDevice) -> str | None:
        """None to take a device ``match`` offered, else why not (shown by ``handoff plugins``)."""
        return None

    def reads_ext(self, v: int) -> bool:
        return v == self.ext_version

    def save(self, device: PciDevice,
             state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        """Steps that read device state into the ext section (``ctx.record``); read only."""
        return ()

    def quiesce(self, device: PciDevice,
                state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        """Steps that stop the device's own engines (queues, interrupts, DMA it would start)."""
        return ()

    def reset(self, device: PciDevice,
              state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        """Steps that reset the device through its registers."""
        return ()

    def restore(self, device: PciDevice,
                state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        """Steps that put saved register state back."""
        return ()

    def verify(self, device: PciDevice,
               state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        """Steps that check (read only) that the earlier phases took effect."""
        return ()

    def hooks(self) -> tuple[str, ...]:
        """The phases this plugin implements (hooks overridden from :class:`Plugin`)."""
        return tuple(p for p in PHASES
                     if getattr(type(self), p, None) is not getattr(Plugin, p))

    def __repr__(self) -> str:
        return f"<plugin {self.name} {self.version}>"
