"""Work under kernel lockdown: what the kernel permits (environment.probe), the fallback plan
for each device kind of the real dumps, remove + rescan, and the report's wanted / permitted /
instead. The kernel is simulated through the seams only: the lockdown file in a fake tree,
EPERM from the ConfigSpace accessor, mmap errors from ``mmap_fn``, missing sysfs files.
Measured behaviour being simulated: /work/shared/facts/lockdown-measured.md."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import fakebar as B
from helpers import fakesysfs as F
from helpers.restore import (
    AHCI,
    E1000,
    NVME,
    PORT1,
    VBLK,
    VNET,
    EpermConfig,
    capture_tree,
    dev,
    digest,
    firmware_less_tree,
    plan_for,
    proc_dir,
    record_of,
    run_cli,
    saved_devices,
)

from handoff.errors import EXIT_INVALID, EXIT_OK, UsageError
from handoff.plugins import Registry
from handoff.plugins.builtin import E1000 as E1000Plugin
from handoff.plugins.builtin import Msix, Nvme, Virtio
from handoff.restore import report
from handoff.restore.apply import OutsideTree, SysfsAccess, apply
from handoff.restore.fallback import BRIDGE_WHY, RESET_NO_BARS
from handoff.restore.plan import DO_RESCAN, DO_RESET, REFUSE
from handoff.restore.pluginpass import PluginRuntime
from handoff.restore.policy import parse_policy
from handoff.sysfs import ConfigAccessError, ConfigSpace, SysfsTree
from handoff.sysfs.probe import (
    Check,
    Environment,
    describe,
    describe_text,
    parse_lockdown,
    probe,
)

HOST, LPC, SMBUS, VBLK2 = "0000:00:00.0", "0000:00:1f.0", "0000:00:1f.3", "0000:04:00.0"
PORTS = ("0000:00:01.0", "0000:00:02.0", "0000:00:03.0", "0000:00:04.0")
FC = {"host": "0000:00:00.0", "balloon": "0000:00:01.0", "blk": "0000:00:02.0",
      "net": "0000:00:03.0", "vsock": "0000:00:04.0", "rng": "0000:00:05.0"}
PLUGINS = Registry.of(Nvme(), Virtio(), E1000Plugin(), Msix())


def as_real_sysfs(tree: SysfsTree, mode: str | None = "integrity") -> SysfsTree:
    """What real sysfs has and the fake trees lack: ``reset`` wherever ``reset_method`` is
    (both are visible iff the kernel has a reset function), ``remove`` on every device,
    ``bus/pci/rescan``; and securityfs's lockdown file in ``mode`` (None: no file)."""
    for addr in tree.pci_addresses():
        d = tree.device_dir(addr)
        if (d / "reset_method").exists():
            (d / "reset").write_text("")
        (d / "remove").write_text("")
    (tree.root / "bus" / "pci" / "rescan").write_text("")
    if mode is not None:
        sec = tree.root / "kernel" / "security"
        sec.mkdir(parents=True, exist_ok=True)
        modes = ["none", "integrity", "confidentiality"]
        (sec / "lockdown").write_text(" ".join(f"[{m}]" if m == mode else m for m in modes)
                                      + "\n")
    return tree


# remove + rescan is never a default (it may move a resource); these tests ask for it.
RESCAN_TOO = parse_policy('fallback = ["reset", "rescan", "skip"]\n')


def locked_q35(tmp: Path, *, firmware_less: bool = False, **kw: Any) -> SysfsTree:
    tree = firmware_less_tree(tmp) if firmware_less else capture_tree(tmp, **kw)
    return as_real_sysfs(tree)


def fallbacks(plan: Any) -> dict[str, tuple[str, str | None]]:
    """addr -> (what the plan does for the device, reset method); "nothing"/"skip" when no
    fallback was needed."""
    out: dict[str, tuple[str, str | None]] = {}
    for d in plan.devices:
        if d.fallback is None:
            out[d.addr] = (d.status, None)
        else:
            out[d.addr] = (d.fallback.instead, d.fallback.method)
    return out


def cc(env: Environment) -> Check:
    assert env.config_check is not None
    return env.config_check


def bc(env: Environment) -> Check:
    assert env.bar_check is not None
    return env.bar_check


