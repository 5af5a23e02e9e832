"""``handoff unload``: unload the capture kernel (kexec -p -u)."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  sudo handoff unload
  sudo handoff unload --dry-run            # the kexec argv only
  sudo handoff unload --kexec-reboot

exit codes:
  0  unloaded (or, with --dry-run, the argv printed)
  2  usage: wrong arguments, or a path you named does not exist
  4  not root, kexec-tools missing, or the kernel refused
"""


def register(sub: Any) -> None:
    from handoff.cli import Formatter

    p = sub.add_parser("unload", epilog=EPILOG, formatter_class=Formatter, help="unload the capture kernel handoff loaded",
                       description="Unload the crash kernel (`kexec -p -u`; with "
                                   "--kexec-reboot the kexec kernel, `kexec -u`), and forget "
                                   "the load state in /var/lib/handoff/loaded.json. Under "
                                   "lockdown kexec_file_load is used (-s).")
    p.add_argument("--kexec-reboot", action="store_true",
                   help="unload the kernel loaded for `kexec -e` instead of the crash kernel")
    p.add_argument("--dry-run", action="store_true", help="print the kexec argv, run nothing")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--sysfs-root", metavar="DIR", help="sysfs tree to use instead of /sys")
    p.add_argument("--root", metavar="DIR", default="/", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from handoff.cli.load import host_from_args
    from handoff.kexec.load import unload
    from handoff.kexec.runner import Runner

    runner = Runner(dry_run=args.dry_run, echo=None if args.json else print)
    res = unload(host_from_args(args), runner, reboot=args.kexec_reboot)
    if args.json:
        from handoff.cli._output import emit_json

        emit_json("unload", dict(res.__dict__))
    elif not res.dry_run:
        print(f"unloaded the {'crash' if res.mode == 'crash' else 'kexec'} kernel")
    return 0
