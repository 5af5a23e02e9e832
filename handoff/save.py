"""Save: walk the PCI tree, attach early state, choose policies, and write a record.

``collect_devices`` builds the device model; ``build_payload`` turns it into the payload map
of payload.cddl; ``save`` encodes a record through the C core and writes it atomically,
numbering it one past the generation already in the output file when that file holds a
valid record of the same boot (format.md R17).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from handoff._slots import Slots
from handoff.devices.model import PciDevice, Snapshot
from handoff.sysfs import SysfsTree

# --- policy: the single hook point -------------------------------------------------------

def default_policy(device: PciDevice) -> str:
    """THE hook for per-device default policy: the built-in defaults
    (``handoff.devices.patterns``, which ``handoff.restore.policy`` wraps), so what save
    records is what restore would choose without a policy file."""
    from handoff.devices.patterns import default_action

    return default_action(device)


# --- collection --------------------------------------------------------------------------

class SaveResult(Slots):
    """What ``collect_devices`` found, plus the record when one was written. ``notes`` are
    the early sources' diagnostics."""

    __slots__ = (
        "devices",
        "early_sources",
        "generation",
        "notes",
        "path",
        "record",
        "warnings",
    )
    _repr_skip = ("record",)
    devices: list[PciDevice]
    warnings: list[str]
    notes: list[str]
    early_sources: list[str]
    generation: int
    record: bytes
    path: str | None

    def __init__(self, devices: list[PciDevice], warnings: list[str] | None = None,
                 notes: list[str] | None = None, early_sources: list[str] | None = None,
                 generation: int = 0, record: bytes = b"", path: str | None = None) -> None:
        self.devices = devices
        self.warnings = [] if warnings is None else warnings
        self.notes = [] if notes is None else notes
        self.early_sources = [] if early_sources is None else early_sources
        self.generation = generation
        self.record = record
        self.path = path

    @property
    def partial(self) -> list[PciDevice]:
        return [d for d in self.devices if d.live.partial]