# --- detection --------------------------------------------------------------------------------

def test_lockdown_mode_is_read_from_securityfs(tmp_path: Path) -> None:
    assert parse_lockdown("none [integrity] confidentiality\n") == "integrity"
    assert parse_lockdown("[none] integrity confidentiality") == "none"
    assert parse_lockdown("") is None
    tree = capture_tree(tmp_path)
    env = probe(tree.root)
    assert env.lockdown is None and env.config_writes_permitted is None
    assert any("lockdown mode unknown" in n for n in env.notes)
    (tree.root / "kernel" / "security").mkdir(parents=True)
    env = probe(tree.root)
    assert any("securityfs is not mounted" in n for n in env.notes)
    for mode, locked in (("none", False), ("integrity", True), ("confidentiality", True)):
        as_real_sysfs(tree, mode)
        env = probe(tree.root)
        assert env.lockdown == mode and env.locked is locked
        assert env.config_writes_permitted is (False if locked else None)
        assert env.bars_mappable is (False if locked else None)
        assert env.reset_permitted is True


class Counting(ConfigSpace):
    writes: ClassVar[list[tuple[str, int, int, int]]] = []

    def write(self, offset: int, width: int, value: int) -> None:
        Counting.writes.append((self.path.parent.name, offset, width, value))
        super().write(offset, width, value)


def test_write_probe_writes_back_interrupt_line_of_one_device(tmp_path: Path) -> None:
    tree = as_real_sysfs(capture_tree(tmp_path), "none")
    before = digest(tree.root)
    Counting.writes = []
    env = probe(tree.root, probe_writes=True, config_factory=Counting)
    assert env.config_writes_permitted is True
    c = env.config_check
    assert c is not None and (c.how, c.device) == ("probed", HOST)  # the first unbound one
    line = (tree.device_dir(HOST) / "config").read_bytes()[0x3C]
    assert Counting.writes == [(HOST, 0x3C, 1, line)]  # one device, one byte, same value
    assert digest(tree.root) == before
    assert c.detail == f"Interrupt Line (0x3c) of {HOST} written back as {line:#04x}: written " \
                       "and read back"


class Eacces(ConfigSpace):
    def write(self, offset: int, width: int, value: int) -> None:
        raise ConfigAccessError(f"{self.path}: cannot open for writing: Permission denied",
                                errno_=errno.EACCES, offset=offset)


class Ignoring(ConfigSpace):
    def write(self, offset: int, width: int, value: int) -> None:
        return


class OddReadBack(ConfigSpace):
    def read(self, offset: int, width: int) -> int:
        v = super().read(offset, width)
        return v ^ 1 if offset == 0x3C else v


def test_write_probe_judges_by_errno_and_read_back(tmp_path: Path) -> None:
    """EPERM is lockdown (or another LSM); EACCES is not root; a write that does not take
    is neither. The lockdown file is absent here: the probe alone decides."""
    tree = as_real_sysfs(capture_tree(tmp_path), None)
    env = probe(tree.root, probe_writes=True, config_factory=EpermConfig)
    assert (env.config_writes_permitted, cc(env).errno) == (False, "EPERM")
    assert "EPERM (kernel lockdown, or another security module)" in cc(env).detail
    assert env.bars_mappable is False and bc(env).how == "inferred"
    assert env.config_refusal() == ("the kernel refuses config writes (Interrupt Line (0x3c) "
                                    f"of {HOST} written back as 0x00: EPERM (kernel lockdown, "
                                    "or another security module))")
    env = probe(tree.root, probe_writes=True, config_factory=Eacces)
    assert env.config_writes_permitted is None and "not root?" in cc(env).detail
    assert env.bars_mappable is None
    env = probe(tree.root, probe_writes=True, config_factory=OddReadBack)
    assert env.config_writes_permitted is None
    assert cc(env).detail.endswith(": read back 0x00: the write did not take, for a "
                                            "reason other than a refusal")


def _raising_mmap(code: int) -> Any:
    def mm(*a: Any, **k: Any) -> Any:
        raise OSError(code, os.strerror(code))
    return mm


