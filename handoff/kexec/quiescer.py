"""Where `handoff load` finds handoff-quiesce, the capture kernel's first hook (csrc/quiesce).

setup.py builds it into handoff/data/ at install; HANDOFF_QUIESCER names another build.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "HANDOFF_QUIESCER"
PACKAGED = Path(__file__).resolve().parent.parent / "data" / "handoff-quiesce"
ELF_MAGIC = b"\x7fELF"


def binary() -> tuple[bytes | None, str]:
    """The quiescer's bytes and where they came from, or None and why there are none."""
    path = Path(os.environ.get(ENV) or PACKAGED)
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, (f"no handoff-quiesce at {path} ({e.strerror}): DMA stops only when "
                      "`handoff restore` runs; reinstall handoff with a C compiler (and "
                      f"static libc) or set {ENV}")
    if not data.startswith(ELF_MAGIC):
        return None, f"{path} is not an ELF executable; handoff-quiesce is not packed"
    return data, str(path)
