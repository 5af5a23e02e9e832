"""Constants shared by the harness: cache layout, guest packages, modules, QEMU topology."""

from __future__ import annotations

import os
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = E2E_DIR.parent.parent
CACHE_DIR = Path(os.environ.get("HANDOFF_E2E_CACHE", E2E_DIR / "cache"))
GUEST_SCRIPTS = Path(__file__).resolve().parent / "guest"
SCENARIOS_DIR = E2E_DIR / "scenarios"

# Debian packages unpacked into the guest; the kernel comes from linux-image-amd64's
# dependency and shared libraries are added by following DT_NEEDED (see rootfs.py).
GUEST_PACKAGES = (
    "busybox-static",
    "kexec-tools",
    "pciutils",
    "makedumpfile",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    # What manylinux wheels may link without vendoring (cbor2's extension needs libgcc_s).
    "libgcc-s1",
    "libstdc++6",
)
KERNEL_META_PACKAGE = "linux-image-amd64"
# The Debian 12 kernel lines the e2e suite boots, by short name: the meta package whose
# dependency names today's versioned package (never a hard-coded ABI number), and whether to
# take that package's -unsigned twin (same kernel and modules, no Secure Boot signatures).
# 6.1 is bookworm's own kernel and the default; 6.12 comes from bookworm-security (zstd
# bzImage, .ko.xz modules, virtio_pci built in: vmlinux.py, kmods.py).
KERNEL_LINES = {"6.1": (KERNEL_META_PACKAGE, False), "6.12": ("linux-image-6.12-amd64", True)}
DEFAULT_KERNEL = "6.1"
# QEMU's TCG threading per kernel line (default "multi"). 6.12's first kernel died once in six
# boots with `Oops: int3` in sched_clock_idle_wakeup_event() on CPU 1, 2 s into boot: the int3
# of a jump label that CPU 0 was patching (text_poke_bp, late_initcall
# sched_clock_init_late()), which the int3 handler no longer recognised. One host thread for
# both vCPUs serialises the code modification against the other vCPU.
TCG_THREAD = {"6.12": "single"}


def kernel_lines() -> list[str]:
    """The kernel lines the parametrised e2e tests run on: all of KERNEL_LINES, or those
    HANDOFF_E2E_KERNELS names (e.g. "6.1" or "6.1,6.12")."""
    wanted = os.environ.get("HANDOFF_E2E_KERNELS", "")
    lines = [k.strip() for k in wanted.split(",") if k.strip()] or list(KERNEL_LINES)
    unknown = [k for k in lines if k not in KERNEL_LINES]
    if unknown:
        raise ValueError(
            f"HANDOFF_E2E_KERNELS names unknown kernel lines {unknown}; known: "
            f"{', '.join(KERNEL_LINES)}"
        )
    return lines
# The library closure of the packages above as computed on Debian 12; a cold cache starts
# from it so that one apt round trip fetches nearly everything (the closure is still checked).
LIBRARY_SEED = (
    "libbz2-1.0",
    "libcom-err2",
    "libcrypt1",
    "libdb5.3",
    "libdw1",
    "libelf1",
    "libexpat1",
    "libext2fs2",
    "libffi8",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkmod2",
    "libkrb5-3",
    "libkrb5support0",
    "liblzma5",
    "liblzo2-2",
    "libncursesw6",
    "libnsl2",
    "libpci3",
    "libreadline8",
    "libsqlite3-0",
    "libssl3",
    "libtinfo6",
    "libtirpc3",
    "libudev1",
    "libuuid1",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxenmisc4.17",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
    "libzstd1",
    "zlib1g",
)

