"""cbor.dumps's fast path: no sorting when maps are already in R15 order, same bytes always.

The fast path encodes with cbor2's canonical=False and keeps the result only when the C core's
R15-R19 check (handoff_cbor_check) accepts it; anything else is encoded again in canonical mode.
These tests hold the output to cbor2's canonical mode for ordered, unordered and forbidden input,
check which path ran, and check the key orders the payload builders rely on.
"""

from __future__ import annotations

import datetime
import random
import re
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from helpers.strategies import values  # the same random CBOR-able values as the decoder's tests
from hypothesis import given, settings
from hypothesis import strategies as st

from handoff import _binding as B
from handoff import cbor
from handoff import payload as P
from handoff.errors import BadCBOR

ROOT = Path(__file__).resolve().parents[1]
_DUMPS = cbor2.dumps  # the real one, also while a test spies on cbor2.dumps



@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``canonical`` flag of every cbor2.dumps call cbor.dumps makes."""
    seen: list[bool] = []
    real = cbor2.dumps

    def spy(obj: object, **kw: object) -> bytes:
        seen.append(bool(kw.get("canonical", False)))
        return real(obj, **kw)

    monkeypatch.setattr(cbor2, "dumps", spy)
    return seen


def depth(v: object) -> int:
    if isinstance(v, dict):
        return 1 + max([depth(x) for kv in v.items() for x in kv], default=0)
    if isinstance(v, (list, tuple)):
        return 1 + max([depth(x) for x in v], default=0)
    return 1


def canonical_bytes(v: object) -> bytes:
    return _DUMPS(v, canonical=True)


@settings(derandomize=True, max_examples=400)
@given(values)
def test_same_bytes_ordered_or_not(v: object) -> None:
    want = canonical_bytes(v)
    assert cbor.dumps(v) == want
    ordered = cbor.canonical(v)
    assert ordered == v and cbor.is_canonical(ordered)
    assert cbor.dumps(ordered) == want


@settings(derandomize=True, max_examples=200)
@given(values)
def test_ordered_r16_values_take_the_fast_path(v: object) -> None:
    ordered = cbor.canonical(v)
    assert cbor._looks_ordered(ordered, 0)
    fast = cbor2.dumps(ordered)
    # within R16 (ints fit 64 bits here) the unsorted encoding of ordered maps is deterministic
    assert B.cbor_is_strict(fast) == (depth(ordered) <= cbor.MAX_DEPTH)
    if B.cbor_is_strict(fast):
        assert fast == canonical_bytes(v)


def payload(n: int, *, ordered: bool) -> dict[str, object]:
    devs = []
    for i in range(n):
        d = {"bus": "pci", "addr": f"0000:00:{i:02x}.0",
             "ids": {"vendor": 0x8086, "device": i, "subvendor": 0, "subdevice": 0,
                     "class": 0x020000, "revision": 1},
             "path": ["pci0000:00", f"0000:00:{i:02x}.0"],
             "live": P.snapshot("live", bytes(range(1, 64)), 256), "policy": "skip",
             "bars": [[0, 0xFE000000, 4096, 0x40200]], "driver": "e1000"}
        devs.append(cbor.canonical(d) if ordered else d)
    return {"v": 1, "devices": devs}


def test_paths_taken(calls: list[bool]) -> None:
    ordered = payload(5, ordered=True)
    assert cbor.dumps(ordered) == canonical_bytes(ordered) and calls == [False]
    calls.clear()
    unordered = payload(5, ordered=False)  # the probe sees it: no doomed attempt
    assert cbor.dumps(unordered) == canonical_bytes(unordered) and calls == [True]
    calls.clear()
    late = payload(5, ordered=True)
    late["devices"][3] = payload(1, ordered=False)["devices"][0]  # type: ignore[index]
    assert not cbor.is_canonical(late) and cbor._looks_ordered(late, 0)
    assert cbor.dumps(late) == canonical_bytes(late) and calls == [False, True]


@pytest.mark.parametrize(
    "v",
    [
        1.5, {"a": 1.0}, {"a": 2**64}, {"a": -(2**64) - 1}, [{1: 2}], {"b": 1, "a": {3, 4}},
        {"a": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)},
        [[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]],  # depth 19
        {}, [], (), {"a": (1, (2, 3))}, {"a": bytearray(b"xy"), "b": memoryview(b"z")},
        {"": 0, "a": 1, "é": 2, "z": 3, "aa": 4, "\U0001f600": 5}, True, None, "text",
    ],
)
def test_fallbacks_and_edge_values_give_canonical_bytes(v: object) -> None:
    assert cbor.dumps(v) == canonical_bytes(v)
    assert cbor.dumps(cbor.canonical(v)) == canonical_bytes(v)


@pytest.mark.parametrize("bad, exc", [
    (object(), cbor2.CBOREncodeError),
    ({"a": object()}, cbor2.CBOREncodeError),
    ("\ud800", UnicodeEncodeError),
    ({"\ud800": 1}, UnicodeEncodeError),
])
def test_what_cbor2_cannot_encode_raises_as_before(bad: object, exc: type[Exception]) -> None:
    with pytest.raises(exc) as want:
        cbor2.dumps(bad, canonical=True)
    with pytest.raises(exc) as got:
        cbor.dumps(bad)
    assert type(got.value) is type(want.value) is exc


def test_without_the_c_core_canonical_mode_is_used(
    monkeypatch: pytest.MonkeyPatch, calls: list[bool]
) -> None:
    monkeypatch.setattr(cbor, "_strict", None)
    monkeypatch.setattr(cbor, "_strict_loaded", True)
    p = payload(2, ordered=True)
    assert cbor.dumps(p) == canonical_bytes(p) and calls == [True]


def test_canonical_key_is_bytewise_order_of_encodings() -> None:
    rng = random.Random(8)
    alphabet = "ab\x00\x7f\xe9\u20ac\U0001f600"
    keys = {"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))) for _ in range(500)}
    keys |= {"x" * n for n in (23, 24, 25, 255, 256, 257)}
    by_encoding = sorted(keys, key=lambda k: cbor2.dumps(k))
    assert list(cbor.canonical_order(keys)) == by_encoding


def cddl_keys(rule: str) -> set[str]:
    text = (ROOT / "spec" / "payload.cddl").read_text()
    body = re.search(rf"^{rule} = \{{(.*?)^\}}", text, re.DOTALL | re.MULTILINE)
    assert body, rule
    return set(re.findall(r'^\s*\??\s*"(\w+)":', body.group(1), re.MULTILINE))


@pytest.mark.parametrize(
    "order, rule",
    [(P.PAYLOAD_KEYS, "payload"), (P.DEVICE_KEYS, "pci-device"), (P.IDS_KEYS, "pci-ids"),
     (P.SNAPSHOT_KEYS, "snapshot"), (P.CAPTURE_KEYS, "capture")],
)
def test_payload_key_orders_follow_r15_and_the_schema(order: tuple[str, ...], rule: str) -> None:
    assert order == cbor.canonical_order(order)
    assert set(order) == cddl_keys(rule)


def test_sriov_order_and_builders() -> None:
    assert P.SRIOV_KEYS == cbor.canonical_order(["total", "num"])
    s = P.snapshot("live", b"\x01\x02", 256, "not root")
    assert tuple(s) == P.SNAPSHOT_KEYS
    assert tuple(P.snapshot("live", b"", 4096)) == P.SNAPSHOT_KEYS[:-1]
    ids = P.pci_ids(vendor=1, device=2, subvendor=3, subdevice=4, class_code=5, revision=6)
    assert tuple(ids) == P.IDS_KEYS
    assert ids == {"vendor": 1, "device": 2, "subvendor": 3, "subdevice": 4, "class": 5,
                   "revision": 6}


def test_ordered() -> None:
    d = {"policy": "skip", "addr": "a", "bus": "pci", "live": {}}
    out = P.ordered(d, P.DEVICE_KEYS)
    assert out == d and list(out) == ["bus", "addr", "live", "policy"]
    d["zz_unknown"] = 1  # never dropped: the whole map is sorted instead
    out = P.ordered(d, P.DEVICE_KEYS)
    assert out == d and cbor.is_canonical(out)


def test_cbor_check_is_r15_to_r19_without_schema() -> None:
    B.cbor_check(cbor2.dumps([1, {"a": b"x"}], canonical=True))  # no payload schema
    with pytest.raises(BadCBOR, match="bytewise order") as ei:
        B.cbor_check(bytes.fromhex("a2616201616101"))
    assert ei.value.offset == 4
    for bad, rule in (("f93c00", "R16"), ("9f01ff", "R15"), ("0000", "R19"), ("", "R19")):
        with pytest.raises(BadCBOR, match=rule):
            B.cbor_check(bytes.fromhex(bad))
        assert not B.cbor_is_strict(bytes.fromhex(bad))
    assert B.cbor_is_strict(bytes.fromhex("a0"))


def agree(data: bytes) -> None:
    try:
        cbor.loads(data)
        py = True
    except BadCBOR:
        py = False
    assert B.cbor_is_strict(data) == py, data.hex()


@settings(derandomize=True, max_examples=500)
@given(st.binary(max_size=64))
def test_c_check_agrees_with_the_python_decoder_on_random_bytes(data: bytes) -> None:
    agree(data)


def test_c_check_agrees_with_the_python_decoder_on_damaged_encodings() -> None:
    rng = random.Random(12)
    for _ in range(300):
        enc = cbor2.dumps(cbor.canonical(payload(rng.randrange(3), ordered=rng.random() < 0.5)))
        agree(enc)
        for _ in range(5):
            b = bytearray(enc)
            b[rng.randrange(len(b))] = rng.randrange(256)
            agree(bytes(b))


def test_modules_import_nothing_they_do_not_need() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import handoff; before = set(sys.modules)\n"
        "import handoff.payload, handoff.cbor\n"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT)], check=True,
                         capture_output=True, text=True).stdout.split()
    assert set(out) <= {"handoff.payload", "handoff.cbor", "handoff.errors", "struct", "_struct"}
