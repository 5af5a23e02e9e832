"""Run QEMU on the test topology and follow the guest's stage markers on the serial console."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import (
    GUEST_MEMORY,
    MARKER,
    NVME_SERIAL,
    RESULTS_SERIAL,
    ROOT_SERIAL,
)

QEMU = "qemu-system-x86_64"
TAIL_LINES = 60
_MARKER_RE = re.compile(rf"{MARKER} (STAGE|FAIL|INFO) (\S+) ?(.*)$")
# The netdev hubs deliberately reach no host network; QEMU warns about it on every run.
_BENIGN_STDERR = re.compile(r"hub \d+ is not connected to host network")


class StageError(RuntimeError):
    """The guest did not reach a stage: it reported a failure, QEMU exited, or time ran out."""

    def __init__(self, stage: str, reason: str, tail: list[str]) -> None:
        self.stage = stage
        self.reason = reason
        self.tail = tail
        console = "\n".join(f"  | {line}" for line in tail)
        super().__init__(
            f"stage {stage!r} failed: {reason}\n"
            f"last {len(tail)} lines of the serial console:\n{console}"
        )


@dataclass(frozen=True)
class Stage:
    """A marker the guest must print, within `timeout` seconds of the previous one."""

    name: str
    timeout: float


@dataclass(frozen=True)
class StageTime:
    """When a marker arrived: seconds since QEMU started, and the guest's uptime in ms."""

    name: str
    host_s: float
    guest_ms: int | None


@dataclass
class Outcome:
    """Everything observed during one QEMU run."""

    stages: list[StageTime] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    exit_code: int | None = None
    started: float = 0.0  # time.monotonic() when QEMU started: stage host_s counts from it


