"""End-to-end proof of the early collector's boot hooks on real boots (contrib/README.md).

For each generator, Debian 12's own `update-initramfs -u` (initramfs-tools) or
`dracut -f --kver` (dracut, with systemd in the initrd) builds the first kernel's initrd in a
debootstrapped chroot, after the README's commands installed the hooks and the collector
(e2e_harness/bootinitrd.py). QEMU boots the first kernel from that initrd; its root is the
harness's disk (root=LABEL=e2eroot) and its init the harness's (init=). In the real root,
`handoff save` reads what the hook left in /run/handoff/early.bin. The scenarios end there
(transition "poweroff": no capture kernel).

What is proven, per generator:
1. the snapshot exists in the real root and was written inside the initramfs: its own uptime
   lies between the kernel starting /init and the root mount, after no module load but those
   PID 1 made itself and before the first udev module load, and the file's mtime agrees; the
   root disk has no collector of its own;
2. `handoff save --json` and the record (`handoff inspect --json` on the host) name the
   collector as the early source of every device no driver had bound, and the record's early
   bytes are the snapshot's (pci=earlydump's for the bound ones);
3. the snapshot predates the drivers: only built-in drivers (pcieport) and, in systemd's
   initrd under QEMU, virtio_pci (loaded by systemd's PID 1 before any unit) had bound; every
   other function's first 256 bytes equal the kernel's pci=earlydump; the e1000 at 00:05.0
   (and, without systemd, the virtio-net at 02:00.0) has Bus Master off early and on live;
4. the disable switch (handoff.early=0, rd.handoff.early=0) leaves no snapshot.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from e2e_harness import Result, Scenario, bootinitrd, run
from e2e_harness import checks as C

pytestmark = pytest.mark.e2e

KINDS = ("initramfs-tools", "dracut")
ROOT_PORTS = {f"0000:00:0{i}.0" for i in range(1, 5)}
E1000 = "0000:00:05.0"
LPC = "0000:00:1f.0"
NVME = "0000:01:00.0"
VNET = "0000:02:00.0"
VIRTIO = {VNET, "0000:03:00.0", "0000:04:00.0"}  # virtio-net, virtio-blk root and results
# The ICH9 LPC bridge's PIRQA-D/PIRQE-H routing registers: the kernel's ACPI interrupt-link
# code rewrites them during boot, before any module loads (not a driver).
LPC_PIRQ_ROUT = {*range(0x60, 0x64), *range(0x68, 0x6C)}
# What the initrd must hold: the collector and each generator's hook.
HOOK_PATHS = {
    "initramfs-tools": ("usr/lib/handoff/handoff-early-collect", "scripts/init-top/handoff-early"),
    "dracut": (
        "usr/lib/handoff/handoff-early-collect",
        "usr/lib/dracut/hooks/pre-udev/00-handoff-early.sh",
    ),
}
SNAPSHOT = "/run/handoff/early.bin"
# s: how late _snapshot_time may be (/proc/uptime's 10 ms resolution, the kmsg write).
CLOCK_SLACK = 0.05


def _scenario(kind: str, disabled: bool = False) -> Scenario:
    sc = Scenario.from_dir(f"early-{kind}")
    if disabled:
        sc = dataclasses.replace(
            sc,
            name=f"{sc.name}-off",
            extra_cmdline=f"{sc.extra_cmdline} {bootinitrd.DISABLE_ARG[kind]}".strip(),
        )
    return sc


@pytest.fixture(scope="module", params=KINDS)
def early(
    request: pytest.FixtureRequest, qemu_ready: None, e2e_report: Callable[[Result], None]
) -> Result:
    result = run(_scenario(request.param))
    e2e_report(result)
    return result


@pytest.fixture(scope="module", params=KINDS)
def early_off(
    request: pytest.FixtureRequest, qemu_ready: None, e2e_report: Callable[[Result], None]
) -> Result:
    result = run(_scenario(request.param, disabled=True))
    e2e_report(result)
    return result


def _kind(result: Result) -> str:
    assert result.first_initrd is not None, "the run did not boot a real initrd"
    return result.first_initrd.kind


def _snapshot(result: Result) -> C.EarlySnapshot:
    assert "first/early.bin" in result.files, (
        f"no {SNAPSHOT} in the real root; /run/handoff: "
        f"{result.text('first/run-handoff.ls').strip()}; initrd console:\n"
        + "\n".join(result.serial_log.splitlines()[-40:])
    )
    return C.early_snapshot(result.read("first/early.bin"))


def _klog(result: Result) -> list[tuple[float, str]]:
    return C.kernel_log(result.text("first/dmesg.txt"))


def _snapshot_time(result: Result) -> float:
    """The snapshot's CLOCK_BOOTTIME, moved onto the kernel log's (and ftrace's) clock through
    the kmsg line early_evidence wrote with /proc/uptime in it."""
    t_log, msg = C.first_event(_klog(result), r"^handoff-e2e uptime [\d.]+$")
    offset = t_log - float(msg.split()[-1])
    return _snapshot(result).uptime_ns / 1e9 + offset


def _save(result: Result) -> dict[str, Any]:
    assert result.text("first/save.rc").strip() == "0", result.text("first/save.err")
    return json.loads(result.read("first/save.json"))


def _cmd(cfg: bytes) -> int:
    return C.u16(cfg, C.COMMAND)


def _bound_at_collection(result: Result) -> set[str]:
    """What may be bound when the hook runs: built-in pcieport, plus the virtio functions when
    PID 1 loaded virtio_pci before the snapshot (systemd's kmod setup does under QEMU)."""
    t = _snapshot_time(result)
    early_modules = {m.module for m in C.module_loads(result.text("first/trace.txt")) if m.t < t}
    return ROOT_PORTS | (VIRTIO if "virtio_pci" in early_modules else set())


# -- how the initrd was built and booted ------------------------------------------------------


def test_early_initrd_was_built_by_the_readme_steps_and_booted(early: Result) -> None:
    kind = _kind(early)
    expected = [s.name for s in _scenario(kind).stages()]
    assert [s.name for s in early.stages if s.name in expected] == expected
    assert early.first_initrd is not None
    info = early.first_initrd.info
    readme = bootinitrd.readme_commands(bootinitrd.SECTIONS[kind])
    ran: list[str] = info["commands"]
    chroot_cmds = [c.removeprefix("[chroot] ") for c in ran if c.startswith("[chroot] ")]
    host_cmds = [c for c in ran if c.startswith("[host] ")]
    # Every README command ran: make on the host (into the chroot), the rest in the chroot,
    # dracut with --kver for the guest kernel.
    assert readme[0] == "make -C csrc/collector install"
    assert len(host_cmds) == 1 and " install DESTDIR=" in host_cmds[0]
    want = [c + (f" --kver {info['kernel']}" if c.startswith("dracut") else "") for c in readme[1:]]
    assert [c for c in chroot_cmds if c in want] == want, (chroot_cmds, want)
    assert kind in info["packages"], info["packages"]  # the generator, from the chroot's dpkg
    listing = {line.split()[-1] for line in early.first_initrd.contents().splitlines() if line}
    for path in HOOK_PATHS[kind]:
        assert path in listing, f"{path} is not in the {kind} initrd"
    cmdline = early.text("first/cmdline").split()
    assert "root=LABEL=e2eroot" in cmdline and "init=/sbin/e2e-first-init" in cmdline
    # The harness's own initramfs was not used: the kernel ran the initrd's /init.
    assert "first-init" not in [s.name for s in early.stages]


# -- 1. written by the hook, inside the initramfs ---------------------------------------------


def test_early_snapshot_is_in_the_real_root_and_from_this_boot(early: Result) -> None:
    snap = _snapshot(early)
    assert snap.boot_id == early.text("first/boot_id").strip()
    assert snap.flags == 0, "some config read was short"
    assert set(snap.entries) == set(C.config_dir(early, "first/config-live"))
    # The real root has no collector: only the initrd's hook can have written the file.
    assert "No such file" in early.text("first/root-usr-lib-handoff.ls")
    mounts = [line.split() for line in early.text("first/mounts").splitlines()]
    assert any(m[1] == "/run" and m[2] == "tmpfs" for m in mounts), "no tmpfs /run"


def test_early_snapshot_was_taken_inside_the_initramfs_before_udev(
    early: Result, record_property: Callable[[str, object], None]
) -> None:
    kind = _kind(early)
    log = _klog(early)
    t_snap = _snapshot_time(early)
    t_init, _ = C.first_event(log, r"^Run /init as init process")
    t_root, root_msg = C.first_event(log, r"^EXT4-fs \(vd[a-z]+\): mounted filesystem")
    loads = C.module_loads(early.text("first/trace.txt"))
    assert loads, "no module_load events: was the first kernel booted with trace_event=?"
    # t_snap may be late by up to CLOCK_SLACK (never early): "before" leaves that window out.
    before = [m for m in loads if m.t < t_snap - CLOCK_SLACK]
    after = [m for m in loads if m.t > t_snap]
    record_property(f"{kind}:snapshot_s", round(t_snap, 3))
    record_property(f"{kind}:init_s", t_init)
    record_property(f"{kind}:root_mount_s", t_root)
    record_property(f"{kind}:modules_before", [f"{m.module}@{m.task}" for m in before])
    assert t_init < t_snap < t_root, (
        f"snapshot at {t_snap:.3f} s is not between /init ({t_init} s) and the root mount "
        f"({t_root} s: {root_msg})"
    )
    udev = [m for m in loads if "udev" in m.task]  # "(udev-worker)-N", "systemd-udevd-N"
    assert udev, f"no module loaded by udev at all: {loads[:5]}"
    assert udev[0].t > t_snap, (
        f"{udev[0].module} was loaded by {udev[0].task} at {udev[0].t} s, before the "
        f"snapshot at {t_snap:.3f} s"
    )
    assert after, "nothing loaded after the snapshot"
    if kind == "initramfs-tools":
        # init-top runs before init-top/udev and before load_modules: nothing is loaded yet.
        assert before == [], f"modules loaded before the init-top hook: {before}"
    else:
        # systemd's PID 1 loads a few modules itself before any unit (kmod setup: autofs4,
        # and under QEMU virtio_pci and qemu_fw_cfg); nothing else may precede pre-udev.
        assert before and all(m.task == "systemd-1" for m in before), before
        t_hook, _ = C.first_event(log, r"systemd\[1\]: Starting dracut-pre-udev\.service")
        t_udevd, _ = C.first_event(log, r"systemd\[1\]: Starting systemd-udevd\.service")
        record_property(f"{kind}:pre_udev_s", t_hook)
        record_property(f"{kind}:udevd_s", t_udevd)
        assert t_hook < t_snap < t_udevd, (
            f"snapshot at {t_snap:.3f} s is not between dracut-pre-udev.service starting "
            f"({t_hook} s) and systemd-udevd.service starting ({t_udevd} s)"
        )
    # The file's own mtime (1 s resolution) agrees: it was not rewritten after the root mount.
    mtime = int(early.text("first/early.stat").split()[0])
    date, uptime = early.text("first/clock").split()
    boot_epoch = int(date) - float(uptime)
    assert mtime - boot_epoch < t_root + 2.0, (mtime, boot_epoch, t_root)
    assert abs(_snapshot(early).created_ns / 1e9 - mtime) < 2.0


# -- 2. handoff save uses it ------------------------------------------------------------------


def test_early_handoff_save_takes_the_collector_unless_a_driver_was_bound(early: Result) -> None:
    """Every function's early state is the collector's, except those a driver had already
    bound when the hook ran (entry_flags bit 0): for those, save prefers pci=earlydump
    (this boot has it), whose 256 bytes are firmware's."""
    snap = _snapshot(early)
    save = _save(early)
    dump = C.earlydump(early.text("first/dmesg.txt"))
    assert save["early_sources"][0] == f"collector ({SNAPSHOT})", save["early_sources"]
    by_addr = {d["addr"]: d for d in save["devices"]}
    assert set(by_addr) == set(snap.entries)
    want = {a: "earlydump" if e.driver_bound else "collector" for a, e in snap.entries.items()}
    assert "collector" in want.values()
    for addr, dev in by_addr.items():
        assert dev["early"] == want[addr], (addr, dev)
        if want[addr] == "collector":
            assert dev["early_partial"] is None, (addr, dev)
    # The record, read on the host: inspect names the same sources, and the early bytes are
    # the snapshot's (4096 bytes for PCIe functions, which pci=earlydump could never give),
    # or pci=earlydump's for the functions that were bound.
    record = early.files["first/record.bin"]
    code, doc = C.inspect_json(record)
    assert code == 0, doc
    (rec,) = doc["records"]
    assert rec["valid"] and {d["addr"]: d["early"] for d in rec["devices"]} == want, \
        rec["devices"]
    for addr, ent in snap.entries.items():
        data = C.snapshot(C.record_device(record, addr), "early")
        expected = dump[addr] if ent.driver_bound else ent.data
        assert data == expected, f"{addr}: the record's early bytes are not {want[addr]}'s"
    assert len(snap.entries[NVME].data) == 4096 and len(snap.entries[E1000].data) == 256


# -- 3. before the drivers --------------------------------------------------------------------


def test_early_snapshot_predates_the_drivers(
    early: Result, record_property: Callable[[str, object], None]
) -> None:
    kind = _kind(early)
    snap = _snapshot(early)
    dump = C.earlydump(early.text("first/dmesg.txt"))
    live = C.config_dir(early, "first/config-live")
    drivers = dict(line.split() for line in early.text("first/drivers-live").splitlines())
    bound = {a for a, e in snap.entries.items() if e.driver_bound}
    record_property(f"{kind}:bound_at_collection", sorted(bound))
    record_property(
        f"{kind}:command_early_live",
        {a: f"{_cmd(e.data):04x}/{_cmd(live[a]):04x}" for a, e in snap.entries.items()},
    )
    assert bound == _bound_at_collection(early), (
        f"functions with a driver when the hook ran: {sorted(bound)}"
    )
    for addr in bound:
        assert drivers.get(addr) in ("pcieport", "virtio-pci"), (addr, drivers.get(addr))
    # No driver had touched the others: their config space is what the kernel's
    # pci=earlydump printed during enumeration (the LPC bridge's IRQ routing aside).
    assert set(dump) == set(snap.entries)
    for addr, ent in snap.entries.items():
        if ent.driver_bound:
            continue
        diff = [i for i in range(256) if ent.data[i] != dump[addr][i]]
        allowed = LPC_PIRQ_ROUT if addr == LPC else set()
        assert set(diff) <= allowed, (
            f"{addr}: bytes {[hex(i) for i in diff]} differ from pci=earlydump"
        )
    # Bus Master: off before the driver, on after it bound.
    for addr in [E1000] + ([VNET] if VNET not in bound else []):
        early_cmd, live_cmd = _cmd(snap.entries[addr].data), _cmd(live[addr])
        assert not early_cmd & C.BUS_MASTER, f"{addr} early COMMAND {early_cmd:#06x}"
        assert live_cmd & C.BUS_MASTER, f"{addr} live COMMAND {live_cmd:#06x}"
        assert drivers.get(addr) in ("e1000", "virtio-pci"), drivers.get(addr)
    # The NVMe function had Bus Master before any driver: SeaBIOS's NVMe driver set it, as
    # pci=earlydump shows too, so it proves nothing about ordering here.
    assert _cmd(snap.entries[NVME].data) == _cmd(dump[NVME])
    assert drivers.get(NVME) == "nvme"


# -- 4. the disable switch ---------------------------------------------------------------------


def test_early_disable_switch_leaves_no_snapshot(early_off: Result) -> None:
    kind = _kind(early_off)
    assert bootinitrd.DISABLE_ARG[kind] in early_off.text("first/cmdline").split()
    assert "first/early.bin" not in early_off.files
    assert "No such file" in early_off.text("first/run-handoff.ls")
    save = _save(early_off)
    assert not any(s.startswith("collector") for s in save["early_sources"]), save
    # pci=earlydump is still there, and handoff save falls back to it.
    assert {d["early"] for d in save["devices"]} == {"earlydump"}, save["devices"]
