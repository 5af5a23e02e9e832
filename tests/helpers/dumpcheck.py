"""Independent checks of a saved ELF dump for tests: its PT_LOADs, its header area, and crash.

Written from the ELF specification and crash's netdump.c, not from handoff's own readers,
which they check.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

PHDR = struct.Struct("<IIQQQQQQ")
PAGE = 4096


def phdrs(path: Path) -> list[tuple[int, ...]]:
    """Every program header of a little-endian ELF64 file, in table order."""
    with path.open("rb") as f:
        eh = f.read(64)
        (phoff,) = struct.unpack_from("<Q", eh, 32)
        (phnum,) = struct.unpack_from("<H", eh, 56)
        f.seek(phoff)
        table = f.read(phnum * PHDR.size)
    return [PHDR.unpack_from(table, i * PHDR.size) for i in range(phnum)]


def loads(path: Path) -> list[tuple[int, int, int]]:
    """(p_paddr, p_offset, p_filesz) of every PT_LOAD."""
    return [(p[4], p[2], p[5]) for p in phdrs(path) if p[0] == 1]


def sha_range(path: Path, off: int, size: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(off)
        left = size
        while left:
            b = f.read(min(left, 1 << 20))
            assert b, f"short read of {path} at {off}"
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def assert_same_loads(src: Path, dump: Path) -> int:
    """Each PT_LOAD of ``dump`` holds the bytes of the same PT_LOAD of ``src`` (same physical
    address and size, hash-equal), all moved by one whole number of pages. Returns the move."""
    a, b = loads(src), loads(dump)
    assert [(p, n) for p, _, n in a] == [(p, n) for p, _, n in b]
    shifts = {ob - oa for (_, oa, _), (_, ob, _) in zip(a, b)}
    assert len(shifts) == 1, shifts
    (shift,) = shifts
    assert shift % PAGE == 0 and shift >= 0
    for (_, oa, n), (_, ob, _) in zip(a, b):
        assert sha_range(src, oa, n) == sha_range(dump, ob, n)
    return shift


def assert_crash_layout(dump: Path) -> None:
    """What crash needs (netdump.c): the PT_NOTE first, and its notes inside the header area,
    which ends at the lowest non-zero p_offset of the other program headers."""
    ph = phdrs(dump)
    assert ph[0][0] == 4, "the first program header is not PT_NOTE"
    end = min(p[2] for p in ph[1:] if p[2])
    assert ph[0][2] + ph[0][5] <= end, (ph[0], end)


def have_crash() -> bool:
    return shutil.which("crash") is not None


def crash_osrelease(dump: Path) -> tuple[int, str, str]:
    """``crash --osrelease DUMP``: (exit code, stdout stripped, stderr)."""
    p = subprocess.run(["crash", "--osrelease", str(dump)], capture_output=True, text=True,
                       check=False, timeout=120)
    return p.returncode, p.stdout.strip(), p.stderr
