"""Intel e1000/e1000e: mask interrupts and stop receive/transmit, then reset the MAC through
CTRL.RST and wait for the bit to clear itself.

This matters most for the parts the kernel cannot reset: an e1000 on the root bus has no
``reset_method`` (measured, lockdown-measured.md), so a register reset is the only one left.
The sequence is the one Linux uses (drivers/net/ethernet/intel/e1000/e1000_hw.c
e1000_reset_hw(), e1000e/82571.c e1000_reset_hw_82571()): mask every interrupt through IMC,
disable receive and transmit, set CTRL.RST, wait for it to clear, mask again and read ICR to
drop causes latched before the reset.

Registers, in BAR0 (memory-mapped CSRs) - PCI/PCI-X Family of Gigabit Ethernet Controllers
Software Developer's Manual (8254x, 317453-006) §13.4, and the 82574 GbE Controller Datasheet
§10.2 (same offsets and bits):

- CTRL 0x0000 (8254x §13.4.1 "Device Control Register", Table 13-3): RST is bit 26, "Device
  Reset ... self-clearing";
- STATUS 0x0008 (§13.4.2), read to flush posted writes;
- ICR 0x00C0 (§13.4.17 "Interrupt Cause Read", clear on read), IMS 0x00D0 (§13.4.20),
  IMC 0x00D8 (§13.4.21 "Interrupt Mask Clear": writing 1 masks; software writes 1 to the
  reserved bits too, so 0xFFFFFFFF masks everything, including causes it does not know);
- RCTL 0x0100 (§13.4.22, EN bit 1) and TCTL 0x0400 (§13.4.33, EN bit 1).

ICH/PCH-integrated parts (82567 on ICH9, I217, I219) share these registers, but Linux
(e1000e/ich8lan.c e1000_reset_hw_ich8lan()) also takes the software flag
(EXTCNF_CTRL.SWFLAG) that arbitrates the PHY with the management engine before the MAC reset;
this plugin does not, so on those parts the reset step is a MAC reset only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from handoff.devices.model import PciDevice
from handoff.plugins.api import Match, NoResponse, Plugin, PluginStep, StepFailed, StepTimeout
from handoff.plugins.context import StepContext

BAR = 0
CTRL, STATUS, ICR, IMS, IMC, RCTL, TCTL = 0x0000, 0x0008, 0x00C0, 0x00D0, 0x00D8, 0x0100, 0x0400
CTRL_RST = 1 << 26
RCTL_EN = 1 << 1
TCTL_EN = 1 << 1
IMC_ALL = 0xFFFFFFFF
# The 8254x manual asks for ~1 us after setting RST before the next access; e1000_reset_hw()
# waits milliseconds. The poll then allows the reset this long to clear the bit.
RESET_SETTLE_S = 0.005
RESET_TIMEOUT_S = 1.0

PCI_8254X = ("1004", "1008", "100c", "100e", "100f", "1010", "1011", "1013", "1015", "1016",
             "1017", "1019", "101e", "1026", "1075", "1076", "1079", "107c")
PCIE_8257X = ("105e", "105f", "1060", "107d", "107e", "107f", "108b", "108c", "109a", "10d3",
              "10f6", "150c")
ICH_PCH = ("10bd", "10f5", "1502", "1503", "153a", "153b", "156f", "1570", "15b7", "15b8")


class E1000(Plugin):
    name = "e1000"
    version = "1.0"
    description = ("Intel 8254x/8257x/ICH-PCH gigabit MACs: mask interrupts, stop RX/TX, "
                   "reset through CTRL.RST")
    match = Match.of(ids=[f"8086:{d}" for d in PCI_8254X + PCIE_8257X + ICH_PCH])
    step_timeout_s = 3.0

    def quiesce(self, device: PciDevice,
                state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        def body(ctx: StepContext) -> str:
            _alive(ctx)
            ctx.write(BAR, IMC, 4, IMC_ALL, name="IMC")
            ctx.modify(BAR, RCTL, 4, clear_bits=RCTL_EN, name="RCTL")
            ctx.modify(BAR, TCTL, 4, clear_bits=TCTL_EN, name="TCTL")
            ctx.read(BAR, STATUS, 4, name="STATUS")  # flush the posted writes
            return "interrupts masked (IMC = 0xffffffff); RCTL.EN = 0, TCTL.EN = 0"

        return [PluginStep("mask-and-stop", "mask every interrupt (IMC) and stop receive and "
                           "transmit (RCTL.EN, TCTL.EN)", body,
                           assume={(BAR, STATUS): 0x80080783, (BAR, RCTL): RCTL_EN,
                                   (BAR, TCTL): TCTL_EN})]

    def reset(self, device: PciDevice, state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        def body(ctx: StepContext) -> str:
            _alive(ctx)
            ctx.write(BAR, IMC, 4, IMC_ALL, name="IMC")  # mask first: 8254x §13.4.21
            ctrl = ctx.read(BAR, CTRL, 4, name="CTRL")
            ctx.write(BAR, CTRL, 4, ctrl | CTRL_RST, name="CTRL")
            ctx.sleep(RESET_SETTLE_S)
            res = ctx.poll(BAR, CTRL, 4, mask=CTRL_RST, want=0, timeout_s=RESET_TIMEOUT_S,
                           name="CTRL")
            if not res.ok:
                raise StepTimeout(f"CTRL.RST still 1 {res.elapsed + RESET_SETTLE_S:.3g} s after "
                                  f"setting it (bound {RESET_TIMEOUT_S:g} s); "
                                  f"CTRL={res.value:#010x}")
            ctx.write(BAR, IMC, 4, IMC_ALL, name="IMC")
            ctx.read(BAR, ICR, 4, name="ICR")  # clear-on-read: drop causes latched before
            return f"CTRL.RST cleared itself after {res.reads} read(s); interrupts masked"

        return [PluginStep("device-reset", "mask interrupts, set CTRL.RST and wait for it to "
                           "self-clear (8254x §13.4.1)", body,
                           assume={(BAR, STATUS): 0x80080783, (BAR, CTRL): 0x00140240})]

    def verify(self, device: PciDevice,
               state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        def body(ctx: StepContext) -> str:
            _alive(ctx)
            ims = ctx.read(BAR, IMS, 4, name="IMS")
            rctl = ctx.read(BAR, RCTL, 4, name="RCTL")
            tctl = ctx.read(BAR, TCTL, 4, name="TCTL")
            problems = []
            if ims:
                problems.append(f"interrupts enabled (IMS={ims:#010x})")
            if rctl & RCTL_EN:
                problems.append("receive enabled (RCTL.EN = 1)")
            if tctl & TCTL_EN:
                problems.append("transmit enabled (TCTL.EN = 1)")
            if problems:
                raise StepFailed("; ".join(problems))
            return "IMS = 0, RCTL.EN = 0, TCTL.EN = 0"

        return [PluginStep("quiet", "no interrupt enabled, receive and transmit off", body,
                           assume={(BAR, STATUS): 0x80080783})]


def _alive(ctx: StepContext) -> None:
    """STATUS cannot read 0 from a MAC that answers (a decoding e1000 reads 0x80080783, and
    QEMU returns 0 when Memory Space is off), nor all ones (a device that is gone)."""
    status = ctx.read(BAR, STATUS, 4, name="STATUS")
    if status in (0, 0xFFFFFFFF):
        raise NoResponse(f"STATUS reads {status:#010x}: the device does not answer (memory "
                         "decoding off, or the device is gone)")
