"""Host-side readers for what the guests brought back: ELF notes, config-space dumps, the
handoff records and reports, and the external tools' views of a dump (readelf, eu-readelf,
drgn, makedumpfile). Written independently of handoff's own readers, which they check."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scenario import Result

PT_NOTE = 4
COMMAND = 0x04
BUS_MASTER = 0x0004


@dataclass(frozen=True)
class Note:
    owner: str
    type: int
    desc: bytes


def elf_notes(path: Path) -> list[Note]:
    """Every note of every PT_NOTE segment of an ELF64 little-endian file."""
    out: list[Note] = []
    with path.open("rb") as f:
        eh = f.read(64)
        if eh[:4] != b"\x7fELF" or eh[4] != 2 or eh[5] != 1:
            raise ValueError(f"{path} is not an ELF64 little-endian file")
        (phoff,) = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            p_type, _flags, off, _va, _pa, filesz = struct.unpack_from(
                "<IIQQQQ", table, i * phentsize
            )
            if p_type != PT_NOTE:
                continue
            f.seek(off)
            data = f.read(filesz)
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
                pos += 12
                name = data[pos : pos + namesz].rstrip(b"\0").decode("ascii", "replace")
                pos += (namesz + 3) & ~3
                out.append(Note(name, ntype, data[pos : pos + descsz]))
                pos += (descsz + 3) & ~3
    return out


def vmcoreinfo(notes: list[Note]) -> dict[str, str]:
    desc = next(n.desc for n in notes if n.owner == "VMCOREINFO")
    return dict(
        line.split("=", 1) for line in desc.decode("ascii", "replace").splitlines() if "=" in line
    )


# Note lines are indented by two spaces; their decoded contents by more.
_READELF_NOTE = re.compile(r"^  (\S+)\s+0x[0-9a-f]+\s+(\S.*?)\s*$")
_EU_READELF_NOTE = re.compile(r"^  (\S+)\s+\d+\s+(\S.*?)\s*$")


def tool_notes(tool: str, path: Path) -> list[tuple[str, str]]:
    """(owner, type as the tool names it) for each note `readelf -n` or `eu-readelf -n` lists."""
    proc = subprocess.run([tool, "-n", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{tool} -n {path} exited {proc.returncode}: {proc.stderr[-500:]}")
    pattern = _EU_READELF_NOTE if tool.startswith("eu-") else _READELF_NOTE
    out = []
    for line in proc.stdout.splitlines():
        m = pattern.match(line)
        if m and m.group(1) not in ("Owner",):
            out.append((m.group(1), m.group(2)))
    return out


def makedumpfile_compressed(dump: Path, out: Path) -> Path:
    """``dump`` re-compressed by the real makedumpfile (-c -d 31, as kdump-tools runs it) into
    ``out``; its output is in the assertion when it fails."""
    assert shutil.which("makedumpfile"), "makedumpfile missing: bash .ci/e2e-deps"
    proc = subprocess.run(["makedumpfile", "-c", "-d", "31", str(dump), str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def config_dir(result: Result, name: str) -> dict[str, bytes]:
    """A dump_config directory: BDF -> config-space bytes."""
    prefix = f"{name}/"
    return {
        Path(k).stem: p.read_bytes()
        for k, p in result.files.items()
        if k.startswith(prefix) and k.endswith(".bin")
    }


def u16(cfg: bytes, off: int) -> int:
    return int.from_bytes(cfg[off : off + 2], "little")


def u32(cfg: bytes, off: int) -> int:
    return int.from_bytes(cfg[off : off + 4], "little")


# Registers the scenarios perturb (lib.sh perturb_ahci): setpci name -> (offset, width).
REGISTERS = {
    "COMMAND": (0x04, 2),
    "BASE_ADDRESS_5": (0x24, 4),
    "CACHE_LINE_SIZE": (0x0C, 1),
    "INTERRUPT_LINE": (0x3C, 1),
}


def reg(cfg: bytes, name: str) -> int:
    off, width = REGISTERS[name]
    return int.from_bytes(cfg[off : off + width], "little")


def perturbed(result: Result) -> dict[str, tuple[int, int]]:
    """REG -> (value before, value after) from lib.sh perturb_ahci's file."""
    out = {}
    for line in result.text("first/perturbed").splitlines():
        name, before, after = line.split()
        out[name] = (int(before, 16), int(after, 16))
    return out


def record_device(record_path: Path, addr: str) -> dict[str, Any]:
    """The device entry of the newest valid record in a file (read with handoff's reader)."""
    import handoff

    found = [f.record for f in handoff.read(str(record_path)) if f.record is not None]
    assert found, f"no valid record in {record_path}"
    rec = max(found, key=lambda r: r.generation)
    return next(d for d in rec.devices if d["addr"] == addr)


def snapshot(device: dict[str, Any], which: str) -> bytes:
    from handoff.payload import snapshot_bytes

    return snapshot_bytes(device[which])


def report_device(report: dict[str, Any], addr: str) -> dict[str, Any]:
    return next(d for d in report["devices"] if d["addr"] == addr)


def inspect_json(path: Path) -> tuple[int, dict[str, Any]]:
    """`handoff inspect --json PATH` on the host, from the working tree: (exit code, doc)."""
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "handoff", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        doc = json.loads(proc.stdout)
    except ValueError as e:
        raise AssertionError(
            f"handoff inspect --json {path} exited {proc.returncode} without JSON: "
            f"{proc.stdout[-500:]}{proc.stderr[-1000:]}"
        ) from e
    return proc.returncode, doc


