"""Restore judged by the capture kernel (issue 12): after `handoff restore` the kernel's own
drivers work, the kernel's view of every resource agrees with the hardware, and the dump is
written through a device restore touched.

Scenario scenarios/restore-roundtrip/ (q35 plus an e1000e behind a fifth root port): `handoff
save`, `handoff load --record` with the dump directory on the NVMe disk's ext4, then
lib.sh perturb_kernel_owned (nvme BAR0 moved inside its bridge window, e1000e COMMAND 0,
virtio-net Memory Space off, the nvme's root port with Bus Master off; the bound drivers leave
MSI-X enabled with unmasked vectors), crash. The capture kernel runs `handoff restore` before
drivers, loads nvme, virtio_net, virtio_blk, e1000 and e1000e, mounts the NVMe namespace and
`handoff capture` writes the dump there. The same round trip runs again with
lockdown=integrity on the capture kernel's command line, and again (run restore-rescan) with a
policy file whose one rule gives the nvme kernel_owned = "rescan": its saved BAR0 is written,
the function removed and the bus rescanned, and the outcome checks must hold all the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import Result, Scenario, run
from e2e_harness import checks as C
from e2e_harness import pciview as V

pytestmark = pytest.mark.e2e

ROOT_PORT_NVME = "0000:00:01.0"
NVME = "0000:01:00.0"
VNET = "0000:02:00.0"
VBLK_ROOT = "0000:03:00.0"
VBLK_RES = "0000:04:00.0"
E1000 = "0000:00:05.0"
E1000E = "0000:05:00.0"
NT_HANDOFF_RECORD = 0x48440001
NT_HANDOFF_REPORT = 0x48440002
# The capture kernel's drivers for the devices the scenario perturbs or writes through.
DRIVERS = {
    NVME: "nvme",
    VNET: "virtio-pci",
    VBLK_ROOT: "virtio-pci",
    VBLK_RES: "virtio-pci",
    E1000: "e1000",
    E1000E: "e1000e",
}
NICS = {  # MAC -> (PCI function, net driver)
    "52:54:00:00:00:01": (E1000, "e1000"),
    "52:54:00:00:00:02": (VNET, "virtio_net"),
    "52:54:00:00:00:03": (E1000E, "e1000e"),
}
VIEWS = ("capture/view-after-restore", "capture/view-after-drivers")
# Operations the kernel carries out for handoff (the side effects it must report).
KERNEL_OPS = re.compile(r"(?i)\b(reset|rescan|remove|enable|disable)")
LOCKDOWN = "lockdown=integrity"
# The kernel_owned = "rescan" variant: the nvme (whose BAR0 the crash moved) is handed back
# its saved BAR0 by write + remove + rescan; every other device keeps the default policy.
RESCAN_POLICY_PATH = "/etc/e2e/rescan-policy.toml"
RESCAN_POLICY = f"""version = 1