def test_bar_probe_tells_lockdown_from_a_claimed_bar(tmp_path: Path) -> None:
    tree = as_real_sysfs(capture_tree(tmp_path), "none")
    B.add_bar(tree.root, NVME, 0, 0x4000)
    B.add_bar(tree.root, VNET, 4, 0x4000)
    B.add_bar(tree.root, E1000, 0, 0x20000)
    B.add_bar(tree.root, PORT1, 0, 0x1000)  # bound to pcieport: never a candidate
    before = B.digests(tree.root)
    env = probe(tree.root, probe_bars=True)
    assert env.bars_mappable is True and bc(env).device == NVME  # smallest, unbound
    assert B.digests(tree.root) == before
    env = probe(tree.root, probe_bars=True, mmap_fn=_raising_mmap(errno.EPERM))
    assert (env.bars_mappable, bc(env).errno) == (False, "EPERM")
    assert "EPERM (kernel lockdown)" in bc(env).detail
    env = probe(tree.root, probe_bars=True, mmap_fn=_raising_mmap(errno.EINVAL))
    assert env.bars_mappable is None  # a driver's claim says nothing of lockdown
    assert bc(env).detail.count("EINVAL (claimed by a driver, not lockdown)") == 3
    as_real_sysfs(tree, "integrity")

    def tripwire(*a: Any, **k: Any) -> Any:
        raise AssertionError("under lockdown the kernel is not asked")

    env = probe(tree.root, probe_bars=True, mmap_fn=tripwire)
    assert env.bars_mappable is False and bc(env).how == "inferred"


def test_reset_capabilities_per_device(tmp_path: Path) -> None:
    tree = as_real_sysfs(capture_tree(tmp_path, reset_methods={VBLK: "pm"}))
    (tree.device_dir(VNET) / "reset").unlink()  # reset_method but no reset: no reset
    (tree.device_dir(VBLK2) / "reset_method").unlink()  # a kernel before 5.15
    env = probe(tree.root)
    caps = env.devices
    assert caps[NVME].resets == ("flr", "bus") and caps[NVME].remove
    assert caps[VBLK].resets == ("pm",)
    assert caps[VNET].resets == () and "no `reset` attribute" in (caps[VNET].reset_problem() or "")
    assert caps[VBLK2].resets == ("default",)
    assert caps[E1000].resets == () and caps[PORTS[0]].driver == "pcieport"
    assert env.rescan is True


def test_describe_for_status(tmp_path: Path) -> None:
    tree = as_real_sysfs(capture_tree(tmp_path))
    env = probe(tree.root)
    d = describe(env)
    assert json.loads(json.dumps(d)) == d
    assert d["lockdown"] == "integrity"
    assert d["config_writes"] == {"permitted": False, "how": "inferred", "detail":
                                  "lockdown integrity refuses them (pci_write_config(): "
                                  "LOCKDOWN_PCI_ACCESS)"}
    assert d["bar_mapping"]["permitted"] is False
    assert d["reset"] == {"permitted": True, "devices": 4}
    assert d["rescan"] == {"available": True}
    assert d["devices"][NVME] == {"reset_methods": ["flr", "bus"], "reset": True,
                                  "remove": True, "driver": None}
    text = describe_text(env).splitlines()
    assert text[0] == "lockdown        integrity"
    assert text[1].startswith("config writes   REFUSED (inferred: lockdown integrity")
    assert text[2].startswith("BAR mapping     REFUSED (inferred: lockdown integrity")
    assert text[3] == ("sysfs reset     4 of 13 device(s): 01:00.0 flr,bus; 02:00.0 "
                       "flr,pm,bus; 03:00.0 flr,pm,bus; 04:00.0 flr,pm,bus")
    assert text[4] == "remove+rescan   available"


# --- the fallback plan for each device kind of the real dumps ---------------------------------

