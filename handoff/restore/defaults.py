"""The built-in default actions: kept as an import name; they live in handoff.devices.patterns.

``handoff save`` records each device's default action and ``restore`` falls back to it, so
both take it from one place (:func:`handoff.devices.patterns.default_rule`).
"""

from __future__ import annotations

from handoff.devices.patterns import (  # noqa: F401  (re-exported: the old import names)
    ACTIONS,
    QUIESCE,
    RESET,
    RESTORE_EARLY,
    RESTORE_LIVE,
    SKIP,
    bus_master,
    default_action,
    default_rule,
    is_bridge,
)
