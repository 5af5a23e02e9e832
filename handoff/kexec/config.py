"""Where the capture kernel, initrd and command line come from: options, kdump-tools, kdumpctl.

Order of precedence: explicit ``--kernel``/``--initrd`` options, then Debian kdump-tools
(``/etc/default/kdump-tools``), then Fedora kdumpctl / kdump-utils (``/etc/sysconfig/kdump``),
then the running kernel's ``/boot/vmlinuz-$(uname -r)`` and its initrd. Distro files are shell
fragments; they are parsed as plain ``KEY=value`` assignments and never executed.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from handoff.errors import EnvironmentProblem, UsageError

KDUMP_TOOLS_CONF = "/etc/default/kdump-tools"
KDUMPCTL_CONF = "/etc/sysconfig/kdump"

# Debian 12 kdump-tools (1:1.8.1, /usr/sbin/kdump-config as shipped for amd64): what
# kdump-config appends when KDUMP_CMDLINE_APPEND is unset.
KDUMP_TOOLS_DEFAULT_APPEND = ("reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 "
                              "irqpoll usbcore.nousb")
# kdump-config kdump_load(): parameters stripped from /proc/cmdline (x86_64 adds the iommu ones).
KDUMP_TOOLS_REMOVE = (
    "crashkernel", "abm", "isolcpus", "hugepages", "hugepagesz", "default_hugepagesz",
    "edac_core.edac_report", "edac_report", "BOOT_IMAGE", "processor.max_cstate",
    "intel_iommu", "iommu", "intel_idle.max_cstate",
)
# kdumpctl: default KDUMP_COMMANDLINE_REMOVE when /etc/sysconfig/kdump does not set it
# (kdump-utils gen-kdump-sysconfig.sh, x86_64), and what prepare_cmdline() (kdump-lib.sh)
# always removes.
KDUMPCTL_DEFAULT_REMOVE = ("hugepages", "hugepagesz", "slub_debug", "quiet", "log_buf_len",
                           "swiotlb", "cma", "hugetlb_cma", "ignition.firstboot")
KDUMPCTL_ALWAYS_REMOVE = (
    "crashkernel", "panic_on_warn", "root", "rd.lvm.lv", "rd.luks.uuid", "rd.dm.uuid",
    "rd.md.uuid", "fcoe", "netroot", "rd.iscsi.initiator", "iscsi_initiator",
)


@dataclass(frozen=True)
class Host:
    """The machine handoff works on, as paths below a root, plus identity seams for tests.

    ``root`` prefixes /etc, /boot, /proc, /dev/kmsg and the state directory; ``sysfs`` is the
    sysfs root (``root/sys`` by default). ``euid`` and ``release`` default to the running
    process's; tests pin them.
    """

    root: Path = Path("/")
    sysfs: Path | None = None
    state_dir: Path | None = None
    euid: int | None = None
    release: str | None = None

    def p(self, absolute: str) -> Path:
        """``absolute`` (e.g. "/proc/cmdline") below the root."""
        return self.root / absolute.lstrip("/")

    @property
    def sys(self) -> Path:
        return self.sysfs if self.sysfs is not None else self.p("/sys")

    @property
    def state(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.p("/var/lib/handoff")

    @property
    def uid(self) -> int:
        return os.geteuid() if self.euid is None else self.euid

    @property
    def kernel_release(self) -> str:
        if self.release is not None:
            return self.release
        try:
            return self.p("/proc/sys/kernel/osrelease").read_text().strip() or os.uname().release
        except OSError:
            return os.uname().release

    def read_text(self, absolute: str) -> str | None:
        try:
            return self.p(absolute).read_text(errors="replace")
        except OSError:
            return None

    def sys_text(self, rel: str) -> str | None:
        """A sysfs attribute, stripped; None when absent or unreadable."""
        try:
            return (self.sys / rel).read_text(errors="replace").strip()
        except OSError:
            return None


@dataclass(frozen=True)
class CaptureConfig:
    """The capture kernel, its initrd, and how its command line is made.

    ``base_cmdline`` is the full line a distro configures (KDUMP_CMDLINE / KDUMP_COMMANDLINE),
    None to derive it from /proc/cmdline. ``remove`` names parameters dropped from the base,
    ``append`` is added after it. ``kexec_args`` come from the distro (KDUMP_KEXEC_ARGS /
    KEXEC_ARGS). ``source`` says where all this came from, for messages.
    """

    kernel: Path
    initrd: Path | None
    base_cmdline: str | None
    remove: tuple[str, ...]
    append: str
    kexec_args: tuple[str, ...] = ()
    source: str = "running kernel"
    notes: tuple[str, ...] = field(default=())


def parse_shell_assignments(text: str, where: str) -> dict[str, str]:
    """``KEY=value`` lines of a shell fragment, unquoted; comments and other lines ignored.

    Values that need the shell (``$VAR``, ``$(...)``, backquotes) are refused for the keys
    handoff reads, because evaluating a config file would mean running it.
    """
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("export "):
            s = s[len("export "):].lstrip()
        key, eq, rest = s.partition("=")
        if not eq or not key.replace("_", "").isalnum() or not key[0].isalpha():
            continue
        try:
            words = shlex.split(rest, comments=True, posix=True)
        except ValueError as e:
            raise UsageError(f"{where}:{lineno}: cannot parse {key}: {e}") from None
        out[key] = " ".join(words)
        if any(c in rest for c in ("$", "`")):
            out[key] = "\0" + rest  # marked: needs a shell; refused when read
    return out


def _get(vals: dict[str, str], key: str, where: str) -> str | None:
    v = vals.get(key)
    if v is not None and v.startswith("\0"):
        raise UsageError(
            f"{where}: {key}={v[1:]} needs shell expansion, which handoff does not perform",
            hint="set a literal value there, or pass --kernel/--initrd/--cmdline to handoff load",
        )
    return v


def discover(host: Host, kernel: str | None = None, initrd: str | None = None) -> CaptureConfig:
    """Work out the capture kernel and initrd, and the distro's command-line rules."""
    release = host.kernel_release
    kdump_tools = host.p(KDUMP_TOOLS_CONF)
    kdumpctl = host.p(KDUMPCTL_CONF)
    if kdump_tools.is_file():
        cfg = _from_kdump_tools(host, kdump_tools, release)
    elif kdumpctl.is_file():
        cfg = _from_kdumpctl(host, kdumpctl, release)
    else:
        cfg = _from_running_kernel(host, release)
    if kernel is not None or initrd is not None:
        cfg = CaptureConfig(
            kernel=Path(kernel) if kernel else cfg.kernel,
            initrd=Path(initrd) if initrd else cfg.initrd,
            base_cmdline=cfg.base_cmdline,
            remove=cfg.remove,
            append=cfg.append,
            kexec_args=cfg.kexec_args,
            source=cfg.source + " (kernel/initrd given on the command line)",
        )
    _require_file(cfg.kernel, "capture kernel", cfg.source, "--kernel")
    if cfg.initrd is None:
        raise EnvironmentProblem(
            f"no capture initrd found ({cfg.source})",
            hint="handoff carries its record and runtime in the initrd: pass --initrd PATH",
        )
    _require_file(cfg.initrd, "capture initrd", cfg.source, "--initrd")
    return cfg


