"""Extract the uncompressed vmlinux from a bzImage (xz or zstd), as scripts/extract-vmlinux
does."""

from __future__ import annotations

import lzma
import shutil
import struct
import subprocess
from pathlib import Path

_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _payload(data: bytes) -> bytes:
    """The compressed kernel named by the boot protocol's setup header
    (Documentation/arch/x86/boot.rst: setup_sects at 0x1f1, payload_offset and
    payload_length at 0x248 and 0x24c, counted from the protected-mode code)."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return b""
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return data[start : start + length]


def _unzstd(payload: bytes) -> bytes:
    """Debian 12's 6.12 line compresses with zstd; Python 3.11 has no zstd, the zstd tool
    does (.ci/run installs it). The kernel's build appends the decompressed size (le32) after
    the frame (scripts/Makefile.lib, size_append); it is left out, and checked."""
    if shutil.which("zstd") is None or len(payload) < 8:
        return b""
    proc = subprocess.run(["zstd", "-dc"], input=payload[:-4], capture_output=True, check=False)
    size = struct.unpack("<I", payload[-4:])[0]
    if proc.returncode != 0 or len(proc.stdout) != size:
        return b""
    return proc.stdout


def extract(bzimage: Path, out: Path) -> Path | None:
    """Write the ELF vmlinux found in `bzimage`'s xz or zstd stream to `out`; None if there
    is none.

    QEMU boots the ELF directly through its PVH note, which skips the firmware and the
    in-guest decompression (several seconds under TCG)."""
    data = bzimage.read_bytes()
    elf = b""
    payload = _payload(data)
    if payload[:4] == _ZSTD_MAGIC:
        elf = _unzstd(payload)
    pos = data.find(_XZ_MAGIC)
    while pos >= 0 and elf[:4] != b"\x7fELF":
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[pos:])
        except lzma.LZMAError:
            elf = b""
        pos = data.find(_XZ_MAGIC, pos + 1)
    if elf[:4] != b"\x7fELF":
        return None
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(elf)
    tmp.rename(out)
    return out
