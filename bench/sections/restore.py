"""`handoff restore --dry-run` and apply, 64 devices of a fake tree, as the capture kernel runs it.

The record is the one `handoff save` writes for the tree; the tree is then perturbed (Bus
Master on and INTx Disable flipped on every function, as a dead kernel leaves devices) so the
apply has registers to write. /proc is a stand-in for the capture kernel's: a cmdline naming
the record's boot and generation, and a vmcore whose VMCOREINFO names its kernel, so the
identity check runs as it would after `handoff load` (no --force). As in the capture kernel
before drivers load, only pcieport is bound, and every memory BAR has a (zero-filled)
``resourceN`` file for the device plugins. Limits: the floor
`python3 -S -c pass` + 150 ms, and 32 MiB peak RSS (capture-side memory is tight: ~40 MB free
with crashkernel=128M, facts/kdump-in-qemu.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench import inputs
from bench.core import Ctx
from bench.measure import Cmd, series
from bench.table import Figure, Goal, Row, ratio_below

GROUP = "handoff restore, 64 devices, fake tree"
N = 64
ABOVE_FLOOR = 0.150
RSS_LIMIT = 32 << 20
IORESOURCE_MEM = 0x200
IDS = ["restore.dry-run.wall", "restore.dry-run.rss", "restore.apply.wall", "restore.apply.rss"]


def capture_kernel_view(tree: Path) -> None:
    """Make the saved tree look like the capture kernel's before its drivers load: only
    pcieport bound, and a ``resourceN`` file (zero-filled, sparse) for every memory BAR, so the
    device plugins' quiesce and reset steps run through their BAR accesses. A BAR the source
    dump gave no range for gets 64 KiB at the address its register holds (as
    tests/helpers/fakebar.py's add_bar does)."""
    for drv in (tree / "devices").rglob("driver"):
        if drv.is_symlink() and os.path.basename(os.readlink(drv)) != "pcieport":
            drv.unlink()
    for res in (tree / "devices").rglob("resource"):
        cfg = (res.parent / "config").read_bytes()
        lines = res.read_text().splitlines()
        lines += ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * (7 - len(lines))
        i = 0
        while i < 6 and 0x10 + 4 * i + 4 <= len(cfg):
            reg = int.from_bytes(cfg[0x10 + 4 * i:0x14 + 4 * i], "little")
            wide = not reg & 1 and (reg >> 1) & 3 == 2
            start, end, flags = (int(x, 16) for x in lines[i].split())
            addr = reg & ~0xF
            if wide and 0x14 + 4 * i + 4 <= len(cfg):
                addr |= int.from_bytes(cfg[0x14 + 4 * i:0x18 + 4 * i], "little") << 32
            if end <= start and not reg & 1 and addr:
                start, end, flags = addr, addr + (64 << 10) - 1, IORESOURCE_MEM
                lines[i] = f"0x{start:016x} 0x{end:016x} 0x{flags:016x}"
            if end > start and flags & IORESOURCE_MEM:
                with open(res.parent / f"resource{i}", "wb") as f:
                    f.truncate(end - start + 1)
            i += 2 if wide else 1
        res.write_text("\n".join(lines) + "\n")


def run(ctx: Ctx) -> list[Row]:
    tree = inputs.scratch() / "restore-tree"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(inputs.fake_tree(N), tree, symlinks=True)
    rec = ctx.work / "restore-record.bin"
    rec.unlink(missing_ok=True)
    subprocess.run(ctx.handoff("save", "--sysfs-root", str(tree), "-o", str(rec)), check=True,
                   capture_output=True)
    proc = inputs.fake_proc(ctx.work / "restore-proc", rec.read_bytes())
    capture_kernel_view(tree)
    configs = sorted((tree / "devices").rglob("config"))
    perturbed = {}
    for c in configs:
        b = bytearray(c.read_bytes())
        b[4] |= 0x04  # Bus Master on
        b[5] ^= 0x04  # INTx Disable flipped
        perturbed[c] = bytes(b)

    def reset() -> None:
        for c, b in perturbed.items():
            c.write_bytes(b)

    reset()
    base = ctx.handoff("restore", "--record", str(rec), "--sysfs-root", str(tree),
                       "--proc-root", str(proc))
    # The zero-filled resourceN files read 0 where a device's registers cannot (e1000
    # STATUS, NVMe CAP, virtio num_queues): the plugins report "no response" and apply exits
    # 1 (a failed check). That is the right outcome for such devices; the bench times the
    # run, so 1 is accepted beside 0.
    cmds = [ctx.floor(), Cmd("dry-run", [[*base, "--dry-run"]]),
            Cmd("apply", [base], before=reset, ok=(0, 1))]
    ctx.log(f"restore: dry run and apply on {len(configs)} functions")
    st = series(cmds, ctx.runs)
    floor_s = st["python3 -S -c pass"].wall
    floor = Figure(floor_s, "s", rss=st["python3 -S -c pass"].rss,
                   label="python3 -S -c pass")
    inp = f"fake tree, {len(configs)} functions, record from `handoff save`, perturbed"
    details = {"stats": {n: s.to_json() for n, s in st.items()}}
    limit = Figure(RSS_LIMIT, "bytes", label="limit")
    def above_floor(r: Row) -> bool:
        ours = r.ours.value if r.ours else None
        peer = r.peer.value if r.peer else None
        return ours is not None and peer is not None and ours - peer <= ABOVE_FLOOR

    wall_goal = Goal(f"≤ floor + {ABOVE_FLOOR * 1e3:.0f} ms", above_floor)
    rows = []
    for key, what in (("dry-run", "`handoff restore --dry-run`"), ("apply", "`handoff restore` (apply)")):
        s = st[key]
        rows.append(Row(f"restore.{key}.wall", GROUP, f"{what}: wall vs the floor", inp,
                        Figure(s.wall, "s", rss=s.rss,
                               detail=f"{(s.wall - floor_s) * 1e3:.0f} ms above the floor"),
                        floor, wall_goal, details=details))
        rows.append(Row(f"restore.{key}.rss", GROUP, f"{what}: peak RSS", inp,
                        Figure(s.rss, "bytes"), limit, ratio_below(1.0, "< 32 MiB"),
                        details=details))
    reset()
    return rows