def test_q35_default_policy_under_lockdown(tmp_path: Path) -> None:
    tree = locked_q35(tmp_path, firmware_less=True)
    env = probe(tree.root)
    plan, _ = plan_for(tmp_path, tree=tree, env=env, registry=PLUGINS)
    got = fallbacks(plan)
    assert got == {
        HOST: ("skip", None), LPC: ("skip", None), SMBUS: ("skip", None),
        PORT1: ("skip", None),  # lost bus numbers and windows: writes refused, a bridge
        PORTS[1]: ("nothing", None), PORTS[2]: ("nothing", None), PORTS[3]: ("nothing", None),
        # no sysfs reset (measured): left in place, Bus Master off through enable 1, 0
        AHCI: ("skip", None), E1000: ("skip", None),
        NVME: ("reset", "flr"), VNET: ("reset", "flr"),
        VBLK: ("reset", "flr"), VBLK2: ("reset", "flr"),  # plugin steps refused
    }
    port = dev(plan, PORT1)
    assert port.status == "refused" and port.fallback.chain == ("skip",)
    assert port.fallback.why == f"left as it is (default for bridges: {BRIDGE_WHY})"
    e = dev(plan, E1000).fallback
    assert e.refused == [("1 config write(s): kernel lockdown (integrity) refuses config "
                          "writes"),
                         "1 plugin step(s) (e1000:mask-and-stop): BAR mapping refused"]
    assert e.passed == [("reset: no sysfs reset: the kernel has no reset method for this "
                         "function (no `reset` attribute)")]
    assert e.chain == ("reset", "skip") and e.also == ["disable"]
    assert e.permitted == ["Bus Master off (sysfs enable 1, 0)", "remove + rescan",
                           "config reads"]
    n = dev(plan, NVME).fallback
    assert RESET_NO_BARS in n.why  # its lost BAR0 is not brought back by a reset
    # (root port 1 lost its bus numbers in this tree, so the NVMe sits on the root bus: no
    # "bus" reset)
    assert n.permitted == ["sysfs reset (flr)", "Bus Master off (sysfs enable 1, 0)",
                           "remove + rescan", "config reads"]
    assert all(o.status == "refused" and "kernel lockdown (integrity) refuses BAR mapping"
               in (o.result or "") for d in plan.devices for o in d.plugin_ops)


def test_q35_every_kind_when_everything_is_to_be_quiesced(tmp_path: Path) -> None:
    """With a quiesce wanted of every function, each kind's default chain decides."""
    tree = locked_q35(tmp_path)
    plan, _ = plan_for(tmp_path, tree=tree, env=probe(tree.root),
                       policy=parse_policy('default = "quiesce"\n'))
    assert fallbacks(plan) == {
        HOST: ("skip", None),  # host bridge: chipset, left alone
        # bridges: pcieport is bound, so nothing is turned off under it; no write is
        # planned, none refused, no fallback needed
        **{p: ("nothing", None) for p in PORTS},
        E1000: ("skip", None),  # no reset: Bus Master off (enable 1, 0), never removed
        LPC: ("skip", None),  # ISA bridge
        AHCI: ("skip", None),  # storage without a reset: the same
        SMBUS: ("skip", None),  # other, no reset; a rescan would not stop it
        NVME: ("reset", "flr"), VNET: ("reset", "flr"), VBLK: ("reset", "flr"),
        VBLK2: ("reset", "flr"),
    }
    sm = dev(plan, SMBUS).fallback
    assert sm.chain == ("reset", "skip") and sm.passed[0].startswith("reset: no sysfs reset")
    assert "default for host, ISA and other chipset bridges" in dev(plan, HOST).fallback.why


@pytest.mark.parametrize("bound", [False, True])
def test_firecracker_virtio_devices(tmp_path: Path, bound: bool) -> None:
    saved = saved_devices(tmp_path, F.FIRECRACKER)
    drivers = None if bound else {a: None for a in FC.values()}
    tree = as_real_sysfs(capture_tree(tmp_path, F.FIRECRACKER, drivers=drivers))
    plan, _ = plan_for(tmp_path, saved=saved, tree=tree, env=probe(tree.root),
                       registry=PLUGINS)
    got = fallbacks(plan)
    # no reset on bus 0: every function is left in place (bound or not)
    assert got == {a: ("skip", None) for a in FC.values()}
    fb = dev(plan, FC["net"]).fallback
    assert fb.passed[0].startswith("reset: no sysfs reset")
    # unbound: its Bus Master clear was refused, so the kernel's enable 1, 0 does it
    assert fb.also == ([] if bound else ["disable"])
    if bound:
        # no quiesce write is planned under a bound driver, so none is refused and no
        # Bus Master fallback is looked for (issue 12: nothing off under a bound driver)
        assert not [p for p in fb.passed if p.startswith("Bus Master off")]
        assert [s.why for s in dev(plan, FC["net"]).steps] == [
            ("virtio-pci is bound in the capture kernel: nothing is turned off under it "
            "(quiesce is for unbound functions)")]
    assert all(d.fallback is not None and d.fallback.chain == ("reset", "skip")
               for d in plan.devices if d.addr in (FC["balloon"], FC["vsock"], FC["rng"]))


