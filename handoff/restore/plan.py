"""The restore plan: for every device, its config writes, resets, plugin steps, every refusal,
and what is done instead when the kernel refuses.

Planning only reads. The engine's passes (steps.PASSES, docs/plugins.md) follow the Linux PCI
core:

- plugin save first, before any write: what the crashed kernel left;
- config quiesce: Bus Master off and INTx Disable on, devices below a bridge before the bridge
  (device_shutdown()/pci_device_shutdown() order, which clears Bus Master on kexec); then
  plugin quiesce in the same order, before anything could set Bus Master again;
- sysfs reset, then plugin reset; the kernel saves and restores config around a sysfs reset
  (pci_reset_function(): pci_dev_save_and_disable() ... pci_dev_restore()), so quiescing first
  is what keeps Bus Master off afterwards;
- remove + rescan (a lockdown fallback): removes below a bridge first, then one rescan;
- config restore: upstream bridges before the devices behind them (resume order), per device
  in pci_restore_state() order (configplan.py); then plugin restore and plugin verify.

Under kernel lockdown (environment.py) config writes and plugin register steps are planned as
refused, and fallback.py picks what the kernel can still do for the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from handoff._slots import Slots
from handoff.devices.model import PciDevice, devices_from_payload
from handoff.devices.patterns import bus_master, is_bridge
from handoff.restore import pciregs as R
from handoff.restore.configplan import quiesce_step, restore_steps, snapshot_problem
from handoff.restore.deviceplan import DevicePlan
from handoff.restore.fallback import DISABLE_DOES, RESCAN, choose, disable_problem
from handoff.restore.match import (
    DeviceMatch,
    Identity,
    IdentityCheck,
    RecordInfo,
    check_identity,
    match_all,
)
from handoff.restore.policy import (
    DEFAULT_POLICY,
    QUIESCE,
    RESCAN_OWNED,
    RESET,
    RESTORE_EARLY,
    RESTORE_LIVE,
    SKIP,
    Decision,
    Policy,
)
from handoff.restore.steps import (
    CONFIG,
    DO_DISABLE,
    DO_RESCAN,
    DO_RESET,
    PASSES,
    QUIESCE_PHASE,
    REFUSE,
    RESCAN_PHASE,
    RESET_PHASE,
    RESTORE_PHASE,
    SKIP_OP,
    UP,
    WRITE,
    ConfigWrite,
    Disable,
    LeftAlone,
    PluginOp,
    Rescan,
    Reset,
    Step,
)
from handoff.sysfs.probe import Environment, describe

if TYPE_CHECKING:  # pragma: no cover
    from handoff.plugins import Registry



class Plan(Slots):
    __slots__ = ("_topo", "appeared", "check", "devices", "env", "identity", "policy", "record",
                 "registry")
    _repr_skip = ("_topo",)
    _eq_skip = ("_topo",)
    record: dict[str, Any]
    identity: Identity
    check: IdentityCheck
    env: Environment
    policy: Policy
    devices: list[DevicePlan]
    appeared: list[PciDevice]
    registry: Registry | None  # None: device plugins off for the whole run

    def __init__(self, record: dict[str, Any], identity: Identity, check: IdentityCheck,
                 env: Environment, policy: Policy, devices: list[DevicePlan],
                 appeared: list[PciDevice], registry: Registry | None = None) -> None:
        self.record = record
        self.identity = identity
        self.check = check
        self.env = env
        self.policy = policy
        self.devices = devices
        self.appeared = appeared
        self.registry = registry
        self._topo: tuple[tuple[tuple[int, int], ...], list[DevicePlan]] | None = None

    def topo(self) -> list[DevicePlan]:
        """Bridges before the devices behind them. Sorted once per set of devices: every
        pass asks (the cached list keeps its devices alive, so their ids stay theirs)."""
        key = tuple((id(d), id(d.match.current)) for d in self.devices)
        if self._topo is None or self._topo[0] != key:
            self._topo = (key, sorted(self.devices, key=lambda d: (d.depth, d.addr)))
        return list(self._topo[1])

    def in_order(self, direction: str) -> list[DevicePlan]:
        topo = self.topo()
        return list(reversed(topo)) if direction == UP else topo

    def ordered(self) -> Iterator[tuple[DevicePlan, Step]]:
        """Every config/sysfs step in execution order (the CONFIG passes of steps.PASSES)."""
        for kind, phase, direction, _ in PASSES:
            if kind != CONFIG:
                continue
            for d in self.in_order(direction):
                for s in d.steps:
                    if s.phase == phase:
                        yield d, s

    def plugin_problems(self) -> list[str]:
        return [str(p) for p in self.registry.problems] if self.registry else []

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record, "identity": self.identity.to_json(),
            "identity_check": self.check.to_json(), "environment": describe(self.env),
            "policy": self.policy.to_json(),
            "passes": [f"{kind} {phase} ({direction}): {what}"
                       for kind, phase, direction, what in PASSES],
            "plugins": {"enabled": self.registry is not None,
                        "installed": self.registry.names() if self.registry else [],
                        "problems": self.plugin_problems()},
            "devices": [d.to_json() for d in self.topo()],
            "appeared": [{"addr": d.addr, "ids": d.ids.short(),
                          "why": "present now but not in the record: never written"}
                         for d in self.appeared],
        }


def record_summary(rec: RecordInfo) -> dict[str, Any]:
    return {"generation": rec.generation, "kernel_release": rec.kernel_release,
            "boot_id": rec.boot_id, "hostname": getattr(rec, "hostname", None),
            "created_ns": getattr(rec, "created_ns", None)}


def make_plan(rec: Any, current: dict[str, PciDevice], *, policy: Policy = DEFAULT_POLICY,
              identity: Identity | None = None, force: bool = False,
              env: Environment | None = None, registry: Registry | None = None) -> Plan:
    """Plan the restore of record ``rec`` (a ``handoff.record.Record``) onto the devices
    ``current`` (address -> device read from the tree now, e.g. by apply.scan). ``registry``
    holds the device plugins (``handoff.plugins.load()``); None plans no plugin steps."""
    identity = identity or Identity()
    env = env or Environment()
    check = check_identity(rec, identity, force=force)
    saved = devices_from_payload(rec.payload)
    matches, appeared = match_all(saved, current)
    plans = [_plan_device(m, policy, check, env, registry, current) for m in matches]
    seen: dict[str, int] = {}
    for d in saved:
        seen[d.addr] = seen.get(d.addr, 0) + 1
    for dp in plans:  # a record naming one address twice cannot say which state is right
        if seen[dp.addr] > 1:
            dp.status, dp.steps, dp.plugin_ops, dp.fallback = "refused", [], [], None
            dp.why = f"the record holds {seen[dp.addr]} devices at this address"
    return Plan(record_summary(rec), identity, check, env, policy, plans, appeared, registry)


def _plan_device(m: DeviceMatch, policy: Policy, check: IdentityCheck, env: Environment,
                 registry: Registry | None,
                 current: dict[str, PciDevice] | None = None) -> DevicePlan:
    dec = policy.decide(m.saved, m.saved.policy)
    if not check.ok:
        return DevicePlan(m.saved, m, dec, "refused",
                          "record refused: " + "; ".join(check.problems)
                          + " (--force overrides)")
    if dec.action == SKIP:
        return DevicePlan(m.saved, m, dec, "skip", dec.why)
    if not m.ok:
        return DevicePlan(m.saved, m, dec, "refused", "; ".join(m.reasons))
    assert m.current is not None
    dp = DevicePlan(m.saved, m, dec, "planned", dec.why)
    img = bytearray(m.current.live.data)
    if dec.action in (QUIESCE, RESET):
        if m.current.driver:
            # Nothing is turned off under a driver the capture kernel has bound (pcieport on
            # root ports): it believes Bus Master is on (is_busmaster), and
            # pci_enable_bridge() would never set it again. quiesce is for unbound functions.
            dp.steps.append(LeftAlone(dp.addr, QUIESCE_PHASE, "COMMAND", R.PCI_COMMAND, 2,
                                      f"{m.current.driver} is bound in the capture kernel: "
                                      "nothing is turned off under it (quiesce is for "
                                      "unbound functions)", owner="driver"))
        else:
            dp.steps.append(quiesce_step(dp.addr, img))
    if dec.action == RESET:
        dp.steps.append(_reset(dp.addr, m.current, dec, env))
    if (dec.action in (RESTORE_EARLY, RESTORE_LIVE) and not m.current.driver
            and not is_bridge(m.current) and bus_master(m.current)):
        # An unbound endpoint the crashed kernel left bus-mastering may still be doing DMA.
        # COMMAND belongs to the PCI core, so restore does not write it back; but Bus Master
        # off on an unbound function agrees with the kernel's view (is_busmaster is false
        # until a driver calls pci_set_master()), so it stays the first step here too. The
        # driver's pci_enable_device() clears INTx Disable again (do_pci_enable_device()).
        dp.steps.append(quiesce_step(dp.addr, img))
    if dec.action in (RESTORE_EARLY, RESTORE_LIVE):
        snap = m.saved.early if dec.action == RESTORE_EARLY else m.saved.live
        dp.snapshot = "early" if dec.action == RESTORE_EARLY else "live"
        refusal = snapshot_problem(snap, dp.snapshot, img)
        if refusal:
            dp.status, dp.why = "refused", refusal
            return dp
        assert snap is not None
        dp.steps.extend(restore_steps(dp.addr, img, snap, dp.notes))
        if dec.kernel_owned == RESCAN_OWNED:
            from handoff.restore.resources import plan_rescan

            plan_rescan(dp, snap, current or {}, env)
    refused_cfg = _refuse_config_writes(dp, env)
    if registry is not None:
        from handoff.restore.pluginpass import plan_device

        plan_device(dp, registry, env)
        _plugin_reset_stands_in(dp)
    refused_ops = [o for o in dp.plugin_ops if o.refused_by and o.writes]
    if refused_cfg or refused_ops:
        _fall_back(dp, env, refused_cfg, refused_ops)
    if not dp.active() and not dp.live_ops():
        refused = [s for s in dp.steps if s.op == REFUSE] or refused_ops
        dp.status = "refused" if refused else "nothing"
        if dp.fallback:
            dp.why = dp.fallback.line()
        elif refused:
            dp.why = refused[0].why if isinstance(refused[0], Step) else str(refused[0].result)
        else:
            dp.why += "; nothing to write"
    elif dp.fallback:
        dp.why = dp.fallback.line()
    return dp


def _refuse_config_writes(dp: DevicePlan, env: Environment) -> list[ConfigWrite]:
    refusal = env.config_refusal()
    if refusal is None:
        return []
    out = []
    for s in dp.steps:
        if isinstance(s, ConfigWrite) and s.acts:
            s.refuse(f"{refusal} (sysfs reset is still allowed)")
            out.append(s)
    return out


def _plugin_reset_stands_in(dp: DevicePlan) -> None:
    """No sysfs reset for the function, but a plugin resets it through its registers: that
    reset is the reset (an e1000 on the root bus has no reset_method, measured)."""
    resets = [o for o in dp.live_ops() if o.phase == "reset"]
    for s in dp.steps:
        if isinstance(s, Reset) and s.op == REFUSE and s.method is None and resets:
            names = ", ".join(dict.fromkeys(o.plugin for o in resets))
            s.skip(f"{s.why}; the {names} plugin's register reset is this device's reset")


def _fall_back(dp: DevicePlan, env: Environment, cfg: list[ConfigWrite],
               ops: list[PluginOp]) -> None:
    assert dp.match.current is not None
    refused = []
    if cfg:
        refused.append(f"{len(cfg)} config write(s): {env.config_refusal()}")
    if ops:
        labels = ", ".join(dict.fromkeys(o.label for o in ops))
        refused.append(f"{len(ops)} plugin step(s) ({labels}): BAR mapping refused")
    bars = any(s.resource for s in dp.steps)  # lost BARs/windows the kernel owns
    fb = choose(dp.decision, dp.match.current, env, refused, touches_bars=bars,
                reset_planned=any(isinstance(s, Reset) and s.acts for s in dp.steps))
    dp.fallback = fb
    wanted = f"instead of {fb.wanted} (refused by the kernel)"
    # Stopping DMA matters most. When the kernel refuses our config writes (a quiesce, or a
    # restore that would have reprogrammed the device), a device left with Bus Master on is
    # the danger: the kernel still clears it on request, whatever else the chain picks (a
    # reset afterwards saves and restores COMMAND with Bus Master already off).
    cur = dp.match.current
    live = cur.live.data
    master_on = len(live) > 4 and bool(live[4] & 0x04)
    if cfg and master_on and fb.wanted != "skip":
        problem = disable_problem(cur, env.caps(cur.addr))
        if problem is None:
            at = max((i + 1 for i, s in enumerate(dp.steps) if s.phase == QUIESCE_PHASE),
                     default=0)
            dp.steps.insert(at, Disable(dp.addr, f"{wanted}: {DISABLE_DOES}", instead=True))
            # A side effect of its own (COMMAND changes, INTx Disable included): the
            # report names it beside whatever the chain chose, never "skip" alone.
            fb.also.append("disable")
        else:
            fb.passed.append(f"Bus Master off through sysfs enable: {problem}")
    if fb.instead == RESET and fb.method is not None:
        method = None if fb.method == "default" else fb.method
        dp.steps.append(Reset(dp.addr, f"{wanted}: sysfs reset ({fb.method})", method,
                              instead=True))
    elif fb.instead == RESCAN:
        dp.steps.append(Rescan(dp.addr, f"{wanted}: write 1 to remove, then 1 to "
                               "bus/pci/rescan", instead=True))


def _reset(addr: str, cur: PciDevice, dec: Decision, env: Environment) -> Reset:
    caps = env.caps(addr)
    offered = list(caps.resets) if caps else list(cur.reset_methods)
    problem = caps.reset_problem() if caps else None
    if dec.reset_method:
        if problem or dec.reset_method not in offered:
            return Reset(addr, problem or f"reset method {dec.reset_method!r} is not offered "
                         f"for this device (reset_method: {' '.join(offered) or 'none'})",
                         dec.reset_method, op=REFUSE)
        method: str | None = dec.reset_method
    elif problem or not offered:
        return Reset(addr, problem or "the kernel offers no reset method for this device "
                     "(no reset_method)", op=REFUSE)
    else:
        method = offered[0]  # the kernel lists them in its order of preference
    why = f"function reset through sysfs (reset_method = {method})"
    if method == "default":  # a kernel before 5.15: `reset` without `reset_method`
        method, why = None, "function reset through sysfs (the kernel picks the method)"
    return Reset(addr, why, method)


__all__ = [
    "DO_DISABLE",
    "DO_RESCAN",
    "DO_RESET",
    "QUIESCE",
    "QUIESCE_PHASE",
    "REFUSE",
    "RESCAN_PHASE",
    "RESET",
    "RESET_PHASE",
    "RESTORE_EARLY",
    "RESTORE_LIVE",
    "RESTORE_PHASE",
    "SKIP",
    "SKIP_OP",
    "WRITE",
    "DevicePlan",
    "Plan",
    "PluginOp",
    "Step",
    "make_plan",
]