def is_running_kernel_tree(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is this kernel's sysfs (so kmsg and /run describe the same devices)."""
    try:
        return os.path.samefile(root, "/sys")
    except OSError:
        return False


def collect_devices(
    tree: SysfsTree | None = None,
    *,
    early_snapshot: str | os.PathLike[str] | None = None,
    early_log: str | os.PathLike[str] | None = None,
    privileged: bool | None = None,
    running_kernel: bool | None = None,
    boot_id: str = "",
    policy: Callable[[PciDevice], str] = default_policy,
    kmsg_path: str = "/dev/kmsg",
    runner: Callable[..., str] | None = None,
    cmdline_path: str = "/proc/cmdline",
) -> SaveResult:
    """Walk ``tree`` (default /sys), attach each device's early state and default policy."""
    from handoff.devices import early as EARLY
    from handoff.devices.pci import collect

    tree = tree or SysfsTree()
    if running_kernel is None:
        running_kernel = is_running_kernel_tree(tree.root_dir)
    coll = collect(tree, privileged=privileged)
    kw: dict[str, Any] = {}
    if runner is not None:
        kw["runner"] = runner
    sources = EARLY.gather(running_kernel=running_kernel, snapshot_path=early_snapshot,
                           early_log=early_log, boot_id=boot_id, kmsg_path=kmsg_path,
                           cmdline_path=cmdline_path, **kw)
    res = SaveResult(coll.devices, list(coll.warnings), list(sources.notes), list(sources.used))
    for dev in coll.devices:
        st, notes = EARLY.resolve(sources, dev.addr, dev.live.size, dev.ids.vendor,
                                  dev.ids.device)
        res.notes.extend(notes)
        if st is not None:
            size = st.size if st.size in (256, 4096) else dev.live.size
            dev.early = Snapshot(st.source, size, st.data[:size], st.partial)
        dev.policy = policy(dev)
    res.devices = _writable(res.devices, res.warnings)
    return res


def _writable(devices: list[PciDevice], warnings: list[str]) -> list[PciDevice]:
    """The devices whose entries the reader's schema accepts (R20); each other one is skipped
    with a warning, so one odd sysfs entry never costs the record (and every device in it)."""
    from handoff.errors import SchemaViolation
    from handoff.payload import validate_device

    keep = []
    for d in devices:
        try:
            validate_device(d.to_payload(), "", None)
        except SchemaViolation as e:
            warnings.append(f"{d.addr!r}: skipped, the record cannot hold it: {e}")
            continue
        keep.append(d)
    return keep


def early_source(dev: PciDevice) -> str:
    """Where a device's early state came from, for display: the source, or "live"."""
    return dev.early.source if dev.early is not None else "live"


# --- payload and record -------------------------------------------------------------------

def build_payload(devices: list[PciDevice]) -> dict[str, Any]:
    """The payload map (payload.cddl) for a device list."""
    return {"v": 1, "devices": [d.to_payload() for d in devices]}


def previous_generation(path: str | os.PathLike[str], boot_id: str) -> int:
    """Generation of the valid record already at ``path`` if it is from boot ``boot_id``,
    else 0 (absent, unreadable, invalid, another boot, or not a regular file)."""
    from handoff import errors, record

    try:
        st = os.stat(path)
    except OSError:
        return 0
    if not boot_id or not stat.S_ISREG(st.st_mode) or \
            st.st_size > record.MAX_PAYLOAD_SIZE + 8192:
        return 0
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return 0
    try:
        return _generation_native(raw, boot_id)
    except ImportError:
        pass
    except (ValueError, errors.HandoffError):
        return 0
    try:
        rec = record.parse(raw, exact=True, validate_schema=False)
    except errors.HandoffError:
        return 0
    return rec.generation if rec.boot_id == boot_id else 0


def _generation_native(raw: bytes, boot_id: str) -> int:
    """The C core's §8 steps 1-10 (the C core writes the record anyway; the Python reader's
    SHA-256 would import OpenSSL's _hashlib for this one check)."""
    from handoff import _binding

    info = _binding.check_record(raw, exact=True)  # §8 steps 1-10: the reader's verdict
    if info["boot_id"] != bytes.fromhex(boot_id.replace("-", "")):
        return 0
    return int(info["generation"])


def check_output(path: str | os.PathLike[str], *, force: bool = False) -> bool:
    """Refuse an output path before any work is done: one under /sys or /proc, in a directory
    that does not exist, a symlink, or an existing file that is not a record (unless
    ``force``). Returns whether it is a special file (``/dev/null``, a pipe), which is written
    in place."""
    from handoff import outfile
    from handoff.errors import UsageError

    p = os.fspath(path)
    real = os.path.realpath(p)
    if real == "/sys" or real.startswith(("/sys/", "/proc/")):
        raise UsageError(f"refusing to write a record to {real}: handoff save never writes "
                         "to sysfs or procfs", hint="pass -o a regular file, e.g. under /var")
    return outfile.check(p, outfile.RECORD, force=force, special_ok=True) == "special"


def write_atomic(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> None:
    """Write the record ``data`` to ``path`` so a reader sees the old file or the new one,
    never half, by :mod:`handoff.outfile`'s rules (mode 0600; an existing file that is not a
    record is replaced only with ``force``). Special files (``/dev/null``, a pipe) are written
    in place."""
    from handoff import outfile

    check_output(path, force=force)
    outfile.write_file(path, data, outfile.RECORD, force=force, special_ok=True)


def save(
    output: str | os.PathLike[str] | None,
    tree: SysfsTree | None = None,
    *,
    identity: Any = None,
    encode: Callable[..., bytes] | None = None,
    force: bool = False,
    notify: Callable[[str, str], None] | None = None,
    select: Callable[[Any], bool] | None = None,
    **collect_kw: Any,
) -> SaveResult:
    """Collect, encode and (if ``output`` is given) write a record; returns the result.

    ``identity`` is a :class:`handoff.identity.IdentitySource` (default: the running
    machine); ``encode`` defaults to :func:`handoff.record.encode` (the C core). A bad
    ``output`` or ``tree`` is refused before the walk. ``notify(kind, text)`` hears the
    collection's warnings and notes as they are known (they are also in the result).
    ``select(device)``, when given, keeps only the devices it accepts (lspci's ``-s``/``-d``).
    Without ``output`` a missing C core only leaves the record empty, with a note saying so.
    """
    from handoff.errors import EnvironmentProblem
    from handoff.identity import IdentitySource

    if tree is not None and not os.path.isdir(tree.pci_devices_dir):
        raise EnvironmentProblem(
            f"{tree.pci_devices_dir} is not a directory",
            hint="--sysfs-root takes the directory that holds bus/pci/devices (like /sys)")
    if output is not None:
        check_output(output, force=force)  # before the walk: a bad output costs nothing
    ident = identity or IdentitySource()
    producer = ident.producer()
    res = collect_devices(tree, boot_id=producer.boot_id, **collect_kw)
    if notify is not None:
        for w in res.warnings:
            notify("warning", w)
        for n in res.notes:
            notify("note", n)
    if select is not None:
        res.devices = [d for d in res.devices if select(d)]
    res.generation = 1
    if output is not None:
        res.generation = previous_generation(output, producer.boot_id) + 1
    if encode is None:
        from handoff import record

        encode = record.encode
    try:
        res.record = encode(build_payload(res.devices), producer, res.generation)
    except ImportError as e:  # the C core is not built
        if output is not None:
            raise EnvironmentProblem(
                f"the record encoder (C core) is not available: {e}",
                hint="build it with `pip install -e .` in the source tree") from None
        note = f"record size unknown, the C core is not built ({e})"
        res.notes.append(note)
        if notify is not None:
            notify("note", note)
    if output is not None:
        write_atomic(output, res.record, force=force)
        res.path = str(output)
    return res
