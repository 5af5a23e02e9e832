"""Device plugins inside the restore engine: the pass order of docs/plugins.md, containment,
policy switches, dry runs and the report, on fake trees whose resourceN files hold registers
modelled by tests/helpers/fakebar.py. Nothing here touches the real /sys."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import fakebar as B
from helpers import fakesysfs as F
from helpers.restore import (
    E1000,
    NVME,
    PORT1,
    VBLK,
    VNET,
    capture_tree,
    dev,
    digest,
    fixture,
    get,
    plan_for,
    proc_dir,
    put,
    record_of,
    run_cli,
    saved_devices,
)

from handoff.errors import EXIT_INVALID, EXIT_OK
from handoff.plugins import Match, Plugin, PluginStep, Registry, load
from handoff.plugins.builtin import E1000 as E1000Plugin
from handoff.plugins.builtin import Msix, Nvme, Virtio
from handoff.restore import report
from handoff.restore.apply import SysfsAccess, apply, rehearse
from handoff.restore.plan import Plan
from handoff.restore.pluginpass import PluginRuntime
from handoff.restore.policy import parse_policy
from handoff.sysfs import ConfigSpace, SysfsTree

VBLK2 = "0000:04:00.0"
# NVMe CAP: MQES 0x7ff, CQR, TO = 2 (bound 1.5 s), CSS NVM; CC: IOCQES 4, IOSQES 6, EN.
NVME_CAP, NVME_CC = 0x0000_0020_0200_07FF, 0x0046_0001
ALL_PLUGINS = (Nvme(), Virtio(), E1000Plugin(), Msix())


def with_bars(tree: SysfsTree) -> SysfsTree:
    """resourceN files holding the registers the dead kernel left: an NVMe controller
    enabled and ready, virtio devices DRIVER_OK, an e1000 receiving and transmitting, and
    MSI-X tables with unmasked vectors."""
    root = tree.root
    table = {0x2000 + 16 * i: (4, 0xFEE00000) for i in range(65)}
    B.add_bar(root, NVME, 0, 0x4000, {0x00: (8, NVME_CAP), 0x08: (4, 0x10400),
                                      0x14: (4, NVME_CC), 0x1C: (4, 1), **table})
    for addr in (VNET, VBLK, VBLK2):
        B.add_bar(root, addr, 4, 0x4000, {0x14: (1, 0x0F), 0x12: (2, 2)})
        B.add_bar(root, addr, 1, 0x1000, {})
    B.add_bar(root, E1000, 0, 0x20000, {0x0: (4, 0x0014_0240), 0x8: (4, 0x8008_0783),
                                        0xD0: (4, 0x9D), 0x100: (4, 0x0400_8002),
                                        0x400: (4, 0x0104_00FA)})
    return tree


def _to_restore(tmp: Path) -> SysfsTree:
    """The capture tree with SERR# Enable (a field nobody owns) lost on root port 1 and the
    nvme, and the nvme's Bus Master off: config restore has a write for each, and the
    nvme's BAR0 still agrees with the kernel's resource, so its plugin may reach it."""
    port, nvme = fixture(PORT1, F.Q35_CAPTURE), fixture(NVME, F.Q35_CAPTURE)
    put(port, 0x04, 2, get(port, 4, 2) & ~0x100)
    put(nvme, 0x04, 2, 0x0403)
    return capture_tree(tmp, config_override={PORT1: bytes(port), NVME: bytes(nvme)})


def models(nvme: B.Model | None = None, **extra: B.Model) -> dict[str, dict[int, B.Model]]:
    out: dict[str, dict[int, B.Model]] = {
        NVME: {0: nvme or B.NvmeModel(ready_after=2)},
        VNET: {4: B.VirtioModel()}, VBLK: {4: B.VirtioModel()}, VBLK2: {4: B.VirtioModel()},
        E1000: {0: B.E1000Model()}}
    for addr, m in extra.items():
        out[addr] = {0: m}
    return out


def runtime(tree: SysfsTree, bar_models: dict[str, dict[int, B.Model]],
            clock: B.FakeClock | None = None) -> PluginRuntime:
    clock = clock or B.FakeClock()
    return PluginRuntime(tree=tree, bars_for=B.bars_for(tree.root, bar_models), clock=clock,
                         sleep=clock.sleep)


def nvme_reg(tree: SysfsTree, off: int) -> int:
    return B.peek(B.device_dir(tree.root, NVME) / "resource0", off, 4)


def run_engine(tmp: Path, tree: SysfsTree, *, plugins: tuple[Plugin, ...] = ALL_PLUGINS,
               bar_models: dict[str, dict[int, B.Model]] | None = None,
               access: SysfsAccess | None = None, **kw: Any) -> Plan:
    plan, _ = plan_for(tmp, tree=tree, **kw, registry=Registry.of(*plugins))
    apply(plan, access or SysfsAccess(tree), sleep=lambda s: None,
          plugins=runtime(tree, bar_models or models()))
    return plan


def by_addr(doc: dict[str, Any], addr: str) -> dict[str, Any]:
    return next(d for d in doc["devices"] if d["addr"] == addr)


# --- an NVMe controller left enabled -------------------------------------------------------

def test_nvme_left_enabled_ends_disabled_and_the_report_shows_cc_and_csts(tmp_path: Path) -> None:
    tree = with_bars(capture_tree(tmp_path))
    assert (nvme_reg(tree, 0x14), nvme_reg(tree, 0x1C)) == (NVME_CC, 1)
    plan = run_engine(tmp_path, tree)
    assert nvme_reg(tree, 0x14) & 1 == 0 and nvme_reg(tree, 0x1C) & 1 == 0  # CC.EN, CSTS.RDY
    doc = report.build(plan)
    d = by_addr(doc, NVME)
    # its Bus Master cleared first (unbound, bus-mastering); no config difference to write
    assert d["outcome"] == "done" and d["ops"] == ["COMMAND=0x0503"]
    steps = {p["step"]: p for p in d["plugins"]}
    assert list(steps) == ["save nvme:read-registers", "save msix:record-table",
                           "quiesce nvme:disable-controller", "quiesce msix:mask-vectors",
                           "verify nvme:controller-disabled", "verify msix:vectors-masked"]
    save = steps["save nvme:read-registers"]
    assert save["msg"] == "NVMe 1.4.0; CC.EN=1 CSTS.RDY=1 CSTS.CFS=0"  # what the dead kernel left
    q = steps["quiesce nvme:disable-controller"]
    assert q["outcome"] == "ok" and q["msg"] == "CC.EN 1 -> 0; CSTS.RDY = 0 after 2 read(s)"
    assert "write CC 0x00460000" in q["io"]
    (poll,) = [a for a in q["io"] if a.startswith("poll CSTS")]
    assert poll.startswith("poll CSTS 0x00000000: & 0x1 == 0x0 after 2 read(s)")
    assert steps["verify nvme:controller-disabled"]["msg"] == "CC.EN = 0, CSTS.RDY = 0"
    t = doc["totals"]
    assert t["plugin_failed"] == t["plugin_timeout"] == t["plugin_refused"] == 0
    assert t["plugin_ok"] == t["plugin_steps"] > 0 and not report.failed(doc)
    assert "quiesce nvme:disable-controller ok: CC.EN 1 -> 0" in report.summary(doc)


class Recorder(B.Model):
    """Logs every BAR access of one device into a shared event list, then defers."""

    def __init__(self, events: list[tuple[str, str, int]], addr: str, inner: B.Model) -> None:
        self.events, self.addr, self.inner = events, addr, inner

    def read(self, regs: Any, offset: int, width: int) -> int:
        self.events.append(("bar-read", self.addr, offset))
        return self.inner.read(regs, offset, width)

    def write(self, regs: Any, offset: int, width: int, value: int) -> None:
        self.events.append(("bar-write", self.addr, offset))
        self.inner.write(regs, offset, width, value)


def test_passes_run_in_the_documented_order(tmp_path: Path) -> None:
    """docs/plugins.md: plugin save before any write; config quiesce; plugin quiesce before
    any config restore (COMMAND may set Bus Master again); config restore; plugin verify."""
    events: list[tuple[str, str, int]] = []

    class Logged(ConfigSpace):
        def write(self, offset: int, width: int, value: int) -> None:
            events.append(("config-write", self.path.parent.name, offset))
            super().write(offset, width, value)

    tree = with_bars(_to_restore(tmp_path))  # nvme and root port 1 need restoring
    m: dict[str, dict[int, B.Model]] = {
        a: {i: Recorder(events, a, x) for i, x in bars.items()} for a, bars in models().items()}
    plan = run_engine(tmp_path, tree, bar_models=m, access=SysfsAccess(tree, Logged))
    cfg = [i for i, e in enumerate(events) if e[0] == "config-write"]
    cc_write = events.index(("bar-write", NVME, 0x14))
    before_cc = {events[i][1] for i in cfg if i < cc_write}
    after_cc = {events[i][1] for i in cfg if i > cc_write}
    assert events.index(("bar-read", NVME, 0x0)) < cfg[0]  # plugin save first
    # config quiesce (Bus Master off on every unbound bus-mastering endpoint) before the
    # plugin quiesce; the config restore (nvme and root port 1's SERR#) after it
    assert {VNET, E1000} <= before_cc and PORT1 not in before_cc
    assert after_cc == {NVME, PORT1}
    restore_cfg = [i for i in cfg if i > cc_write]
    assert events.index(("bar-write", VNET, 0x14)) < min(restore_cfg)  # virtio reset
    assert max(i for i, e in enumerate(events) if e[0] == "bar-read") > max(cfg)  # verify
    assert {d.addr: d.outcome for d in plan.devices if d.outcome != "skipped"} == {
        PORT1: "done", "0000:00:02.0": "nothing", "0000:00:03.0": "nothing",
        "0000:00:04.0": "nothing", E1000: "done", "0000:00:1f.2": "done", NVME: "done",
        VNET: "done", VBLK: "done", VBLK2: "done"}
    port = (tree.device_dir(PORT1) / "config").read_bytes()
    assert get(port, 4, 2) == 0x0507  # SERR# back (nobody's); Bus Master never touched


# --- containment -----------------------------------------------------------------------------

def test_a_stuck_controller_times_out_and_the_other_devices_are_still_restored(
        tmp_path: Path) -> None:
    tree = with_bars(_to_restore(tmp_path))
    plan = run_engine(tmp_path, tree, bar_models=models(nvme=B.NvmeModel(ready_after=None)))
    doc = report.build(plan)
    d = by_addr(doc, NVME)
    q = next(p for p in d["plugins"] if p["step"] == "quiesce nvme:disable-controller")
    assert q["outcome"] == "timeout"
    assert q["msg"].startswith("CC.EN 1 -> 0, but CSTS.RDY still 1 after 1.5 s (bound 1.5 s "
                               "from CAP.TO = 2)")
    assert any(a.startswith("poll CSTS 0x00000001: timeout") for a in q["io"])
    # The controller may still run: nothing turns it back on (config restore would write
    # COMMAND last, with Bus Master), but every other device is restored.
    assert d["outcome"] == "failed"
    nvme = next(x for x in plan.devices if x.addr == NVME)
    assert all(s.status == "refused" and "nvme:disable-controller ended timeout" in (s.result or "")
               for s in nvme.steps if s.phase == "restore" and s.op == "write")
    now = (tree.device_dir(NVME) / "config").read_bytes()
    assert get(now, 4, 2) & 0x4 == 0  # Bus Master still off
    v = next(p for p in d["plugins"] if p["step"] == "verify nvme:controller-disabled")
    assert v["outcome"] == "failed" and "still enabled" in v["msg"]  # verify still ran
    for addr in (PORT1, E1000, VNET, VBLK, VBLK2):
        assert by_addr(doc, addr)["outcome"] == "done", addr
    assert doc["totals"]["plugin_timeout"] == 1 and report.failed(doc)
    assert doc["totals"]["restored_partially"] == 1  # the nvme: save and msix still ran


class Raising(Plugin):
    name, version, order = "raising", "0.1", 10
    match = Match.of(ids=["1af4:1041"])

    def quiesce(self, device, state):  # type: ignore[no-untyped-def]
        def body(ctx):  # type: ignore[no-untyped-def]
            raise RuntimeError("deliberately broken")
        return [PluginStep("break", "raises on purpose", body)]


def test_a_raising_plugin_is_reported_and_the_engine_moves_on(tmp_path: Path) -> None:
    tree = with_bars(capture_tree(tmp_path))
    plan = run_engine(tmp_path, tree, plugins=(Raising(), *ALL_PLUGINS))
    doc = report.build(plan)
    v = by_addr(doc, VNET)
    broken = next(p for p in v["plugins"] if p["step"] == "quiesce raising:break")
    assert broken == {"step": "quiesce raising:break", "outcome": "failed",
                      "msg": "plugin raising raised RuntimeError: deliberately broken"}
    assert next(p for p in v["plugins"] if p["step"] == "quiesce virtio:reset-device")[
        "outcome"] == "ok"  # another plugin on the same device still runs
    assert v["outcome"] == "failed" and by_addr(doc, NVME)["outcome"] == "done"
    assert nvme_reg(tree, 0x14) & 1 == 0


def test_plugin_reset_is_the_reset_where_the_kernel_has_none(tmp_path: Path) -> None:
    """An e1000 on the root bus has no reset_method (measured): with action = reset its
    reset is the plugin's CTRL.RST, run in the reset pass."""
    tree = with_bars(capture_tree(tmp_path))
    e1k = B.E1000Model(clears_after=2)
    pol = parse_policy('[[rule]]\nid = "8086:100e"\naction = "reset"\n')
    plan = run_engine(tmp_path, tree, policy=pol, bar_models=models(**{E1000: e1k}))
    d = dev(plan, E1000)
    (r,) = [s for s in d.steps if s.phase == "reset"]
    assert r.status == "skipped" and "e1000 plugin's register reset" in r.why
    phases = [(o.phase, o.label, o.status) for o in d.plugin_ops]
    assert phases == [("quiesce", "e1000:mask-and-stop", "ok"),
                      ("reset", "e1000:device-reset", "ok"), ("verify", "e1000:quiet", "ok")]
    assert ("write", 0x0, 0x0014_0240 | 1 << 26) in e1k.order
    assert d.outcome == "done"


