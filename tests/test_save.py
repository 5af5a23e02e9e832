"""handoff save: the sysfs walk, early sources, payload, record, generation, CLI, lspci."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from helpers import fakesysfs as F

from handoff import payload as P
from handoff import record
from handoff.devices import capabilities as caps
from handoff.devices.model import devices_from_payload
from handoff.devices.pci import NOT_ROOT, collect
from handoff.devices.pciids import PciIds
from handoff.errors import UsageError
from handoff.identity import IdentitySource
from handoff.save import (
    build_payload,
    collect_devices,
    default_policy,
    previous_generation,
    save,
)
from handoff.sysfs import SysfsTree

BOOT_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
EARLY_LOG = Path(__file__).parent / "fixtures" / "earlydump" / "q35-kmsg.txt"

def identity(tmp: Path, boot_id: str = BOOT_ID) -> IdentitySource:
    (tmp / "id" / "proc/sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (tmp / "id" / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")
    (tmp / "id" / "proc/sys/kernel/osrelease").write_text("6.1.0-56-amd64\n")
    (tmp / "id" / "proc/sys/kernel/hostname").write_text("q35\n")
    (tmp / "id" / "etc").mkdir(exist_ok=True)
    (tmp / "id" / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    return IdentitySource(root=tmp / "id", clock=lambda: 1_700_000_000_000_000_000)


q35 = F.q35_tree


def fixture_config(addr: str) -> bytes:
    return (F.Q35 / f"{addr}.bin").read_bytes()


# --- the real /sys -----------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="full config reads need root")
@pytest.mark.skipif(not os.path.isdir("/sys/bus/pci/devices"), reason="no PCI sysfs")
def test_real_sys() -> None:
    res = collect_devices(SysfsTree())
    names = os.listdir("/sys/bus/pci/devices")
    assert len(res.devices) == len(names)
    for d in res.devices:
        size = os.stat(f"/sys/bus/pci/devices/{d.addr}/config").st_size
        assert len(d.live.data) == size == d.live.size, d.addr
        assert d.live.partial is None
        assert d.path[-1] == d.addr and d.path[0].startswith("pci")
    P.validate(build_payload(res.devices))


@pytest.mark.skipif(os.geteuid() != 0, reason="full config reads need root")
@pytest.mark.skipif(not os.path.isdir("/sys/bus/pci/devices"), reason="no PCI sysfs")
def test_real_sys_record_round_trip(tmp_path: Path) -> None:
    res = save(tmp_path / "rec", SysfsTree())
    rec = record.parse((tmp_path / "rec").read_bytes(), exact=True)
    back = devices_from_payload(rec.payload)
    assert [d.live.data for d in back] == [d.live.data for d in res.devices]


# --- fake trees: model -------------------------------------------------------------------

def test_fake_tree_model(tmp_path: Path) -> None:
    tree = q35(tmp_path, sriov={"0000:02:00.0": (8, 2)})
    coll = collect(tree, privileged=True)
    by = {d.addr: d for d in coll.devices}
    assert sorted(by) == sorted(p.name[:-4] for p in F.Q35.glob("*.bin"))
    assert coll.warnings == []
    nvme = by["0000:01:00.0"]
    assert nvme.path == ["pci0000:00", "0000:00:01.0", "0000:01:00.0"]
    assert nvme.parent == "0000:00:01.0"
    assert by["0000:00:01.0"].parent is None
    assert nvme.driver == "nvme" and by["0000:00:1f.0"].driver is None
    assert nvme.classes == ["block", "nvme"]
    assert by["0000:02:00.0"].classes == ["net"] and by["0000:00:05.0"].classes == ["net"]
    assert by["0000:03:00.0"].classes == ["block"]
    assert by["0000:00:01.0"].classes == []  # pci_bus is PCI-core bookkeeping
    assert nvme.reset_methods == ["flr", "bus"]
    assert by["0000:02:00.0"].reset_methods == ["flr", "pm", "bus"]
    assert by["0000:00:05.0"].reset_methods == []
    assert by["0000:02:00.0"].sriov == (8, 2) and nvme.sriov is None
    e1000 = by["0000:00:05.0"]
    assert [(b.index, b.start, b.size) for b in e1000.bars] == [
        (0, 0xFE240000, 128 << 10), (1, 0xC000, 64), (6, 0xFE200000, 256 << 10)]
    assert e1000.bars[1].is_io and e1000.bars[0].is_mem
    for d in coll.devices:  # ids come from config; they must agree with sysfs attributes
        assert d.ids.vendor == int(tree.attr(d.addr, "vendor") or "0", 16)
        assert d.ids.class_code == int(tree.attr(d.addr, "class") or "0", 16)
        assert d.ids.subvendor == int(tree.attr(d.addr, "subsystem_vendor") or "0", 16)
        assert d.live.data == fixture_config(d.addr)
    assert by["0000:00:01.0"].ids.subvendor == 0x1B36  # bridge: from the SSVID capability


def test_firecracker_tree_uses_realpath(tmp_path: Path) -> None:
    tree = SysfsTree(F.build_tree(tmp_path / "sys", F.FIRECRACKER))
    coll = collect(tree, privileged=True)
    assert [d.path for d in coll.devices][1] == ["pci0000:00", "0000:00:01.0"]
    assert {d.driver for d in coll.devices} == {None, "virtio-pci"}
    assert coll.devices[0].live.size == 4096


def test_dsn_and_capability_walk(tmp_path: Path) -> None:
    cfg = bytearray(fixture_config("0000:01:00.0"))
    # Put a DSN ext cap (id 3, version 1) at 0x100, chained to an AER at 0x140.
    cfg[0x100:0x10C] = (0x0003 | 1 << 16 | 0x140 << 20).to_bytes(4, "little") + \
        (0x0123456789ABCDEF).to_bytes(8, "little")
    cfg[0x140:0x144] = (0x0001 | 2 << 16).to_bytes(4, "little")
    tree = q35(tmp_path, config_override={"0000:01:00.0": bytes(cfg)})
    nvme = {d.addr: d for d in collect(tree, privileged=True).devices}["0000:01:00.0"]
    assert nvme.dsn == 0x0123456789ABCDEF
    ext = caps.walk_extended(bytes(cfg))
    assert [(c.offset, c.name, c.version) for c in ext.caps] == [(0x100, "dsn", 1),
                                                                  (0x140, "aer", 2)]
    std = caps.walk_standard(bytes(cfg)).caps
    assert [(c.offset, c.name) for c in std] == [(0x40, "msix"), (0x80, "pcie"), (0x60, "pm")]


def test_capability_loops_are_bounded(tmp_path: Path) -> None:
    cfg = bytearray(fixture_config("0000:01:00.0"))
    cfg[0x100:0x104] = (0x0001 | 1 << 16 | 0x100 << 20).to_bytes(4, "little")  # -> itself
    cfg[0x61] = 0x40  # standard list: pm -> msix -> pcie -> pm ...
    w = caps.walk_extended(bytes(cfg))
    assert len(w.caps) == 1 and w.problem and "loops" in w.problem
    s = caps.walk_standard(bytes(cfg))
    assert len(s.caps) == 3 and s.problem and "loops" in s.problem
    # Points into the header, past the end, or a 0xff id: stops with a reason.
    cfg2 = bytearray(cfg)
    cfg2[0x100:0x104] = (0x0001 | 1 << 16 | 0x10 << 20).to_bytes(4, "little")
    assert "standard header" in (caps.walk_extended(bytes(cfg2)).problem or "")
    assert caps.walk_extended(bytes(cfg)[:0x102]).caps == []
    tree = q35(tmp_path, config_override={"0000:01:00.0": bytes(cfg)})
    warnings = collect(tree, privileged=True).warnings
    assert any(w.startswith("0000:01:00.0: extended capability list loops") for w in warnings)


def test_non_root_partial_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the kernel does for a reader without CAP_SYS_ADMIN: full-size file, 64 bytes read.
    tree = q35(tmp_path)
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: real(fd, min(n, 64), off))
    coll = collect(tree, privileged=False)
    for d in coll.devices:
        assert len(d.live.data) == 64 and d.live.partial == NOT_ROOT
        assert d.live.size == len(fixture_config(d.addr))  # from the file size
        snap = d.live.to_payload()
        assert snap["len"] == 64 and snap["partial"] == NOT_ROOT
    assert coll.warnings[0].startswith("13 device(s) read partially: not root")
    # Bridges' subsystem ids live past 64 bytes: taken from sysfs instead.
    assert {d.addr: d for d in coll.devices}["0000:00:01.0"].ids.subvendor == 0x1B36
    P.validate(build_payload(coll.devices))


def test_non_root_partial_tree_and_cli_warning(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35, config_limit=64)
    monkeypatch.setattr("handoff.devices.pci.is_privileged", lambda: False)
    out, err, rc = run_cli(["save", "--sysfs-root", str(root)])
    assert rc == 0
    assert "handoff: warning: 13 device(s) read partially: not root: the kernel returns 64 " \
           "bytes of config space to unprivileged readers" in err
    assert re.search(r"^0000:01:00\.0 .* 64/256 ", out, re.MULTILINE)


# --- early sources -----------------------------------------------------------------------

def test_earlydump_source(tmp_path: Path) -> None:
    res = collect_devices(q35(tmp_path), early_log=EARLY_LOG, running_kernel=False)
    by = {d.addr: d for d in res.devices}
    nvme = by["0000:01:00.0"]
    assert nvme.early is not None and nvme.early.source == "earlydump"
    assert nvme.early.size == 4096 and len(nvme.early.data) == 256
    assert nvme.early.partial == "earlydump prints 256 bytes"
    e1000 = by["0000:00:05.0"]
    assert e1000.early is not None and e1000.early.partial is None
    assert e1000.early.data == (F.Q35_CAPTURE / "0000:00:05.0.bin").read_bytes()


def test_no_early_source_means_live(tmp_path: Path) -> None:
    res = collect_devices(q35(tmp_path), running_kernel=False)
    assert all(d.early is None for d in res.devices)
    out, _, _ = run_cli(["save", "--sysfs-root", str(tmp_path / "sys")])
    rows = [ln for ln in out.splitlines() if ln.startswith("0000:")]
    assert len(rows) == 13 and all(" live " in r for r in rows)


def test_earlydump_with_wrong_ids_is_not_used(tmp_path: Path) -> None:
    text = EARLY_LOG.read_text().replace("4,3,0,-; 86", "4,3,0,-; 87", 1)  # 00:00.0 vendor
    log = tmp_path / "log"
    log.write_text(text)
    res = collect_devices(q35(tmp_path), early_log=log, running_kernel=False)
    assert {d.addr: d for d in res.devices}["0000:00:00.0"].early is None
    assert any("8087:29c0, live is 8086:29c0" in n for n in res.notes)


def test_journal_fallback_when_kmsg_has_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "kmsg"
    empty.write_text("")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("BOOT_IMAGE=/vmlinuz root=/dev/vda pci=nomsi,earlydump quiet\n")
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> str:
        calls.append(list(argv))
        return F.Q35.parent.joinpath("..", "earlydump", "q35-dmesg.txt").read_text()

    res = collect_devices(q35(tmp_path), running_kernel=True, kmsg_path=str(empty),
                          early_snapshot=tmp_path / "none.bin", runner=runner,
                          cmdline_path=str(cmdline))
    assert calls == [["journalctl", "-k", "-b", "-o", "cat", "--no-pager", "-q"]]
    assert all(d.early is not None and d.early.source == "earlydump" for d in res.devices)


@pytest.mark.parametrize("line, expected", [
    ("root=/dev/vda quiet", False),
    ("pci=nomsi root=/dev/vda", False),
    ("earlydump pci=noearly", False),  # only an option of pci= counts
    ("pci=earlydump", True),
    ("root=/dev/vda pci=realloc,earlydump,nomsi", True),
])
def test_kernel_log_is_searched_only_after_pci_earlydump(tmp_path: Path, line: str,
                                                          expected: bool) -> None:
    from handoff.devices.early import booted_with_earlydump

    cmdline = tmp_path / "cmdline"
    cmdline.write_text(line + "\n")
    assert booted_with_earlydump(str(cmdline)) is expected
    assert booted_with_earlydump(str(tmp_path / "absent")) is None
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> str:
        calls.append(list(argv))
        return F.Q35.parent.joinpath("..", "earlydump", "q35-dmesg.txt").read_text()

    # No /dev/kmsg here: with pci=earlydump, save falls back to the journal (the runner).
    res = collect_devices(q35(tmp_path), running_kernel=True,
                          kmsg_path=str(tmp_path / "no-kmsg"),
                          early_snapshot=tmp_path / "none.bin", runner=runner,
                          cmdline_path=str(cmdline))
    used = [d for d in res.devices if d.early is not None]
    assert bool(used) is expected and bool(calls) is expected
    assert any("no-kmsg" in n for n in res.notes) is expected


# --- payload and record ------------------------------------------------------------------

def test_payload_round_trip_preserves_config(tmp_path: Path) -> None:
    from handoff import cbor

    res = collect_devices(q35(tmp_path), early_log=EARLY_LOG, running_kernel=False)
    p = build_payload(res.devices)
    P.validate(p)
    back = devices_from_payload(cbor.loads(cbor.dumps(p)))
    for a, b in zip(res.devices, back):
        assert b.live.data == a.live.data == fixture_config(a.addr)
        assert b.early is not None and a.early is not None and b.early.data == a.early.data
        assert (b.path, b.driver, b.classes, b.bars, b.reset_methods, b.policy) == \
            (a.path, a.driver, a.classes, a.bars, a.reset_methods, a.policy)


def test_record_round_trip_and_size(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    res = save(out, q35(tmp_path), identity=identity(tmp_path), early_log=EARLY_LOG,
               running_kernel=False)
    rec = record.parse(out.read_bytes(), exact=True)
    assert rec.boot_id == BOOT_ID and rec.generation == 1
    back = {d.addr: d for d in devices_from_payload(rec.payload)}
    assert len(back) == 13
    for d in res.devices:
        assert back[d.addr].live.data == fixture_config(d.addr)  # every byte
        assert back[d.addr].early == d.early
    assert len(rec.raw) < 8 * 1024, len(rec.raw)


def test_record_with_full_early_snapshots_stays_under_8k(tmp_path: Path) -> None:
    # Worst case for size: a full 4096-byte early snapshot per device (collector-style),
    # taken from the capture-kernel dumps so early and live differ.
    from handoff.devices.model import Snapshot

    res = collect_devices(q35(tmp_path), running_kernel=False)
    for d in res.devices:
        d.early = Snapshot("collector", d.live.size,
                           (F.Q35_CAPTURE / f"{d.addr}.bin").read_bytes())
    rec = record.encode(build_payload(res.devices), identity(tmp_path).producer(), 1)
    assert len(rec) < 8 * 1024, len(rec)


def test_generation(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    tree = q35(tmp_path)
    assert save(out, tree, identity=identity(tmp_path), running_kernel=False).generation == 1
    assert save(out, tree, identity=identity(tmp_path), running_kernel=False).generation == 2
    assert previous_generation(out, BOOT_ID) == 2
    other = identity(tmp_path / "b", "99999999-2222-3333-4444-555555555555")
    (tmp_path / "b").mkdir(exist_ok=True)
    assert save(out, tree, identity=other, running_kernel=False).generation == 1
    out.write_bytes(b"garbage")
    with pytest.raises(UsageError, match=r"^refusing to replace .*/rec: it exists and is not a "
                       r"handoff record \(7 bytes\)$"):
        save(out, tree, identity=identity(tmp_path), running_kernel=False)
    assert out.read_bytes() == b"garbage"
    assert save(out, tree, identity=identity(tmp_path), running_kernel=False,
                force=True).generation == 1
    assert previous_generation("/dev/null", BOOT_ID) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(["b", "id", "rec", "sys"])  # no temp files


def test_payload_without_core(tmp_path: Path) -> None:
    # save() with an injected encoder: the library path works without the C core.
    got: dict[str, object] = {}

    def enc(p: dict[str, object], producer: object, gen: int) -> bytes:
        P.validate(p)
        got["gen"] = gen
        return b"R"

    res = save(tmp_path / "out", q35(tmp_path), identity=identity(tmp_path), encode=enc,
               running_kernel=False)
    assert got == {"gen": 1} and (tmp_path / "out").read_bytes() == b"R" == res.record


def test_recorded_policy_is_the_restore_engines_default(tmp_path: Path) -> None:
    from handoff.restore.policy import DEFAULT_POLICY

    res = collect_devices(q35(tmp_path), running_kernel=False, privileged=True)
    devs = {d.addr: d for d in res.devices}
    assert devs["0000:00:01.0"].policy == "restore-live"  # bridge, no early state here
    assert devs["0000:00:00.0"].policy == "skip"  # host bridge
    for d in res.devices:
        assert d.policy == DEFAULT_POLICY.decide(d).action, d.addr
    e1000 = devs["0000:00:05.0"]
    e1000.driver = None  # bus master (COMMAND bit 2 set in the dump) with no driver
    assert e1000.live.data[4] & 4
    assert default_policy(e1000) == "quiesce"


# --- CLI ---------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> tuple[str, str, int]:
    from handoff.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(argv)
    return out.getvalue(), err.getvalue(), rc


def test_cli_table_columns(tmp_path: Path) -> None:
    q35(tmp_path)
    out, err, rc = run_cli(["save", "--sysfs-root", str(tmp_path / "sys"),
                            "--early-log", str(EARLY_LOG)])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ADDR", "IDS", "DRIVER", "CLASS", "CONFIG", "EARLY", "POLICY",
                                "NAME"]
    row = next(ln for ln in lines if ln.startswith("0000:01:00.0"))
    assert row.split()[:6] == ["0000:01:00.0", "1b36:0010", "nvme", "010802", "4096",
                               "earlydump"]
    assert "(256/4096)" in row
    # lspci's name for it, from this system's pci.ids (numeric without one)
    assert row.endswith(" " + PciIds().vendor_device(0x1B36, 0x0010))
    assert lines[-1].startswith("13 device(s)")


def test_cli_writes_record_and_json(tmp_path: Path) -> None:
    q35(tmp_path)
    rec = tmp_path / "r.bin"
    out, err, rc = run_cli(["save", "--sysfs-root", str(tmp_path / "sys"), "-o", str(rec)])
    assert rc == 0, err
    assert out.startswith(f"wrote {rec}: 13 device(s), generation 1")
    record.parse(rec.read_bytes(), exact=True)
    out, err, rc = run_cli(["save", "--sysfs-root", str(tmp_path / "sys"), "-o", str(rec),
                            "--json"])
    doc = json.loads(out)
    assert doc["schema_version"] == 1 and doc["kind"] == "save"
    assert doc["generation"] in (1, 2) and len(doc["devices"]) == 13
    assert {d["addr"]: d for d in doc["devices"]}["0000:01:00.0"]["parent"] == "0000:00:01.0"


def test_cli_bad_root(tmp_path: Path) -> None:
    _, err, rc = run_cli(["save", "--sysfs-root", str(tmp_path)])
    assert rc == 4 and "hint:" in err


# --- lspci reads the same trees ----------------------------------------------------------

def lspci_dump(root: Path) -> dict[str, bytes]:
    r = subprocess.run(["lspci", "-A", "linux-sysfs", "-O", f"sysfs.path={root}/bus/pci",
                        "-D", "-n", "-xxxx"], capture_output=True, text=True, check=True)
    out: dict[str, bytearray] = {}
    cur = None
    for ln in r.stdout.splitlines():
        m = re.match(r"^([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) ", ln)
        if m:
            cur = out.setdefault(m.group(1), bytearray())
        elif cur is not None and re.match(r"^[0-9a-f]{2,3}: ", ln):
            cur += bytes.fromhex(ln.split(":", 1)[1])
    return {k: bytes(v) for k, v in out.items()}


@pytest.mark.skipif(not shutil.which("lspci"), reason="pciutils not installed")
def test_lspci_reads_our_fake_tree(tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    # A copy with its symlinks must work for both tools (lspci and handoff save).
    copy = F.copy_tree(root, tmp_path / "copy")
    for r in (root, copy):
        dumps = lspci_dump(r)
        ours = {d.addr: d.live.data for d in collect(SysfsTree(r), privileged=True).devices}
        assert dumps == ours
        assert all(dumps[a] == fixture_config(a) for a in dumps)
    tree = subprocess.run(["lspci", "-A", "linux-sysfs", "-O", f"sysfs.path={copy}/bus/pci",
                           "-tn"], capture_output=True, text=True, check=True).stdout
    assert "+-01.0-[01]----00.0" in tree and "+-04.0-[04]----00.0" in tree
    vv = subprocess.run(["lspci", "-A", "linux-sysfs", "-O", f"sysfs.path={copy}/bus/pci",
                         "-vvv", "-s", "00:05.0"], capture_output=True, text=True, check=False).stdout
    assert "Kernel driver in use: e1000" in vv and "I/O ports at c000 [size=64]" in vv


@pytest.mark.skipif(not shutil.which("lspci"), reason="pciutils not installed")
def test_synthetic_tree(tmp_path: Path) -> None:
    root = F.synthetic_tree(tmp_path / "syn", 100)
    coll = collect(SysfsTree(root), privileged=True)
    assert len(coll.devices) == 100 and coll.warnings == []
    assert lspci_dump(root) == {d.addr: d.live.data for d in coll.devices}
    assert all(d.parent for d in coll.devices if d.addr[5:7] != "00")


def test_never_writes_into_sysfs() -> None:
    from handoff.errors import UsageError
    from handoff.save import write_atomic

    with pytest.raises(UsageError, match="refusing to write a record to /sys/"):
        write_atomic("/sys/bus/pci/devices/x", b"R")
    _, err, rc = run_cli(["save", "-o", "/sys/kernel/handoff"])
    assert rc == 2 and "refusing" in err


def test_early_state_read_while_bound_yields_to_earlydump() -> None:
    from handoff.devices.early import EARLYDUMP_PARTIAL, EarlySources, EarlyState, resolve

    addr = "0000:00:05.0"
    fw = bytes([0x86, 0x80, 0x0E, 0x10, 0x03, 0x01]) + bytes(250)
    drv = bytes([0x86, 0x80, 0x0E, 0x10, 0x07, 0x01]) + bytes(250)
    src = EarlySources()
    src.add(addr, EarlyState("collector", drv, 256, None, (0x8086, 0x100E), bound=True))
    src.add(addr, EarlyState("earlydump", fw, None, None, (0x8086, 0x100E)))
    st, notes = resolve(src, addr, 256, 0x8086, 0x100E)
    assert st is not None and st.source == "earlydump" and st.data == fw
    assert notes == [(f"{addr}: a driver was bound when the collector read it; using earlydump "
                     "instead (firmware's state)")]
    # Without another source the bound state is still better than none; not bound, it wins.
    only = EarlySources()
    only.add(addr, EarlyState("collector", drv, 256, None, (0x8086, 0x100E), bound=True))
    assert resolve(only, addr, 256, 0x8086, 0x100E) == (only.best(addr), [])
    free = EarlySources()
    free.add(addr, EarlyState("collector", fw, 256, None, (0x8086, 0x100E)))
    free.add(addr, EarlyState("earlydump", drv, None, None, (0x8086, 0x100E)))
    assert resolve(free, addr, 256, 0x8086, 0x100E)[0].source == "collector"
    # A size mismatch still rules a source out first; an earlydump for a 4096-byte device
    # says why it is short.
    st4, notes4 = resolve(src, addr, 4096, 0x8086, 0x100E)
    assert st4 is not None and st4.source == "earlydump" and st4.partial == EARLYDUMP_PARTIAL
    assert notes4 == [f"{addr}: collector config size 256 differs from live 4096; not used"]


def test_bad_output_paths_are_refused_before_the_walk(tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    out, err, rc = run_cli(["save", "--sysfs-root", str(root), "-o",
                            str(tmp_path / "no-such-dir" / "rec.bin")])
    assert rc == 4 and out == ""
    assert err.splitlines()[0] == (f"handoff: error: cannot write {tmp_path}/no-such-dir/rec.bin: "
                                   f"{tmp_path}/no-such-dir is not a directory")
    out, err, rc = run_cli(["save", "--sysfs-root", str(root), "-o", "/proc/handoff-rec"])
    assert rc == 2 and "refusing to write a record to /proc/handoff-rec" in err
    assert "warning" not in err and "note" not in err  # nothing was walked


def test_unwritable_output_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root may write anywhere, so the kernel's refusal is what os.open says for a read-only
    # directory (EACCES, or EROFS on a read-only mount).
    root = F.build_tree(tmp_path / "sys", F.Q35)
    real_open = os.open

    def refuse(path: str, flags: int, mode: int = 0o777) -> int:
        if os.path.basename(path).startswith(".rec.bin."):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refuse)
    out, err, rc = run_cli(["save", "--sysfs-root", str(root), "-o", str(tmp_path / "rec.bin")])
    assert rc == 4 and out == ""
    assert f"handoff: error: cannot write {tmp_path}/rec.bin: Permission denied" in err
    assert not list(tmp_path.glob(".rec.bin.*"))
