"""Record encode and decode of 256 devices with early and live config space.

Peers: the raw config bytes the record carries (size), and a CBOR round trip of the very same
payload map with cbor2 and no handoff framing (time): what is left is handoff's cost for the
header, CRC32C, SHA-256, deterministic encoding and the R15-R22 validation on both sides.
"""

from __future__ import annotations

import statistics
import uuid

from bench import inputs
from bench.core import Ctx
from bench.measure import repeat_in_process
from bench.table import Figure, Row, ratio_at_most, ratio_below

GROUP = "record encode/decode, 256 devices, early+live"
N = 256
IDS = ["record.size", "record.encode", "record.decode", "record.roundtrip"]
OVERHEAD = "framing + validation < 20% (< 1.2x)"


def run(ctx: Ctx) -> list[Row]:
    import cbor2

    from handoff import record

    ctx.log(f"record: payload of {N} devices from a fake tree")
    payload, raw = inputs.device_payload(N)
    producer = record.Producer("6.1.0-bench-amd64", "benchhost", str(uuid.uuid4()),
                               uuid.uuid4().hex, 1_700_000_000_000_000_000)
    rec = record.encode(payload, producer, 1)
    plain = cbor2.dumps(payload)
    assert record.parse(rec).payload == cbor2.loads(plain)  # the same data on both sides

    runs, inner = (3, 3) if ctx.quick else (11, 10)

    def med(fn: object) -> float:
        return statistics.median(repeat_in_process(fn, runs, inner=inner))  # type: ignore[arg-type]

    t = {
        "encode": med(lambda: record.encode(payload, producer, 1)),
        "cbor2.dumps": med(lambda: cbor2.dumps(payload)),
        "decode": med(lambda: record.parse(rec)),
        "cbor2.loads": med(lambda: cbor2.loads(plain)),
    }
    t["roundtrip"] = med(lambda: record.parse(record.encode(payload, producer, 1)))
    t["cbor2 roundtrip"] = med(lambda: cbor2.loads(cbor2.dumps(payload)))
    inp = f"{N} devices of a fake tree (real q35/Firecracker config dumps), early + live"
    details = {"record_bytes": len(rec), "raw_config_bytes": raw, "cbor2_payload_bytes": len(plain),
               "seconds": t, "runs": runs, "calls_per_run": inner}

    def us(k: str, label: str = "") -> Figure:
        return Figure(t[k] * 1e6, "us", label=label)

    return [
        Row("record.size", GROUP, "record size vs raw config bytes", inp,
            Figure(len(rec), "bytes", detail=f"cbor2 payload alone {len(plain)} B"),
            Figure(raw, "bytes", label="raw config, early+live"),
            ratio_at_most(0.10, "≤ 10% of raw"), details=details),
        Row("record.encode", GROUP, "encode (record.encode: CBOR + C framing/checks)", inp,
            us("encode"), us("cbor2.dumps", "cbor2.dumps"), ratio_below(1.2, OVERHEAD),
            details=details),
        Row("record.decode", GROUP, "decode (record.parse: checks + strict CBOR + schema)", inp,
            us("decode"), us("cbor2.loads", "cbor2.loads"), ratio_below(1.2, OVERHEAD),
            details=details),
        Row("record.roundtrip", GROUP, "encode + decode", inp, us("roundtrip"),
            us("cbor2 roundtrip", "cbor2.loads(cbor2.dumps())"), ratio_below(1.2, OVERHEAD),
            details=details),
    ]
