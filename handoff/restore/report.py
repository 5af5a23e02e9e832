"""The restore report: what was planned, done, verified or refused for every device, and why.

Each device lists its config operations as ``REGISTER=VALUE`` (``reset METHOD`` for resets,
``remove+rescan``) and its plugin steps with their register accesses (``write CC
0x00460000``, ``poll CSTS 0x00000000: ...``); an operation carries a status only when it is
not the norm (planned in a dry run, verified by read-back or done otherwise), except a
verified ``kernel_owned`` remove+rescan, which says what it checked. When the kernel
refused what a device's action needed (lockdown), the device says what was wanted, what the
kernel permits and what was done instead, and the totals say how much of the saved state
could really be applied.

It is kept small enough to travel as an ELF note (NT_HANDOFF_REPORT, spec §6) beside the
record in the dump: compact JSON, one short line per operation, and if a machine has so many
devices that it would pass :data:`MAX_REPORT_BYTES`, per-operation lines are shortened first
and dropped last (the totals and each device's outcome always stay).
"""

from __future__ import annotations

from typing import Any

from handoff.restore import pciregs as R
from handoff.restore.plan import DevicePlan, Plan
from handoff.restore.steps import (
    DO_DISABLE,
    DO_RESCAN,
    DO_RESET,
    PASSES,
    PLUGIN,
    REFUSE,
    SKIP_OP,
    WRITE,
    ConfigWrite,
    Disable,
    PluginOp,
    Rescan,
    Reset,
    Step,
    SysfsStep,
)

REPORT_KIND = "handoff-restore-report"
REPORT_VERSION = 1
MAX_REPORT_BYTES = 64 * 1024
_NORM = ("planned", "verified", "done", "ok")
_PHASE_RANK = {phase: i for i, (kind, phase, _, _) in enumerate(PASSES) if kind == PLUGIN}


def _by(dev: DevicePlan) -> str:
    d = dev.decision
    if d.rule is not None:
        return f"rule {d.rule.index}" + (f" (line {d.rule.line})" if d.rule.line else "")
    return d.source


def _op(s: Step) -> str:
    """One operation that acts or was refused (never a LeftAlone: those are counted)."""
    match s:
        case Disable():
            text = "enable 1,0"
        case Rescan():
            text = "remove+rescan"
        case Reset():
            text = f"reset {s.method or ''}".rstrip()
        case ConfigWrite():
            val = s.value if s.value is not None else s.target
            text = f"{s.reg}={val:#0{2 + 2 * s.width}x}"
        case _:
            text = s.reg
    if isinstance(s, SysfsStep):
        if s.instead:
            text += " (instead)"
        if s.before is not None or s.after is not None:  # a side effect: what it changed
            text += f" {s.before or '?'} -> {s.after or '?'}"
    if s.status not in _NORM:  # the norm goes unsaid
        text += f" {s.status}"
    if s.status not in _NORM and (s.result or s.why):
        text += f": {s.result or s.why}"
    elif isinstance(s, Rescan) and s.resource and s.status == "verified" and s.result:
        # A policy's kernel_owned rescan had the kernel place resources anew: that the device
        # came back as itself and every BAR agrees is said even when it went well.
        text += f": {s.result}"
    return text


def access_line(a: Any) -> str:
    """One plugin register access: ``write CC 0x00460000``, ``poll CSTS 0x00000000: & 0x1 ==
    0x0 after 3 read(s), 0.01 s``; the result is said when it is not plain "ok"."""
    reg = a.name or f"BAR{a.bar}+{a.offset:#x}"
    val = "-" if a.value is None else f"{a.value:#0{2 + 2 * a.width}x}"
    text = f"{a.op} {reg} {val}"
    return text if a.result == "ok" else f"{text}: {a.result}"


def _plugin(o: PluginOp, max_io: int | None) -> dict[str, Any]:
    d: dict[str, Any] = {"step": f"{o.phase} {o.label}", "outcome": o.status}
    if o.result:
        d["msg"] = o.result
    io = [access_line(a) for a in o.accesses]
    if io and max_io != 0:
        shown = io if max_io is None else io[:max_io]
        d["io"] = shown
        more = o.dropped + len(io) - len(shown)
        if more:
            d["more_io"] = more
    elif o.dropped or io:
        d["more_io"] = o.dropped + len(io)
    # What reaching the BARs changed (Memory Space on for the step and off again, from
    # handoff/plugins/bar.py) is an operation with before and after: the report lists it.
    if o.notes and max_io != 0:
        d["notes"] = list(o.notes) if max_io is None else o.notes[:max_io]
    return d