[[rule]]
address = "{NVME}"
action = "restore-early"
kernel_owned = "rescan"
why = "e2e: the crash moved BAR0; hand the saved one back to the kernel"
"""


def _short(when: str) -> str:
    return when.rsplit("/", 1)[-1]


def _scenario(lockdown: bool) -> Scenario:
    sc = Scenario.from_dir("restore-roundtrip")
    if not lockdown:
        return sc
    return Scenario.from_dir(
        "restore-roundtrip",
        name="restore-roundtrip-lockdown",
        first_script=f"LOAD_EXTRA={LOCKDOWN}\n{sc.first_script}",
    )


def _rescan_scenario() -> Scenario:
    sc = Scenario.from_dir("restore-roundtrip")
    return Scenario.from_dir(
        "restore-roundtrip",
        name="restore-rescan",
        first_script=f"LOAD_POLICY={RESCAN_POLICY_PATH}\n{sc.first_script}",
        files={RESCAN_POLICY_PATH: RESCAN_POLICY.encode()},
    )


@pytest.fixture(scope="module")
def rescanned(qemu_ready: None, e2e_report: Callable[[Result], None]) -> Result:
    result = run(_rescan_scenario())
    e2e_report(result)
    return result


@pytest.fixture(scope="module")
def plain(qemu_ready: None, e2e_report: Callable[[Result], None]) -> Result:
    result = run(_scenario(lockdown=False))
    e2e_report(result)
    return result


@pytest.fixture(scope="module")
def locked(qemu_ready: None, e2e_report: Callable[[Result], None]) -> Result:
    result = run(_scenario(lockdown=True))
    e2e_report(result)
    return result


@pytest.fixture(params=["plain", "locked", "rescanned"])
def trip(request: pytest.FixtureRequest) -> Result:
    """Each round trip in turn: the checks that hold with and without lockdown, and with the
    kernel_owned = "rescan" policy for the nvme."""
    return request.getfixturevalue(request.param)


def _locked(result: Result) -> bool:
    return result.scenario.endswith("-lockdown")


def _scenario_of(result: Result) -> Scenario:
    if result.scenario == "restore-rescan":
        return _rescan_scenario()
    return _scenario(_locked(result))


def _report(result: Result) -> dict[str, Any]:
    assert "capture/restore-report.json" in result.files, (
        "handoff restore wrote no /handoff/restore-report.json; console:\n"
        + "\n".join(C.console_lines(result, r"^handoff"))
    )
    return json.loads(result.read("capture/restore-report.json"))


def _device(report: dict[str, Any], addr: str) -> dict[str, Any]:
    found = [d for d in report["devices"] if d["addr"] == addr]
    assert len(found) == 1, f"{addr}: {len(found)} entries in the restore report"
    return found[0]


def _perturbed(result: Result) -> dict[str, tuple[str, str, int, int]]:
    """lib.sh perturb_kernel_owned: name -> (BDF, register, before, after)."""
    out = {}
    for line in result.text("first/perturbed").splitlines():
        name, bdf, reg, before, after = line.split()
        out[name] = (bdf, reg, int(before, 16), int(after, 16))
    return out


def _dump(result: Result) -> Path:
    dumps = sorted(
        p for k, p in result.files.items() if re.fullmatch(r"nvme/capture/[^/]+/vmcore", k)
    )
    mount = result.files.get("capture/dump-mount")
    assert len(dumps) == 1, (
        f"expected one vmcore under the NVMe disk's capture/, found {dumps}; the NVMe file "
        f"system {mount.read_text().strip() if mount else 'was never mounted'}; console: "
        + "; ".join(C.console_lines(result, r"^handoff"))
    )
    return dumps[0]


# -- the round trip happened, with the perturbations it was meant to have ---------------------


def test_reaches_every_stage(trip: Result) -> None:
    expected = [s.name for s in _scenario_of(trip).stages()]
    assert [s.name for s in trip.stages if s.name in expected] == expected
    load = json.loads(trip.read("first/load.json"))
    assert load["loaded"] and load["mode"] == "crash", load
    assert (LOCKDOWN in load["cmdline"]) == _locked(trip)
    assert (LOCKDOWN in trip.text("capture/cmdline")) == _locked(trip)


def test_perturbations_reached_the_capture_kernel(trip: Result) -> None:
    pert = _perturbed(trip)
    assert set(pert) == {
        "nvme-bar0",
        "e1000e-command",
        "virtio-net-memory",
        "root-port-bus-master",
    }
    crash = C.config_dir(trip, "first/config-before-crash")
    before = V.view(trip, "capture/view-before-restore")
    # nvme BAR0 moved inside the root port's window, type bits kept; the capture kernel
    # enumerated the new address and kept it (so restore must not move it back).
    _bdf, _reg, old, new = pert["nvme-bar0"]
    assert old & 0xF == new & 0xF and old != new
    (start, end) = V.windows(crash[ROOT_PORT_NVME])[V.BRIDGE_LINES[1]]
    assert start <= new & ~0xF <= end
    assert V.bars(before.config[NVME])[0][0] == new & ~0xF
    assert before.resources[NVME][0].start == new & ~0xF
    # COMMAND cleared on the e1000e, Memory Space off on virtio-net, as the crash left them.
    assert V.command(before.config[E1000E]) == 0
    assert not V.command(before.config[VNET]) & V.MEMORY
    assert V.command(crash[ROOT_PORT_NVME]) & V.BUS_MASTER == 0
    # The drivers left MSI-X enabled, function unmasked; vectors unmasked in the table.
    for bdf in (NVME, VNET, E1000E):
        ctl = V.msix_control(crash[bdf])
        assert ctl is not None and ctl & 0x8000 and not ctl & 0x4000, (bdf, ctl)
    if not _locked(trip):  # BARs cannot be mapped under lockdown
        m = re.search(r"unmasked=(\d+)", before.nvme_msix)
        assert m and int(m.group(1)) > 0, before.nvme_msix
    # Only pcieport was bound while restore ran.
    assert set(before.drivers.values()) <= {"pcieport"}, before.drivers


# -- outcome: the capture kernel's drivers work -----------------------------------------------


def test_restore_ran(trip: Result) -> None:
    lines = C.console_lines(trip, r"^handoff: restore exited \d+")
    assert lines, "no 'handoff: restore exited N' on the console: did 30-handoff.sh run?"
    report = _report(trip)
    assert report["identity"]["ok"], report["identity"]
    assert not report["dry_run"]
    assert report["environment"]["config_writes_permitted"] is (not _locked(trip))


def test_drivers_bind_and_probe_without_failure(trip: Result) -> None:
    after = V.view(trip, "capture/view-after-drivers")
    wrong = {b: after.drivers.get(b) for b, d in DRIVERS.items() if after.drivers.get(b) != d}
    dmesg = trip.text("capture/dmesg-drivers")
    failures = [
        line
        for line in dmesg.splitlines()
        if re.search(r"probe failure|probe of \S+ failed|Device not ready", line)
    ]
    assert not wrong and not failures, f"unbound or wrongly bound: {wrong}; dmesg: {failures}"


def test_block_devices_exist_and_the_nvme_namespace_reads(trip: Result) -> None:
    block = trip.text("capture/block-devices").split()
    assert {"nvme0n1", "vda", "vdb"} <= set(block), block
    assert trip.text("capture/nvme-read.rc").strip() == "0", trip.text("capture/nvme-read.err")


def test_every_nic_comes_up(trip: Result) -> None:
    lines = {ln.split()[0]: ln.split()[1:] for ln in trip.text("capture/nics").splitlines()}
    assert set(lines) == set(NICS), lines
    for mac, (bdf, driver) in NICS.items():
        _ifname, rc, state, carrier, drv, pci = lines[mac]
        assert (rc, state, carrier, drv, pci) == (
            "ip-link-rc=0",
            "up",
            "carrier=1",
            f"driver={driver}",
            f"pci={bdf}",
        ), (mac, lines[mac])


# -- outcome: the kernel and the hardware agree ------------------------------------------------


@pytest.mark.parametrize("when", ("capture/view-before-restore", *VIEWS), ids=_short)
def test_every_bar_and_window_equals_the_kernels_resource(trip: Result, when: str) -> None:
    v = V.view(trip, when)
    bad = V.disagreements(v)
    report = _report(trip)
    detail = {d["addr"]: d.get("ops") for d in report["devices"] if d.get("ops")}
    assert not bad, f"{when}: config space and the kernel disagree: {bad}; restore ops: {detail}"


@pytest.mark.parametrize("when", VIEWS, ids=_short)
def test_bound_bridges_keep_bus_master(trip: Result, when: str) -> None:
    """pcieport's probe sets Bus Master (pcie_port_device_register() -> pci_set_master()), and
    pci_enable_bridge() will not set it again while is_busmaster says it is on: a bound bridge
    with Bus Master off stays so, and on real hardware drops the DMA and MSI of all below."""
    v = V.view(trip, when)
    crash = C.config_dir(trip, "first/config-before-crash")
    bridges = [b for b, cfg in v.config.items() if V.header_type(cfg) == 1]
    assert ROOT_PORT_NVME in bridges and len(bridges) >= 5, bridges
    off = {
        b: f"{V.command(v.config[b]):#06x} (at the crash {V.command(crash[b]):#06x})"
        for b in bridges
        if v.drivers.get(b) == "pcieport" and not V.command(v.config[b]) & V.BUS_MASTER
    }
    assert not off, f"{when}: bound bridges with Bus Master off: {off}"


def test_nvme_msix_report_agrees_with_the_vectors_where_the_kernel_maps_them(plain: Result) -> None:
    """The crash left nvme's MSI-X vectors unmasked. If restore says it masked them, then read
    through the kernel's own mapping (sysfs resource0, what the driver will use) they are
    masked, and the report's verify step says what that read says."""
    before = V.view(plain, "capture/view-before-restore")
    after = V.view(plain, "capture/view-after-restore")
    assert re.search(r"unmasked=[1-9]", before.nvme_msix), before.nvme_msix
    steps = [p for p in _device(_report(plain), NVME).get("plugins", []) if " msix:" in p["step"]]
    masked = [p for p in steps if p["step"].startswith("quiesce") and p["outcome"] == "ok"]
    if masked:
        assert re.search(r"\bunmasked=0$", after.nvme_msix), (
            f"restore says {masked[0].get('msg')}; through the kernel's resource0 after "
            f"restore: {after.nvme_msix}; report: {steps}"
        )
        verify = [p["outcome"] for p in steps if p["step"].startswith("verify")]
        assert verify == ["ok"], steps


