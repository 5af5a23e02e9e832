"""``handoff restore``: quiesce, reset, re-program or leave alone each device, by policy."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from handoff.record import Record
    from handoff.restore.plan import Plan

from handoff.paths import CAPTURE_RECORD as DEFAULT_RECORD

DESCRIPTION = """\
Apply a handoff record to the PCI devices of this (capture) kernel. Each saved device is
matched to the device at the same address (vendor, device, subsystem and class ids, and
serial number when both sides have one) and gets its policy action:

  quiesce        Bus Master off, INTx Disable on (first pass, over all such devices)
  reset          quiesce, then a function reset through sysfs reset_method/reset
  restore-early  write back the state firmware left (BARs read back, COMMAND last)
  restore-live   write back the state at save time
  skip           leave it alone

MSI and MSI-X are never re-enabled; status (write-1-to-clear) and read-only bits are never
written. A record from another kernel, boot or generation is refused unless --force.
--dry-run prints the plan, register by register, and writes nothing.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("restore", help="restore devices from a record (capture kernel)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", metavar="SRC",
                   help=f"record source: raw record, note file, region, initrd or vmcore "
                        f"(default {DEFAULT_RECORD}, the one shipped in the capture initramfs)")
    p.add_argument("--sysfs-root", metavar="DIR", default="/sys",
                   help="sysfs tree to restore (default /sys)")
    p.add_argument("--proc-root", metavar="DIR", default="/proc",
                   help="where cmdline and vmcore tell the crashed kernel's identity "
                        "(default /proc)")
    p.add_argument("--policy", metavar="FILE", help="policy file (TOML, docs/policy.md)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--force", action="store_true",
                   help="apply a record whose producer does not match the crashed kernel")
    p.add_argument("--report", metavar="FILE",
                   help="write the restore report (compact JSON, < 64 KiB) here")
    p.add_argument("--allow-running-system", action="store_true",
                   help="allow writes to /sys outside a capture kernel (after a plain kexec)")
    p.set_defaults(func=run)


def load_record(src: str | None) -> tuple[Record, list[str]]:
    """The newest valid record in ``src`` (default: the shipped one), and notes about others."""
    import handoff
    from handoff.errors import NoRecordFound

    path = src or DEFAULT_RECORD
    if not os.path.exists(path):
        where = "the capture initramfs ships it there (spec §6)" if src is None else \
            "no such file"
        raise NoRecordFound(f"no handoff record at {path}: {where}",
                            hint="pass --record with a record, note file, region, initrd or "
                                 "vmcore")
    try:
        found = handoff.read(path)
    except OSError as e:
        raise NoRecordFound(f"cannot read {path}: {e.strerror}",
                            hint="check the path and permissions") from None
    good = [f for f in found if f.record is not None]
    bad = [f for f in found if f.error is not None]
    if not good:
        if bad and bad[0].error is not None:
            raise bad[0].error
        raise NoRecordFound(f"no handoff record in {path}")
    good.sort(key=lambda f: f.record.generation if f.record else 0)
    chosen = good[-1]
    notes = [f"{len(bad)} invalid record(s) in {path} ignored: {bad[0].error}"] if bad else []
    if len(good) > 1:
        notes.append(f"{len(good)} valid records in {path}: using generation "
                     f"{chosen.record.generation if chosen.record else '?'} "
                     f"at {chosen.location}")
    assert chosen.record is not None
    return chosen.record, notes


def _hex(v: int | None, width: int) -> str | None:
    return None if v is None else f"{v:#0{2 + 2 * width}x}"