def _device(dev: DevicePlan, dry_run: bool, max_ops: int | None) -> dict[str, Any]:
    ids = dev.saved.ids
    out = dev.outcome or ("planned" if dev.active() or dev.live_ops() else _static(dev))
    if dry_run and out not in ("refused", "skipped", "nothing"):
        out = "planned"
    d: dict[str, Any] = {"addr": dev.addr, "ids": ids.short(), "action": dev.decision.action,
                         "by": _by(dev), "outcome": out}
    if dev.match.status != "matched":
        d["match"] = dev.match.status
    if out in ("refused", "failed") or dev.status == "refused":
        d["why"] = dev.why if dev.status == "refused" else _first_failure(dev)
    fb = dev.fallback
    if fb is not None:
        d["wanted"] = fb.wanted
        d["refused"] = fb.refused
        d["permitted"] = fb.permitted
        d["instead"] = f"{fb.instead} {fb.method}" if fb.method else fb.instead
        if fb.also:
            d["instead"] += "".join(f" + {x}" for x in fb.also)
    ops = [s for s in dev.steps if s.op != SKIP_OP]  # acts, or the kernel refused it
    if ops and max_ops != 0:
        shown = ops if max_ops is None else ops[:max_ops]
        d["ops"] = [_op(s) for s in shown]
        if len(shown) < len(ops):
            d["more_ops"] = len(ops) - len(shown)
    if dev.plugin_ops:
        ordered = sorted(dev.plugin_ops, key=lambda o: _PHASE_RANK.get(o.phase, 99))
        d["plugins"] = [_plugin(o, max_ops) for o in ordered]
    owned = [s.reg for s in dev.steps if s.owner is not None and s.op == SKIP_OP]
    if owned:  # differences the capture kernel owns: reported, not written (owners.py)
        d["kernel_owns"] = owned
    left = sum(1 for s in dev.steps if s.op == SKIP_OP)
    if left:
        d["left_alone"] = left
    return d


def _static(dev: DevicePlan) -> str:
    return {"skip": "skipped", "refused": "refused"}.get(dev.status, "nothing")


def _first_failure(dev: DevicePlan) -> str:
    for s in dev.steps:
        if s.status in ("refused", "unverified"):
            return f"{s.reg}: {s.result or s.why}"
    for o in dev.plugin_ops:
        if o.status in ("failed", "timeout", "no-response", "refused"):
            return f"{o.label}: {o.result or o.status}"
    return dev.why


def restored(dev: DevicePlan, outcome: str) -> str | None:
    """fully / partially / not, for a device something was wanted of (None: skipped, or
    nothing to do)."""
    if outcome in ("skipped", "nothing"):
        return None
    if outcome == "planned":  # dry run: what the plan can achieve
        refused = dev.fallback is not None or any(s.op == REFUSE for s in dev.steps) or \
            any(o.refused_by for o in dev.plugin_ops)
        return "partially" if refused else "fully"
    if outcome == "done":
        return "fully"
    if outcome in ("partial", "failed"):
        done = any(s.status in ("verified", "done") for s in dev.steps) or \
            any(o.ok for o in dev.plugin_ops)
        return "partially" if done else "not"
    return "not"