RESOURCE_REGISTERS = re.compile(r"^(BAR\d|ROM|BUS_NUMBERS|IO_WINDOW|MEMORY_WINDOW|PREF_WINDOW)$")


def _moved_resources(result: Result) -> dict[str, dict[str, str]]:
    """BDF -> the BARs, ROM BAR, bus numbers and windows that changed during restore."""
    before = V.view(result, "capture/view-before-restore")
    after = V.view(result, "capture/view-after-restore")
    moved = {}
    for bdf, cfg in sorted(before.config.items()):
        changed = V.changed_registers(cfg, after.config[bdf])
        regs = {r: f"{a:#x} -> {b:#x}" for r, (a, b) in changed.items() if RESOURCE_REGISTERS.match(r)}
        if regs:
            moved[bdf] = regs
    return moved


def test_the_default_policy_moves_no_resource(plain: Result) -> None:
    """BARs, ROM BARs, bus numbers and windows belong to the capture kernel's PCI core; with
    the default policy (no lockdown) restore leaves every one where the kernel found it."""
    assert _report(plain)["policy"] == "built-in defaults", _report(plain)["policy"]
    moved = _moved_resources(plain)
    assert not moved, f"restore moved kernel-owned resources: {moved}"


# -- the report: plugins and side effects ------------------------------------------------------


