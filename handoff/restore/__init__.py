"""Restore devices in the capture kernel: policy, matching, plan, apply, report.

Public API (imported lazily so ``handoff.restore.policy.default_action`` stays cheap for save):

- :func:`~handoff.restore.engine.run` -> :class:`~handoff.restore.engine.Report`: the whole
  restore in one call (what ``handoff restore`` runs); :func:`~handoff.restore.engine.load_record`

- :func:`handoff.restore.policy.load_policy`, :class:`~handoff.restore.policy.Policy`,
  :func:`~handoff.restore.policy.default_action`
- :class:`~handoff.restore.match.Identity`, :func:`~handoff.restore.match.identity_from`
- :func:`~handoff.restore.plan.make_plan` -> :class:`~handoff.restore.plan.Plan`
- :class:`~handoff.restore.apply.SysfsAccess`, :func:`~handoff.restore.apply.scan`,
  :func:`~handoff.restore.apply.apply`, :func:`~handoff.restore.apply.rehearse` (a dry run of
  the plugin steps), :class:`~handoff.restore.pluginpass.PluginRuntime`
- :func:`~handoff.sysfs.probe.probe` -> :class:`~handoff.sysfs.probe.Environment`
  (what the kernel permits: lockdown, config writes, BAR mapping, resets, rescan),
  :func:`~handoff.sysfs.probe.describe` (a JSON-ready dict) and
  :func:`~handoff.sysfs.probe.describe_text` (aligned lines), for ``handoff status``;
  also importable from ``handoff.restore`` as before
- :mod:`handoff.restore.fallback`: what is done instead when the kernel refuses
- :mod:`handoff.restore.report`: ``build``, ``encode``, ``summary``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run": "engine", "Report": "engine", "load_record": "engine",
    "Policy": "policy", "load_policy": "policy", "parse_policy": "policy",
    "default_action": "policy", "ACTIONS": "policy",
    "Identity": "match", "identity_from": "match", "check_identity": "match",
    "Plan": "plan", "make_plan": "plan",
    "SysfsAccess": "apply", "scan": "apply", "apply": "apply", "rehearse": "apply",
    "PluginRuntime": "pluginpass",
    "Environment": "environment", "probe": "environment", "describe": "environment",
    "describe_text": "environment",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"handoff.restore.{_EXPORTS[name]}"), name)
    raise AttributeError(name)


__all__ = list(_EXPORTS)