# --- policy ----------------------------------------------------------------------------------

def test_policy_turns_plugins_off_globally_and_per_device(tmp_path: Path) -> None:
    tree = with_bars(capture_tree(tmp_path))
    reg = Registry.of(*ALL_PLUGINS)
    plan, _ = plan_for(tmp_path, tree=tree, registry=reg,
                       policy=parse_policy("plugins = false\n"))
    assert all(not d.plugin_ops for d in plan.devices)
    assert "device plugins are off for this device (policy plugins = false)" in \
        dev(plan, NVME).plugin_notes
    pol = parse_policy('[[rule]]\ndriver = "nvme"\naction = "restore-early"\n'
                       'plugins = ["nvme"]\n'
                       '[[rule]]\nid = "1af4:1041"\naction = "quiesce"\nplugins = false\n')
    plan, _ = plan_for(tmp_path, tree=tree, registry=reg, policy=pol)
    assert {o.plugin for o in dev(plan, NVME).plugin_ops} == {"nvme"}
    assert dev(plan, VNET).plugin_ops == []
    assert {o.plugin for o in dev(plan, VBLK).plugin_ops} == {"virtio", "msix"}
    assert dev(plan, VNET).plugin_notes == [
        "device plugins are off for this device (policy rule 2, line 5)"]
    before = B.digests(tree.root)
    plan, _ = plan_for(tmp_path, tree=tree, registry=None)  # --no-plugins
    apply(plan, SysfsAccess(tree), sleep=lambda s: None)
    assert B.digests(tree.root) == before and report.build(plan)["plugins"]["enabled"] is False


