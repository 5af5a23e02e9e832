"""Inputs the bench builds for itself under bench/work/: dumps, fake sysfs trees, records.

Nothing here is committed: ELF cores come from tests/helpers/elfwriter.py (sparse: a 64 GiB core takes
a few KiB on disk), kdump-compressed dumps from the real makedumpfile, sysfs trees from
tests/helpers/fakesysfs.py (replicating real config-space dumps).
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.env import ROOT, WORK, tool
from bench.table import fmt

sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "tests")) if p not in sys.path]

from helpers import elfwriter as W
from helpers import fakesysfs
from helpers import kdumpwriter as K
from helpers import recordgen as G

# The e2e harness's real vmcore (a 512 MiB q35 guest with crashkernel=128M, Debian 6.1).
E2E_CACHE = ROOT / "tests" / "e2e" / "cache"
E2E_VMCORE = E2E_CACHE / "runs" / "baseline" / "out" / "capture" / "vmcore"

PAGE = 4096


def sample_record(n: int = 13) -> bytes:
    return G.make_record(G.sample_payload(n))


def elf_core(path: Path, mem: int, record: bytes) -> Path:
    """A sparse ELF vmcore: 2 CPUs' PRSTATUS, VMCOREINFO, one HANDOFF record note, and four
    PT_LOADs of ``mem`` bytes in all, like a QEMU guest's /proc/vmcore."""
    q = mem // 4
    with open(path, "wb") as f:
        W.write_core(f, W.default_notes(cpus=2) + [G.note(record)],
                     [W.Load(i * q, q) for i in range(4)])
    return path


@dataclass
class Dump:
    path: Path
    label: str  # what it is, for the table's input column
    real_log: bool  # holds a real kernel log (makedumpfile --dump-dmesg works)


def copy_e2e_vmcore(dest: Path) -> Path | None:
    """A copy of the e2e harness's real vmcore at ``dest``; None when there has never been one.

    The harness rewrites (and first deletes) it on every baseline run, so it is never used in
    place: each complete one seen is kept as bench/work/e2e-vmcore.elf, and that copy is used
    while the harness's is missing or half written."""
    cached = WORK / "e2e-vmcore.elf"
    stamp = cached.with_suffix(".stamp")
    try:
        st = E2E_VMCORE.stat()
        mark = f"{st.st_size} {st.st_mtime_ns}"
    except OSError:
        mark = None
    if mark and st.st_size >= (1 << 20) and (not cached.exists() or not stamp.exists()
                                             or stamp.read_text() != mark):
        tmp = cached.with_suffix(".tmp")
        subprocess.run(["cp", "--sparse=always", str(E2E_VMCORE), str(tmp)], check=True)
        end = _elf_end(tmp)
        if end is not None and tmp.stat().st_size >= end:
            tmp.replace(cached)
            stamp.write_text(mark)
        else:
            tmp.unlink(missing_ok=True)
    if not cached.exists():
        return None
    subprocess.run(["cp", "--sparse=always", str(cached), str(dest)], check=True)
    return dest


def _elf_end(path: Path) -> int | None:
    """Where the last segment of an ELF64 core ends, or None if it is not one."""
    with open(path, "rb") as f:
        eh = f.read(64)
        if len(eh) < 64 or eh[:4] != b"\x7fELF" or eh[4] != 2:
            return None
        phoff, = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        if phentsize < 56 or not 0 < phnum < 4096:
            return None
        f.seek(phoff)
        tab = f.read(phentsize * phnum)
    end = 0
    for i in range(phnum):
        _, _, off, _, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", tab, i * phentsize)
        end = max(end, off + filesz)
    return end