def _memory_on_op(dev: dict[str, Any]) -> bool:
    """An operation (or a plugin step's own access) that turns Memory Space on: named so, or
    one that leaves COMMAND with bit 1 set."""
    texts = list(dev.get("ops", []))
    for p in dev.get("plugins", []):
        texts += [p.get("msg", ""), *p.get("io", []), *p.get("notes", [])]
    for op in texts:
        if re.search(r"(?i)memory space", op) and not re.search(r"(?i)refused", op):
            return True
        values = re.findall(r"COMMAND[= ]0x([0-9a-fA-F]{4})", op)
        if "refused" not in op and any(int(v, 16) & V.MEMORY for v in values):
            return True
    return False


def test_plugins_never_report_ok_from_a_device_that_was_not_decoding(trip: Result) -> None:
    """A function with Memory Space off answers every BAR read with 0 (QEMU) or all ones:
    a plugin step that read through it and says "ok" is wrong unless restore turned Memory
    Space on for it, as an operation in the report."""
    before = V.view(trip, "capture/view-before-restore")
    report = _report(trip)
    for bdf in (E1000E, VNET):
        assert not V.command(before.config[bdf]) & V.MEMORY
        dev = _device(report, bdf)
        ok_with_io = [p for p in dev.get("plugins", []) if p["outcome"] == "ok" and p.get("io")]
        if ok_with_io:
            assert _memory_on_op(dev), (
                f"{bdf}: Memory Space was off, no operation turned it on, yet the plugin steps "
                f"{[(p['step'], p['io']) for p in ok_with_io]} say ok; ops {dev.get('ops')}"
            )


def _states(op: str, value: int) -> bool:
    """Whether a done operation says the register ended at ``value``: a write ``REG=0x...``,
    or a kernel operation that names the value it left (its "after")."""
    if "refused" in op:
        return False
    return any(int(h, 16) == value for h in re.findall(r"0x([0-9a-fA-F]+)", op))


