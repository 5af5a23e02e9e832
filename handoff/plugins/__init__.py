"""Device plugins: device-specific steps through BAR registers, with built-ins for NVMe,
virtio-pci, Intel e1000/e1000e and MSI-X tables.

Config-space restore cannot stop a device the dead kernel left running (its queues still
point into old memory) and cannot reach state kept in BAR memory (MSI-X tables). Plugins do
that through sysfs ``resourceN``, which needs the device unbound and the kernel not locked
down; both refusals are reported as such.

Public API:

- :mod:`handoff.plugins.api`: :class:`Plugin`, :class:`Match`, :class:`PluginStep`,
  :class:`StepResult`, :class:`Access`, the phases and outcomes, :class:`StepFailed`,
  :class:`StepTimeout`;
- :mod:`handoff.plugins.context`: :class:`StepContext` (what a step body touches the device
  through);
- :mod:`handoff.plugins.bar`: :class:`BarAccessor`, :class:`SysfsBars`, :func:`poll`,
  :class:`Deadline` and the BAR errors;
- :mod:`handoff.plugins.registry`: :func:`load`, :func:`default_registry`, :class:`Registry`;
- :mod:`handoff.plugins.runner`: :func:`steps_for`, :func:`run_step`, :func:`run_plugins`,
  :func:`apply_ext`.

docs/plugins.md tells a third party how to write and ship one.
"""

from __future__ import annotations

from handoff.plugins.api import (
    API_VERSION,
    FAILED,
    NO_RESPONSE,
    OK,
    OUTCOMES,
    PHASES,
    PLANNED,
    QUIESCE,
    REFUSED,
    RESET,
    RESTORE,
    SAVE,
    TIMEOUT,
    VERIFY,
    Access,
    ClassRule,
    IdRule,
    Match,
    NoResponse,
    Plugin,
    PluginError,
    PluginStep,
    StepAbandoned,
    StepFailed,
    StepResult,
    StepTimeout,
    WriteRefused,
)
from handoff.plugins.bar import (
    BarAccessor,
    BarBoundsError,
    BarClaimed,
    BarError,
    BarMappingRefused,
    BarReadOnly,
    BarUnavailable,
    Deadline,
    MmapFile,
    PollResult,
    RefusedBars,
    RegisterFile,
    SysfsBars,
    poll,
)
from handoff.plugins.context import StepContext
from handoff.plugins.registry import (
    GROUP,
    LoadProblem,
    PluginInfo,
    Registry,
    default_registry,
    load,
)
from handoff.plugins.runner import PluginRun, apply_ext, run_plugins, run_step, steps_for

__all__ = [
    "API_VERSION",
    "FAILED",
    "GROUP",
    "NO_RESPONSE",
    "OK",
    "OUTCOMES",
    "PHASES",
    "PLANNED",
    "QUIESCE",
    "REFUSED",
    "RESET",
    "RESTORE",
    "SAVE",
    "TIMEOUT",
    "VERIFY",
    "Access",
    "BarAccessor",
    "BarBoundsError",
    "BarClaimed",
    "BarError",
    "BarMappingRefused",
    "BarReadOnly",
    "BarUnavailable",
    "ClassRule",
    "Deadline",
    "IdRule",
    "LoadProblem",
    "Match",
    "MmapFile",
    "NoResponse",
    "Plugin",
    "PluginError",
    "PluginInfo",
    "PluginRun",
    "PluginStep",
    "PollResult",
    "RefusedBars",
    "RegisterFile",
    "Registry",
    "StepAbandoned",
    "StepContext",
    "StepFailed",
    "StepResult",
    "StepTimeout",
    "SysfsBars",
    "WriteRefused",
    "apply_ext",
    "default_registry",
    "load",
    "poll",
    "run_plugins",
    "run_step",
    "steps_for",
]