# --- policy ------------------------------------------------------------------------------------

def test_fallback_policy_keys(tmp_path: Path) -> None:
    tree = locked_q35(tmp_path, firmware_less=True)
    env = probe(tree.root)
    pol = parse_policy('fallback = ["rescan", "skip"]\n'
                       '[[rule]]\ndriver = "nvme"\naction = "restore-early"\n'
                       'fallback = ["rescan", "reset"]\n')
    plan, _ = plan_for(tmp_path, tree=tree, env=env, policy=pol, registry=PLUGINS)
    n = dev(plan, NVME).fallback
    assert (n.instead, n.chain, n.chain_from) == ("rescan", ("rescan", "reset"), "rule 1 (line 2)")
    assert dev(plan, VNET).fallback.instead == "rescan"  # top-level list
    assert dev(plan, PORT1).fallback.chain == ("skip",)  # never the top-level list for bridges
    pol = parse_policy('[[rule]]\naddress = "00:01.0"\naction = "restore-early"\n'
                       'fallback = ["rescan"]\n')
    plan, _ = plan_for(tmp_path, tree=tree, env=env, policy=pol)
    fb = dev(plan, PORT1).fallback  # asked for by name, but pcieport is bound to it
    assert fb.instead == "none" and fb.passed[0].startswith("rescan: pcieport is bound")
    assert fb.why == "no fallback in the chain can run here; the device is left as it is"
    env.devices[PORT1].driver = None
    plan, _ = plan_for(tmp_path, tree=tree, env=env, policy=pol)
    assert dev(plan, PORT1).fallback.instead == "rescan"  # unbound, and asked for by name
    for text, words in (('fallback = ["reboot"]\n', "unknown fallback 'reboot'"),
                        ('fallback = ["skip", "reset"]\n', "'skip' always succeeds"),
                        ('fallback = ["reset", "reset"]\n', "each fallback may appear once"),
                        ('fallback = []\n', "expected a non-empty list"),
                        ('[[rule]]\nclass = "01"\naction = "skip"\nfallback = "reset"\n',
                         "expected a non-empty list")):
        with pytest.raises(UsageError, match=words):
            parse_policy(text, "p.toml")


# --- applying under lockdown ------------------------------------------------------------------