def render_plan(plan: Plan) -> str:
    """The plan for people: device by device, register by register."""
    from handoff.cli._output import table
    from handoff.restore import pciregs as R
    from handoff.restore.plan import DO_RESET

    lines = [("Plan. Passes: 1 quiesce (devices below bridges first), 2 reset, 3 restore "
              "(bridges before the devices behind them; COMMAND last).")]
    if plan.check.problems:
        state = "forced past by --force" if plan.check.forced else "RECORD REFUSED"
        lines.append(f"identity: {state}: " + "; ".join(plan.check.problems))
    if plan.env.config_writes_permitted is False:
        lines.append(f"kernel lockdown ({plan.env.lockdown}): config writes will be refused")
    for dev in sorted(plan.devices, key=lambda d: (d.depth, d.addr)):
        ids = dev.saved.ids
        lines.append("")
        lines.append(f"{dev.addr}  {ids.short()}  {R.class_name(ids.class_code)}"
                     f"{' [' + dev.saved.driver + ']' if dev.saved.driver else ''}: "
                     f"{dev.decision.action} ({dev.decision.why})")
        if dev.status in ("refused", "skip") or not dev.steps:
            lines.append(f"  {dev.status}: {dev.why}")
        for n in dev.notes:
            lines.append(f"  note: {n}")
        if dev.steps:
            rows: list[list[object]] = []
            for s in dev.steps:
                if s.op == DO_RESET or s.phase == "reset":
                    rows.append([s.phase, f"reset ({s.method or '-'})", "", "", None, None,
                                 None, f"{s.op}: {s.why}"])
                    continue
                act = f"{s.op}: {s.why}"
                if s.detail:
                    act += f" [{s.detail}]"
                if s.retries:
                    act += f" (read back, up to {s.retries} retries)"
                rows.append([s.phase, s.reg, f"{s.offset:#05x}", s.width,
                             _hex(s.current, s.width), _hex(s.saved, s.width),
                             _hex(s.value, s.width) if s.op == "write" else None, act])
            tab = table(["PASS", "REGISTER", "OFFSET", "W", "CURRENT", "SAVED", "WRITE",
                         "ACTION"], rows)
            lines.extend("  " + ln for ln in tab.splitlines())
    for a in plan.appeared:
        lines.append("")
        lines.append(f"{a.addr}  {a.ids.short()}: appeared (not in the record): never written")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from handoff.errors import EnvironmentProblem
    from handoff.restore import report
    from handoff.restore.apply import SysfsAccess, apply, scan
    from handoff.restore.environment import probe
    from handoff.restore.match import identity_from
    from handoff.restore.plan import make_plan
    from handoff.restore.policy import DEFAULT_POLICY, load_policy
    from handoff.sysfs import SysfsTree

    policy = load_policy(args.policy) if args.policy else DEFAULT_POLICY
    rec, notes = load_record(args.record)
    for n in notes:
        sys.stderr.write(f"handoff: note: {n}\n")
    tree = SysfsTree(Path(args.sysfs_root))
    if not tree.pci_devices.is_dir():
        raise EnvironmentProblem(f"{tree.pci_devices} is not a directory",
                                 hint="--sysfs-root takes the directory holding bus/pci")
    proc = Path(args.proc_root)
    real_sys = os.path.realpath(args.sysfs_root) == "/sys"
    if (real_sys and not args.dry_run and not (proc / "vmcore").exists()
            and not args.allow_running_system):
        raise EnvironmentProblem(
            f"refusing to write to this running system's /sys: {proc}/vmcore does not exist, "
            "so this is not a capture kernel",
            hint="use --dry-run to see the plan; after a plain kexec pass "
                 "--allow-running-system")
    identity = identity_from(proc)
    env = probe(tree.root)
    plan = make_plan(rec, scan(tree), policy=policy, identity=identity, force=args.force,
                     env=env)
    if not args.dry_run and plan.check.ok:
        apply(plan, SysfsAccess(tree))
    doc = report.build(plan, dry_run=args.dry_run)
    if args.report:
        data = report.encode(plan, dry_run=args.dry_run)
        try:
            with open(args.report, "wb") as f:
                f.write(data)
        except OSError as e:
            raise EnvironmentProblem(f"cannot write the report to {args.report}: {e.strerror}",
                                     hint="pass --report with a writable path") from None
    if args.json:
        from handoff.cli._output import emit_json

        body: dict[str, Any] = {"report": doc}
        if args.dry_run:
            body["plan"] = plan.to_json()
        emit_json("restore", body)
    else:
        if args.dry_run:
            print(render_plan(plan))
            print()
        print(report.summary(doc))
    if plan.check.problems and not plan.check.forced:
        sys.stderr.write("handoff: error: record refused: " + "; ".join(plan.check.problems)
                         + "\nhandoff: hint: check --record; --force applies it anyway\n")
    return 1 if report.failed(doc) else 0