def _require_file(path: Path, what: str, source: str, option: str) -> None:
    if not path.is_file():
        raise EnvironmentProblem(
            f"{what} {path} does not exist (from {source})",
            hint=f"install it, fix the distro configuration, or pass {option} PATH",
        )


def _from_kdump_tools(host: Host, conf: Path, release: str) -> CaptureConfig:
    where = str(conf)
    vals = parse_shell_assignments(conf.read_text(errors="replace"), where)
    # kdump-config locate_kdump_kernel(): explicit KDUMP_KERNEL/KDUMP_INITRD, else the
    # running kernel's files in /boot.
    kernel = _get(vals, "KDUMP_KERNEL", where)
    initrd = _get(vals, "KDUMP_INITRD", where)
    if not kernel:
        kernel = str(host.p(f"/boot/vmlinuz-{release}"))
        initrd = initrd or str(host.p(f"/boot/initrd.img-{release}"))
    else:
        kernel = str(host.p(kernel))
        initrd = str(host.p(initrd)) if initrd else None
    append = _get(vals, "KDUMP_CMDLINE_APPEND", where)
    return CaptureConfig(
        kernel=Path(kernel),
        initrd=Path(initrd) if initrd else None,
        base_cmdline=_get(vals, "KDUMP_CMDLINE", where) or None,
        remove=KDUMP_TOOLS_REMOVE,
        append=KDUMP_TOOLS_DEFAULT_APPEND if append is None else append,
        kexec_args=tuple(shlex.split(_get(vals, "KDUMP_KEXEC_ARGS", where) or "")),
        source=f"kdump-tools ({KDUMP_TOOLS_CONF})",
    )


