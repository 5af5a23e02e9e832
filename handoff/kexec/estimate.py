"""``handoff estimate``: the crashkernel= this machine needs with handoff and without it.

In the manner of ``kdumpctl estimate``: the capture kernel's image, the capture initrd as it
is (without handoff) and with handoff's record and runtime appended, the reservation now and
the margin, by the model of :func:`handoff.kexec.checks.estimate` (docs/load.md, "Memory").
It only reads, needs no root and works with nothing reserved: files it cannot read are
estimated from their size, and the runtime is the cached one when ``load`` built one, else
the size measured for a typical runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handoff.errors import os_reason
from handoff.kexec import checks, hooks, initrd, state
from handoff.kexec.cmdline import param, parse
from handoff.kexec.config import Host, discover

MiB = checks.MiB
# A typical runtime when none is cached (docs/load.md, "Runtime": the e2e guest's Debian
# python3.11 runtime, appended to an initrd with no libc of its own to reuse) and restore's
# own peak without file pages at 64 devices (imports.peak_private, measured on the host).
TYPICAL_RUNTIME_GZIP = int(6.7 * MiB)
TYPICAL_RUNTIME_UNPACKED = int(13.3 * MiB)
TYPICAL_RUNTIME_PEAK = int(8.6 * MiB)
RECORD_PER_DEVICE = 2048  # early + live config space (4 KiB each, sparse-encoded) and model
UNPACK_RATIO = 3  # what load assumes for an initrd it cannot list


@dataclass
class Estimate:
    kernel: str
    initrd: str
    source: str
    without: checks.MemoryEstimate
    with_handoff: checks.MemoryEstimate
    runtime_source: str
    reserved: int  # bytes, 0 when nothing is reserved
    cmdline_crashkernel: str | None  # crashkernel= on /proc/cmdline, as written
    notes: list[str] = field(default_factory=list)

    @property
    def margin(self) -> int:
        return self.reserved - self.with_handoff.required

    @property
    def margin_without(self) -> int:
        return self.reserved - self.without.required

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "initrd": self.initrd, "source": self.source,
                "without_handoff": self.without.as_dict(),
                "with_handoff": self.with_handoff.as_dict(),
                "runtime_source": self.runtime_source, "reserved": self.reserved,
                "cmdline_crashkernel": self.cmdline_crashkernel, "margin": self.margin,
                "margin_without_handoff": self.margin_without, "notes": self.notes}


def _runtime(host: Host) -> tuple[int, int, int, str]:
    """(compressed, unpacked, peak RSS, where from): the newest cached runtime, else typical."""
    import json

    cache = host.state / "runtime-cache"
    try:
        dirs = sorted((d for d in cache.iterdir() if d.is_dir()),
                      key=lambda d: d.stat().st_mtime, reverse=True)
    except OSError:
        dirs = []
    for d in dirs:
        try:
            meta = json.loads((d / "runtime.json").read_text())
            size = (d / "runtime.cpio").stat().st_size
            peak = meta.get("peak_private") or meta["peak_rss"]  # older caches: VmHWM
            return (size, int(meta["unpacked_size"]), int(peak),
                    f"the runtime `handoff load` built ({d})")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return (TYPICAL_RUNTIME_GZIP, TYPICAL_RUNTIME_UNPACKED, TYPICAL_RUNTIME_PEAK,
            ("a typical runtime, as measured (none built on this machine yet; `handoff load` "
             "builds and caches this machine's)"))


def estimate(host: Host, kernel: str | None = None, initrd_path: str | None = None) -> Estimate:
    cfg = discover(host, kernel, initrd_path)
    assert cfg.initrd is not None  # discover() refuses a configuration without one
    notes: list[str] = []
    try:
        kmem = checks.kernel_memory(cfg.kernel)
    except OSError as e:
        kmem = cfg.kernel.stat().st_size * 4
        notes.append(f"cannot read {cfg.kernel} ({os_reason(e)}): kernel memory taken as 4x its "
                     "file size; run as root for the exact init_size")
    isize = cfg.initrd.stat().st_size
    try:
        listing = initrd.list_initrd(cfg.initrd, hooks.WANTED)
        unpacked = listing.unpacked_size if listing.complete else UNPACK_RATIO * isize
        if not listing.complete:
            notes.append(f"could not list all of {cfg.initrd} ({listing.problem}): unpacked "
                         f"size taken as {UNPACK_RATIO}x the file")
    except OSError as e:
        unpacked = UNPACK_RATIO * isize
        notes.append(f"cannot read {cfg.initrd} ({os_reason(e)}): unpacked size taken as "
                     f"{UNPACK_RATIO}x the file; run as root to list it")
    rt_gz, rt_unpacked, rt_peak, rt_src = _runtime(host)
    devices = len(state.inventory(host.sys))
    record = RECORD_PER_DEVICE * devices + 4096
    without = checks.estimate(kernel_mem=kmem, initrd_compressed=isize,
                              initrd_unpacked=unpacked, runtime_peak=0, devices=0)
    capture = not distro_saves_dump(host, cfg.source)
    if not capture:
        notes.append("the distro saves the dump and handoff's dump hook adds the notes "
                     "(docs/distro.md): handoff load runs with --no-capture")
    with_h = checks.estimate(kernel_mem=kmem, initrd_compressed=isize + rt_gz + record,
                             initrd_unpacked=unpacked + rt_unpacked + record,
                             runtime_peak=rt_peak, devices=devices, capture=capture)
    size_text = host.sys_text("kernel/kexec_crash_size")
    reserved = int(size_text) if size_text and size_text.isdigit() else 0
    return Estimate(str(cfg.kernel), str(cfg.initrd), cfg.source, without, with_h, rt_src,
                    reserved, _cmdline_crashkernel(host), notes)


def distro_saves_dump(host: Host, source: str) -> bool:
    """Whether contrib's dump hook for the distro is installed, so that the distro saves the
    one dump and handoff's post-load hook loads with --no-capture (docs/distro.md)."""
    if source.startswith("kdump-tools"):
        return host.p("/etc/systemd/system/kdump-tools-dump.service.d/handoff.conf").is_file()
    if source.startswith("kdumpctl"):
        text = host.read_text("/etc/kdump.conf") or ""
        return any(line.split()[:2] == ["kdump_post", "/usr/lib/handoff/kdumpctl-post-save"]
                   for line in text.splitlines())
    return False


def _cmdline_crashkernel(host: Host) -> str | None:
    kernel, _ = parse(host.read_text("/proc/cmdline") or "")
    found = None
    for w in kernel:
        name, val = param(w)
        if name == "crashkernel" and val is not None:
            found = val  # the kernel's parse_crashkernel() takes the last one
    return found


def next_step(est: Estimate) -> str:
    """One line: what to do now, pointing only at commands that work in this situation."""
    want = est.with_handoff.recommended_crashkernel()
    how = ("Debian: set crashkernel=SIZE in /etc/default/grub.d/kdump-tools.cfg, then "
           "update-grub; Fedora: grubby --update-kernel=ALL --args=crashkernel=SIZE")
    if est.reserved == 0:
        return (f"nothing is reserved: boot with crashkernel={want} ({how.replace('SIZE', want)})"
                "; after the reboot `handoff estimate` shows the margin and `handoff load` "
                "(as root) loads")
    if est.margin < 0:
        return (f"the reservation is {-est.margin // MiB} MiB short for handoff: boot with "
                f"crashkernel={want} ({how.replace('SIZE', want)})")
    return f"the reservation fits with {est.margin // MiB} MiB to spare: `handoff load` (as root)"

