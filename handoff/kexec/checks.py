"""Preflight checks for loading a capture kernel, and the crashkernel memory estimate.

Each failing check raises ``EnvironmentProblem`` (exit 4) saying what to do. The estimate
follows ``kdumpctl estimate`` (kernel image + initramfs + runtime), refined with what the
capture kernel was measured to need (docs/load.md, "Memory").
"""

from __future__ import annotations

import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from handoff.errors import EnvironmentProblem
from handoff.kexec.config import Host

MiB = 1024 * 1024

ROOT_HINT = "run it as root (sudo handoff ...): kexec needs CAP_SYS_BOOT and saving reads full config space"
KEXEC_HINT = "install kexec-tools (Debian/Ubuntu: apt install kexec-tools; Fedora/RHEL: dnf install kexec-tools)"
CRASHKERNEL_HINT = (
    "reserve memory with crashkernel=SIZE on the kernel command line and reboot "
    "(Debian: /etc/default/grub.d/kdump-tools.cfg then update-grub; Fedora: "
    "kdumpctl reset-crashkernel or grubby --update-kernel=ALL --args=crashkernel=SIZE); "
    "`handoff estimate` prints the size it needs (no root needed)"
)


def check_root(host: Host) -> None:
    if host.uid != 0:
        raise EnvironmentProblem(f"not running as root (euid {host.uid})", hint=ROOT_HINT)


def check_kexec_enabled(host: Host) -> None:
    """kernel.kexec_load_disabled is one-way: once 1, nothing loads until reboot."""
    if (host.read_text("/proc/sys/kernel/kexec_load_disabled") or "0").strip() == "1":
        raise EnvironmentProblem(
            "kexec is disabled on this machine (kernel.kexec_load_disabled = 1)",
            hint="the setting cannot be undone at runtime: remove it from sysctl configuration "
            "(grep -r kexec_load_disabled /etc/sysctl.*) and reboot",
        )


def crash_size(host: Host) -> int:
    """Bytes reserved by crashkernel=, from /sys/kernel/kexec_crash_size; raises if none."""
    text = host.sys_text("kernel/kexec_crash_size")
    if text is None:
        raise EnvironmentProblem(
            f"this kernel has no kdump support ({host.sys / 'kernel/kexec_crash_size'} is missing)",
            hint="use a kernel built with CONFIG_CRASH_DUMP and CONFIG_KEXEC (distribution "
            "kernels are), or load for a plain reboot with --kexec-reboot",
        )
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size <= 0:
        iomem = crash_region(host)
        where = "; /proc/iomem has no 'Crash kernel' range" if iomem is None else ""
        raise EnvironmentProblem(
            f"no memory is reserved for a crash kernel (kexec_crash_size is {text}){where}",
            hint=CRASHKERNEL_HINT,
        )
    return size


def crash_region(host: Host) -> tuple[int, int] | None:
    """The first-level 'Crash kernel' range of /proc/iomem (zeros when read without root)."""
    text = host.read_text("/proc/iomem") or ""
    for line in text.splitlines():
        m = re.match(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+) : Crash kernel\s*$", line)
        if m:
            return int(m.group(1), 16), int(m.group(2), 16)
    return None


def lockdown(host: Host) -> str | None:
    """The active lockdown mode ("none", "integrity", "confidentiality"), None if unknown."""
    from handoff.sysfs.probe import parse_lockdown

    text = host.sys_text("kernel/security/lockdown")
    return parse_lockdown(text) if text else None


# -- memory estimate ---------------------------------------------------------------------

# Fitted to QEMU boots of Debian 12's 6.1 kernel (bzImage init_size 63.6 MiB) with -m 80M to
# 128M and a busybox initrd with and without the handoff runtime (docs/load.md, "Memory"):
# at userspace MemAvailable = RAM - init_size - 3 MiB - unpacked initrd (within 1.5 MiB in
# all four boots that got there); unpacking needs 12 MiB beyond init_size + compressed +
# unpacked (96M failed and 104M worked for a 4.7 MiB initrd, 80M failed for a 1 MiB one).
KERNEL_RUNTIME = 3 * MiB  # kernel allocations at userspace beyond init_size
UNPACK_OVERHEAD = 12 * MiB  # early-boot allocations and decompressor state while unpacking
USERSPACE_BASE = 16 * MiB  # the capture initrd's own init, udev, shell, dump tool
PER_DEVICE = 64 * 1024  # restore working set per device: snapshots, plan, report
HEADROOM = 0.10  # kdumpctl-style margin on top of the estimate


