"""``handoff restore``: quiesce, reset, re-program or leave alone each device, by policy."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from handoff.record import Record
    from handoff.restore.plan import Plan

from handoff.cli import Formatter
from handoff.paths import CAPTURE_RECORD as DEFAULT_RECORD

TEXT_ACCESSES = 12  # register accesses shown per plugin step in the text plan

DESCRIPTION = """\
Apply a handoff record to the PCI devices of this (capture) kernel. Each saved device is
matched to the device at the same address (vendor, device, subsystem and class ids, and
serial number when both sides have one) and gets its policy action:

  quiesce        Bus Master off, INTx Disable on (first pass, over all such devices)
  reset          quiesce, then a function reset through sysfs reset_method/reset
  restore-early  write back the state firmware left (BARs read back, COMMAND last)
  restore-live   write back the state at save time
  skip           leave it alone

Device plugins (`handoff plugins`; docs/plugins.md) do the device-specific part through the
BARs: plugin save before any write, plugin quiesce after the config quiesce, plugin reset for
reset devices, plugin restore and verify last. The policy turns them off (plugins = false).

Under kernel lockdown config writes and BAR mapping are refused; the plan shows, per device,
what was wanted, what the kernel permits, and what is done instead (a sysfs reset, remove +
rescan, or nothing), by the policy's fallback (docs/lockdown.md).

MSI and MSI-X are never re-enabled; status (write-1-to-clear) and read-only bits are never
written. A record from another kernel, boot or generation is refused unless --force.
--dry-run prints the plan, register by register, and writes and maps nothing; it judges what
the kernel permits from the lockdown mode, unless --probe.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("restore", help="restore devices from a record (capture kernel)",
                       description=DESCRIPTION,
                       formatter_class=Formatter)
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
                   help="write the restore report (compact JSON, < 64 KiB) here, mode 0600; "
                        "an existing FILE that is not a restore report, or a symlink, is "
                        "refused before anything is done")
    p.add_argument("--force-report", action="store_true",
                   help="replace --report FILE even if it is not a restore report (a symlink "
                        "is replaced, never followed)")
    p.add_argument("--allow-running-system", action="store_true",
                   help="allow writes to /sys outside a capture kernel (after a plain kexec)")
    p.add_argument("--no-plugins", action="store_true",
                   help="run no device plugins (policy: plugins = false)")
    p.add_argument("--plugin-budget", metavar="SECONDS", type=float,
                   help="one time bound on all plugin steps together (default: each step's "
                        "own bound, e.g. NVMe CAP.TO)")
    p.add_argument("--probe", action="store_true",
                   help="with --dry-run: also ask the kernel whether config writes and BAR "
                        "mapping work (writes back one Interrupt Line byte; maps one BAR "
                        "without reading it). A real restore always probes")
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


def _write_refusal(path: str, source: str, err: Exception, force: bool = False) -> None:
    """A report for a restore that never started: which record, which check failed."""
    import json

    from handoff import outfile
    from handoff.errors import HandoffError
    from handoff.restore.report import REPORT_KIND

    doc = {"schema_version": 1, "kind": REPORT_KIND, "refused": True,
           "record": {"source": source, "error": str(err),
                      "check": getattr(err, "check", None),
                      "offset": getattr(err, "offset", None),
                      "error_type": type(err).__name__},
           "devices": [], "totals": {"devices": 0, "written": 0},
           "summary": f"restore refused: the record at {source} is unusable: {err}; "
                      "no device was touched"}
    data = json.dumps(doc, separators=(",", ":")).encode()
    try:
        outfile.write_file(path, data, outfile.REPORT, force=force, special_ok=True,
                           flag="--force-report")
    except HandoffError as e:
        sys.stderr.write(f"handoff: warning: no report written: {e}\n")


def _hex(v: int | None, width: int) -> str | None:
    return None if v is None else f"{v:#0{2 + 2 * width}x}"


