"""Python fuzz targets: the containers, the schema, and C/Python agreement, on mutated seeds.

``python fuzz/fuzz_py.py [--seconds N | --runs N] [--seed S] DIR...`` mutates every file in
the DIRs (seeds, then fuzz/regressions/py) and runs each mutant through three targets:

- ``containers``: ``sources.scan_bytes`` + ``records_of`` and inspect's JSON rendering may
  only raise handoff's own errors, and the JSON must be strict (no NaN);
- ``schema``: a CBOR item through ``payload.validate`` may only raise InvalidRecord, and
  inspect's device rows never raise on what validate accepts;
- ``verdict``: a record (with its CRC and digest repaired after the mutation, so that the
  payload checks are reached) gets the same verdict from the C core and the Python reader.

A failure saves the input to fuzz/regressions/py/ (replayed by tests/test_fuzz_regressions.py)
and exits 1. No dependency beyond handoff: a seeded, reproducible mutator.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "fuzz" / "regressions" / "py"

from handoff import cbor, payload, sources
from handoff import errors as E
from handoff import record as R

try:
    from handoff import _binding as B
except ImportError:  # pragma: no cover - the C core is not built
    B = None  # type: ignore[assignment]

INTERESTING = [0, 1, 2, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0xFFFFFFFF, 1 << 32, (1 << 63) - 1, (1 << 64) - 1]


def mutate(rnd: random.Random, data: bytes, others: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.choice((1, 1, 2, 3, 8))):
        op = rnd.randrange(8)
        n = len(b)
        if op == 0 and n:
            i = rnd.randrange(n)
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and n:
            b[rnd.randrange(n)] = rnd.choice((0, 0xFF, 0x7F, 0x80, 0x20, 0x30))
        elif op == 2 and n >= 8:
            i = rnd.randrange(n - 7)
            w = rnd.choice((4, 8))
            v = rnd.choice(INTERESTING) & ((1 << (8 * w)) - 1)
            b[i : i + w] = v.to_bytes(w, rnd.choice(("little", "big")))
        elif op == 3 and n:
            del b[rnd.randrange(n) :]
        elif op == 4 and n:
            i = rnd.randrange(n)
            del b[i : i + rnd.randint(1, 64)]
        elif op == 5:
            i = rnd.randrange(n + 1)
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
        elif op == 6 and n:
            i, j = rnd.randrange(n), rnd.randrange(n)
            b[j:j] = b[i : i + rnd.randint(1, 256)]
        elif op == 7 and others:
            o = rnd.choice(others)
            if o:
                i = rnd.randrange(len(o))
                b[rnd.randrange(n + 1) :] = o[i : i + rnd.randint(1, 4096)]
    return bytes(b)


def repair(rec: bytes) -> bytes:
    """Make a mutated record's payload_size, digest and header CRC right again (§8 steps 3-8),
    so that the CBOR and schema checks (steps 10) are the ones that decide."""
    if len(rec) < R.FIXED_HEADER_SIZE or rec[:8] != R.MAGIC:
        return rec
    b = bytearray(rec)
    hs = struct.unpack_from("<I", b, 12)[0]
    if not R.FIXED_HEADER_SIZE <= hs <= len(b):
        return rec
    struct.pack_into("<Q", b, 16, len(b) - hs)
    b[48:80] = hashlib.sha256(bytes(b[R.FIXED_HEADER_SIZE :])).digest()
    struct.pack_into("<I", b, R.CRC_OFFSET, R.crc32c(bytes(b[: R.CRC_OFFSET])))
    return bytes(b)


def _no_nan(c: str) -> None:
    raise AssertionError(f"{c} in JSON output")


def t_containers(data: bytes) -> None:
    from handoff.cli.inspect import container_doc, record_doc

    try:
        c = sources.scan_bytes(data)
    except E.HandoffError:
        return
    doc = {"container": container_doc(c), "records": [record_doc(f) for f in c.found]}
    c.describe()
    for f in c.found:
        str(f.location)
    json.loads(json.dumps(doc, default=lambda o: bytes(o).hex(), allow_nan=False),
               parse_constant=_no_nan)
    try:
        sources.records_of(c)
    except E.HandoffError:
        pass


def t_schema(data: bytes) -> None:
    from handoff.cli.inspect import device_rows
    from handoff.devices.model import devices_of

    for body in (data, data[R.FIXED_HEADER_SIZE :] if data[:8] == R.MAGIC else b""):
        try:
            p = cbor.loads(body)
        except E.InvalidRecord:
            continue
        try:
            payload.validate(p)
        except E.InvalidRecord:
            continue
        device_rows(devices_of(p["devices"]))  # as inspect builds its table


def _verdict_py(rec: bytes) -> str:
    try:
        R.parse(rec, exact=True)
        return "ok"
    except E.InvalidRecord as e:
        return e.check


def _verdict_c(rec: bytes) -> str:
    try:
        B.check_record(rec, exact=True)
        return "ok"
    except E.InvalidRecord as e:
        return e.check


def _slot_py(data: bytes) -> int | None:
    try:
        found = sources.read_bytes(data)
    except E.HandoffError:
        return None
    ok = [f.location.slot for f in found if f.kind == "region" and f.record is not None]
    return ok[0] if ok else None


def _slot_c(data: bytes) -> int | None:
    try:
        return int(B.region_read_mem(data).slot)
    except (E.HandoffError, ValueError):
        return None


def t_verdict(data: bytes) -> None:
    if B is None:
        return
    for rec in (data, repair(data)):
        c, py = _verdict_c(rec), _verdict_py(rec)
        if c != py:
            raise AssertionError(f"C says {c}, Python says {py}")
    if data[:8] == b"HDOFREGN":  # R25: the same slot, or none, in both
        c_slot, py_slot = _slot_c(data), _slot_py(data)
        if c_slot != py_slot:
            raise AssertionError(f"C picks slot {c_slot}, Python slot {py_slot}")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "containers": t_containers, "schema": t_schema, "verdict": t_verdict,
}


def run_one(data: bytes) -> str | None:
    """The failure (target name and traceback) for ``data``, or None."""
    for name, fn in TARGETS.items():
        try:
            fn(data)
        except Exception:  # noqa: BLE001 - a fuzz target reports whatever escapes
            return f"{name}: {traceback.format_exc()}"
    return None


def save(data: bytes) -> Path:
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    p = REGRESSIONS / f"crash-{hashlib.sha256(data).hexdigest()[:16]}"
    p.write_bytes(data)
    return p


def load(dirs: list[str]) -> list[bytes]:
    out = []
    for d in dirs:
        p = Path(d)
        files = sorted(p.iterdir()) if p.is_dir() else [p]
        out.extend(f.read_bytes() for f in files if f.is_file() and f.stat().st_size <= 1 << 20)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    seeds = load(a.dirs)
    if not seeds:
        print("fuzz_py: no seeds", file=sys.stderr)
        return 2
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    rnd = random.Random(seed)
    for data in seeds:  # the seeds themselves, and every kept regression, first
        why = run_one(data)
        if why:
            print(f"fuzz_py: seed fails: {why}", file=sys.stderr)
            print(f"fuzz_py: kept {save(data)}", file=sys.stderr)
            return 1
    end = time.monotonic() + a.seconds
    runs = 0
    while (a.runs and runs < a.runs) or (not a.runs and time.monotonic() < end):
        data = mutate(rnd, rnd.choice(seeds), seeds)
        if rnd.random() < 0.3:
            data = repair(data)
        runs += 1
        why = run_one(data)
        if why:
            print(f"fuzz_py: seed {seed}, run {runs}: {why}", file=sys.stderr)
            print(f"fuzz_py: kept {save(data)}", file=sys.stderr)
            return 1
    print(f"fuzz_py: {runs} mutants of {len(seeds)} seeds (seed {seed}), no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
