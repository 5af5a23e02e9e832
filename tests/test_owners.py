"""The owner table (restore/owners.py): a field a kernel component owns in the capture kernel
is never planned as a plain write, whatever the saved state says; a field nobody owns is.

Each case flips one field of a real QEMU dump (a root port and an nvme, as the capture kernel
enumerated them) in the saved image only, plans a restore of it, and looks at what the plan
would write."""

from __future__ import annotations

import pytest
from helpers import fakesysfs as F

from handoff.devices.model import Snapshot
from handoff.restore import owners as O
from handoff.restore import pciregs as R
from handoff.restore.configplan import restore_steps
from handoff.restore.steps import SKIP_OP, WRITE

DUMPS = {addr: next(d.config for d in F.load_source(F.Q35_CAPTURE) if d.addr == addr)
         for addr in ("0000:00:01.0", "0000:01:00.0")}


def _cases(want_kernel: bool) -> list[tuple[str, str, str, int, str]]:
    """(device, register label, field, bits, owner) for every table entry the two dumps
    hold, kernel-owned or not."""
    out = []
    for addr, cfg in DUMPS.items():
        for p in R.layout(cfg):
            entry = O.TABLE.get("BAR*" if p.label.startswith("BAR") else p.label)
            if entry is None:
                continue
            fields = [(p.label, p.rw_mask, entry)] if isinstance(entry, O.Owner) else [
                (f.name, f.mask & p.rw_mask, entry.get(f.name, O.Owner(O.NOBODY, "")))
                for f in p.reg.fields]
            for name, bits, owner in fields:
                if bits and owner.kernel == want_kernel:
                    out.append((addr, p.label, name, bits, owner.who))
    return out


def _plan(addr: str, label: str, bits: int) -> tuple[list, R.Placed]:
    now = DUMPS[addr]
    p = next(x for x in R.layout(now) if x.label == label)
    saved = bytearray(now)
    v = int.from_bytes(now[p.offset:p.offset + p.reg.width], "little") ^ bits
    saved[p.offset:p.offset + p.reg.width] = v.to_bytes(p.reg.width, "little")
    steps = restore_steps(addr, bytearray(now), Snapshot("collector", len(saved),
                                                         bytes(saved)), [])
    return steps, p


KERNEL = _cases(True)
NOBODYS = _cases(False)


def test_every_owner_class_is_exercised() -> None:
    assert {c[4] for c in KERNEL} == {O.CORE, O.DRIVER}
    assert {c[4] for c in NOBODYS} == {O.NOBODY}
    # the resources issue 12 names are among them
    labels = {c[1] for c in KERNEL}
    assert {"BAR0", "Bus Numbers", "Memory Base/Limit", "Bridge Control", "COMMAND",
            "PCIe Device Control", "PCIe Slot Control", "AER Root Error Command",
            "MSI-X Message Control"} <= labels


@pytest.mark.parametrize("addr,label,field,bits,who", KERNEL,
                         ids=[f"{c[0][5:]}-{c[1]}-{c[2]}" for c in KERNEL])
def test_a_kernel_owned_field_is_never_written(addr: str, label: str, field: str, bits: int,
                                               who: str) -> None:
    steps, p = _plan(addr, label, bits)
    assert not [s for s in steps if s.op == WRITE and s.offset <= p.offset < s.offset + s.width
                and s.mask & bits]
    (rep,) = [s for s in steps if s.reg == label and s.owner is not None]
    assert (rep.op, rep.owner) == (SKIP_OP, who)
    assert rep.why.startswith("kernel owns: ")
    owner = O.owner(label, field) or O.owner(label)
    assert owner is not None and rep.resource == (owner.kind == O.RESOURCE)


@pytest.mark.parametrize("addr,label,field,bits,who", NOBODYS,
                         ids=[f"{c[0][5:]}-{c[1]}-{c[2]}" for c in NOBODYS])
def test_a_field_nobody_owns_is_written(addr: str, label: str, field: str, bits: int,
                                        who: str) -> None:
    steps, p = _plan(addr, label, bits)
    (w,) = [s for s in steps if s.op == WRITE and s.offset == p.offset]
    # exactly that field changes; no kernel-owned bit is in the write's mask
    assert w.mask & bits == bits and w.value == w.current ^ bits
    assert w.mask & O.kernel_mask(p) == 0
    assert not [s for s in steps if s.owner is not None]