def kdump_dump(work: Path, record: bytes) -> Dump:
    """A kdump-compressed dump made by makedumpfile, with a HANDOFF record note in it.

    From the e2e's real vmcore when there is one (``-c -d 31``, a real kernel log inside);
    else from tests/helpers/elfwriter.py's makedumpfile_core (``-c -d 1``, no log)."""
    from handoff.capture.inject import inject_notes_copy
    from handoff.record import NT_HANDOFF_RECORD

    mdf = tool("makedumpfile")
    if mdf is None:
        raise FileNotFoundError("makedumpfile not installed (apt-get install makedumpfile)")
    out = work / "dump.kdump"
    out.unlink(missing_ok=True)
    elf = work / "dump-source.elf"
    elf.unlink(missing_ok=True)
    real = copy_e2e_vmcore(elf)
    if real is not None:
        # makedumpfile carries an extra ELF note into its output (facts/kdump-in-qemu.md).
        # A /proc/vmcore copy has no room for it where crash reads notes: a copy with room.
        noted = work / "dump-source-notes.elf"
        noted.unlink(missing_ok=True)
        inject_notes_copy(elf, noted, [(NT_HANDOFF_RECORD, record)], sync=False)
        noted.replace(elf)
        args, label = ["-c", "-d", "31"], (
            f"e2e's real q35 vmcore ({elf.stat().st_size / 2**20:.0f} MiB, Debian 6.1) → "
            "makedumpfile -c -d 31")
    else:
        with open(elf, "wb") as f:
            W.makedumpfile_core(f, [G.note(record)])
        args, label = ["-c", "-d", "1"], "synthetic 4 MiB core → makedumpfile -c -d 1"
    subprocess.run([mdf, *args, str(elf), str(out)], check=True, capture_output=True)
    elf.unlink()
    return Dump(out, f"{label}, {fmt(out.stat().st_size, 'bytes')}", real is not None)


# -- sysfs trees -------------------------------------------------------------------------------

_SCRATCH: list[Path] = []


def scratch() -> Path:
    """A directory in memory (tmpfs) for fake sysfs trees, removed when the bench exits.

    /sys is an in-memory file system, and so is tmpfs; on this VM's ext4 creating the 12,000
    files of a 1024-function tree takes ~10 s (0.6 ms per open(O_CREAT)) against 0.9 s on
    tmpfs. Falls back to bench/work/ where /dev/shm is not writable.
    """
    if not _SCRATCH:
        base = Path("/dev/shm")
        if not (base.is_dir() and os.access(base, os.W_OK)):
            base = WORK
        d = base / f"handoff-bench-{os.getpid()}"
        d.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, d, True)
        _SCRATCH.append(d)
    return _SCRATCH[0]


def fake_tree(n: int) -> Path:
    """tests/helpers/fakesysfs.py synthetic_tree of ``n`` functions (built once per bench run)."""
    root = scratch() / f"sysfs-{n}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        fakesysfs.synthetic_tree(root, n)
        (root / ".complete").write_text("")
    return root


def fake_proc(dest: Path, record: bytes) -> Path:
    """A /proc as the capture kernel sees it after `handoff load`: a cmdline naming the record's
    boot and generation, and a vmcore whose VMCOREINFO names the record's kernel."""
    from handoff.record import parse

    rec = parse(record, validate_schema=False)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "cmdline").write_text(
        f"console=ttyS0 reset_devices nr_cpus=1 irqpoll handoff.generation={rec.generation} "
        f"handoff.boot_id={rec.boot_id}\n")
    with open(dest / "vmcore", "wb") as f:
        W.write_core(f, W.default_notes(vmci=W.vmcoreinfo(rec.kernel_release)),
                     [W.Load(0x100000, 1 << 20)])
    return dest


def early_from_live(live: bytes) -> bytes:
    """What firmware left, as the early collector would see it: decoding enabled, Bus Master
    off, MSI-X not enabled (bit 15 of Message Control cleared at every MSI-X capability)."""
    c = bytearray(live)
    if len(c) > 4:
        c[4] &= ~0x04 & 0xFF
    ptr = c[0x34] if len(c) > 0x34 else 0
    seen = 0
    while 0x40 <= ptr < min(len(c), 256) - 3 and seen < 48:
        if c[ptr] == 0x11:  # MSI-X
            c[ptr + 3] &= 0x7F
        ptr = c[ptr + 1]
        seen += 1
    return bytes(c)


