"""The Debian system's root disk (handoff installed by the docs) and the QEMU machine it boots in.

One image serves both boots: the first with handoff, the second with the integration's two
drop-ins removed by debugfs (DROPINS); `extract` reads back what the guest left on it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import qemu, rootfs
from .bootinitrd import _in_chroot
from .config import GUEST_SCRIPTS, NVME_SERIAL, REPO_ROOT
from .debsys_tree import (
    DISTRO,
    LABEL,
    OFFLINE_ANCHOR,
    README,
    STEPS_ANCHOR,
    ImageError,
    fenced_block,
    system_tree,
    wheels,
)

ROOT_SERIAL = "debsysroot"
MEMORY = "1G"
CRASHKERNEL = "128M"  # Debian's own: kdump-tools' crashkernel=384M-:128M
CMDLINE = f"root=LABEL={LABEL} ro console=ttyS0 crashkernel={CRASHKERNEL} loglevel=4 panic=1"
DROPINS = (
    "/etc/systemd/system/kdump-tools.service.d/handoff.conf",
    "/etc/systemd/system/kdump-tools-dump.service.d/handoff.conf",
)


UNIT = """\
[Unit]
Description=handoff e2e: the Debian system scenario's driver (tests/e2e/e2e_harness/debsys_image.py)
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


def debugfs(image: Path, *requests: str, write: bool = False) -> str:
    """Run debugfs `requests` on the (unmounted) image; its output."""
    cmds = image.with_suffix(".debugfs")
    cmds.write_text("\n".join(requests) + "\n")
    argv = ["debugfs", *(["-w"] if write else []), "-f", str(cmds), str(image)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    cmds.unlink()
    if proc.returncode != 0:
        raise ImageError(f"{shlex.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout + proc.stderr


def extract(image: Path, out: Path) -> dict[str, Path]:
    """Copy what the guest left (/var/crash, /var/lib/e2e, /var/log/journal) into `out`."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for src, name in (("/var/crash", "crash"), ("/var/lib/e2e", "e2e"),
                      ("/var/log/journal", "journal")):
        debugfs(image, f"rdump {src} {out}")
        got = out / Path(src).name
        if got.is_dir() and got.name != name:
            got.rename(out / name)
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file()}