def test_policy_plugin_keys_are_checked() -> None:
    from handoff.errors import UsageError

    with pytest.raises(UsageError, match=r"p.toml:3: rule 1, key 'plugins': expected true"):
        parse_policy('[[rule]]\nclass = "01"\nplugins = "nvme"\naction = "skip"\n', "p.toml")
    with pytest.raises(UsageError, match=r"p.toml:1: top level, key 'plugins'"):
        parse_policy('plugins = ["NVMe!"]\n', "p.toml")
    pol = parse_policy('plugins = ["nvme", "msix"]\n')
    assert pol.plugins == ("nvme", "msix")


# --- dry run ---------------------------------------------------------------------------------

def test_rehearsal_lists_the_accesses_and_maps_nothing(tmp_path: Path) -> None:
    tree = with_bars(capture_tree(tmp_path))
    before = digest(tree.root)

    def never(d: Any, writable: bool) -> Any:
        raise AssertionError("a dry run opened a BAR")

    plan, _ = plan_for(tmp_path, tree=tree, registry=Registry.of(*ALL_PLUGINS))
    rehearse(plan, plugins=PluginRuntime(tree=tree, bars_for=never))
    assert digest(tree.root) == before
    q = next(o for o in dev(plan, NVME).plugin_ops if o.label == "nvme:disable-controller")
    assert q.status == "planned"
    assert [(a.op, a.name, a.value) for a in q.accesses] == [
        ("read", "CAP", None), ("read", "CAP+4", None), ("read", "CC", None),
        ("write", "CC", 0), ("poll", "CSTS", None)]
    doc = report.build(plan, dry_run=True)
    d = by_addr(doc, NVME)
    assert d["outcome"] == "planned" and doc["totals"]["restored_fully"] >= 1
    io = next(p for p in d["plugins"] if p["step"] == "quiesce nvme:disable-controller")["io"]
    assert "write CC 0x00000000: not written (dry run)" in io


