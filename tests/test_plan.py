"""Restore planning: identity, matching, actions, register rules and the Linux PCI core order.

Records are made by the save engine from fake sysfs trees built out of the real QEMU dumps
(tests/fixtures/qemu-q35-kdump), and planned onto trees built from the capture-kernel dumps.
The builders are in tests/helpers/restore.py.
"""

from __future__ import annotations

import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

from helpers import elfwriter
from helpers import fakesysfs as F
from helpers.restore import (
    AHCI,
    BOOT,
    E1000,
    NVME,
    PORT1,
    PORT3,
    RELEASE,
    VBLK,
    VNET,
    capture_tree,
    dev,
    firmware_less_tree,
    fixture,
    get,
    plan_for,
    put,
    saved_devices,
    writes,
)

from handoff.devices.model import PciDevice
from handoff.restore import pciregs as R
from handoff.restore.apply import scan
from handoff.restore.match import (
    GONE,
    MATCHED,
    MISMATCH,
    UNREADABLE,
    VANISHED,
    Identity,
    check_identity,
    identity_from,
    match_device,
    parse_cmdline,
)
from handoff.restore.plan import (
    DO_DISABLE,
    DO_RESCAN,
    DO_RESET,
    REFUSE,
    SKIP_OP,
    WRITE,
)
from handoff.restore.policy import parse_policy
from handoff.restore.steps import LeftAlone
from handoff.sysfs.probe import Environment

# --- the QEMU before/after pair ---------------------------------------------------------

# Every unbound endpoint the crashed kernel left bus-mastering, deepest first: the two whose
# action is quiesce, and the four restored devices too (Bus Master off agrees with the
# kernel's view of an unbound function; handoff-quiesce does the same before restore runs).
BUS_MASTER_OFF = [("0000:04:00.0", "COMMAND", 4, 2, 0x0503), (VBLK, "COMMAND", 4, 2, 0x0503),
                  (VNET, "COMMAND", 4, 2, 0x0503), (NVME, "COMMAND", 4, 2, 0x0503),
                  (AHCI, "COMMAND", 4, 2, 0x0503), (E1000, "COMMAND", 4, 2, 0x0503)]


def test_qemu_pair_plans_only_the_bus_master_writes(tmp_path: Path) -> None:
    plan, _ = plan_for(tmp_path)
    assert plan.check.ok and not plan.check.problems
    assert writes(plan) == BUS_MASTER_OFF
    # MSI-X Enable was cleared by the capture kernel's PCI core and must stay clear.
    for addr, off in ((NVME, 0x42), (VBLK, 0xDE), ("0000:04:00.0", 0xDE)):
        (s,) = [s for s in dev(plan, addr).steps if s.reg == "MSI-X Message Control"]
        assert (type(s), s.op, s.offset) == (LeftAlone, SKIP_OP, off)  # nothing written
        assert "MSI-X is left disabled" in s.why and s.detail == "Enable: now 0, saved 1"
    assert dev(plan, NVME).decision.action == "restore-early"
    assert dev(plan, NVME).status == "planned"  # Bus Master off; nothing of its own to write
    assert dev(plan, "0000:00:00.0").status == "skip"


def test_quiesce_pass_runs_first_deepest_first(tmp_path: Path) -> None:
    pol = parse_policy('[[rule]]\nclass = "0604"\naction = "quiesce"\n'
                       '[[rule]]\naddress = "0000:01:00.0"\naction = "quiesce"\n')
    ports = ("0000:00:01.0", "0000:00:02.0", "0000:00:03.0", "0000:00:04.0")
    plan, _ = plan_for(tmp_path, policy=pol)  # pcieport is bound to every port
    assert not [d for d, s in plan.ordered() if s.op == WRITE and d.addr in ports]
    (skip,) = dev(plan, PORT1).steps
    assert (skip.op, skip.owner) == (SKIP_OP, "driver") and skip.why.startswith(
        "pcieport is bound in the capture kernel: nothing is turned off under it")
    tree = capture_tree(tmp_path, name="unbound", drivers={p: None for p in ports})
    plan, _ = plan_for(tmp_path, policy=pol, tree=tree)
    order = [(d.addr, s.phase) for d, s in plan.ordered() if s.op == WRITE]
    assert {a for a, _ in order[:4]} == {NVME, VNET, VBLK, "0000:04:00.0"}  # behind the ports
    assert all(p == "quiesce" for _, p in order)
    assert order.index((NVME, "quiesce")) < order.index((PORT1, "quiesce"))


