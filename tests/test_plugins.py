"""Device plugins: the BAR accessor, bounded polling, the registry and entry points, the runner's
containment, dry runs, and every built-in on fake trees whose resourceN files model the
registers (tests/helpers/fakebar.py), including the paths where the device never answers."""

from __future__ import annotations

import errno
import io
import json
import mmap
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from helpers import fakebar as B
from helpers import fakesysfs as F

from handoff.cli import main
from handoff.devices.model import PciDevice
from handoff.plugins import (
    FAILED,
    NO_RESPONSE,
    OK,
    PLANNED,
    QUIESCE,
    REFUSED,
    RESET,
    SAVE,
    TIMEOUT,
    VERIFY,
    BarAccessor,
    BarBoundsError,
    BarClaimed,
    BarError,
    BarMappingRefused,
    BarReadOnly,
    BarUnavailable,
    Deadline,
    Match,
    MmapFile,
    Plugin,
    PluginStep,
    Registry,
    StepAbandoned,
    StepContext,
    SysfsBars,
    apply_ext,
    load,
    poll,
    run_plugins,
    run_step,
    steps_for,
)
from handoff.plugins.api import ClassRule, IdRule, parse_class, parse_id
from handoff.plugins.bar import CLAIMED_MESSAGE, LOCKDOWN_MESSAGE
from handoff.plugins.builtin import E1000, Msix, Nvme, Virtio
from handoff.plugins.builtin.virtio import common_cfg
from handoff.sysfs import SysfsTree

NVME, VNET, VBLK, E1K = "0000:01:00.0", "0000:02:00.0", "0000:03:00.0", "0000:00:05.0"
ROOT_PORT = "0000:00:01.0"

