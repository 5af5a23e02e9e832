"""VMCOREINFO: the kernel's KEY=VALUE description of itself, carried in every kdump vmcore.

The kernel writes it in ``crash_save_vmcoreinfo_init()`` (kernel/vmcore_info.c) and appends
``CRASHTIME=`` at crash time (``crash_save_vmcoreinfo()``). Readers only need a few essentials;
everything else is kept as text. Input is untrusted: bounded, decoded leniently, never fatal.
"""

from __future__ import annotations

from typing import Any

from handoff._slots import Frozen

MAX_VMCOREINFO = 1 << 20  # the kernel's buffer is one page; be generous, but bounded
MAX_LINE = 4096


class VmcoreInfo(Frozen):
    __slots__ = ("entries",)
    _repr_skip = ('entries',)
    entries: dict[str, str]

    def __init__(self, entries: dict[str, str]) -> None:
        object.__setattr__(self, "entries", entries)

    @property
    def osrelease(self) -> str | None:
        return self.entries.get("OSRELEASE")

    @property
    def pagesize(self) -> int | None:
        return _int(self.entries.get("PAGESIZE"), 10)

    @property
    def crashtime(self) -> int | None:
        """Seconds since the epoch when the kernel crashed, if it recorded it."""
        return _int(self.entries.get("CRASHTIME"), 10)

    @property
    def build_id(self) -> str | None:
        return self.entries.get("BUILD-ID")

    @property
    def kerneloffset(self) -> int | None:
        return _int(self.entries.get("KERNELOFFSET"), 16)

    def essentials(self) -> dict[str, Any]:
        return {
            "osrelease": self.osrelease,
            "crashtime": self.crashtime,
            "pagesize": self.pagesize,
            "build_id": self.build_id,
            "kerneloffset": self.kerneloffset,
            "entries": len(self.entries),
        }


def _int(v: str | None, base: int) -> int | None:
    if v is None:
        return None
    try:
        return int(v.strip(), base)
    except ValueError:
        return None


def parse(data: bytes) -> VmcoreInfo:
    """Parse VMCOREINFO text (a note descriptor, NUL padded). Malformed lines are skipped."""
    text = bytes(data[:MAX_VMCOREINFO]).split(b"\x00", 1)[0].decode("utf-8", "replace")
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if len(line) > MAX_LINE or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key and key not in entries:
            entries[key] = value
    return VmcoreInfo(entries)
