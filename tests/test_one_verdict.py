"""One verdict: the C core and the Python reader accept exactly the same records (§8, R25).

The C payload check (csrc/payload.c) and handoff.payload.validate implement the same schema;
a generated corpus of mutated payloads, wrapped in records, goes through both and every
verdict must agree. The two-slot region must then pick the same slot in C and Python, and the
C update must number the next write from the record Python would read.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from helpers import recordgen as G

from handoff import cbor, sources
from handoff import errors as E
from handoff import record as R

B = G.native()
pytestmark = pytest.mark.skipif(B is None, reason="the C core is not built")

# Values a mutation puts somewhere: every CBOR type the schema distinguishes, edge integers,
# and addresses just inside and just outside the rule (DDDD:BB:DD.F, device <= 1f, fn <= 7).
POOL: list[Any] = [
    0, 1, 6, 7, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFF, 0x1000000, 0xFFFFFFFF, 1 << 32,
    (1 << 64) - 1, -1, True, None, "", "x", "pci", "usb", "live", b"", b"\x00\x00\x01\x00a",
    [], [1], ["a"], [0, 1, 2, 3], [7, 0, 0, 0], {}, {"v": 1}, {"v": -1}, {"v": 1 << 32},
    "0000:00:1f.7", "0000:00:20.0", "0000:00:02.8", "0000:00:0A.0", "0000:00:02.0\n",
    "00000:00:02.0", "0000:00:02.0 ", ["a b"], ["mlx5_core"],
]


def full_payload() -> dict[str, Any]:
    """A payload with every optional member of schema 1 present."""
    d = G.device("0000:00:03.0")
    d.update({"classes": ["net"], "parent": "0000:00:1c.0", "reset_methods": ["flr", "bus"],
              "bars": [[0, 0xFEB00000, 0x1000, 0x40200], [6, 0, 0, 0]],
              "sriov": {"total": 8, "num": 0}, "dsn": (1 << 64) - 1,
              "ext": {"nvme": {"v": 1, "cc": 5}}})
    d["live"]["partial"] = "not root"
    return {"v": 1, "devices": [d, G.device("0000:01:00.0", early=False, driver=None),
                                {"bus": "usb", "addr": "1-1", "anything": [1, {"x": b""}]}],
            "capture": {"blacklist": ["mlx5_core", "nvme-core"], "cmdline": "quiet"},
            "ext": {"site": {"v": 3}}}


def _containers(obj: Any, out: list[Any]) -> None:
    if isinstance(obj, (dict, list)):
        out.append(obj)
        for v in (obj.values() if isinstance(obj, dict) else obj):
            _containers(v, out)


def mutate(rnd: random.Random, p: dict[str, Any]) -> dict[str, Any]:
    """One to three random edits: delete a member, replace it from POOL, add one."""
    p = copy.deepcopy(p)
    for _ in range(rnd.randint(1, 3)):
        places: list[Any] = []
        _containers(p, places)
        c = rnd.choice(places)
        op = rnd.random()
        if isinstance(c, dict):
            keys = list(c)
            if op < 0.3 and keys:
                del c[rnd.choice(keys)]
            elif op < 0.9 and keys:
                c[rnd.choice(keys)] = copy.deepcopy(rnd.choice(POOL))
            else:
                c[rnd.choice(["bus", "addr", "ids", "ext", "extra", "v", "policy"])] = \
                    copy.deepcopy(rnd.choice(POOL))
        elif c:
            i = rnd.randrange(len(c))
            if op < 0.3:
                del c[i]
            else:
                c[i] = copy.deepcopy(rnd.choice(POOL))
    return p


def verdicts(body: bytes) -> tuple[str, str]:
    """("ok" or the failed check) from C and from Python, for a record of payload ``body``."""
    rec = G.make_record(body=body)
    try:
        B.check_record(rec, exact=True)
        c = "ok"
    except E.InvalidRecord as e:
        c = e.check
    try:
        R.parse(rec, exact=True)
        py = "ok"
    except E.InvalidRecord as e:
        py = e.check
    return c, py


def test_full_payload_is_valid_in_both() -> None:
    assert verdicts(cbor.dumps(full_payload())) == ("ok", "ok")


def test_c_and_python_agree_on_a_generated_corpus() -> None:
    rnd = random.Random(14)
    bases = [full_payload(), G.sample_payload(3)]
    seen = {"ok": 0, "schema": 0}
    for i in range(4000):
        p = mutate(rnd, bases[i % 2])
        try:
            body = cbor.dumps(p)
        except (TypeError, ValueError):
            continue
        c, py = verdicts(body)
        assert c == py, f"C says {c}, Python says {py} for {p!r}"
        seen[c] = seen.get(c, 0) + 1
    # The corpus exercises both sides of the rule, not only one.
    assert seen["ok"] > 400 and seen["schema"] > 1300, seen


@pytest.mark.parametrize("addr,ok", [
    ("0000:00:1f.7", True), ("ffff:ff:00.0", True), ("0000:00:20.0", False),
    ("0000:00:02.8", False), ("0000:00:0A.0", False), ("0000:00:02.0\n", False),
    ("10000:00:00.0", False), ("0000:0:02.0", False),
])
def test_the_address_rule_is_the_same(addr: str, ok: bool) -> None:
    from handoff.payload import is_pci_addr

    p = {"v": 1, "devices": [G.device(addr)]}
    want = "ok" if ok else "schema"
    assert verdicts(cbor.dumps(p)) == (want, want)
    assert is_pci_addr(addr) is ok


def test_region_picks_the_same_slot_in_c_and_python() -> None:
    # Slot 0: generation 1, valid. Slot 1: generation 2, a PCI device without "ids": its
    # checksums are right, its payload breaks R20, so it is not "valid" in R25's sense.
    good = G.make_record(generation=1)
    bad_dev = G.device("0000:00:04.0")
    del bad_dev["ids"]
    bad = G.make_record({"v": 1, "devices": [bad_dev]}, generation=2)
    region = bytearray(G.region(good, bad))
    c = B.region_read_mem(bytes(region))
    py = sources.read_bytes(bytes(region))
    assert (c.slot, c.generation) == (0, 1)
    assert [(f.location.slot, f.record.generation if f.record else None) for f in py] == [(0, 1)]
    info = B.region_inspect_mem(bytes(region))
    assert [(s["valid"], s["error"]) for s in info["slots"]] == [
        (True, None), (False, "SchemaViolation")]
    # The next write goes to slot 1 (not the valid one) and continues from generation 1.
    placed = B.region_update_mem(region, G.make_record(generation=99))
    assert (placed.slot, placed.generation) == (1, 2)
    again = sources.read_bytes(bytes(region))
    assert [(f.location.slot, f.record.generation if f.record else None)
            for f in again] == [(1, 2)]


def test_save_numbers_generations_by_the_full_check(tmp_path: Any) -> None:
    from handoff.save import previous_generation

    bad_dev = G.device("0000:00:04.0")
    bad_dev["addr"] = "0000:00:04.8"
    out = tmp_path / "rec"
    out.write_bytes(G.make_record({"v": 1, "devices": [bad_dev]}, generation=7))
    assert previous_generation(out, str(G.BOOT_ID)) == 0
    out.write_bytes(G.make_record(generation=7))
    assert previous_generation(out, str(G.BOOT_ID)) == 7