def bar_state(result: Result, name: str) -> dict[str, str]:
    """lib.sh bar_state's file: register name -> value (or "error: ...")."""
    out = {}
    for line in result.text(name).splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def console_lines(result: Result, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return [line for line in result.serial_log.splitlines() if rx.search(line)]


def dump_dir(result: Result) -> Path:
    """The directory `handoff capture` made on the results disk (capture/<timestamp>/)."""
    dumps = sorted(
        {p.parent for k, p in result.files.items() if re.match(r"capture/[^/]+/vmcore$", k)}
    )
    assert len(dumps) == 1, f"expected one capture/<timestamp>/vmcore, found {dumps}"
    return dumps[0]


# -- the early collector's snapshot and the first kernel's logs (early-* scenarios) ----------

# The tests' one reference CRC-32C (tests/ is on sys.path under pytest, via tests/conftest.py).
from helpers.reference import crc32c_ref as crc32c


@dataclass(frozen=True)
class EarlyEntry:
    addr: str
    config_size: int
    data: bytes
    vendor: int
    device: int
    driver_bound: bool
    read_errno: int


@dataclass(frozen=True)
class EarlySnapshot:
    version: tuple[int, int]
    flags: int
    created_ns: int
    boot_id: str  # text form, as /proc/sys/kernel/random/boot_id
    uptime_ns: int
    entries: dict[str, EarlyEntry]


def early_snapshot(raw: bytes) -> EarlySnapshot:
    """Parse spec/early-snapshot.md 1.x strictly: every checksum must hold, the entries must
    fill the file exactly and come in address order (what a correct collector writes)."""
    assert len(raw) >= 64, f"snapshot of {len(raw)} bytes"
    magic, major, minor, hsize, count, flags, created, boot, uptime, total, hcrc = (
        struct.unpack_from("<8sHHIIIQ16sQII", raw, 0)
    )
    assert magic == b"HDOFEARL", magic
    assert crc32c(raw[:60]) == hcrc, "header CRC-32C mismatch"
    assert major == 1 and hsize >= 64 and hsize % 8 == 0, (major, hsize)
    assert total == len(raw), f"total_size {total} != file size {len(raw)}"
    entries: dict[str, EarlyEntry] = {}
    pos = hsize
    for i in range(count):
        dom, bus, devfn, size, ln, ven, dev, _sv, _sd, _rev, eflags, _cls, err, ecrc = (
            struct.unpack_from("<IBBHHHHHHBBIII", raw, pos)
        )
        assert size in (256, 4096) and ln <= size, (i, size, ln)
        data = raw[pos + 32 : pos + 32 + ln]
        assert crc32c(data, crc32c(raw[pos : pos + 28])) == ecrc, f"entry {i} CRC mismatch"
        addr = f"{dom:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"
        assert not entries or addr > max(entries), f"entry {addr} out of order"
        entries[addr] = EarlyEntry(addr, size, data, ven, dev, bool(eflags & 1), err)
        pos += 32 + ((ln + 7) & ~7)
    assert pos == total, f"entries end at {pos}, total_size {total}"
    b = boot.hex()
    boot_text = f"{b[:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{b[20:]}" if any(boot) else ""
    return EarlySnapshot((major, minor), flags, created, boot_text, uptime, entries)


_KLOG = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")


def kernel_log(text: str) -> list[tuple[float, str]]:
    """(seconds since boot, message) for each line of `dmesg` output."""
    out = []
    for line in text.splitlines():
        m = _KLOG.match(line)
        if m:
            out.append((float(m.group(1)), m.group(2)))
    return out


def first_event(log: list[tuple[float, str]], pattern: str) -> tuple[float, str]:
    rx = re.compile(pattern)
    found = [(t, msg) for t, msg in log if rx.search(msg)]
    assert found, f"no kernel log line matches {pattern!r}"
    return found[0]


def earlydump(text: str) -> dict[str, bytes]:
    """pci=earlydump's 256-byte dumps from `dmesg` output, by address."""
    out: dict[str, bytes] = {}
    cur = None
    for _t, msg in kernel_log(text):
        m = re.match(r"pci (\S+): config space:$", msg)
        if m:
            cur = m.group(1)
            out[cur] = b""
            continue
        m = re.match(r"([0-9a-f]{8}): ((?:[0-9a-f]{2} ){15}[0-9a-f]{2})$", msg.strip())
        if m and cur is not None:
            assert int(m.group(1), 16) == len(out[cur]), (cur, msg)
            out[cur] += bytes.fromhex(m.group(2).replace(" ", ""))
            if len(out[cur]) == 256:
                cur = None
    return out


@dataclass(frozen=True)
class ModuleLoad:
    t: float
    task: str  # comm-pid, as ftrace prints it
    module: str


_TRACE = re.compile(r"^\s*(.+?-\d+)\s+\[\d+\]\s+\S+\s+(\d+\.\d+): module_load: (\S+)")


def module_loads(text: str) -> list[ModuleLoad]:
    """The module_load events of an ftrace buffer (trace_event=module:module_load)."""
    out = []
    for line in text.splitlines():
        m = _TRACE.match(line)
        if m:
            out.append(ModuleLoad(float(m.group(2)), m.group(1), m.group(3)))
    return out
