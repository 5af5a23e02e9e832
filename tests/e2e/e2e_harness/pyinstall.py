"""Install the working tree's handoff, and its dependency wheels, for the guest's python3.11."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from .config import CACHE_DIR, REPO_ROOT

PIP_DIR = CACHE_DIR / "pip"
# What a wheel of handoff is built from; tests/ and bench/ do not change it.
_SOURCES = (
    "handoff",
    "csrc",
    "spec",
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "MANIFEST.in",
    "README.md",
)
# Debian 12 has glibc 2.36: any manylinux tag up to that loads.
_PLATFORMS = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_34_x86_64",
)
WRAPPER = """#!/bin/sh
# handoff from the working tree, under Debian's python3.11.
PYTHONPATH=/opt/handoff/lib${PYTHONPATH:+:$PYTHONPATH} exec /usr/bin/python3 -m handoff "$@"
"""


class InstallError(RuntimeError):
    """pip could not install handoff or its dependencies for the guest."""


def python311() -> str:
    """The guest runs CPython 3.11, so compiled parts must be built by a 3.11 interpreter."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found is None:
        raise InstallError(
            "building handoff for the guest needs a host python3.11 "
            "(the guest runs Debian's python3.11); install python3.11"
        )
    return found


def _pip(py: str, args: list[str]) -> None:
    proc = subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise InstallError(f"pip install {' '.join(args)} failed:\n{tail}")


def _source_hash() -> str:
    proc = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "--", *_SOURCES],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    h = hashlib.sha256()
    for rel in sorted(proc.stdout.split()):
        path = REPO_ROOT / rel
        if path.is_file():
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _host_build_env(py: str) -> str | None:
    """The host's cffi version when it can build handoff without build isolation."""
    code = (
        "import setuptools, cffi; "
        "print(cffi.__version__ if int(setuptools.__version__.split('.')[0]) >= 68 else '')"
    )
    proc = subprocess.run([py, "-c", code], capture_output=True, text=True, check=False)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def _cached(out: Path, build: list[list[str]], py: str) -> Path:
    if out.is_dir():
        return out
    kind = out.name.split("-")[0]
    for old in out.parent.glob(f"{kind}-*"):  # builds from older inputs
        shutil.rmtree(old)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for args in build:
        _pip(py, ["--target", str(tmp), *args])
    shutil.rmtree(tmp / "bin", ignore_errors=True)  # entry points name the host's python
    tmp.rename(out)
    return out


def install(dest: Path) -> Path:
    """Lay out /opt/handoff in `dest` (lib/ on PYTHONPATH, bin/handoff); return dest.

    The wheels and the build of the tree are cached by their inputs, so PyPI is asked
    only when the requirements change, and pip builds only when the sources change."""
    py = python311()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs: list[str] = list(project.get("dependencies", []))
    host_cffi = _host_build_env(py)
    if host_cffi:
        # Build against the host's cffi and ship the same runtime version to the guest.
        reqs = [
            f"cffi=={host_cffi}" if r.split(">")[0].split("=")[0].strip() == "cffi" else r
            for r in reqs
        ]
    req_key = hashlib.sha256("\n".join(sorted(reqs)).encode()).hexdigest()[:16]
    platform_args = [a for p in _PLATFORMS for a in ("--platform", p)]
    deps = _cached(
        PIP_DIR / f"deps-{req_key}",
        [
            [
                "--only-binary",
                ":all:",
                "--implementation",
                "cp",
                "--python-version",
                "3.11",
                "--abi",
                "cp311",
                *platform_args,
                *reqs,
            ]
        ],
        py,
    )
    build_args = ["--no-deps", *(["--no-build-isolation"] if host_cffi else []), str(REPO_ROOT)]
    tree = _cached(PIP_DIR / f"handoff-{_source_hash()}-{req_key}", [build_args], py)
    lib = dest / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for src in (deps, tree):
        shutil.copytree(src, lib, dirs_exist_ok=True, copy_function=os.link)
    wrapper = dest / "bin" / "handoff"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    return dest
