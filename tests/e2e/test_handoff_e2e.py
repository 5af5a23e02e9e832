"""End-to-end proof of handoff on real kernels in QEMU: save, load, crash, restore, capture.

Scenarios (tests/e2e/scenarios/<name>/, run in this order; lockdown last):
- handoff-kdump: the main proof. `handoff save`, `handoff load` (kexec -p through handoff),
  `handoff status`, the driverless AHCI function perturbed, crash; in the capture kernel
  `handoff restore` before drivers (config space read before and after by our own hooks, BAR
  registers read through sysfs resourceN by pcimem), drivers bind, `handoff capture` saves the
  dump with the record and report as notes; on the host the dump is opened by handoff inspect,
  readelf, eu-readelf, drgn and makedumpfile.
- handoff-kexec-reboot: `handoff load --kexec-reboot` + `kexec -e`; restore in the next kernel.
- handoff-corrupt: record bytes flipped inside the initrd copy; the dump survives, restore
  refuses.
- handoff-lockdown: lockdown=integrity on the capture kernel: writes refused, fallbacks used.

handoff-kdump and handoff-lockdown run on both Debian 12 kernel lines (config.KERNEL_LINES;
ids [6.1] and [6.12]; HANDOFF_E2E_KERNELS picks some), one boot per line shared by every
test of the fixture. 6.12 builds virtio_pci in: the three virtio functions are bound before
the first hook, so handoff-quiesce skips them and restore's virtio plugin steps are refused
(the BAR is the bound driver's). The tests assert exactly that on 6.12, and the old
expectations on 6.1.

The guest reserves crashkernel=128M, Debian's default and what `handoff load` recommends for
this guest (its estimate is 121.8 MiB with 10% headroom): e2e_harness/config.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import Result, Scenario, debuginfo, run
from e2e_harness import checks as C
from e2e_harness.config import DEFAULT_KERNEL, kernel_lines

pytestmark = pytest.mark.e2e

AHCI = "0000:00:1f.2"
E1000 = "0000:00:05.0"
NVME = "0000:01:00.0"
VNET = "0000:02:00.0"
NT_HANDOFF_RECORD = 0x48440001
NT_HANDOFF_REPORT = 0x48440002
CRASHKERNEL_BYTES = 128 << 20
VIRTIO = (VNET, "0000:03:00.0", "0000:04:00.0")  # virtio-net, the root and results disks
# Kernel lines that build virtio_pci in (modules.builtin): there the virtio functions are
# bound by the time the capture kernel's first hook runs.
VIRTIO_PCI_BUILTIN = {"6.1": False, "6.12": True}


def _run(name: str, report: Callable[[Result], None], kernel: str = DEFAULT_KERNEL) -> Result:
    result = run(Scenario.from_dir(name, kernel=kernel))
    report(result)
    return result


def _stage_names(result: Result, name: str) -> None:
    expected = [s.name for s in Scenario.from_dir(name).stages()]
    got = [s.name for s in result.stages if s.name in expected]
    assert got == expected


def _restore_exit(result: Result) -> int:
    lines = C.console_lines(result, r"^handoff: restore exited \d+")
    assert lines, (
        "the capture console has no 'handoff: restore exited N' line: did 30-handoff.sh run?"
    )
    return int(lines[-1].split()[-1])


def _report(result: Result) -> dict[str, Any]:
    assert "capture/restore-report.json" in result.files, (
        "handoff restore wrote no /handoff/restore-report.json; console:\n"
        + "\n".join(C.console_lines(result, r"^handoff"))
    )
    return json.loads(result.read("capture/restore-report.json"))


def _virtio_bound(result: Result) -> bool:
    """Whether this run's kernel line binds virtio-pci before the hooks; checked against
    what the capture kernel showed, so the expectation cannot drift unseen."""
    builtin = VIRTIO_PCI_BUILTIN[result.kernel_line]
    bound = dict(line.split() for line in result.text("capture/drivers-before").splitlines())
    got = {a: bound.get(a) for a in VIRTIO}
    want = {a: "virtio-pci" if builtin else None for a in VIRTIO}
    assert got == want, f"kernel {result.kernel}: drivers bound before the hooks: {bound}"
    return builtin


def _refused_steps(result: Result) -> dict[str, list[tuple[str, str]]]:
    """The plugin steps restore refused, by device: (step, reason)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for dev in _report(result)["devices"]:
        for step in dev.get("plugins", []):
            if step["outcome"] == "refused":
                out.setdefault(dev["addr"], []).append((step["step"], step["msg"]))
    return out


