"""NVMe: disable the controller (CC.EN 1 -> 0) and wait, bounded by CAP.TO, for CSTS.RDY 0.

A controller the dead kernel left enabled still has its admin and I/O queues pointing into the
old kernel's memory; clearing Bus Master stops its DMA but not the controller. Clearing CC.EN
is a Controller Level Reset: the controller aborts outstanding commands, deletes the I/O
queues and clears CSTS.RDY when it is ready to be enabled again. It is what Linux does before
re-initialising a controller (drivers/nvme/host/core.c nvme_disable_ctrl() and
nvme_wait_ready()). No shutdown notification (CC.SHN) is sent: the kernel the controller
would flush for is gone, and a shutdown can take CAP.TO or longer again.

Registers (NVM Express Base Specification 1.4 §3.1 "Register Definition"; in 2.x the same
"Controller Properties"): CAP at 0x00 (§3.1.1, 64 bits, read as two dwords; TO in bits 31:24 in 500 ms units: the
worst-case time for CSTS.RDY to follow CC.EN), VS at 0x08 (§3.1.2), CC at 0x14 (§3.1.5; EN
bit 0), CSTS at 0x1C (§3.1.6; RDY bit 0, CFS bit 1 Controller Fatal Status, SHST bits 3:2).
The reset itself: NVMe 1.4 §7.3.2 "Controller Level Reset" (2.x §3.7.2); shutdown, which is
not done here: §7.6.2 "Shutdown" (2.x §3.6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from handoff.devices.model import PciDevice
from handoff.plugins.api import Match, NoResponse, Plugin, PluginStep, StepFailed, StepTimeout
from handoff.plugins.context import StepContext

BAR = 0  # NVMe registers are in BAR0 (MLBAR/MUBAR, NVMe 1.4 §2.1.10-2.1.11)
CAP, VS, CC, CSTS = 0x00, 0x08, 0x14, 0x1C
CAP_TO_SHIFT, CAP_TO_MASK = 24, 0xFF
CC_EN = 1 << 0
CSTS_RDY = 1 << 0
CSTS_CFS = 1 << 1
TO_UNIT_S = 0.5
# nvme_wait_ready() waits (CAP.TO + 1) units: one unit of slack over the spec's worst case,
# and a controller reporting TO = 0 still gets 500 ms.
MAX_WAIT_S = (CAP_TO_MASK + 1) * TO_UNIT_S
ALL_ONES_32 = 0xFFFFFFFF
# What a dry run assumes a controller answers (no register is read then): CSS = NVM,
# TO = 0 (the shortest bound, 0.5 s), MQES = 2047; version 1.4.
DRY_CAP = (1 << 37) | 0x7FF
DRY_VS = 0x00010400
_DRY = {(BAR, CAP): DRY_CAP & 0xFFFFFFFF, (BAR, CAP + 4): DRY_CAP >> 32, (BAR, VS): DRY_VS}


def read_cap(ctx: StepContext) -> int:
    """CAP as two dword reads, low then high, as Linux does (drivers/nvme/host/pci.c
    nvme_pci_reg_read64(): lo_hi_readq()): not every controller answers a 64-bit read.
    CAP cannot read 0 (MQES, CSS and TO are never all zero) nor all ones from a controller
    that answers: either is "no response" (Memory Space off, or the device is gone)."""
    lo = ctx.read(BAR, CAP, 4, name="CAP")
    cap = lo | ctx.read(BAR, CAP + 4, 4, name="CAP+4") << 32
    if cap in (0, (1 << 64) - 1):
        raise NoResponse(f"CAP reads {cap:#018x}: the controller does not answer (memory "
                         "decoding off, or the device is gone)")
    return cap


def ready_bound(cap: int) -> float:
    """Seconds to wait for CSTS.RDY to follow CC.EN, from CAP.TO."""
    return (((cap >> CAP_TO_SHIFT) & CAP_TO_MASK) + 1) * TO_UNIT_S


class Nvme(Plugin):
    name = "nvme"
    version = "1.0"
    description = "disable an NVMe controller (CC.EN = 0) and wait for CSTS.RDY = 0"
    match = Match.of(classes=["010802"])  # mass storage, NVM controller, NVM Express
    step_timeout_s = 5.0

    def save(self, device: PciDevice, state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        def body(ctx: StepContext) -> str:
            cap = read_cap(ctx)
            vs = ctx.read(BAR, VS, 4, name="VS")
            if vs in (0, ALL_ONES_32):  # NVMe 1.0 and later: the major version is >= 1
                raise NoResponse(f"VS reads {vs:#010x}: the controller does not answer")
            cc = ctx.read(BAR, CC, 4, name="CC")
            csts = ctx.read(BAR, CSTS, 4, name="CSTS")
            for key, v in (("cap", cap), ("vs", vs), ("cc", cc), ("csts", csts)):
                ctx.record(key, v)
            return (f"NVMe {vs >> 16}.{(vs >> 8) & 0xFF}.{vs & 0xFF}; CC.EN={cc & CC_EN} "
                    f"CSTS.RDY={csts & CSTS_RDY} CSTS.CFS={(csts & CSTS_CFS) >> 1}")

        return [PluginStep("read-registers", "record CAP, VS, CC and CSTS", body,
                           assume=dict(_DRY))]

    def quiesce(self, device: PciDevice,
                state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        # A dry run shows the case the step exists for: a controller left enabled and ready.
        cap = (state.get("cap", 0) if state else 0) or DRY_CAP
        cc = (state.get("cc", 0) if state else 0) | CC_EN
        assume = {(BAR, CAP): cap & 0xFFFFFFFF, (BAR, CAP + 4): cap >> 32, (BAR, CC): cc,
                  (BAR, CSTS): CSTS_RDY}
        return [PluginStep("disable-controller",
                           "clear CC.EN and wait for CSTS.RDY = 0 within CAP.TO (Controller "
                           "Level Reset: the queues the dead kernel set up are torn down)",
                           _disable, timeout_s=MAX_WAIT_S + 2.0, assume=assume)]

    def verify(self, device: PciDevice,
               state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        def body(ctx: StepContext) -> str:
            read_cap(ctx)  # CC = CSTS = 0 is also what a controller that does not answer reads
            cc = ctx.read(BAR, CC, 4, name="CC")
            csts = ctx.read(BAR, CSTS, 4, name="CSTS")
            if csts == ALL_ONES_32:
                raise StepFailed("CSTS reads all-ones: the controller does not answer")
            if cc & CC_EN or csts & CSTS_RDY:
                raise StepFailed(f"controller still enabled: CC={cc:#010x} CSTS={csts:#010x}")
            return "CC.EN = 0, CSTS.RDY = 0" + _cfs(csts)

        return [PluginStep("controller-disabled", "CC.EN and CSTS.RDY both read 0", body,
                           assume={**_DRY, (BAR, CC): 0, (BAR, CSTS): 0})]


def _cfs(csts: int) -> str:
    return ("; CSTS.CFS = 1: the controller reports a fatal status (it needs the reset "
            "it just had, or a function reset)") if csts & CSTS_CFS else ""


def _disable(ctx: StepContext) -> str:
    cap = read_cap(ctx)
    to = (cap >> CAP_TO_SHIFT) & CAP_TO_MASK
    bound = ready_bound(cap)
    cc = ctx.read(BAR, CC, 4, name="CC")
    if cc & CC_EN:
        ctx.write(BAR, CC, 4, cc & ~CC_EN, name="CC")
        did = "CC.EN 1 -> 0"
    else:
        did = "CC.EN was already 0"
    res = ctx.poll(BAR, CSTS, 4, mask=CSTS_RDY, want=0, timeout_s=bound, name="CSTS")
    if not res.ok:
        gone = " (reads all-ones: the controller does not answer)" \
            if res.value == ALL_ONES_32 else ""
        raise StepTimeout(f"{did}, but CSTS.RDY still 1 after {res.elapsed:.3g} s (bound "
                          f"{bound:g} s from CAP.TO = {to}); CSTS={res.value:#010x}{gone}"
                          + _cfs(res.value if not gone else 0))
    return f"{did}; CSTS.RDY = 0 after {res.reads} read(s)" + _cfs(res.value)
