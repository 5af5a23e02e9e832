"""A real vmcore for the real-dump cases: found in the e2e cache or HANDOFF_REAL_VMCORE.

A missing one skips the case, except in CI (HANDOFF_REQUIRE_REAL_VMCORE=1), where the e2e tests
run first and leave one: there a missing dump fails.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from handoff import errors as E

ROOT = Path(__file__).resolve().parents[2]
PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr


def _is_elf_core(p: Path) -> bool:
    try:
        with p.open("rb") as f:
            h = f.read(18)
    except OSError:
        return False
    return h[:4] == b"\x7fELF" and h[16:18] == b"\x04\x00"


# The releases of the kernels the e2e harness boots (its config.KERNEL_LINES): a real vmcore
# comes from the 6.1 or the 6.12 line, whichever scenario ran last.
E2E_RELEASE = r"6\.1\.0-\d+-amd64|6\.12\.\d+\+deb12-amd64"


def real_vmcore() -> Path | None:
    """HANDOFF_REAL_VMCORE, else a complete ELF vmcore (a file named ``vmcore``) that the e2e
    harness left in its cache, the newest first."""
    env = os.environ.get("HANDOFF_REAL_VMCORE")
    if env:
        p = Path(env)
        if not _is_elf_core(p):
            pytest.fail(f"HANDOFF_REAL_VMCORE={env} is not an ELF core file")
        return p
    cache = Path(os.environ.get("HANDOFF_E2E_CACHE", ROOT / "tests" / "e2e" / "cache"))
    if not cache.is_dir():
        return None
    found = []
    for dirpath, dirnames, filenames in os.walk(cache):
        dirnames[:] = [d for d in dirnames if d not in ("pkgs", "debs", "rootfs", "pip")]
        if "vmcore" in filenames:
            p = Path(dirpath, "vmcore")
            if _is_elf_core(p) and complete_core(p) and not _has_handoff_notes(p):
                found.append((p.stat().st_mtime, p))
    return max(found)[1] if found else None


def _has_handoff_notes(p: Path) -> bool:
    """A dump that ``handoff capture`` already injected into (the e2e handoff scenarios) is
    not a plain /proc/vmcore copy: these cases need one (the baseline scenario's)."""
    from handoff.sources import scan_path

    try:
        return any(n.owner == "HANDOFF" for n in scan_path(str(p)).notes)
    except E.HandoffError:
        return True


def complete_core(p: Path) -> bool:
    """Every PT_LOAD lies inside the file (the e2e harness may be rewriting its copy)."""
    try:
        return all(o + n <= p.stat().st_size for o, n in elf_loads(p))
    except (OSError, struct.error):
        return False


def no_real_vmcore(why: str) -> None:
    """Skip a real-dump case, except in CI (HANDOFF_REQUIRE_REAL_VMCORE=1), where the e2e
    tests run first and leave one: there a missing dump is a failure, not a quiet skip."""
    if os.environ.get("HANDOFF_REQUIRE_REAL_VMCORE") == "1":
        pytest.fail(f"{why}, and HANDOFF_REQUIRE_REAL_VMCORE=1")
    pytest.skip(why)


def elf_loads(path: Path) -> list[tuple[int, int]]:
    """(p_offset, p_filesz) of every PT_LOAD."""
    data = path.open("rb").read(1 << 16)
    (phoff,) = struct.unpack_from("<Q", data, 32)
    (phnum,) = struct.unpack_from("<H", data, 56)
    with path.open("rb") as f:
        f.seek(phoff)
        table = f.read(phnum * 56)
    out = []
    for i in range(phnum):
        p = PHDR.unpack_from(table, i * 56)
        if p[0] == 1:
            out.append((p[2], p[5]))
    return out