# --- ordering: bridges, windows, BARs, COMMAND last ---------------------------------------

def test_kernel_owned_resources_are_reported_not_written(tmp_path: Path) -> None:
    """Lost bus numbers, windows and a BAR (issue 12): the capture kernel's PCI core owns
    them (restore/owners.py), so the default policy reports them and writes none."""
    plan, _ = plan_for(tmp_path, tree=firmware_less_tree(tmp_path))
    # SERR# Enable (nobody's) is all that is written: decode and Bus Master stay as the
    # kernel left them, on the bound port (0x0407 -> 0x0507) and the nvme (0x0403 -> 0x0503)
    assert [x for x in writes(plan) if x[0] in (PORT1, NVME)] == [
        (PORT1, "COMMAND", 4, 2, 0x0507), (NVME, "COMMAND", 4, 2, 0x0503)]
    port = {s.reg: s for s in dev(plan, PORT1).steps if s.owner}
    assert sorted(port) == ["Bus Numbers", "I/O Base/Limit", "Memory Base/Limit",
                            "Prefetchable Base/Limit"]
    assert all(s.op == SKIP_OP and s.resource and s.owner == "pci-core"
               for s in port.values())
    assert port["Bus Numbers"].why.startswith("kernel owns: the PCI core "
                                              "(pci_scan_bridge_extend()")
    assert 'kernel_owned = "rescan"' in port["Memory Base/Limit"].why
    nvme = {s.reg: s for s in dev(plan, NVME).steps if s.owner}
    assert nvme["BAR0"].resource and "__pci_read_base()" in nvme["BAR0"].why
    assert nvme["BAR0"].current == get(fixture(NVME, F.Q35_CAPTURE), 0x10, 4) & 0xF
    assert not nvme["COMMAND"].resource and "Bus Master: now 0, saved 1" in \
        nvme["COMMAND"].detail and "is_busmaster" in nvme["COMMAND"].why


def test_bridge_before_endpoint_and_command_last(tmp_path: Path) -> None:
    """A field nobody owns (SERR# Enable) differs on a root port and the nvme behind it:
    the bridge is written first, each device's COMMAND last."""
    saved_port, saved_nvme = fixture(PORT1), fixture(NVME)
    put(saved_port, 0x04, 2, get(saved_port, 4, 2) | 0x100)
    put(saved_nvme, 0x04, 2, get(saved_nvme, 4, 2) | 0x100)
    now_port, now_nvme = fixture(PORT1, F.Q35_CAPTURE), fixture(NVME, F.Q35_CAPTURE)
    put(now_port, 0x04, 2, get(now_port, 4, 2) & ~0x100)
    # the nvme not bus-mastering: nothing but SERR# to write (no Bus Master step first)
    put(now_nvme, 0x04, 2, get(now_nvme, 4, 2) & ~0x104)
    sv = saved_devices(tmp_path, config_override={PORT1: bytes(saved_port),
                                                   NVME: bytes(saved_nvme)})
    tree = capture_tree(tmp_path, config_override={PORT1: bytes(now_port),
                                                   NVME: bytes(now_nvme)})
    plan, _ = plan_for(tmp_path, saved=sv, tree=tree)
    w = [x for x in writes(plan) if x[0] in (PORT1, NVME)]
    assert [(x[0], x[1]) for x in w] == [(PORT1, "COMMAND"), (NVME, "COMMAND")]
    assert w[0][4] == get(now_port, 4, 2) | 0x100  # SERR# only: decode and Bus Master kept
    assert w[1][4] == get(now_nvme, 4, 2) | 0x100


