"""``load`` names the crash kernel it replaces when handoff did not load it, and says how to
go back; a kernel handoff loaded itself in this boot is not announced."""

from __future__ import annotations

import json
import shutil

from helpers.machine import Machine, cli, dry


def _kdump_tools(m: Machine) -> None:
    kd = m.root / "var/lib/kdump"
    kd.mkdir(parents=True)
    shutil.copy(m.kernel, kd / "vmlinuz")
    shutil.copy(m.initrd, kd / "initrd.img")
    (m.root / "etc/default").mkdir()
    (m.root / "etc/default/kdump-tools").write_text(
        "USE_KDUMP=1\nKDUMP_KERNEL=/var/lib/kdump/vmlinuz\n"
        "KDUMP_INITRD=/var/lib/kdump/initrd.img\nKDUMP_CMDLINE_APPEND=\"nr_cpus=1 irqpoll\"\n")
    (m.sys / "kernel/kexec_crash_loaded").write_text("1\n")


def test_dry_run_names_the_kdump_tools_kernel(machine: Machine) -> None:
    _kdump_tools(machine)
    rc, out, err, _ = dry(machine)
    assert rc == 0, err
    lines = out.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("replaces"))
    kd = machine.root / "var/lib/kdump"
    assert lines[at:at + 5] == [
        ("replaces      a crash kernel is already loaded by kdump-tools "
         "(/etc/default/kdump-tools) (kexec_crash_loaded = 1); it will be replaced"),
        f"                its kernel: {kd / 'vmlinuz'}",
        f"                its initrd: {kd / 'initrd.img'}",
        ("                its cmdline: root=UUID=1234 ro quiet console=ttyS0 resume=/dev/sda2 "
         "nr_cpus=1 irqpoll"),
        ("                to go back: `handoff unload && kdump-config load` "
         "(or `systemctl restart kdump-tools`)"),
    ]


def test_json_carries_it_and_a_kernel_of_our_own_is_not_announced(
        machine: Machine) -> None:
    _kdump_tools(machine)
    work = machine.root.parent / "work"
    rc, out, err = cli("load", "--json", "--dry-run", "--root", str(machine.root),
                       "--work-dir", str(work))
    assert rc == 0, err
    rep = json.loads(out)["replaces"]
    assert (rep["mode"], rep["owner"]) == ("crash", "kdump-tools (/etc/default/kdump-tools)")
    # a real load: then handoff's own kernel is loaded, and a second load replaces only it
    rc, out, err = cli("load", "--root", str(machine.root), "--work-dir", str(work))
    assert rc == 0, err
    assert "replaces" in out
    rc, out, err = cli("load", "--json", "--dry-run", "--root", str(machine.root),
                       "--work-dir", str(work))
    assert rc == 0, err
    assert json.loads(out)["replaces"] is None


def test_unknown_loader(machine: Machine) -> None:
    (machine.sys / "kernel/kexec_crash_loaded").write_text("1\n")
    rc, out, err, _ = dry(machine)
    assert rc == 0, err
    assert ("replaces      a crash kernel is already loaded by another program (not handoff; "
            "no kdump-tools or kdumpctl configuration here) (kexec_crash_loaded = 1); it will "
            "be replaced") in out.splitlines()
    assert "                to go back: `handoff unload`, then load that kernel again with " \
           "`kexec -p`" in out.splitlines()