def _assert_only_bound_virtio_refused(result: Result, show: bool = False) -> None:
    """On a kernel that binds virtio-pci before the hooks, the refused plugin steps are
    exactly the virtio steps of the three bound virtio functions, each refused because the
    driver owns the BAR, and the report says so per device. Printed, so the run's output
    shows what was skipped and why."""
    refused = _refused_steps(result)
    if show:
        print(f"\nkernel {result.kernel}: restore refused these plugin steps:")
        for addr, steps in sorted(refused.items()):
            for step, msg in steps:
                print(f"  {addr} {step}: {msg}")
    assert set(refused) == set(VIRTIO), refused
    for addr, steps in refused.items():
        assert [s for s, _ in steps] == [
            "save virtio:read-status", "quiesce virtio:reset-device", "verify virtio:status-zero"
        ], (addr, steps)
        assert all("claimed by a bound driver" in m for _, m in steps), (addr, steps)
        dev = C.report_device(_report(result), addr)
        assert dev["outcome"] == "refused" and "bound driver" in dev["why"], dev


def _restore_exit_expected(result: Result) -> int:
    """restore's exit code for this kernel line: 0, or 1 where virtio-pci was bound before it
    (its refused virtio steps count as not done; nothing else may be refused)."""
    if _virtio_bound(result):
        _assert_only_bound_virtio_refused(result)
        return 1
    assert _refused_steps(result) == {}, _refused_steps(result)
    return 0


def _record_bytes(path: Path) -> bytes:
    import handoff

    found = handoff.read(str(path))
    valid = [f.record for f in found if f.record is not None]
    assert len(valid) == 1, f"{path}: expected one valid record, found {found}"
    return valid[0].raw


def _saved_registers(result: Result, record: Path, action: str) -> dict[str, int]:
    """The perturbed registers' values at save time, from the record snapshot the action uses
    (early for restore-early, live for restore-live)."""
    dev = C.record_device(record, AHCI)
    snap = C.snapshot(dev, "early" if action == "restore-early" else "live")
    return {name: C.reg(snap, name) for name in C.REGISTERS}


def _assert_ahci_restored(result: Result, record: Path) -> None:
    """The perturbation reached the capture kernel, and restore left it to the kernel: every
    register perturbed (BAR5, Memory Space and INTx Disable in COMMAND, Cache Line Size,
    Interrupt Line) is owned by the capture kernel's PCI core or the driver (issue 12,
    docs/policy.md "Who owns each register"), so it is reported as kernel-owned and not
    written: the kernel enumerated BAR5 where the first kernel left it, and writing the saved
    value back would move the BAR behind its resource. By the report and by our own read of
    config space after restore."""
    report = _report(result)
    dev = C.report_device(report, AHCI)
    assert dev["outcome"] in ("done", "nothing"), dev
    saved = _saved_registers(result, record, dev["action"])
    # As the crash left it: before handoff-quiesce (pre-udev/00), where a scenario reads it.
    arrival = "capture/config-at-arrival"
    if not any(k.startswith(arrival + "/") for k in result.files):
        arrival = "capture/config-before-restore"
    before = C.config_dir(result, arrival)[AHCI]
    after = C.config_dir(result, "capture/config-after-restore")[AHCI]
    first = result.read("first/perturbed-before.bin")  # read in the first kernel, by cat
    for name, (was, now) in C.perturbed(result).items():
        assert saved[name] == was == C.reg(first, name), (
            f"{name}: the record saved {saved[name]:#x}, setpci read {was:#x}, "
            f"sysfs config read {C.reg(first, name):#x} before the perturbation"
        )
        assert C.reg(before, name) == now, (
            f"{name} did not carry the perturbation into the capture kernel"
        )
        # Bus Master may go off (handoff-quiesce and quiesce stop an unbound function's
        # DMA: consistent, the kernel believes it off); nothing else of it may change.
        keep = ~C.BUS_MASTER if name == "COMMAND" else -1
        assert C.reg(after, name) & keep == now & keep, (
            f"{AHCI} {name} reads {C.reg(after, name):#x} after restore: a kernel-owned "
            f"register was written (the capture kernel had {now:#x})"
        )
    assert {"BAR5", "COMMAND", "Cache Line Size", "Interrupt Line"} <= set(
        dev.get("kernel_owns", [])), dev
    assert not any(op.startswith(("BAR5=", "Cache Line Size=", "Interrupt Line="))
                   for op in dev.get("ops", [])), dev