def render_plan(plan: Plan) -> str:
    """The plan for people: passes, what the kernel permits, then device by device, register
    by register, plugin step by plugin step."""
    from handoff.cli._output import table
    from handoff.restore import pciregs as R
    from handoff.restore.steps import PASSES
    from handoff.sysfs.probe import describe_text

    lines = ["Plan. Passes, in order: " + "; ".join(
        f"{i} {what}" for i, (_, _, _, what) in enumerate(PASSES, 1)) + "."]
    lines.append("")
    lines.append("What the kernel permits:")
    lines.extend("  " + ln for ln in describe_text(plan.env).splitlines())
    if plan.registry is None:
        lines.append("  device plugins: off")
    else:
        lines.append(f"  device plugins: {', '.join(plan.registry.names()) or 'none installed'}")
        lines.extend(f"  plugin problem: {p}" for p in plan.plugin_problems())
    if plan.check.problems:
        state = "forced past by --force" if plan.check.forced else "RECORD REFUSED"
        lines.append(f"identity: {state}: " + "; ".join(plan.check.problems))
    for dev in plan.topo():
        ids = dev.saved.ids
        lines.append("")
        lines.append(f"{dev.addr}  {ids.short()}  {R.class_name(ids.class_code)}"
                     f"{' [' + dev.saved.driver + ']' if dev.saved.driver else ''}: "
                     f"{dev.decision.action} ({dev.decision.why})")
        if dev.status in ("refused", "skip") or not (dev.steps or dev.plugin_ops):
            lines.append(f"  {dev.status}: {dev.why}")
        fb = dev.fallback
        if fb is not None:
            what = f"{fb.instead} ({fb.method})" if fb.method else fb.instead
            lines.append(f"  wanted:   {fb.wanted}")
            lines.extend(f"  refused:  {r}" for r in fb.refused)
            lines.append(f"  permits:  {', '.join(fb.permitted)}")
            lines.append(f"  instead:  {what}, by {fb.chain_from.split(': ')[0]} "
                         f"[{', '.join(fb.chain)}]: {fb.why}")
            lines.extend(f"  passed:   {p}" for p in fb.passed)
        for n in dev.notes:
            lines.append(f"  note: {n}")
        if dev.plugins or dev.plugin_notes:
            lines.append(f"  plugins: {', '.join(dev.plugins) or 'none take it'}")
            lines.extend(f"  plugin note: {n}" for n in dev.plugin_notes)
        if dev.steps:
            lines.extend("  " + ln for ln in _config_table(dev, table).splitlines())
        if dev.plugin_ops:
            lines.extend("  " + ln for ln in _plugin_table(dev, table).splitlines())
    for a in plan.appeared:
        lines.append("")
        lines.append(f"{a.addr}  {a.ids.short()}: appeared (not in the record): never written")
    return "\n".join(lines)


def _config_table(dev: Any, table: Any) -> str:
    from handoff.restore.steps import DO_RESCAN, DO_RESET

    rows: list[list[object]] = []
    for s in dev.steps:
        if s.op in (DO_RESET, DO_RESCAN) or s.phase in ("reset", "rescan"):
            what = f"reset ({s.method or 'kernel default'})" if s.phase == "reset" \
                else "remove + rescan"
            rows.append([s.phase, what, "", "", None, None, None,
                         f"{s.op}: {s.why}" + (f" [{s.result}]" if s.result else "")])
            continue
        act = f"{s.op}: {s.why}"
        if s.detail:
            act += f" [{s.detail}]"
        if s.retries:
            act += f" (read back, up to {s.retries} retries)"
        rows.append([s.phase, s.reg, f"{s.offset:#05x}", s.width,
                     _hex(s.current, s.width), _hex(s.saved, s.width),
                     _hex(s.value, s.width) if s.op == "write" else None, act])
    return table(["PASS", "REGISTER", "OFFSET", "W", "CURRENT", "SAVED", "WRITE", "ACTION"],
                 rows)


def _plugin_table(dev: Any, table: Any) -> str:
    """Each plugin step, then its register accesses, as the config table shows writes."""
    from handoff.restore.report import _PHASE_RANK

    rows: list[list[object]] = []
    for o in sorted(dev.plugin_ops, key=lambda o: _PHASE_RANK.get(o.phase, 99)):
        rows.append([f"plugin {o.phase}", o.label, "", "", "", None,
                     f"{o.status}: {o.result or o.why}"])
        for a in o.accesses[:TEXT_ACCESSES]:
            rows.append(["", f"  {a.name or '-'}", f"BAR{a.bar}+{a.offset:#x}", a.width, a.op,
                         _hex(a.value, a.width), a.result])
        more = o.dropped + max(0, len(o.accesses) - TEXT_ACCESSES)
        if more:
            rows.append(["", f"  ... {more} more access(es) (--json lists them)", "", "", "",
                         None, ""])
    return table(["PASS", "STEP / REGISTER", "WHERE", "W", "OP", "VALUE", "RESULT"], rows)


