"""Debian's own kdump service, end to end, at Debian's default crashkernel=128M (issue 16).

A Debian 12 system made with debootstrap boots in QEMU with systemd as PID 1, kdump-tools,
makedumpfile and kexec-tools from Debian, and the harness's 6.1 kernel installed with dpkg
(e2e_harness/debsys_*.py). handoff is installed by README's offline commands (wheels built on
the host) and integrated by docs/distro.md's steps, run in the guest as written; then `systemctl
restart kdump-tools` loads kdump-tools' capture kernel again through the drop-in, with the
record. The driver perturbs kernel-owned PCI state (lib.sh perturb_kernel_owned) and crashes.
In the capture kernel handoff restores before udev, kdump-tools-dump.service saves the dump with
makedumpfile on the root disk, and handoff adds its notes to that one dump. The same disk then
boots again with the two drop-ins removed: kdump-tools alone, the peer for time and memory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import checks as C
from e2e_harness import debsys_boots, debsys_figures, debsys_tree

pytestmark = pytest.mark.e2e

ROOT_DISK = "0000:03:00.0"  # virtio-blk, the root file system the dump is saved on
NVME = "0000:01:00.0"
E1000E = "0000:05:00.0"
VNET = "0000:02:00.0"
OOM = re.compile(r"(?i)out of memory|invoked oom-killer|oom-kill:|oom_reaper")
MEM_AT_RESTORE = re.compile(r"handoff: restore, record generation (\d+) \(MemAvailable:\s+(\d+) kB\)")
MEM_INIT_TOP = re.compile(r"init-top MemAvailable:\s+(\d+) kB")
MiB = 1 << 20


@pytest.fixture(scope="module")
def pair(qemu_ready: None) -> debsys_boots.Pair:
    p = debsys_boots.run_pair()
    print(json.dumps(debsys_boots.timings(p), indent=1))
    return p


def _capture_console(boot: debsys_boots.Boot) -> list[str]:
    """Console lines after the crash marker: the capture kernel's."""
    lines = boot.outcome.lines
    at = next(i for i, ln in enumerate(lines) if "HANDOFF-E2E STAGE crash" in ln)
    return [ln.rstrip() for ln in lines[at:]]


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _one_new_dump(boot: debsys_boots.Boot, before: list[Path]) -> Path:
    new = [d for d in boot.dumps() if d.parent.name not in {b.parent.name for b in before}]
    assert len(new) == 1, (boot.mode, boot.dumps())
    return new[0]


def _dump(pair: debsys_boots.Pair) -> Path:
    (dump,) = pair.handoff.dumps()  # the first boot's disk had no dump before
    return dump


def test_the_machine_is_debians_default(pair: debsys_boots.Pair) -> None:
    h = pair.handoff
    cmdline = h.evidence("cmdline").read_text()
    assert "crashkernel=128M" in cmdline.split()
    assert int(h.evidence("crash-size").read_text()) == 128 * MiB
    mem_kb = int(h.evidence("meminfo").read_text().split()[1])
    assert mem_kb > 800 * 1024  # -m 1G less the reservation and the kernel
    functions = h.evidence("lspci").read_text().splitlines()
    assert len(functions) >= 16, functions
    bound = dict(ln.split() for ln in h.evidence("drivers-first").read_text().splitlines())
    assert bound[NVME] == "nvme" and bound[E1000E] == "e1000e" and bound[ROOT_DISK] == "virtio-pci"
    # kdump-tools loaded its own capture kernel at boot (its initrd built in the guest)
    assert h.evidence("crash-loaded-at-boot").read_text().strip() == "1"


def test_installed_and_integrated_by_the_docs(pair: debsys_boots.Pair) -> None:
    h = pair.handoff
    tree = debsys_tree
    assert pair.info["install"] == tree.fenced_block(tree.README, tree.OFFLINE_ANCHOR)
    assert pair.info["steps"] == tree.fenced_block(tree.DISTRO, tree.STEPS_ANCHOR)
    assert h.evidence("steps.rc").read_text().strip() == "0", h.evidence("steps.log").read_text()
    assert h.evidence("which-handoff").read_text().strip() == "/usr/local/sbin/handoff"
    journal = h.evidence("kdump-tools.journal").read_text()
    assert "handoff: warning" not in journal, journal
    assert "handoff: load failed" not in journal, journal
    # kdump-tools' own kernel and initrd, reloaded by the drop-in with handoff's archives;
    # the runtime packed with xz and the quiescer's dynamic build (the initrd has the libc)
    loaded = _json(h.evidence("loaded.json"))
    assert (loaded["kernel"], loaded["initrd"]) == ("/var/lib/kdump/vmlinuz",
                                                    "/var/lib/kdump/initrd.img"), loaded
    m = re.search(r"\+ handoff cpio (\d+) bytes \+ runtime [\d.]+ MiB (\w+)", journal)
    assert m and m[2] == "xz" and int(m[1]) < 256 << 10, journal
    assert "systemd.unit=kdump-tools-dump.service" in loaded["cmdline"], loaded["cmdline"]
    status = _json(h.evidence("status.json"))
    assert h.evidence("status.rc").read_text().strip() == "0", status


def test_estimate_and_load_say_it_fits_at_128m(pair: debsys_boots.Pair) -> None:
    h = pair.handoff
    assert h.evidence("estimate.rc").read_text().strip() == "0"
    text = h.evidence("estimate.txt").read_text()
    assert "the reservation fits with" in text, text
    assert "warning" not in text.lower() + h.evidence("estimate.err").read_text().lower()
    est = _json(h.evidence("estimate.json"))
    assert est["margin"] >= 0, est
    journal = h.evidence("kdump-tools.journal").read_text()
    m = re.search(r"memory +needs ~(\d+) MiB of (\d+) MiB reserved", journal)
    assert m and int(m[1]) <= int(m[2]) == 128, journal


