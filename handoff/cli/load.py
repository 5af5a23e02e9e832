"""``handoff load``: save a record and load a capture kernel that carries it (kexec -p)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
Save the PCI device state into a record (or take --record), write it to
/var/lib/handoff/record.bin with the next generation, append it with the capture-side runtime
and hooks to a COPY of the capture initrd, and load the capture kernel with
`kexec -p KERNEL --initrd=COPY --append=CMDLINE`. The original initrd is never modified.

The kernel, initrd and command line come from --kernel/--initrd/--cmdline, else from Debian
kdump-tools (/etc/default/kdump-tools), Fedora kdumpctl (/etc/sysconfig/kdump), or the running
kernel (/boot/vmlinuz-$(uname -r) and its initrd, /proc/cmdline without crashkernel= and
root=, plus `irqpoll nr_cpus=1 reset_devices`). handoff always adds reset_devices,
handoff.generation= and handoff.boot_id=, and module_blacklist= from the --policy blacklist.

--dry-run builds everything in a temporary directory (or --work-dir), prints the exact kexec
argv and the sizes, and loads nothing. Needs root; under kernel lockdown only
--syscall file (kexec_file_load) with a signed kernel can work.
"""


# handoff.kexec.runtime.COMPRESSIONS, default first (not imported: it pulls in lzma and zlib)
COMPRESSIONS = ("gzip", "xz", "none")


EPILOG = """\
examples:
  sudo handoff load --dry-run              # the kexec argv, what it replaces, the sizes
  sudo handoff load                        # replaces the distro's crash kernel (says how to go back)
  sudo handoff load --policy site.toml --append "console=ttyS0"

exit codes:
  0  loaded (or, with --dry-run, everything built)
  1  the record given with --record is corrupt
  2  usage: wrong arguments, or a path you named does not exist
  3  --record holds no handoff record
  4  not root, kexec-tools missing, no crashkernel reserved (`handoff estimate`
     says how much), too little reserved, or the kernel refused the load
"""


def register(sub: Any) -> None:
    p = sub.add_parser("load", epilog=EPILOG, help="load a capture kernel carrying the device state",
                       description=DESCRIPTION,
                       formatter_class=Formatter)
    p.add_argument("--kernel", metavar="PATH", help="capture kernel image")
    p.add_argument("--initrd", metavar="PATH", help="capture initrd (copied, never modified)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cmdline", metavar="STR",
                   help="base capture command line, instead of the distro's or /proc/cmdline")
    g.add_argument("--append", metavar="STR", help="parameters added to the capture command line")
    p.add_argument("--record", metavar="FILE",
                   help="load this record (any container `handoff inspect` reads) instead of "
                        "saving a new one")
    p.add_argument("--policy", metavar="FILE",
                   help="restore policy (TOML); its blacklist becomes module_blacklist=, and it "
                        "is carried to the capture kernel for `handoff restore`")
    p.add_argument("--kexec-reboot", action="store_true",
                   help="load for `kexec -e` (kexec -l) instead of for a crash (kexec -p)")
    p.add_argument("--syscall", choices=("auto", "file", "legacy"), default="auto",
                   help="file: kexec_file_load (-s); legacy: kexec_load (-c); auto: kexec-tools "
                        "decides, except -s under lockdown or when the distro passes -s")
    p.add_argument("--dump-dir", metavar="DIR", default="",
                   help="where `handoff capture` writes in the capture kernel (default: the "
                        "mounted root's /var/crash: /sysroot under dracut, /root under "
                        "initramfs-tools)")
    p.add_argument("--no-capture", action="store_true",
                   help="only restore in the capture kernel; leave the dump to the distro")
    p.add_argument("--compression", choices=COMPRESSIONS, default=COMPRESSIONS[0],
                   help="compression of the runtime archive: gzip (default) unpacks 4-5x as "
                        "fast as xz in the capture kernel; xz is 25%% smaller; none unpacks "
                        "fastest but needs the most crashkernel memory (docs/load.md)")
    p.add_argument("--dry-run", action="store_true",
                   help="build everything, print the kexec argv and sizes, load nothing")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--work-dir", metavar="DIR",
                   help="where the initrd copy is built (default /var/lib/handoff; a new "
                        "temporary directory with --dry-run)")
    p.add_argument("--sysfs-root", metavar="DIR", help="sysfs tree to use instead of /sys")
    p.add_argument("--root", metavar="DIR", default="/",
                   help=argparse.SUPPRESS)  # tests and chroots: prefix for /etc, /boot, /proc
    p.set_defaults(func=run)


def host_from_args(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from handoff.kexec.config import Host

    root = Path(args.root)
    return Host(root=root, sysfs=Path(args.sysfs_root) if args.sysfs_root else None)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def run(args: argparse.Namespace) -> int:
    from handoff.kexec.load import LoadOptions, load
    from handoff.kexec.runner import Runner

    runner = Runner(dry_run=args.dry_run, echo=None if args.json else print)
    opts = LoadOptions(kernel=args.kernel, initrd=args.initrd, cmdline=args.cmdline,
                       append=args.append, record=args.record, policy=args.policy,
                       reboot=args.kexec_reboot, syscall=args.syscall, dry_run=args.dry_run,
                       work_dir=args.work_dir, dump_dir=args.dump_dir,
                       capture=not args.no_capture, compression=args.compression)
    res = load(opts, host_from_args(args), runner)
    for w in res.warnings:
        sys.stderr.write(f"handoff: warning: {w}\n")
    if args.json:
        from handoff.cli._output import emit_json

        emit_json("load", res.to_json())
        return 0
    s = res.sizes
    rt = res.runtime
    print(f"kernel        {res.kernel} ({_mib(s['kernel'])})")
    print(f"initrd        {res.initrd} ({_mib(s['initrd'])}, unchanged)")
    print(f"initrd copy   {res.initrd_copy} ({_mib(s['initrd_copy'])}): + handoff cpio "
          f"{s['handoff_cpio']} bytes + runtime {_mib(s['runtime_compressed'])} "
          f"{rt['compression']} ({_mib(s['runtime_unpacked'])} unpacked, {rt['mode']})")
    print(f"record        {res.record} (generation {res.generation})")
    print(f"cmdline       {res.cmdline}")
    if res.memory and res.crash_size:
        print(f"memory        needs ~{res.memory['required'] >> 20} MiB of "
              f"{res.crash_size >> 20} MiB reserved (crashkernel="
              f"{res.memory['recommended_crashkernel']} recommended)")
    print(f"source        {res.config_source}")
    if res.replaces:
        from handoff.kexec.previous import Previous

        for i, line in enumerate(Previous(**res.replaces).lines()):
            print(f"{'replaces' if i == 0 else '':<14}{line}")
    if res.dry_run:
        print("dry run: nothing was loaded")
    else:
        what = "crash kernel" if res.mode == "crash" else "kexec kernel"
        print(f"loaded {what}, generation {res.generation}")
    return 0
