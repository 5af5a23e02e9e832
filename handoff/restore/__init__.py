"""Restore devices in the capture kernel: policy, matching, plan, apply, report.

Public API (imported lazily so ``handoff.restore.policy.default_action`` stays cheap for save):

- :func:`handoff.restore.policy.load_policy`, :class:`~handoff.restore.policy.Policy`,
  :func:`~handoff.restore.policy.default_action`
- :class:`~handoff.restore.match.Identity`, :func:`~handoff.restore.match.identity_from`
- :func:`~handoff.restore.plan.make_plan` -> :class:`~handoff.restore.plan.Plan`
- :class:`~handoff.restore.apply.SysfsAccess`, :func:`~handoff.restore.apply.scan`,
  :func:`~handoff.restore.apply.apply`
- :mod:`handoff.restore.report`: ``build``, ``encode``, ``summary``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Policy": "policy", "load_policy": "policy", "parse_policy": "policy",
    "default_action": "policy", "ACTIONS": "policy",
    "Identity": "match", "identity_from": "match", "check_identity": "match",
    "Plan": "plan", "make_plan": "plan",
    "SysfsAccess": "apply", "scan": "apply", "apply": "apply",
    "Environment": "environment", "probe": "environment",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"handoff.restore.{_EXPORTS[name]}"), name)
    raise AttributeError(name)


__all__ = list(_EXPORTS)