def test_restore_ran_before_udev_with_the_memory_logged(pair: debsys_boots.Pair) -> None:
    console = _capture_console(pair.handoff)
    starts = [MEM_AT_RESTORE.search(ln) for ln in console]
    (m,) = [s for s in starts if s]
    assert int(m[1]) == _json(pair.handoff.evidence("loaded.json"))["generation"]
    assert "handoff: restore exited 0" in console
    assert "handoff: quiesce exited 0" in console
    report = _report(pair)
    assert report["identity"]["ok"], report["identity"]
    # Before udev: the root disk's and the NVMe's functions had no driver bound when the
    # quiescer ran (it clears Bus Master of unbound endpoints only), and restore handled them.
    cleared = {c["addr"] for c in report["quiescer"]["cleared"]}
    assert {ROOT_DISK, NVME} <= cleared, report["quiescer"]
    # restore acted on the perturbed functions and on the root disk the dump is saved to,
    # and nothing failed or was refused
    for addr in (ROOT_DISK, NVME, E1000E, VNET):
        dev = C.report_device(report, addr)
        assert dev["outcome"] == "done", dev
    assert report["totals"]["failed"] == report["totals"]["refused"] == 0, report["totals"]


def test_no_oom_in_either_capture_kernel(pair: debsys_boots.Pair) -> None:
    for boot in (pair.handoff, pair.baseline):
        bad = [ln for ln in _capture_console(boot) if OOM.search(ln)]
        assert not bad, (boot.mode, bad)
        journal = subprocess.run(["journalctl", "-D", str(boot.out / "journal"), "-k",
                                  "--no-pager", "-q"], capture_output=True, text=True,
                                 check=False).stdout
        assert not [ln for ln in journal.splitlines() if OOM.search(ln)], boot.mode


def _report(pair: debsys_boots.Pair) -> dict[str, Any]:
    code, doc = C.inspect_json(_dump(pair))
    assert code == 0, doc
    (rep,) = doc["container"]["reports"]
    return rep["report"]


def test_one_dump_saved_by_kdump_tools_with_both_notes(pair: debsys_boots.Pair) -> None:
    dump = _dump(pair)
    # one dump per crash: kdump-tools' files only, no copy of handoff's beside it
    assert sorted(p.name.split(".")[0] for p in dump.parent.iterdir()) == ["dmesg", "dump"]
    code, doc = C.inspect_json(dump)
    assert code == 0, doc
    assert doc["container"]["kind"].startswith("kdump"), doc["container"]
    (rec,) = doc["records"]
    assert rec["valid"] and rec["generation"] == _json(
        pair.handoff.evidence("loaded.json"))["generation"]
    (rep,) = doc["container"]["reports"]
    assert rep["report"]["kind"] == "handoff-restore-report"
    assert "handoff: could not add the notes" not in "\n".join(_capture_console(pair.handoff))


@pytest.mark.parametrize("mode", ["handoff", "baseline"])
def test_crash_and_makedumpfile_read_the_dump(pair: debsys_boots.Pair, mode: str,
                                              tmp_path: Path) -> None:
    boot = getattr(pair, mode)
    dump = _dump(pair) if mode == "handoff" else _one_new_dump(boot, pair.handoff.dumps())
    assert shutil.which("crash") and shutil.which("makedumpfile")
    proc = subprocess.run(["crash", "--osrelease", str(dump)], capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == pair.release, proc
    if mode == "baseline":
        # kdump-tools saves makedumpfile's flattened stream (-F), which makedumpfile reads only
        # through -R; handoff's hook reassembled the other boot's dump to add its notes
        assert dump.read_bytes()[:12] == b"makedumpfile"
        flat, dump = dump, tmp_path / "reassembled"
        with flat.open("rb") as f:
            proc = subprocess.run(["makedumpfile", "-R", str(dump)], stdin=f,
                                  capture_output=True, text=True, check=False, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "dmesg"
    proc = subprocess.run(["makedumpfile", "--dump-dmesg", str(dump), str(out)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "sysrq: Trigger a crash" in out.read_text(errors="replace")
    if mode == "baseline":
        code, doc = C.inspect_json(dump)
        assert code == 3, doc  # kdump-tools alone: no record in its dump
        assert not [ln for ln in _capture_console(boot) if ln.startswith("handoff:")]


def test_memory_added_and_time_against_kdump_tools_alone(pair: debsys_boots.Pair) -> None:
    """What handoff adds to the capture kernel at 128M, against the same capture without it;
    written to cache/debsys-memory.json for `bench/run --e2e`."""
    figures = debsys_figures.figures(pair)
    print(json.dumps(figures, indent=1))
    # restore's own peak, measured in the capture kernel, left room to spare
    assert figures["peak_private"] is not None and figures["peak_private"] > 1 * MiB, figures
    assert figures["mem_available_at_restore"] > figures["peak_private"] + 8 * MiB, figures
    # both boots measured at the same init-top point, handoff's the lower
    top = figures["mem_available_init_top"]
    assert top["baseline"] > top["handoff"] > 0, figures
    assert figures["crash_to_saved_s"]["handoff"] > 0 and figures["crash_to_saved_s"]["baseline"] > 0
