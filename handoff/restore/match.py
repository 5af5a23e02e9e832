"""Is this the right record, and the right device? Crashed-kernel identity and device matching.

A record is applied only when its producer is the kernel that crashed (kernel release from
VMCOREINFO, boot id and generation from the capture command line), and a saved device only to
the device now at the same address with the same vendor, device, subsystem and class ids (and
serial number when both sides have one). Everything else is refused, with the reason.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Protocol

from handoff._slots import Frozen, Slots
from handoff.devices.model import PciDevice
from handoff.sysfs import paths as _paths

_set = object.__setattr__

CMDLINE_BOOT_ID = "handoff.boot_id"
CMDLINE_GENERATION = "handoff.generation"


class RecordInfo(Protocol):
    """What matching needs of a record (``handoff.record.Record`` has it)."""

    kernel_release: str
    boot_id: str
    generation: int


class Identity(Frozen):
    """What is known of the crashed kernel; None where nothing could be learned."""

    __slots__ = ("boot_id", "generation", "kernel_release", "notes", "sources")
    kernel_release: str | None
    boot_id: str | None
    generation: int | None
    sources: tuple[str, ...]
    notes: tuple[str, ...]  # why a source gave nothing

    def __init__(self, kernel_release: str | None = None, boot_id: str | None = None,
                 generation: int | None = None, sources: tuple[str, ...] = (),
                 notes: tuple[str, ...] = ()) -> None:
        _set(self, "kernel_release", kernel_release)
        _set(self, "boot_id", boot_id)
        _set(self, "generation", generation)
        _set(self, "sources", sources)
        _set(self, "notes", notes)

    @property
    def known(self) -> bool:
        return self.kernel_release is not None or self.boot_id is not None

    def to_json(self) -> dict[str, Any]:
        return {"kernel_release": self.kernel_release, "boot_id": self.boot_id,
                "generation": self.generation, "sources": list(self.sources),
                "notes": list(self.notes)}


def parse_cmdline(text: str) -> dict[str, str]:
    """``key=value`` words of a kernel command line (quotes as the kernel takes them)."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    out: dict[str, str] = {}
    for w in words:
        k, eq, v = w.partition("=")
        if eq:
            out.setdefault(k, v)
    return out


def vmcore_release(path: str | os.PathLike[str]) -> str | None:
    """OSRELEASE from the VMCOREINFO note of an ELF vmcore; reads only the headers and notes."""
    from handoff.formats import elfcore, vmcoreinfo
    from handoff.sources.blob import FileBlob

    with FileBlob(str(path)) as blob:
        core = elfcore.parse(blob)
    for n in core.notes:
        if n.name == b"VMCOREINFO":
            return vmcoreinfo.parse(n.desc).osrelease
    return None


def identity_from(proc_root: str | os.PathLike[str] = "/proc") -> Identity:
    """The crashed kernel's identity as the capture kernel sees it under ``proc_root``."""
    release = boot_id = None
    generation = None
    sources: list[str] = []
    notes: list[str] = []
    proc = _paths.pathstr(proc_root)  # paths in notes read as pathlib spells them
    cmdline = _paths.join(proc, "cmdline")
    try:
        with open(cmdline, errors="replace") as f:
            args = parse_cmdline(f.read())
    except OSError as e:
        args = {}
        notes.append(f"{cmdline}: {e.strerror}")
    if CMDLINE_BOOT_ID in args:
        boot_id = args[CMDLINE_BOOT_ID].strip().lower()
        sources.append(f"{CMDLINE_BOOT_ID}= on {cmdline}")
    if CMDLINE_GENERATION in args:
        try:
            generation = int(args[CMDLINE_GENERATION], 0)
            sources.append(f"{CMDLINE_GENERATION}= on {cmdline}")
        except ValueError:
            notes.append(f"{CMDLINE_GENERATION}={args[CMDLINE_GENERATION]!r} is not a number")
    vmcore = _paths.join(proc, "vmcore")
    if os.path.exists(vmcore):
        try:
            release = vmcore_release(vmcore)
            if release:
                sources.append(f"VMCOREINFO OSRELEASE in {vmcore}")
            else:
                notes.append(f"{vmcore} has no VMCOREINFO OSRELEASE")
        except Exception as e:  # noqa: BLE001 - a damaged vmcore only means "unknown"
            notes.append(f"{vmcore}: cannot read VMCOREINFO: {e}")
    else:
        notes.append(f"{vmcore} does not exist (not in a capture kernel?)")
    return Identity(release, boot_id, generation, tuple(sources), tuple(notes))