def device_payload(n: int) -> tuple[dict, int]:
    """The payload map of ``n`` devices of a fake tree, each with early and live state, and
    the raw config bytes it carries (early + live, full config-space sizes)."""
    from handoff.devices.model import Snapshot
    from handoff.save import build_payload, collect_devices
    from handoff.sysfs import SysfsTree

    res = collect_devices(SysfsTree(fake_tree(n)), running_kernel=False, privileged=True)
    raw = 0
    for d in res.devices:
        d.early = Snapshot("collector", d.live.size, early_from_live(d.live.data))
        raw += d.live.size + d.early.size
    return build_payload(res.devices), raw


# -- big files --------------------------------------------------------------------------------

def vmcore_like(path: Path, size: int, zero_fraction: float = 0.5, seed: int = 1) -> Path:
    """An ELF64 core written in full, not sparse (like /proc/vmcore): header, a VMCOREINFO
    note at 4 KiB, one PT_LOAD from 8 KiB. Its pages come in runs of 1-64 pages, zero with
    probability ``zero_fraction`` (free memory comes in runs), else random."""
    if path.exists() and path.stat().st_size == size + 8192 and \
            path.with_suffix(".ok").exists():
        return path
    rnd = random.Random(seed)
    desc = b"OSRELEASE=6.1.0-bench-amd64\nPAGESIZE=4096\n"
    note = struct.pack("<III", 11, len(desc), 0) + b"VMCOREINFO\x00\x00" + desc
    note += bytes(-len(note) % 4)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1, 0,
                       64, 0, 0, 64, 56, 2, 0, 0, 0)
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, 4096, 0, 0, len(note), len(note), 4)
    phdrs += struct.pack("<IIQQQQQQ", 1, 7, 8192, 0xFFFF888000000000, 0, size, size, PAGE)
    pool = os.urandom(16 << 20)
    zero = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(ehdr + phdrs)
        f.write(bytes(4096 - f.tell()))
        f.write(note)
        f.write(bytes(8192 - f.tell()))
        left = size
        while left:
            n = min(left, rnd.randint(1, 64) * PAGE)
            if rnd.random() < zero_fraction:
                f.write(zero[:n])
            else:
                at = rnd.randrange(0, len(pool) - n) & ~(PAGE - 1)
                f.write(pool[at:at + n])
            left -= n
        f.flush()
        os.fsync(f.fileno())
    path.with_suffix(".ok").write_text(json.dumps({"size": size, "zero": zero_fraction}))
    return path


def sparse_dump(path: Path, fmt: str, size: int, data_kib: int = 64) -> Path:
    """A sparse dump of ``size`` bytes with ``data_kib`` KiB of data at the start of every
    MiB (1 GiB of data in a 16 GiB dump), ELF or kdump-compressed headers. The ELF dump is
    laid out as `handoff capture` saves one: room for notes after its note segment."""
    from handoff.capture.layout import SPARE_ROOM

    data = os.urandom(data_kib << 10)
    if fmt == "elf":
        room = SPARE_ROOM + (64 << 10)  # the spare, and as much again for the record
        with path.open("wb") as f:
            W.write_core(f, loads=[W.Load(0x100000, size - (1 << 20))], room=room)
        base = 1 << 20
    else:
        head = K.kdump_bytes(max_mapnr=size // PAGE)
        path.write_bytes(head)
        base = -(-len(head) // (1 << 20)) * (1 << 20)
    with path.open("r+b") as f:
        for off in range(base, size - len(data), 1 << 20):
            f.seek(off)
            f.write(data)
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())
    return path
