"""``handoff estimate``: the crashkernel= this machine needs, with handoff and without it."""

from __future__ import annotations

import argparse
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
Estimate the crashkernel= reservation this machine needs, as `kdumpctl estimate` does: the
capture kernel's image, its initrd as the distro builds it (without handoff) and with
handoff's record and runtime appended, the peak while the kernel unpacks the initrd and the
peak in userspace, plus 10%. Shows the reservation now (/sys/kernel/kexec_crash_size) and the
margin. Reads only; works without root and with nothing reserved (unreadable files are
estimated from their size, and say so).

examples:
  handoff estimate                       # this machine, the distro's capture kernel
  handoff estimate --json | jq .with_handoff.recommended_crashkernel
  handoff estimate --kernel /boot/vmlinuz-6.1.0-28-amd64 --initrd /var/lib/kdump/initrd.img

exit status:
  0  the estimate was printed (whatever the margin)
  2  usage: wrong arguments
  4  environment: no capture kernel or initrd found (pass --kernel/--initrd)
"""


def register(sub: Any) -> None:
    p = sub.add_parser("estimate", help="the crashkernel= size needed, with and without handoff",
                       description=DESCRIPTION, formatter_class=Formatter)
    p.add_argument("--kernel", metavar="PATH", help="capture kernel image")
    p.add_argument("--initrd", metavar="PATH", help="capture initrd")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--sysfs-root", metavar="DIR", help="sysfs tree to use instead of /sys")
    p.add_argument("--root", metavar="DIR", default="/", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def run(args: argparse.Namespace) -> int:
    from handoff.cli.load import host_from_args
    from handoff.kexec.estimate import estimate, next_step

    est = estimate(host_from_args(args), args.kernel, args.initrd)
    if args.json:
        from handoff.cli._output import emit_json

        doc = est.to_json()
        doc["next_step"] = next_step(est)
        emit_json("estimate", doc)
        return 0
    wo, wi = est.without, est.with_handoff
    reserved = _mib(est.reserved) if est.reserved else "none"
    on_cmdline = (f"crashkernel={est.cmdline_crashkernel} on /proc/cmdline"
                  if est.cmdline_crashkernel else "no crashkernel= on /proc/cmdline")
    print(f"Reserved crashkernel:    {reserved} ({on_cmdline})")
    print(f"Recommended crashkernel: {wi.recommended_crashkernel()} with handoff, "
          f"{wo.recommended_crashkernel()} without")
    print()
    rows = [
        ("kernel image (memory)", _mib(wo.kernel), _mib(wi.kernel)),
        ("initrd, compressed", _mib(wo.initrd_compressed), _mib(wi.initrd_compressed)),
        ("initrd, unpacked", _mib(wo.initrd_unpacked), _mib(wi.initrd_unpacked)),
        ("handoff restore peak", "-", _mib(wi.runtime_peak)),
        ("devices", "-", str(wi.devices)),
        ("peak while unpacking", _mib(wo.unpack_peak), _mib(wi.unpack_peak)),
        ("peak in userspace", _mib(wo.userspace_peak), _mib(wi.userspace_peak)),
        ("needed (+10%)", _mib(wo.required), _mib(wi.required)),
        ("crashkernel=", wo.recommended_crashkernel(), wi.recommended_crashkernel()),
        ("margin now", f"{est.margin_without // (1 << 20)} MiB",
         f"{est.margin // (1 << 20)} MiB"),
    ]
    print(f"{'':<24}{'without handoff':<18}with handoff")
    for name, a, b in rows:
        print(f"{name:<24}{a:<18}{b}")
    print()
    print(f"capture kernel {est.kernel}, initrd {est.initrd} ({est.source})")
    print(f"runtime: {est.runtime_source}")
    for n in est.notes:
        print(f"note: {n}")
    print(next_step(est))
    return 0