def test_apply_resets_and_rescans_and_writes_no_config(tmp_path: Path) -> None:
    tree = locked_q35(tmp_path, firmware_less=True)
    env = probe(tree.root)
    plan, _ = plan_for(tmp_path, tree=tree, env=env, registry=PLUGINS, policy=RESCAN_TOO)
    configs = {a: (tree.device_dir(a) / "config").read_bytes() for a in tree.pci_addresses()}

    def never(d: Any, writable: bool) -> Any:
        raise AssertionError("under lockdown no BAR is opened")

    access = F.kernel_like_access()(tree, EpermConfig)
    apply(plan, access, sleep=lambda s: None, plugins=PluginRuntime(tree=tree, bars_for=never))
    off = {a for a, what, v in access.log if what == "enable" and v == "0"}
    # Only where a Bus Master clear was refused: the NIC-like devices whose policy quiesces
    # them, and the unbound storage endpoints still bus-mastering (the virtio-blk pair and
    # the AHCI; this nvme lost Bus Master with the rest of its state), whose action runs too.
    assert off == {VNET, E1000, VBLK, VBLK2, AHCI}
    for a, before in configs.items():  # no config write got through; the kernel's own
        after = (tree.device_dir(a) / "config").read_bytes()  # disable cleared Bus Master
        want = bytearray(before)
        if a in off:  # enable 1 cleared INTx Disable, enable 0 Bus Master (measured)
            want[4] &= ~0x04
            want[5] &= ~0x04
        assert after == bytes(want), a
    assert [x for x in access.log if x[1] != "enable"] == [
        (NVME, "reset_method", "flr"), (NVME, "reset", "1"), (NVME, "reset_method", "flr"),
        (VNET, "reset_method", "flr"), (VNET, "reset", "1"),
        (VNET, "reset_method", "flr pm bus"),
        (VBLK, "reset_method", "flr"), (VBLK, "reset", "1"),
        (VBLK, "reset_method", "flr pm bus"),
        (VBLK2, "reset_method", "flr"), (VBLK2, "reset", "1"),
        (VBLK2, "reset_method", "flr pm bus"),
        (AHCI, "remove", "1"), (E1000, "remove", "1"), ("", "bus/pci/rescan", "1")]
    assert (tree.device_dir(E1000) / "remove").read_text() == "1"
    assert (tree.root / "bus" / "pci" / "rescan").read_text() == "1"
    doc = report.build(plan)
    e = next(d for d in doc["devices"] if d["addr"] == E1000)
    assert (e["outcome"], e["wanted"], e["instead"]) == ("partial", "quiesce",
                                                        "rescan + disable")
    assert e["permitted"] == ["Bus Master off (sysfs enable 1, 0)", "remove + rescan",
                              "config reads"]
    # every side effect is an operation with its before and after (issue 12)
    assert e["ops"][1:] == [
        "enable 1,0 (instead) COMMAND=0x0107 -> COMMAND=0x0103",
        "remove+rescan (instead) BAR0=0xfe240000 BAR1=0xc000 -> BAR0=0xfe240000 BAR1=0xc000"]
    nv = next(d for d in doc["devices"] if d["addr"] == NVME)
    assert (nv["outcome"], nv["instead"]) == ("partial", "reset flr")  # no Bus Master left on
    p = next(d for d in doc["devices"] if d["addr"] == PORT1)
    assert (p["outcome"], p["instead"]) == ("refused", "skip")
    t = doc["totals"]
    # root port 1 and nvme: COMMAND (SERR#; their bus numbers, windows and BAR0 are the
    # kernel's: reported, not planned); e1000, virtio-net, both virtio-blk and the AHCI:
    # the Bus Master clear each, which the kernel did for us instead (sysfs enable 1, 0
    # cleared their Bus Master: applied, verified by read-back). The three restored
    # endpoints' COMMAND then differs from the saved one: kernel-owned, reported.
    assert t["registers_applied"] == 5 and t["registers_planned"] == 7
    assert t["disables"] == 5 and t["kernel_owned"] == 12
    assert (t["restored_fully"], t["restored_partially"], t["not_restored"]) == (0, 6, 1)
    assert (t["fallbacks"], t["resets"], t["rescans"]) == (6, 4, 2)
    # Every step that needs a BAR is refused; msix's save reads only config space and runs.
    saves = [o for d in plan.devices for o in d.plugin_ops if o.label == "msix:record-table"]
    assert t["plugin_ok"] == len(saves) == 4 and all(o.status == "ok" for o in saves)
    assert t["plugin_refused"] == t["plugin_steps"] - 4 > 0
    text = report.summary(doc)
    assert f"  {E1000}  8086:100e  quiesce        partial" in text
    assert ("wanted quiesce; the kernel permits Bus Master off (sysfs enable 1, 0), "
            "remove + rescan, config reads; instead: rescan + disable") in text
    assert "applied: 5 of 7 config register(s)" in text
    assert "devices restored fully 0, partially 6, not 1; 6 fallback(s)" in text
    assert report.failed(doc)


class KernelLike(SysfsAccess):
    """remove and rescan as the kernel does them: the device leaves bus/pci/devices, and the
    rescan brings it back (or, with ``comes_back`` False, does not)."""

    def __init__(self, tree: SysfsTree, comes_back: bool = True) -> None:
        super().__init__(tree, EpermConfig)
        self.comes_back = comes_back
        self.gone: dict[str, str] = {}

    def remove(self, addr: str) -> None:
        super().remove(addr)
        link = self.tree.device_dir(addr)
        self.gone[addr] = os.readlink(link)
        link.unlink()

    def rescan(self) -> None:
        super().rescan()
        if self.comes_back:
            for addr, target in self.gone.items():
                self.tree.device_dir(addr).symlink_to(target)