def _cli_files(tmp: Path) -> tuple[Path, SysfsTree, Path]:
    rec = tmp / "record.bin"
    rec.write_bytes(record_of(saved_devices(tmp)))
    return rec, with_bars(capture_tree(tmp)), proc_dir(tmp)


def test_cli_dry_run_touches_no_resource_file_and_shows_plugin_steps(tmp_path: Path) -> None:
    rec, tree, proc = _cli_files(tmp_path)
    before, bars = digest(tree.root), B.digests(tree.root)
    assert len(bars) == 8
    args = ["restore", "--record", str(rec), "--sysfs-root", str(tree.root), "--proc-root",
            str(proc), "--dry-run"]
    out, err, rc = run_cli(args)
    assert rc == EXIT_OK, err + out
    assert digest(tree.root) == before and B.digests(tree.root) == bars
    assert "plugin quiesce  nvme:disable-controller" in out
    assert re.search(r"\n +CC +BAR0\+0x14 +4 +write +0x00000000 +not written \(dry run\)\n",
                     out)
    assert "more access(es) (--json lists them)" in out  # msix: 65 vectors
    assert "config writes   unknown (not probed: no write was tried)" in out
    out, err, rc = run_cli(args + ["--json"])
    doc = json.loads(out)
    nv = next(d for d in doc["plan"]["devices"] if d["addr"] == NVME)
    step = next(s for s in nv["plugin_steps"] if s["step"] == "disable-controller")
    assert step["status"] == "planned" and step["accesses"][3] == {
        "bar": 0, "off": "0x14", "width": 4, "op": "write", "value": "0x00000000",
        "result": "not written (dry run)", "reg": "CC"}
    assert doc["plan"]["plugins"]["installed"] == ["e1000", "nvme", "virtio", "msix"]
    assert digest(tree.root) == before