# NVMe CAP: MQES 0x7ff, CQR, TO = 2 (bound (2 + 1) * 0.5 = 1.5 s), DSTRD 0, CSS NVM.
NVME_CAP = 0x0000_0020_0200_07FF
NVME_CC = 0x0046_0001  # IOCQES 4, IOSQES 6, EN
VIRTIO_COMMON = 0x0  # QEMU puts the common configuration at BAR4 + 0
E1K_CTRL, E1K_STATUS = 0x0014_0240, 0x8008_0783


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The q35 capture kernel before drivers load (pcieport bound, endpoints unbound), with
    resourceN files holding the registers a running device would show."""
    root = F.build_tree(tmp_path / "sys", F.Q35_CAPTURE)
    table = {0x2000 + 16 * i + 12: (4, 1 if i == 7 else 0) for i in range(65)}
    table.update({0x2000 + 16 * i: (4, 0xFEE00000) for i in range(65)})
    table.update({0x2000 + 16 * i + 8: (4, 0x4020 + i) for i in range(65)})
    B.add_bar(root, NVME, 0, 0x4000, {0x00: (8, NVME_CAP), 0x08: (4, 0x10400),
                                      0x14: (4, NVME_CC), 0x1C: (4, 1), **table})
    B.add_bar(root, VNET, 4, 0x4000, {VIRTIO_COMMON + 0x14: (1, 0x0F),
                                      VIRTIO_COMMON + 0x12: (2, 3)})
    # Vector Control of vector 2 has a reserved bit set, which masking must preserve.
    B.add_bar(root, VNET, 1, 0x1000, {16 * 2 + 12: (4, 0x8000_0000)})
    B.add_bar(root, E1K, 0, 0x20000, {0x0: (4, E1K_CTRL), 0x8: (4, E1K_STATUS),
                                      0xD0: (4, 0x9D), 0x100: (4, 0x0400_8002),
                                      0x400: (4, 0x0104_00FA)})
    return root


def nvme_regs(root: Path) -> Path:
    return B.device_dir(root, NVME) / "resource0"


def registry(*plugins: Plugin) -> Registry:
    return Registry.of(*plugins)


def run(root: Path, addr: str, phase: str, plugins: tuple[Plugin, ...],
        models: dict[int, B.Model] | None = None, clock: B.FakeClock | None = None,
        **kw: object):  # type: ignore[no-untyped-def]
    clock = clock or B.FakeClock()
    return run_plugins([B.device(root, addr)], phase, registry=registry(*plugins),
                       bars_for=B.bars_for(root, {addr: models or {}}), clock=clock,
                       sleep=clock.sleep, **kw)  # type: ignore[arg-type]


# --- the BAR accessor ------------------------------------------------------------------------


def test_accessor_reads_and_writes_every_width_through_a_regular_file(tree: Path) -> None:
    bars = SysfsBars(SysfsTree(tree), NVME)
    acc = bars.bar(0)
    assert acc.size == 0x4000
    assert acc.read(0x0, 8) == NVME_CAP
    assert acc.read(0x8, 4) == 0x10400
    assert acc.read(0x14, 2) == 0x0001 and acc.read(0x16, 2) == 0x0046
    assert acc.read(0x16, 1) == 0x46
    acc.write(0x3000, 8, 0x1122334455667788)
    acc.write(0x3008, 4, 0xAABBCCDD)
    acc.write(0x300C, 2, 0xEEFF)
    acc.write(0x300E, 1, 0x99)
    bars.close()
    data = nvme_regs(tree).read_bytes()[0x3000:0x3010]
    assert data == bytes.fromhex("8877665544332211" "ddccbbaa" "ffee" "99") + b"\x00"
    with pytest.raises(BarError, match="BAR0 is closed"):
        acc.read(0, 4)


@pytest.mark.parametrize("offset,width,what", [
    (0x4000, 4, "past the end of the BAR (0x4000 bytes)"),
    (0x3FFC, 8, "not 8-byte aligned"),
    (0x3FF8 + 4, 8, "not 8-byte aligned"),
    (0x2, 4, "not 4-byte aligned"),
    (0x1, 2, "not 2-byte aligned"),
    (-4, 4, "not 4-byte aligned"),
    (0x0, 3, "width 3 is not 1, 2, 4 or 8"),
])
def test_out_of_bounds_or_misaligned_access_is_refused(tree: Path, offset: int, width: int,
                                                       what: str) -> None:
    before = nvme_regs(tree).read_bytes()
    acc = SysfsBars(SysfsTree(tree), NVME).bar(0)
    with pytest.raises(BarBoundsError) as e:
        acc.read(offset, width)
    assert what in str(e.value) and str(e.value).startswith("BAR0: ")
    with pytest.raises(BarBoundsError):
        acc.write(offset, width, 0)
    assert e.value.offset == offset and e.value.width == width and e.value.size == 0x4000
    assert nvme_regs(tree).read_bytes() == before


def test_last_register_of_the_bar_is_reachable(tree: Path) -> None:
    acc = SysfsBars(SysfsTree(tree), NVME).bar(0)
    acc.write(0x3FF8, 8, 7)
    assert acc.read(0x3FFC, 4) == 0 and acc.read(0x3FF8, 8) == 7


def _raising_mmap(code: int):  # type: ignore[no-untyped-def]
    def fn(*a: object, **k: object) -> mmap.mmap:
        raise OSError(code, errno.errorcode[code])
    return fn


def test_eperm_from_mmap_is_a_lockdown_refusal(tree: Path) -> None:
    bars = SysfsBars(SysfsTree(tree), NVME, mmap_fn=_raising_mmap(errno.EPERM))
    with pytest.raises(BarMappingRefused) as e:
        bars.bar(0)
    assert str(e.value).endswith("resource0: BAR mapping refused (kernel lockdown?)")
    assert e.value.errno == errno.EPERM and e.value.exit_code == 4
    with pytest.raises(BarMappingRefused) as again:  # cached: the kernel is not asked twice
        bars.bar(0)
    assert again.value is e.value


def test_einval_from_mmap_says_a_bound_driver_claims_the_bar(tree: Path, tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "bound", F.Q35)  # first kernel: nvme bound
    B.add_bar(root, NVME, 0, 0x4000)
    bars = SysfsBars(SysfsTree(root), NVME, mmap_fn=_raising_mmap(errno.EINVAL))
    with pytest.raises(BarClaimed) as e:
        bars.bar(0)
    assert str(e.value).endswith("resource0: BAR is claimed by a bound driver; unbind it or "
                                 "run before drivers load (nvme)")
    assert e.value.hint and "unbind" in e.value.hint


def test_missing_io_and_readonly_bars_are_refused_clearly(tree: Path) -> None:
    bars = SysfsBars(SysfsTree(tree), NVME)
    with pytest.raises(BarUnavailable, match=r"BAR2 is not assigned by the kernel \(resource "
                                             r"line empty or unset\): not touched"):
        bars.bar(2)
    with pytest.raises(BarUnavailable, match="BAR index 6 is not 0-5"):
        bars.bar(6)
    B.add_bar(tree, E1K, 1, 64)  # e1000 BAR1 is an I/O-port BAR in the resource file
    with pytest.raises(BarUnavailable, match="BAR1 is an I/O-port BAR"):
        SysfsBars(SysfsTree(tree), E1K).bar(1)
    ro = SysfsBars(SysfsTree(tree), NVME, writable=False).bar(0)
    assert ro.read(0x8, 4) == 0x10400
    with pytest.raises(BarReadOnly):
        ro.write(0x14, 4, 0)
    with pytest.raises(BarUnavailable, match="not a PCI address"):
        SysfsBars(SysfsTree(tree), "../../etc")


def test_symlinked_resource_file_is_refused(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(bytes(4096))
    link = B.device_dir(tree, VBLK) / "resource4"
    link.symlink_to(outside)
    with pytest.raises(BarUnavailable):
        SysfsBars(SysfsTree(tree), VBLK).bar(4)
    assert outside.read_bytes() == bytes(4096)


def test_accessor_over_a_register_model() -> None:
    class Regs:
        size, writable = 16, True

        def __init__(self) -> None:
            self.log: list[tuple[str, int, int]] = []

        def read(self, offset: int, width: int) -> int:
            self.log.append(("r", offset, width))
            return 0xAB

        def write(self, offset: int, width: int, value: int) -> None:
            self.log.append(("w", offset, value))

        def close(self) -> None:
            pass

    regs = Regs()
    acc = BarAccessor(regs, bar=3)
    assert acc.read(8, 8) == 0xAB
    acc.write(12, 4, 0x1234)
    with pytest.raises(BarBoundsError, match=r"BAR3: access of 8 byte\(s\) at 0x10"):
        acc.read(16, 8)
    with pytest.raises(ValueError, match="does not fit"):
        acc.write(0, 1, 0x100)
    assert regs.log == [("r", 8, 8), ("w", 12, 0x1234)]


# --- poll ----------------------------------------------------------------------------------


def test_poll_ends_by_its_deadline_on_an_injected_clock() -> None:
    clock = B.FakeClock()
    res = poll(lambda: 1, lambda v: v == 0, 2.0, 0.3, clock=clock, sleep=clock.sleep)
    assert not res.ok and res.value == 1
    assert res.elapsed == pytest.approx(2.0)  # the last sleep is cut to what remains
    assert res.reads == 8  # at 0, 0.3, ..., 1.8 and 2.0


def test_poll_succeeds_as_soon_as_the_predicate_holds() -> None:
    clock = B.FakeClock()
    values = iter([5, 5, 0, 9])
    res = poll(lambda: next(values), lambda v: v == 0, 10.0, 0.1, clock=clock,
               sleep=clock.sleep)
    assert res.ok and res.value == 0 and res.reads == 3
    assert res.elapsed == pytest.approx(0.2)


def test_poll_cannot_spin_forever_on_a_clock_that_stands_still() -> None:
    reads = []
    res = poll(lambda: reads.append(1) or 1, lambda v: False, 1.0, 0.25,  # type: ignore[func-returns-value]
               clock=lambda: 5.0, sleep=lambda s: None)
    assert not res.ok and res.reads == len(reads) == 6


def test_poll_on_the_real_clock_returns_within_its_bound() -> None:
    t0 = time.monotonic()
    res = poll(lambda: 1, lambda v: v == 0, 0.05, 0.01)
    took = time.monotonic() - t0
    assert not res.ok and 0.05 <= took < 10  # at least its bound; the upper one only catches a hang


def test_poll_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        poll(lambda: 0, bool, -1)
    with pytest.raises(ValueError):
        poll(lambda: 0, bool, 1, 0)
    with pytest.raises(ValueError):
        poll(lambda: 0, bool, float("inf"))


# --- match rules and the plugin API ------------------------------------------------------------


def test_match_rules_parse_and_describe() -> None:
    assert parse_id("1AF4:1040-107f") == IdRule(0x1AF4, 0x1040, 0x107F)
    assert parse_id("8086:*") == IdRule(0x8086)
    assert parse_class("0108xx") == ClassRule(0x010800, 0xFFFF00)
    assert parse_class("01") == ClassRule(0x010000, 0xFF0000)
    assert str(parse_class("0108")) == "0108xx" and str(ClassRule(0x10, 0x1F)) == "000010/00001f"
    for bad in ("8086", "8086:12345", "8086:2000-1000", "zz:0000"):
        with pytest.raises(ValueError):
            parse_id(bad)
    with pytest.raises(ValueError):
        parse_class("0108x")
    m = Match.of(ids=["1af4:1040-107f"], classes=["010802"], caps=[0x11])
    assert m.describe() == ["id 1af4:1040-107f", "class 010802", "capability 0x11"]


def test_builtins_match_the_right_devices(tree: Path) -> None:
    reg = load(entry_points=False)
    taken = {a: [i.name for i in reg.select(B.device(tree, a)).accepted]
             for a in (NVME, VNET, VBLK, E1K, ROOT_PORT, "0000:00:1f.2")}
    assert taken == {NVME: ["nvme", "msix"], VNET: ["virtio", "msix"],
                     VBLK: ["virtio", "msix"], E1K: ["e1000"], ROOT_PORT: [],
                     "0000:00:1f.2": []}
    sel = reg.select(B.device(tree, ROOT_PORT))
    assert sel.declined == {"msix": "bound to pcieport: the running kernel owns its MSI-X "
                                    "table"}


def test_hooks_lists_what_a_plugin_overrides() -> None:
    assert Nvme().hooks() == (SAVE, QUIESCE, VERIFY)
    assert E1000().hooks() == (QUIESCE, RESET, VERIFY)
    assert Virtio().hooks() == (SAVE, QUIESCE, VERIFY)
    assert Msix().hooks() == (SAVE, QUIESCE, VERIFY)


def test_steps_for_orders_device_plugins_before_msix(tree: Path) -> None:
    steps = steps_for(B.device(tree, NVME), QUIESCE, registry=load(entry_points=False))
    assert [s.label for s in steps] == ["nvme:disable-controller", "msix:mask-vectors"]
    assert all(s.addr == NVME and s.phase == QUIESCE and s.device is not None for s in steps)
    with pytest.raises(ValueError):
        steps_for(B.device(tree, NVME), "explode")


# --- nvme ------------------------------------------------------------------------------------


def test_nvme_disable_clears_cc_en_and_waits_for_rdy(tree: Path) -> None:
    model = B.NvmeModel(ready_after=3)
    clock = B.FakeClock()
    res = run(tree, NVME, QUIESCE, (Nvme(),), {0: model}, clock).results
    assert [(r.label, r.outcome) for r in res] == [("nvme:disable-controller", OK)]
    r = res[0]
    assert r.message == "CC.EN 1 -> 0; CSTS.RDY = 0 after 3 read(s)"
    assert [a.as_tuple()[:5] for a in r.accesses] == [
        (0, 0x00, 4, "read", NVME_CAP & 0xFFFFFFFF), (0, 0x04, 4, "read", NVME_CAP >> 32),
        (0, 0x14, 4, "read", NVME_CC),
        (0, 0x14, 4, "write", NVME_CC & ~1), (0, 0x1C, 4, "poll", 0)]
    assert B.peek(nvme_regs(tree), 0x14, 4) == NVME_CC & ~1
    assert B.peek(nvme_regs(tree), 0x1C, 4) == 0
    assert clock.slept == pytest.approx(0.01)  # two 5 ms polls


def test_nvme_never_ready_times_out_within_the_cap_to_bound(tree: Path) -> None:
    clock = B.FakeClock()
    t0 = time.monotonic()
    res = run(tree, NVME, QUIESCE, (Nvme(),), {0: B.NvmeModel(ready_after=None)}, clock)
    assert time.monotonic() - t0 < 5  # the fake clock makes the 1.5 s bound instant
    r = res.results[0]
    assert r.outcome == TIMEOUT
    assert r.message == ("CC.EN 1 -> 0, but CSTS.RDY still 1 after 1.5 s (bound 1.5 s from "
                         "CAP.TO = 2); CSTS=0x00000001")
    assert clock.slept == pytest.approx(1.5)
    assert "timeout" in r.accesses[-1].result and r.accesses[-1].op == "poll"


def test_nvme_reports_controller_fatal_status(tree: Path) -> None:
    B.poke(nvme_regs(tree), 0x1C, 4, 0x3)  # RDY | CFS
    r = run(tree, NVME, QUIESCE, (Nvme(),), {0: B.NvmeModel(ready_after=1)}).results[0]
    assert r.outcome == OK
    assert r.message.startswith("CC.EN 1 -> 0; CSTS.RDY = 0 after 1 read(s); CSTS.CFS = 1: "
                                "the controller reports a fatal status")


def test_nvme_controller_reading_all_ones_fails(tree: Path) -> None:
    B.poke(nvme_regs(tree), 0, 8, (1 << 64) - 1)
    r = run(tree, NVME, QUIESCE, (Nvme(),)).results[0]
    assert r.outcome == NO_RESPONSE
    assert r.message.startswith("no response: CAP reads 0xffffffffffffffff: the controller "
                                "does not answer")
    assert B.peek(nvme_regs(tree), 0x14, 4) == NVME_CC  # nothing written


def test_nvme_real_clock_tiny_bound_returns(tree: Path) -> None:
    step = steps_for(B.device(tree, NVME), QUIESCE, registry=registry(Nvme()))[0]
    bars = B.bars(tree, NVME, {0: B.NvmeModel(ready_after=None)})
    t0 = time.monotonic()
    r = run_step(step, bars, Deadline.after(0.05))
    took = time.monotonic() - t0
    bars.close()
    assert r.outcome == TIMEOUT and took < 10  # returns: no wall-time goal (loaded machines)
    assert "CSTS.RDY still 1" in r.message and "cut to the step's remaining time" in \
        r.accesses[-1].result


def test_nvme_save_records_registers_in_a_versioned_ext_section(tree: Path) -> None:
    dev = B.device(tree, NVME)
    out = run_plugins([dev], SAVE, registry=registry(Nvme(), Msix()),
                      bars_for=B.bars_for(tree, {}))
    assert [r.outcome for r in out.results] == [OK, OK]
    apply_ext([dev], out)
    assert dev.ext["nvme"] == {"v": 1, "cap": NVME_CAP, "vs": 0x10400, "cc": NVME_CC,
                               "csts": 1}
    assert dev.ext["msix"] == {"v": 1, "cap": 0x40, "size": 65, "table": [0, 0x2000],
                               "pba": [0, 0x3000], "enabled": False, "function_mask": False}
    from handoff import cbor
    cbor.dumps(dev.to_payload())  # the sections are valid payload (no floats, text keys)


def test_nvme_verify(tree: Path) -> None:
    assert run(tree, NVME, VERIFY, (Nvme(),)).results[0].outcome == FAILED
    B.poke(nvme_regs(tree), 0x14, 4, 0)
    B.poke(nvme_regs(tree), 0x1C, 4, 0)
    r = run(tree, NVME, VERIFY, (Nvme(),)).results[0]
    assert (r.outcome, r.message) == (OK, "CC.EN = 0, CSTS.RDY = 0")


def test_save_steps_cannot_write(tree: Path) -> None:
    class Sneaky(Plugin):
        name, match = "sneaky", Match.of(classes=["010802"])

        def save(self, device, state):  # type: ignore[no-untyped-def]
            return [PluginStep("poke", "tries a write", lambda ctx: ctx.write(0, 0x14, 4, 0))]

    r = run(tree, NVME, SAVE, (Sneaky(),)).results[0]
    assert r.outcome == REFUSED and "save steps only read" in r.message
    assert B.peek(nvme_regs(tree), 0x14, 4) == NVME_CC


# --- virtio ----------------------------------------------------------------------------------


# --- check before touching (issue 12) -----------------------------------------------------------


def _set_config(root: Path, addr: str, off: int, width: int, value: int) -> None:
    B.poke(B.device_dir(root, addr) / "config", off, width, value)


def _command(root: Path, addr: str) -> int:
    return B.peek(B.device_dir(root, addr) / "config", 0x04, 2)


def test_a_bar_moved_behind_the_kernels_back_is_not_touched(tree: Path) -> None:
    """The nvme's BAR0 moved by 0x4000 (the resource line still has the old start): mapping
    resource0 would reach the kernel's address, where the device no longer answers."""
    bar0 = B.peek(B.device_dir(tree, NVME) / "config", 0x10, 4)
    _set_config(tree, NVME, 0x10, 4, bar0 + 0x4000)
    r = run(tree, NVME, QUIESCE, (Nvme(),)).results[0]
    assert r.outcome == REFUSED and r.accesses == []
    assert r.message == (f"{NVME}: BAR0 holds {(bar0 & ~0xF) + 0x4000:#x}, the kernel's "
                         f"resource0 starts at {bar0 & ~0xF:#x}: the kernel and the device "
                         "disagree, not touched (remove + rescan makes the kernel read it "
                         "again)")
    assert B.peek(nvme_regs(tree), 0x14, 4) == NVME_CC  # nothing written


