"""The fuzz targets (fuzz/), as unit tests: every kept regression input replays clean, and a
short seeded campaign over the seed corpora finds nothing. .ci/run runs the longer campaign
and the C target under ASan/UBSan (fuzz/run.sh)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from handoff import errors as E
from handoff import record as R

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


FP = _load("fuzz_py")
PY_REGRESSIONS = sorted((FUZZ / "regressions" / "py").iterdir())
CORE_REGRESSIONS = sorted((FUZZ / "regressions" / "core").iterdir())


@pytest.mark.parametrize("path", PY_REGRESSIONS, ids=[p.name for p in PY_REGRESSIONS])
def test_python_regression_inputs_replay_clean(path: Path) -> None:
    assert FP.run_one(path.read_bytes()) is None


@pytest.mark.skipif(FP.B is None, reason="the C core is not built")
@pytest.mark.parametrize("path", CORE_REGRESSIONS, ids=[p.name for p in CORE_REGRESSIONS])
def test_core_regression_inputs_get_one_verdict(path: Path) -> None:
    data = path.read_bytes()
    FP.t_verdict(data)
    if data[:8] == R.MAGIC:
        with pytest.raises(E.SchemaViolation):
            FP.B.check_record(data, exact=True)


def test_the_regressions_cover_issue_14() -> None:
    names = {p.name for p in PY_REGRESSIONS}
    assert {"issue14-region-newer-slot-schema-invalid", "issue14-record-addr-function-8",
            "issue14-elf-report-nan", "issue14-record-other-bus-string-ids",
            "issue14-elf-85-overlapping-note-segments"} <= names


def test_a_short_seeded_campaign_finds_nothing(tmp_path: Path) -> None:
    seeds = _load("seeds")
    assert seeds.main(tmp_path) == 0
    assert len(list((tmp_path / "core").iterdir())) >= 50
    assert FP.main(["--runs", "1500", "--seed", "14", str(tmp_path / "py"),
                    str(FUZZ / "regressions" / "py")]) == 0


def test_the_mutator_is_reproducible() -> None:
    import random

    a = [FP.mutate(random.Random(5), b"HANDOFF\x00" + bytes(200), []) for _ in range(3)]
    b = [FP.mutate(random.Random(5), b"HANDOFF\x00" + bytes(200), []) for _ in range(3)]
    assert a == b


def test_repair_reaches_the_payload_checks() -> None:
    from helpers import recordgen as G

    rec = bytearray(G.make_record())
    rec[-1] ^= 0xFF  # breaks the digest (step 8) ...
    with pytest.raises(E.DigestMismatch):
        R.parse(bytes(rec), exact=True)
    with pytest.raises((E.BadCBOR, E.SchemaViolation)):  # ... repair reaches step 10
        R.parse(FP.repair(bytes(rec)), exact=True)