# -- handoff-kdump ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=kernel_lines())
def kdump(
    request: pytest.FixtureRequest, qemu_ready: None, e2e_report: Callable[[Result], None]
) -> Result:
    return _run("handoff-kdump", e2e_report, request.param)


def test_kdump_reaches_every_stage(kdump: Result) -> None:
    _stage_names(kdump, "handoff-kdump")
    # crash -> dump saved is the bench's span (timings-handoff-kdump.json).
    assert kdump.stage("vmcore-saved").host_s > kdump.stage("crash").host_s


def test_kdump_load_fits_the_reservation_and_status_is_fresh(kdump: Result) -> None:
    assert int(kdump.text("first/kexec_crash_size")) == CRASHKERNEL_BYTES
    load = json.loads(kdump.read("first/load.json"))
    assert load["loaded"] and load["mode"] == "crash"
    argv = load["argv"]
    assert argv[0].endswith("kexec") and argv[1] == "-p"
    assert "--initrd=/var/lib/handoff/capture-initrd.img" in argv
    assert f"handoff.generation={load['generation']}" in load["cmdline"]
    assert f"handoff.boot_id={load['boot_id']}" in load["cmdline"]
    # What handoff load recommends for this guest is what the harness reserves.
    assert load["memory"]["required"] <= load["crash_size"] == CRASHKERNEL_BYTES
    assert not [w for w in load["warnings"] if "crashkernel" in w], load["warnings"]
    assert load["runtime"]["mode"] == "bundled"
    status = json.loads(kdump.read("first/status.json"))
    assert kdump.text("first/status.rc").strip() == "0"
    assert status["verdict"] == "fresh" and status["crash_loaded"]
    assert status["loaded"]["generation"] == load["generation"]
    # handoff save -o on its own, too.
    saved = json.loads(kdump.read("first/save.json"))
    assert saved, "handoff save --json printed nothing"
    _record_bytes(kdump.files["first/record-save.bin"])


def test_kdump_fits_debians_default_reservation(kdump: Result) -> None:
    """At crashkernel=128M (Debian's default) load warns of nothing, restore starts with room
    to spare and nothing in the capture kernel is killed for memory."""
    load = json.loads(kdump.read("first/load.json"))
    assert load["crash_size"] == 128 << 20 and not load["warnings"], load["warnings"]
    m = re.search(r"handoff: restore, record generation \d+ \(MemAvailable:\s+(\d+) kB\)",
                  kdump.serial_log)
    assert m, "the restore hook did not log MemAvailable"
    # what is left when handoff's own peak (measured at load) comes on top of it
    spare = int(m.group(1)) * 1024 - load["runtime"]["peak_private"]
    assert spare > load["memory"]["devices"] * 64 * 1024 + (8 << 20), (m.group(0), spare)
    assert not re.search(r"(?i)out of memory|oom-kill|invoked oom-killer", kdump.serial_log)
    assert _restore_exit(kdump) == _restore_exit_expected(kdump)


