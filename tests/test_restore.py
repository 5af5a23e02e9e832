"""Applying restore plans to fake sysfs trees: exact writes, read-back, refusals, reset, CLI.

Every write goes to a tree in a temp dir; the real /sys is never written (the one test that
points the CLI at /sys replaces the engine with a tripwire first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import fakesysfs as F
from helpers.restore import (
    BOOT,
    E1000,
    IDENT,
    NVME,
    PORT1,
    RELEASE,
    VBLK,
    VNET,
    EpermConfig,
    capture_tree,
    cli_setup,
    config_rel,
    dev,
    digest,
    expected_after,
    firmware_less_tree,
    fixture,
    get,
    parsed,
    plan_for,
    proc_dir,
    put,
    record_of,
    run_cli,
    saved_devices,
    tree_state,
    writes,
)

from handoff.errors import EXIT_ENVIRONMENT, EXIT_INVALID, EXIT_NO_RECORD, EXIT_OK, EXIT_USAGE
from handoff.restore import report
from handoff.restore.apply import OutsideTree, SysfsAccess, apply, scan
from handoff.restore.plan import DO_RESCAN, REFUSE, WRITE, make_plan
from handoff.restore.policy import parse_policy
from handoff.sysfs import ConfigSpace, SysfsTree
from handoff.sysfs.probe import parse_lockdown, probe

# --- the QEMU before/after pair: exactly the planned writes --------------------------------

@pytest.mark.parametrize("policy,n_writes", [("", 6), ('default = "restore-live"\n', 6),
                                             ('default = "restore-early"\n', 6)])
def test_qemu_pair_exact_writes(tmp_path: Path, policy: str, n_writes: int) -> None:
    plan, tree = plan_for(tmp_path, policy=parse_policy(policy))
    before = tree_state(tree.root)
    access = SysfsAccess(tree)
    apply(plan, access, sleep=lambda s: None)
    after = tree_state(tree.root)
    assert after == expected_after(before, tree, plan)
    assert len(writes(plan)) == n_writes
    assert access.log == [(a, f"config@{o:#x}/{w}", f"{v:#0{2 + 2 * w}x}")
                          for a, _, o, w, v in writes(plan)]
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {config_rel(tree, a) for a, *_ in writes(plan)}
    # MSI-X Enable stays cleared on every MSI-X endpoint, whatever the policy.
    for addr, off in ((NVME, 0x43), (VNET, 0xDF), (VBLK, 0xDF)):
        assert after[config_rel(tree, addr)][off] & 0x80 == 0
    assert all(s.status == "verified" for _, s in plan.ordered() if s.op == WRITE)
    doc = report.build(plan)
    assert doc["totals"]["verified"] == n_writes and not report.failed(doc)
    if not policy:  # the record's own actions
        e = next(d for d in doc["devices"] if d["addr"] == E1000)
        assert e == {"addr": E1000, "ids": "8086:100e", "action": "quiesce", "by": "record",
                     "outcome": "done", "ops": ["COMMAND=0x0503"]}
        assert f"  {E1000}  8086:100e  quiesce        done      COMMAND=0x0503" in \
            report.summary(doc)


def test_lost_bars_and_windows_are_left_to_the_kernel_by_default(tmp_path: Path) -> None:
    plan, tree = plan_for(tmp_path, tree=firmware_less_tree(tmp_path))
    before = tree_state(tree.root)
    apply(plan, SysfsAccess(tree), sleep=lambda s: None)
    after = tree_state(tree.root)
    assert after == expected_after(before, tree, plan)
    port, nvme = after[config_rel(tree, PORT1)], after[config_rel(tree, NVME)]
    for off, w in ((0x18, 4), (0x1C, 2), (0x20, 4), (0x24, 4)):
        assert get(port, off, w) == get(before[config_rel(tree, PORT1)], off, w), hex(off)
    assert get(nvme, 0x10, 8) == get(before[config_rel(tree, NVME)], 0x10, 8)
    assert get(port, 4, 2) == 0x0507 and get(nvme, 4, 2) == 0x0503  # SERR# only
    doc = report.build(plan)
    # bus numbers, 3 windows, BAR0, the Bus Master (off now, on when saved) of the nvme and
    # of the three restored endpoints it was cleared on (AHCI, both virtio-blk functions),
    # and MSI-X Enable (on when saved) of the nvme and both virtio-blk functions
    assert doc["totals"]["kernel_owned"] == 12
    nv = next(d for d in doc["devices"] if d["addr"] == NVME)
    assert nv["kernel_owns"] == ["BAR0", "COMMAND", "MSI-X Message Control"]


def test_kernel_owned_rescan_hands_lost_bars_to_the_kernel(tmp_path: Path) -> None:
    """kernel_owned = "rescan": the saved BAR is written with decoding off, the nvme removed
    and the bus rescanned, and the kernel's resource then starts where the BAR does. The
    bound root port is refused: nothing is changed under pcieport."""
    pol = parse_policy('kernel_owned = "rescan"\n[[rule]]\naddress = "0000:00:01.0"\n'
                       'action = "restore-early"\nkernel_owned = "rescan"\n')
    plan, tree = plan_for(tmp_path, tree=firmware_less_tree(tmp_path), policy=pol)
    F.add_remove_files(tree.root)
    access = F.kernel_like_access()(tree)
    apply(plan, access, sleep=lambda s: None)
    nvme = (tree.device_dir(NVME) / "config").read_bytes()
    assert get(nvme, 0x10, 8) == get(fixture(NVME), 0x10, 8)
    assert tree.resources(NVME)[0].start == get(nvme, 0x10, 4) & ~0xF
    assert get(nvme, 4, 2) & 0x7 == 0  # decoding stays off: the driver's enable turns it on
    (rs,) = [s for s in dev(plan, NVME).steps if s.op == DO_RESCAN]
    assert (rs.status, rs.before, rs.after) == ("verified", "BAR0=0x0",
                                                f"BAR0={get(fixture(NVME), 0x10, 4) & ~0xF:#x}")
    assert [x[1] for x in access.log if x[0] == NVME] == [
        "config@0x4/2", "config@0x10/4", "remove", "config@0x4/2"]
    (refused,) = [s for s in dev(plan, PORT1).steps if s.op == REFUSE and s.resource]
    assert "pcieport is bound in the capture kernel" in refused.why
    assert dev(plan, NVME).outcome == "done"
    (doc,) = [d for d in report.build(plan)["devices"] if d["addr"] == NVME]
    (op,) = [o for o in doc["ops"] if o.startswith("remove+rescan")]
    assert op == (f"remove+rescan BAR0=0x0 -> {rs.after}: removed and rescanned: the device "
                  "is back as itself, the kernel read the state again, and every BAR equals "
                  "its resource start")


# --- refusals: never a crash, never a write to the wrong device ------------------------

def test_eperm_is_refused_and_reported(tmp_path: Path) -> None:
    plan, tree = plan_for(tmp_path, tree=firmware_less_tree(tmp_path))
    before = digest(tree.root)
    apply(plan, SysfsAccess(tree, EpermConfig), sleep=lambda s: None)
    assert digest(tree.root) == before
    attempted = [s for _, s in plan.ordered() if s.op == WRITE]
    assert attempted and all(s.status == "refused" for s in attempted)
    assert "EPERM" in attempted[0].result and "lockdown" in attempted[0].result
    assert all("not attempted" in s.result for s in attempted[1:])
    assert plan.env.config_writes_permitted is False
    doc = report.build(plan)
    assert report.failed(doc) and doc["environment"]["config_writes_permitted"] is False
    assert doc["totals"]["refused"] == len({d.addr for d, s in plan.ordered() if s.op == WRITE})
    assert doc["totals"]["verified"] == 0


class StuckBars(ConfigSpace):
    """A device whose BARs ignore writes."""

    def write(self, offset: int, width: int, value: int) -> None:
        if 0x10 <= offset < 0x28:
            return
        super().write(offset, width, value)


def test_bar_read_back_retries_then_stops_the_device(tmp_path: Path) -> None:
    pol = parse_policy('kernel_owned = "rescan"\n')
    plan, tree = plan_for(tmp_path, tree=firmware_less_tree(tmp_path), policy=pol)
    F.add_remove_files(tree.root)
    sleeps: list[float] = []
    apply(plan, F.kernel_like_access()(tree, StuckBars), sleep=sleeps.append)
    d = next(d for d in plan.devices if d.addr == NVME)
    steps = [s for s in d.steps if s.acts and s.phase == "rescan"] + [
        s for s in d.steps if s.acts and s.phase == "restore"]  # the order they run in
    assert [(s.reg, s.status) for s in steps] == [
        ("COMMAND", "verified"), ("BAR0", "unverified"), ("remove + rescan", "refused"),
        ("COMMAND", "refused")]
    assert "after 11 write(s)" in steps[1].result  # 1 + 10 retries
    assert sleeps.count(0.001) == 10
    assert "not attempted" in steps[2].result and "not attempted" in steps[3].result
    assert d.outcome == "failed"
    now = (tree.device_dir(NVME) / "config").read_bytes()
    assert get(now, 4, 2) == 0x0400  # decoding stayed off, and the device was not removed
    assert (tree.device_dir(NVME) / "remove").exists() and not (
        tree.device_dir(NVME) / "remove").read_bytes()


def test_all_ones_device_is_refused(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path, config_override={E1000: b"\xff" * 256})
    plan, _ = plan_for(tmp_path, tree=tree)
    before = digest(tree.root)
    apply(plan, SysfsAccess(tree))
    d = next(d for d in plan.devices if d.addr == E1000)
    assert d.outcome == "refused" and "all-ones" in d.why
    assert digest(tree.root) != before  # virtio-net was still quiesced ...
    assert (tree.device_dir(E1000) / "config").read_bytes() == b"\xff" * 256  # ... not this


def test_device_gone_between_plan_and_apply(tmp_path: Path) -> None:
    plan, tree = plan_for(tmp_path)
    (tree.device_dir(VNET) / "config").write_bytes(b"\xff" * 4096)
    other = bytearray((tree.device_dir(E1000) / "config").read_bytes())
    put(other, 2, 2, 0x10D3)  # a different device answers at 00:05.0 now
    (tree.device_dir(E1000) / "config").write_bytes(bytes(other))
    gone = {a: (tree.device_dir(a) / "config").read_bytes() for a in (VNET, E1000)}
    apply(plan, SysfsAccess(tree))
    assert {a: (tree.device_dir(a) / "config").read_bytes() for a in gone} == gone
    results = {d.addr: s.result for d, s in plan.ordered() if s.op == WRITE}
    assert "reads all-ones" in results[VNET]
    assert "a different device answers now (8086:10d3)" in results[E1000]


def test_vanished_and_appeared_are_reported_never_written(tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(F.Q35_CAPTURE, src)
    shutil.copy(src / f"{E1000}.bin", src / "0000:00:06.0.bin")  # a bus-mastering newcomer
    (src / f"{VNET}.bin").unlink()
    tree = capture_tree(tmp_path, src)
    plan, _ = plan_for(tmp_path, tree=tree)
    new_cfg = (tree.device_dir("0000:00:06.0") / "config").read_bytes()
    apply(plan, SysfsAccess(tree))
    assert (tree.device_dir("0000:00:06.0") / "config").read_bytes() == new_cfg
    doc = report.build(plan)
    assert doc["appeared"] == ["0000:00:06.0 8086:100e"]
    v = next(d for d in doc["devices"] if d["addr"] == VNET)
    assert v["outcome"] == "refused" and v["why"] == "no device at this address now"
    assert report.failed(doc)


def test_writes_outside_the_tree_are_refused(tmp_path: Path) -> None:
    outside = F.build_tree(tmp_path / "elsewhere", F.Q35_CAPTURE)
    tree = capture_tree(tmp_path)
    link = tree.pci_devices / E1000
    target = Path(os.path.realpath(SysfsTree(outside).device_dir(E1000)))
    link.unlink()
    link.symlink_to(target)  # the tree's 00:05.0 now points at another tree
    plan, _ = plan_for(tmp_path, tree=tree)
    before = digest(outside)
    apply(plan, SysfsAccess(tree))
    assert digest(outside) == before
    (s,) = [s for d, s in plan.ordered() if d.addr == E1000]
    assert s.status == "refused" and "outside the sysfs tree" in s.result
    with pytest.raises(OutsideTree, match="not a PCI address"):
        SysfsAccess(tree).config("../../../etc")
    with pytest.raises(OutsideTree, match="not something restore does"):
        SysfsAccess(tree).write_attr(E1000, "remove", "1")


# --- reset through sysfs ----------------------------------------------------------------

def _with_reset_file(tree: SysfsTree, addr: str) -> None:
    (tree.device_dir(addr) / "reset").write_text("")


def test_reset_writes_method_then_reset_then_restores_the_list(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path, reset_methods={VNET: "flr pm"})
    _with_reset_file(tree, VNET)
    pol = parse_policy('[[rule]]\nid = "1af4:1041"\naction = "reset"\nreset_method = "pm"\n')
    plan, _ = plan_for(tmp_path, tree=tree, policy=pol)
    access = SysfsAccess(tree)
    apply(plan, access)
    assert [x for x in access.log if x[0] == VNET] == [
        (VNET, "config@0x4/2", "0x0503"), (VNET, "reset_method", "pm"), (VNET, "reset", "1"),
        (VNET, "reset_method", "flr pm")]
    assert (tree.device_dir(VNET) / "reset").read_text() == "1"
    assert (tree.device_dir(VNET) / "reset_method").read_text() == "flr pm"
    (r,) = [s for s in next(d for d in plan.devices if d.addr == VNET).steps
            if s.phase == "reset"]
    assert r.status == "done" and "Bus Master off after the reset" in r.result


def test_reset_without_a_reset_file_is_refused(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path, reset_methods={VNET: "flr"})
    pol = parse_policy('[[rule]]\naddress = "02:00.0"\naction = "reset"\n')
    plan, _ = plan_for(tmp_path, tree=tree, policy=pol)
    apply(plan, SysfsAccess(tree))
    d = next(d for d in plan.devices if d.addr == VNET)
    assert [s.status for s in d.steps] == ["verified", "refused"]
    assert "cannot open for writing" in d.steps[1].result and d.outcome == "failed"


def test_lockdown_still_resets(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path, reset_methods={VNET: "flr"})
    _with_reset_file(tree, VNET)
    sec = tree.root / "kernel" / "security"
    sec.mkdir(parents=True)
    (sec / "lockdown").write_text("none [integrity] confidentiality\n")
    env = probe(tree.root)
    assert (env.lockdown, env.config_writes_permitted) == ("integrity", False)
    assert parse_lockdown("[none] integrity") == "none"
    pol = parse_policy('[[rule]]\naddress = "02:00.0"\naction = "reset"\n')
    plan, _ = plan_for(tmp_path, tree=tree, policy=pol, env=env)
    access = F.kernel_like_access()(tree, EpermConfig)
    apply(plan, access)
    # enable 1, 0 first (Bus Master off by the kernel), then the reset the policy asked for.
    assert [x[1:] for x in access.log if x[0] == VNET] == [("enable", "1"), ("enable", "0"),
                                           ("reset_method", "flr"), ("reset", "1"),
                                           ("reset_method", "flr")]
    doc = report.build(plan)
    v = next(d for d in doc["devices"] if d["addr"] == VNET)
    # The quiesce write is refused, the reset the policy asked for is done: partial.
    assert v["outcome"] == "partial" and "reset flr COMMAND=0x0103 -> COMMAND=0x0103" in v["ops"]
    assert "lockdown (integrity)" in v["ops"][0]
    # the kernel's enable 1, 0 is an operation with COMMAND before and after: Bus Master
    # off, and INTx Disable cleared too (pci_enable_device() turns INTx on)
    assert "enable 1,0 (instead) COMMAND=0x0507 -> COMMAND=0x0103" in v["ops"]
    assert (v["wanted"], v["instead"]) == ("reset", "reset + disable")
    assert doc["environment"] == {
        "lockdown": "integrity", "config_writes_permitted": False, "bars_mappable": False,
        "reset_permitted": True, "rescan": False,
        "config_check": "inferred: lockdown integrity refuses them (pci_write_config(): "
                        "LOCKDOWN_PCI_ACCESS)",
        "bar_check": "inferred: lockdown integrity refuses them (pci_mmap_resource(): "
                     "LOCKDOWN_PCI_ACCESS); not asked"}


# --- the report -----------------------------------------------------------------------------

def test_report_fits_a_note_for_256_devices(tmp_path: Path) -> None:
    """256 functions, each with BARs and COMMAND to rewrite: still < 64 KiB."""
    from handoff.devices.model import Snapshot
    from handoff.save import collect_devices

    src = F.synthetic_tree(tmp_path / "a", 256)
    res = collect_devices(SysfsTree(src), running_kernel=False, privileged=True)
    for d in res.devices:
        d.early = Snapshot("collector", d.live.size, d.live.data)
    cur_root = F.synthetic_tree(tmp_path / "b", 256)
    for cfg in cur_root.glob("devices/**/config"):
        b = bytearray(cfg.read_bytes())
        for off in range(0x10, 0x28, 4):
            put(b, off, 4, get(b, off, 4) & 0xF)
        put(b, 4, 2, 0)
        cfg.write_bytes(bytes(b))
    rec = parsed(record_of(res.devices))
    plan = make_plan(rec, scan(SysfsTree(cur_root)), identity=IDENT,
                     policy=parse_policy('default = "restore-early"\n'))
    apply(plan, SysfsAccess(SysfsTree(cur_root)), sleep=lambda s: None)
    assert len(plan.devices) == 256
    data = report.encode(plan)
    assert len(data) < 64 * 1024
    doc = json.loads(data)
    assert doc["kind"] == "handoff-restore-report" and len(doc["devices"]) == 256
    assert doc["totals"]["devices"] == 256 and doc["totals"]["kernel_owned"] >= 256
    assert doc["totals"]["verified"] == doc["totals"]["writes"]
    small = json.loads(report.encode(plan_for(tmp_path / "q", policy=parse_policy(""))[0]))
    assert "truncated" not in small


# --- CLI ------------------------------------------------------------------------------------

_cli_setup = cli_setup


def test_cli_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    rec, tree = _cli_setup(tmp_path)
    before = digest(tree.root)
    out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc_dir(tmp_path)), "--dry-run"])
    assert digest(tree.root) == before
    assert rc == EXIT_OK, err
    assert "PASS     REGISTER" in out and "COMMAND last" in out
    assert "0000:01:00.0  1b36:0010  Non-Volatile memory controller [nvme]: restore-early" in out
    assert "MSI-X is left disabled" in out and "(dry run)" in out
    assert "BAR0" in out and "kernel owns: the PCI core (__pci_read_base()" in out
    out, _, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", str(tree.root),
                          "--proc-root", str(proc_dir(tmp_path)), "--dry-run", "--json"])
    doc = json.loads(out)
    assert doc["kind"] == "restore" and doc["schema_version"] == 1
    assert doc["report"]["dry_run"] and doc["plan"]["devices"]
    assert digest(tree.root) == before


def test_cli_restore_report_and_json(tmp_path: Path) -> None:
    rec, tree = _cli_setup(tmp_path)
    rep = tmp_path / "report.json"
    out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc_dir(tmp_path)), "--report", str(rep)])
    assert rc == EXIT_OK, err + out
    assert "identity: matches the crashed kernel" in out
    assert "0000:01:00.0  1b36:0010  restore-early  done" in out
    doc = json.loads(rep.read_bytes())
    # e1000 and virtio-net quiesced; nvme, virtio-blk (2) and AHCI Bus Master off, SERR#
    assert doc["totals"]["done"] == 7 and doc["totals"]["failed"] == 0
    data = rep.read_bytes()
    assert data == json.dumps(doc, separators=(",", ":")).encode()  # compact, note-ready
    assert len(data) < 4096


@pytest.mark.parametrize("cmdline,release,words", [
    ("handoff.boot_id=00000000-0000-4000-8000-000000000000 handoff.generation=1", RELEASE,
     "stale record: made in boot"),
    (f"handoff.boot_id={BOOT} handoff.generation=2", RELEASE, "stale record: generation 1"),
    (f"handoff.boot_id={BOOT}", "6.1.0-99-amd64", "the crashed kernel is '6.1.0-99-amd64'"),
    ("console=ttyS0", None, "cannot tell which kernel crashed"),
])
def test_cli_identity_refusals(tmp_path: Path, cmdline: str, release: str | None,
                               words: str) -> None:
    rec, tree = _cli_setup(tmp_path)
    proc = proc_dir(tmp_path, cmdline, release)
    before = digest(tree.root)
    out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc)])
    assert rc == EXIT_INVALID
    assert digest(tree.root) == before
    assert words in err and "--force" in err and "identity: REFUSED" in out
    out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc), "--force", "--json"])
    assert rc == EXIT_OK, err
    doc = json.loads(out)["report"]
    assert doc["identity"]["forced"] and words in doc["identity"]["problems"][0]
    assert digest(tree.root) != before


def test_cli_missing_record(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path)
    # named by the user: usage (2), and the refusal report is still written for capture
    _, err, rc = run_cli(["restore", "--no-plugins", "--record", str(tmp_path / "nope"), "--sysfs-root",
                          str(tree.root), "--dry-run", "--report", str(tmp_path / "r.json")])
    assert rc == EXIT_USAGE and f"--record {tmp_path / 'nope'}: no such file" in err
    assert json.loads((tmp_path / "r.json").read_text())["refused"] is True
    # the default record missing: no record (3)
    if not os.path.exists("/handoff/record.note"):
        _, err, rc = run_cli(["restore", "--no-plugins", "--sysfs-root", str(tree.root), "--dry-run"])
        assert rc == EXIT_NO_RECORD
        assert "/handoff/record.note" in err and "capture initramfs" in err


def test_cli_reads_a_note_file(tmp_path: Path) -> None:
    from helpers import recordgen as G

    note = tmp_path / "record.note"
    note.write_bytes(G.note(record_of(saved_devices(tmp_path))))
    tree = capture_tree(tmp_path)
    out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(note), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc_dir(tmp_path)), "--json"])
    assert rc == EXIT_OK, err
    assert json.loads(out)["report"]["totals"]["verified"] == 6  # six Bus Master clears


def test_cli_refuses_the_running_systems_sys(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import handoff.restore.apply as A

    def tripwire(*a: object, **k: object) -> None:
        raise AssertionError("the engine must not run against /sys here")

    monkeypatch.setattr(A, "apply", tripwire)
    monkeypatch.setattr(A, "SysfsAccess", tripwire)
    rec = tmp_path / "record.bin"
    rec.write_bytes(record_of(saved_devices(tmp_path)))
    if not os.path.isdir("/sys/bus/pci/devices"):
        pytest.skip("no PCI sysfs here")
    import handoff.sysfs.probe as E

    monkeypatch.setattr(E, "probe", tripwire)  # nor may it probe (a write-back) there
    _, err, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", "/sys",
                          "--proc-root", str(proc_dir(tmp_path, release=None))])
    assert rc == EXIT_ENVIRONMENT and "not a capture kernel" in err
    _, err, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", "/sys",
                          "--proc-root", str(proc_dir(tmp_path, release=None)), "--dry-run",
                          "--probe"])
    assert rc == EXIT_ENVIRONMENT and "without --probe" in err


def test_a_corrupt_record_still_leaves_a_report_that_says_why(tmp_path: Path) -> None:
    """In the capture kernel the report is what capture keeps with the dump: a corrupt
    handoff cpio must produce one that names the failed check, and touch no device."""
    good = tmp_path / "good.bin"
    good.write_bytes(record_of(saved_devices(tmp_path)))
    bad = bytearray(good.read_bytes())
    bad[-5] ^= 0x40
    rec = tmp_path / "bad.bin"
    rec.write_bytes(bytes(bad))
    tree = capture_tree(tmp_path)
    before = digest(tree.root)
    rep = tmp_path / "report.json"
    _out, err, rc = run_cli(["restore", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--proc-root", str(proc_dir(tmp_path)), "--report", str(rep)])
    assert rc == 1 and "payload digest mismatch" in err
    assert digest(tree.root) == before
    doc = json.loads(rep.read_text())
    assert doc["refused"] is True and doc["devices"] == []
    assert doc["record"]["check"] == "digest" and doc["record"]["error_type"] == "DigestMismatch"
    assert "no device was touched" in doc["summary"]


def test_a_driver_bound_after_planning_stops_the_quiesce(tmp_path: Path) -> None:
    """The capture kernel may bind a driver between plan and apply: the quiesce write is then
    refused (nothing is turned off under a bound driver), read from the driver link now."""
    plan, tree = plan_for(tmp_path)
    (q,) = [s for s in dev(plan, E1000).steps if s.phase == "quiesce"]
    assert q.op == WRITE
    drv = tree.root / "bus" / "pci" / "drivers" / "e1000"
    drv.mkdir(parents=True, exist_ok=True)
    (tree.device_dir(E1000) / "driver").symlink_to(drv)
    before = (tree.device_dir(E1000) / "config").read_bytes()
    apply(plan, SysfsAccess(tree), sleep=lambda s: None)
    assert (q.status, q.result) == ("refused", ("e1000 is bound now: nothing is turned off "
                                               "under it"))
    assert (tree.device_dir(E1000) / "config").read_bytes() == before
