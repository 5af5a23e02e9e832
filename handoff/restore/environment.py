"""Deprecated home of the kernel capability probe: it lives in :mod:`handoff.sysfs.probe`.

Kept so that ``from handoff.restore.environment import probe`` (and the other names) still
works for library users; handoff itself imports from :mod:`handoff.sysfs.probe`.
"""

from __future__ import annotations

from handoff.sysfs.probe import (
    LOCKED_MODES,
    Check,
    DeviceCaps,
    Environment,
    describe,
    describe_text,
    parse_lockdown,
    probe,
)

__all__ = [
    "LOCKED_MODES",
    "Check",
    "DeviceCaps",
    "Environment",
    "describe",
    "describe_text",
    "parse_lockdown",
    "probe",
]