@dataclass(frozen=True)
class MemoryEstimate:
    """What the capture kernel needs, in bytes, and the crashkernel= size that fits it.

    Two peaks: while the kernel unpacks the initramfs the compressed initrd and the unpacked
    files coexist; at userspace the compressed copy is freed and the handoff runtime runs.
    """

    kernel: int  # memory the image needs: bzImage init_size, or ELF PT_LOAD sizes
    initrd_compressed: int  # the whole initrd copy handed to kexec
    initrd_unpacked: int  # files in rootfs after unpacking (tmpfs pages)
    runtime_peak: int  # handoff's Python process, measured peak RSS
    devices: int
    unpack_peak: int
    userspace_peak: int
    required: int
    capture: bool = True  # handoff capture runs (its peak adds to the initrd's userspace)

    @property
    def required_mb(self) -> int:
        return -(-self.required // MiB)

    def recommended_crashkernel(self) -> str:
        """Round up to a 32 MiB step, as crashkernel sizes usually are."""
        mb = -(-self.required_mb // 32) * 32
        return f"{mb}M"

    def fits(self, reserved: int) -> bool:
        return reserved >= self.required

    def as_dict(self) -> dict[str, int | str]:
        d: dict[str, int | str] = dict(asdict(self))
        d["recommended_crashkernel"] = self.recommended_crashkernel()
        return d


def estimate(
    *,
    kernel_mem: int,
    initrd_compressed: int,
    initrd_unpacked: int,
    runtime_peak: int,
    devices: int,
    capture: bool = True,
) -> MemoryEstimate:
    """Both peaks. ``runtime_peak`` is handoff's own process without its file pages (those
    are the runtime's unpacked rootfs pages, in ``initrd_unpacked``). Restore runs first in
    init-top or pre-udev and exits before udevd starts, so without ``capture`` handoff's
    process never runs beside the initrd's own userspace: the larger of the two counts.
    ``handoff capture`` runs at init-bottom or pre-pivot, where udevd may still run: both.
    """
    unpack = kernel_mem + UNPACK_OVERHEAD + initrd_compressed + initrd_unpacked
    ours = runtime_peak + PER_DEVICE * devices
    user = kernel_mem + KERNEL_RUNTIME + initrd_unpacked + (
        USERSPACE_BASE + ours if capture else max(USERSPACE_BASE, ours))
    required = int(max(unpack, user) * (1 + HEADROOM))
    return MemoryEstimate(
        kernel=kernel_mem,
        initrd_compressed=initrd_compressed,
        initrd_unpacked=initrd_unpacked,
        runtime_peak=runtime_peak,
        devices=devices,
        unpack_peak=unpack,
        userspace_peak=user,
        required=required,
        capture=capture,
    )


def check_memory(est: MemoryEstimate, reserved: int) -> str | None:
    """Refuse when even the estimate without headroom exceeds the reservation; warn (return
    a message) when only the headroom does not fit."""
    need = max(est.unpack_peak, est.userspace_peak)
    parts = (f"kernel {est.kernel // MiB} MiB, initrd {est.initrd_compressed // MiB} MiB "
             f"compressed / {est.initrd_unpacked // MiB} MiB unpacked, handoff runtime "
             f"{est.runtime_peak // MiB} MiB, {est.devices} devices")
    if reserved < need:
        raise EnvironmentProblem(
            f"the capture kernel needs about {est.required_mb} MiB but crashkernel reserves "
            f"{reserved // MiB} MiB ({parts})",
            hint=f"boot with crashkernel={est.recommended_crashkernel()} or larger (Debian: "
                 "/etc/default/grub.d/kdump-tools.cfg and update-grub; Fedora: grubby "
                 "--update-kernel=ALL --args=crashkernel=SIZE), or use a smaller capture initrd",
        )
    if not est.fits(reserved):
        return (f"crashkernel reserves {reserved // MiB} MiB, less than the {est.required_mb} MiB "
                f"estimate with {int(HEADROOM * 100)}% headroom ({parts}); "
                f"crashkernel={est.recommended_crashkernel()} is safer")
    return None


_BZ_SETUP = struct.Struct("<4sH")  # header magic "HdrS" at 0x202, protocol version at 0x206


def kernel_memory(path: Path) -> int:
    """Memory a kernel image needs once loaded: what ``kdumpctl estimate`` calls kernel size.

    x86 bzImage: ``init_size`` of the setup header (boot protocol >= 2.10, offset 0x260),
    the contiguous memory the kernel needs to decompress and start. ELF vmlinux: the sum of
    PT_LOAD memory sizes. arm64/riscv Image: ``image_size`` at offset 16. Otherwise the file
    size times four, a compressed kernel's usual expansion.
    """
    with open(path, "rb") as f:
        head = f.read(0x300)
        size = f.seek(0, 2)
    if len(head) >= 0x264:
        magic, version = _BZ_SETUP.unpack_from(head, 0x202)
        if magic == b"HdrS" and version >= 0x020A:
            return int(struct.unpack_from("<I", head, 0x260)[0])
    if head[:4] == b"\x7fELF":
        return _elf_load_size(path) or size
    if len(head) >= 0x40 and head[0x38:0x3C] in (b"ARM\x64", b"RSC\x05"):
        image_size = struct.unpack_from("<Q", head, 16)[0]
        if image_size:
            return int(image_size)
    return size * 4


def _elf_load_size(path: Path) -> int:
    from handoff.errors import BadContainer
    from handoff.formats.elfcore import parse
    from handoff.sources.blob import FileBlob

    try:
        with FileBlob(str(path)) as blob:
            return parse(blob, read_notes=False).load_memsz
    except BadContainer:
        return 0
