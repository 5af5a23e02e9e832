"""``handoff restore``: quiesce, reset, re-program or leave alone each device, by policy."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from handoff.record import Record
    from handoff.restore.plan import Plan

from handoff.cli import Formatter
from handoff.paths import CAPTURE_QUIESCE_LOG
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


EPILOG = """\
examples:
  handoff restore                       # in the capture kernel (the hooks run it)
  handoff restore --record rec.bin --dry-run --force        # the plan, on a running system
  handoff restore --policy site.toml --report /run/handoff/report.json -d 8086:

exit codes:
  0  every planned step was done and verified (or planned, with --dry-run)
  1  the record was refused, or a step failed, was refused or could not be verified
  2  usage: wrong arguments, or a path you named does not exist
  3  no handoff record in --record (or none shipped in the capture initramfs)
  4  not a capture kernel (writes to a running system refused), or no PCI tree
"""


def register(sub: Any) -> None:
    p = sub.add_parser("restore", epilog=EPILOG, help="restore devices from a record (capture kernel)",
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
    p.add_argument("--quiesce-log", metavar="FILE", default=CAPTURE_QUIESCE_LOG,
                   help="the log of handoff-quiesce, the capture kernel's first hook, to "
                        f"carry into the report (default {CAPTURE_QUIESCE_LOG}; "
                        "ignored when absent; '' reads none)")
    from handoff.cli._select import add_selection

    add_selection(p)
    p.set_defaults(func=run)


def load_record(src: str | None) -> tuple[Record, list[str]]:
    """The newest valid record in ``src``: :func:`handoff.restore.engine.load_record`."""
    from handoff.restore.engine import load_record as load

    return load(src)


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
            what += "".join(f" + {x}" for x in fb.also)  # as the report's ``instead``
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
    from handoff.restore.steps import ConfigWrite, Disable, RegisterStep, Rescan, Reset

    rows: list[list[object]] = []
    for s in dev.steps:
        if isinstance(s, (Reset, Rescan)) or s.phase in ("reset", "rescan"):
            # a config write of the rescan pass (ahead of the remove) is shown as a remove +
            # rescan line too, with its "write: why"
            what = f"reset ({s.method or 'kernel default'})" if isinstance(s, Reset) \
                else "remove + rescan"
            rows.append([s.phase, what, "", "", None, None, None,
                         f"{s.op}: {s.why}" + (f" [{s.result}]" if s.result else "")])
            continue
        act = f"{s.op}: {s.why}"
        if isinstance(s, (RegisterStep, Disable)) and s.detail:
            act += f" [{s.detail}]"
        if isinstance(s, ConfigWrite) and s.retries:
            act += f" (read back, up to {s.retries} retries)"
        if isinstance(s, RegisterStep):
            rows.append([s.phase, s.reg, f"{s.offset:#05x}", s.width,
                         _hex(s.current, s.width), _hex(s.saved, s.width),
                         _hex(s.value, s.width) if isinstance(s, ConfigWrite) and s.acts
                         else None, act])
        else:  # sysfs enable 1, 0: the kernel writes COMMAND; shown at offset 0, width 0
            rows.append([s.phase, s.reg, "0x000", 0,
                         _hex(s.current if isinstance(s, Disable) else None, 0), None, None, act])
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
    from handoff.cli._select import selection
    from handoff.restore import report
    from handoff.restore.engine import run as restore

    def notify(kind: str, text: str) -> None:
        sys.stderr.write(f"handoff: {kind}: {text}\n")

    done = restore(args.record, sysfs_root=args.sysfs_root, proc_root=args.proc_root,
                   policy=args.policy, dry_run=args.dry_run, probe=args.probe,
                   force=args.force, plugins=not args.no_plugins,
                   plugin_budget=args.plugin_budget,
                   allow_running_system=args.allow_running_system, report_path=args.report,
                   force_report=args.force_report, notify=notify,
                   select=selection(args), quiesce_log=args.quiesce_log or None)
    if args.json:
        from handoff.cli._output import emit_json

        body: dict[str, Any] = {"report": done.doc}
        if args.dry_run:
            body["plan"] = done.plan.to_json()
        if done.refused or done.failed:  # the error contract's keys, on the one document
            body.update(error=("record refused: " + "; ".join(done.refused)) if done.refused
                        else done.summary(), exit_code=1,
                        hint="check --record; --force applies it anyway" if done.refused
                        else "the report's per-device results say what failed")
        emit_json("restore", body)
    else:
        if args.dry_run:
            print(render_plan(done.plan))
            print()
        print(report.summary(done.doc))
    if done.refused:
        sys.stderr.write("handoff: error: record refused: " + "; ".join(done.refused)
                         + "\nhandoff: hint: check --record; --force applies it anyway\n")
    return 1 if done.failed else 0
