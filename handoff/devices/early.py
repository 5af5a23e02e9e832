"""Where each device's early (pre-driver) config space comes from, and reading the collector's
snapshot file (spec/early-snapshot.md).

Sources, in order of preference (the first that has a device wins for that device):

1. ``collector``: the snapshot file ``handoff-early-collect`` wrote from the initramfs before
   drivers bound (full config space, 256 or 4096 bytes);
2. ``earlydump``: ``pci=earlydump`` dumps from the kernel log (``/dev/kmsg``, then
   ``journalctl -k -b``, or a saved log given with ``--early-log``): 256 bytes each;
3. none: the device has no early snapshot; its live one is all the record holds.

Sources tied to the running kernel (the default snapshot path, /dev/kmsg, the journal) are
only consulted when the tree being saved is the running kernel's ``/sys``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence

from handoff._slots import Frozen, Slots
from handoff.errors import HandoffError
from handoff.record import crc32c as _py_crc32c


def crc32c(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC-32C through the C core when it is built: a snapshot holds up to 4 KiB per function
    and the pure-Python loop (the reader's independent reference) takes ~0.1 us a byte."""
    global _crc_impl
    if _crc_impl is None:
        try:
            from handoff._binding import crc32c as native
        except ImportError:  # looked up once: a failed import searches sys.path every time
            _crc_impl = _py_crc32c
        else:
            _crc_impl = lambda b, c: native(b, crc=c)
    return _crc_impl(data, crc)


_crc_impl: Callable[[bytes | memoryview, int], int] | None = None


DEFAULT_SNAPSHOT = "/run/handoff/early.bin"
EARLYDUMP_PARTIAL = "earlydump prints 256 bytes"

MAGIC = b"HDOFEARL"  # E3
VERSION_MAJOR = 1  # E4
MIN_HEADER_SIZE = 64  # E5
MAX_HEADER_SIZE = 4096
MAX_ENTRIES = 65536
HEADER = struct.Struct("<8sHHIII Q16sQ I I")  # §2
assert HEADER.size == 64
ENTRY = struct.Struct("<IBBHHHHHHBBIII")  # §3
assert ENTRY.size == 32
ENTRY_DRIVER_BOUND = 0x1


