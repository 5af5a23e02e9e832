"""Sysfs paths as strings, spelled as ``pathlib`` spells them, and the outside-the-tree checks.

``handoff restore`` runs in the capture kernel, where start-up time counts: importing pathlib
costs ~4 ms, and each ``Path`` operation on the way to a sysfs attribute several microseconds
more (hundreds per restore). Restore code builds plain strings instead. The paths it reports
(refusals, report notes) must read as they did when they were ``Path`` objects, so
:func:`pathstr` normalises as ``str(PurePosixPath(p))`` does and :func:`join` joins as ``/``
does.
"""

from __future__ import annotations

import os
import re

from handoff.errors import HandoffError

# A PCI address as sysfs names a device: domain:bus:device.function.
ADDR = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$")


class OutsideTree(HandoffError):
    """A path resolved outside the sysfs tree the engine was given: refused, never written."""


def pathstr(p: str | os.PathLike[str]) -> str:
    """``str(PurePosixPath(p))``: empty and ``.`` components dropped, ``//`` kept only as a
    leading pair, no trailing slash; ``..`` is kept (it is not resolved lexically)."""
    s = os.fspath(p)
    if not isinstance(s, str):
        raise TypeError(f"expected a str path, not {type(s).__name__}")
    if s.startswith("//") and not s.startswith("///"):
        root = "//"
    elif s.startswith("/"):
        root = "/"
    else:
        root = ""
    parts = [c for c in s.split("/") if c and c != "."]
    return root + "/".join(parts) if root or parts else "."


def join(root: str, *names: str) -> str:
    """``str(PurePosixPath(root, *names))`` for ``root`` from :func:`pathstr` and plain names
    (no slashes, not ``.``)."""
    if root == ".":
        return "/".join(names)
    if root.endswith("/"):
        return root + "/".join(names)
    return root + "/" + "/".join(names)


def resolve(path: str) -> str:
    """``os.path.realpath(path)``, for a path that exists in one system call: the kernel
    resolves it on open(O_PATH), and /proc/self/fd names what it found. A sysfs device
    directory lies behind a symlink chain of ~15 components: realpath() lstat()s each one
    from Python. Falls back to realpath() when that does not work (a missing path, no /proc)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return os.path.realpath(path)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = ""
    finally:
        os.close(fd)
    if not real.startswith("/") or real.endswith(" (deleted)"):
        return os.path.realpath(path)
    return real


def inside(real: str, root: str) -> bool:
    """Whether the resolved path ``real`` is the resolved ``root`` or below it."""
    return real == root or real.startswith(root if root.endswith("/") else root + "/")


def read_attr(path: str) -> str | None:
    """A sysfs attribute's text, stripped; None when absent or unreadable (as
    ``SysfsTree.attr`` reads one)."""
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", "replace").strip()
    except OSError:
        return None


def link_name(path: str) -> str | None:
    """Basename of the symlink at ``path`` (a device's ``driver``); None when absent (as
    ``SysfsTree.link_name`` reads one)."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def device_dir(root: str, addr: str) -> str:
    """``ROOT/bus/pci/devices/ADDR`` for ``root`` from :func:`pathstr`; refuses anything
    that is not a PCI address (a name with ``/`` or ``..`` would leave the tree)."""
    if not ADDR.fullmatch(addr):
        raise OutsideTree(f"{addr!r} is not a PCI address: refused")
    return join(root, "bus", "pci", "devices", addr)


def checked(path: str, real_root: str) -> str:
    """``path`` resolved, refused with :class:`OutsideTree` unless it lies inside
    ``real_root`` (the tree's resolved root)."""
    real = resolve(path)
    if not inside(real, real_root):
        raise OutsideTree(f"{path} resolves to {real}, outside the sysfs tree "
                          f"{real_root}: refused")
    return real