class IdentityCheck(Slots):
    __slots__ = ("forced", "ok", "problems")
    ok: bool  # the record may be applied (matching, or forced)
    problems: list[str]
    forced: bool

    def __init__(self, ok: bool, problems: list[str] | None = None, forced: bool = False) -> None:
        self.ok = ok
        self.problems = [] if problems is None else problems
        self.forced = forced

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "forced": self.forced, "problems": self.problems}


def check_identity(rec: RecordInfo, ident: Identity, *, force: bool = False) -> IdentityCheck:
    """Compare the record's producer with the crashed kernel. A record that cannot be
    confirmed is treated like a mismatch: only ``force`` lets it through."""
    problems: list[str] = []
    if not ident.known:
        problems.append("cannot tell which kernel crashed: no VMCOREINFO OSRELEASE and no "
                        f"{CMDLINE_BOOT_ID}= on the capture command line")
    if ident.kernel_release is not None and ident.kernel_release != rec.kernel_release:
        problems.append(f"record was made by kernel {rec.kernel_release or '(unknown)'!r}, "
                        f"the crashed kernel is {ident.kernel_release!r}")
    if ident.boot_id is not None:
        if not rec.boot_id:
            problems.append("record carries no boot id, the crashed boot was "
                            f"{ident.boot_id}: cannot tell it is from this boot")
        elif rec.boot_id.lower() != ident.boot_id:
            problems.append(f"stale record: made in boot {rec.boot_id}, the crashed boot was "
                            f"{ident.boot_id}")
    if ident.generation is not None and rec.generation != ident.generation:
        rel = "older" if rec.generation < ident.generation else "newer"
        problems.append(f"stale record: generation {rec.generation} is {rel} than generation "
                        f"{ident.generation}, which the capture kernel was loaded with")
    return IdentityCheck(not problems or force, problems, bool(problems) and force)


# --- devices --------------------------------------------------------------------------------

MATCHED, VANISHED, MISMATCH, GONE, UNREADABLE = (
    "matched", "vanished", "mismatch", "gone", "unreadable")


class DeviceMatch(Slots):
    """The saved device, the device now at its address (None if none), and the verdict."""

    __slots__ = ("current", "reasons", "saved", "status")
    saved: PciDevice
    current: PciDevice | None
    status: str
    reasons: list[str]

    def __init__(self, saved: PciDevice, current: PciDevice | None, status: str,
                 reasons: list[str] | None = None) -> None:
        self.saved = saved
        self.current = current
        self.status = status
        self.reasons = [] if reasons is None else reasons

    @property
    def ok(self) -> bool:
        return self.status == MATCHED


def _ids(d: PciDevice) -> dict[str, int]:
    i = d.ids
    return {"vendor": i.vendor, "device": i.device, "subsystem vendor": i.subvendor,
            "subsystem device": i.subdevice, "class": i.class_code}


def match_device(saved: PciDevice, current: PciDevice | None,
                 others: dict[str, PciDevice] | None = None) -> DeviceMatch:
    """Decide whether ``saved`` may be applied to ``current`` (the device at its address)."""
    if current is None:
        return DeviceMatch(saved, None, VANISHED, ["no device at this address now"])
    data = current.live.data
    if len(data) >= 4 and int.from_bytes(data[:4], "little") == 0xFFFFFFFF:
        return DeviceMatch(saved, current, GONE, [
            ("config space reads all-ones (vendor/device 0xffffffff): the device is gone or "
             "not answering")])
    if len(data) < 0x40:
        return DeviceMatch(saved, current, UNREADABLE, [
            (f"only {len(data)} bytes of its config space could be read "
             f"({current.live.partial or 'short read'})")])
    diffs = [f"{k} {a:#x} -> {b:#x}" for (k, a), b in zip(_ids(saved).items(),
                                                           _ids(current).values()) if a != b]
    if saved.dsn is not None and current.dsn is not None and saved.dsn != current.dsn:
        diffs.append(f"serial number {saved.dsn:#018x} -> {current.dsn:#018x}")
    if diffs:
        reasons = ["a different device is at this address: " + ", ".join(diffs)]
        for addr, o in sorted((others or {}).items()):
            if addr != saved.addr and _ids(o) == _ids(saved) and (
                    saved.dsn is None or o.dsn is None or saved.dsn == o.dsn):
                reasons.append(f"a device with the saved ids is at {addr} (renumbered?); "
                               "handoff never moves state to another address")
                break
        return DeviceMatch(saved, current, MISMATCH, reasons)
    return DeviceMatch(saved, current, MATCHED)


def match_all(saved: list[PciDevice], current: dict[str, PciDevice]
              ) -> tuple[list[DeviceMatch], list[PciDevice]]:
    """Match every saved device; also return the devices present now but not in the record."""
    matches = [match_device(s, current.get(s.addr), current) for s in saved]
    known = {s.addr for s in saved}
    appeared = [d for a, d in sorted(current.items()) if a not in known]
    return matches, appeared