def test_memory_space_off_is_turned_on_for_the_step_and_off_again(tree: Path) -> None:
    _set_config(tree, E1K, 0x04, 2, 0x0000)
    r = run(tree, E1K, QUIESCE, (E1000(),), {0: B.E1000Model()}).results[0]
    assert r.outcome == OK
    assert r.notes == [
        ("operation: COMMAND 0x0000 -> 0x0002 (Memory Space on for this step: off, the BAR "
        "reads 0)"),
        "operation: COMMAND 0x0002 -> 0x0000 (Memory Space restored after the step)"]
    assert _command(tree, E1K) == 0x0000


def test_a_device_that_reads_zero_is_no_response_never_ok(tree: Path) -> None:
    """What QEMU gives with Memory Space off (measured): STATUS, RCTL, TCTL read 0."""
    B.poke(B.device_dir(tree, E1K) / "resource0", 0x8, 4, 0)
    r = run(tree, E1K, QUIESCE, (E1000(),)).results[0]
    assert (r.outcome, r.message) == (NO_RESPONSE, ("no response: STATUS reads 0x00000000: the "
                                      "device does not answer (memory decoding off, or the "
                                      "device is gone)"))
    B.poke(vnet_regs(tree), VIRTIO_COMMON + 0x12, 2, 0)
    r = run(tree, VNET, "verify", (Virtio(),)).results[0]
    assert r.outcome == NO_RESPONSE and "num_queues reads 0x0000" in r.message


