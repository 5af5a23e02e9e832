"""What a container is, from its first bytes alone (no parsing, no reads beyond them)."""

from __future__ import annotations

import struct

from handoff import record as R
from handoff.formats import elfcore, kdump, region

SNIFF = 64  # bytes of a file or member read to tell its kind

# (magic, name): the kernel's decompress_method() table (lib/decompress.c).
MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9e", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x89LZO", "lzo"),
    (b"\x02\x21\x4c\x18", "lz4"),
)
SUPPORTED = ("gzip", "xz", "bzip2", "lzma", "zstd")


def compression_of(head: bytes) -> str | None:
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    return None


def looks_like_initrd(head: bytes) -> bool:
    return head[:5] == b"07070" or compression_of(head) is not None


def sniff(head: bytes) -> str:
    """Container kind from the first bytes; "elf" is an ELF file that is not a core dump."""
    if not head:
        return "empty"
    if head[:8] == R.MAGIC:
        return "raw"
    if head[:8] == region.MAGIC:
        return "region"
    if head[:4] == elfcore.ELF_MAGIC:
        if len(head) >= 18 and head[5] in (1, 2):
            e_type = int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")
            return "elf-vmcore" if e_type == elfcore.ET_CORE else "elf"
        return "elf-vmcore"  # let the parser say what is wrong
    if head[:8] in (kdump.KDUMP_SIGNATURE, kdump.DISKDUMP_SIGNATURE):
        return "kdump-compressed"
    if kdump.is_flattened(head):
        return "flattened"
    if looks_like_initrd(head):
        return "initrd"
    if _note_like(head):
        return "note"
    return "unknown"


def _note_like(head: bytes) -> bool:
    """A plausible first ELF note: a short printable NUL-terminated owner name (§6)."""
    if len(head) < 16:
        return False
    namesz, _descsz, _type = struct.unpack_from("<III", head)
    if not 1 <= namesz <= len(head) - 12:
        return False
    name = head[12 : 12 + namesz]
    return name[-1] == 0 and all(0x20 < c < 0x7F for c in name[:-1])