def test_every_config_change_during_restore_is_an_operation(trip: Result) -> None:
    """Between the hooks around `handoff restore` nothing else runs (no driver is loaded):
    every steering register that changed was changed by handoff or by the kernel at its
    request (enable/disable, reset, remove + rescan), and the report must list that as a done
    operation of the device; for COMMAND, one that says the value it left."""
    before = V.view(trip, "capture/view-before-restore")
    after = V.view(trip, "capture/view-after-restore")
    report = _report(trip)
    unreported = {}
    for bdf, cfg in sorted(before.config.items()):
        changed = V.changed_registers(cfg, after.config[bdf])
        if not changed:
            continue
        devs = [d for d in report["devices"] if d["addr"] == bdf]
        ops = devs[0].get("ops", []) if devs else []
        done = [op for op in ops if "refused" not in op]
        missing = [
            reg
            for reg, (_old, new) in changed.items()
            if not done or (reg == "COMMAND" and not any(_states(op, new) for op in done))
        ]
        if missing:
            unreported[bdf] = {
                "changed": {r: f"{a:#x} -> {b:#x}" for r, (a, b) in changed.items()},
                "ops": ops,
                "instead": devs[0].get("instead") if devs else None,
            }
    assert not unreported, f"config changes the restore report does not list: {unreported}"


def test_under_lockdown_every_change_came_from_a_reported_kernel_operation(
    locked: Result,
) -> None:
    """lockdown=integrity refuses handoff's config writes: whatever changed, the kernel did
    (sysfs reset, remove + rescan, enable/disable), and the report lists it as done."""
    trip = locked
    before = V.view(trip, "capture/view-before-restore")
    after = V.view(trip, "capture/view-after-restore")
    report = _report(trip)
    bad = {}
    for bdf, cfg in sorted(before.config.items()):
        if not V.changed_registers(cfg, after.config[bdf]):
            continue
        devs = [d for d in report["devices"] if d["addr"] == bdf]
        ops = devs[0].get("ops", []) if devs else []
        done = [op for op in ops if KERNEL_OPS.search(op) and "refused" not in op]
        if not done:
            bad[bdf] = ops
    assert not bad, f"config changed under lockdown with no kernel operation reported: {bad}"


# -- outcome: the dump, written through the NVMe that restore handled -------------------------


def test_dump_is_saved_on_the_nvme_with_its_notes(trip: Result) -> None:
    dump = _dump(trip)
    meta = json.loads((dump.parent / "handoff-capture.json").read_text())
    assert meta["status"] == "saved", meta
    exited = C.console_lines(trip, r"^handoff: capture to /dump/capture exited \d+$")
    assert exited, "no 'handoff: capture to /dump/capture exited N' on the console"
    if not _locked(trip):
        assert meta["exit_code"] == 0 and exited[-1].endswith(" 0"), (meta, exited)
    code, doc = C.inspect_json(dump)
    assert code == 0, doc
    (rec,) = doc["records"]
    assert rec["valid"]
    assert rec["generation"] == json.loads(trip.read("first/load.json"))["generation"]
    (rep,) = doc["container"]["reports"]
    assert rep["report"] == _report(trip)
    original = C.elf_notes(trip.files["capture/plain-head.bin"])
    assert [n.owner for n in original] == ["CORE", "CORE", "VMCOREINFO"]
    saved = C.elf_notes(dump)
    assert saved[: len(original)] == original
    assert [(n.owner, n.type) for n in saved[len(original) :]] == [
        ("HANDOFF", NT_HANDOFF_RECORD),
        ("HANDOFF", NT_HANDOFF_REPORT),
    ]
    got = C.tool_notes("readelf", dump)
    assert [o for o, _ in got] == ["CORE", "CORE", "VMCOREINFO", "HANDOFF", "HANDOFF"], got


def test_dump_opens_in_drgn_and_makedumpfile(plain: Result, tmp_path: Path) -> None:
    trip = plain
    drgn = pytest.importorskip("drgn", reason="pip install drgn (.ci/run installs it)")
    dump = _dump(trip)
    info = C.vmcoreinfo(C.elf_notes(dump))
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    addr = int(info["SYMBOL(init_uts_ns)"], 16) + int(info.get("OFFSET(uts_namespace.name)", "0"))
    assert prog.read(addr, 65).rstrip(b"\0") == b"Linux"
    out = C.makedumpfile_compressed(dump, tmp_path / "vmcore.kdump")
    code, doc = C.inspect_json(out)
    assert code == 0, doc
    assert [r["report"] for r in doc["container"]["reports"]] == [_report(trip)]


# -- kernel_owned = "rescan": the nvme's saved BAR0 handed back by write + remove + rescan ----
# (the outcome checks above run on this round trip too: drivers bind and work, every BAR and
# window equals the kernel's resource and /proc/iomem, bound bridges keep Bus Master, every
# config change is a reported operation, the dump is saved on the nvme with both notes)