def run(args: argparse.Namespace) -> int:
    from handoff import outfile
    from handoff.errors import EnvironmentProblem, HandoffError, UsageError
    from handoff.restore import report
    from handoff.restore.apply import SysfsAccess, apply, rehearse, scan
    from handoff.restore.match import identity_from
    from handoff.restore.plan import make_plan
    from handoff.restore.pluginpass import PluginRuntime
    from handoff.restore.policy import DEFAULT_POLICY, load_policy
    from handoff.sysfs import SysfsTree
    from handoff.sysfs import paths as _paths
    from handoff.sysfs.probe import probe

    if args.report:  # before anything is done: a bad --report costs nothing
        outfile.check(args.report, outfile.REPORT, force=args.force_report, special_ok=True,
                      flag="--force-report")
    policy = load_policy(args.policy) if args.policy else DEFAULT_POLICY
    try:
        rec, notes = load_record(args.record)
    except HandoffError as e:
        # Nothing is written to any device; the report still says why, so that capture can
        # keep it with the dump (a corrupt handoff cpio must not leave the post-mortem blind).
        if args.report:
            _write_refusal(args.report, args.record or DEFAULT_RECORD, e, args.force_report)
        raise
    for n in notes:
        sys.stderr.write(f"handoff: note: {n}\n")
    # Paths stay strings (pathlib costs start-up), spelled as pathlib would in messages.
    root = _paths.pathstr(args.sysfs_root)
    tree = SysfsTree(root)
    devices = _paths.join(root, "bus", "pci", "devices")
    if not os.path.isdir(devices):
        raise EnvironmentProblem(f"{devices} is not a directory",
                                 hint="--sysfs-root takes the directory holding bus/pci")
    proc = _paths.pathstr(args.proc_root)
    real_sys = os.path.realpath(args.sysfs_root) == "/sys"
    writes = not args.dry_run or args.probe  # --probe writes back one byte: same gate
    if (real_sys and writes and not os.path.exists(_paths.join(proc, "vmcore"))
            and not args.allow_running_system):
        raise EnvironmentProblem(
            f"refusing to write to this running system's /sys: {proc}/vmcore does not exist, "
            "so this is not a capture kernel",
            hint="use --dry-run (without --probe) to see the plan; after a plain kexec pass "
                 "--allow-running-system")
    if args.plugin_budget is not None and not args.plugin_budget > 0:
        raise UsageError(f"--plugin-budget {args.plugin_budget:g}: expected seconds > 0",
                         hint="leave it out to bound each plugin step by its own timeout")
    identity = identity_from(proc)
    # A real restore asks the kernel (one harmless write-back, one read-only mapping); a dry
    # run writes and maps nothing unless --probe, and judges from the lockdown mode.
    env = probe(root, probe_writes=writes, probe_bars=writes)
    registry = None
    if not args.no_plugins:
        from handoff.plugins import load

        registry = load(entry_points=True)
        for p in registry.problems:
            sys.stderr.write(f"handoff: warning: {p}\n")
        policy.check_plugins(registry.names())
    plan = make_plan(rec, scan(tree), policy=policy, identity=identity, force=args.force,
                     env=env, registry=registry)
    runtime = PluginRuntime(tree=tree, budget_s=args.plugin_budget)
    if not args.dry_run and plan.check.ok:
        apply(plan, SysfsAccess(tree), plugins=runtime)
    elif args.dry_run:
        rehearse(plan, plugins=runtime)
    doc = report.build(plan, dry_run=args.dry_run)
    if args.report:
        data = report.encode(plan, dry_run=args.dry_run)
        outfile.write_file(args.report, data, outfile.REPORT, force=args.force_report,
                           special_ok=True, flag="--force-report")
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