def test_kdump_capture_kernel_got_the_record_load_wrote(kdump: Result) -> None:
    load = json.loads(kdump.read("first/load.json"))
    loaded = _record_bytes(kdump.files["first/record.bin"])
    shipped = _record_bytes(kdump.files["capture/record.note"])
    assert shipped == loaded  # byte for byte, so same generation, boot id and checksums
    # handoff inspect, run inside the capture kernel on /handoff/record.note.
    assert kdump.text("capture/inspect-record.rc").strip() == "0", kdump.text(
        "capture/inspect-record.err"
    )
    doc = json.loads(kdump.read("capture/inspect-record.json"))
    (rec,) = doc["records"]
    assert rec["valid"] and rec["checks"] == {"header_crc": "ok", "payload_digest": "ok"}
    assert rec["generation"] == load["generation"]
    assert rec["producer"]["boot_id"] == load["boot_id"]
    cmdline = kdump.text("capture/cmdline")
    assert f"handoff.generation={load['generation']}" in cmdline
    assert "elfcorehdr=" in cmdline


def test_kdump_restore_put_the_perturbed_device_back(kdump: Result) -> None:
    assert _restore_exit(kdump) == _restore_exit_expected(kdump)
    report = _report(kdump)
    assert report["identity"]["ok"] and not report["identity"]["problems"]
    assert report["totals"]["failed"] == 0 and report["totals"]["unverified"] == 0
    _assert_ahci_restored(kdump, kdump.files["first/record.bin"])


def test_kdump_restore_left_skipped_devices_alone_and_quiesced_the_others(kdump: Result) -> None:
    report = _report(kdump)
    before = C.config_dir(kdump, "capture/config-before-restore")
    after = C.config_dir(kdump, "capture/config-after-restore")
    skipped = [d["addr"] for d in report["devices"] if d["action"] == "skip"]
    assert skipped, "the default policy skips the chipset functions"
    for addr in skipped:
        # Nothing but handoff ran between the two dumps, and no driver is bound yet.
        assert before[addr] == after[addr], f"{addr} (policy skip) changed during restore"
    for dev in report["devices"]:
        if dev["action"] == "quiesce" and dev["outcome"] != "refused":
            cmd = C.u16(after[dev["addr"]], C.COMMAND)
            assert not cmd & C.BUS_MASTER, f"{dev['addr']} quiesced but COMMAND is {cmd:#06x}"
    assert {E1000, VNET} <= {d["addr"] for d in report["devices"] if d["action"] == "quiesce"}
    vnet = C.report_device(report, VNET)
    # Only the PCIe port driver was bound while restore ran (and virtio-pci where it is
    # built in: then virtio-net's quiesce was refused, and the driver keeps Bus Master).
    bound = {line.split()[1] for line in kdump.text("capture/drivers-before").splitlines()}
    if _virtio_bound(kdump):
        assert bound == {"pcieport", "virtio-pci"}, bound
        assert vnet["outcome"] == "refused", vnet
    else:
        assert bound <= {"pcieport"}
        assert vnet["outcome"] == "done", vnet


def test_kdump_quiescer_cleared_bus_master_before_restore(kdump: Result) -> None:
    """handoff-quiesce, the first hook, cleared Bus Master (and set INTx Disable) of the
    record's unbound bus-mastering endpoints, and restore's report carries its log."""
    q = _report(kdump).get("quiescer")
    assert q and not q.get("refused_record") and not q["refused"], q
    arrival = C.config_dir(kdump, "capture/config-at-arrival")
    want = {a for a in (E1000, NVME, VNET) if C.u16(arrival[a], C.COMMAND) & C.BUS_MASTER}
    assert want == {E1000, NVME, VNET}, "the crash left these three bus mastering"
    if _virtio_bound(kdump):
        # Bound by the built-in virtio-pci (which set Bus Master again): never under a
        # bound driver, so skipped, and the log says why.
        want.discard(VNET)
        for addr in VIRTIO:
            assert f"{addr} bound virtio-pci" in q["skipped"], q
    cleared = {c["addr"]: c for c in q["cleared"]}
    assert set(cleared) & set(VIRTIO) == (set() if _virtio_bound(kdump) else set(VIRTIO)), q
    assert want <= set(cleared), q
    for addr in want:
        before, after = (int(x, 16) for x in cleared[addr]["command"].split(" -> "))
        assert after == (before & ~C.BUS_MASTER) | 0x0400, cleared[addr]
    assert "0000:00:01.0" not in cleared  # a root port (bridge, bound to pcieport)
    assert q["start_to_last_cleared_ms"] is not None
    assert C.console_lines(kdump, r"^handoff: quiesce exited 0$")


