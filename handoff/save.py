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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handoff.devices.model import PciDevice, Snapshot
from handoff.sysfs import SysfsTree

PCI_COMMAND = 0x04
PCI_COMMAND_MASTER = 0x04


# --- policy: the single hook point -------------------------------------------------------

def default_policy(device: PciDevice) -> str:
    """THE hook for per-device default policy: the restore engine's
    ``handoff.restore.policy.default_action`` when it exists, else ``local_default_action``.
    """
    try:
        from handoff.restore.policy import default_action
    except ImportError:
        return local_default_action(device)
    return str(default_action(device))


def local_default_action(device: PciDevice) -> str:
    """Stand-in until the restore engine's policy module exists: bridges and storage are
    restored to their early state, bus-mastering devices no driver owns are quiesced (nothing
    else will stop their DMA), everything else is left alone."""
    base = device.ids.class_code >> 16
    if device.is_bridge or base == 0x01:
        return "restore-early"
    data = device.live.data
    if device.driver is None and len(data) > PCI_COMMAND and data[PCI_COMMAND] & PCI_COMMAND_MASTER:
        return "quiesce"
    return "skip"


# --- collection --------------------------------------------------------------------------

@dataclass
class SaveResult:
    """What ``collect_devices`` found, plus the record when one was written."""

    devices: list[PciDevice]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # early-source diagnostics
    early_sources: list[str] = field(default_factory=list)
    generation: int = 0
    record: bytes = b""
    path: str | None = None

    @property
    def partial(self) -> list[PciDevice]:
        return [d for d in self.devices if d.live.partial]


def is_running_kernel_tree(root: Path) -> bool:
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
) -> SaveResult:
    """Walk ``tree`` (default /sys), attach each device's early state and default policy."""
    from handoff.devices import early as EARLY
    from handoff.devices.pci import collect

    tree = tree or SysfsTree()
    if running_kernel is None:
        running_kernel = is_running_kernel_tree(tree.root)
    coll = collect(tree, privileged=privileged)
    kw: dict[str, Any] = {}
    if runner is not None:
        kw["runner"] = runner
    sources = EARLY.gather(running_kernel=running_kernel, snapshot_path=early_snapshot,
                           early_log=early_log, boot_id=boot_id, kmsg_path=kmsg_path, **kw)
    res = SaveResult(coll.devices, list(coll.warnings), list(sources.notes), list(sources.used))
    for dev in coll.devices:
        st, notes = EARLY.resolve(sources, dev.addr, dev.live.size, dev.ids.vendor,
                                  dev.ids.device)
        res.notes.extend(notes)
        if st is not None:
            size = st.size if st.size in (256, 4096) else dev.live.size
            dev.early = Snapshot(st.source, size, st.data[:size], st.partial)
        dev.policy = policy(dev)
    return res


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
    if not stat.S_ISREG(st.st_mode) or st.st_size > record.MAX_PAYLOAD_SIZE + 8192:
        return 0
    try:
        with open(path, "rb") as f:
            rec = record.parse(f.read(), exact=True, validate_schema=False)
    except (OSError, errors.HandoffError):
        return 0
    if not boot_id or rec.boot_id != boot_id:
        return 0
    return rec.generation


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half.

    Special files (``/dev/null``, a pipe, a device) are written in place.
    """
    p = Path(path)
    real = os.path.realpath(p)
    if real == "/sys" or real.startswith(("/sys/", "/proc/")):
        from handoff.errors import UsageError

        raise UsageError(f"refusing to write a record to {real}: handoff save never writes "
                         "to sysfs or procfs", hint="pass -o a regular file, e.g. under /var")
    try:
        st = os.stat(p)
        special = not stat.S_ISREG(st.st_mode)
    except FileNotFoundError:
        special = False
    if special:
        with open(p, "wb") as f:
            f.write(data)
        return
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=str(p.parent or "."))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(
    output: str | os.PathLike[str] | None,
    tree: SysfsTree | None = None,
    *,
    identity: Any = None,
    encode: Callable[..., bytes] | None = None,
    **collect_kw: Any,
) -> SaveResult:
    """Collect, encode and (if ``output`` is given) write a record; returns the result.

    ``identity`` is a :class:`handoff.identity.IdentitySource` (default: the running
    machine); ``encode`` defaults to :func:`handoff.record.encode` (the C core).
    """
    from handoff.identity import IdentitySource

    ident = identity or IdentitySource()
    producer = ident.producer()
    res = collect_devices(tree, boot_id=producer.boot_id, **collect_kw)
    res.generation = 1
    if output is not None:
        res.generation = previous_generation(output, producer.boot_id) + 1
    if encode is None:
        from handoff import record

        encode = record.encode
    res.record = encode(build_payload(res.devices), producer, res.generation)
    if output is not None:
        write_atomic(output, res.record)
        res.path = str(output)
    return res