def test_window_sequences_are_kernel_owned(tmp_path: Path) -> None:
    """32-bit I/O and 64-bit prefetchable windows that differ: reported, never written."""
    saved = fixture(PORT3)
    put(saved, 0x1C, 2, 0x2121)  # 32-bit I/O, base 0x2000, limit 0x2fff (+ upper 16)
    put(saved, 0x30, 4, 0x00010001)
    put(saved, 0x24, 4, 0xFFF1FFF1 & 0xC011C001)
    put(saved, 0x28, 4, 0x1)
    put(saved, 0x2C, 4, 0x1)
    now = bytearray(saved)
    put(now, 0x1C, 2, 0x0101)
    put(now, 0x30, 4, 0)
    put(now, 0x24, 4, 0x00010001 | 0xFFF0)
    put(now, 0x28, 4, 0x2)
    put(now, 0x2C, 4, 0x2)
    sv = saved_devices(tmp_path, config_override={PORT3: bytes(saved)})
    tree = capture_tree(tmp_path, config_override={PORT3: bytes(now)})
    plan, _ = plan_for(tmp_path, saved=sv, tree=tree)
    assert [s for s in dev(plan, PORT3).steps if s.op == WRITE] == []
    assert [s.reg for s in dev(plan, PORT3).steps if s.resource] == [
        "I/O Base/Limit", "Prefetchable Base/Limit", "Prefetchable Base Upper 32",
        "Prefetchable Limit Upper 32", "I/O Base/Limit Upper 16"]
    # Asked for by a rule, on a port nothing holds: the setup-bus.c sequence (upper halves
    # parked first) with decoding off, then remove + rescan.
    pol = parse_policy('[[rule]]\naddress = "0000:00:03.0"\naction = "restore-early"\n'
                       'kernel_owned = "rescan"\n')
    tree = capture_tree(tmp_path, name="unbound", config_override={PORT3: bytes(now)},
                        drivers={PORT3: None})
    plan, _ = plan_for(tmp_path, saved=sv, tree=tree, policy=pol)
    got = [(s.reg, s.value, s.transient) for s in dev(plan, PORT3).steps
           if s.op == WRITE and s.phase == "rescan"]
    cmd = get(saved, 4, 2)
    assert got == [
        ("COMMAND", cmd & ~0x7, True),
        ("I/O Base/Limit Upper 16", 0x0000FFFF, True),
        ("I/O Base/Limit", 0x2121, False),
        ("I/O Base/Limit Upper 16", 0x00010001, False),
        ("Prefetchable Limit Upper 32", 0, True),
        ("Prefetchable Base/Limit", 0xC011C001, False),
        ("Prefetchable Base Upper 32", 1, False),
        ("Prefetchable Limit Upper 32", 1, False),
    ]
    assert [s.op for s in dev(plan, PORT3).steps if s.phase == "rescan"][-1] == DO_RESCAN


# --- bits that are never written --------------------------------------------------------

