"""The restore step types: each kind of operation carries its own fields, and its JSON (the
report note's and ``--json``'s wire shape) stays what it was when one type held them all."""

from __future__ import annotations

import pytest

from handoff._slots import Slots
from handoff.restore.steps import (
    REFUSE,
    ConfigWrite,
    Disable,
    LeftAlone,
    Rescan,
    Reset,
    Step,
)

ADDR = "0000:01:00.0"


class _Base(Slots):
    __slots__ = ("a",)

    def __init__(self, a: int) -> None:
        self.a = a


class _Sub(_Base):
    __slots__ = ("b",)

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)
        self.b = b


def test_slots_subclass_fields_come_after_the_bases() -> None:
    s = _Sub(1, 2)
    assert _Sub._fields == ("a", "b")
    assert repr(s) == "_Sub(a=1, b=2)"
    assert s.as_dict() == {"a": 1, "b": 2}
    assert s != _Sub(0, 2)  # the base's field takes part in equality
    assert s.replace(a=3).as_dict() == {"a": 3, "b": 2}


def test_config_write_json() -> None:
    s = ConfigWrite(ADDR, "restore", "BAR0", 0x10, 4, "base address", 0xFE000000, 0xFE100000,
                    0xFE100000, 0xFFFFFFF0, 0xFE100000, 0xF, retries=10,
                    detail="base 0xfe000000 -> 0xfe100000")
    s.status, s.readback, s.result = "verified", 0xFE100000, None
    assert s.to_json() == {
        "phase": "restore", "reg": "BAR0", "op": "write", "off": 16, "width": 4,
        "current": "0xfe000000", "saved": "0xfe100000", "value": "0xfe100000",
        "readback": "0xfe100000", "retries": 10, "why": "base address",
        "detail": "base 0xfe000000 -> 0xfe100000", "status": "verified"}
    assert list(s.to_json()) == ["phase", "reg", "op", "off", "width", "current", "saved",
                                 "value", "readback", "retries", "why", "detail", "status"]
    assert s.acts and s.is_config_write and not s.instead and not s.resource
    s.refuse("lockdown")
    assert (s.op, s.status, s.why, s.acts, s.is_config_write) == (
        REFUSE, "refused", "lockdown", False, True)


def test_left_alone_json() -> None:
    s = LeftAlone(ADDR, "restore", "Bus Numbers", 0x18, 4, "kernel owns", 0, 0x10100,
                  detail="Secondary: now 0, saved 1", owner="core", resource=True)
    assert s.to_json() == {
        "phase": "restore", "reg": "Bus Numbers", "op": "skip", "off": 24, "width": 4,
        "current": "0x00000000", "saved": "0x00010100", "owner": "core", "resource": True,
        "why": "kernel owns", "detail": "Secondary: now 0, saved 1", "status": "skipped"}
    assert not s.acts and not s.is_config_write


def test_sysfs_steps_json() -> None:
    r = Reset(ADDR, "instead of restore", "flr", instead=True)
    r.before, r.after, r.status, r.result = "COMMAND=0x0507", "COMMAND=0x0503", "done", "ok"
    assert list(r.to_json().items()) == [
        ("phase", "reset"), ("reg", "reset"), ("op", "reset"), ("method", "flr"),
        ("instead", True), ("why", "instead of restore"), ("status", "done"),
        ("before", "COMMAND=0x0507"), ("after", "COMMAND=0x0503"), ("result", "ok")]
    refused = Reset(ADDR, "no reset_method", op=REFUSE)
    assert refused.to_json() == {"phase": "reset", "reg": "reset", "op": "refuse",
                                 "why": "no reset_method", "status": "refused"}
    q = Rescan(ADDR, "kernel_owned", resource=True)
    assert list(q.to_json().items()) == [
        ("phase", "rescan"), ("reg", "remove + rescan"), ("op", "rescan"),
        ("resource", True), ("why", "kernel_owned"), ("status", "planned")]
    d = Disable(ADDR, "Bus Master off", instead=True)
    d.current, d.readback, d.detail = 0x507, 0x503, "Bus Master 1 -> 0"
    # COMMAND before and after travel as text: the hex values are the table's
    assert list(d.to_json().items()) == [
        ("phase", "quiesce"), ("reg", "COMMAND"), ("op", "disable"), ("instead", True),
        ("why", "Bus Master off"), ("detail", "Bus Master 1 -> 0"), ("status", "planned")]


@pytest.mark.parametrize("step, field", [
    (Reset(ADDR, "r"), "value"), (Rescan(ADDR, "r"), "method"), (Disable(ADDR, "d"), "mask"),
    (LeftAlone(ADDR, "restore", "STATUS", 6, 2, "w1c"), "retries")])
def test_a_step_carries_only_its_own_fields(step: Step, field: str) -> None:
    with pytest.raises(AttributeError):
        setattr(step, field, 1)
