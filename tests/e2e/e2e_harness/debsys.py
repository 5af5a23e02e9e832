"""A real Debian 12 system in QEMU (issue 16): debootstrap's bookworm with systemd as PID 1,
kdump-tools, makedumpfile and kexec-tools from Debian, the harness's 6.1 kernel installed with
dpkg, handoff installed and integrated with kdump-tools by the documented commands only.

Two boots of one disk image: the first with handoff (README's offline install at image build,
docs/distro.md's steps in the guest, then a perturbation and a crash), the second with the
integration removed (the host deletes the two drop-ins with debugfs), as the peer. Each ends
when kdump-tools' dump service runs `reboot -f` in the capture kernel (QEMU: -no-reboot).

Cached in CACHE_DIR/debsys/:
- `system-<key>/`: the debootstrapped tree with the kernel installed (dpkg -i, which also runs
  update-initramfs for the boot initrd); key = RECIPE, the host apt's candidate versions of
  PACKAGES, the kernel package and the init-top observer;
- `wheels-<key>/`: README's `pip wheel` output for the guest (key: handoff's sources).
kdump-tools builds its own initrd (MODULES=dep) in the guest at first boot, as on a real
install: `kdump-config load` runs its kernel hook when /var/lib/kdump has none. In the chroot
that build cannot work (MODULES=dep looks at the running system's root device), so the hook is
left out while the kernel package is installed there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import debs, pyinstall, qemu, rootfs
from .bootinitrd import MIRROR, SUITE, InitrdError, _in_chroot, _run
from .config import CACHE_DIR, GUEST_SCRIPTS, NVME_SERIAL, REPO_ROOT
from .scenario import timeout_scale

NAME = "debian-system"  # for `python -m e2e_harness` and bench/run --e2e
DIR = CACHE_DIR / "debsys"
RUNS = CACHE_DIR / "runs" / "debian-system"
# Bump when the system tree's recipe changes in a way the key does not see.
RECIPE = "1"
# What a Debian 12 server with kdump has: systemd, udev, kdump-tools (which recommends
# makedumpfile and initramfs-tools-core) and kexec-tools; python3-venv for handoff's install
# (README); pciutils for the scenario's perturbation (setpci); procps and e2fsprogs as on any
# installed system.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "kdump-tools",
    "makedumpfile",
    "kexec-tools",
    "initramfs-tools",
    "zstd",
    "busybox",
    "kmod",
    "linux-base",
    "python3",
    "python3-venv",
    "pciutils",
    "procps",
    "e2fsprogs",
)
# Timers and units that only cost boot time under TCG (journald stays: the capture boot's
# journal is evidence).
MASKED = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-tmpfiles-clean.timer",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "systemd-timesyncd.service",
)
LABEL = "debsys"
ROOT_SERIAL = "debsysroot"
MEMORY = "1G"
CRASHKERNEL = "128M"  # Debian's own: kdump-tools' crashkernel=384M-:128M
CMDLINE = f"root=LABEL={LABEL} ro console=ttyS0 crashkernel={CRASHKERNEL} loglevel=4 panic=1"
DROPINS = (
    "/etc/systemd/system/kdump-tools.service.d/handoff.conf",
    "/etc/systemd/system/kdump-tools-dump.service.d/handoff.conf",
)
README = REPO_ROOT / "README.md"
DISTRO = REPO_ROOT / "docs" / "distro.md"
# The anchors of the documented command blocks (the first ```sh block after each).
WHEEL_ANCHOR = "On a build machine"
OFFLINE_ANCHOR = "On the offline machine"
STEPS_ANCHOR = "Steps, as root,"
# (stage, seconds since the previous one) in the first kernel; the handoff boot builds
# kdump-tools' initrd (before `booted`) and handoff's runtime (before `integrated`) under TCG.
HANDOFF_STAGES = (("booted", 600), ("integrated", 480), ("loaded", 120), ("perturbed", 120),
                  ("crash", 60))
BASELINE_STAGES = (("booted", 600), ("loaded", 120), ("perturbed", 120), ("crash", 60))
CAPTURE_TIMEOUT = 600.0  # crash -> QEMU's exit (kdump-tools' `reboot -f`)


class ImageError(RuntimeError):
    """The Debian system image could not be built or read."""


def fenced_block(path: Path, anchor: str) -> list[str]:
    """The commands of the first ```sh block after the line holding `anchor` in `path`
    (comments and blank lines dropped, backslash continuations joined)."""
    lines = path.read_text().splitlines()
    start = next((i for i, ln in enumerate(lines) if anchor in ln), None)
    if start is None:
        raise ImageError(f"{path} has no line with {anchor!r}")
    i = next((j for j in range(start, len(lines)) if lines[j].strip() == "```sh"), None)
    if i is None:
        raise ImageError(f"{path}: no ```sh block after {anchor!r}")
    out, cur = [], ""
    for ln in lines[i + 1:]:
        if ln.strip() == "```":
            break
        cur += ln.strip()
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        cmd = re.sub(r"\s+#.*$", "", cur).strip()
        if cmd and not cmd.startswith("#"):
            out.append(cmd)
        cur = ""
    return out