def test_memory_space_is_not_turned_on_under_a_bound_driver(tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "bound", F.Q35)  # first kernel: e1000 bound
    B.add_bar(root, E1K, 0, 0x20000, {0x8: (4, E1K_STATUS)})
    _set_config(root, E1K, 0x04, 2, 0x0000)
    r = run(root, E1K, "verify", (E1000(),)).results[0]
    assert r.outcome == REFUSED and "Memory Space is off (COMMAND 0x0000) and e1000 holds " \
        "the function: not turned on under it" in r.message
    assert _command(root, E1K) == 0x0000


def vnet_regs(root: Path) -> Path:
    return B.device_dir(root, VNET) / "resource4"


def test_virtio_finds_common_cfg_in_the_real_capability_list(tree: Path) -> None:
    c = common_cfg(B.device(tree, VNET).live.data)
    assert c is not None and (c.cap, c.cfg_type, c.bar, c.offset, c.length) == \
        (0x84, 1, 4, 0, 0x1000)


def test_virtio_reset_writes_zero_and_waits_for_zero(tree: Path) -> None:
    r = run(tree, VNET, QUIESCE, (Virtio(),), {4: B.VirtioModel(clears_after=2)}).results[0]
    assert (r.outcome, r.message) == (OK, "device_status 0x0f -> 0; read 0 after 2 read(s)")
    assert [a.as_tuple()[:5] for a in r.accesses] == [
        (4, 0x12, 2, "read", 3), (4, 0x14, 1, "read", 0x0F), (4, 0x14, 1, "write", 0),
        (4, 0x14, 1, "poll", 0)]
    assert B.peek(vnet_regs(tree), 0x14, 1) == 0


