"""contrib/kdump-tools/kdump-tools-dump, run by a static busybox sh in a chroot that stands in
for the capture kernel's real root: kdump-config, handoff and reboot are recorders there."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "contrib/kdump-tools/kdump-tools-dump"
BUSYBOX = shutil.which("busybox")
CHROOT = shutil.which("chroot")
APPLETS = ("sh", "find", "sort", "tail", "grep", "mktemp", "rm", "date", "cp", "sync", "mkdir",
           "cat", "printf", "echo", "true")
STAMP = "202612061530"
# What systemd gives a service (kdump-tools-dump.service runs the script with it).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or BUSYBOX is None or CHROOT is None
    or b"statically linked" not in subprocess.run(["file", "-L", BUSYBOX or "/"],
                                                  capture_output=True, check=False).stdout,
    reason="needs root, chroot and a static busybox (apt install busybox-static)")


def _exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def capture_root(tmp: Path, *, savecore_rc: int = 0, handoff_rc: int = 0, vmcore: bool = True,
                 report: bool = True, defaults: str = "USE_KDUMP=1\n") -> Path:
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin/busybox")  # type: ignore[arg-type]
    for applet in APPLETS:
        os.link(root / "bin/busybox", root / "bin" / applet)
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "tmp").mkdir()
    (root / "run/handoff").mkdir(parents=True)
    (root / "run/handoff/record.note").write_bytes(b"record")
    if report:
        (root / "run/handoff/restore-report.json").write_text("{}")
    (root / "proc").mkdir()
    if vmcore:
        (root / "proc/vmcore").write_bytes(b"\x7fELF")
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/kdump-tools").write_text(defaults)
    # kdump-config savecore as kdump-tools 1:1.8.1 lays it out (an older dump is already there)
    (root / "var/crash/202501010000").mkdir(parents=True)
    (root / "var/crash/202501010000/dump.202501010000").write_bytes(b"old")
    _exe(root / "usr/sbin/kdump-config",
         f"#!/bin/sh\necho \"kdump-config $*\" >> /calls\nmkdir -p /var/crash/{STAMP}\n"
         f"echo flat > /var/crash/{STAMP}/dump.{STAMP}\n"
         f"echo dmesg > /var/crash/{STAMP}/dmesg.{STAMP}\nexit {savecore_rc}\n")
    _exe(root / "usr/local/sbin/handoff",  # README's install
         f"#!/bin/sh\necho \"handoff $*\" >> /calls\nexit {handoff_rc}\n")
    _exe(root / "bin/reboot", "#!/bin/sh\necho \"reboot $*\" >> /calls\n")
    _exe(root / "etc/init.d/kdump-tools", "#!/bin/sh\necho \"init.d $*\" >> /calls\n")
    _exe(root / "usr/lib/handoff/kdump-tools-dump", SCRIPT.read_text())
    return root


def run(root: Path) -> tuple[int, list[str], str]:
    p = subprocess.run([CHROOT, str(root), "/bin/sh", "/usr/lib/handoff/kdump-tools-dump"],
                       capture_output=True, text=True, env={"PATH": SYSTEMD_PATH},
                       timeout=60, check=False)
    calls = (root / "calls").read_text().splitlines() if (root / "calls").exists() else []
    return p.returncode, calls, p.stderr


def test_saves_with_kdump_config_then_adds_the_notes_to_that_dump_then_reboots(
        tmp_path: Path) -> None:
    root = capture_root(tmp_path)
    rc, calls, err = run(root)
    assert rc == 0, err
    assert calls == [
        "kdump-config savecore",
        (f"handoff inject-notes --reassemble /var/crash/{STAMP}/dump.{STAMP} "
         "/run/handoff/record.note /run/handoff/restore-report.json"),
        "reboot -f",
    ]
    # one dump, kdump-tools' own; nothing of handoff's beside it; no marker left in /run
    assert sorted(p.name for p in (root / f"var/crash/{STAMP}").iterdir()) == [
        f"dmesg.{STAMP}", f"dump.{STAMP}"]
    assert sorted(p.name for p in (root / "run").iterdir()) == ["handoff"]


def test_without_a_report_only_the_record_is_added(tmp_path: Path) -> None:
    rc, calls, err = run(capture_root(tmp_path, report=False))
    assert rc == 0, err
    assert calls[1] == (f"handoff inject-notes --reassemble /var/crash/{STAMP}/dump.{STAMP} "
                        "/run/handoff/record.note")


def test_when_handoff_fails_the_record_and_report_are_kept_beside_the_dump(
        tmp_path: Path) -> None:
    root = capture_root(tmp_path, handoff_rc=1)
    rc, calls, err = run(root)
    assert rc == 0 and calls[-1] == "reboot -f"
    assert f"could not add the notes to /var/crash/{STAMP}/dump.{STAMP}" in err
    d = root / f"var/crash/{STAMP}"
    assert (d / "handoff-record.note").read_bytes() == b"record"
    assert (d / "handoff-restore-report.json").read_text() == "{}"
    assert (d / f"dump.{STAMP}").read_text() == "flat\n"  # as kdump-tools saved it


def test_a_failed_save_runs_kdump_fail_cmd_as_the_init_script_does(tmp_path: Path) -> None:
    root = capture_root(tmp_path, savecore_rc=1,
                        defaults="USE_KDUMP=1\nKDUMP_FAIL_CMD=\"/usr/local/sbin/handoff failcmd\"\n")
    rc, calls, err = run(root)
    assert rc == 0, err
    assert calls[0] == "kdump-config savecore" and "reboot -f" not in calls
    # the notes still go to the dump that was written; then KDUMP_FAIL_CMD, not a reboot
    assert calls[1].startswith(f"handoff inject-notes --reassemble /var/crash/{STAMP}/")
    assert calls[2:] == ["handoff failcmd"]  # the recorder stands in for KDUMP_FAIL_CMD


def test_without_a_vmcore_it_is_kdump_tools_own_start(tmp_path: Path) -> None:
    rc, calls, err = run(capture_root(tmp_path, vmcore=False))
    assert rc == 0, err
    assert calls == ["init.d start"]
