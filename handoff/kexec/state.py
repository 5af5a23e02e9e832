"""What handoff loaded (``loaded.json``) and whether the machine still matches it.

A record describes the devices at the moment it was saved. If a device appears or goes, a
driver binds or unbinds, or an SR-IOV VF count changes, the record in the crashkernel region
is stale: the capture kernel would restore a machine that no longer exists. ``status``
compares the inventory fingerprint taken at load time with the live one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handoff.errors import UsageError
from handoff.kexec.config import Host
from handoff.sysfs import SysfsTree

STATE_FILE = "loaded.json"
STATE_SCHEMA = 1


def inventory(sysfs: Path) -> list[dict[str, Any]]:
    """Per PCI function: address, vendor:device, bound driver, SR-IOV VF count."""
    tree = SysfsTree(sysfs)
    out = []
    for addr in tree.pci_addresses():
        vendor = (tree.attr(addr, "vendor") or "").removeprefix("0x")
        device = (tree.attr(addr, "device") or "").removeprefix("0x")
        numvfs = tree.attr(addr, "sriov_numvfs")
        out.append({
            "addr": addr,
            "id": f"{vendor}:{device}",
            "driver": tree.link_name(addr, "driver"),
            "sriov_numvfs": int(numvfs) if numvfs and numvfs.isdigit() else None,
        })
    return out


def fingerprint(inv: list[dict[str, Any]]) -> str:
    blob = json.dumps(inv, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between two inventories, in address order."""
    a = {d["addr"]: d for d in old}
    b = {d["addr"]: d for d in new}
    out = []
    for addr in sorted(a.keys() | b.keys()):
        x, y = a.get(addr), b.get(addr)
        if x is None:
            out.append(f"{addr}: new device {y['id']}")  # type: ignore[index]
        elif y is None:
            out.append(f"{addr}: device {x['id']} is gone")
        else:
            if x["id"] != y["id"]:
                out.append(f"{addr}: device changed from {x['id']} to {y['id']}")
            if x["driver"] != y["driver"]:
                out.append(f"{addr}: driver {x['driver'] or '(none)'} -> {y['driver'] or '(none)'}")
            if x["sriov_numvfs"] != y["sriov_numvfs"]:
                out.append(f"{addr}: sriov_numvfs {x['sriov_numvfs']} -> {y['sriov_numvfs']}")
    return out


def boot_id(host: Host) -> str:
    return (host.read_text("/proc/sys/kernel/random/boot_id") or "").strip()


@dataclass
class LoadState:
    """The contents of loaded.json."""

    generation: int
    record: str
    record_sha256: str
    boot_id: str
    mode: str  # "crash" (kexec -p) or "reboot" (kexec -l)
    syscall: str
    kernel: str
    initrd: str
    initrd_copy: str
    cmdline: str
    argv: list[str]
    inventory: list[dict[str, Any]]
    fingerprint: str
    loaded_ns: int = field(default_factory=time.time_ns)

    def to_json(self) -> dict[str, Any]:
        d = {"schema_version": STATE_SCHEMA, "kind": "handoff-load-state"}
        d.update(self.__dict__)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str) -> LoadState:
        if d.get("schema_version") != STATE_SCHEMA:
            raise UsageError(f"{where}: unknown schema_version {d.get('schema_version')!r}",
                             hint="remove it and run `handoff load` again")
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as e:
            raise UsageError(f"{where}: malformed ({e})",
                             hint="remove it and run `handoff load` again") from None


def save_state(host: Host, st: LoadState) -> Path:
    path = host.state / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    from handoff import outfile

    outfile.write_file(path, (json.dumps(st.to_json(), indent=2) + "\n").encode(), outfile.OWN,
                       mode=0o644)
    return path


def read_state(host: Host) -> LoadState | None:
    path = host.state / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e})",
                         hint="remove it and run `handoff load` again") from None
    return LoadState.from_json(doc, str(path))


def clear_state(host: Host) -> None:
    try:
        (host.state / STATE_FILE).unlink()
    except FileNotFoundError:
        pass


def loaded_flag(host: Host, mode: str) -> bool | None:
    """``kexec_crash_loaded`` (crash) or ``kexec_loaded`` (reboot); None if absent."""
    text = host.sys_text("kernel/kexec_crash_loaded" if mode == "crash" else "kernel/kexec_loaded")
    return None if text is None else text == "1"


# status verdicts, and the exit code each maps to (docs/load.md "handoff status")
FRESH = "fresh"  # 0: the loaded record matches the machine
STALE = "stale"  # 1: devices, drivers or VF counts changed since load
UNLOADED = "unloaded"  # 3: handoff loaded a kernel in this boot, and it is no longer loaded
NOT_LOADED = "not-loaded"  # 3: handoff has not loaded anything in this boot
# 1 means exactly "reload fixes it", so a udev-triggered reload can run on status 1 alone.
VERDICT_EXIT = {FRESH: 0, STALE: 1, UNLOADED: 3, NOT_LOADED: 3}


@dataclass
class Status:
    verdict: str
    crash_loaded: bool | None
    reboot_loaded: bool | None
    crash_size: int | None
    lockdown: str | None
    state: LoadState | None
    changes: list[str]
    reason: str

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT[self.verdict]

    def to_json(self) -> dict[str, Any]:
        st = self.state
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "stale": self.verdict == STALE,
            "crash_loaded": self.crash_loaded,
            "reboot_loaded": self.reboot_loaded,
            "crash_size": self.crash_size,
            "lockdown": self.lockdown,
            "changes": self.changes,
            "loaded": None if st is None else {
                "generation": st.generation, "record": st.record, "mode": st.mode,
                "syscall": st.syscall, "kernel": st.kernel, "initrd": st.initrd_copy,
                "cmdline": st.cmdline, "loaded_ns": st.loaded_ns, "fingerprint": st.fingerprint,
            },
        }


def status(host: Host) -> Status:
    from handoff.kexec.checks import lockdown

    size_text = host.sys_text("kernel/kexec_crash_size")
    crash = loaded_flag(host, "crash")
    reboot = loaded_flag(host, "reboot")

    def verdict(v: str, reason: str, st: LoadState | None = None,
                diff: list[str] | None = None) -> Status:
        return Status(v, crash, reboot, int(size_text) if size_text and size_text.isdigit()
                      else None, lockdown(host), st, diff or [], reason)

    st = read_state(host)
    if st is None:
        return verdict(NOT_LOADED, f"handoff has not loaded a kernel ({host.state / STATE_FILE} "
                                   "is absent)")
    if st.boot_id and st.boot_id != boot_id(host):
        return verdict(NOT_LOADED, "the last `handoff load` was in an earlier boot", st)
    if not (crash if st.mode == "crash" else reboot):
        what = "kexec_crash_loaded" if st.mode == "crash" else "kexec_loaded"
        return verdict(UNLOADED, f"generation {st.generation} was loaded, but {what} is now 0",
                       st)
    diff = changes(st.inventory, inventory(host.sys))
    if diff:
        return verdict(STALE, f"{len(diff)} change(s) since generation {st.generation} was "
                              "loaded", st, diff)
    return verdict(FRESH, f"generation {st.generation} is loaded and matches the machine", st)