def _bar0(cfg: bytes) -> int:
    return V.bars(cfg)[0][0]


def test_rescan_puts_the_saved_bar0_back_and_the_kernel_claims_it(rescanned: Result) -> None:
    """The crash moved nvme BAR0 inside its window; the capture kernel enumerated and kept
    the moved address. With kernel_owned = "rescan" for the nvme, restore writes the saved
    BAR0 with decoding off, removes the function and rescans. The kernel assigns BAR0 anew
    (pci_rescan_bus() -> pci_assign_resource(): the first free place in the root port's
    window), which here is the saved address, where firmware first put it (measured:
    0xfde04000 -> 0xfde00000). Config space, the sysfs resource line and /proc/iomem then say
    the same address, before and after nvme binds."""
    report = _report(rescanned)
    assert report["policy"] == "/handoff/etc/policy.toml", report["policy"]
    nvme = _device(report, NVME)
    assert nvme["by"].startswith("rule 1") and nvme["outcome"] == "done", nvme
    _bdf, _reg, saved, moved = _perturbed(rescanned)["nvme-bar0"]
    saved_addr, moved_addr = saved & ~0xF, moved & ~0xF
    before = V.view(rescanned, "capture/view-before-restore")
    assert _bar0(before.config[NVME]) == before.resources[NVME][0].start == moved_addr
    # The rescan pass: decoding off, the saved BAR0 written, then remove + rescan.
    ops = nvme["ops"]
    assert f"BAR0={saved:#010x}" in ops, ops
    cmd = [op for op in ops if op.startswith("COMMAND=")]
    assert cmd and not int(cmd[0].split("=")[1], 16) & (V.MEMORY | V.BUS_MASTER | 1), ops
    (rs,) = [op for op in ops if op.startswith("remove+rescan")]
    after = V.view(rescanned, "capture/view-after-restore")
    now = _bar0(after.config[NVME])
    assert rs == (
        f"remove+rescan BAR0={moved_addr:#x} -> BAR0={now:#x}: removed and rescanned: the "
        "device is back as itself, the kernel read the state again, and every BAR equals its "
        "resource start"
    ), ops
    # What the kernel did: assigned BAR0 anew on the rescan (the second enumeration of the
    # nvme in the capture kernel's log), at the saved address, the window's first free place.
    dmesg = rescanned.text("capture/dmesg-drivers")
    assigned = [  # "BAR 0 [mem A-B 64bit]: assigned" (6.1), "BAR 0: assigned [mem A-B]" (older)
        int(a or b, 16)
        for a, b in re.findall(
            rf"pci {NVME}: BAR 0(?:: assigned \[mem (0x[0-9a-f]+)-| \[mem (0x[0-9a-f]+)-"
            r"[^\]]*\]: assigned$)",
            dmesg,
            re.MULTILINE,
        )
    ]
    assert assigned[-1:] == [now], [hex(a) for a in assigned]
    assert now == saved_addr, f"the kernel placed BAR0 at {now:#x}, saved {saved_addr:#x}"
    drivers = V.view(rescanned, "capture/view-after-drivers")
    size = before.resources[NVME][0].end - moved_addr
    for v in (after, drivers):
        res = v.resources[NVME][0]
        assert (res.start, res.end) == (now, now + size), (res, now)
        mine = [(a, b) for a, b, owner in v.iomem if owner == NVME]
        assert mine == [(now, now + size)], mine
        assert _bar0(v.config[NVME]) == now
    assert (now, now + size, "nvme") in drivers.iomem, drivers.iomem
    # Decoding stays off until the driver's pci_enable_device(): nvme turned it on.
    assert not V.command(after.config[NVME]) & V.MEMORY
    assert V.command(drivers.config[NVME]) & (V.MEMORY | V.BUS_MASTER) == V.MEMORY | V.BUS_MASTER


def test_rescan_moves_nothing_else(rescanned: Result) -> None:
    """Only the device the rule names is handed to the kernel: every other device keeps every
    kernel-owned resource where the capture kernel placed it."""
    moved = _moved_resources(rescanned)
    assert set(moved) == {NVME} and set(moved[NVME]) <= {"BAR0", "BAR1"}, moved
    assert _report(rescanned)["totals"]["rescans"] == 1