def totals(plan: Plan, dry_run: bool) -> dict[str, int]:
    t = {"devices": len(plan.devices), "done": 0, "partial": 0, "failed": 0, "refused": 0,
         "skipped": 0, "nothing": 0, "planned": 0, "appeared": len(plan.appeared),
         "writes": 0, "verified": 0, "unverified": 0, "resets": 0, "rescans": 0,
         "refused_ops": 0, "registers_planned": 0, "registers_applied": 0,
         "plugin_steps": 0, "plugin_ok": 0, "plugin_refused": 0, "plugin_failed": 0,
         "plugin_timeout": 0, "plugin_no_response": 0, "fallbacks": 0, "restored_fully": 0,
         "restored_partially": 0,
         "not_restored": 0, "kernel_owned": 0, "disables": 0}
    for dev in plan.devices:
        out = _device(dev, dry_run, 0)["outcome"]
        t[out] = t.get(out, 0) + 1
        r = restored(dev, out)
        if r is not None:
            t[{"fully": "restored_fully", "partially": "restored_partially",
               "not": "not_restored"}[r]] += 1
        if dev.fallback is not None and dev.fallback.instead in ("reset", "rescan"):
            t["fallbacks"] += 1
        for s in dev.steps:
            if s.op == WRITE:
                t["writes"] += 1
            if s.is_config_write:
                t["registers_planned"] += 1
            if s.op == DO_RESET:
                t["resets"] += 1
            if s.op == DO_RESCAN:
                t["rescans"] += 1
            if s.op == DO_DISABLE:
                t["disables"] += 1
            if s.owner is not None and s.op == SKIP_OP:
                t["kernel_owned"] += 1
            if s.status == "verified":
                t["verified"] += 1
                t["registers_applied"] += 1
            elif s.status == "unverified":
                t["unverified"] += 1
            elif s.status == "refused" and s.op in (WRITE, DO_RESET, DO_RESCAN, DO_DISABLE,
                                                    REFUSE):
                t["refused_ops"] += 1
        for o in dev.plugin_ops:
            t["plugin_steps"] += 1
            key = {"ok": "plugin_ok", "refused": "plugin_refused", "failed": "plugin_failed",
                   "timeout": "plugin_timeout",
                   "no-response": "plugin_no_response"}.get(o.status)
            if key:
                t[key] += 1
    return t


def environment(plan: Plan) -> dict[str, Any]:
    env = plan.env
    d = env.to_json()
    for key, c in (("config_check", env.config_check), ("bar_check", env.bar_check)):
        if c is not None:
            d[key] = f"{c.how}: {c.detail}"
    return d