def test_virtio_without_driver_ok_is_left_alone_and_verifies(tree: Path) -> None:
    """Bus Master off made the device drop DRIVER_OK (QEMU: 0x0f -> 0x0b): it uses no queue
    (virtio §2.1.2), and a reset would complete in-flight buffers into old memory (issue 15)."""
    B.poke(vnet_regs(tree), 0x14, 1, 0x0B)
    r = run(tree, VNET, QUIESCE, (Virtio(),), {4: B.VirtioModel(clears_after=2)}).results[0]
    assert (r.outcome, r.message) == (OK, ("device_status 0x0b: DRIVER_OK clear, the device uses "
                                      "no virtqueue (virtio §2.1.2); not reset, the next "
                                      "driver resets it"))
    # num_queues first: a device that answers never reads it 0 (issue 12)
    assert [a.as_tuple()[:5] for a in r.accesses] == [(4, 0x12, 2, "read", 3),
                                                      (4, 0x14, 1, "read", 0x0B)]
    assert B.peek(vnet_regs(tree), 0x14, 1) == 0x0B
    v = run(tree, VNET, VERIFY, (Virtio(),)).results[0]
    assert (v.outcome, v.message) == (OK, ("device_status reads 0x0b: DRIVER_OK clear "
                                      "(stopped, not reset)"))


def test_virtio_verify_fails_while_driver_ok_is_set(tree: Path) -> None:
    v = run(tree, VNET, VERIFY, (Virtio(),)).results[0]
    assert (v.outcome, v.message) == (FAILED, ("device_status reads 0x0f: DRIVER_OK still set, "
                                      "not reset"))


def test_virtio_status_never_reading_zero_times_out(tree: Path) -> None:
    clock = B.FakeClock()
    r = run(tree, VNET, QUIESCE, (Virtio(),), {4: B.VirtioModel(clears_after=None)},
            clock).results[0]
    assert r.outcome == TIMEOUT
    assert r.message == ("device_status still reads 0x0f 1 s after writing 0 (bound 1 s; "
                         "virtio §4.1.4.3.2)")
    assert clock.slept == pytest.approx(1.0)


def test_virtio_reset_seen_through_the_plain_file_on_the_real_clock(tree: Path) -> None:
    """No model: the 'device' clears device_status from another thread after 50 ms, and the
    real mmap path sees it (MAP_SHARED and pwrite share the page cache)."""
    class Direct(Virtio):
        """Like Virtio, but its write of 0 goes to a scratch register so the background
        thread is what clears device_status."""

        def quiesce(self, device, state):  # type: ignore[no-untyped-def]
            c = common_cfg(device.live.data)

            def body(ctx: StepContext) -> str:
                res = ctx.poll(c.bar, c.offset + 0x14, 1, mask=0xFF, want=0, timeout_s=2.0)
                return f"{res.ok} after {res.elapsed:.3f}"
            return [PluginStep("wait", "wait for 0", body)]

    flip = B.later(vnet_regs(tree), 0x14, 1, 0, 0.05)
    out = run_plugins([B.device(tree, VNET)], QUIESCE, registry=registry(Direct()),
                      tree=SysfsTree(tree))
    flip.join()
    # Outcome, not wall time (timed asserts flake on a loaded machine): the poll succeeded,
    # and only the background thread could have cleared device_status.
    assert out.results[0].outcome == OK and out.results[0].message.startswith("True")


def test_virtio_legacy_only_transitional_device_is_declined(tree: Path) -> None:
    dev = B.device(tree, VBLK)
    cfg = bytearray(dev.live.data)
    for off in (0x84, 0x94, 0xA4, 0xB4, 0xC8):  # turn the virtio caps into unknown vendor caps
        cfg[off + 3] = 0x7F
    cfg[2:4] = (0x1001).to_bytes(2, "little")
    legacy = PciDevice(dev.addr, dev.ids.__class__(0x1AF4, 0x1001, 0x1AF4, 2, 0x010000, 0),
                       dev.path, dev.live.__class__("live", 4096, bytes(cfg)))
    assert Virtio().accepts(legacy) == ("legacy-only virtio device (no "
                                        "VIRTIO_PCI_CAP_COMMON_CFG): its reset goes through "
                                        "the I/O BAR, which plugins do not map")
    assert Virtio().accepts(dev) is None


def test_virtio_save_and_verify(tree: Path) -> None:
    dev = B.device(tree, VNET)
    out = run_plugins([dev], SAVE, registry=registry(Virtio()), bars_for=B.bars_for(tree, {}))
    assert out.ext(VNET) == {"virtio": {"v": 1, "common": [4, 0, 0x1000],
                                        "device_status": 0x0F, "num_queues": 3}}
    assert run(tree, VNET, VERIFY, (Virtio(),)).results[0].outcome == FAILED
    B.poke(vnet_regs(tree), 0x14, 1, 0)
    assert run(tree, VNET, VERIFY, (Virtio(),)).results[0].outcome == OK


# --- e1000 ---------------------------------------------------------------------------------


def e1k_regs(root: Path) -> Path:
    return B.device_dir(root, E1K) / "resource0"


def test_e1000_reset_masks_interrupts_first_and_waits_for_rst_to_clear(tree: Path) -> None:
    model = B.E1000Model(clears_after=2)
    r = run(tree, E1K, RESET, (E1000(),), {0: model}).results[0]
    assert (r.outcome, r.message) == (
        OK, "CTRL.RST cleared itself after 2 read(s); interrupts masked")
    writes = [(off, v) for op, off, v in model.order if op == "write"]
    assert writes[0] == (0xD8, 0xFFFFFFFF)  # IMC before anything else is written
    assert writes[1] == (0x0, E1K_CTRL | 1 << 26)
    assert writes[-1] == (0xD8, 0xFFFFFFFF)
    assert model.order[-1] == ("read", 0xC0, 0)  # ICR read last, clearing latched causes
    assert B.peek(e1k_regs(tree), 0x0, 4) == E1K_CTRL  # RST cleared itself
    assert B.peek(e1k_regs(tree), 0xD0, 4) == 0


def test_e1000_reset_bit_that_never_clears_times_out(tree: Path) -> None:
    clock = B.FakeClock()
    r = run(tree, E1K, RESET, (E1000(),), {0: B.E1000Model(clears_after=None)},
            clock).results[0]
    assert r.outcome == TIMEOUT
    assert r.message == ("CTRL.RST still 1 1 s after setting it (bound 1 s); "
                         f"CTRL={E1K_CTRL | 1 << 26:#010x}")
    assert clock.slept == pytest.approx(1.0 + 0.005)


