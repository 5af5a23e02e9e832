"""The scenario API: a scenario is data (a first-kernel script and capture hooks); running it
builds the guest, boots both kernels in QEMU and returns stages, timings and result files."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bootinitrd, dma, jsonfile, pyinstall, qemu, results, rootfs, runtimecache, tools
from .config import (
    CACHE_DIR,
    CAPTURE_APPEND,
    CRASHKERNEL,
    DEFAULT_KERNEL,
    GUEST_MEMORY,
    GUEST_SCRIPTS,
    NVME_SERIAL,
    ROOT_LABEL,
    SCENARIOS_DIR,
    TCG_THREAD,
    first_cmdline,
)
from .qemu import Stage, StageTime

# Seconds allowed from the previous stage (see timeout_scale).
FIRST_STAGES = (("first-init", 90), ("first-root", 60), ("first-drivers", 60), ("first-script", 30))
CAPTURE_STAGES = (
    ("capture-init", 90),
    ("pre-udev-done", 60),
    ("drivers-loaded", 60),
    ("results-mounted", 30),
    ("pre-pivot-done", 120),
    ("vmcore-saved", 120),
    ("capture-done", 60),
)
SCRIPT_STAGE_TIMEOUT = 60.0
OVERALL_TIMEOUT = 240.0
RUNS_DIR = CACHE_DIR / "runs"
RESULTS_DISK_MB = 768  # room for a full ELF vmcore of the 512 MiB guest


def timeout_scale() -> float:
    """HANDOFF_E2E_TIMEOUT_SCALE stretches every timeout, for a slower machine."""
    return float(os.environ.get("HANDOFF_E2E_TIMEOUT_SCALE", "1"))


@dataclass(frozen=True)
class Scenario:
    """One round trip: what the first kernel runs, and what the capture initrd adds.

    first_script: busybox sh run with `set -e` as root in the first kernel, after the
        drivers are loaded. lib.sh's helpers are available (stage, info, fail, dump_config,
        crash); it must end by calling `crash`. Environment: E2E_OUT (a directory on the
        results disk), CAPTURE_KERNEL, CAPTURE_INITRD, CAPTURE_APPEND; PATH starts with
        /opt/handoff/bin.
    capture_hooks: "pre-udev/NN-name.sh" or "pre-pivot/NN-name.sh" -> text, sourced by the
        capture /init in sorted order; pre-udev runs before any driver loads and may write
        to E2E_OUT (tmpfs, copied to the results disk); pre-pivot runs with the results disk
        at E2E_RESULTS and may save the dump there (a file named vmcore*).
    script_stages: the names the first script marks with `stage NAME`, in order, before
        `crash` (each within its timeout, default 60 s); pre_udev_stages and
        pre_pivot_stages likewise for the hooks of each directory.
    files: extra files for the first kernel's root, absolute guest path -> content.
    capture_files: extra files for the capture initrd, absolute guest path -> content.
    tools: static C helpers from e2e_harness/guest/tools/ (e.g. "pcimem"), installed as
        /usr/bin/NAME in the first kernel's root and /bin/NAME in the capture initrd.
    crashkernel, memory: the first kernel's crashkernel= and QEMU's -m.
    transition: the stage the first script marks when it leaves the first kernel: "crash"
        (lib.sh `crash`), e.g. "kexec-exec" (lib.sh `kexec_exec`, for `kexec -e`), or
        "poweroff" (lib.sh `power_off`: the run ends in the first kernel, no capture stages).
    dma_rate: frames per second a host-side sender (dma.Sender) feeds a second e1000e with
        while QEMU runs, over loopback UDP (0: no such NIC). The NIC is at dma.NIC_BDF; the
        sender's log is Result.dma and <run>/dma-sender.json.
    first_initrd: "" boots the first kernel with the harness's own small initramfs;
        "initramfs-tools" or "dracut" with a real Debian 12 initrd built by that generator
        with the early collector's hooks installed as contrib/README.md says (bootinitrd.py);
        it mounts the root disk by its label and runs the harness's init through init=.
    seed_runtime: start the root disk with the capture runtime that `handoff load` packed in
        an earlier run (runtimecache.py), so this run does not rebuild it; False proves the
        cold build.
    nvme_ext4_mb: 0 gives the NVMe namespace 64 MiB of zeros; otherwise it holds an empty ext4
        file system of that size (label e2envme, so a dump can be written through the NVMe),
        and its `capture/` directory comes back as "nvme/capture/..." in Result.files.
    qemu_args: further QEMU arguments (e.g. another root port and the device behind it),
        appended after the standard topology so that the standard BDFs do not move.
    kernel: the Debian 12 kernel line both kernels boot (config.KERNEL_LINES: "6.1", the
        default, or "6.12"). A run on another line than the default keeps its files apart:
        run_name is "<name>-<kernel>" (cache/runs/, timings-*.json, dma-*.json).
    """

    name: str
    first_script: str
    capture_hooks: dict[str, str] = field(default_factory=dict)
    extra_cmdline: str = ""
    capture_append: str = CAPTURE_APPEND
    with_handoff: bool = True
    vmcore: str = "full"  # full | head | none: what /init saves if no hook saved a dump
    script_stages: tuple[str, ...] = ()
    pre_udev_stages: tuple[str, ...] = ()
    pre_pivot_stages: tuple[str, ...] = ()
    timeouts: dict[str, float] = field(default_factory=dict)
    overall_timeout: float = OVERALL_TIMEOUT
    files: dict[str, bytes] = field(default_factory=dict)
    capture_files: dict[str, bytes] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    crashkernel: str = CRASHKERNEL
    memory: str = GUEST_MEMORY
    transition: str = "crash"
    seed_runtime: bool = True
    first_initrd: str = ""
    nvme_ext4_mb: int = 0
    qemu_args: tuple[str, ...] = ()
    dma_rate: float = 0.0
    kernel: str = DEFAULT_KERNEL

    @property
    def run_name(self) -> str:
        """The run's directory and file name: the default line keeps the scenario's name."""
        return self.name if self.kernel == DEFAULT_KERNEL else f"{self.name}-{self.kernel}"

    @classmethod
    def from_dir(cls, path: Path | str, **overrides: Any) -> Scenario:
        """Load scenarios/<name>/: first.sh, hooks/<dir>/*.sh, optional scenario.toml whose
        keys are this class's fields."""
        path = Path(path)
        if not path.is_absolute() and not path.exists():
            path = SCENARIOS_DIR / path
        opts: dict[str, Any] = {"name": path.name}
        toml = path / "scenario.toml"
        if toml.exists():
            opts.update(tomllib.loads(toml.read_text()))
        for key in ("script_stages", "pre_udev_stages", "pre_pivot_stages", "tools", "qemu_args"):
            if key in opts:
                opts[key] = tuple(opts[key])
        hooks = {
            str(p.relative_to(path / "hooks")): p.read_text()
            for p in sorted((path / "hooks").glob("*/*.sh"))
        }
        opts.update(first_script=(path / "first.sh").read_text(), capture_hooks=hooks)
        opts.update(overrides)
        return cls(**opts)

    def stages(self) -> list[Stage]:
        scale = timeout_scale()
        first = list(FIRST_STAGES)
        if self.first_initrd:
            # A real initramfs prints no marker: the root's init is the first to speak.
            first = [("first-root", FIRST_STAGES[0][1] + FIRST_STAGES[1][1]), *first[2:]]
        plan = [
            *first,
            *[(s, SCRIPT_STAGE_TIMEOUT) for s in self.script_stages],
            (self.transition, SCRIPT_STAGE_TIMEOUT),
        ]
        if self.transition != "poweroff":
            plan += [
                CAPTURE_STAGES[0],
                *[(s, SCRIPT_STAGE_TIMEOUT) for s in self.pre_udev_stages],
                *CAPTURE_STAGES[1:4],
                *[(s, SCRIPT_STAGE_TIMEOUT) for s in self.pre_pivot_stages],
                *CAPTURE_STAGES[4:],
            ]
        return [Stage(n, self.timeouts.get(n, t) * scale) for n, t in plan]

    def cmdline(self) -> str:
        """The first kernel's command line."""
        parts = [first_cmdline(self.crashkernel)]
        if self.first_initrd:
            parts.append(f"root=LABEL={ROOT_LABEL} rw init=/sbin/e2e-first-init")
        parts.append(self.extra_cmdline)
        return " ".join(p for p in parts if p)