def test_status_ro_and_action_bits(tmp_path: Path) -> None:
    saved_nvme, now_nvme = fixture(NVME), fixture(NVME, F.Q35_CAPTURE)
    put(now_nvme, 0x06, 2, get(now_nvme, 6, 2) | 0xF900)  # every W1C error bit set
    put(now_nvme, 0x8A, 2, 0x000F)  # PCIe Device Status: errors detected
    # FLR, MPS 256 (the PCI core's: pci_configure_mps()) and AUX Power PM (nobody's)
    put(saved_nvme, 0x88, 2, get(saved_nvme, 0x88, 2) | 0x8000 | (1 << 5) | 0x400)
    put(saved_nvme, 0x90, 2, get(saved_nvme, 0x90, 2) | 0x0030)  # Retrain + Link Disable
    saved_port, now_port = fixture(PORT1), fixture(PORT1, F.Q35_CAPTURE)
    put(saved_port, 0x3E, 2, get(saved_port, 0x3E, 2) | 0x0040 | 0x0001)  # SBR + PERR
    put(now_port, 0x1E, 2, get(now_port, 0x1E, 2) | 0x2000)  # Secondary Status W1C
    sv = saved_devices(tmp_path, config_override={NVME: bytes(saved_nvme),
                                                   PORT1: bytes(saved_port)})
    tree = capture_tree(tmp_path, config_override={NVME: bytes(now_nvme),
                                                   PORT1: bytes(now_port)})
    pol = parse_policy('default = "restore-live"\n')
    plan, _ = plan_for(tmp_path, saved=sv, tree=tree, policy=pol)
    w = {(a, off): (width, v) for a, _, off, width, v in writes(plan)}
    assert (NVME, 0x06) not in w and (NVME, 0x8A) not in w and (PORT1, 0x1E) not in w
    width, devctl = w[(NVME, 0x88)]
    now_devctl = get(now_nvme, 0x88, 2)
    assert width == 2 and devctl == now_devctl | 0x400  # AUX PM yes; MPS and FLR no
    (dc,) = [s for s in dev(plan, NVME).steps if s.reg == "PCIe Device Control"
             and s.owner]
    assert dc.op == SKIP_OP and "pci_configure_mps()" in dc.why and "Max Payload" in dc.detail
    assert (NVME, 0x90) not in w  # only Retrain Link/Link Disable differed: never written
    (lnk,) = [s for s in dev(plan, NVME).steps if s.reg == "PCIe Link Control"]
    assert lnk.op == SKIP_OP and "Link Disable" in lnk.detail and "retrains the link" in lnk.why
    assert (PORT1, 0x3E) not in w  # Bridge Control is the PCI core's: neither PERR nor SBR
    (bc,) = [s for s in dev(plan, PORT1).steps if s.reg == "Bridge Control"]
    assert bc.op == SKIP_OP and bc.owner == "pci-core" and "__pci_setup_bridge()" in bc.why
    (st,) = [s for s in dev(plan, NVME).steps if s.reg == "STATUS"]
    assert st.op == SKIP_OP and "status bits are RO or W1C" in st.why
    for s in dev(plan, NVME).steps:  # a write never sets a W1C status bit
        assert not (s.op == WRITE and s.reg == "PCIe Device Control" and s.value & 0x8000)


def test_msi_enable_is_never_set(tmp_path: Path) -> None:
    saved = fixture(AHCI)
    msi = R.find_caps(bytes(saved))
    off = next(c.offset for c in msi if c.id == R.CAP_MSI and not c.extended)
    put(saved, off + 2, 2, get(saved, off + 2, 2) | 1)  # MSI Enable in the saved state
    put(saved, off + 4, 4, 0xFEE00000)
    sv = saved_devices(tmp_path, config_override={AHCI: bytes(saved)})
    plan, _ = plan_for(tmp_path, saved=sv)
    steps = {s.reg: s for s in dev(plan, AHCI).steps}
    assert steps["MSI Message Control"].op == SKIP_OP
    assert steps["MSI Message Control"].detail == "Enable: now 0, saved 1"
    assert steps["MSI Message Address"].op == SKIP_OP
    # only the Bus Master clear of an unbound endpoint: MSI is never written
    assert [s.reg for s in dev(plan, AHCI).steps if s.op == WRITE] == ["COMMAND"]
    assert [s.phase for s in dev(plan, AHCI).steps if s.op == WRITE] == ["quiesce"]


def test_vendor_specific_bytes_are_named_not_written(tmp_path: Path) -> None:
    saved = fixture(VNET)
    put(saved, 0x84 + 8, 4, 0x12345678)  # inside the VirtIO CommonCfg vendor capability
    sv = saved_devices(tmp_path, config_override={VNET: bytes(saved)})
    plan, _ = plan_for(tmp_path, saved=sv, policy=parse_policy('default = "restore-live"'))
    (s,) = [s for s in dev(plan, VNET).steps if s.reg.startswith("Vendor Specific")]
    assert (s.reg, s.op, s.offset) == ("Vendor Specific +0x8", SKIP_OP, 0x8C)
    assert "vendor specific" in s.why