def test_e1000_quiesce_and_verify(tree: Path) -> None:
    model = B.E1000Model()
    assert run(tree, E1K, VERIFY, (E1000(),), {0: model}).results[0].outcome == FAILED
    r = run(tree, E1K, QUIESCE, (E1000(),), {0: model}).results[0]
    assert r.outcome == OK
    assert B.peek(e1k_regs(tree), 0xD0, 4) == 0  # IMS cleared through IMC
    assert B.peek(e1k_regs(tree), 0x100, 4) == 0x0400_8000  # RCTL.EN cleared, rest kept
    assert B.peek(e1k_regs(tree), 0x400, 4) == 0x0104_00F8  # TCTL.EN cleared
    v = run(tree, E1K, VERIFY, (E1000(),), {0: model}).results[0]
    assert (v.outcome, v.message) == (OK, "IMS = 0, RCTL.EN = 0, TCTL.EN = 0")


# --- msix ----------------------------------------------------------------------------------


def test_msix_masks_every_vector_and_preserves_reserved_bits(tree: Path) -> None:
    r = run(tree, NVME, QUIESCE, (Msix(),)).results[0]
    assert (r.outcome, r.message) == (
        OK, "65 vector(s) masked (64 were unmasked) in BAR0+0x2000")
    data = nvme_regs(tree).read_bytes()
    for i in range(65):
        e = 0x2000 + 16 * i
        assert int.from_bytes(data[e + 12:e + 16], "little") == 1
        assert int.from_bytes(data[e + 8:e + 12], "little") == 0x4020 + i  # data untouched
    assert r.dropped == 0 and len(r.accesses) == 65 + 64  # vector 7 needed no write
    v = run(tree, VNET, QUIESCE, (Msix(),)).results[0]
    assert v.outcome == OK
    vc2 = B.peek(B.device_dir(tree, VNET) / "resource1", 16 * 2 + 12, 4)
    assert vc2 == 0x8000_0001
    assert run(tree, NVME, VERIFY, (Msix(),)).results[0].outcome == OK


def test_msix_table_past_the_bar_is_refused_before_any_access(tree: Path) -> None:
    path = B.add_bar(tree, NVME, 0, 0x2400)  # table of 65 entries ends at 0x2410
    before = path.read_bytes()
    r = run(tree, NVME, QUIESCE, (Msix(),)).results[0]
    assert r.outcome == REFUSED and r.accesses == []
    assert r.message == ("MSI-X table of 65 vector(s) at BAR0+0x2000 ends at 0x2410, past the "
                         "end of the BAR (0x2400 bytes): nothing accessed")
    assert path.read_bytes() == before


def test_msix_verify_reports_unmasked_vectors(tree: Path) -> None:
    r = run(tree, NVME, VERIFY, (Msix(),)).results[0]
    assert (r.outcome, r.message) == (FAILED, "64 of 65 MSI-X vector(s) unmasked (first: 0)")


# --- dry run, refusals, containment ----------------------------------------------------------


def _all_devices(root: Path) -> list[PciDevice]:
    from handoff.devices.pci import collect
    return collect(SysfsTree(root), privileged=True).devices


@pytest.mark.parametrize("phase", [SAVE, QUIESCE, RESET, VERIFY])
def test_dry_run_touches_nothing_and_lists_what_it_would_do(tree: Path, phase: str) -> None:
    before = B.digests(tree)
    assert len(before) == 4

    def never(dev: PciDevice, writable: bool) -> SysfsBars:
        raise AssertionError("a dry run opened a BAR")

    out = run_plugins(_all_devices(tree), phase, registry=load(entry_points=False),
                      dry_run=True, bars_for=never)
    assert B.digests(tree) == before
    assert out.results and all(r.outcome == PLANNED for r in out.results)
    for r in out.results:
        for a in r.accesses:
            assert a.result.startswith(("not read (dry run)", "not written (dry run)",
                                        "not polled (dry run)"))
    if phase == QUIESCE:
        nvme = next(r for r in out.results if r.label == "nvme:disable-controller")
        assert [(a.op, a.offset, a.value) for a in nvme.accesses] == [
            ("read", 0x0, None), ("read", 0x4, None), ("read", 0x14, None), ("write", 0x14, 0),
            ("poll", 0x1C, None)]
        assert "would wait up to 0.5 s" in nvme.accesses[-1].result


def test_dry_run_uses_saved_state_for_its_assumptions(tree: Path) -> None:
    saved = B.device(tree, NVME)
    saved.ext["nvme"] = {"v": 1, "cap": NVME_CAP, "cc": NVME_CC}
    out = run_plugins([B.device(tree, NVME)], QUIESCE, registry=registry(Nvme()),
                      saved={NVME: saved}, dry_run=True)
    acc = out.results[0].accesses
    assert acc[3].value == NVME_CC & ~1 and "would wait up to 1.5 s" in acc[4].result
    saved.ext["nvme"]["v"] = 2  # a version nvme 1.0 does not read: state ignored, said so
    out = run_plugins([B.device(tree, NVME)], QUIESCE, registry=registry(Nvme()),
                      saved={NVME: saved}, dry_run=True)
    assert "would wait up to 0.5 s" in out.results[0].accesses[4].result
    assert "saved ext section 'nvme' is version 2" in out.results[0].why


def test_lockdown_refuses_every_register_step_without_asking_the_kernel(tree: Path) -> None:
    before = B.digests(tree)
    out = run_plugins(_all_devices(tree), QUIESCE, registry=load(entry_points=False),
                      refuse_bars="kernel lockdown (integrity) refuses BAR mapping")
    assert B.digests(tree) == before
    assert {(r.label, r.outcome) for r in out.results} == {
        ("e1000:mask-and-stop", REFUSED), ("nvme:disable-controller", REFUSED),
        ("msix:mask-vectors", REFUSED), ("virtio:reset-device", REFUSED)}
    assert all(r.message == "kernel lockdown (integrity) refuses BAR mapping"
               for r in out.results)


