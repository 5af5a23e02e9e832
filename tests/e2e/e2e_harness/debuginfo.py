"""The guest kernel's vmlinux with debug info, which a full crash(8) session needs.

Debian ships it in ``linux-image-RELEASE-dbg``: for 6.1.0-57-amd64 an 859 MB package that
unpacks to 5.4 GB, nearly all of it module debug info. Only
``./usr/lib/debug/boot/vmlinux-RELEASE`` (633 MB) is kept. The package's data tarball stores it
before the modules, so it is streamed out and the rest is never decompressed; the package is
deleted afterwards. Measured on this project's CI machine kind (2 cores, Debian's CDN):
download 4.6 s, extraction 10 s, then nothing until the kernel version changes.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tarfile
from pathlib import Path

from . import debs
from .config import CACHE_DIR

DEBUG_DIR = CACHE_DIR / "debug"


def debug_vmlinux(release: str) -> Path:
    """The debug vmlinux of kernel ``release`` (the guest's ``uname -r``), cached by the
    package version."""
    image, name = f"linux-image-{release}", f"linux-image-{release}-dbg"
    found = debs.resolve([image, name])  # one apt call, no download (about a second)
    kernel, deb = found[image], found[name]
    if deb.version != kernel.version:
        raise debs.DebError(f"{name} is at version {deb.version}, {image} at "
                            f"{kernel.version}: apt-get update, then run again")
    out = CACHE_DIR / "kernel" / f"vmlinux-dbg-{kernel.filename.removesuffix('.deb')}"
    if out.exists():
        return out
    DEBUG_DIR.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (DEBUG_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():  # another run extracted it while this one waited
            return out
        path = DEBUG_DIR / deb.filename
        if not path.exists():
            proc = subprocess.run(["apt-get", "download", f"{name}={deb.version}"],
                                  cwd=DEBUG_DIR, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not path.exists():
                raise debs.DebError(f"apt-get download {name} failed:\n{proc.stderr.strip()}")
        tmp = out.with_name(out.name + ".tmp")
        _extract(path, f"./usr/lib/debug/boot/vmlinux-{release}", tmp)
        tmp.rename(out)
        path.unlink()
    return out


def _extract(deb: Path, member: str, dest: Path) -> None:
    """Stream one member out of a package's data tarball, stopping once it is written."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    found = False
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                if m.name == member and m.isfile():
                    src = tar.extractfile(m)
                    assert src is not None
                    with dest.open("wb") as f:
                        shutil.copyfileobj(src, f, 1 << 20)
                    found = True
                    break
    finally:
        proc.stdout.close()
        proc.kill()  # dpkg-deb would decompress the modules' debug info for nothing
        proc.wait()
    if not found:
        dest.unlink(missing_ok=True)
        raise debs.DebError(f"{deb.name} has no {member}")
