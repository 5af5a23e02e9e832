"""Every spec vector through the C path, the pure-Python path and the reader's fast path
(the C core's CBOR check, then cbor2), with the same verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handoff import _binding, cbor, record
from handoff import errors as E

VECTORS = sorted((Path(__file__).resolve().parents[1] / "spec" / "vectors").glob("*.json"))


def _load(p: Path) -> dict:
    return json.loads(p.read_text())


def test_there_are_enough_vectors() -> None:
    kinds = [_load(p)["valid"] for p in VECTORS]
    assert len(kinds) >= 30
    assert any(kinds) and not all(kinds)


def _python_verdict(buf: bytes) -> str:
    try:
        record.parse(buf, exact=True)
    except E.InvalidRecord as e:
        return type(e).__name__
    return "ok"


def _c_verdict(buf: bytes) -> str:
    try:
        _binding.check_record(buf, exact=True)
    except E.InvalidRecord as e:
        return type(e).__name__
    return "ok"


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = _load(path)
    buf = bytes.fromhex(v["record"])
    want = "ok" if v["valid"] else v["error"]
    with monkeypatch.context() as m:  # the reader without the C core: pure Python throughout
        m.setattr(cbor, "_fast_loads", False)
        assert _python_verdict(buf) == want, "Python path"
    with monkeypatch.context() as m:  # the reader's fast path, whatever the payload's size
        m.setattr(cbor, "FAST_LOADS_MIN", 0)
        m.setattr(cbor, "_fast_loads", None)
        assert _python_verdict(buf) == want, "Python reader, fast CBOR path"
    assert _c_verdict(buf) == want, "C path"
    if v["valid"]:
        exp = v["expect"]
        r = record.parse(buf, exact=True)
        assert r.version == exp["version"]
        assert r.header_size == exp["header_size"]
        assert r.payload_size == exp["payload_size"]
        assert r.generation == exp["generation"]
        assert r.created_ns == exp["created_ns"]
        assert r.boot_id == exp["boot_id"]
        assert r.machine_id == exp["machine_id"]
        assert r.kernel_release == exp["kernel_release"]
        assert r.hostname == exp["hostname"]
        assert len(r.devices) == exp["devices"]
        info = _binding.check_record(buf, exact=True)
        assert info["generation"] == exp["generation"]
        assert info["header_size"] == exp["header_size"]
        assert info["payload_size"] == exp["payload_size"]


def test_vectors_are_what_the_generator_writes(tmp_path: Path) -> None:
    """The checked-in vectors must not drift from spec/vectors/generate.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("g", VECTORS[0].parent / "generate.py")
    assert spec and spec.loader
    g = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g)
    fresh = {f"{'valid' if v['valid'] else 'invalid'}-{v['name']}": v for v in g.vectors()}
    on_disk = {p.stem: _load(p) for p in VECTORS}
    assert fresh == on_disk