def test_eperm_and_einval_become_refused_steps(tree: Path, tmp_path: Path) -> None:
    for code, cls_msg in ((errno.EPERM, LOCKDOWN_MESSAGE), (errno.EINVAL, CLAIMED_MESSAGE)):
        out = run_plugins([B.device(tree, NVME)], QUIESCE, registry=registry(Nvme()),
                          bars_for=lambda d, w, c=code: SysfsBars(
                              SysfsTree(tree), d.addr, writable=w, mmap_fn=_raising_mmap(c)))
        r = out.results[0]
        assert r.outcome == REFUSED and cls_msg in r.message


def test_bound_devices_get_no_writing_phase(tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)  # first kernel: drivers bound
    path = B.add_bar(root, NVME, 0, 0x4000, {0x14: (4, NVME_CC), 0x1C: (4, 1)})
    out = run_plugins([B.device(root, NVME)], QUIESCE, registry=registry(Nvme()),
                      tree=SysfsTree(root))
    r = out.results[0]
    assert r.outcome == REFUSED
    assert r.message == f"{NVME}: {CLAIMED_MESSAGE} (bound to nvme)"
    assert B.peek(path, 0x14, 4) == NVME_CC


class Exploding(Plugin):
    name, match, order = "exploding", Match.of(ids=["1b36:0010"]), 10

    def quiesce(self, device, state):  # type: ignore[no-untyped-def]
        def body(ctx: StepContext) -> str:
            ctx.read(0, 0x8, 4)
            raise KeyError("boom")
        return [PluginStep("explode", "raises", body),
                PluginStep("after", "never runs", lambda ctx: "ran")]


class BadPlanner(Plugin):
    name, match = "badplanner", Match.of(ids=["1b36:0010"])

    def quiesce(self, device, state):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("planning bug")


def test_a_raising_plugin_is_contained_and_the_run_moves_on(tree: Path) -> None:
    out = run(tree, NVME, QUIESCE, (Exploding(), BadPlanner(), Nvme(), Msix()),
              {0: B.NvmeModel(ready_after=1)})
    got = [(r.label, r.outcome) for r in out.results]
    assert got == [("exploding:explode", FAILED), ("exploding:after", REFUSED),
                   ("badplanner:plan", FAILED), ("nvme:disable-controller", OK),
                   ("msix:mask-vectors", OK)]
    assert out.results[0].message == "plugin exploding raised KeyError: 'boom'"
    assert out.results[0].accesses[0].as_tuple() == (0, 0x8, 4, "read", 0x10400, "ok")
    assert out.results[1].message == "not attempted: exploding:explode ended failed"
    assert out.results[2].message == "quiesce() raised ZeroDivisionError: planning bug"
    assert not out.ok


def test_a_plugin_that_overstays_is_abandoned_and_loses_register_access(tree: Path) -> None:
    go, seen = threading.Event(), []

    class Hanging(Plugin):
        name, match, step_timeout_s = "hanging", Match.of(classes=["010802"]), 0.2

        def quiesce(self, device, state):  # type: ignore[no-untyped-def]
            def body(ctx: StepContext) -> str:
                ctx.read(0, 0x8, 4)
                go.wait(10)  # stuck outside its context: only the runner can give up
                try:
                    ctx.write(0, 0x14, 4, 0)
                except BaseException as e:
                    seen.append(e)
                    raise
                return "wrote"
            return [PluginStep("hang", "hangs", body)]

    t0 = time.monotonic()
    out = run_plugins([B.device(tree, NVME)], QUIESCE, registry=registry(Hanging(), Msix()),
                      tree=SysfsTree(tree), grace_s=0.1)
    took = time.monotonic() - t0
    assert took < 10  # returns: no wall-time goal (loaded machines)
    r = out.results[0]
    assert r.outcome == TIMEOUT
    assert r.message == ("hanging:hang did not return within its bound of 0.2 s: abandoned, "
                         "its register access revoked")
    assert out.results[1].label == "msix:mask-vectors" and out.results[1].outcome == OK
    go.set()
    for _ in range(200):
        if seen:
            break
        time.sleep(0.01)
    assert seen and isinstance(seen[0], StepAbandoned)
    assert B.peek(nvme_regs(tree), 0x14, 4) == NVME_CC


def test_phase_budget_stops_later_steps(tree: Path) -> None:
    clock = B.FakeClock()
    out = run_plugins([B.device(tree, NVME), B.device(tree, VNET)], QUIESCE,
                      registry=load(entry_points=False), budget_s=1.0, clock=clock,
                      sleep=clock.sleep,
                      bars_for=B.bars_for(tree, {NVME: {0: B.NvmeModel(None)}}))
    got = [(r.label, r.outcome) for r in out.results]
    assert got == [("nvme:disable-controller", TIMEOUT), ("msix:mask-vectors", TIMEOUT),
                   ("virtio:reset-device", TIMEOUT), ("msix:mask-vectors", TIMEOUT)]
    assert "cut to the step's remaining time" in out.results[0].accesses[-1].result
    assert out.results[1].message == "not started: the quiesce phase's budget of 1 s ran out"
    assert clock.slept == pytest.approx(1.0)


def test_results_serialise(tree: Path) -> None:
    out = run(tree, NVME, QUIESCE, (Nvme(), Msix()), {0: B.NvmeModel(1)})
    doc = json.loads(json.dumps(out.to_json(max_accesses=3)))
    r0 = doc["results"][0]
    assert r0["accesses"][2] == {"bar": 0, "off": "0x14", "width": 4, "op": "read",
                                 "value": "0x00460001", "result": "ok", "reg": "CC"}
    assert r0["more_accesses"] == 2
    assert doc["results"][1]["more_accesses"] == 64 + 65 - 3
    assert out.results[0].line() == "nvme:disable-controller ok"


# --- entry points ------------------------------------------------------------------------------


ENTRY_POINTS = """\
[handoff.plugins]
broken = mypkg:Plugin
hanging = mypkg:Hanging
missing = mypkg_missing:Plugin
crashing = mypkg.crash:Plugin
notaplugin = mypkg:NOT_A_PLUGIN
clash = mypkg:Clash
"""