# Where a soname lives in Debian 12. Looked up here first so that a fresh host, which has
# none of these installed, resolves the same set; unknown sonames fall back to `dpkg -S`.
SONAME_PACKAGES = {
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
    "libresolv.so.2": "libc6",
    "ld-linux-x86-64.so.2": "libc6",
    "libz.so.1": "zlib1g",
    "libbz2.so.1.0": "libbz2-1.0",
    "liblzma.so.5": "liblzma5",
    "liblzo2.so.2": "liblzo2-2",
    "libzstd.so.1": "libzstd1",
    "libcrypt.so.1": "libcrypt1",
    "libcrypto.so.3": "libssl3",
    "libssl.so.3": "libssl3",
    "libdb-5.3.so": "libdb5.3",
    "libdw.so.1": "libdw1",
    "libelf.so.1": "libelf1",
    "libexpat.so.1": "libexpat1",
    "libffi.so.8": "libffi8",
    "libkmod.so.2": "libkmod2",
    "libncursesw.so.6": "libncursesw6",
    "libpanelw.so.6": "libncursesw6",
    "libtinfo.so.6": "libtinfo6",
    "libreadline.so.8": "libreadline8",
    "libnsl.so.2": "libnsl2",
    "libtirpc.so.3": "libtirpc3",
    "libuuid.so.1": "libuuid1",
    "libsqlite3.so.0": "libsqlite3-0",
    "libpci.so.3": "libpci3",
    "libgssapi_krb5.so.2": "libgssapi-krb5-2",
    "libkrb5.so.3": "libkrb5-3",
    "libk5crypto.so.3": "libk5crypto3",
    "libkrb5support.so.0": "libkrb5support0",
    "libcom_err.so.2": "libcom-err2",
    "libkeyutils.so.1": "libkeyutils1",
    "libudev.so.1": "libudev1",
    "libcap.so.2": "libcap2",
    "libxenctrl.so.4.17": "libxenmisc4.17",
    "libxenguest.so.4.17": "libxenmisc4.17",
    "libxenlight.so.4.17": "libxenmisc4.17",
    "libxenstat.so.4.17": "libxenmisc4.17",
    "libxencall.so.1": "libxencall1",
    "libxendevicemodel.so.1": "libxendevicemodel1",
    "libxenevtchn.so.1": "libxenevtchn1",
    "libxenforeignmemory.so.1": "libxenforeignmemory1",
    "libxengnttab.so.1": "libxengnttab1",
    "libxenhypfs.so.1": "libxenhypfs1",
    "libxenstore.so.4": "libxenstore4",
    "libxentoollog.so.1": "libxentoollog1",
    "libxentoolcore.so.1": "libxentoolcore1",
    "libyajl.so.2": "libyajl2",
    "libgcc_s.so.1": "libgcc-s1",
    "libstdc++.so.6": "libstdc++6",
    "libsnappy.so.1": "libsnappy1v5",
    "libgnutls.so.30": "libgnutls30",
    "libbsd.so.0": "libbsd0",
    "libmd.so.0": "libmd0",
    "libext2fs.so.2": "libext2fs2",
}

# Kernel modules by role; dependencies are added from each module's modinfo.
# crc32c_generic serves ext4's `softdep pre: crypto-crc32c` (the TCG CPU lacks SSE4.2).
ROOT_DISK_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
DRIVER_MODULES = ("nvme", "virtio_net", "e1000", "e1000e")

GUEST_MEMORY = "512M"
# Debian's default reservation (kdump-tools: crashkernel=384M-:128M). `handoff load` estimates
# 121.8 MiB with its 10% headroom for this guest since the runtime became a zip (it was 141
# MiB, and the tests reserved the 160M it recommended then), so every scenario, the baseline
# included, reserves 128M: the dumps stay the same size for the bench.
CRASHKERNEL = "128M"


def first_cmdline(crashkernel: str = CRASHKERNEL) -> str:
    return f"console=ttyS0 crashkernel={crashkernel} panic=1 quiet loglevel=3 pci=earlydump"


FIRST_CMDLINE = first_cmdline()
CAPTURE_APPEND = "console=ttyS0 reset_devices nr_cpus=1 irqpoll nousb panic=1 quiet"

# Disk serials, so the guest finds each disk by /sys/block/vdX/serial, not by order.
ROOT_SERIAL = "e2eroot"
ROOT_LABEL = "e2eroot"  # the root disk's ext4 label: root=LABEL= for a real initramfs
RESULTS_SERIAL = "e2eres"
NVME_SERIAL = "e2envme"

MARKER = "HANDOFF-E2E"
