"""Shared output helpers for CLI commands: one JSON document, aligned tables."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

SCHEMA_VERSION = 1


def emit_json(kind: str, doc: dict[str, Any]) -> None:
    """Print one JSON document with ``schema_version`` and ``kind`` on stdout."""
    out = {"schema_version": SCHEMA_VERSION, "kind": kind}
    out.update(doc)
    try:
        text = json.dumps(out, indent=2, sort_keys=False, default=_default, allow_nan=False)
    except ValueError:  # a NaN or Infinity from somewhere: JSON has none, print it as text
        text = json.dumps(_finite(out), indent=2, sort_keys=False, default=_default)
    sys.stdout.write(text + "\n")


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _default(o: object) -> Any:
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned text table; None prints as '-'."""
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)
