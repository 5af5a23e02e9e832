"""The machine, the tools, and handoff installed the way a user installs it.

A user runs ``handoff``, the console script of a regular (non-editable) ``pip install .``. A
development environment adds an editable finder (``__editable__.*.pth``) and whatever other
``.pth`` files its site-packages holds, and pyenv puts a bash shim in front of every command:
each adds start-up time that no user pays. So the full run installs a copy of the working
tree into its own venv under bench/work/ (rebuilt only when the sources change) and measures
that console script; ``--quick`` (CI) measures the current environment's console script.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work"
# What a wheel of handoff is built from (the same list as tests/e2e/e2e_harness/pyinstall.py).
SOURCES = ("handoff", "csrc", "spec", "pyproject.toml", "setup.py", "README.md")
SKIP = ("__pycache__", "*.so", "*.o", "*.pyc", "_native.c")


@dataclass
class Install:
    """How the measured ``handoff`` runs."""

    handoff: list[str]  # argv prefix of the console script
    python: str  # the interpreter of that install (for the floor and in-process children)
    drgn: list[str] | None  # drgn's console script, same environment when possible
    how: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"handoff": self.handoff, "python": self.python, "drgn": self.drgn,
                "how": self.how, "notes": self.notes}


def _source_key() -> str:
    h = hashlib.sha256(sys.version.encode())
    for name in SOURCES:
        p = ROOT / name
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix in (".so", ".o", ".pyc") or \
                    f.name == "_native.c":
                continue
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _base_python() -> str:
    """The real interpreter behind this one (a venv's python is a symlink to it)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def build_venv(log: Any) -> Install:
    """bench/work/venv: a non-editable install of a copy of the working tree, plus drgn."""
    venv = WORK / "venv"
    key = _source_key()
    stamp = venv / ".bench-source-key"
    py = venv / "bin" / "python"
    if not (stamp.exists() and stamp.read_text() == key and (venv / "bin" / "handoff").exists()):
        log(f"building {venv.relative_to(ROOT)} (pip install of a copy of the tree, not editable)")
        shutil.rmtree(venv, ignore_errors=True)
        src = WORK / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        for name in SOURCES:
            p = ROOT / name
            if p.is_dir():
                shutil.copytree(p, src / name, ignore=shutil.ignore_patterns(*SKIP))
            elif p.exists():
                shutil.copy2(p, src / name)
        subprocess.run([_base_python(), "-m", "venv", "--without-pip", str(venv)], check=True)
        r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                            "--no-warn-script-location", str(src), "drgn"],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            # drgn is only a peer: retry without it rather than lose the whole install.
            r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install",
                                "-q", str(src)], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError("pip install of the tree into bench/work/venv failed: "
                               + (r.stderr.strip().splitlines() or ["no output"])[-1])
        shutil.rmtree(src, ignore_errors=True)
        stamp.write_text(key)
    drgn = venv / "bin" / "drgn"
    return Install([str(venv / "bin" / "handoff")], str(py),
                   [str(drgn)] if drgn.exists() else current_drgn(),
                   "bench/work/venv: `pip install .` of a copy of the working tree (not "
                   "editable), no other packages than handoff's dependencies and drgn")


def current_drgn() -> list[str] | None:
    here = Path(sys.executable).parent / "drgn"
    if here.exists():
        return [str(here)]
    return None


def current_install() -> Install:
    """The console script of the environment running the bench (editable in a dev venv)."""
    script = Path(sys.executable).parent / "handoff"
    if script.exists():
        argv, how = [str(script)], f"{script}: the current environment's console script"
    else:
        argv, how = [sys.executable, "-m", "handoff"], "python -m handoff (no console script)"
    notes = []
    pth = sorted(p.name for d in site_dirs() for p in Path(d).glob("*.pth"))
    if pth:
        notes.append("site-packages .pth files loaded at every start: " + ", ".join(pth))
    return Install(argv, sys.executable, current_drgn(), how, notes)


def site_dirs() -> list[str]:
    import site

    return [d for d in site.getsitepackages() if os.path.isdir(d)]


def tool(name: str) -> str | None:
    """An executable on PATH, skipping pyenv shims (a bash script in front of the tool)."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if "/.pyenv/shims" in d:
            continue
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    out = (r.stdout + r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    osr = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            k, _, v = line.partition("=")
            osr[k] = v.strip('"')
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "model_name": model,
        "mem_total_bytes": mem,
        "kernel": platform.release(),
        "os": osr.get("PRETTY_NAME", "?"),
        "python": sys.version.split()[0],
        "filesystem_of_work_dir": _fstype(WORK),
    }


def _fstype(path: Path) -> str:
    best, fs = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fs = parts[1], f"{parts[2]} on {parts[0]}"
    except OSError:
        pass
    return fs


def tools_json(install: Install) -> dict[str, str]:
    out = {}
    for name, argv in (("readelf", ["readelf", "--version"]),
                       ("makedumpfile", ["makedumpfile", "-v"]),
                       ("lspci", ["lspci", "--version"]), ("cp", ["cp", "--version"]),
                       ("dd", ["dd", "--version"])):
        path = tool(argv[0])
        out[name] = tool_version([path, *argv[1:]]) if path else "missing"
    if install.drgn:
        out["drgn"] = tool_version([*install.drgn, "--version"])
    out["handoff"] = tool_version([*install.handoff, "--version"])
    return out


def dump_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    tmp.replace(path)
