"""Note injection into ELF and kdump-compressed dumps of 1 GiB and 16 GiB (sparse).

Each dump holds 64 KiB of data at the start of every MiB (1 GiB of data in the 16 GiB dump),
like a capture of a machine with much free memory. Before every run the dump is put back to its
original bytes (headers rewritten, file truncated). `handoff inject-notes DUMP RECORD REPORT`
(the CLI, both fsyncs included) and `inject_notes()` (the library call `handoff capture` makes)
are timed against `cp --sparse=always` of the same file: what a tool that rewrites the dump
to add notes (as makedumpfile does) costs at least. Injection reads headers and notes only.
"""

from __future__ import annotations

import functools
import json
import os

from bench import inputs
from bench.core import Ctx
from bench.measure import Cmd, series
from bench.table import CONTEXT, Figure, Row, ratio_at_most

GROUP = "note injection"
FLAT = 1.10
IDS = [f"inject.{f}.{s}" for f in ("elf", "kdump") for s in ("small", "large", "large.library",
                                                                 "flat")]


def sizes(ctx: Ctx) -> tuple[tuple[int, str], tuple[int, str]]:
    if ctx.quick:
        return (16 << 20, "16 MiB"), (256 << 20, "256 MiB")
    return (1 << 30, "1 GiB"), (16 << 30, "16 GiB")


def run(ctx: Ctx) -> list[Row]:
    from handoff.capture.inject import inject_notes
    from handoff.record import NT_HANDOFF_RECORD, NT_HANDOFF_REPORT

    rec_bytes = inputs.sample_record(8)
    rec = ctx.work / "inject-record.bin"
    rec.write_bytes(rec_bytes)
    report_doc = {"summary": "restored 8 of 8 devices"}
    report = ctx.work / "inject-report.json"
    report.write_text(json.dumps(report_doc))
    notes = [(NT_HANDOFF_RECORD, rec_bytes), (NT_HANDOFF_REPORT, json.dumps(report_doc).encode())]
    copy = ctx.work / "inject-copy"
    rows: list[Row] = []
    for fmt in ("elf", "kdump"):
        got = {}
        for tag, (size, label) in zip(("small", "large"), sizes(ctx)):
            dump = ctx.work / f"inject-dump.{fmt}"
            ctx.log(f"inject: building a {label} {fmt} dump")
            inputs.sparse_dump(dump, fmt, size)
            with dump.open("rb") as f:
                pristine = f.read(1 << 16)

            def reset(dump=dump, pristine=pristine, size=size) -> None:
                with dump.open("r+b") as f:
                    f.write(pristine)
                    f.truncate(size)
                os.sync()

            def drop_copy() -> None:
                copy.unlink(missing_ok=True)
                os.sync()

            cmds = [
                Cmd("inject-notes", [ctx.handoff("inject-notes", str(dump), str(rec), str(report))],
                    before=reset),
                Cmd("library", fn=functools.partial(inject_notes, dump, notes), before=reset),
                Cmd("cp --sparse=always", [["cp", "--sparse=always", str(dump), str(copy)]],
                    before=reset, after=drop_copy),
            ]
            st = series(cmds, ctx.runs_long)
            on_disk = dump.stat().st_blocks * 512
            dump.unlink()
            inp = f"{label} {'ELF' if fmt == 'elf' else 'kdump-compressed'}, " \
                  f"{on_disk >> 20} MiB of data"
            got[tag] = st
            cp = Figure(st["cp --sparse=always"].wall, "s", label="cp --sparse=always")
            details = {"stats": {n: s.to_json() for n, s in st.items()}, "size_bytes": size,
                       "allocated_bytes": on_disk}
            goal = ratio_at_most(0.01, "≤ 1% of cp") if tag == "large" else CONTEXT
            rows.append(Row(f"inject.{fmt}.{tag}", GROUP, "`handoff inject-notes` vs cp", inp,
                            Figure(st["inject-notes"].wall, "s", rss=st["inject-notes"].rss),
                            cp, goal, details=details))
            if tag == "large":
                rows.append(Row(f"inject.{fmt}.large.library", GROUP,
                                "inject_notes() (as in `handoff capture`) vs cp", inp,
                                Figure(st["library"].wall, "s"), cp, goal, details=details))
        small_label, large_label = sizes(ctx)[0][1], sizes(ctx)[1][1]
        rows.append(Row(f"inject.{fmt}.flat", GROUP, "inject_notes() flat in dump size",
                        f"{large_label} vs {small_label} {fmt}",
                        Figure(got["large"]["library"].wall, "s"),
                        Figure(got["small"]["library"].wall, "s", label=f"same at {small_label}"),
                        ratio_at_most(FLAT, f"flat (≤ {FLAT:g}x)"),
                        details={"cli_large_s": got["large"]["inject-notes"].wall,
                                 "cli_small_s": got["small"]["inject-notes"].wall}))
    return rows