def test_kdump_dump_holds_the_record_and_report(kdump: Result) -> None:
    dump = C.dump_dir(kdump) / "vmcore"
    meta = json.loads((dump.parent / "handoff-capture.json").read_text())
    assert meta["status"] == "saved" and meta["exit_code"] == 0, meta
    assert C.console_lines(kdump, r"^handoff: capture to /results/capture exited 0$")
    code, doc = C.inspect_json(dump)
    assert code == 0, doc
    (rec,) = doc["records"]
    assert (
        rec["valid"]
        and rec["generation"] == json.loads(kdump.read("first/load.json"))["generation"]
    )
    (rep,) = doc["container"]["reports"]
    assert rep["report"] == _report(kdump)
    notes = C.elf_notes(dump)
    (raw,) = [n.desc for n in notes if n.owner == "HANDOFF" and n.type == NT_HANDOFF_RECORD]
    assert raw == _record_bytes(kdump.files["first/record.bin"])


def test_kdump_dump_keeps_every_original_note(kdump: Result) -> None:
    dump = C.dump_dir(kdump) / "vmcore"
    plain = kdump.files["capture/plain-head.bin"]  # dd of /proc/vmcore's first MiB
    original = [n for n in C.elf_notes(plain)]
    assert [n.owner for n in original] == ["CORE", "CORE", "VMCOREINFO"]
    saved = C.elf_notes(dump)
    assert saved[: len(original)] == original  # same notes, same bytes, same order
    assert [(n.owner, n.type) for n in saved[len(original) :]] == [
        ("HANDOFF", NT_HANDOFF_RECORD),
        ("HANDOFF", NT_HANDOFF_REPORT),
    ]
    for tool in ("readelf", "eu-readelf"):
        want = [n for n in C.tool_notes(tool, plain)]
        got = C.tool_notes(tool, dump)
        assert got[: len(want)] == want and len(want) == 3, (tool, want, got)
        assert [o for o, _ in got[len(want) :]] == ["HANDOFF", "HANDOFF"], (tool, got)


def test_kdump_dump_opens_in_drgn(kdump: Result) -> None:
    drgn = pytest.importorskip("drgn", reason="pip install drgn (.ci/run installs it)")
    dump = C.dump_dir(kdump) / "vmcore"
    info = C.vmcoreinfo(C.elf_notes(dump))
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    # struct new_utsname inside init_uts_ns: sysname[65], nodename[65], release[65].
    addr = int(info["SYMBOL(init_uts_ns)"], 16) + int(info.get("OFFSET(uts_namespace.name)", "0"))
    uts = prog.read(addr, 3 * 65)
    assert uts[:65].rstrip(b"\0") == b"Linux"
    assert uts[130:195].rstrip(b"\0").decode() == info["OSRELEASE"]


def test_kdump_makedumpfile_output_keeps_the_handoff_notes(kdump: Result, tmp_path: Path) -> None:
    dump = C.dump_dir(kdump) / "vmcore"
    out = C.makedumpfile_compressed(dump, tmp_path / "vmcore.kdump")
    assert out.stat().st_size < dump.stat().st_size // 4
    code, doc = C.inspect_json(out)
    assert code == 0, doc
    assert doc["container"]["kind"].startswith("kdump"), doc["container"]
    (rec,) = doc["records"]
    assert rec["valid"]
    assert [r["report"] for r in doc["container"]["reports"]] == [_report(kdump)]


