"""Rows of the benchmark table: our figure, the peer's figure, their ratio and the goal."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def fmt(value: float | None, unit: str) -> str:
    """A figure in the unit a reader expects (ms for short walls, MiB for sizes...)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if value < 1:
            return f"{value * 1e3:.1f} ms"
        if value < 10:
            return f"{value:.2f} s"
        return f"{value:.1f} s"
    if unit == "us":
        return f"{value:.0f} µs" if value >= 100 else f"{value:.1f} µs"
    if unit == "bytes":
        if value >= 1 << 20:
            return f"{value / (1 << 20):.2f} MiB"
        if value >= 1 << 10:
            return f"{value / (1 << 10):.1f} KiB"
        return f"{value:.0f} B"
    if unit == "MB/s":
        return f"{value:.0f} MB/s"
    return f"{value:g} {unit}".strip()


@dataclass
class Figure:
    """One measured figure; ``rss`` (bytes) is shown beside a wall time when known."""

    value: float | None
    unit: str
    rss: int | None = None
    label: str = ""  # the peer's name, or "limit"
    detail: str = ""  # a second figure in words (e.g. "16.2 MiB unpacked")

    def text(self) -> str:
        s = fmt(self.value, self.unit)
        if self.rss:
            s += f", {fmt(self.rss, 'bytes')} RSS"
        if self.detail:
            s += f" ({self.detail})"
        return f"{self.label}: {s}" if self.label else s

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value, "unit": self.unit, "text": self.text()}
        if self.label:
            d["name"] = self.label
        if self.rss is not None:
            d["peak_rss_bytes"] = self.rss
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class Goal:
    """A goal in words and the test on the row that decides it (None: no goal, context)."""

    text: str
    test: Callable[[Row], bool] | None = None


def ratio_at_most(limit: float, text: str | None = None) -> Goal:
    return Goal(text or f"ratio ≤ {limit:g}", lambda r: r.ratio is not None and r.ratio <= limit)


def ratio_below(limit: float, text: str | None = None) -> Goal:
    return Goal(text or f"ratio < {limit:g}", lambda r: r.ratio is not None and r.ratio < limit)


def ratio_at_least(limit: float, text: str | None = None) -> Goal:
    return Goal(text or f"ratio ≥ {limit:g}", lambda r: r.ratio is not None and r.ratio >= limit)


CONTEXT = Goal("— (context)")


@dataclass
class Row:
    """One line of the table. ``ratio`` is ours / peer unless the row says otherwise
    (throughput rows: ours / peer in MB/s, so higher is better there)."""

    id: str
    group: str
    what: str
    input: str
    ours: Figure | None
    peer: Figure | None
    goal: Goal = CONTEXT
    ratio: float | None = None
    status: str = "ok"  # "ok", "not available", "error"
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    not_comparable: str = ""  # why the goal cannot be judged from these figures


    def __post_init__(self) -> None:
        if self.ratio is None and self.ours is not None and self.peer is not None \
                and self.ours.value is not None and self.peer.value:
            self.ratio = self.ours.value / self.peer.value

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None for context rows and rows that cannot be judged."""
        if self.status != "ok" or self.goal.test is None or self.not_comparable:
            return None
        return bool(self.goal.test(self))

    @property
    def met_text(self) -> str:
        if self.status != "ok" or self.not_comparable:
            return "n/a"
        if self.goal.test is None:
            return "—"
        return "yes" if self.met else "NO"

    def cells(self) -> list[str]:
        if self.status != "ok":
            ours = f"{self.status}: {self.note}" if self.note else self.status
            return [self.what, self.input, ours, self.peer.text() if self.peer else "—", "—",
                    self.goal.text, self.met_text]
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}x" if self.ratio >= 0.01 \
            else f"{self.ratio:.4f}x"
        return [self.what, self.input, self.ours.text() if self.ours else "—",
                self.peer.text() if self.peer else "—", ratio, self.goal.text, self.met_text]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "what": self.what, "input": self.input,
                "ours": self.ours.to_json() if self.ours else None,
                "peer": self.peer.to_json() if self.peer else None,
                "ratio": self.ratio, "goal": self.goal.text,
                "goal_met": self.met,
                "not_comparable": self.not_comparable or None,
                "status": self.status, "note": self.note, "details": self.details}


def not_available(id: str, group: str, what: str, input: str, reason: str,
                  goal: Goal = CONTEXT, peer: Figure | None = None) -> Row:
    return Row(id, group, what, input, None, peer, goal, status="not available", note=reason)


HEADER = ["what", "input", "ours", "peer / limit", "ratio", "goal", "goal met?"]


def render(rows: list[Row]) -> str:
    """A Markdown table (also readable as plain text), one group after another."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    group = None
    for r in rows:
        if r.group != group:
            group = r.group
            lines.append(f"| **{group}** |" + " |" * (len(HEADER) - 1))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in r.cells()) + " |")
    return "\n".join(lines)
