"""Check, and if possible install, what the host needs: QEMU, apt, e2fsprogs, binutils,
debootstrap."""

from __future__ import annotations

import os
import shutil
import subprocess

from .config import REPO_ROOT
from .qemu import QEMU

# Tool -> Debian package, installed by .ci/e2e-deps.
TOOLS = {
    QEMU: "qemu-system-x86",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "readelf": "binutils",
    "eu-readelf": "elfutils",
    "makedumpfile": "makedumpfile",
    "zstd": "zstd",  # the 6.12 line's vmlinux comes out of a zstd bzImage (vmlinux.py)
    "gcc": "gcc",  # the static guest helpers (guest/tools/*.c), with libc6-dev's libc.a
    "git": "git",
    "make": "make",  # csrc/collector, for the early-* scenarios' initrds
    # The early-* scenarios build real initrds in Debian chroots (e2e_harness/bootinitrd.py);
    # initramfs-tools and dracut themselves live only in those chroots, never on the host.
    "debootstrap": "debootstrap",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "journalctl": "systemd",  # the Debian system scenario reads its guest's journals
}
DEPS_SCRIPT = REPO_ROOT / ".ci" / "e2e-deps"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def ensure_tools() -> tuple[list[str], str]:
    """Run .ci/e2e-deps once if a tool is missing and we are root; return what is still
    missing and the installer's output (for the error message)."""
    missing = missing_tools()
    log = ""
    if missing and os.geteuid() == 0 and DEPS_SCRIPT.exists():
        proc = subprocess.run(
            ["bash", str(DEPS_SCRIPT)], capture_output=True, text=True, check=False
        )
        log = (proc.stdout + proc.stderr)[-3000:]
        missing = missing_tools()
    return missing, log


def qemu_unusable() -> str | None:
    """Why QEMU cannot run a TCG guest here, or None if it can."""
    exe = shutil.which(QEMU)
    if exe is None:
        return f"{QEMU} is not installed"
    try:
        proc = subprocess.run(
            [exe, "-accel", "help"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{exe} -accel help failed to run: {e}"
    if proc.returncode != 0 or "tcg" not in proc.stdout.split():
        return f"{exe} offers no TCG accelerator:\n{proc.stdout}{proc.stderr}"
    return None