def _crash(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert shutil.which("crash"), "crash missing: .ci/run installs it"
    return subprocess.run(["crash", *argv], input=stdin, capture_output=True, text=True,
                          check=False, timeout=600)


def test_kdump_dump_opens_in_crash(kdump: Result, tmp_path: Path) -> None:
    """crash(8), what most kdump users open a dump with first (issue 13): the ELF dump that
    `handoff capture` saved, and makedumpfile's kdump-compressed copy of it, each give the
    dump's OSRELEASE, and a session with the kernel's debug vmlinux shows `sys` and `log`."""
    dump = C.dump_dir(kdump) / "vmcore"
    release = C.vmcoreinfo(C.elf_notes(dump))["OSRELEASE"]
    compressed = tmp_path / "vmcore.kdump"
    proc = subprocess.run(["makedumpfile", "-c", "-d", "31", str(dump), str(compressed)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for d in (dump, compressed):
        p = _crash("--osrelease", str(d))
        assert (p.returncode, p.stdout.strip()) == (0, release), (d, p.stdout, p.stderr)
        assert "WARNING" not in p.stderr + p.stdout, p.stderr
    assert kdump.kernel == release
    if kdump.kernel_line != DEFAULT_KERNEL:
        return  # the debug vmlinux session (an 859 MB download) runs on the default line only
    vmlinux = debuginfo.debug_vmlinux(kdump.kernel)
    for d in (dump, compressed):
        p = _crash("-s", str(vmlinux), str(d), stdin="sys\nlog\nquit\n")
        assert p.returncode == 0, (d, p.stdout[-3000:], p.stderr[-3000:])
        lines = [ln.strip() for ln in p.stdout.splitlines()]
        assert f"RELEASE: {release}" in lines, (d, p.stdout[:3000])
        assert 'PANIC: "Kernel panic - not syncing: sysrq triggered crash"' in lines, d
        log = [ln for ln in lines if ln.startswith("[")]
        assert any(f"Linux version {release}" in ln for ln in log[:3]), (d, log[:3])
        assert any("Kernel panic - not syncing: sysrq triggered crash" in ln for ln in log), d


# -- device plugins (registers read in the handoff-kdump capture kernel) ---------------------


def test_kdump_crash_left_nvme_and_virtio_running(kdump: Result) -> None:
    # Read by pre-udev/00-e2e-at-arrival.sh, before handoff-quiesce clears Bus Master.
    bars = C.bar_state(kdump, "capture/bars-at-arrival")
    cc, csts, status = (bars[k] for k in ("nvme-cc", "nvme-csts", "virtio-net-status"))
    assert int(cc, 16) & 1 == 1, f"NVMe CC {cc}: expected EN=1 as the crashed kernel left it"
    assert int(csts, 16) & 1 == 1, f"NVMe CSTS {csts}: expected RDY=1"
    if _virtio_bound(kdump):
        # The built-in virtio-pci claimed the BAR (and reset the device when it probed):
        # sysfs resourceN cannot be mapped any more, for pcimem or for handoff.
        assert status.startswith("error:") and "Invalid argument" in status, status
        return
    assert int(status, 16) & 0x04, f"virtio-net device_status {status}: expected DRIVER_OK"


def test_kdump_plugins_quiesced_nvme_and_virtio_before_drivers(kdump: Result) -> None:
    report = _report(kdump)
    plugins = report.get("plugins", {})
    bars = C.bar_state(kdump, "capture/bars-after-restore")
    detail = f"restore report plugins: {plugins}; registers after restore: {bars}"
    assert int(bars["nvme-cc"], 16) & 1 == 0, f"NVMe CC.EN still 1 after restore; {detail}"
    assert int(bars["nvme-csts"], 16) & 1 == 0, f"NVMe CSTS.RDY still 1 after restore; {detail}"
    if _virtio_bound(kdump):
        # virtio-pci is built in and bound: every virtio step was refused, and nothing else.
        _assert_only_bound_virtio_refused(kdump, show=True)
        return
    # DRIVER_OK off: reset, or stopped by itself when Bus Master went off (QEMU), which the
    # plugin then leaves alone (virtio.py: a reset would write the crashed kernel's rings).
    assert int(bars["virtio-net-status"], 16) & 0x04 == 0, f"virtio-net still runs; {detail}"


def test_kdump_capture_drivers_bind_and_work_after_restore(kdump: Result) -> None:
    bound = dict(line.split() for line in kdump.text("capture/drivers-after").splitlines())
    assert bound.get(NVME) == "nvme", bound
    assert bound.get(VNET) == "virtio-pci", bound
    assert kdump.text("capture/nvme-read.rc").strip() == "0", kdump.text("capture/nvme-read.err")
    (line,) = kdump.text("capture/virtio-net").splitlines()
    assert line.split()[1:] == ["up", "carrier=1", "driver=virtio_net"], line


# -- handoff-kexec-reboot --------------------------------------------------------------------


@pytest.fixture(scope="module")
def kexec_reboot(qemu_ready: None, e2e_report: Callable[[Result], None]) -> Result:
    return _run("handoff-kexec-reboot", e2e_report)


def test_kexec_reboot_loads_with_kexec_l(kexec_reboot: Result) -> None:
    _stage_names(kexec_reboot, "handoff-kexec-reboot")
    load = json.loads(kexec_reboot.read("first/load.json"))
    assert load["mode"] == "reboot" and load["loaded"]
    assert load["argv"][1] == "-l"
    assert load["record"].endswith("record-save.bin")  # --record: the handoff save -o output
    status = json.loads(kexec_reboot.read("first/status.json"))
    assert status["reboot_loaded"] is True, status


def test_kexec_reboot_record_arrives_and_restore_runs(kexec_reboot: Result) -> None:
    saved = _record_bytes(kexec_reboot.files["first/record-save.bin"])
    assert _record_bytes(kexec_reboot.files["capture/record.note"]) == saved
    assert "elfcorehdr=" not in kexec_reboot.text("capture/cmdline")  # not a crash kernel
    assert _restore_exit(kexec_reboot) == 0, "\n".join(C.console_lines(kexec_reboot, r"^handoff"))
    report = _report(kexec_reboot)
    assert not report["dry_run"]
    _assert_ahci_restored(kexec_reboot, kexec_reboot.files["first/record-save.bin"])


# -- handoff-corrupt ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corrupt(qemu_ready: None, e2e_report: Callable[[Result], None]) -> Result:
    return _run("handoff-corrupt", e2e_report)


def test_corrupt_record_still_gives_a_dump(corrupt: Result) -> None:
    _stage_names(corrupt, "handoff-corrupt")
    # The shipped note is the corrupted one.
    import handoff

    found = handoff.read(str(corrupt.files["capture/record.note"]))
    assert found and all(f.record is None and f.error is not None for f in found), found
    dump = C.dump_dir(corrupt) / "vmcore"
    meta = json.loads((dump.parent / "handoff-capture.json").read_text())
    assert meta["status"] == "saved", meta
    assert meta["exit_code"] == 3, meta  # dump saved, no valid record
    original = C.elf_notes(corrupt.files["capture/plain-head.bin"])
    assert [n.owner for n in original] == ["CORE", "CORE", "VMCOREINFO"]
    assert C.elf_notes(dump)[:3] == original


def test_corrupt_record_is_refused_and_the_report_says_why(corrupt: Result) -> None:
    # handoff-quiesce validates the record with the C core first, and writes nothing either.
    assert C.console_lines(corrupt, r"^handoff: quiesce exited 1$")
    code = _restore_exit(corrupt)
    console = "\n".join(C.console_lines(corrupt, r"^handoff"))
    assert code != 0, console
    assert re.search(r"(?i)sha-?256|digest|checksum|corrupt", console), console
    report = _report(corrupt)
    text = json.dumps(report)
    assert re.search(r"(?i)sha-?256|digest|checksum|corrupt", text), report
    # Nothing was written: config space is as the crash left it.
    assert C.config_dir(corrupt, "capture/config-before-restore") == C.config_dir(
        corrupt, "capture/config-after-restore"
    )


# -- handoff-lockdown (last: the engine's lockdown fallbacks are the newest part) ------------


@pytest.fixture(scope="module", params=kernel_lines())
def lockdown(
    request: pytest.FixtureRequest, qemu_ready: None, e2e_report: Callable[[Result], None]
) -> Result:
    return _run("handoff-lockdown", e2e_report, request.param)


def test_lockdown_round_trip_loads_with_kexec_file_load(lockdown: Result) -> None:
    """kexec -s (kexec_file_load): the kernel itself reads the image and the initrd copy, and
    builds the ELF core header; the capture kernel still gets handoff's record as loaded."""
    load = json.loads(lockdown.read("first/load.json"))
    assert load["loaded"] and load["argv"][1:3] == ["-p", "-s"], load["argv"]
    assert _record_bytes(lockdown.files["capture/record.note"]) == \
        _record_bytes(lockdown.files["first/record.bin"])
    assert lockdown.text("capture/inspect-record.rc").strip() == "0"
    cmdline = lockdown.text("capture/cmdline")
    assert f"handoff.generation={load['generation']}" in cmdline
    assert "elfcorehdr=" in cmdline  # added by the kernel's kexec_file_load for a crash image


def test_lockdown_capture_kernel_is_locked_down(lockdown: Result) -> None:
    _stage_names(lockdown, "handoff-lockdown")
    assert "lockdown=integrity" in lockdown.text("capture/cmdline")
    bars = C.bar_state(lockdown, "capture/bars-before-restore")
    assert all("Operation not permitted" in v for v in bars.values()), bars  # mmap EPERM


def test_lockdown_restore_reports_refused_writes_and_fallbacks(lockdown: Result) -> None:
    report = _report(lockdown)
    env = report["environment"]
    assert env["config_writes_permitted"] is False, env
    assert report["totals"]["refused_ops"] > 0, report["totals"]
    ahci = C.report_device(report, AHCI)
    assert any("refused" in op for op in ahci.get("ops", [])), ahci
    instead = ahci.get("instead") or ahci.get("fallback", {}).get("instead", "")
    # q35's AHCI offers no reset: it is left in place with Bus Master off (enable 1, 0);
    # the default never removes a device, since a rescan may move its BARs
    assert instead.split(" ")[0] in ("reset", "skip") and "rescan" not in instead, ahci
    assert report["totals"].get("fallbacks", 0) > 0
    # The dump still carries the report, and restore said it could not do everything.
    assert _restore_exit(lockdown) == 1
    # handoff-quiesce's config writes were refused too, and its log says so.
    q = report["quiescer"]
    assert q["cleared"] == [] and q["refused"], q
    assert all("Operation not permitted" in r for r in q["refused"]), q


def test_lockdown_perturbed_device_ends_with_bus_master_off(lockdown: Result) -> None:
    before = C.config_dir(lockdown, "capture/config-before-restore")[AHCI]
    after = C.config_dir(lockdown, "capture/config-after-restore")[AHCI]
    assert C.u16(before, C.COMMAND) & C.BUS_MASTER, "the perturbed AHCI had Bus Master set"
    ahci = C.report_device(_report(lockdown), AHCI)
    assert not C.u16(after, C.COMMAND) & C.BUS_MASTER, (
        f"{AHCI} COMMAND {C.u16(after, C.COMMAND):#06x} after restore under lockdown; "
        f"report: {ahci}; sysfs enable 1/0 probe: {lockdown.text('capture/enable-probe')}"
    )


def test_lockdown_dump_is_saved_with_its_notes(lockdown: Result) -> None:
    dump = C.dump_dir(lockdown) / "vmcore"
    code, doc = C.inspect_json(dump)
    assert code == 0, doc
    assert [n["owner"] for n in doc["container"]["notes"]] == [
        "CORE",
        "CORE",
        "VMCOREINFO",
        "HANDOFF",
        "HANDOFF",
    ]
    assert doc["container"]["reports"][0]["report"] == _report(lockdown)