# --- policy, snapshots, resets, lockdown ---------------------------------------------------

def test_restore_early_needs_an_early_snapshot(tmp_path: Path) -> None:
    sv = saved_devices(tmp_path, no_early=[NVME])
    pol = parse_policy('[[rule]]\ndriver = "nvme"\naction = "restore-early"\n')
    plan, _ = plan_for(tmp_path, saved=sv, policy=pol)
    d = dev(plan, NVME)
    assert d.status == "refused" and "no early snapshot" in d.why
    plan, _ = plan_for(tmp_path, saved=sv)  # the defaults fall back to the live state
    assert dev(plan, NVME).decision.action == "restore-live"


def test_partial_early_snapshot_restores_what_it_has(tmp_path: Path) -> None:
    early = {PORT1: fixture(PORT1)[:256]}  # earlydump prints 256 bytes
    sv = saved_devices(tmp_path, early=early)
    now = fixture(PORT1, F.Q35_CAPTURE)
    put(now, 0x108, 4, 0xFFFFFFFF)  # AER Uncorrectable Error Mask beyond the 256 bytes
    put(now, 0x04, 2, get(now, 4, 2) & ~0x100)  # COMMAND SERR# (nobody's) inside them
    plan, _ = plan_for(tmp_path, saved=sv,
                       tree=capture_tree(tmp_path, config_override={PORT1: bytes(now)}))
    d = dev(plan, PORT1)
    assert [s.reg for s in d.steps if s.op == WRITE] == ["COMMAND"]
    assert any("beyond the 256 saved bytes" in n for n in d.notes)


def test_reset_method_choice(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path, reset_methods={VNET: "flr pm", VBLK: None,
                                                  "0000:04:00.0": "flr pm"})
    pol = parse_policy('[[rule]]\naddress = "0000:02:00.0"\naction = "reset"\n'
                       '[[rule]]\naddress = "0000:04:00.0"\naction = "reset"\n'
                       'reset_method = "bus"\n'
                       '[[rule]]\naddress = "0000:03:00.0"\naction = "reset"\n')
    plan, _ = plan_for(tmp_path, tree=tree, policy=pol)
    (r,) = [s for s in dev(plan, VNET).steps if s.phase == "reset"]
    assert (r.op, r.method) == (DO_RESET, "flr")
    assert [s.phase for s in dev(plan, VNET).steps] == ["quiesce", "reset"]
    (r,) = [s for s in dev(plan, "0000:04:00.0").steps if s.phase == "reset"]
    assert r.op == REFUSE and "'bus' is not offered" in r.why
    (r,) = [s for s in dev(plan, VBLK).steps if s.phase == "reset"]
    assert r.op == REFUSE and "no reset method" in r.why
    phases = [s.phase for _, s in plan.ordered()]
    assert phases == sorted(phases, key=["quiesce", "reset", "restore"].index)


def test_lockdown_refuses_config_writes_in_the_plan(tmp_path: Path) -> None:
    env = Environment("integrity", False, True)
    tree = capture_tree(tmp_path, reset_methods={VNET: "flr"})
    pol = parse_policy('[[rule]]\naddress = "0000:02:00.0"\naction = "reset"\n')
    plan, _ = plan_for(tmp_path, tree=tree, policy=pol, env=env)
    assert writes(plan) == []
    q = [s for s in dev(plan, E1000).steps]
    # The quiesce write is refused; the kernel still clears Bus Master on request (sysfs
    # enable 1, 0), and an e1000 on the root bus has no reset, so it is left in place: the
    # default never removes a device (a rescan may move its BARs; docs/lockdown.md).
    assert [(s.op, s.status) for s in q] == [(REFUSE, "refused"), (DO_DISABLE, "planned")]
    assert "lockdown (integrity)" in q[0].why and q[1].instead
    assert "pci_disable_device()" in q[1].why
    fb = dev(plan, E1000).fallback
    assert (fb.wanted, fb.instead, fb.also) == ("quiesce", "skip", ["disable"])
    assert fb.passed == ["reset: the kernel offers no reset method (no reset_method)"]
    assert [s.op for s in dev(plan, VNET).steps] == [REFUSE, DO_DISABLE, DO_RESET]  # reset stays
    assert dev(plan, VNET).fallback.instead == "reset"