class SnapshotFileError(HandoffError, ValueError):
    """The early snapshot file is malformed (spec/early-snapshot.md §4)."""

    def __init__(self, message: str, *, offset: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.offset = offset


class EarlyEntry(Frozen):
    """One function's early config bytes and the ids the collector saw."""

    __slots__ = (
        "addr",
        "class_code",
        "data",
        "device",
        "driver_bound",
        "read_errno",
        "size",
        "vendor",
    )
    _repr_skip = ("data",)
    addr: str
    size: int
    data: bytes
    vendor: int
    device: int
    class_code: int
    driver_bound: bool
    read_errno: int

    def __init__(self, addr: str, size: int, data: bytes, vendor: int, device: int,
                 class_code: int, driver_bound: bool = False, read_errno: int = 0) -> None:
        for n, v in (("addr", addr), ("size", size), ("data", data), ("vendor", vendor),
                     ("device", device), ("class_code", class_code),
                     ("driver_bound", driver_bound), ("read_errno", read_errno)):
            object.__setattr__(self, n, v)


class SnapshotFile(Slots):
    """A validated snapshot file. ``boot_id`` is "" when zero; ``dropped`` lists the entries
    refused by their CRC."""

    __slots__ = ("boot_id", "created_ns", "dropped", "entries", "uptime_ns", "version")
    version: tuple[int, int]
    created_ns: int
    uptime_ns: int
    boot_id: str
    entries: dict[str, EarlyEntry]
    dropped: list[str]

    def __init__(self, version: tuple[int, int], created_ns: int, uptime_ns: int, boot_id: str,
                 entries: dict[str, EarlyEntry], dropped: list[str] | None = None) -> None:
        self.version = version
        self.created_ns = created_ns
        self.uptime_ns = uptime_ns
        self.boot_id = boot_id
        self.entries = entries
        self.dropped = [] if dropped is None else dropped


def read_snapshot_file(data: bytes) -> SnapshotFile:
    """Validate and decode a snapshot file following spec/early-snapshot.md §4."""
    n = len(data)
    if n < MIN_HEADER_SIZE:
        raise SnapshotFileError(f"truncated header: {n} of 64 bytes")
    (magic, major, minor, hsize, count, _flags, created, boot, uptime, total,
     hcrc) = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise SnapshotFileError("not an early snapshot (bad magic)", offset=0)
    if crc32c(data[:60]) != hcrc:
        raise SnapshotFileError("header checksum mismatch", offset=60)
    if major != VERSION_MAJOR:
        raise SnapshotFileError(
            f"snapshot is version {major}.{minor}, this reader reads {VERSION_MAJOR}.x",
            offset=8, hint="collect again with the handoff-early-collect of this release")
    if hsize < MIN_HEADER_SIZE or hsize > MAX_HEADER_SIZE or hsize % 8:
        raise SnapshotFileError(f"bad header size {hsize}", offset=12)
    if total > n or total < hsize:
        raise SnapshotFileError(f"total_size {total} does not fit the {n}-byte file",
                                offset=56)
    if count > MAX_ENTRIES:
        raise SnapshotFileError(f"entry count {count} exceeds {MAX_ENTRIES}", offset=16)
    entries: dict[str, EarlyEntry] = {}
    dropped: list[str] = []
    pos = hsize
    for i in range(count):
        if total - pos < ENTRY.size:
            raise SnapshotFileError(f"entry {i} truncated", offset=pos)
        (dom, bus, devfn, size, ln, vendor, device, _sv, _sd, _rev, eflags, cls, err,
         ecrc) = ENTRY.unpack_from(data, pos)
        if size not in (256, 4096) or ln > size:
            raise SnapshotFileError(f"entry {i}: config_size {size} / config_len {ln} invalid",
                                    offset=pos + 6)
        padded = (ln + 7) & ~7
        if pos + ENTRY.size + padded > total:
            raise SnapshotFileError(f"entry {i}: data runs past the end of the file",
                                    offset=pos + 8)
        body = data[pos + ENTRY.size: pos + ENTRY.size + ln]
        addr = f"{dom:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"
        if crc32c(body, crc32c(data[pos:pos + 28])) != ecrc:
            dropped.append(addr)
        else:
            entries[addr] = EarlyEntry(addr, size, bytes(body), vendor, device, cls,
                                       bool(eflags & ENTRY_DRIVER_BOUND), err)
        pos += ENTRY.size + padded
    import uuid

    return SnapshotFile((major, minor), created, uptime,
                        str(uuid.UUID(bytes=boot)) if any(boot) else "", entries, dropped)


class EarlyState(Frozen):
    """Early config for one device: ``source`` ("collector", "earlydump"), the bytes, the
    device's config size if the source knows it, and why it is short, if it is. ``ids`` is
    the (vendor, device) the source saw, for cross-checks; ``bound`` says a driver was
    already bound when the source read it (so the bytes may not be firmware's)."""

    __slots__ = ("bound", "data", "ids", "partial", "size", "source")
    _repr_skip = ("data",)
    source: str
    data: bytes
    size: int | None
    partial: str | None
    ids: tuple[int, int] | None
    bound: bool

    def __init__(self, source: str, data: bytes, size: int | None = None,
                 partial: str | None = None, ids: tuple[int, int] | None = None,
                 bound: bool = False) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "partial", partial)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "bound", bound)


class EarlySources(Slots):
    """The early states by address, and what was tried (for the CLI's diagnostics)."""

    __slots__ = ("notes", "states", "used")
    states: dict[str, list[EarlyState]]
    notes: list[str]
    used: list[str]

    def __init__(self, states: dict[str, list[EarlyState]] | None = None,
                 notes: list[str] | None = None, used: list[str] | None = None) -> None:
        self.states = {} if states is None else states
        self.notes = [] if notes is None else notes
        self.used = [] if used is None else used

    def best(self, addr: str) -> EarlyState | None:
        lst = self.states.get(addr)
        return lst[0] if lst else None

    def add(self, addr: str, st: EarlyState) -> None:
        self.states.setdefault(addr, []).append(st)


