"""virtio-pci (modern): reset the device through device_status in the common configuration.

A virtio device the dead kernel drove still has its virtqueues' addresses; a reset makes it
forget them. References are to the Virtual I/O Device (VIRTIO) specification 1.1/1.2:

- §4.1.2 PCI Device Discovery: vendor 0x1af4; devices 0x1040-0x107f are modern (1.x only);
  0x1000-0x103f are transitional and are handled here only when they expose the modern
  capabilities (a legacy-only device is reset through its I/O BAR, which is not done here).
- §4.1.4 Virtio Structure PCI Capabilities: vendor-specific capabilities (id 0x09) of the form
  struct virtio_pci_cap { cap_vndr, cap_next, cap_len, cfg_type, bar, id, padding[2],
  le32 offset, le32 length }; cfg_type 1 is VIRTIO_PCI_CAP_COMMON_CFG. The driver ignores a
  capability whose ``bar`` is reserved (not 0-5) and uses the first one of a type it can use.
- §4.1.4.3 Common configuration structure layout: device_status is the u8 at offset 0x14
  (num_queues the le16 at 0x12).
- §2.1 Device Status Field: writing 0 resets the device; and §4.1.4.3.2 Driver Requirements:
  "After writing 0 to device_status, the driver MUST wait for a read of device_status to return
  0 before reinitializing the device." Linux's vp_reset() (drivers/virtio/virtio_pci_modern.c)
  waits for that without a bound; here the wait is bounded and its end is reported.
- §2.1.2 Device Requirements: Device Status Field: "The device MUST NOT consume buffers or send
  any used buffer notifications to the driver before DRIVER_OK." A device whose status has
  DRIVER_OK (4) clear does not touch its virtqueues until a driver sets it again, and a driver
  resets the device first (register_virtio_device() in drivers/virtio/virtio.c).

Why the reset is skipped then (issue 15): the restore engine clears Bus Master before plugin
quiesce, and QEMU's virtio-pci answers that by clearing DRIVER_OK itself (device_status 0x0f
reads 0x0b; hw/virtio/virtio-pci.c virtio_write_config(), "disable vring processing when
bus-mastering is disabled"). A reset after that still wrote old memory in QEMU 7.2, measured
in the e2e dma-handoff scenario: virtio_net_reset() purges the TX frame the netdev peer held
back, and its completion, virtio_net_tx_complete(), re-enables notifications through
virtio_queue_set_notification(), which writes the TX used ring (avail_event) without checking
the disabled flag that stops virtqueue_push(). With DRIVER_OK already clear the reset buys
nothing (the device is stopped, by §2.1.2), so the step leaves it to the next driver's reset.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from handoff._slots import Frozen
from handoff.devices import capabilities as caps
from handoff.devices.model import PciDevice
from handoff.plugins.api import Match, NoResponse, Plugin, PluginStep, StepFailed, StepTimeout
from handoff.plugins.context import StepContext

_set = object.__setattr__

VENDOR = 0x1AF4
PCI_CAP_ID_VNDR = 0x09
VIRTIO_PCI_CAP_COMMON_CFG = 1
CAP_LEN_MIN = 16  # sizeof(struct virtio_pci_cap)
DEVICE_STATUS = 0x14  # u8
DRIVER_OK = 0x04  # §2.1 Device Status Field
NUM_QUEUES = 0x12  # le16
COMMON_LEN_MIN = DEVICE_STATUS + 1
RESET_TIMEOUT_S = 1.0  # the spec gives no bound; a device that takes longer is reported


class VirtioCap(Frozen):
    __slots__ = ("bar", "cap", "cfg_type", "length", "offset")
    cap: int  # offset in config space
    cfg_type: int
    bar: int
    offset: int
    length: int

    def __init__(self, cap: int, cfg_type: int, bar: int, offset: int, length: int) -> None:
        _set(self, "cap", cap)
        _set(self, "cfg_type", cfg_type)
        _set(self, "bar", bar)
        _set(self, "offset", offset)
        _set(self, "length", length)


def virtio_caps(config: bytes) -> list[VirtioCap]:
    """The virtio structure capabilities of a config snapshot, in list order (bounded walk)."""
    out = []
    for c in caps.walk_standard(config).caps:
        if c.id != PCI_CAP_ID_VNDR or c.offset + CAP_LEN_MIN > len(config):
            continue
        if config[c.offset + 2] < CAP_LEN_MIN:  # cap_len too short for a virtio_pci_cap
            continue
        out.append(VirtioCap(c.offset, config[c.offset + 3], config[c.offset + 4],
                             int.from_bytes(config[c.offset + 8:c.offset + 12], "little"),
                             int.from_bytes(config[c.offset + 12:c.offset + 16], "little")))
    return out


def common_cfg(config: bytes) -> VirtioCap | None:
    """The first usable VIRTIO_PCI_CAP_COMMON_CFG (§4.1.4: reserved BAR values are ignored).
    Memoized by content: ``accepts`` and every hook ask for it on the same snapshot."""
    if type(config) is bytes:
        return _common_cfg_cached(config)
    return _common_cfg(config)


def _common_cfg(config: bytes) -> VirtioCap | None:
    for v in virtio_caps(config):
        if v.cfg_type == VIRTIO_PCI_CAP_COMMON_CFG and v.bar <= 5 \
                and v.length >= COMMON_LEN_MIN:
            return v
    return None


_common_cfg_cached = functools.lru_cache(maxsize=64)(_common_cfg)


def _answers(ctx: StepContext, c: VirtioCap) -> int:
    """num_queues, which a device that answers never reads as 0 (every virtio device has a
    queue) nor 0xffff; device_status 0 alone cannot tell a reset device from a silent one."""
    nq = ctx.read(c.bar, c.offset + NUM_QUEUES, 2, name="num_queues")
    if nq in (0, 0xFFFF):
        raise NoResponse(f"num_queues reads {nq:#06x}: the device does not answer (memory "
                         "decoding off, or the device is gone)")
    return nq


class Virtio(Plugin):
    name = "virtio"
    version = "1.0"
    description = ("reset a virtio-pci device that has DRIVER_OK: device_status = 0, then wait "
                   "for it to read 0")
    match = Match.of(ids=["1af4:1040-107f", "1af4:1000-103f"])
    requires = "a VIRTIO_PCI_CAP_COMMON_CFG capability (modern interface)"
    step_timeout_s = 5.0

    def accepts(self, device: PciDevice) -> str | None:
        if common_cfg(device.live.data) is not None:
            return None
        if len(device.live.data) < 0x40:
            return (f"config snapshot holds {len(device.live.data)} bytes: capabilities not "
                    "visible (run as root)")
        if device.ids.device < 0x1040:
            return ("legacy-only virtio device (no VIRTIO_PCI_CAP_COMMON_CFG): its reset goes "
                    "through the I/O BAR, which plugins do not map")
        return "no usable VIRTIO_PCI_CAP_COMMON_CFG capability"

    def _common(self, device: PciDevice) -> VirtioCap:
        c = common_cfg(device.live.data)
        assert c is not None  # accepts() said so
        return c

    def save(self, device: PciDevice, state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        c = self._common(device)

        def body(ctx: StepContext) -> str:
            nq = _answers(ctx, c)
            status = ctx.read(c.bar, c.offset + DEVICE_STATUS, 1, name="device_status")
            ctx.record("common", [c.bar, c.offset, c.length])
            ctx.record("device_status", status)
            ctx.record("num_queues", nq)
            return f"device_status {status:#04x}, {nq} queue(s)"

        return [PluginStep("read-status", "record device_status and num_queues", body,
                           assume={(c.bar, c.offset + NUM_QUEUES): 1})]

    def quiesce(self, device: PciDevice,
                state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        c = self._common(device)
        where = c.offset + DEVICE_STATUS

        def body(ctx: StepContext) -> str:
            _answers(ctx, c)
            before = ctx.read(c.bar, where, 1, name="device_status")
            if before == 0xFF:
                raise StepFailed("device_status reads 0xff: the device does not answer "
                                 "(memory decoding off, or the device is gone)")
            if not before & DRIVER_OK:
                # Stopped already (§2.1.2); a reset now would complete in-flight buffers
                # in QEMU, writing the crashed kernel's rings (module docstring).
                return (f"device_status {before:#04x}: DRIVER_OK clear, the device uses no "
                        "virtqueue (virtio §2.1.2); not reset, the next driver resets it")
            ctx.write(c.bar, where, 1, 0, name="device_status")
            res = ctx.poll(c.bar, where, 1, mask=0xFF, want=0, timeout_s=RESET_TIMEOUT_S,
                           name="device_status")
            if not res.ok:
                raise StepTimeout(f"device_status still reads {res.value:#04x} "
                                  f"{res.elapsed:.3g} s after writing 0 (bound "
                                  f"{RESET_TIMEOUT_S:g} s; virtio §4.1.4.3.2)")
            return (f"device_status {before:#04x} -> 0; read 0 after {res.reads} read(s)")

        # A dry run shows the case the step exists for: a device left DRIVER_OK (0x0f).
        assume = {(c.bar, where): (state or {}).get("device_status", 0x0F) or 0x0F,
                  (c.bar, c.offset + NUM_QUEUES): (state or {}).get("num_queues", 1) or 1}
        return [PluginStep("reset-device", f"unless DRIVER_OK is clear already, write 0 to "
                           f"device_status (BAR{c.bar}+{where:#x}) and wait for it to read 0 "
                           "(virtio §2.1, §2.1.2, §4.1.4.3.2)", body, assume=assume)]

    def verify(self, device: PciDevice,
               state: Mapping[str, Any] | None) -> Sequence[PluginStep]:
        c = self._common(device)
        where = c.offset + DEVICE_STATUS

        def body(ctx: StepContext) -> str:
            _answers(ctx, c)
            status = ctx.read(c.bar, where, 1, name="device_status")
            if status & DRIVER_OK:
                raise StepFailed(f"device_status reads {status:#04x}: DRIVER_OK still set, "
                                 "not reset")
            if status == 0:
                return "device_status reads 0"
            return f"device_status reads {status:#04x}: DRIVER_OK clear (stopped, not reset)"

        return [PluginStep("status-zero", "device_status reads 0, or DRIVER_OK is clear "
                           "(stopped)", body, assume={(c.bar, c.offset + NUM_QUEUES): 1})]
