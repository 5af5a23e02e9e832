"""The Debian 12 system tree and README's wheels for it, both cached (issue 16).

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
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from . import debs, pyinstall, rootfs
from .bootinitrd import MIRROR, SUITE, InitrdError, _in_chroot, _run
from .config import CACHE_DIR, GUEST_SCRIPTS, REPO_ROOT

DIR = CACHE_DIR / "debsys"
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
README = REPO_ROOT / "README.md"
DISTRO = REPO_ROOT / "docs" / "distro.md"
# The anchors of the documented command blocks (the first ```sh block after each).
WHEEL_ANCHOR = "On a build machine"
OFFLINE_ANCHOR = "On the offline machine"
STEPS_ANCHOR = "Steps, as root,"


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
