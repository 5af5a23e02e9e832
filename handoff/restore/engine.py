"""Restore as one call: find the record, check where it runs, plan, apply or rehearse, report.

``handoff restore`` is this plus argument parsing and printing; a library user calls
:func:`run` and reads the :class:`Report` it returns. Paths stay strings here: pathlib costs
start-up in the capture kernel (tests/test_restore_startup.py).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from handoff._slots import Slots
from handoff.paths import CAPTURE_RECORD as DEFAULT_RECORD

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from handoff.record import Record
    from handoff.restore.plan import Plan
    from handoff.restore.policy import Policy

    # Called as things happen, for a caller that shows them (the CLI writes them to stderr):
    # ("note", text) about the record, ("warning", text) about a report or a plugin.
    Notify = Callable[[str, str], None]


class Report(Slots):
    """What a restore did: the plan it followed, its report document and what it noticed."""

    __slots__ = ("doc", "dry_run", "notes", "plan", "record", "warnings")
    record: Record
    plan: Plan
    doc: dict[str, Any]  # restore.report.build(): what `--report` holds, uncompacted
    dry_run: bool
    notes: list[str]
    warnings: list[str]

    def __init__(self, record: Record, plan: Plan, doc: dict[str, Any], dry_run: bool,
                 notes: list[str], warnings: list[str]) -> None:
        self.record = record
        self.plan = plan
        self.doc = doc
        self.dry_run = dry_run
        self.notes = notes
        self.warnings = warnings

    @property
    def failed(self) -> bool:
        """A device step failed or the record was refused (``handoff restore`` exits 1)."""
        from handoff.restore import report

        return report.failed(self.doc)

    @property
    def refused(self) -> list[str]:
        """Why the record was refused for this kernel (empty when it was not, or forced)."""
        check = self.plan.check
        return [] if check.forced else list(check.problems)

    def summary(self) -> str:
        from handoff.restore import report

        return report.summary(self.doc)


def load_record(src: str | None) -> tuple[Record, list[str]]:
    """The newest valid record in ``src`` (default: the shipped one), and notes about others."""
    import handoff
    from handoff.errors import NoRecordFound

    path = src or DEFAULT_RECORD
    if not os.path.exists(path):
        hint = "pass --record with a record, note file, region, initrd or vmcore"
        if src is not None:  # named by the user: a usage error, as for every command
            from handoff.errors import MissingInput

            raise MissingInput(f"--record {src}: no such file", hint=hint)
        raise NoRecordFound(f"no handoff record at {path}: the capture initramfs ships it "
                            "there (spec §6)", hint=hint)
    try:
        found = handoff.read(path)
    except OSError as e:
        from handoff.errors import EnvironmentProblem, os_reason

        raise EnvironmentProblem(f"cannot read {path}: {os_reason(e)}",
                                 hint="check its permissions (run as root?)") from None
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


def write_refusal(path: str, source: str, err: Exception, force: bool = False,
                  notify: Notify | None = None) -> None:
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
        if notify is not None:
            notify("warning", f"no report written: {e}")


def run(
    record: str | None = None,
    *,
    sysfs_root: str = "/sys",
    proc_root: str = "/proc",
    policy: Policy | str | None = None,
    dry_run: bool = False,
    probe: bool = False,
    force: bool = False,
    plugins: bool = True,
    plugin_budget: float | None = None,
    allow_running_system: bool = False,
    report_path: str | None = None,
    force_report: bool = False,
    notify: Notify | None = None,
    select: Any = None,
    quiesce_log: str | None = None,
) -> Report:
    """Restore the devices under ``sysfs_root`` from the newest record in ``record``.

    A dry run writes nothing to any device (and, unless ``probe``, asks the kernel nothing
    that writes); a real one refuses the running system's own /sys unless ``proc_root`` has a
    vmcore or ``allow_running_system``. With ``report_path`` the report is written there, also
    when the record is unusable (then saying why). Raises the HandoffError subclass that names
    what to fix: NoRecordFound, an InvalidRecord, EnvironmentProblem or UsageError.
    ``policy`` is a Policy or the path of a policy file (docs/policy.md); None: the defaults.
    ``select`` (a :class:`handoff.devices.patterns.Selection`, lspci's ``-s``/``-d``) limits
    the plan, and so every write, to the devices it matches.
    ``quiesce_log``: the log of handoff-quiesce, the capture kernel's first hook
    (csrc/quiesce), carried into the report as ``quiescer`` when the file exists.
    """
    from handoff import outfile
    from handoff.errors import HandoffError
    from handoff.restore.policy import DEFAULT_POLICY, load_policy

    if report_path:  # before anything is done: a bad report path costs nothing
        outfile.check(report_path, outfile.REPORT, force=force_report, special_ok=True,
                      flag="--force-report")
    policy = load_policy(policy) if isinstance(policy, str) else policy or DEFAULT_POLICY
    try:
        rec, notes = load_record(record)
    except HandoffError as e:
        # Nothing is written to any device; the report still says why, so that capture can
        # keep it with the dump (a corrupt handoff cpio must not leave the post-mortem blind).
        if report_path:
            write_refusal(report_path, record or DEFAULT_RECORD, e, force_report, notify)
        raise
    for n in notes:
        if notify is not None:
            notify("note", n)
    tree, env, identity = _capture_kernel(sysfs_root, proc_root, dry_run=dry_run, probe=probe,
                                          allow_running_system=allow_running_system,
                                          plugin_budget=plugin_budget)
    registry, warnings = _plugins(policy, notify) if plugins else (None, [])
    plan = _plan_and_apply(rec, tree, env, identity, policy, registry, force=force,
                           dry_run=dry_run, plugin_budget=plugin_budget, select=select)
    from handoff.restore import quiesce_log as qlog

    quiesced = qlog.read(quiesce_log) if quiesce_log else None
    return Report(rec, plan, _report(plan, dry_run, report_path, force_report, quiesced),
                  dry_run, notes, warnings)


def _capture_kernel(sysfs_root: str, proc_root: str, *, dry_run: bool, probe: bool,
                    allow_running_system: bool, plugin_budget: float | None) -> tuple[Any, ...]:
    """The sysfs tree, what its kernel permits and the kernel's identity, after the checks
    that this is a tree restore may touch."""
    from handoff.errors import EnvironmentProblem, UsageError
    from handoff.restore.match import identity_from
    from handoff.sysfs import SysfsTree
    from handoff.sysfs import paths as _paths
    from handoff.sysfs.probe import probe as probe_kernel

    # Spelled as pathlib would in messages.
    root = _paths.pathstr(sysfs_root)
    tree = SysfsTree(root)
    devices = _paths.join(root, "bus", "pci", "devices")
    if not os.path.isdir(devices):
        raise EnvironmentProblem(f"{devices} is not a directory",
                                 hint="--sysfs-root takes the directory holding bus/pci")
    proc = _paths.pathstr(proc_root)
    real_sys = os.path.realpath(sysfs_root) == "/sys"
    writes = not dry_run or probe  # --probe writes back one byte: same gate
    if (real_sys and writes and not os.path.exists(_paths.join(proc, "vmcore"))
            and not allow_running_system):
        raise EnvironmentProblem(
            f"refusing to write to this running system's /sys: {proc}/vmcore does not exist, "
            "so this is not a capture kernel",
            hint="use --dry-run (without --probe) to see the plan; after a plain kexec pass "
                 "--allow-running-system")
    if plugin_budget is not None and not plugin_budget > 0:
        raise UsageError(f"--plugin-budget {plugin_budget:g}: expected seconds > 0",
                         hint="leave it out to bound each plugin step by its own timeout")
    identity = identity_from(proc)
    # A real restore asks the kernel (one harmless write-back, one read-only mapping); a dry
    # run writes and maps nothing unless --probe, and judges from the lockdown mode.
    env = probe_kernel(root, probe_writes=writes, probe_bars=writes)
    return tree, env, identity


def _plugins(policy: Policy, notify: Notify | None) -> tuple[Any, list[str]]:
    """The installed plugins (built-in and entry points), and why any did not load."""
    from handoff.plugins import load

    registry = load(entry_points=True)
    warnings = [str(p) for p in registry.problems]
    for w in warnings:
        if notify is not None:
            notify("warning", w)
    policy.check_plugins(registry.names())
    return registry, warnings


def _plan_and_apply(rec: Record, tree: Any, env: Any, identity: Any, policy: Policy,
                    registry: Any, *, force: bool, dry_run: bool,
                    plugin_budget: float | None, select: Any = None) -> Plan:
    from handoff.restore.apply import SysfsAccess, apply, rehearse, scan
    from handoff.restore.plan import make_plan
    from handoff.restore.pluginpass import PluginRuntime

    current = scan(tree)
    if select:  # lspci's -s/-d: plan (and touch) only these devices
        from handoff.devices.patterns import filter_payload

        current = {a: d for a, d in current.items() if select.matches_device(d)}
        rec = rec.replace(  # type: ignore[assignment]  # Slots.replace returns the same type
            payload=dict(rec.payload, devices=filter_payload(select, rec.devices)))
    plan = make_plan(rec, current, policy=policy, identity=identity, force=force, env=env,
                     registry=registry)
    runtime = PluginRuntime(tree=tree, budget_s=plugin_budget)
    if not dry_run and plan.check.ok:
        apply(plan, SysfsAccess(tree), plugins=runtime)
    elif dry_run:
        rehearse(plan, plugins=runtime)
    return plan


def _report(plan: Plan, dry_run: bool, path: str | None, force: bool,
            quiescer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report document; written compact to ``path`` (a note's worth) when given."""
    from handoff import outfile
    from handoff.restore import report

    doc = report.build(plan, dry_run=dry_run, quiescer=quiescer)
    if path:
        outfile.write_file(path, report.encode(plan, dry_run=dry_run, quiescer=quiescer),
                           outfile.REPORT,
                           force=force, special_ok=True, flag="--force-report")
    return doc