# --- identity --------------------------------------------------------------------------

class _Rec:
    def __init__(self, release: str = RELEASE, boot: str = BOOT, gen: int = 3) -> None:
        self.kernel_release, self.boot_id, self.generation = release, boot, gen


def test_identity_checks() -> None:
    assert check_identity(_Rec(gen=3), Identity(RELEASE, BOOT, 3)).problems == []
    assert check_identity(_Rec(), Identity(RELEASE, None, None)).ok
    p = check_identity(_Rec(release="6.1.0-55-amd64"), Identity(RELEASE, BOOT, 3))
    assert not p.ok and "made by kernel '6.1.0-55-amd64'" in p.problems[0]
    p = check_identity(_Rec(), Identity(None, str(uuid.uuid4()), None))
    assert not p.ok and p.problems[0].startswith("stale record: made in boot")
    p = check_identity(_Rec(gen=2), Identity(RELEASE, BOOT, 3))
    assert p.problems == [("stale record: generation 2 is older than generation 3, which the "
                           "capture kernel was loaded with")]
    assert "newer" in check_identity(_Rec(gen=4), Identity(RELEASE, BOOT, 3)).problems[0]
    p = check_identity(_Rec(boot=""), Identity(None, BOOT, None))
    assert not p.ok and "carries no boot id" in p.problems[0]
    p = check_identity(_Rec(), Identity())
    assert not p.ok and "cannot tell which kernel crashed" in p.problems[0]
    f = check_identity(_Rec(gen=2), Identity(RELEASE, BOOT, 3), force=True)
    assert f.ok and f.forced and f.problems


def test_identity_from_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cmdline").write_text(f'console=ttyS0 handoff.boot_id={BOOT.upper()} '
                                  f'handoff.generation=7 reset_devices "a=b c"\n')
    (proc / "vmcore").write_bytes(elfwriter.core_bytes(
        elfwriter.default_notes(vmci=elfwriter.vmcoreinfo(RELEASE))))
    ident = identity_from(proc)
    assert (ident.kernel_release, ident.boot_id, ident.generation) == (RELEASE, BOOT, 7)
    assert len(ident.sources) == 3
    assert parse_cmdline('x=1 "a=b c" y')["a"] == "b c"
    (proc / "vmcore").write_bytes(b"not an elf")
    (proc / "cmdline").write_text("handoff.generation=x\n")
    ident = identity_from(proc)
    assert ident.kernel_release is None and not ident.known
    assert any("cannot read VMCOREINFO" in n for n in ident.notes)
    assert any("not a number" in n for n in ident.notes)


def test_identity_refusal_refuses_every_device(tmp_path: Path) -> None:
    plan, _ = plan_for(tmp_path, generation=2)
    assert not plan.check.ok and writes(plan) == []
    assert all(d.status == "refused" and "stale record" in d.why for d in plan.devices)
    plan, _ = plan_for(tmp_path, generation=2, force=True)
    assert plan.check.forced and writes(plan) == BUS_MASTER_OFF


# --- matching --------------------------------------------------------------------------

def _current(tmp: Path, **kw: Any) -> dict[str, PciDevice]:
    return scan(capture_tree(tmp, **kw))