def _from_kdumpctl(host: Host, conf: Path, release: str) -> CaptureConfig:
    where = str(conf)
    vals = parse_shell_assignments(conf.read_text(errors="replace"), where)
    kver = _get(vals, "KDUMP_KERNELVER", where) or release
    img = _get(vals, "KDUMP_IMG", where) or "vmlinuz"
    ext = _get(vals, "KDUMP_IMG_EXT", where) or ""
    bootdir = _get(vals, "KDUMP_BOOTDIR", where) or "/boot"
    kernel = host.p(f"{bootdir}/{img}-{kver}{ext}")
    # kdump-lib.sh prepare_kdump_bootinfo(): next to the default initrd when /boot is
    # writable, else in /var/lib/kdump.
    candidates = [
        host.p(f"{bootdir}/initramfs-{kver}kdump.img"),
        host.p(f"/var/lib/kdump/initramfs-{kver}kdump.img"),
    ]
    initrd = next((c for c in candidates if c.is_file()), candidates[0])
    remove = _get(vals, "KDUMP_COMMANDLINE_REMOVE", where)
    return CaptureConfig(
        kernel=kernel,
        initrd=initrd,
        base_cmdline=_get(vals, "KDUMP_COMMANDLINE", where) or None,
        remove=KDUMPCTL_ALWAYS_REMOVE
        + tuple((remove if remove is not None else " ".join(KDUMPCTL_DEFAULT_REMOVE)).split()),
        append=_get(vals, "KDUMP_COMMANDLINE_APPEND", where) or "",
        kexec_args=tuple(shlex.split(_get(vals, "KEXEC_ARGS", where) or "")),
        source=f"kdumpctl ({KDUMPCTL_CONF})",
    )


# Without a distro kdump setup: kdumpctl's always-removed set (root and friends: the capture
# initrd finds its own dump target), plus what makes no sense twice (resume from hibernation,
# boot loader leftovers), and the usual kdump additions.
DERIVED_REMOVE = KDUMPCTL_ALWAYS_REMOVE + (
    "BOOT_IMAGE", "initrd", "resume", "resume_offset", "hugepages", "hugepagesz",
    "default_hugepagesz",
)
DERIVED_APPEND = "irqpoll nr_cpus=1 reset_devices"


def _from_running_kernel(host: Host, release: str) -> CaptureConfig:
    kernel = host.p(f"/boot/vmlinuz-{release}")
    initrd = next(
        (
            c
            for c in (
                host.p(f"/boot/initrd.img-{release}"),  # Debian, Ubuntu
                host.p(f"/boot/initramfs-{release}.img"),  # Fedora, RHEL, Arch
            )
            if c.is_file()
        ),
        None,
    )
    return CaptureConfig(
        kernel=kernel,
        initrd=initrd,
        base_cmdline=None,
        remove=DERIVED_REMOVE,
        append=DERIVED_APPEND,
        source=f"running kernel {release}",
    )
