"""Compare a record's saved config space with a sysfs tree now, decoded for people.

Every difference is named by its register (standard header fields, capability registers) and
decoded by field: ``COMMAND: Bus Master 1 -> 0``, ``MSI-X Message Control: Enable 1 -> 0``,
BARs as addresses. Bytes handoff has no register for are shown by capability and offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handoff.devices.model import PciDevice, devices_from_payload
from handoff.restore import pciregs as R
from handoff.restore.match import match_device


@dataclass
class Change:
    reg: str  # "COMMAND", "MSI-X Message Control", "Vendor Specific +0x4"
    offset: int
    width: int
    old: int
    new: int
    fields: list[tuple[str, str, str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"reg": self.reg, "offset": self.offset, "width": self.width,
                             "old": f"{self.old:#0{2 + 2 * self.width}x}",
                             "new": f"{self.new:#0{2 + 2 * self.width}x}"}
        if self.fields:
            d["fields"] = [{"field": n, "old": a, "new": b, "kind": k}
                           for n, a, b, k in self.fields]
        return d


@dataclass
class DeviceDiff:
    addr: str
    ids: str
    name: str
    status: str  # changed, same, vanished, mismatch, gone, unreadable, appeared, no-snapshot
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"addr": self.addr, "ids": self.ids, "name": self.name, "status": self.status,
                "changes": [c.to_json() for c in self.changes], "notes": self.notes}


def _u(b: bytes, off: int, w: int) -> int:
    return int.from_bytes(b[off:off + w], "little")


def diff_config(old: bytes, new: bytes) -> tuple[list[Change], list[str]]:
    """The decoded differences between two images of one device, and notes (capability
    lists that differ, bytes that only one side holds)."""
    n = min(len(old), len(new))
    notes: list[str] = []
    if len(old) != len(new):
        notes.append(f"only the first {n} bytes are compared (saved {len(old)}, now "
                     f"{len(new)})")
    placed: dict[tuple[int, str], R.Placed] = {}
    for img in (old, new):
        for p in R.layout(img):
            placed.setdefault((p.offset, p.label), p)
    ocaps = {(c.extended, c.id, c.offset): c for c in R.find_caps(old[:n])}
    ncaps = {(c.extended, c.id, c.offset): c for c in R.find_caps(new[:n])}
    for k in sorted(ocaps.keys() - ncaps.keys(), key=lambda k: k[2]):
        notes.append(f"{ocaps[k].name} at {k[2]:#x} was there, is not now")
    for k in sorted(ncaps.keys() - ocaps.keys(), key=lambda k: k[2]):
        notes.append(f"{ncaps[k].name} at {k[2]:#x} is new")
    changes: list[Change] = []
    covered = bytearray(n)
    for (off, label), p in sorted(placed.items()):
        w = p.reg.width
        if off + w > n:
            continue
        covered[off:off + w] = b"\x01" * w
        a, b = _u(old, off, w), _u(new, off, w)
        if a != b:
            changes.append(Change(label, off, w, a, b,
                                  R.changed_fields(p.reg, a, b, bar_name=label)))
    for off in range(0, n - n % 4, 4):
        if all(covered[off:off + 4]) or old[off:off + 4] == new[off:off + 4]:
            continue
        cap = R.cap_at(new[:n], off) or R.cap_at(old[:n], off)
        label = f"{cap.name} +{off - cap.offset:#x}" if cap else f"offset {off:#x}"
        changes.append(Change(label, off, 4, _u(old, off, 4), _u(new, off, 4)))
    changes.sort(key=lambda c: c.offset)
    return changes, notes


def decode_config(data: bytes) -> list[tuple[str, int, int, int, str]]:
    """Every register handoff knows in one config image, decoded by the same layout and
    fields as :func:`diff_config`: (label, offset, width, value, fields), by offset."""
    out = []
    for p in R.layout(data):
        w = p.reg.width
        if p.offset + w > len(data):
            continue
        v = _u(data, p.offset, w)
        if p.reg.rule == R.BAR:
            text = R.describe_bar(v, p.label)
        else:
            text = ", ".join(f"{f.name} {f.show(v)}" for f in p.reg.fields)
        out.append((p.label, p.offset, w, v, text))
    out.sort(key=lambda r: r[1])
    return out


def diff_record(payload: dict[str, Any], current: dict[str, PciDevice],
                against: str = "live") -> list[DeviceDiff]:
    """Each saved device's ``against`` snapshot ("early" or "live") versus the tree now."""
    out: list[DeviceDiff] = []
    saved = devices_from_payload(payload)
    for s in saved:
        ids, name = s.ids.short(), R.class_name(s.ids.class_code)
        m = match_device(s, current.get(s.addr), current)
        if not m.ok:
            out.append(DeviceDiff(s.addr, ids, name, m.status, notes=m.reasons))
            continue
        snap = s.early if against == "early" else s.live
        if snap is None:
            out.append(DeviceDiff(s.addr, ids, name, "no-snapshot",
                                  notes=[f"the record has no {against} snapshot"]))
            continue
        assert m.current is not None
        changes, notes = diff_config(snap.data, m.current.live.data)
        if snap.partial:
            notes.insert(0, f"saved snapshot is partial: {snap.partial}")
        out.append(DeviceDiff(s.addr, ids, name, "changed" if changes else "same",
                              changes, notes))
    known = {s.addr for s in saved}
    for addr, d in sorted(current.items()):
        if addr not in known:
            out.append(DeviceDiff(addr, d.ids.short(), R.class_name(d.ids.class_code),
                                  "appeared", notes=["present now, not in the record"]))
    return out


_STATUS_TEXT = {
    "same": "no differences", "vanished": "VANISHED", "mismatch": "DIFFERENT DEVICE",
    "gone": "GONE (reads all-ones)", "unreadable": "UNREADABLE", "appeared": "NEW",
    "no-snapshot": "no snapshot to compare",
}


def render(diffs: list[DeviceDiff], against: str, *, show_same: bool = False) -> str:
    """Text for people: one block per device, one line per field that changed."""
    lines = [f"saved {against} state -> now"]
    for d in diffs:
        if d.status == "same" and not show_same:
            continue
        n = len(d.changes)
        head = f"{d.addr}  {d.ids}  {d.name}"
        head += f": {n} register(s) differ" if d.status == "changed" else \
            f": {_STATUS_TEXT.get(d.status, d.status)}"
        lines.append(head)
        for note in d.notes:
            lines.append(f"    note: {note}")
        for c in d.changes:
            hexw = 2 + 2 * c.width
            lines.append(f"  {c.reg} ({c.offset:#05x}): {c.old:#0{hexw}x} -> {c.new:#0{hexw}x}")
            for fname, a, b, kind in c.fields:
                if fname == c.reg or (len(c.fields) == 1 and fname == "value"):
                    if fname != "value":
                        lines.append(f"      {a} -> {b}")
                    continue
                tag = {R.W1C: " (status, W1C)", R.RO: " (read-only)",
                       R.HWINIT: " (HwInit)"}.get(kind, "")
                lines.append(f"      {fname}: {a} -> {b}{tag}")
    same = sum(1 for d in diffs if d.status == "same")
    changed = sum(1 for d in diffs if d.status == "changed")
    other = len(diffs) - same - changed
    lines.append(f"{len(diffs)} device(s): {changed} changed, {same} unchanged, "
                 f"{other} not comparable")
    return "\n".join(lines)