def test_matching_verdicts(tmp_path: Path) -> None:
    saved = {d.addr: d for d in saved_devices(tmp_path)}
    other = fixture(E1000, F.Q35_CAPTURE)
    put(other, 0x02, 2, 0x10D3)  # another device id at 00:05.0
    cur = _current(tmp_path, config_override={E1000: bytes(other), VNET: b"\xff" * 4096,
                                              VBLK: fixture(VBLK)[:48]},
                   only=[a for a in saved if a != AHCI])
    assert match_device(saved[NVME], cur[NVME]).status == MATCHED
    assert match_device(saved[AHCI], cur.get(AHCI)).status == VANISHED
    m = match_device(saved[E1000], cur[E1000])
    assert m.status == MISMATCH and "device 0x100e -> 0x10d3" in m.reasons[0]
    m = match_device(saved[VNET], cur[VNET])
    assert m.status == GONE and "all-ones" in m.reasons[0]
    assert match_device(saved[VBLK], cur[VBLK]).status == UNREADABLE


def test_serial_number_and_renumbering(tmp_path: Path) -> None:

    saved = {d.addr: d for d in saved_devices(tmp_path)}
    cur = _current(tmp_path)
    s = saved[VBLK].replace(dsn=0x1111)
    c = cur[VBLK].replace(dsn=0x2222)
    m = match_device(s, c)
    assert m.status == MISMATCH and "serial number" in m.reasons[0]
    assert match_device(s, cur[VBLK].replace(dsn=None)).ok  # one side only
    moved = saved[VBLK].replace(addr="0000:04:00.0")
    other = cur["0000:04:00.0"].replace(ids=cur["0000:04:00.0"].ids.replace(subdevice=0x9999))
    m = match_device(moved, other, {**cur, "0000:04:00.0": other})
    assert m.status == MISMATCH and "is at 0000:03:00.0 (renumbered?)" in m.reasons[1]


def test_vanished_and_appeared_in_the_plan(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(F.Q35_CAPTURE, src)
    shutil.copy(src / f"{E1000}.bin", src / "0000:00:06.0.bin")
    (src / f"{VNET}.bin").unlink()
    plan, _ = plan_for(tmp_path, tree=capture_tree(tmp_path, src))
    d = dev(plan, VNET)
    assert (d.status, d.match.status) == ("refused", VANISHED) and not d.steps
    assert [a.addr for a in plan.appeared] == ["0000:00:06.0"]
    assert all(a != "0000:00:06.0" for a, *_ in writes(plan))


def test_plan_json_is_complete(tmp_path: Path) -> None:
    import json

    plan, _ = plan_for(tmp_path)
    doc = json.loads(json.dumps(plan.to_json()))
    e = next(d for d in doc["devices"] if d["addr"] == E1000)
    assert e["action"] == "quiesce" and e["steps"][0]["current"] == "0x0107"
    assert e["steps"][0]["value"] == "0x0503" and e["steps"][0]["off"] == 4
    assert doc["identity_check"]["ok"] is True


def test_registers_tables_are_consistent() -> None:
    for regs in (R.TYPE0, R.TYPE1, R.PCIE_REGS, R.AER_REGS, R.PM_REGS, R.MSIX_REGS):
        for r in regs:
            seen = 0
            for f in r.fields:
                assert not seen & f.mask, (r.name, f.name)
                assert f.mask <= r.full, (r.name, f.name)
                seen |= f.mask
            assert r.rw_mask & r.w1c_mask == 0
            if r.rule in (R.NEVER, R.DRIVER):
                assert r.why, r.name
    assert struct.calcsize("<I") == 4


def test_a_record_naming_an_address_twice_is_refused_there(tmp_path: Path) -> None:
    sv = saved_devices(tmp_path)
    twin = next(d for d in sv if d.addr == E1000)
    plan, _ = plan_for(tmp_path, saved=sv + [twin])
    bad = [d for d in plan.devices if d.addr == E1000]
    assert len(bad) == 2 and all(d.status == "refused" and not d.steps for d in bad)
    assert writes(plan) == [w for w in BUS_MASTER_OFF if w[0] != E1000]
