"""Write synthetic ELF64 core files (vmcores) for tests, instead of committing dumps.

Layout follows the kernel's /proc/vmcore: ELF header, program headers (one PT_NOTE first, then
PT_LOADs), the note segment, then page-aligned PT_LOAD data. PT_LOAD data is never written
unless given, so a 64 GiB "vmcore" is a sparse file of a few KiB on disk.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from helpers.recordgen import note

ET_CORE = 4
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
PAGE = 4096


@dataclass
class Load:
    paddr: int
    size: int
    vaddr: int | None = None
    data: bytes | None = None  # written at the start of the segment; the rest is a hole


def prstatus(pid: int = 1) -> bytes:
    """An x86-64 struct elf_prstatus (336 bytes) with only pr_pid set."""
    d = bytearray(336)
    struct.pack_into("<i", d, 32, pid)
    return bytes(d)


def vmcoreinfo(osrelease: str = "6.1.0-28-amd64", *, crashtime: int | None = 1700000000,
               pagesize: int = 4096, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"OSRELEASE={osrelease}", "BUILD-ID=0123456789abcdef0123456789abcdef01234567",
             f"PAGESIZE={pagesize}", "SYMBOL(init_uts_ns)=ffffffff82a12340",
             "OFFSET(uts_namespace.name)=0", "SYMBOL(swapper_pg_dir)=ffffffff82a0b000",
             "KERNELOFFSET=1000000"]
    for k, v in (extra or {}).items():
        lines.append(f"{k}={v}")
    if crashtime is not None:
        lines.append(f"CRASHTIME={crashtime}")
    return ("\n".join(lines) + "\n").encode()


def default_notes(cpus: int = 2, vmci: bytes | None = None) -> list[bytes]:
    out = [note(prstatus(i + 1), 1, b"CORE\x00") for i in range(cpus)]
    out.append(note(vmci if vmci is not None else vmcoreinfo(), 0, b"VMCOREINFO\x00"))
    return out


def core_header(notes: bytes, loads: Sequence[Load], *, machine: int = EM_X86_64,
                e_type: int = ET_CORE, note_offset: int | None = None,
                phnum: int | None = None, room: int = 0) -> tuple[bytes, list[int]]:
    """The ELF header, program headers and notes, and the file offset of each PT_LOAD.
    ``room``: at least that many free bytes after the notes, as `handoff capture` leaves."""
    nph = 1 + len(loads)
    phoff = EHDR.size
    noff = note_offset if note_offset is not None else phoff + nph * PHDR.size
    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)
    eh = EHDR.pack(ident, e_type, machine, 1, 0, phoff, 0, 0, EHDR.size, PHDR.size,
                   nph if phnum is None else phnum, 0, 0, 0)
    phs = [PHDR.pack(PT_NOTE, 0, noff, 0, 0, len(notes), len(notes), 0)]
    offsets = []
    at = -(-(noff + len(notes) + room) // PAGE) * PAGE
    for ld in loads:
        vaddr = ld.vaddr if ld.vaddr is not None else 0xFFFF888000000000 + ld.paddr
        phs.append(PHDR.pack(PT_LOAD, 7, at, vaddr, ld.paddr, ld.size, ld.size, 0))
        offsets.append(at)
        at += ld.size
    head = bytearray(eh + b"".join(phs))
    if noff < len(head):
        raise ValueError("note offset overlaps the program headers")
    head += bytes(noff - len(head)) + notes
    return bytes(head), offsets


def write_core(f: BinaryIO, notes: Sequence[bytes] | None = None,
               loads: Sequence[Load] = (Load(0x100000, 1 << 20),), **kw: object) -> int:
    """Write a core to ``f`` (sparse: only headers, notes and given load data). Returns size."""
    blob = b"".join(notes if notes is not None else default_notes())
    head, offsets = core_header(blob, loads, **kw)  # type: ignore[arg-type]
    f.seek(0)
    f.write(head)
    end = len(head)
    for ld, off in zip(loads, offsets):
        if ld.data:
            f.seek(off)
            f.write(ld.data)
        end = max(end, off + ld.size)
    f.truncate(end)
    return end


def core_bytes(notes: Sequence[bytes] | None = None,
               loads: Sequence[Load] = (Load(0x100000, 16 * PAGE),), **kw: object) -> bytes:
    import io

    b = io.BytesIO()
    end = write_core(b, notes, loads, **kw)
    return b.getvalue().ljust(end, b"\x00")  # BytesIO.truncate does not extend


# --- a core makedumpfile accepts ---------------------------------------------------------------
# makedumpfile reads the utsname from memory through the page tables (check_release) and needs
# the page struct layout to pick a memory model (get_mem_type); with dump level 1 (exclude zero
# pages) it needs nothing else. Everything lives in the first MiB of a small "RAM".
START_KERNEL_MAP = 0xFFFFFFFF80000000
PAGE_OFFSET = 0xFFFF888000000000
_PGD, _PUD, _UTS, _MEMMAP = 0x10000, 0x11000, 0x12340, 0x13000


def makedumpfile_core(f: BinaryIO, extra_notes: Sequence[bytes] = (), *, ram: int = 4 << 20,
                      release: str = "6.1.0-28-amd64", nodename: str = "testhost",
                      crashtime: int = 1700000000) -> int:
    """Write a tiny x86-64 ELF vmcore that makedumpfile 1.7 turns into a real dump (-d 1)."""
    mem = bytearray(_MEMMAP + 8)
    struct.pack_into("<Q", mem, _PGD + 511 * 8, _PUD | 0x63)  # PGD[511] -> PUD page
    struct.pack_into("<Q", mem, _PUD + 510 * 8, 0xE3)  # PUD[510]: 1 GiB page at phys 0 (PSE)
    struct.pack_into("<Q", mem, _MEMMAP, 0xFFFFEA0000000000)  # mem_map (FLATMEM)
    for i, s in enumerate((b"Linux", nodename.encode(), release.encode(), b"#1 SMP", b"x86_64",
                           b"(none)")):
        mem[_UTS + 65 * i : _UTS + 65 * i + len(s)] = s
    k = START_KERNEL_MAP
    vmci = "".join(f"{line}\n" for line in (
        f"OSRELEASE={release}", "PAGESIZE=4096",
        f"SYMBOL(init_uts_ns)={k + _UTS:x}", "OFFSET(uts_namespace.name)=0",
        f"SYMBOL(init_top_pgt)={k + _PGD:x}", f"SYMBOL(swapper_pg_dir)={k + _PGD:x}",
        f"SYMBOL(mem_map)={k + _MEMMAP:x}", "SIZE(page)=64", "OFFSET(page.flags)=0",
        "OFFSET(page._refcount)=52", "OFFSET(page.mapping)=24", f"CRASHTIME={crashtime}",
    )).encode()
    notes = default_notes(vmci=vmci) + list(extra_notes)
    return write_core(f, notes, [Load(0, ram, vaddr=PAGE_OFFSET, data=bytes(mem))])