def memory() -> dict[str, int] | None:
    """This process's memory when the report is built, at the end of restore (bytes, from
    /proc/self/status): the peak resident set so far (VmHWM) and the file pages mapped now
    (RssFile: the interpreter and its libraries, in the capture kernel the runtime's own
    unpacked files). Their difference is restore's own addition to the capture kernel's peak
    (docs/load.md, "Memory"). None without Linux's /proc."""
    got: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssFile"):
                    got[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if len(got) != 2:
        return None
    return {"peak_rss": got["VmHWM"], "rss_file": got["RssFile"],
            "peak_private": max(0, got["VmHWM"] - got["RssFile"])}


def build(plan: Plan, *, dry_run: bool = False, max_ops: int | None = None,
          quiescer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report document (a dict ready for JSON); ``quiescer`` is handoff-quiesce's log
    (quiesce_log.read), which ran before restore."""
    doc = {
        "kind": REPORT_KIND, "v": REPORT_VERSION, "dry_run": dry_run,
        "record": {k: plan.record.get(k) for k in ("generation", "kernel_release", "boot_id")},
        "identity": {**plan.check.to_json(), "crashed": {
            "kernel_release": plan.identity.kernel_release, "boot_id": plan.identity.boot_id,
            "generation": plan.identity.generation}},
        "environment": environment(plan),
        "policy": plan.policy.source,
        "plugins": {"enabled": plan.registry is not None, "problems": plan.plugin_problems()},
        "totals": totals(plan, dry_run),
        "devices": [_device(d, dry_run, max_ops) for d in plan.topo()],
        "appeared": [f"{d.addr} {d.ids.short()}" for d in plan.appeared],
    }
    mem = memory()
    if mem is not None:
        doc["memory"] = mem
    if quiescer is not None:
        doc["quiescer"] = quiescer
    return doc


def encode(plan: Plan, *, dry_run: bool = False, limit: int = MAX_REPORT_BYTES,
           quiescer: dict[str, Any] | None = None) -> bytes:
    """Compact JSON under ``limit`` bytes: per-device operation lists shrink until it fits."""
    import json  # only when a report is written: the text output does not need it

    for max_ops in (None, 16, 8, 4, 2, 1, 0):
        doc = build(plan, dry_run=dry_run, max_ops=max_ops, quiescer=quiescer)
        if max_ops is not None:
            doc["truncated"] = f"at most {max_ops} operation(s) listed per device"
        data = json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()
        if len(data) <= limit:
            return data
    for d in doc["devices"]:
        d.pop("why", None)
        for p in d.get("plugins", []):
            p.pop("msg", None)
    data = json.dumps(doc, separators=(",", ":")).encode()
    if len(data) > limit:
        raise ValueError(f"restore report is {len(data)} bytes even without details "
                         f"(limit {limit}): too many devices for one note")
    return data


def summary(doc: dict[str, Any]) -> str:
    """A short human summary of a report document."""
    rec, ident, env = doc["record"], doc["identity"], doc["environment"]
    lines = [(f"handoff restore{' (dry run)' if doc['dry_run'] else ''}: record generation "
              f"{rec['generation']} of {rec['kernel_release'] or '?'} "
              f"(boot {rec['boot_id'] or '?'})")]
    if not ident["problems"]:
        lines.append("identity: matches the crashed kernel")
    else:
        state = "FORCED past" if ident["forced"] else "REFUSED"
        lines.append(f"identity: {state}: " + "; ".join(ident["problems"]))
    yn = {True: "yes", False: "no", None: "unknown"}
    lines.append(f"lockdown: {env['lockdown'] or 'unknown'}; config writes permitted: "
                 f"{yn[env['config_writes_permitted']]}; BAR mapping permitted: "
                 f"{yn[env.get('bars_mappable')]}")
    for d in doc["devices"]:
        head = f"  {d['addr']}  {d['ids']}  {d['action']:<13}  {d['outcome']:<8}"
        tail = ""
        if d.get("why"):
            tail = d["why"]
        elif d.get("ops"):
            tail = ", ".join(d["ops"][:3]) + (" ..." if len(d["ops"]) > 3 else "")
        elif d.get("left_alone"):
            tail = f"({d['left_alone']} difference(s) left alone)"
        lines.append(f"{head}  {tail}".rstrip())
        if "instead" in d:
            lines.append(f"      wanted {d['wanted']}; the kernel permits "
                         f"{', '.join(d['permitted'])}; instead: {d['instead']}")
        for p in d.get("plugins", []):
            text = f"      {p['step']} {p['outcome']}"
            if p.get("msg"):
                text += f": {p['msg']}"
            lines.append(text)
    for a in doc["appeared"]:
        lines.append(f"  {a}  appeared: not in the record, left alone")
    t = doc["totals"]
    # A dry run applies nothing: it says what the plan would do, never "restored".
    steps = f"{t['plugin_steps']} plugin step(s)"
    if doc["dry_run"]:
        lines.append(
            f"planned: {t['registers_planned']} config register(s), {steps}; the plan would "
            f"restore fully {t['restored_fully']}, partially {t['restored_partially']}, not "
            f"{t['not_restored']}; {t['fallbacks']} fallback(s)")
    else:
        bad = [f"{t[k]} {what}" for k, what in (("plugin_refused", "refused"),
                                               ("plugin_failed", "failed"),
                                               ("plugin_timeout", "timed out")) if t[k]]
        lines.append(
            f"applied: {t['registers_applied']} of {t['registers_planned']} config "
            f"register(s), {t['plugin_ok']} of {steps}" + (f" ({', '.join(bad)})" if bad else "")
            + f"; devices restored fully {t['restored_fully']}, partially "
            f"{t['restored_partially']}, not {t['not_restored']}; {t['fallbacks']} fallback(s)")
    # The device totals stay the last line: scripts (and tests/test_runtime.py) read it.
    # "refused" counts devices; the kernel's refusals of single operations are named apart.
    ops = (f"{t['writes']} write(s), {t['verified']} verified, {t['resets']} reset(s), "
           f"{t['rescans']} rescan(s)")
    if t["refused_ops"]:
        ops += f", {t['refused_ops']} operation(s) the kernel refused"
    lines.append(
        f"{t['devices']} devices: {t['done']} done, {t['partial']} partial, {t['planned']} "
        f"planned, {t['failed']} failed, {t['refused']} refused, {t['nothing']} nothing to "
        f"do, {t['skipped']} skipped; {ops}")
    return "\n".join(lines)


def failed(doc: dict[str, Any]) -> bool:
    """Whether anything that should have happened did not (exit status 1)."""
    t = doc["totals"]
    return bool(t["failed"] or t["refused"] or t["partial"] or t["unverified"]
                or t["refused_ops"] or t["plugin_failed"] or t["plugin_timeout"]
                or doc["identity"]["problems"] and not doc["identity"]["forced"])


def class_label(class_code: int) -> str:
    return R.class_name(class_code)
