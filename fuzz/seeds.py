"""Write the fuzzing seed corpora: spec/vectors and the real dump fixtures, as binary files.

``python fuzz/seeds.py OUT`` makes OUT/core (records, their payloads, regions holding them:
for fuzz_core.c) and OUT/py (those plus the container fixtures in tests/fixtures/containers
and small initrds, ELF and kdump cores built around records: for fuzz_py.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _put(d: Path, data: bytes) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)


def records() -> list[bytes]:
    out = []
    for p in sorted((ROOT / "spec" / "vectors").glob("*.json")):
        out.append(bytes.fromhex(json.loads(p.read_text())["record"]))
    return out


def main(out: Path) -> int:
    from helpers import elfwriter as W
    from helpers import kdumpwriter as K
    from helpers import recordgen as G

    from handoff.formats import cpio

    recs = records()
    good = [r for r in recs if len(r) >= 16 and r[:8] == b"HANDOFF\x00"]
    core = out / "core"
    py = out / "py"
    for r in recs:
        _put(core, r)
        _put(py, r)
        if len(r) >= 16:
            hs = int.from_bytes(r[12:16], "little")
            if 0 < hs < len(r):
                _put(core, r[hs:])  # the payload alone, for the CBOR and schema checks
    small = [r for r in good if len(r) <= 8192][:6]
    for a, b in zip(small, small[1:] + small[:1]):
        _put(core, G.region(a, b, slot_size=8192))
        _put(py, G.region(a, b, slot_size=8192))
    for p in sorted((ROOT / "tests" / "fixtures" / "containers").iterdir()):
        if p.suffix != ".py":
            _put(py, p.read_bytes())
    rec = G.make_record()
    w = cpio.Writer()
    w.file("handoff/record.note", G.note(rec), parents=True)
    arc = w.finish()
    _put(py, arc)
    _put(py, gzip.compress(arc, mtime=0))
    _put(py, G.note(rec))
    _put(py, W.core_bytes(W.default_notes() + [G.note(rec)]))
    kd = K.kdump_bytes(notes=W.default_notes() + [G.note(rec)])
    _put(py, kd)
    _put(py, K.flatten(kd))
    print(f"seeds: {len(list(core.iterdir()))} core, {len(list(py.iterdir()))} py in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
