"""Write newc cpio archives (the initramfs format) from a directory tree, without root."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

_TRAILER = "TRAILER!!!"


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _entry(
    ino: int,
    name: str,
    mode: int,
    data: bytes = b"",
    rdev: tuple[int, int] = (0, 0),
    nlink: int = 1,
) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    head = header + encoded
    return head + _pad4(len(head)) + data + _pad4(len(data))


def newc_from_tree(root: Path, devices: dict[str, tuple[int, int]] | None = None) -> bytes:
    """All of `root` as one newc archive (owner root, mtime 0), plus extra char devices."""
    parts: list[bytes] = []
    ino = 1
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir != Path("."):
            st = os.lstat(dirpath)
            parts.append(
                _entry(ino, str(rel_dir), stat.S_IFDIR | stat.S_IMODE(st.st_mode), nlink=2)
            )
            ino += 1
        for fname in sorted(filenames + [d for d in dirnames if os.path.islink(Path(dirpath, d))]):
            path = Path(dirpath, fname)
            st = os.lstat(path)
            name = str(rel_dir / fname) if rel_dir != Path(".") else fname
            if stat.S_ISLNK(st.st_mode):
                parts.append(_entry(ino, name, stat.S_IFLNK | 0o777, os.readlink(path).encode()))
            elif stat.S_ISREG(st.st_mode):
                parts.append(
                    _entry(ino, name, stat.S_IFREG | stat.S_IMODE(st.st_mode), path.read_bytes())
                )
            ino += 1
    for name, rdev in sorted((devices or {}).items()):
        parts.append(_entry(ino, name, stat.S_IFCHR | 0o600, rdev=rdev))
        ino += 1
    parts.append(_entry(0, _TRAILER, 0))
    return b"".join(parts)


def write_initrd(root: Path, out: Path) -> int:
    """Gzip a tree into an initrd, zero-padded to 512 bytes so archives appended later
    start 4-byte aligned (the kernel needs that for an uncompressed newc after gzip)."""
    archive = newc_from_tree(root, devices={"dev/console": (5, 1)})
    blob = gzip.compress(archive, compresslevel=6, mtime=0)
    blob += b"\0" * (-len(blob) % 512)
    out.write_bytes(blob)
    return len(blob)