MYPKG = '''
import threading
from handoff.plugins import Match, PluginStep
from handoff.plugins import Plugin as Base

NOT_A_PLUGIN = 42
GO = threading.Event()


class Plugin(Base):
    """Loads fine; its step raises."""
    name, version, order = "mypkg", "0.1", 10
    match = Match.of(ids=["1b36:0010"])

    def quiesce(self, device, state):
        def body(ctx):
            raise RuntimeError("deliberately broken")
        return [PluginStep("break", "raises on purpose", body)]


class Hanging(Base):
    name, version, order, step_timeout_s = "mypkg-hang", "0.1", 11, 0.2
    match = Match.of(ids=["1b36:0010"])

    def quiesce(self, device, state):
        return [PluginStep("hang", "blocks past its bound", lambda ctx: GO.wait(10))]


class Clash(Base):
    name = "nvme"
    match = Match.of(ids=["1b36:0010"])

    def verify(self, device, state):
        return []
'''


@pytest.fixture
def entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    (site / "mypkg").mkdir(parents=True)
    (site / "mypkg" / "__init__.py").write_text(MYPKG)
    (site / "mypkg" / "crash.py").write_text("raise ImportError('crash on import')\n")
    dist = site / "mypkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    yield site
    for m in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[m]


def test_entry_point_plugins_load_and_broken_ones_are_reported(entry_points: Path) -> None:
    reg = load()
    assert reg.names() == ["mypkg", "mypkg-hang", "e1000", "nvme", "virtio", "msix"]
    info = reg.get("mypkg")
    assert info is not None and info.source == "entry point"
    assert (info.dist, info.dist_version, info.entry_point) == ("mypkg", "0.1",
                                                                "broken = mypkg:Plugin")
    problems = {p.entry_point: p.error for p in reg.problems}
    assert problems == {
        "missing = mypkg_missing:Plugin":
            "loading failed: ModuleNotFoundError: No module named 'mypkg_missing'",
        "crashing = mypkg.crash:Plugin": "loading failed: ImportError: crash on import",
        "notaplugin = mypkg:NOT_A_PLUGIN":
            "int is not a handoff.plugins.Plugin (subclass it and point the entry point at "
            "the class)",
        "clash = mypkg:Clash": "name 'nvme' is already taken by built-in",
    }


def test_broken_entry_point_plugins_are_contained_by_the_runner(entry_points: Path,
                                                                tree: Path) -> None:
    reg = load()
    t0 = time.monotonic()
    out = run_plugins([B.device(tree, NVME), B.device(tree, VNET)], QUIESCE, registry=reg,
                      bars_for=B.bars_for(tree, {NVME: {0: B.NvmeModel(1)},
                                                 VNET: {4: B.VirtioModel()}}),
                      grace_s=0.1)
    assert time.monotonic() - t0 < 10  # returns: no wall-time goal (loaded machines)
    got = [(r.label, r.outcome) for r in out.results]
    assert got == [("mypkg:break", FAILED), ("mypkg-hang:hang", TIMEOUT),
                   ("nvme:disable-controller", OK), ("msix:mask-vectors", OK),
                   ("virtio:reset-device", OK), ("msix:mask-vectors", OK)]
    assert out.results[0].message == "plugin mypkg raised RuntimeError: deliberately broken"
    assert len(out.problems) == 4
    sys.modules["mypkg"].GO.set()  # type: ignore[attr-defined]


# --- CLI -------------------------------------------------------------------------------------


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_cli_lists_builtins_as_json(tree: Path) -> None:
    rc, out, err = cli("plugins", "--json", "--sysfs-root", str(tree))
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert doc["kind"] == "plugins" and doc["schema_version"] == 1
    by = {p["name"]: p for p in doc["plugins"]}
    assert list(by) == ["e1000", "nvme", "virtio", "msix"]
    assert by["nvme"]["hooks"] == ["save", "quiesce", "verify"]
    assert by["nvme"]["matches"] == ["class 010802"] and by["nvme"]["source"] == "built-in"
    assert "id 8086:100e" in by["e1000"]["matches"] and "id 8086:10d3" in by["e1000"]["matches"]
    devs = {d["addr"]: d for d in doc["devices"]}
    assert devs[NVME]["plugins"] == ["nvme", "msix"]
    assert devs[E1K]["plugins"] == ["e1000"]
    assert devs[ROOT_PORT]["plugins"] == [] and "pcieport" in devs[ROOT_PORT]["declined"]["msix"]


def test_cli_text_and_broken_entry_points(entry_points: Path, tree: Path) -> None:
    rc, out, err = cli("plugins", "--sysfs-root", str(tree))
    assert rc == 1
    assert out.splitlines()[0] == ("6 plugin(s): 4 built-in, 2 from entry points "
                                   "(handoff.plugins)")
    assert "mypkg 0.1 (broken = mypkg:Plugin)" in out
    row = next(line for line in out.splitlines() if line.startswith(NVME))
    assert row.split()[:4] == [NVME, "1b36:0010", "010802", "-"]
    assert "mypkg, mypkg-hang, nvme, msix" in row
    assert "handoff: problem: plugin entry point 'crashing = mypkg.crash:Plugin' from mypkg: " \
           "loading failed: ImportError: crash on import" in err


def test_cli_missing_sysfs_root_is_a_usage_error(tmp_path: Path) -> None:
    rc, _, err = cli("plugins", "--sysfs-root", str(tmp_path / "nope"))
    assert rc == 2 and f"--sysfs-root {tmp_path / 'nope'}: no such directory" in err
    (tmp_path / "empty").mkdir()  # exists, but holds no PCI tree: the environment's
    rc, _, err = cli("plugins", "--sysfs-root", str(tmp_path / "empty"))
    assert rc == 4 and "bus/pci/devices does not exist" in err


def test_accessor_closes_cleanly_after_many_accesses(tree: Path) -> None:
    f = MmapFile.open(nvme_regs(tree), writable=True, bar=0)
    for i in range(100):
        f.write(0x3000 + 4 * (i % 16), 4, i)
        assert f.read(0x3000 + 4 * (i % 16), 4) == i
        f.read(0x3000, 8)
    f.close()  # no BufferError: every view is released first
    with pytest.raises(ValueError):  # a released view refuses further access
        f.read(0x3000, 4)
    last = [max(i for i in range(100) if i % 16 == k) for k in range(16)]
    data = nvme_regs(tree).read_bytes()[0x3000:0x3040]
    assert [int.from_bytes(data[4 * k:4 * k + 4], "little") for k in range(16)] == last