Runner = Callable[[Sequence[str]], str]


def run_tool(argv: Sequence[str]) -> str:
    """Run an external tool from an argv list (never a shell) and return its stdout."""
    import subprocess

    try:
        r = subprocess.run(list(argv), capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        raise OSError(f"{argv[0]} did not finish in 30 s") from None
    if r.returncode != 0:
        raise OSError(f"{argv[0]} exited with {r.returncode}: "
                      f"{r.stderr.decode(errors='replace').strip()[:200]}")
    return r.stdout.decode("utf-8", "replace")


def gather(
    *,
    running_kernel: bool,
    snapshot_path: str | os.PathLike[str] | None = None,
    early_log: str | os.PathLike[str] | None = None,
    boot_id: str = "",
    kmsg_path: str = "/dev/kmsg",
    runner: Runner = run_tool,
    cmdline_path: str = "/proc/cmdline",
) -> EarlySources:
    """Collect every available early source in preference order.

    ``running_kernel`` says the tree is this kernel's /sys, so /run/handoff/early.bin,
    /dev/kmsg and the journal describe it. An explicit ``snapshot_path`` or ``early_log`` is
    always used. ``boot_id`` (the running boot) rejects a snapshot file from another boot.
    """
    out = EarlySources()
    path = os.fspath(snapshot_path) if snapshot_path is not None else (
        DEFAULT_SNAPSHOT if running_kernel else None)
    if path is not None:
        _from_snapshot(out, path, explicit=snapshot_path is not None, boot_id=boot_id)
    _from_earlydump(out, running_kernel=running_kernel, early_log=early_log,
                    kmsg_path=kmsg_path, runner=runner, cmdline_path=cmdline_path)
    if running_kernel and not out.used:
        out.notes.append("no early device state for this boot: records hold live config only; "
                         "install the early collector (contrib/initramfs-tools or "
                         "contrib/dracut) or boot with pci=earlydump")
    return out


def _from_snapshot(out: EarlySources, path: str, *, explicit: bool, boot_id: str) -> None:
    try:
        with open(path, "rb") as f:
            raw = f.read(256 * 1024 * 1024)
    except FileNotFoundError:
        if explicit:
            out.notes.append(f"{path}: no such early snapshot")
        return
    except OSError as e:
        out.notes.append(f"{path}: cannot read the early snapshot: {e.strerror}")
        return
    try:
        snap = read_snapshot_file(raw)
    except SnapshotFileError as e:
        out.notes.append(f"{path}: early snapshot ignored: {e}")
        return
    if boot_id and snap.boot_id and snap.boot_id != boot_id:
        out.notes.append(f"{path}: early snapshot is from boot {snap.boot_id}, not this boot "
                         f"({boot_id}); ignored")
        return
    if boot_id and not snap.boot_id and not explicit:
        out.notes.append(f"{path}: early snapshot has no boot id; ignored (pass it with "
                         "--early-snapshot to trust it)")
        return
    for addr in snap.dropped:
        out.notes.append(f"{path}: entry {addr} failed its checksum; dropped")
    bound = [e.addr for e in snap.entries.values() if e.driver_bound]
    if bound:
        out.notes.append(f"{path}: {len(bound)} device(s) already had a driver when the "
                         "collector ran (built-in drivers, or modules the initramfs's PID 1 "
                         "loaded first); for those, pci=earlydump output is preferred when "
                         "there is any")
    for ent in snap.entries.values():
        partial = None
        if len(ent.data) < ent.size:
            partial = (f"read error: errno {ent.read_errno}" if ent.read_errno
                       else "short read by the collector")
        out.add(ent.addr, EarlyState("collector", ent.data, ent.size, partial,
                                     (ent.vendor, ent.device), ent.driver_bound))
    out.used.append(f"collector ({path})")


def _from_earlydump(out: EarlySources, *, running_kernel: bool,
                    early_log: str | os.PathLike[str] | None, kmsg_path: str,
                    runner: Runner, cmdline_path: str) -> None:
    if early_log is None and not running_kernel:
        return
    if early_log is None and booted_with_earlydump(cmdline_path) is False:
        return  # nothing to find; the ring buffer (and the journal) can be megabytes
    from handoff.devices import earlydump as ED

    log = None
    if early_log is not None:
        try:
            log = ED.parse_file(early_log)
        except OSError as e:
            out.notes.append(f"{early_log}: cannot read the early log: {e.strerror}")
            return
    elif running_kernel:
        whole_boot = False
        try:
            records = ED.read_kmsg(kmsg_path)
            # Record 0 still in the ring buffer: it holds the whole boot, and the journal
            # (fed from the same buffer) cannot have earlydump lines it lacks.
            whole_boot = bool(records) and ED.kmsg_seq(records[0]) == 0
            log = ED.parse_lines(records, source=kmsg_path)
        except OSError as e:
            out.notes.append(f"{kmsg_path}: not readable ({e.strerror}); trying the journal")
        if not log and not whole_boot:
            try:
                text = runner(["journalctl", "-k", "-b", "-o", "cat", "--no-pager", "-q"])
                log = ED.parse_text(text, source="journalctl -k -b")
            except OSError as e:
                out.notes.append(f"journalctl -k -b: {e}")
    if log is None:
        return
    for issue in log.issues:
        out.notes.append(f"{log.source}: {issue}")
    if not log.dumps:
        return
    for addr, dump in log.dumps.items():
        vendor = dump.data[0] | dump.data[1] << 8 if len(dump.data) >= 2 else None
        device = dump.data[2] | dump.data[3] << 8 if len(dump.data) >= 4 else None
        ids = (vendor, device) if vendor is not None and device is not None else None
        partial = None if dump.complete else f"earlydump log incomplete: {len(dump.data)} bytes"
        out.add(addr, EarlyState("earlydump", dump.data, None, partial, ids))
    out.used.append(f"earlydump ({log.source})")


def booted_with_earlydump(cmdline_path: str = "/proc/cmdline") -> bool | None:
    """Whether the kernel command line asks for ``pci=earlydump`` (None: unreadable).

    ``pci=`` takes a comma-separated list (drivers/pci/pci.c pci_setup), and the x86 early
    dump is one of its options (arch/x86/pci/common.c pcibios_setup).
    """
    try:
        with open(cmdline_path, "rb") as f:
            words = f.read(65536).decode("utf-8", "replace").split()
    except OSError:
        return None
    return any(w.startswith("pci=") and "earlydump" in w[4:].split(",") for w in words)


def resolve(sources: EarlySources, addr: str, live_size: int, vendor: int,
            device: int) -> tuple[EarlyState | None, list[str]]:
    """The early state to record for one device, and notes on sources passed over.

    A source whose ids differ from the live device is skipped (bus numbers moved between
    collection and save), as is one whose config size disagrees. A state read while a driver
    was bound (a collector entry with ``entry_flags`` bit 0) comes after every other usable
    source: ``pci=earlydump``'s 256 bytes are firmware's, the collector's 4096 then are not.
    """
    notes: list[str] = []
    usable: list[EarlyState] = []
    for st in sources.states.get(addr, []):
        if st.ids is not None and st.ids != (vendor, device):
            notes.append(f"{addr}: {st.source} saw {st.ids[0]:04x}:{st.ids[1]:04x}, live is "
                         f"{vendor:04x}:{device:04x}; {st.source} state not used")
            continue
        if st.size is not None and st.size != live_size:
            notes.append(f"{addr}: {st.source} config size {st.size} differs from live "
                         f"{live_size}; not used")
            continue
        if st.source == "earlydump" and st.partial is None and live_size > len(st.data):
            st = EarlyState(st.source, st.data, live_size, EARLYDUMP_PARTIAL, st.ids)
        usable.append(st)
    if not usable:
        return None, notes
    best = next((st for st in usable if not st.bound), usable[0])
    if best is not usable[0]:
        notes.append(f"{addr}: a driver was bound when the {usable[0].source} read it; "
                     f"using {best.source} instead (firmware's state)")
    return best, notes
