"""What the running kernel lets a restore do: lockdown mode, and whether config writes work.

The measured facts (docs: /work/shared/facts/lockdown-measured.md): under ``lockdown=integrity``
config-space writes fail with EPERM while config reads, sysfs ``reset``, ``reset_method``,
unbind/bind and remove/rescan still work. A plan must not promise writes the kernel refuses.
The lockdown work refines this module; the restore engine and report only read its fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCKED_MODES = ("integrity", "confidentiality")


@dataclass
class Environment:
    lockdown: str | None = None  # "none", "integrity", "confidentiality"; None = unknown
    config_writes_permitted: bool | None = None  # None = unknown until a write is tried
    reset_permitted: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"lockdown": self.lockdown,
                "config_writes_permitted": self.config_writes_permitted,
                "reset_permitted": self.reset_permitted, "notes": self.notes}


def parse_lockdown(text: str) -> str | None:
    """The bracketed mode of ``/sys/kernel/security/lockdown`` ("none [integrity] ...")."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def probe(sysfs_root: Path) -> Environment:
    """Read the lockdown mode below ``sysfs_root`` (securityfs at kernel/security)."""
    env = Environment()
    path = sysfs_root / "kernel" / "security" / "lockdown"
    try:
        env.lockdown = parse_lockdown(path.read_text())
    except OSError:
        env.notes.append(f"{path} is not readable: lockdown mode unknown")
        return env
    if env.lockdown in LOCKED_MODES:
        env.config_writes_permitted = False
        env.reset_permitted = True
        env.notes.append(f"kernel lockdown ({env.lockdown}) refuses config-space writes; "
                         "sysfs reset is still allowed")
    elif env.lockdown == "none":
        env.reset_permitted = True
    return env