@pytest.mark.parametrize("comes_back", [True, False])
def test_rescan_checks_that_the_device_reappears(tmp_path: Path, comes_back: bool) -> None:
    tree = locked_q35(tmp_path)
    plan, _ = plan_for(tmp_path, tree=tree, env=probe(tree.root), policy=RESCAN_TOO)
    sleeps: list[float] = []
    apply(plan, KernelLike(tree, comes_back), sleep=sleeps.append)
    (s,) = [s for s in dev(plan, E1000).steps if s.op == DO_RESCAN]
    if comes_back:
        assert s.status == "done"
        assert s.result == "removed and rescanned: the device is back as itself"
        assert not sleeps
    else:
        assert s.status == "unverified"
        assert s.result == "removed and rescanned, but it did not reappear after the rescan"
        # polled for RESCAN_WAIT_S for each removed device (the e1000 and the AHCI), then
        # reported
        assert sum(sleeps) == pytest.approx(4.0)
        assert dev(plan, E1000).outcome == "failed"


def test_remove_and_rescan_never_leave_the_tree(tmp_path: Path) -> None:
    tree = locked_q35(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "rescan").write_text("untouched")
    rescan = tree.root / "bus" / "pci" / "rescan"
    rescan.unlink()
    rescan.symlink_to(outside / "rescan")
    access = SysfsAccess(tree)
    with pytest.raises(OutsideTree, match="outside the sysfs tree"):
        access.rescan()
    with pytest.raises(OutsideTree, match="not a PCI address"):
        access.remove("../../..")
    with pytest.raises(OutsideTree, match="not something restore does"):
        access.write_attr(E1000, "remove", "1")  # only through remove(), which checks
    plan, _ = plan_for(tmp_path, tree=tree, env=probe(tree.root), policy=RESCAN_TOO)
    apply(plan, SysfsAccess(tree, EpermConfig), sleep=lambda s: None)
    assert (outside / "rescan").read_text() == "untouched"
    (s,) = [s for s in dev(plan, E1000).steps if s.op == DO_RESCAN]
    assert s.status == "unverified" and "the rescan failed" in s.result
    assert "outside the sysfs tree" in s.result


def test_remove_without_a_remove_file_is_refused_not_created(tmp_path: Path) -> None:
    tree = locked_q35(tmp_path)
    env = probe(tree.root)
    env.devices[E1000].remove = True  # the probe saw it; it is gone when the engine runs
    (tree.device_dir(E1000) / "remove").unlink()
    plan, _ = plan_for(tmp_path, tree=tree, env=env, policy=RESCAN_TOO)
    apply(plan, SysfsAccess(tree, EpermConfig), sleep=lambda s: None)
    (s,) = [s for s in dev(plan, E1000).steps if s.op == DO_RESCAN]
    assert s.status == "refused" and "cannot open for writing" in s.result
    assert not (tree.device_dir(E1000) / "remove").exists()


def test_a_kernel_without_reset_method_still_resets(tmp_path: Path) -> None:
    tree = locked_q35(tmp_path)
    (tree.device_dir(VNET) / "reset_method").unlink()  # before 5.15: `reset` only
    env = probe(tree.root)
    plan, _ = plan_for(tmp_path, tree=tree, env=env)
    (r,) = [s for s in dev(plan, VNET).steps if s.op == DO_RESET]
    assert r.method is None and r.instead
    access = SysfsAccess(tree, EpermConfig)
    apply(plan, access, sleep=lambda s: None)
    assert [x for x in access.log if x[0] == VNET and x[1] != "enable"] == [(VNET, "reset", "1")]


def test_without_lockdown_nothing_falls_back(tmp_path: Path) -> None:
    tree = as_real_sysfs(capture_tree(tmp_path), "none")
    plan, _ = plan_for(tmp_path, tree=tree, env=probe(tree.root, probe_writes=True))
    assert all(d.fallback is None for d in plan.devices)
    assert not [s for d in plan.devices for s in d.steps if s.op == REFUSE]


# --- the CLI ---------------------------------------------------------------------------------

