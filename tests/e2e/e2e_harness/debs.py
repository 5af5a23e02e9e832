"""Download Debian packages with apt-get and unpack each version once into the cache."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .config import CACHE_DIR

DEB_DIR = CACHE_DIR / "debs"
PKG_DIR = CACHE_DIR / "pkgs"

# One line of `apt-get download --print-uris`: 'URI' FILENAME SIZE HASH
_URI_LINE = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+\.deb) (?P<size>\d+) (?P<hash>\S+)$")


class DebError(RuntimeError):
    """apt could not resolve, download or unpack a package."""


@dataclass(frozen=True)
class Deb:
    """One resolved package version, named as apt-get download saves it."""

    name: str
    filename: str

    @property
    def version(self) -> str:
        return urllib.parse.unquote(self.filename.split("_")[1])

    @property
    def deb_path(self) -> Path:
        return DEB_DIR / self.filename

    @property
    def root(self) -> Path:
        """Where the package is unpacked (`dpkg -x`)."""
        return PKG_DIR / self.filename.removesuffix(".deb")


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


_updated = False


def _apt_update_once() -> None:
    global _updated
    if _updated:
        return
    _updated = True
    proc = _run(["apt-get", "update"])
    if proc.returncode != 0:
        raise DebError(f"apt-get update failed:\n{proc.stderr.strip()}")


def _print_uris(names: list[str]) -> subprocess.CompletedProcess[str]:
    return _run(["apt-get", "download", "--print-uris", *names])


def resolve(names: list[str]) -> dict[str, Deb]:
    """Map package names to their candidate versions without downloading anything."""
    proc = _print_uris(names)
    if proc.returncode != 0:
        # A fresh machine may have no package lists yet; refresh once and retry.
        _apt_update_once()
        proc = _print_uris(names)
    if proc.returncode != 0:
        raise DebError(f"apt-get cannot resolve {' '.join(names)}:\n{proc.stderr.strip()}")
    found: dict[str, Deb] = {}
    for line in proc.stdout.splitlines():
        m = _URI_LINE.match(line.strip())
        if m:
            name = m["file"].split("_")[0]
            found[name] = Deb(name, m["file"])
    missing = [n for n in names if n not in found]
    if missing:
        raise DebError(f"apt-get printed no download for: {' '.join(missing)}")
    return found


def kernel_package(meta: str, unsigned: bool = False) -> str:
    """The versioned linux-image package that the meta package depends on today (its
    -unsigned twin if asked, and apt knows one; else the newest -unsigned candidate of the
    line when the meta package itself is unknown)."""
    proc = _run(["apt-cache", "depends", meta])
    if proc.returncode != 0 or "Depends:" not in proc.stdout:
        _apt_update_once()
        proc = _run(["apt-cache", "depends", meta])
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+-amd64)$", line)
        if m:
            if unsigned and _known(m[1] + "-unsigned"):
                return m[1] + "-unsigned"
            return m[1]
    if unsigned:
        newest = _newest_unsigned(meta.removesuffix("-amd64"))
        if newest:
            return newest
    raise DebError(f"no linux-image dependency in `apt-cache depends {meta}`:\n{proc.stdout}")


def _known(name: str) -> bool:
    proc = _run(["apt-cache", "show", "--no-all-versions", name])
    return proc.returncode == 0 and f"Package: {name}" in proc.stdout


def _newest_unsigned(prefix: str) -> str | None:
    """linux-image-6.12 -> the highest linux-image-6.12.N+deb12-amd64-unsigned apt knows."""
    proc = _run(["apt-cache", "pkgnames", prefix + "."])
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\+\S*-amd64-unsigned$")
    found = [(int(m[1]), n) for n in proc.stdout.split() if (m := pat.match(n))]
    return max(found)[1] if found else None


def is_kernel_of(name: str, line: str) -> bool:
    """Whether a package name belongs to kernel line `line` ("6.1": linux-image-6.1.0-57-amd64,
    "6.12": linux-image-6.12.118+deb12-amd64-unsigned; 6.1 is no prefix of 6.12 here)."""
    return name.startswith(f"linux-image-{line}.")


def fetch(debs: list[Deb]) -> None:
    """Download (only what is not cached yet) and unpack each package."""
    DEB_DIR.mkdir(parents=True, exist_ok=True)
    PKG_DIR.mkdir(parents=True, exist_ok=True)
    todo = [d for d in debs if not d.deb_path.exists()]
    if todo:
        specs = [f"{d.name}={d.version}" for d in todo]
        proc = _run(["apt-get", "download", *specs], cwd=DEB_DIR)
        if proc.returncode != 0:
            raise DebError(f"apt-get download {' '.join(specs)} failed:\n{proc.stderr.strip()}")
        for d in todo:
            if not d.deb_path.exists():
                raise DebError(f"apt-get download did not produce {d.deb_path}")
    for d in debs:
        if d.root.is_dir():
            continue
        tmp = d.root.with_name(d.root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        proc = _run(["dpkg-deb", "-x", str(d.deb_path), str(tmp)])
        if proc.returncode != 0:
            raise DebError(f"dpkg-deb -x {d.deb_path} failed:\n{proc.stderr.strip()}")
        tmp.rename(d.root)


def dpkg_owner(soname: str) -> str | None:
    """Host fallback for a soname missing from SONAME_PACKAGES: which package ships it."""
    for libdir in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"):
        proc = _run(["dpkg", "-S", f"{libdir}/{soname}"])
        if proc.returncode == 0:
            return proc.stdout.split(":", 1)[0].strip()
    return None


def prune(keep: list[Deb], line: str) -> None:
    """Delete cached versions that are no longer candidates (after a Debian update). `keep`
    is what kernel line `line` uses; the other lines' kernel packages stay (each line prunes
    its own), so 6.1 and 6.12 share the cache."""
    wanted = {d.filename for d in keep}

    def other_kernel(filename: str) -> bool:
        name = filename.split("_")[0]
        return name.startswith("linux-image-") and not is_kernel_of(name, line)

    for deb in DEB_DIR.glob("*.deb"):
        if deb.name not in wanted and not other_kernel(deb.name):
            deb.unlink()
    for root in PKG_DIR.iterdir():
        if root.name + ".deb" not in wanted and not other_kernel(root.name):
            shutil.rmtree(root)
