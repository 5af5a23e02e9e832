"""Name a dump's container from its first bytes: ELF, kdump-compressed, flattened, diskdump."""

from __future__ import annotations

from handoff.formats import kdump
from handoff.formats.elfcore import ELF_MAGIC


def dump_format(head: bytes) -> str:
    """Name the container from the first bytes of a file.

    "elf", "kdump" (kdump-compressed), "flattened" (makedumpfile -F), "diskdump" or "unknown".
    """
    if head[:4] == ELF_MAGIC:
        return "elf"
    if kdump.is_kdump(head):
        return "kdump"
    if kdump.is_flattened(head):
        return "flattened"
    if head[:8] == kdump.DISKDUMP_SIGNATURE:
        return "diskdump"
    return "unknown"