@dataclass
class Result:
    """What one run produced. `files` maps "first/..." and "capture/..." to host paths."""

    scenario: str
    stages: list[StageTime]
    infos: list[str]
    serial_log: str
    out_dir: Path
    files: dict[str, Path]
    prepare_s: float
    qemu_s: float
    kernel: str
    phases: dict[str, float] = field(default_factory=dict)  # host seconds per phase
    runtime_seeded: bool = False  # the root disk started with a packed capture runtime
    first_initrd: bootinitrd.BootInitrd | None = None  # the real initrd the first kernel used
    qemu_started: float = 0.0  # time.monotonic() at QEMU's start; stage host_s count from it
    dma: dict[str, Any] | None = None  # the DMA sender's log (dma.Sender.log)
    kernel_line: str = DEFAULT_KERNEL  # Scenario.kernel; `kernel` is the release booted

    def __repr__(self) -> str:  # short, for pytest's failure reports
        return f"Result({self.scenario!r}, {len(self.stages)} stages, out={self.out_dir})"

    def read(self, name: str) -> bytes:
        return self.files[name].read_bytes()

    def text(self, name: str) -> str:
        return self.read(name).decode()

    def stage(self, name: str) -> StageTime:
        return next(s for s in self.stages if s.name == name)

    def timings(self) -> dict[str, object]:
        rows, prev = [], 0.0
        for s in self.stages:
            rows.append(
                {
                    "stage": s.name,
                    "at_s": round(s.host_s, 3),
                    "delta_s": round(s.host_s - prev, 3),
                    "guest_uptime_ms": s.guest_ms,
                }
            )
            prev = s.host_s
        return {
            "scenario": self.scenario,
            "kernel": self.kernel,
            "kernel_line": self.kernel_line,
            "prepare_s": round(self.prepare_s, 3),
            "qemu_s": round(self.qemu_s, 3),
            "host_phases_s": self.phases,
            "runtime_cache_seeded": self.runtime_seeded,
            **({"first_initrd": self.first_initrd.info} if self.first_initrd else {}),
            "stages": rows,
            "infos": self.infos,
        }

    def table(self) -> str:
        t = self.timings()
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())
        lines = [f"scenario {self.scenario} (kernel {self.kernel}): {phases}"]
        for row in t["stages"]:  # type: ignore[attr-defined]
            guest = "" if row["guest_uptime_ms"] is None else f"(guest {row['guest_uptime_ms']} ms)"
            lines.append(
                f"  {row['stage']:<18} at {row['at_s']:7.2f} s  +{row['delta_s']:6.2f} s  {guest}"
            )
        return "\n".join(lines)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _root_image(
    sc: Scenario, pkgs: rootfs.Packages, base: Path, run: Path
) -> tuple[Path, str | None, bool]:
    """Base tree (hard links into the cache) + this run's scripts, capture initrd, handoff.
    Returns the image, the runtime-cache key (None without handoff) and whether it was
    seeded."""
    stage_dir = run / "root"
    subprocess.run(["cp", "-al", str(base), str(stage_dir)], check=True)
    helpers = {name: tools.build(name).read_bytes() for name in sc.tools}
    for name, binary in helpers.items():
        rootfs.write_file(stage_dir / "usr/bin" / name, binary, 0o755)
    capture_extra = {f"bin/{name}": (b, 0o755) for name, b in helpers.items()}
    capture_extra.update({p.lstrip("/"): (c, 0o644) for p, c in sc.capture_files.items()})
    overlay: dict[str, str | bytes] = {
        "etc/e2e/lib.sh": (GUEST_SCRIPTS / "lib.sh").read_text(),
        "etc/e2e/first.sh": sc.first_script,
        "etc/e2e/capture-append": sc.capture_append + "\n",
        **{p.lstrip("/"): c for p, c in sc.files.items()},
    }
    for rel, content in overlay.items():
        rootfs.write_file(stage_dir / rel, content)
    rootfs.write_file(
        stage_dir / "sbin/e2e-first-init", (GUEST_SCRIPTS / "first-init.sh").read_text(), 0o755
    )
    if sc.transition != "poweroff":  # no capture kernel otherwise
        rootfs.capture_initrd(
            pkgs, sc.capture_hooks, sc.vmcore, stage_dir / "boot/capture-initrd.img", capture_extra
        )
    rt_key, seeded = None, False
    if sc.with_handoff:
        pyinstall.install(stage_dir / "opt/handoff")
        rootfs.check_libraries(stage_dir, "opt/handoff")
        rt_key = runtimecache.key(stage_dir)
        seeded = sc.seed_runtime and runtimecache.seed(stage_dir, rt_key)
    image = run / "root.raw"
    rootfs.make_ext4(stage_dir, image, rootfs.tree_size_mb(stage_dir) * 5 // 4 + 64, ROOT_LABEL)
    shutil.rmtree(stage_dir)
    return image, rt_key, seeded


def run(sc: Scenario) -> Result:
    """Build everything `sc` needs (cached where possible), boot it, return the Result.

    Raises qemu.StageError naming the stage that failed, with the console's last lines."""
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    mark = [t0]

    def phase(name: str) -> None:
        mark.append(time.monotonic())
        phases[name] = round(mark[-1] - mark[-2], 3)

    run_dir = RUNS_DIR / sc.run_name
    with _lock(RUNS_DIR / f"{sc.run_name}.lock"):
        # Builds share the cache, so they take turns; the QEMU runs themselves need not.
        with _lock(CACHE_DIR / ".lock"):
            pkgs = rootfs.prepare_packages(sc.kernel)
            phase("packages")
            kernel = rootfs.vmlinux_for(pkgs)
            initrd = rootfs.first_initramfs(pkgs)
            base = rootfs.base_tree(pkgs)
            phase("cached-trees")
            boot = None
            if sc.first_initrd:
                boot = bootinitrd.build(
                    [sc.first_initrd],
                    pkgs.kernel.root,
                    pkgs.release,
                    pkgs.kernel.filename,
                    also=list(bootinitrd.KINDS),  # a cold cache builds both in parallel
                )[sc.first_initrd]
                initrd = boot.image
                phase("first-initrd")
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            root_image, rt_key, seeded = _root_image(sc, pkgs, base, run_dir)
            disks = {
                "root": root_image,
                "results": run_dir / "results.raw",
                "nvme": run_dir / "nvme.raw",
            }
        rootfs.make_ext4(None, disks["results"], RESULTS_DISK_MB, "e2eres")
        if sc.nvme_ext4_mb:
            rootfs.make_ext4(None, disks["nvme"], sc.nvme_ext4_mb, NVME_SERIAL)
        else:
            with disks["nvme"].open("wb") as f:
                f.truncate(64 << 20)
        cmdline = sc.cmdline()
        sender = dma.Sender(sc.dma_rate) if sc.dma_rate else None
        argv = qemu.argv(
            kernel,
            initrd,
            cmdline,
            disks,
            memory=sc.memory,
            dma_netdev=sender.netdev("n3") if sender else "",
            tcg_thread=TCG_THREAD.get(sc.kernel, "multi"),
        ) + list(sc.qemu_args)
        (run_dir / "qemu-argv.txt").write_text(shlex.join(argv) + "\n")  # copy-pasteable
        phase("run-images")
        prepare_s = time.monotonic() - t0
        try:
            if sender:
                sender.start()
            try:
                outcome = qemu.run(
                    argv, sc.stages(), run_dir / "serial.log", sc.overall_timeout * timeout_scale()
                )
            finally:
                if sender:
                    sender.stop()
                    (run_dir / "dma-sender.json").write_text(json.dumps(sender.log()) + "\n")
        except qemu.StageError as e:
            _salvage(disks["results"], run_dir)
            if sc.nvme_ext4_mb:
                _salvage(disks["nvme"], run_dir, "nvme-out")
            if rt_key is not None:  # a failure after `handoff load` still packed a runtime
                with _lock(CACHE_DIR / ".lock"):
                    runtimecache.harvest(disks["root"], rt_key)
            e.add_note(
                f"serial console: {run_dir / 'serial.log'}; what the guests wrote: "
                f"{run_dir / 'out'}; QEMU command: {run_dir / 'qemu-argv.txt'}"
            )
            raise
        phase("qemu")
        files = results.extract(disks["results"], ("first", "capture"), run_dir / "out")
        if sc.nvme_ext4_mb:
            nvme = results.extract(disks["nvme"], ("capture",), run_dir / "nvme-out")
            files.update({f"nvme/{k}": p for k, p in nvme.items()})
            disks["nvme"].unlink()
        if rt_key is not None:
            with _lock(CACHE_DIR / ".lock"):
                runtimecache.harvest(disks["root"], rt_key)
        disks["results"].unlink()  # the vmcore is in out/ now; the root image is rebuilt
        disks["root"].unlink()
        phase("extract-results")
    result = Result(
        sc.run_name,
        outcome.stages,
        outcome.infos,
        "\n".join(outcome.lines),
        run_dir / "out",
        files,
        prepare_s,
        outcome.wall_s,
        pkgs.release,
        phases,
        seeded,
        boot,
        qemu_started=outcome.started,
        dma=sender.log() if sender else None,
        kernel_line=sc.kernel,
    )
    timings = CACHE_DIR / f"timings-{sc.run_name}.json"
    jsonfile.replace(timings, result.timings())
    if sender:  # the DMA scenarios' figures, for the bench
        figures = CACHE_DIR / f"dma-{sc.run_name}.json"
        jsonfile.replace(figures, dma.summary(result))
    return result


def _salvage(image: Path, run_dir: Path, out: str = "out") -> None:
    """Best effort: keep whatever the guest wrote before failing, for the post-mortem."""
    try:
        results.extract(image, ("first", "capture"), run_dir / out)
    except (results.ResultsError, OSError):
        pass


def run_scenario(
    first_kernel_script: str,
    capture_hooks: dict[str, str] | None = None,
    *,
    name: str = "adhoc",
    extra_cmdline: str = "",
    **options: Any,
) -> Result:
    """Run a scenario given as strings; `options` are further Scenario fields."""
    return run(
        Scenario(
            name=name,
            first_script=first_kernel_script,
            capture_hooks=dict(capture_hooks or {}),
            extra_cmdline=extra_cmdline,
            **options,
        )
    )
