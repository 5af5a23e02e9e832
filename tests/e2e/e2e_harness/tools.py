"""Small static C helpers for the guests (guest/tools/<name>.c), built once with gcc -static.

The capture initrd holds only busybox, so a helper that must run there before any driver
loads (pcimem maps a BAR through sysfs resourceN) is linked statically on the host."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from .config import CACHE_DIR, GUEST_SCRIPTS

TOOLS_SRC = GUEST_SCRIPTS / "tools"


class ToolError(RuntimeError):
    """A helper could not be built."""


def available() -> list[str]:
    return sorted(p.stem for p in TOOLS_SRC.glob("*.c"))


def build(name: str) -> Path:
    """The static binary of guest/tools/<name>.c, cached by its source."""
    src = TOOLS_SRC / f"{name}.c"
    if not src.is_file():
        raise ToolError(f"no guest tool {name!r}: expected {src} (have {', '.join(available())})")
    key = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = CACHE_DIR / "tools" / f"{name}-{key}"
    if out.exists():
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise ToolError(f"building guest tool {name} needs gcc (apt-get install build-essential)")
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.glob(f"{name}-*"):
        old.unlink()
    tmp = out.with_name(out.name + ".tmp")
    argv = [cc, "-static", "-Os", "-s", "-Wall", "-Werror", "-o", str(tmp), str(src)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ToolError(
            f"{' '.join(argv)} failed (static glibc comes with libc6-dev):\n{proc.stderr}"
        )
    tmp.rename(out)
    return out