def test_cli_dry_run_under_lockdown_says_wanted_permitted_instead(tmp_path: Path) -> None:
    rec = tmp_path / "record.bin"
    rec.write_bytes(record_of(saved_devices(tmp_path)))
    tree = locked_q35(tmp_path)
    before = digest(tree.root)
    args = ["restore", "--record", str(rec), "--sysfs-root", str(tree.root), "--proc-root",
            str(proc_dir(tmp_path)), "--dry-run"]
    out, err, rc = run_cli(args)
    assert rc == EXIT_INVALID, err  # not everything the record holds can be applied
    assert digest(tree.root) == before
    assert "config writes   REFUSED (inferred: lockdown integrity refuses them" in out
    block = out[out.index(f"{E1000}  8086:100e"):]
    block = block[:block.index("\n\n")]
    assert "  wanted:   quiesce" in block
    assert "  refused:  1 config write(s): kernel lockdown (integrity) refuses config writes" \
        in block
    assert ("  permits:  Bus Master off (sysfs enable 1, 0), remove + rescan, config reads"
            in block)
    assert "  instead:  skip + disable, by default for endpoints [reset, skip]" in block
    assert "  passed:   reset: no sysfs reset" in block
    assert "remove + rescan" not in block.split("permits:")[1].split("\n", 1)[1]
    out, err, rc = run_cli(args + ["--json"])
    doc = json.loads(out)
    e = next(d for d in doc["plan"]["devices"] if d["addr"] == E1000)
    assert e["fallback"]["instead"] == "skip" and e["fallback"]["wanted"] == "quiesce"
    assert doc["plan"]["environment"]["config_writes"]["how"] == "inferred"
    r = next(d for d in doc["report"]["devices"] if d["addr"] == NVME)
    assert r["instead"] == "reset flr + disable" and r["outcome"] == "planned"
    assert digest(tree.root) == before


def test_cli_probe_in_a_dry_run_writes_back_the_same_byte(tmp_path: Path) -> None:
    rec = tmp_path / "record.bin"
    rec.write_bytes(record_of(saved_devices(tmp_path)))
    tree = as_real_sysfs(capture_tree(tmp_path), "none")
    before = digest(tree.root)
    out, err, rc = run_cli(["restore", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc_dir(tmp_path)), "--dry-run", "--probe",
                            "--no-plugins"])
    assert rc == EXIT_OK, err
    assert "config writes   permitted (probed: Interrupt Line (0x3c) of 0000:00:00.0" in out
    assert digest(tree.root) == before


def test_cli_restore_under_lockdown_exits_1_with_the_fallbacks_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole command, with every config write refused the way the kernel refuses it
    (EPERM from pwrite, lockdown-measured.md row 2b): the probe sees it, the plan falls
    back, the resets and the rescan are done, and the exit status says not everything was."""
    def eperm(self: ConfigSpace, offset: int, width: int, value: int) -> None:
        raise ConfigAccessError(f"{self.path}: write refused: Operation not permitted",
                                errno_=errno.EPERM, offset=offset)

    monkeypatch.setattr(ConfigSpace, "write", eperm)
    rec = tmp_path / "record.bin"
    rec.write_bytes(record_of(saved_devices(tmp_path)))
    tree = locked_q35(tmp_path)
    rep = tmp_path / "report.json"
    monkeypatch.setattr("handoff.restore.apply.SysfsAccess", F.kernel_like_access())
    out, err, rc = run_cli(["restore", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc_dir(tmp_path)), "--report", str(rep)])
    assert rc == EXIT_INVALID, err
    doc = json.loads(rep.read_bytes())
    env = doc["environment"]
    assert env["config_writes_permitted"] is False and env["bars_mappable"] is False
    assert env["config_check"].startswith(f"probed: Interrupt Line (0x3c) of {HOST}")
    assert env["bar_check"].startswith("inferred: lockdown integrity")
    got = {d["addr"]: (d["outcome"], d.get("instead")) for d in doc["devices"]}
    assert got[E1000] == ("partial", "skip + disable")
    # the refused Bus Master clear is done by the kernel's disable (enable 1, 0) instead
    assert got[NVME] == got[VBLK] == ("partial", "reset flr + disable")
    # the default removes nothing: no resource can move (docs/lockdown.md, "Defaults")
    assert (tree.root / "bus" / "pci" / "rescan").read_text() != "1"
    assert all((tree.device_dir(a) / "remove").read_text() != "1"
               for a in tree.pci_addresses() if (tree.device_dir(a) / "remove").exists())
    assert (tree.device_dir(NVME) / "reset").read_text() == "1"
    assert "instead: skip + disable" in out