def test_cli_restore_runs_the_plugins(tmp_path: Path) -> None:
    rec, tree, proc = _cli_files(tmp_path)
    # No register models here: the files are plain memory. virtio's device_status reads 0
    # at once after the write; the NVMe's CSTS.RDY would never drop: give it 0 beforehand,
    # as a controller that already finished its reset would read.
    B.poke(B.device_dir(tree.root, NVME) / "resource0", 0x1C, 4, 0)
    B.poke(B.device_dir(tree.root, E1000) / "resource0", 0xD0, 4, 0)  # IMC has no effect here
    (tree.root / "bus" / "pci" / "rescan").write_text("")
    rep = tmp_path / "report.json"
    out, err, rc = run_cli(["restore", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc), "--report", str(rep)])
    assert rc == EXIT_OK, err + out
    assert nvme_reg(tree, 0x14) & 1 == 0
    doc = json.loads(rep.read_bytes())
    assert doc["plugins"] == {"enabled": True, "problems": []}
    assert doc["environment"]["config_writes_permitted"] is True  # probed
    assert doc["environment"]["bars_mappable"] is True
    assert doc["totals"]["plugin_ok"] == doc["totals"]["plugin_steps"]


ACME = '''
from handoff.plugins import Match, Plugin, PluginStep


class Acme(Plugin):
    name, version = "acme-nic", "1.2.0"
    match = Match.of(ids=["8086:100e"])

    def quiesce(self, device, state):
        def body(ctx):
            ctx.modify(0, 0x100, 4, clear_bits=2, name="RCTL")
            return "stopped"
        return [PluginStep("stop", "clear RCTL.EN", body, assume={(0, 0x100): 2})]
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    (site / "acme_handoff").mkdir(parents=True)
    (site / "acme_handoff" / "__init__.py").write_text(ACME)
    dist = site / "acme_handoff-1.2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-handoff\nVersion: 1.2.0\n")
    (dist / "entry_points.txt").write_text(
        "[handoff.plugins]\nacme-nic = acme_handoff:Acme\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("acme_handoff", None)


def test_third_party_plugins_come_from_entry_points(tmp_path: Path, third_party: Path) -> None:
    assert "acme-nic" in load().names()
    rec, tree, proc = _cli_files(tmp_path)
    out, err, rc = run_cli(["restore", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc), "--dry-run", "--json"])
    assert rc == EXIT_OK, err
    doc = json.loads(out)
    e = next(d for d in doc["report"]["devices"] if d["addr"] == E1000)
    step = next(p for p in e["plugins"] if p["step"] == "quiesce acme-nic:stop")
    assert step["io"] == ["read RCTL -: not read (dry run); assumed 0x2",
                          "write RCTL 0x00000000: not written (dry run)"]


def test_cli_plugin_budget_must_be_positive(tmp_path: Path) -> None:
    rec, tree, proc = _cli_files(tmp_path)
    _, err, rc = run_cli(["restore", "--record", str(rec), "--sysfs-root", str(tree.root),
                          "--proc-root", str(proc), "--dry-run", "--plugin-budget", "0"])
    assert rc == 2 and "--plugin-budget 0: expected seconds > 0" in err


def test_phase_budget_ends_later_steps_as_timeouts(tmp_path: Path) -> None:
    tree = with_bars(capture_tree(tmp_path))
    clock = B.FakeClock()
    plan, _ = plan_for(tmp_path, tree=tree, registry=Registry.of(*ALL_PLUGINS))
    rt = runtime(tree, models(nvme=B.NvmeModel(ready_after=None)), clock)
    rt.budget_s = 1.0  # less than the stuck NVMe's CAP.TO bound
    apply(plan, SysfsAccess(tree), sleep=lambda s: None, plugins=rt)
    ops = [o for d in plan.topo() for o in d.plugin_ops]
    late = [o for o in ops if o.status == "timeout" and "budget" in (o.result or "")]
    assert late and all(o.phase in ("quiesce", "verify") for o in late)
    assert report.build(plan)["totals"]["plugin_timeout"] == len(late) + 1
    assert EXIT_INVALID == 1


def test_memory_space_turned_on_for_a_plugin_step_is_an_operation_in_the_report(
        tmp_path: Path) -> None:
    """The e1000 left with COMMAND 0 (Memory Space off): its plugin steps turn Memory Space on
    and off again, and the report (what travels in the dump) lists both with before and
    after, not only the plan."""
    e1k = fixture(E1000, F.Q35_CAPTURE)
    put(e1k, 0x04, 2, 0x0000)
    tree = with_bars(capture_tree(tmp_path, config_override={E1000: bytes(e1k)}))
    doc = report.build(run_engine(tmp_path, tree))
    q = next(p for p in by_addr(doc, E1000)["plugins"]
             if p["step"] == "quiesce e1000:mask-and-stop")
    assert q["outcome"] == "ok", q
    assert q["notes"] == [
        # config quiesce ran first: INTx Disable on, Bus Master off
        ("operation: COMMAND 0x0400 -> 0x0402 (Memory Space on for this step: off, the BAR "
         "reads 0)"),
        "operation: COMMAND 0x0402 -> 0x0400 (Memory Space restored after the step)"]
    assert "notes" not in next(p for p in by_addr(doc, NVME)["plugins"]
                               if p["step"] == "quiesce nvme:disable-controller")
