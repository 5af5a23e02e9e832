"""The capture-side runtime cpio `handoff load` appends to the capture initrd.

Built through handoff.kexec's public API (imports.compute_imports, runtime.build with the
default gzip compression) in handoff's own interpreter, against the e2e harness's capture initrd
(busybox, modules and hooks: the initrd it is appended to in the QEMU round trip). Limit: under
8 MiB compressed; what it adds to the initrd also has to be unpacked into the crashkernel
region's memory, so the unpacked sizes are shown too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import inputs
from bench.core import Ctx
from bench.env import ROOT
from bench.measure import CommandFailed, run_child
from bench.table import CONTEXT, Figure, Row, not_available, ratio_at_most, ratio_below

GROUP = "capture-side runtime cpio"
LIMIT = 8 << 20
IDS = ["runtime.limit", "runtime.initrd", "runtime.addition"]
ADDITION_LIMIT = 20 << 20  # issue 16: handoff's addition at Debian's crashkernel=128M
E2E_DIR = ROOT / "tests" / "e2e"


def capture_initrd(ctx: Ctx) -> tuple[Path | None, str]:
    """The e2e harness's capture initrd, built by the harness itself from its package cache;
    (None, why) when the harness has never prepared its packages here."""
    if not (inputs.E2E_CACHE / "closure.json").exists():
        return None, "no e2e package cache (run the e2e once: pytest tests/e2e -m e2e)"
    sys.path.insert(0, str(E2E_DIR))
    try:
        from e2e_harness import rootfs
        from e2e_harness.config import CACHE_DIR
        from e2e_harness.scenario import _lock

        out = ctx.work / "capture-initrd.img"
        with _lock(CACHE_DIR / ".lock"):  # the harness's own lock: e2e runs may share the cache
            pkgs = rootfs.prepare_packages()
            rootfs.capture_initrd(pkgs, {}, "full", out)
        return out, "e2e capture initrd (busybox, kernel modules, /init; gzip)"
    except Exception as e:  # noqa: BLE001 - the row says why instead
        return None, f"building the e2e capture initrd failed: {e}"
    finally:
        sys.path.remove(str(E2E_DIR))


def distro_initrd() -> Path | None:
    """Debian 12's initramfs-tools initrd the e2e early-collector scenarios build
    (tests/e2e/e2e_harness/bootinitrd.py): the kind of initrd kdump-tools loads."""
    import os

    for base in (os.environ.get("HANDOFF_E2E_CACHE"), str(inputs.E2E_CACHE)):
        if base:
            found = sorted(Path(base, "bootinitrd").glob("initramfs-tools-*.img"))
            if found:
                return found[-1]
    return None


def addition_row(ctx: Ctx, rec: Path, fallback: dict | None) -> Row:
    """handoff's addition to the capture kernel's peak: the runtime unpacked plus restore's or
    capture's own peak without file pages (docs/load.md, "Memory"), against 20 MiB."""
    goal = ratio_at_most(1.0, "≤ 20 MiB added (Debian's crashkernel=128M)")
    initrd = distro_initrd()
    doc = fallback
    what = "the e2e busybox capture initrd (no libc of its own)"
    if initrd is not None:
        out = ctx.work / "runtime-distro.json"
        out.unlink(missing_ok=True)
        argv = [ctx.install.python, "-P",
                str(Path(__file__).resolve().parents[1] / "runtime_child.py"), str(out),
                str(rec), str(initrd), "gzip"]
        try:
            run_child(argv)
            doc = json.loads(out.read_text())
            what = f"Debian 12 initramfs-tools initrd ({initrd.name})"
        except (CommandFailed, OSError, ValueError) as e:
            ctx.log(f"runtime: building against {initrd} failed: {e}")
    if doc is None:
        return not_available("runtime.addition", GROUP, "handoff's addition to the capture peak",
                             "—", "no runtime was built", goal)
    s = doc["summary"]
    added = s["unpacked_size"] + s.get("peak_private", s["peak_rss"])
    inp = f"record of 13 devices; gzip; appended to {what}"
    ours = Figure(added, "bytes", detail=(
        f"{s['unpacked_size'] / 2**20:.1f} MiB unpacked + "
        f"{s.get('peak_private', 0) / 2**20:.1f} MiB own peak (VmHWM - RssFile; VmHWM of "
        f"all dry runs in one process {s['peak_rss'] / 2**20:.1f} MiB)"))
    return Row("runtime.addition", GROUP, "handoff's addition to the capture peak", inp, ours,
               Figure(ADDITION_LIMIT, "bytes", label="limit"), goal, details={"build": doc})


def run(ctx: Ctx) -> list[Row]:
    initrd, initrd_what = capture_initrd(ctx)
    ctx.log(f"runtime: peer {initrd_what}")
    rec = ctx.work / "runtime-record.bin"
    rec.write_bytes(inputs.sample_record(13))
    out = ctx.work / "runtime.json"
    out.unlink(missing_ok=True)
    # The default since the second session (docs/load.md: the kernel unpacks gzip 1.3 s
    # sooner than xz under TCG, for 1.5 MiB more).
    compression = "gzip"
    argv = [ctx.install.python, "-P", str(Path(__file__).resolve().parents[1] / "runtime_child.py"),
            str(out), str(rec), str(initrd) if initrd else "-", compression]
    limit_goal = ratio_below(1.0, "< 8 MiB compressed (gzip, the default)")
    try:
        sample = run_child(argv, rss=True)
        doc = json.loads(out.read_text())
    except (CommandFailed, OSError, ValueError) as e:
        why = str(e)
        if "ModuleNotFoundError" in why or "ImportError" in why or "AttributeError" in why:
            why = "handoff.kexec's runtime API is not usable yet: " + why
        return [not_available("runtime.limit", GROUP, "runtime cpio, compressed", "—", why,
                              limit_goal),
                not_available("runtime.initrd", GROUP, "runtime cpio vs capture initrd", "—", why),
                addition_row(ctx, rec, None)]
    s = doc["summary"]
    ours = Figure(s["compressed_size"], "bytes",
                  detail=f"{s['unpacked_size'] / 2**20:.1f} MiB unpacked, {s['modules']} modules, "
                         f"mode {s['mode']}")
    inp = f"record of 13 devices; {compression}; built in {sample.wall:.1f} s, " \
          f"{sample.rss / 2**20:.0f} MiB peak RSS"
    details = {"build": doc, "build_wall_s": sample.wall, "build_peak_rss_bytes": sample.rss}
    rows = [Row("runtime.limit", GROUP, "runtime cpio, compressed", inp, ours,
                Figure(LIMIT, "bytes", label="limit"), limit_goal, details=details)]
    if initrd is None:
        rows.append(not_available("runtime.initrd", GROUP, "runtime cpio vs capture initrd", inp,
                                  initrd_what))
    else:
        unp = doc.get("initrd_unpacked")
        peer = Figure(initrd.stat().st_size, "bytes", label=initrd_what,
                      detail=f"{unp / 2**20:.1f} MiB unpacked" if unp else "")
        rows.append(Row("runtime.initrd", GROUP, "runtime cpio vs the initrd it is appended to",
                        inp, ours, peer, CONTEXT, details=details))
    rows.append(addition_row(ctx, rec, doc))
    return rows
