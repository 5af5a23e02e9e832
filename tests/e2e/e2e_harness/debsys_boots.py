"""A real Debian 12 system in QEMU (issue 16), booted twice: with handoff, then kdump-tools alone.

debootstrap's bookworm with systemd as PID 1, kdump-tools, makedumpfile and kexec-tools from
Debian, the harness's 6.1 kernel installed with dpkg, handoff installed and integrated with
kdump-tools by the documented commands only (debsys_tree, debsys_image). The first boot runs
docs/distro.md's steps in the guest, then a perturbation and a crash; the second, the peer, has
the integration removed (the host deletes the two drop-ins with debugfs). Each ends when
kdump-tools' dump service runs `reboot -f` in the capture kernel (QEMU: -no-reboot).
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jsonfile, qemu, rootfs
from .config import CACHE_DIR
from .debsys_image import DROPINS, build_image, debugfs, extract, qemu_argv
from .debsys_tree import ImageError, system_tree, wheels
from .scenario import timeout_scale

NAME = "debian-system"  # for `python -m e2e_harness` and bench/run --e2e
RUNS = CACHE_DIR / "runs" / "debian-system"
# (stage, seconds since the previous one) in the first kernel; the handoff boot builds
# kdump-tools' initrd (before `booted`) and handoff's runtime (before `integrated`) under TCG.
HANDOFF_STAGES = (("booted", 600), ("integrated", 480), ("loaded", 120), ("perturbed", 120),
                  ("crash", 60))
BASELINE_STAGES = (("booted", 600), ("loaded", 120), ("perturbed", 120), ("crash", 60))
CAPTURE_TIMEOUT = 600.0  # crash -> QEMU's exit (kdump-tools' `reboot -f`)


@dataclass
class Boot:
    """One boot of the image: crash in the first kernel, dump saved by the capture kernel."""

    mode: str  # handoff | baseline
    outcome: qemu.Outcome
    out: Path  # what came back from the root disk: var/crash, var/lib/e2e, var/log/journal
    files: dict[str, Path]
    serial: Path

    @property
    def console(self) -> str:
        return "\n".join(self.outcome.lines)

    def stage_s(self, name: str) -> float:
        return next(s.host_s for s in self.outcome.stages if s.name == name)

    @property
    def crash_to_exit_s(self) -> float:
        """Crash to QEMU's exit: the capture kernel's boot, the dump saved (and, with handoff,
        its notes added), `reboot -f`."""
        return self.outcome.wall_s - self.stage_s("crash")

    def evidence(self, name: str) -> Path:
        return self.out / "e2e" / self.mode / name

    def dumps(self) -> list[Path]:
        return sorted(p for p in (self.out / "crash").glob("*/dump.*"))


@dataclass
class Pair:
    """Both boots, and how the image was made."""

    handoff: Boot
    baseline: Boot
    release: str
    info: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)



def _boot(mode: str, argv: list[str], image: Path, run_dir: Path) -> Boot:
    scale = timeout_scale()
    plan = HANDOFF_STAGES if mode == "handoff" else BASELINE_STAGES
    stages = [qemu.Stage(n, t * scale) for n, t in plan]
    serial = run_dir / f"serial-{mode}.log"
    overall = (sum(t for _n, t in plan) + CAPTURE_TIMEOUT) * scale
    try:
        outcome = qemu.run(argv, stages, serial, overall, exit_timeout=CAPTURE_TIMEOUT * scale)
    except qemu.StageError as e:
        try:
            extract(image, run_dir / f"out-{mode}")
        except ImageError:
            pass
        e.add_note(f"serial console: {serial}; what the guest wrote: {run_dir}/out-{mode}")
        raise
    out = run_dir / f"out-{mode}"
    return Boot(mode, outcome, out, extract(image, out), serial)


def run_pair() -> Pair:
    """Build (cached) and boot the image twice: with handoff, then with kdump-tools alone."""
    from .scenario import _lock

    t0 = time.monotonic()
    phases: dict[str, float] = {}
    mark = [t0]

    def phase(name: str) -> None:
        mark.append(time.monotonic())
        phases[name] = round(mark[-1] - mark[-2], 1)

    with _lock(CACHE_DIR / "runs" / "debian-system.lock"):
        with _lock(CACHE_DIR / ".lock"):
            pkgs = rootfs.prepare_packages()
            kernel = rootfs.vmlinux_for(pkgs)
            phase("packages")
            system_tree(pkgs)
            phase("system-tree")
            wheels()
            phase("wheels")
            shutil.rmtree(RUNS, ignore_errors=True)
            RUNS.mkdir(parents=True)
            image, initrd, info = build_image(pkgs, RUNS)
            phase("image")
        nvme = RUNS / "nvme.raw"
        with nvme.open("wb") as f:
            f.truncate(64 << 20)
        argv = qemu_argv(kernel, initrd, image, nvme)
        (RUNS / "qemu-argv.txt").write_text(shlex.join(argv) + "\n")
        with_handoff = _boot("handoff", argv, image, RUNS)
        phase("boot-handoff")
        # The peer: the same disk, the integration's two drop-ins removed (kdump-tools then
        # loads and saves exactly as without handoff), the driver told to skip the steps.
        mode_file = RUNS / "mode-baseline"
        mode_file.write_text("baseline\n")
        debugfs(image, *(f"rm {p}" for p in DROPINS), "rm /etc/e2e/mode",
                 f"write {mode_file} /etc/e2e/mode", write=True)
        baseline = _boot("baseline", argv, image, RUNS)
        phase("boot-baseline")
        image.unlink()
        nvme.unlink()
    pair = Pair(with_handoff, baseline, pkgs.release, info, phases)
    jsonfile.replace(CACHE_DIR / "debsys-timings.json", timings(pair))
    return pair


def timings(pair: Pair) -> dict[str, Any]:
    """Stage times of both boots and the host's phases (also cache/debsys-timings.json)."""
    def boot(b: Boot) -> dict[str, Any]:
        return {"stages": [{"stage": s.name, "at_s": round(s.host_s, 2),
                            "guest_uptime_ms": s.guest_ms} for s in b.outcome.stages],
                "qemu_s": round(b.outcome.wall_s, 2),
                "crash_to_exit_s": round(b.crash_to_exit_s, 2),
                "infos": b.outcome.infos}
    return {"kernel": pair.release, "phases_s": pair.phases, "image": pair.info,
            "handoff": boot(pair.handoff), "baseline": boot(pair.baseline)}
