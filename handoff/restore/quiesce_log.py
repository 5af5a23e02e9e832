"""The log handoff-quiesce (csrc/quiesce/quiesce.c) leaves for `handoff restore`'s report.

One event a line, words separated by spaces, times in CLOCK_BOOTTIME nanoseconds:
``handoff-quiesce 1``; ``start NS``; ``record generation N`` or ``no-record PATH WHY``,
``not-capture-kernel PATH WHY`` (no /proc/vmcore: nothing written),
``invalid PATH WHY``, ``foreign generation N (cmdline M)``; per device ``cleared ADDR BEFORE
AFTER NS``, ``refused ADDR BEFORE WHY``, ``skip ADDR WHY...``, ``error ADDR WHY``; last
``end NS cleared N last NS``. Unknown lines are kept as they are (a newer quiescer).
"""

from __future__ import annotations

from typing import Any

MAX_BYTES = 64 << 10  # the log of 1000 devices is well below; a bigger file is not ours
MAX_LINES = 256  # per list in the report: the report is a note (< 64 KiB)


def parse(text: str) -> dict[str, Any]:
    """The log as a report section: what was cleared and when, relative to the start."""
    doc: dict[str, Any] = {"cleared": [], "refused": [], "skipped": [], "other": []}
    start = last = end = None
    for line in text.splitlines()[: 4 * MAX_LINES]:
        w = line.split()
        if not w:
            continue
        try:
            if w[0] == "handoff-quiesce":
                doc["version"] = int(w[1])
            elif w[0] == "start":
                start = int(w[1])
            elif w[0] == "record":
                doc["record_generation"] = int(w[2])
            elif w[0] in ("no-record", "invalid", "foreign", "not-capture-kernel"):
                doc["refused_record"] = " ".join(w)
            elif w[0] == "cleared":
                doc["cleared"].append({"addr": w[1], "command": f"{w[2]} -> {w[3]}",
                                       "at_ns": int(w[4])})
            elif w[0] == "refused":
                doc["refused"].append(f"{w[1]} COMMAND {w[2]}: {' '.join(w[3:])}")
            elif w[0] in ("skip", "error"):
                doc["skipped"].append(" ".join(w[1:]) if w[0] == "skip" else " ".join(w))
            elif w[0] == "end":
                end, last = int(w[1]), int(w[5])
            else:
                doc["other"].append(line)
        except (IndexError, ValueError):
            doc["other"].append(line)
    for key in ("cleared", "refused", "skipped", "other"):
        doc[key] = doc[key][:MAX_LINES]
    if start is not None:
        doc["start_ns"] = start
        for c in doc["cleared"]:
            c["after_start_ms"] = round((c.pop("at_ns") - start) / 1e6, 3)
        if end is not None:
            doc["took_ms"] = round((end - start) / 1e6, 3)
        # The figure issue 15 asks for: hook start to the last Bus Master cleared.
        doc["start_to_last_cleared_ms"] = round((last - start) / 1e6, 3) if last else None
    if not doc["other"]:
        del doc["other"]
    return doc


def read(path: str) -> dict[str, Any] | None:
    """The parsed log at ``path``, None when there is none; an unreadable one says why."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        return {"error": f"cannot read {path}: {e.strerror}"}
    if len(raw) > MAX_BYTES:
        return {"error": f"{path} is larger than {MAX_BYTES} bytes: not a handoff-quiesce log"}
    return {"log": path, **parse(raw.decode("utf-8", "replace"))}
