"""Carry handoff's packed capture runtime from one guest run to the next.

`handoff load` packs a Python runtime for the capture kernel and caches it in
/var/lib/handoff/runtime-cache/ (docs/load.md, "Runtime"); building it costs about a minute of
TCG time (mostly xz). Every run boots a fresh root disk, so the harness copies that directory
out of the root image after a run and into the next image built from the same guest files.
handoff itself decides whether a seeded cache is valid (its key covers the interpreter and
every handoff source file, and each source's size and mtime is checked), so a stale seed only
costs the rebuild it would have cost anyway."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from .config import CACHE_DIR

GUEST_DIR = "var/lib/handoff/runtime-cache"
SEEDS = CACHE_DIR / "guest-runtime"


def key(tree: Path) -> str:
    """What the guest's runtime depends on: handoff's files and the interpreter."""
    h = hashlib.sha256()
    pkg = tree / "opt/handoff/lib/handoff"
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".so") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(pkg)).encode() + b"\0" + p.read_bytes() + b"\0")
    py = (tree / "usr/bin/python3.11").resolve()
    st = py.stat()
    h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def seed(tree: Path, k: str) -> bool:
    """Copy a harvested runtime cache into the guest tree; True if there was one."""
    src = SEEDS / k / "runtime-cache"
    if not src.is_dir():
        return False
    dest = tree / GUEST_DIR
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return True


def harvest(image: Path, k: str) -> bool:
    """Keep the guest's runtime cache from a root image after a run (best effort)."""
    out = SEEDS / f"{k}.tmp"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc = subprocess.run(
        ["debugfs", "-R", f"rdump /{GUEST_DIR} {out}", str(image)],
        capture_output=True,
        text=True,
        check=False,
    )
    got = out / "runtime-cache"
    if proc.returncode != 0 or not any(got.glob("*/runtime.json")):
        shutil.rmtree(out, ignore_errors=True)
        return False
    for old in SEEDS.iterdir():  # one seed: the newest
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
    out.rename(SEEDS / k)
    return True