def argv(
    kernel: Path,
    initrd: Path,
    append: str,
    disks: dict[str, Path],
    memory: str = GUEST_MEMORY,
    dma_netdev: str = "",
    tcg_thread: str = "multi",
) -> list[str]:
    """The QEMU command line: q35 under TCG with nvme, virtio-net and two virtio-blk disks
    behind PCIe root ports, and an e1000 on the root bus (BDFs stable across runs).

    dma_netdev (a -netdev value with id=n3) adds a fifth root port at 00:06.0 with an e1000e
    at 05:00.0 on it (dma.NIC_MAC), fed from the host (the DMA scenarios); the other BDFs
    stay the same.

    tcg_thread: "multi" (a host thread per vCPU) or "single" (config.TCG_THREAD: the 6.12
    line, whose first kernel oopsed on an int3 of a jump label being patched while the other
    vCPU ran it, under multi-threaded TCG)."""
    machine = f"-accel tcg,thread={tcg_thread} -M q35 -smp 2 -nodefaults -display none -monitor none"
    cmd = [QEMU, *machine.split(), "-m", memory, "-serial", "stdio", "-no-reboot"]
    cmd += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]
    for name, key in (("nvm", "nvme"), ("root", "root"), ("res", "results")):
        cmd += ["-drive", f"if=none,id={name},file={disks[key]},format=raw,cache=unsafe"]
    # hubport netdevs: the NICs are real PCI functions, but no traffic leaves the VM.
    for n in range(2):
        cmd += ["-netdev", f"hubport,id=n{n},hubid={n}"]
    devices = [
        *(
            f"pcie-root-port,id=rp{i},chassis={i},slot={i},bus=pcie.0,addr={i:#x}"
            for i in range(1, 5)
        ),
        f"nvme,serial={NVME_SERIAL},drive=nvm,bus=rp1",
        "virtio-net-pci,netdev=n1,bus=rp2,mac=52:54:00:00:00:02",
        f"virtio-blk-pci,drive=root,serial={ROOT_SERIAL},bus=rp3",
        f"virtio-blk-pci,drive=res,serial={RESULTS_SERIAL},bus=rp4",
        "e1000,netdev=n0,mac=52:54:00:00:00:01,bus=pcie.0,addr=0x5",
    ]
    if dma_netdev:
        cmd += ["-netdev", dma_netdev]
        devices += [
            "pcie-root-port,id=rp5,chassis=5,slot=5,bus=pcie.0,addr=0x6",
            "e1000e,netdev=n3,bus=rp5,mac=52:54:00:00:00:03",
        ]
    for device in devices:
        cmd += ["-device", device]
    return cmd


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run(
    cmd: list[str],
    stages: list[Stage],
    log: Path,
    overall_timeout: float,
    exit_timeout: float = 30.0,
) -> Outcome:
    """Run QEMU until it exits after the last stage; raise StageError on anything else.

    Each stage must appear in order within its own timeout; markers that are not expected
    are recorded too. The serial console is written to `log` as it arrives."""
    out = Outcome()
    pending = list(stages)
    start = out.started = time.monotonic()
    last = start
    buf = b""
    stderr_path = log.with_name("qemu-stderr.log")
    with log.open("w") as logf, stderr_path.open("wb") as errf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)

        def failure(stage: str, reason: str) -> StageError:
            _kill(proc)
            out.wall_s = time.monotonic() - start
            err = "\n".join(
                line
                for line in stderr_path.read_text(errors="replace").splitlines()
                if not _BENIGN_STDERR.search(line)
            ).strip()
            if err:
                reason += f"\nQEMU stderr:\n{err[-2000:]}"
            panics = [line for line in out.lines if "Kernel panic" in line]
            if panics:
                reason += f"\nlast kernel panic on the console: {panics[-1].strip()}"
            return StageError(stage, reason, out.lines[-TAIL_LINES:])

        try:
            eof = False
            while True:
                now = time.monotonic()
                waiting = pending[0] if pending else None
                stage_deadline = last + (waiting.timeout if waiting else exit_timeout)
                deadline = min(stage_deadline, start + overall_timeout)
                if now >= deadline:
                    name = waiting.name if waiting else "qemu-exit"
                    if deadline == start + overall_timeout and stage_deadline > deadline:
                        raise failure(name, f"overall timeout of {overall_timeout:.0f} s")
                    limit = waiting.timeout if waiting else exit_timeout
                    raise failure(
                        name,
                        f"not reached within {limit:.0f} s of the previous stage (QEMU killed)",
                    )
                if eof:
                    try:
                        code = proc.wait(timeout=max(0.0, deadline - now))
                    except subprocess.TimeoutExpired:
                        continue  # closed its console but still runs: the deadline kills it
                    out.exit_code = code
                    out.wall_s = time.monotonic() - start
                    if waiting:
                        raise failure(waiting.name, f"QEMU exited with status {code} first")
                    return out
                for _key, _ev in sel.select(timeout=max(0.0, deadline - now)):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        eof = True
                        break
                    buf += chunk
                *complete, buf = buf.split(b"\n")
                if eof and buf:
                    complete.append(buf)
                    buf = b""
                for raw in complete:
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    out.lines.append(line)
                    logf.write(line + "\n")
                    m = _MARKER_RE.search(line)
                    if not m:
                        continue
                    kind, name, rest = m.groups()
                    t = time.monotonic()
                    if kind == "INFO":
                        out.infos.append(f"{name} {rest}".strip())
                    elif kind == "FAIL":
                        raise failure(name, f"guest reported: {rest}")
                    elif pending and name == pending[0].name:
                        pending.pop(0)
                        out.stages.append(StageTime(name, t - start, _int(rest)))
                        last = t
                    elif any(s.name == name for s in pending):
                        raise failure(pending[0].name, f"stage {name!r} came first")
                    else:
                        out.stages.append(StageTime(name, t - start, _int(rest)))
                logf.flush()
        finally:
            _kill(proc)
            sel.close()


def _int(text: str) -> int | None:
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None
