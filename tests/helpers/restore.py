"""A production save and a capture-kernel tree to restore onto, and running restore against them.

Records are made by the save engine from fake sysfs trees built out of the real QEMU dumps
(tests/fixtures/qemu-q35-kdump), and planned onto trees built from the capture-kernel dumps.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import uuid
from collections.abc import Iterable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from handoff import record as REC
from handoff.devices.model import PciDevice
from handoff.record import Record
from handoff.restore.apply import scan
from handoff.restore.match import Identity
from handoff.restore.plan import WRITE, Plan, make_plan
from handoff.restore.policy import DEFAULT_POLICY, Policy, default_action
from handoff.sysfs import ConfigAccessError, ConfigSpace, SysfsTree
from handoff.sysfs.probe import Environment
from helpers import elfwriter
from helpers import fakesysfs as F
from helpers import recordgen as G

BOOT = str(G.BOOT_ID)
RELEASE = "6.1.0-56-amd64"
IDENT = Identity(RELEASE, BOOT, 1, ("test",))
NVME, E1000, VNET, VBLK, PORT1, PORT3, AHCI = (
    "0000:01:00.0", "0000:00:05.0", "0000:02:00.0", "0000:03:00.0", "0000:00:01.0",
    "0000:00:03.0", "0000:00:1f.2")



def fixture(addr: str, src: Path = F.Q35) -> bytearray:
    return bytearray((src / f"{addr}.bin").read_bytes())


def put(cfg: bytearray, off: int, width: int, value: int) -> bytearray:
    cfg[off:off + width] = value.to_bytes(width, "little")
    return cfg


def get(cfg: bytes, off: int, width: int) -> int:
    return int.from_bytes(cfg[off:off + width], "little")


def saved_devices(tmp: Path, src: Path = F.Q35, *, early: Mapping[str, bytes] | None = None,
                  no_early: Iterable[str] = (), **tree_kw: Any) -> list[PciDevice]:
    """The devices ``handoff save`` collects from a tree of ``src``; early = live (the
    first kernel's state) unless ``early`` overrides it or ``no_early`` drops it."""
    from handoff.devices.model import Snapshot
    from handoff.save import collect_devices

    root = F.build_tree(tmp / "saved-sys", src, **tree_kw)
    res = collect_devices(SysfsTree(root), running_kernel=False, privileged=True)
    for d in res.devices:
        if d.addr in set(no_early):
            d.early = None
        else:
            data = (early or {}).get(d.addr, d.live.data)
            d.early = Snapshot("collector", d.live.size, bytes(data))
        d.policy = default_action(d)
    return res.devices


def record_of(devices: list[PciDevice], *, generation: int = 1, boot_id: str = BOOT,
              release: str = RELEASE) -> bytes:
    from handoff.save import build_payload

    return G.make_record(build_payload(devices), generation=generation,
                         boot_id=uuid.UUID(boot_id).bytes, kernel_release=release)


def parsed(data: bytes) -> Record:
    return REC.parse(data, exact=True)


def capture_tree(tmp: Path, src: Path = F.Q35_CAPTURE, name: str = "sys",
                 **kw: Any) -> SysfsTree:
    return SysfsTree(F.build_tree(tmp / name, src, **kw))


def plan_for(tmp: Path, *, policy: Policy = DEFAULT_POLICY, ident: Identity = IDENT,
             saved: list[PciDevice] | None = None, tree: SysfsTree | None = None,
             env: Environment | None = None, force: bool = False, registry: Any = None,
             **rec_kw: Any) -> tuple[Plan, SysfsTree]:
    saved = saved if saved is not None else saved_devices(tmp)
    tree = tree or capture_tree(tmp)
    rec = parsed(record_of(saved, **rec_kw))
    return make_plan(rec, scan(tree), policy=policy, identity=ident, force=force,
                     env=env, registry=registry), tree


def writes(plan: Plan) -> list[tuple[str, str, int, int, int]]:
    return [(d.addr, s.reg, s.offset, s.width, s.value) for d, s in plan.ordered()
            if s.op == WRITE and s.value is not None]


def dev(plan: Plan, addr: str) -> Any:
    return next(d for d in plan.devices if d.addr == addr)


def firmware_less_tree(tmp: Path) -> SysfsTree:
    """The capture tree, but the nvme's BARs and COMMAND and root port 1's bus numbers,
    windows and SERR# Enable lost (RW bits cleared, hardwired bits kept), as after a power
    cycle."""
    nvme = fixture(NVME, F.Q35_CAPTURE)
    put(nvme, 0x10, 4, get(nvme, 0x10, 4) & 0xF)
    put(nvme, 0x14, 4, 0)
    put(nvme, 0x04, 2, 0x0403)  # decoding on, Bus Master off
    port = fixture(PORT1, F.Q35_CAPTURE)
    put(port, 0x04, 2, get(port, 4, 2) & ~0x100)
    put(port, 0x18, 4, 0)
    put(port, 0x1C, 2, get(port, 0x1C, 2) & 0x0F0F)
    put(port, 0x20, 4, 0)
    put(port, 0x24, 4, get(port, 0x24, 4) & 0x000F000F)
    return capture_tree(tmp, config_override={NVME: bytes(nvme), PORT1: bytes(port)})


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file's bytes and every symlink's target below ``root``."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = b"-> " + os.readlink(p).encode()
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for k, v in sorted(tree_state(root).items()):
        h.update(k.encode() + b"\0" + v + b"\0")
    return h.hexdigest()


def config_rel(tree: SysfsTree, addr: str) -> str:
    real = Path(os.path.realpath(tree.device_dir(addr) / "config"))
    return str(real.relative_to(os.path.realpath(tree.root)))


def expected_after(before: dict[str, bytes], tree: SysfsTree, plan: Plan) -> dict[str, bytes]:
    """``before`` with exactly the planned writes applied, in order."""
    after = dict(before)
    for d, s in plan.ordered():
        if s.op == WRITE:
            rel = config_rel(tree, d.addr)
            b = bytearray(after[rel])
            b[s.offset:s.offset + s.width] = s.value.to_bytes(s.width, "little")
            after[rel] = bytes(b)
    return after


def run_cli(argv: list[str]) -> tuple[str, str, int]:
    from handoff.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(argv)
    return out.getvalue(), err.getvalue(), rc


def proc_dir(tmp: Path, cmdline: str | None = None, release: str | None = RELEASE) -> Path:
    proc = tmp / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "cmdline").write_text(cmdline if cmdline is not None else
                                  f"console=ttyS0 reset_devices handoff.boot_id={BOOT} "
                                  "handoff.generation=1\n")
    if release:
        (proc / "vmcore").write_bytes(elfwriter.core_bytes(
            elfwriter.default_notes(vmci=elfwriter.vmcoreinfo(release))))
    return proc


class EpermConfig(ConfigSpace):
    """What kernel lockdown does to config writes (lockdown-measured.md: EPERM)."""

    def write(self, offset: int, width: int, value: int) -> None:
        raise ConfigAccessError(f"{self.path}: write refused: Operation not permitted",
                                errno_=errno.EPERM, offset=offset)


def cli_setup(tmp: Path, **rec_kw: Any) -> tuple[Path, SysfsTree]:
    """A saved record of the q35 devices and the firmware-less tree restore runs on."""
    rec = tmp / "record.bin"
    rec.write_bytes(record_of(saved_devices(tmp), **rec_kw))
    return rec, firmware_less_tree(tmp)
