"""``handoff status``: is a capture kernel loaded, with which record, and is it stale."""

from __future__ import annotations

import argparse
from typing import Any

from handoff.cli import Formatter

DESCRIPTION = """\
Report whether a capture kernel is loaded (/sys/kernel/kexec_crash_loaded), which record
generation handoff loaded with it, whether that record is STALE (PCI devices, bound drivers or
SR-IOV VF counts changed since the load), the lockdown mode and the crashkernel size.

examples:
  handoff status
  handoff status --json | jq .verdict
  handoff status >/dev/null; [ $? -eq 1 ] && handoff load   # reload a stale record

exit status:
  0  fresh: handoff's capture kernel is loaded and the machine still matches its record
  1  stale: devices changed since the load; `handoff load` again fixes it
  3  no handoff capture kernel is loaded: never loaded in this boot, or unloaded since
     (by `kexec -p -u`, kdump-config unload, kdumpctl stop)
  2  usage: wrong arguments, or a --sysfs-root that does not exist
"""


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="is the loaded record fresh or stale",
                       description=DESCRIPTION,
                       formatter_class=Formatter)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--sysfs-root", metavar="DIR", help="sysfs tree to use instead of /sys")
    p.add_argument("--root", metavar="DIR", default="/", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _yn(v: bool | None) -> str:
    return "unknown" if v is None else ("yes" if v else "no")


def run(args: argparse.Namespace) -> int:
    from handoff.cli.load import host_from_args
    from handoff.kexec.state import status

    host = host_from_args(args)
    st = status(host)
    env = _capabilities(host)
    if args.json:
        from handoff.cli._output import emit_json

        doc = st.to_json()
        doc["capabilities"] = env
        doc["exit_code"] = st.exit_code
        if st.exit_code:  # the error contract's keys: a verdict that is not "fresh"
            doc.update(error=f"{st.verdict}: {st.reason}", hint=_hint(st.verdict))
        emit_json("status", doc)
        return st.exit_code
    print(f"status          {st.verdict.upper()}: {st.reason}")
    print(f"crash kernel    loaded: {_yn(st.crash_loaded)}"
          + (f", {st.crash_size >> 20} MiB reserved" if st.crash_size else ", no crashkernel="))
    print(f"lockdown        {st.lockdown or 'unknown'}")
    if st.state is not None:
        print(f"record          generation {st.state.generation}, {st.state.record} "
              f"({st.state.mode} load via {st.state.syscall})")
    for c in st.changes:
        print(f"  changed: {c}")
    if env is not None:
        print("what this kernel permits (read-only probe; `handoff restore` records the same):")
        for line in env["text"].splitlines():
            print(f"  {line}")
    if st.verdict == "stale":
        print("run `handoff load` again so the capture kernel gets a current record")
    return st.exit_code


def _hint(verdict: str) -> str:
    if verdict == "stale":
        return "run `handoff load` again so the capture kernel gets a current record"
    return "`handoff load` (as root) loads a capture kernel with a record"


def _capabilities(host: Any) -> dict[str, Any] | None:
    """Lockdown, config writes, BAR mapping and reset methods, as restore would see them here
    (read-only: no write-back and no mapping, so status is safe on a production machine)."""
    from handoff.sysfs.probe import describe, describe_text, probe

    root = host.sys
    if not (root / "bus" / "pci" / "devices").is_dir():
        return None
    env = probe(root)
    doc = describe(env)
    doc["text"] = describe_text(env)
    return doc