def _system_key(kernel_deb: str) -> str:
    resolved = debs.resolve(list(PACKAGES))
    h = hashlib.sha256(f"{RECIPE}\0{SUITE}\0{MIRROR}\0{kernel_deb}\0".encode())
    for name in sorted(resolved):
        h.update(resolved[name].filename.encode() + b"\0")
    h.update((GUEST_SCRIPTS / "debsys-meminfo.sh").read_bytes())
    return h.hexdigest()[:16]


def system_tree(pkgs: rootfs.Packages) -> Path:
    """The installed system without handoff (cached): debootstrap, the kernel, settings."""
    key = _system_key(pkgs.kernel.filename)
    out = DIR / f"system-{key}"
    if (out / "etc/debian_version").is_file():
        return out
    DIR.mkdir(parents=True, exist_ok=True)
    for old in DIR.glob("system-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log = out.with_name(out.name + ".log")
    log.unlink(missing_ok=True)
    argv = ["unshare", "-m", "--propagation", "private", "debootstrap", "--variant=minbase",
            f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR]
    try:
        _run(argv, log, "debootstrap of the Debian system")
    except InitrdError as e:
        inner = tmp / "debootstrap/debootstrap.log"
        if inner.is_file():
            e.add_note(f"{inner}:\n{inner.read_text(errors='replace')[-3000:]}")
        raise
    deb = f"/root/{pkgs.kernel.filename}"
    shutil.copy2(pkgs.kernel.deb_path, tmp / deb.lstrip("/"))
    rootfs.write_file(tmp / "etc/initramfs-tools/scripts/init-top/e2e-meminfo",
                      (GUEST_SCRIPTS / "debsys-meminfo.sh").read_text(), 0o755)
    rootfs.write_file(tmp / "etc/fstab", f"LABEL={LABEL} / ext4 defaults 0 1\n")
    rootfs.write_file(tmp / "etc/hostname", "debsys\n")
    hook = "/etc/kernel/postinst.d/kdump-tools"
    script = "\n".join([
        f"chmod -x {hook}",  # MODULES=dep cannot work in a chroot: kdump-config builds it
        f"DEBIAN_FRONTEND=noninteractive dpkg -i {deb}",
        f"chmod +x {hook}",
        f"rm {deb}",
        f"systemctl mask {' '.join(MASKED)}",
        "mkdir -p /var/log/journal",  # persistent: the capture boot's journal comes back
        "passwd -d root",
    ]) + "\n"
    _in_chroot(tmp, script, log, "installing the kernel in the Debian system")
    if not (tmp / f"boot/initrd.img-{pkgs.release}").is_file():
        raise ImageError(f"dpkg -i {pkgs.kernel.filename} made no initrd; see {log}")
    tmp.rename(out)
    return out


def wheels() -> Path:
    """README's `pip wheel` for the offline install, run on the host (the build machine: the
    same Debian release, Python 3.11), cached by handoff's sources."""
    (cmd,) = fenced_block(README, WHEEL_ANCHOR)
    argv = shlex.split(cmd)
    if argv[:3] != ["python3", "-m", "pip"] or argv[-1] != ".":
        raise ImageError(f"README's wheel command changed: {cmd!r}")
    out = DIR / f"wheels-{pyinstall._source_hash()}"
    if out.is_dir():
        return out
    for old in DIR.glob("wheels-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = Path(f"{out}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    wdir = argv.index("-w") + 1
    argv[wdir] = str(tmp)
    argv = [pyinstall.python311(), *argv[1:-1], str(REPO_ROOT)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"{shlex.join(argv)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    tmp.rename(out)
    return out


UNIT = """\
[Unit]
Description=handoff e2e: the Debian system scenario's driver (tests/e2e/e2e_harness/debsys.py)
After=kdump-tools.service multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-debsys-driver
StandardOutput=journal

[Install]
WantedBy=multi-user.target
"""


def build_image(pkgs: rootfs.Packages, run_dir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The root disk of both boots: the system, handoff installed by README's offline
    commands (in the chroot: they need no running system), the checkout's contrib/ in
    /root/handoff for docs/distro.md's steps (run in the guest), and the scenario's driver.
    Returns the image, the boot initrd and what was run."""
    system = system_tree(pkgs)
    wheel_dir = wheels()
    stage = run_dir / "root"
    shutil.rmtree(stage, ignore_errors=True)
    subprocess.run(["cp", "-al", str(system), str(stage)], check=True)
    checkout = stage / "root/handoff"
    checkout.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "contrib", checkout / "contrib", symlinks=True)
    shutil.copytree(wheel_dir, checkout / "wheels")
    install = fenced_block(README, OFFLINE_ANCHOR)
    log = run_dir / "image.log"
    _in_chroot(stage, "cd /root/handoff\n" + "\n".join(install) + "\n", log,
               "README's offline install in the Debian system")
    steps = fenced_block(DISTRO, STEPS_ANCHOR)
    files: dict[str, tuple[str, int]] = {
        "etc/e2e/lib.sh": ((GUEST_SCRIPTS / "lib.sh").read_text(), 0o644),
        "etc/e2e/mode": ("handoff\n", 0o644),
        "etc/e2e/distro-steps.sh": ("\n".join(steps) + "\n", 0o644),
        "usr/local/sbin/e2e-debsys-driver": ((GUEST_SCRIPTS / "debsys-driver.sh").read_text(),
                                             0o755),
        "etc/systemd/system/e2e-debsys.service": (UNIT, 0o644),
    }
    for rel, (text, mode) in files.items():
        rootfs.write_file(stage / rel, text, mode)
    wants = stage / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    os.symlink("/etc/systemd/system/e2e-debsys.service", wants / "e2e-debsys.service")
    image = run_dir / "root.raw"
    size = rootfs.tree_size_mb(stage) * 5 // 4 + 1024  # room for the dumps and their copies
    rootfs.make_ext4(stage, image, size, LABEL)
    shutil.rmtree(stage)
    info = {"system": system.name, "wheels": sorted(p.name for p in wheel_dir.iterdir()),
            "install": install, "steps": steps, "image_mb": size}
    return image, system / f"boot/initrd.img-{pkgs.release}", info


def qemu_argv(kernel: Path, initrd: Path, image: Path, nvme: Path) -> list[str]:
    """q35 with 16 PCI functions: the chipset's four (host bridge, LPC, AHCI, SMBus), seven
    root ports, nvme 01:00.0, virtio-net 02:00.0, the virtio-blk root disk 03:00.0, xhci
    04:00.0, e1000e 05:00.0 (lib.sh's E1000E); root ports 00:06.0 and 00:07.0 stay empty."""
    machine = "-accel tcg,thread=multi -M q35 -smp 2 -nodefaults -display none -monitor none"
    cmd = [qemu.QEMU, *machine.split(), "-m", MEMORY, "-serial", "stdio", "-no-reboot"]
    cmd += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", CMDLINE]
    cmd += ["-drive", f"if=none,id=root,file={image},format=raw,cache=unsafe"]
    cmd += ["-drive", f"if=none,id=nvm,file={nvme},format=raw,cache=unsafe"]
    cmd += ["-netdev", "hubport,id=n0,hubid=0", "-netdev", "hubport,id=n1,hubid=1"]
    devices = [
        *(f"pcie-root-port,id=rp{i},chassis={i},slot={i},bus=pcie.0,addr={i:#x}"
          for i in range(1, 8)),
        f"nvme,serial={NVME_SERIAL},drive=nvm,bus=rp1",
        "virtio-net-pci,netdev=n0,bus=rp2,mac=52:54:00:00:00:02",
        f"virtio-blk-pci,drive=root,serial={ROOT_SERIAL},bus=rp3",
        "qemu-xhci,bus=rp4",
        "e1000e,netdev=n1,bus=rp5,mac=52:54:00:00:00:03",
    ]
    for d in devices:
        cmd += ["-device", d]
    return cmd


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


def _debugfs(image: Path, *requests: str, write: bool = False) -> str:
    cmds = image.with_suffix(".debugfs")
    cmds.write_text("\n".join(requests) + "\n")
    argv = ["debugfs", *(["-w"] if write else []), "-f", str(cmds), str(image)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    cmds.unlink()
    if proc.returncode != 0:
        raise ImageError(f"{shlex.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout + proc.stderr


def _extract(image: Path, out: Path) -> dict[str, Path]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for src, name in (("/var/crash", "crash"), ("/var/lib/e2e", "e2e"),
                      ("/var/log/journal", "journal")):
        _debugfs(image, f"rdump {src} {out}")
        got = out / Path(src).name
        if got.is_dir() and got.name != name:
            got.rename(out / name)
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file()}


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
            _extract(image, run_dir / f"out-{mode}")
        except ImageError:
            pass
        e.add_note(f"serial console: {serial}; what the guest wrote: {run_dir}/out-{mode}")
        raise
    out = run_dir / f"out-{mode}"
    return Boot(mode, outcome, out, _extract(image, out), serial)


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
        _debugfs(image, *(f"rm {p}" for p in DROPINS), "rm /etc/e2e/mode",
                 f"write {mode_file} /etc/e2e/mode", write=True)
        baseline = _boot("baseline", argv, image, RUNS)
        phase("boot-baseline")
        image.unlink()
        nvme.unlink()
    pair = Pair(with_handoff, baseline, pkgs.release, info, phases)
    (CACHE_DIR / "debsys-timings.json").write_text(json.dumps(timings(pair), indent=1) + "\n")
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


_MEM_AT_RESTORE = re.compile(r"handoff: restore, record generation \d+ \(MemAvailable:\s+(\d+) kB")
_MEM_INIT_TOP = re.compile(r"init-top MemAvailable:\s+(\d+) kB")
FIGURES = CACHE_DIR / "debsys-memory.json"


def _kb(lines: list[str], pattern: re.Pattern[str]) -> int | None:
    found = [int(m[1]) * 1024 for ln in lines if (m := pattern.search(ln.rstrip()))]
    return found[-1] if found else None


def restore_report(boot: Boot) -> dict[str, Any] | None:
    """The restore report in the boot's one saved dump, by `handoff inspect --json` of the
    working tree (None without one)."""
    import sys

    dumps = boot.dumps()
    if len(dumps) != 1:
        return None
    proc = subprocess.run([sys.executable, "-m", "handoff", "inspect", "--json", str(dumps[0])],
                          capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    try:
        reports = json.loads(proc.stdout)["container"]["reports"]
    except (ValueError, KeyError, TypeError):
        return None
    return reports[0]["report"] if len(reports) == 1 else None


def figures(pair: Pair) -> dict[str, Any]:
    """Memory and time of the two boots, for the test and `bench/run --e2e` (FIGURES).

    handoff's addition to the capture kernel's peak (issue 16): its runtime as unpacked plus
    restore's own peak, measured in the capture kernel (the report's `memory`: VmHWM less the
    file pages, which are the unpacked runtime). Cross-checked by MemAvailable at one init-top
    point (after restore, before udev) of both boots, plus that peak."""
    h, b = pair.handoff, pair.baseline
    (rt_json,) = sorted((h.out / "e2e/handoff/runtime-cache").glob("*/runtime.json"))
    rt = json.loads(rt_json.read_text())
    report = restore_report(h) or {}
    mem = report.get("memory") or {}
    ours_top = _kb(h.outcome.infos, _MEM_INIT_TOP)
    base_top = _kb(b.outcome.infos, _MEM_INIT_TOP)
    peak = mem.get("peak_private")
    unpacked = int(rt["unpacked_size"])
    doc = {
        "kernel": pair.release,
        "crashkernel": CRASHKERNEL,
        "memory": MEMORY,
        "runtime_unpacked": unpacked,
        "runtime_cpio": int(rt.get("cpio_size", 0)),
        "peak_private": peak,  # restore in the capture kernel
        "restore_peak_rss": mem.get("peak_rss"),
        "load_peak_private": int(rt["peak_private"]),  # measured by `handoff load`
        "added": None if peak is None else unpacked + peak,
        "mem_available_at_restore": _kb(h.outcome.lines, _MEM_AT_RESTORE),
        "mem_available_init_top": {"handoff": ours_top, "baseline": base_top},
        "added_measured": None if ours_top is None or base_top is None or peak is None
        else base_top - ours_top + peak,
        "crash_to_saved_s": {"handoff": round(h.crash_to_exit_s, 2),
                             "baseline": round(b.crash_to_exit_s, 2)},
        "qemu_s": {"handoff": round(h.outcome.wall_s, 1), "baseline": round(b.outcome.wall_s, 1)},
        "phases_s": pair.phases,
    }
    FIGURES.write_text(json.dumps(doc, indent=1) + "\n")
    return doc
