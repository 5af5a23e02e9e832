"""Read the two things the harness needs from ELF files: DT_NEEDED and a module's .modinfo."""

from __future__ import annotations

import struct
from pathlib import Path

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_DYN = struct.Struct("<qQ")
_SHT_DYNAMIC = 6
_DT_NEEDED = 1


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _sections(data: bytes) -> list[tuple[str, int, int, int, int]]:
    """(name, type, offset, size, link) for each section of a little-endian ELF64 file."""
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    fields = _EHDR.unpack_from(data)
    shoff, shentsize, shnum, shstrndx = fields[6], fields[11], fields[12], fields[13]
    if shentsize != _SHDR.size or shoff + shnum * shentsize > len(data) or shstrndx >= shnum:
        return []
    raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    stroff, strsize = raw[shstrndx][4], raw[shstrndx][5]
    names = data[stroff : stroff + strsize]
    out = []
    for sh_name, sh_type, _fl, _addr, off, size, link, _i, _al, _es in raw:
        end = names.find(b"\0", sh_name)
        out.append((names[sh_name:end].decode("ascii", "replace"), sh_type, off, size, link))
    return out


def needed(path: Path) -> list[str]:
    """The DT_NEEDED sonames of a shared object or executable ([] if static or not ELF)."""
    data = path.read_bytes()
    secs = _sections(data)
    for _name, sh_type, off, size, link in secs:
        if sh_type != _SHT_DYNAMIC or link >= len(secs):
            continue
        stroff = secs[link][2]
        result = []
        for pos in range(off, off + size - _DYN.size + 1, _DYN.size):
            tag, val = _DYN.unpack_from(data, pos)
            if tag == 0:
                break
            if tag == _DT_NEEDED:
                end = data.find(b"\0", stroff + val)
                result.append(data[stroff + val : end].decode())
        return result
    return []


def modinfo(path: Path) -> dict[str, list[str]]:
    """A kernel module's .modinfo as key -> values (e.g. 'depends', 'alias', 'softdep')."""
    data = path.read_bytes()
    info: dict[str, list[str]] = {}
    for name, _t, off, size, _l in _sections(data):
        if name != ".modinfo":
            continue
        for item in data[off : off + size].split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    return info
