"""Extract the uncompressed vmlinux from an xz bzImage, as scripts/extract-vmlinux does."""

from __future__ import annotations

import lzma
from pathlib import Path

_XZ_MAGIC = b"\xfd7zXZ\x00"


def extract(bzimage: Path, out: Path) -> Path | None:
    """Write the ELF vmlinux found in `bzimage`'s xz stream to `out`; None if there is none.

    QEMU boots the ELF directly through its PVH note, which skips the firmware and the
    in-guest decompression (several seconds under TCG)."""
    data = bzimage.read_bytes()
    pos = data.find(_XZ_MAGIC)
    while pos >= 0:
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[pos:])
        except lzma.LZMAError:
            elf = b""
        if elf[:4] == b"\x7fELF":
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_bytes(elf)
            tmp.rename(out)
            return out
        pos = data.find(_XZ_MAGIC, pos + 1)
    return None
