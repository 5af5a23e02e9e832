"""The restore report: what was planned, done, verified or refused for every device, and why.

Each device lists its operations as ``REGISTER=VALUE`` (``reset METHOD`` for resets); an
operation carries a status only when it is not the norm (planned in a dry run, verified by
read-back or done otherwise): ``unverified: ...``, ``refused: ...``.

It is kept small enough to travel as an ELF note (NT_HANDOFF_REPORT, spec §6) beside the
record in the dump: compact JSON, one short line per operation, and if a machine has so many
devices that it would pass :data:`MAX_REPORT_BYTES`, per-operation lines are shortened first
and dropped last (the totals and each device's outcome always stay).
"""

from __future__ import annotations

import json
from typing import Any

from handoff.restore import pciregs as R
from handoff.restore.plan import DO_RESET, REFUSE, WRITE, DevicePlan, Plan, Step

REPORT_KIND = "handoff-restore-report"
REPORT_VERSION = 1
MAX_REPORT_BYTES = 64 * 1024


def _by(dev: DevicePlan) -> str:
    d = dev.decision
    if d.rule is not None:
        return f"rule {d.rule.index}" + (f" (line {d.rule.line})" if d.rule.line else "")
    return d.source


def _op(s: Step) -> str:
    if s.op == DO_RESET or (s.op == REFUSE and s.phase == "reset"):
        text = f"reset {s.method or ''}".rstrip()
    else:
        val = s.value if s.value is not None else s.target
        text = f"{s.reg}={val:#0{2 + 2 * s.width}x}"
    if s.status not in ("planned", "verified", "done"):  # the norm goes unsaid
        text += f" {s.status}"
    if s.status not in ("verified", "done", "planned") and (s.result or s.why):
        text += f": {s.result or s.why}"
    return text


def _device(dev: DevicePlan, dry_run: bool, max_ops: int | None) -> dict[str, Any]:
    ids = dev.saved.ids
    out = dev.outcome or ("planned" if dev.active() else _static(dev))
    if dry_run and out not in ("refused", "skipped", "nothing"):
        out = "planned"
    d: dict[str, Any] = {"addr": dev.addr, "ids": ids.short(), "action": dev.decision.action,
                         "by": _by(dev), "outcome": out}
    if dev.match.status != "matched":
        d["match"] = dev.match.status
    if out in ("refused", "failed") or dev.status == "refused":
        d["why"] = dev.why if dev.status == "refused" else _first_failure(dev)
    ops = [s for s in dev.steps if s.op in (WRITE, DO_RESET, REFUSE)]
    if ops and max_ops != 0:
        shown = ops if max_ops is None else ops[:max_ops]
        d["ops"] = [_op(s) for s in shown]
        if len(shown) < len(ops):
            d["more_ops"] = len(ops) - len(shown)
    left = sum(1 for s in dev.steps if s.op == "skip")
    if left:
        d["left_alone"] = left
    return d


def _static(dev: DevicePlan) -> str:
    return {"skip": "skipped", "refused": "refused"}.get(dev.status, "nothing")


def _first_failure(dev: DevicePlan) -> str:
    for s in dev.steps:
        if s.status in ("refused", "unverified"):
            return f"{s.reg}: {s.result or s.why}"
    return dev.why


def totals(plan: Plan, dry_run: bool) -> dict[str, int]:
    t = {"devices": len(plan.devices), "done": 0, "failed": 0, "refused": 0, "skipped": 0,
         "nothing": 0, "planned": 0, "appeared": len(plan.appeared), "writes": 0,
         "verified": 0, "unverified": 0, "resets": 0, "refused_ops": 0}
    for dev in plan.devices:
        out = _device(dev, dry_run, 0)["outcome"]
        t[out] = t.get(out, 0) + 1
        for s in dev.steps:
            if s.op == WRITE:
                t["writes"] += 1
            if s.op == DO_RESET:
                t["resets"] += 1
            if s.status == "verified":
                t["verified"] += 1
            elif s.status == "unverified":
                t["unverified"] += 1
            elif s.status == "refused" and s.op in (WRITE, DO_RESET, REFUSE):
                t["refused_ops"] += 1
    return t


def build(plan: Plan, *, dry_run: bool = False, max_ops: int | None = None) -> dict[str, Any]:
    """The report document (a dict ready for JSON)."""
    devices = sorted(plan.devices, key=lambda d: (d.depth, d.addr))
    return {
        "kind": REPORT_KIND, "v": REPORT_VERSION, "dry_run": dry_run,
        "record": {k: plan.record.get(k) for k in ("generation", "kernel_release", "boot_id")},
        "identity": {**plan.check.to_json(), "crashed": {
            "kernel_release": plan.identity.kernel_release, "boot_id": plan.identity.boot_id,
            "generation": plan.identity.generation}},
        "environment": {k: v for k, v in plan.env.to_json().items() if k != "notes"},
        "policy": plan.policy.source,
        "totals": totals(plan, dry_run),
        "devices": [_device(d, dry_run, max_ops) for d in devices],
        "appeared": [f"{d.addr} {d.ids.short()}" for d in plan.appeared],
    }


def encode(plan: Plan, *, dry_run: bool = False, limit: int = MAX_REPORT_BYTES) -> bytes:
    """Compact JSON under ``limit`` bytes: per-device operation lists shrink until it fits."""
    for max_ops in (None, 16, 8, 4, 2, 1, 0):
        doc = build(plan, dry_run=dry_run, max_ops=max_ops)
        if max_ops is not None:
            doc["truncated"] = f"at most {max_ops} operation(s) listed per device"
        data = json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()
        if len(data) <= limit:
            return data
    for d in doc["devices"]:
        d.pop("why", None)
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
    perm = {True: "yes", False: "no", None: "unknown"}[env["config_writes_permitted"]]
    lines.append(f"lockdown: {env['lockdown'] or 'unknown'}; config writes permitted: {perm}")
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
    for a in doc["appeared"]:
        lines.append(f"  {a}  appeared: not in the record, left alone")
    t = doc["totals"]
    lines.append(
        f"{t['devices']} devices: {t['done']} done, {t['planned']} planned, {t['failed']} "
        f"failed, {t['refused']} refused, {t['nothing']} nothing to do, {t['skipped']} "
        f"skipped; {t['writes']} write(s), {t['verified']} verified, {t['resets']} reset(s), "
        f"{t['refused_ops']} operation(s) refused")
    return "\n".join(lines)


def failed(doc: dict[str, Any]) -> bool:
    """Whether anything that should have happened did not (exit status 1)."""
    t = doc["totals"]
    return bool(t["failed"] or t["refused"] or t["unverified"] or t["refused_ops"]
                or doc["identity"]["problems"] and not doc["identity"]["forced"])


def class_label(class_code: int) -> str:
    return R.class_name(class_code)
