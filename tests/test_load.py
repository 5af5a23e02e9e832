"""`handoff load` / `unload` against a fake machine: a root with /boot, /proc, /etc, a fake sysfs
tree, and a fake `kexec` on PATH that records its argv. Nothing here touches the real /sys or
runs the real kexec: PATH holds only the fake, and every test passes --root."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
from helpers.machine import (
    BOOT_ID,
    HANDOFF_PARAMS,
    RELEASE,
    Machine,
    cli,
    dry,
    expected_argv,
    make_machine,
    parts_of,
    shared_runtime_cache,
    unpack_like_the_kernel,
    use_machine,
)

from handoff.errors import EnvironmentProblem
from handoff.kexec.config import Host
from handoff.kexec.load import LoadOptions, load
from handoff.kexec.runner import Runner

DERIVED = f"ro quiet console=ttyS0 irqpoll nr_cpus=1 reset_devices {HANDOFF_PARAMS}"


# -- the argv of every mode ----------------------------------------------------------------

@pytest.mark.parametrize("extra,mode,flags", [
    ((), "-p", []),
    (("--syscall", "auto"), "-p", []),
    (("--syscall", "file"), "-p", ["-s"]),
    (("--syscall", "legacy"), "-p", ["-c"]),
    (("--kexec-reboot",), "-l", []),
    (("--kexec-reboot", "--syscall", "file"), "-l", ["-s"]),
])
def test_dry_run_prints_the_exact_argv(machine: Machine, extra: tuple[str, ...], mode: str,
                                       flags: list[str]) -> None:
    rc, out, err, work = dry(machine, *extra)
    assert rc == 0, err
    assert out.splitlines()[0] == expected_argv(machine, work, mode, flags, DERIVED)
    assert "dry run: nothing was loaded" in out
    assert not machine.kexec_log.exists()  # the fake kexec never ran
    assert (machine.sys / "kernel/kexec_crash_loaded").read_text() == "0\n"
    assert not (machine.state / "loaded.json").exists()
    assert not (machine.state / "record.bin").exists()


def test_explicit_cmdline_replaces_the_derived_base(machine: Machine) -> None:
    rc, out, err, work = dry(machine, "--cmdline", "console=ttyS0 nr_cpus=1 reset_devices")
    assert rc == 0, err
    assert out.splitlines()[0] == expected_argv(
        machine, work, "-p", [], f"console=ttyS0 nr_cpus=1 reset_devices {HANDOFF_PARAMS}")


def test_append_adds_to_the_derived_line(machine: Machine) -> None:
    rc, out, err, work = dry(machine, "--append", "panic=1 nousb")
    assert rc == 0, err
    assert out.splitlines()[0] == expected_argv(
        machine, work, "-p", [],
        f"ro quiet console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=1 nousb {HANDOFF_PARAMS}")


def test_kdump_tools_configuration(machine: Machine) -> None:
    kd = machine.root / "var/lib/kdump"
    kd.mkdir(parents=True)
    shutil.copy(machine.kernel, kd / "vmlinuz")
    shutil.copy(machine.initrd, kd / "initrd.img")
    (machine.root / "etc/default").mkdir()
    (machine.root / "etc/default/kdump-tools").write_text(
        "USE_KDUMP=1\nKDUMP_KERNEL=/var/lib/kdump/vmlinuz\nKDUMP_INITRD=/var/lib/kdump/initrd.img\n"
        "KDUMP_COREDIR=\"/var/crash\"\n"
        'KDUMP_CMDLINE_APPEND="reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 '
        'irqpoll nousb module_blacklist=floppy"\n')
    rc, out, err, work = dry(machine)
    assert rc == 0, err
    argv = shlex.split(out.splitlines()[0])
    assert argv[:3] == [machine.kexec, "-p", str(kd / "vmlinuz")]
    assert argv[3] == f"--initrd={work}/capture-initrd.img"
    # kdump-config: /proc/cmdline without crashkernel= and BOOT_IMAGE=, then the append
    assert argv[4] == ("--append=root=UUID=1234 ro quiet console=ttyS0 resume=/dev/sda2 "
                       "reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll "
                       f"nousb {HANDOFF_PARAMS} module_blacklist=floppy")
    assert "kdump-tools (/etc/default/kdump-tools)" in out


def test_kdumpctl_configuration(machine: Machine) -> None:
    shutil.copy(machine.initrd, machine.root / f"boot/initramfs-{RELEASE}kdump.img")
    (machine.root / "etc/sysconfig").mkdir()
    (machine.root / "etc/sysconfig/kdump").write_text(
        'KDUMP_COMMANDLINE=""\nKDUMP_COMMANDLINE_REMOVE="quiet resume"\n'
        'KDUMP_COMMANDLINE_APPEND="irqpoll nr_cpus=1 reset_devices novmcoredd"\n'
        'KEXEC_ARGS="-s"\n')
    rc, out, err, work = dry(machine)
    assert rc == 0, err
    argv = shlex.split(out.splitlines()[0])
    # KEXEC_ARGS="-s" (Secure Boot) makes auto pick kexec_file_load; prepare_cmdline() drops
    # crashkernel, root and KDUMP_COMMANDLINE_REMOVE, and keeps BOOT_IMAGE, as kdumpctl does
    assert argv == [machine.kexec, "-p", "-s", str(machine.kernel),
                    f"--initrd={work}/capture-initrd.img",
                    (f"--append=BOOT_IMAGE=/boot/vmlinuz-6.1.0-test ro console=ttyS0 irqpoll "
                     f"nr_cpus=1 reset_devices novmcoredd {HANDOFF_PARAMS}")]


def test_policy_blacklist_becomes_module_blacklist(machine: Machine, tmp_path: Path) -> None:
    pol = tmp_path / "policy.toml"
    pol.write_text('version = 1\nblacklist = ["mlx5_core", "nvme"]\n')
    rc, out, err, work = dry(machine, "--policy", str(pol))
    assert rc == 0, err
    assert out.splitlines()[0] == expected_argv(
        machine, work, "-p", [], f"{DERIVED} module_blacklist=mlx5_core,nvme")


def test_auto_uses_kexec_file_load_under_lockdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    m = make_machine(tmp_path, lockdown="integrity")
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    rc, out, err, work = dry(m)
    assert rc == 0, err
    assert out.splitlines()[0] == expected_argv(m, work, "-p", ["-s"], DERIVED)


def test_legacy_syscall_refused_under_lockdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    m = make_machine(tmp_path, lockdown="integrity")
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    rc, _out, err, _ = dry(m, "--syscall", "legacy")
    assert rc == 4
    assert err.splitlines()[0] == ("handoff: error: kexec_load (--syscall legacy) is refused "
                                   "under lockdown (integrity)")


# -- the initrd copy -----------------------------------------------------------------------

def test_initrd_copy_appends_aligned_parts_and_keeps_the_original(machine: Machine) -> None:
    before = hashlib.sha256(machine.initrd.read_bytes()).hexdigest()
    size = machine.initrd.stat().st_size
    rc, out, err, work = dry(machine, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert hashlib.sha256(machine.initrd.read_bytes()).hexdigest() == before
    copy = work / "capture-initrd.img"
    data = copy.read_bytes()
    assert data[:size] == machine.initrd.read_bytes()  # the copy starts with the original
    parts = parts_of(copy)
    assert [(o % 4, m) for o, m, _ in parts] == [(0, "gzip"), (0, None), (0, "gzip")]
    assert parts[1][0] == doc["parts"]["handoff"]["offset"]
    assert parts[2][0] == doc["parts"]["runtime"]["offset"]
    assert set(data[size:parts[1][0]]) <= {0}  # only zero padding between the parts
    assert doc["sizes"]["initrd_copy"] == len(data)
    assert doc["argv"][0] == machine.kexec


def test_unpacked_initrd_holds_record_hooks_and_runtime(machine: Machine, tmp_path: Path) -> None:
    rc, _out, err, work = dry(machine)
    assert rc == 0, err
    dest = tmp_path / "unpacked"
    unpack_like_the_kernel(work / "capture-initrd.img", dest)
    import handoff

    found = handoff.read(str(dest / "handoff/record.note"))
    assert [f.record.generation for f in found if f.record] == [1]
    conf = (dest / "handoff/etc/capture.conf").read_text()
    assert "HANDOFF_GENERATION=1\n" in conf and f"HANDOFF_BOOT_ID={BOOT_ID}\n" in conf
    hook = dest / "lib/dracut/hooks/pre-udev/30-handoff.sh"
    assert hook.stat().st_mode & 0o111
    assert "/handoff/bin/handoff restore --record" in hook.read_text()
    assert "handoff capture --dump-dir" in (
        dest / "lib/dracut/hooks/pre-pivot/90-handoff-capture.sh").read_text()
    assert (dest / "handoff/bin/handoff").read_text().startswith("#!/bin/sh\n")
    assert (dest / "init").read_text() == "#!/bin/sh\nexec /bin/sh\n"  # original files stay
    # initramfs-tools: the later ORDER replaced the original, restore first, udev kept
    assert (dest / "scripts/init-top/ORDER").read_text() == (
        '/scripts/init-top/handoff "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n'
        '/scripts/init-top/udev "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n')
    assert (dest / "scripts/init-top/handoff").stat().st_mode & 0o111


@pytest.mark.parametrize("method", ["xz", "none"])
def test_compression_option_reaches_the_runtime_archive(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """--compression picks how the runtime part is packed (gzip without it, tested above);
    the runtime is faked here: packing a real one per method would take tens of seconds."""
    from handoff.formats import cpio
    from handoff.kexec import load as L
    from handoff.kexec import runtime

    w = cpio.Writer()
    w.directory("handoff")
    w.file("handoff/marker", b"runtime", 0o644)
    raw = w.finish()
    seen = []

    def fake(host: Host, rec: bytes, note: bytes, opts: LoadOptions, listing: object
             ) -> runtime.Runtime:
        seen.append(opts.compression)
        return runtime.Runtime(runtime.compress(raw, opts.compression), opts.compression,
                               len(raw), 7, "bundled", "/handoff/python/bin/python3", 1 << 20)

    monkeypatch.setattr(L, "_runtime", fake)
    rc, out, err, work = dry(machine, "--json", "--compression", method)
    assert rc == 0, err
    assert seen == [method] and json.loads(out)["runtime"]["compression"] == method
    parts = parts_of(work / "capture-initrd.img")
    assert [(o % 4, m) for o, m, _ in parts] == [(0, "gzip"), (0, None),
                                                 (0, None if method == "none" else method)]
    assert parts[2][2] == raw


def test_merged_usr_symlinks_are_never_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    m = make_machine(tmp_path, merged_usr=True)
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    rc, out, err, work = dry(m, "--json")
    assert rc == 0, err
    from handoff.formats.cpio import list_members

    off, size = json.loads(out)["parts"]["handoff"].values()
    part = (work / "capture-initrd.img").read_bytes()[off:off + size]
    names = {mem.name: mem for mem in list_members(part)}
    # a "lib" directory entry would make the kernel delete the lib -> usr/lib symlink
    assert not [n for n in names if n == "lib" or n.startswith("lib/")]
    assert names["usr/lib/dracut/hooks/pre-udev/30-handoff.sh"].is_file
    assert "usr/lib" not in names and names["usr/lib/dracut"].is_dir
    dest = tmp_path / "unpacked"
    unpack_like_the_kernel(work / "capture-initrd.img", dest)
    assert os.readlink(dest / "lib") == "usr/lib"
    assert (dest / "lib/modules/modules.dep").exists()
    assert (dest / "lib/dracut/hooks/pre-pivot/90-handoff-capture.sh").is_file()


def test_record_is_found_in_the_copy_by_the_reader(machine: Machine) -> None:
    rc, _out, err, work = dry(machine)
    assert rc == 0, err
    import handoff

    found = handoff.read(str(work / "capture-initrd.img"))
    assert [(f.kind, f.record.generation) for f in found if f.record] == [("initrd", 1)]


# -- preflight failures: exit 4 with what to do ------------------------------------------------

def test_no_crashkernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        tmp_path_factory: pytest.TempPathFactory) -> None:
    m = make_machine(tmp_path, crash_size=0)
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    rc, _, err, _ = dry(m)
    assert rc == 4
    assert err.splitlines()[0] == ("handoff: error: no memory is reserved for a crash kernel "
                                   "(kexec_crash_size is 0)")
    assert err.splitlines()[1].startswith("handoff: hint: reserve memory with crashkernel=SIZE")
    # a reboot load does not need the crash reservation
    rc, _out, err, _ = dry(m, "--kexec-reboot")
    assert rc == 0, err


def test_not_root(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    rc, _out, err, _ = dry(machine)
    assert rc == 4
    assert err.splitlines()[0] == "handoff: error: not running as root (euid 1000)"
    with pytest.raises(EnvironmentProblem, match=r"not running as root \(euid 1000\)"):
        load(LoadOptions(dry_run=True), machine.host(euid=1000), Runner(dry_run=True))


def test_kexec_missing(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    rc, _out, err, _ = dry(machine)
    assert rc == 4
    assert err.splitlines() == [
        "handoff: error: kexec not found on PATH (empty)",
        ("handoff: hint: install kexec-tools (Debian/Ubuntu: apt install kexec-tools; "
         "Fedora/RHEL: dnf install kexec-tools)"),
    ]


def test_kexec_load_disabled(machine: Machine) -> None:
    (machine.root / "proc/sys/kernel/kexec_load_disabled").write_text("1\n")
    rc, _out, err, _ = dry(machine)
    assert rc == 4
    assert err.splitlines()[0] == ("handoff: error: kexec is disabled on this machine "
                                   "(kernel.kexec_load_disabled = 1)")


def test_crashkernel_too_small_names_the_size_needed(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    m = make_machine(tmp_path, crash_size=64 << 20)
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    rc, _out, err, _ = dry(m)
    assert rc == 4
    first, hint = err.splitlines()[:2]
    assert first.startswith("handoff: error: the capture kernel needs about ")
    assert "but crashkernel reserves 64 MiB" in first
    assert hint.startswith("handoff: hint: boot with crashkernel=")
    size = int(hint.split("crashkernel=")[1].split("M")[0])
    assert size % 32 == 0 and size > 64


def test_missing_kernel_file(machine: Machine) -> None:
    machine.kernel.unlink()
    rc, _out, err, _ = dry(machine)
    assert rc == 4
    assert err.splitlines()[0] == (f"handoff: error: capture kernel {machine.kernel} does not "
                                   f"exist (from running kernel {RELEASE})")


# -- running kexec (the fake) ----------------------------------------------------------------

def test_load_runs_kexec_verifies_and_records_state(machine: Machine) -> None:
    rc, out, err = cli("load", "--root", str(machine.root))
    assert rc == 0, err
    copy = machine.state / "capture-initrd.img"
    assert machine.kexec_argv() == ["-p", str(machine.kernel), f"--initrd={copy}",
                                    f"--append={DERIVED}"]
    assert (machine.sys / "kernel/kexec_crash_loaded").read_text() == "1\n"
    st = json.loads((machine.state / "loaded.json").read_text())
    assert (st["generation"], st["mode"], st["record"]) == (
        1, "crash", str(machine.state / "record.bin"))
    assert len(st["inventory"]) == 13 and len(st["fingerprint"]) == 64
    assert "loaded crash kernel, generation 1" in out
    # the next load writes the next generation
    rc, out, err = cli("load", "--root", str(machine.root))
    assert rc == 0, err
    assert json.loads((machine.state / "loaded.json").read_text())["generation"] == 2
    assert machine.kexec_argv()[-1].endswith(f"handoff.generation=2 handoff.boot_id={BOOT_ID}")


def test_eperm_under_lockdown_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    m = make_machine(tmp_path, lockdown="integrity")
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    monkeypatch.setenv("FAKE_KEXEC_MODE", "eperm")
    rc, _out, err = cli("load", "--root", str(m.root), "--syscall", "file")
    assert rc == 4
    first, hint = err.splitlines()
    assert first == (
        "handoff: error: the kernel refused the capture kernel: kexec of unsigned images is "
        "restricted (lockdown: integrity) [kexec exited 255: kexec_file_load failed: Operation "
        "not permitted; kernel: Lockdown: kexec: kexec of unsigned images is restricted; see man "
        "kernel_lockdown.7]")
    assert hint.startswith("handoff: hint: the kernel image must be signed by a key in the "
                           "kernel's keyrings (.builtin_trusted_keys, .secondary_trusted_keys, "
                           "or .platform")
    assert "kexec_file_load" in hint and "mokutil --import" in hint
    assert not (m.state / "loaded.json").exists()


def test_eperm_without_lockdown(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEXEC_MODE", "eperm-plain")
    rc, _out, err = cli("load", "--root", str(machine.root))
    assert rc == 4
    assert err.splitlines()[0] == ("handoff: error: kexec is not permitted [kexec exited 255: "
                                   "kexec_load failed: Operation not permitted]")


def test_success_without_the_loaded_flag_is_an_error(machine: Machine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEXEC_MODE", "noflag")
    rc, _out, err = cli("load", "--root", str(machine.root))
    assert rc == 4
    assert err.splitlines()[0] == (
        f"handoff: error: kexec reported success but {machine.sys}/kernel/kexec_crash_loaded "
        "is not 1")


def test_failed_reload_says_nothing_is_loaded_now(machine: Machine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (machine.sys / "kernel/kexec_crash_loaded").write_text("1\n")  # kdump-tools loaded one
    monkeypatch.setenv("FAKE_KEXEC_MODE", "enomem")
    rc, _out, err = cli("load", "--root", str(machine.root))
    assert rc == 4
    first, hint = err.splitlines()
    assert first == ("handoff: error: the capture kernel and initrd do not fit in the reserved "
                     "crash memory [kexec exited 255: Could not find a free area of memory of "
                     "0x4000000 bytes...]")
    assert hint.startswith("handoff: hint: boot with crashkernel=")
    assert hint.endswith("; NOTE: no capture kernel is loaded now (the old one is freed before a "
                         "load): restore the distro's with `kdump-config load` or "
                         "`kdumpctl restart`")


def test_given_record_is_loaded_as_is(machine: Machine, tmp_path: Path) -> None:
    rc, out, err = cli("save", "--sysfs-root", str(machine.sys), "-o", str(tmp_path / "r.bin"))
    assert rc == 0, err
    rc, out, err, _work = dry(machine, "--record", str(tmp_path / "r.bin"), "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["record"], doc["generation"]) == (str(tmp_path / "r.bin"), 1)


# -- unload ------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,argv", [
    ((), ["-p", "-u"]),
    (("--kexec-reboot",), ["-u"]),
])
def test_unload_dry_run(machine: Machine, extra: tuple[str, ...], argv: list[str]) -> None:
    rc, out, err = cli("unload", "--dry-run", "--root", str(machine.root), *extra)
    assert rc == 0, err
    assert out.splitlines() == [shlex.join([machine.kexec, *argv])]
    assert not machine.kexec_log.exists()


def test_unload_after_load(machine: Machine) -> None:
    assert cli("load", "--root", str(machine.root))[0] == 0
    rc, out, err = cli("unload", "--root", str(machine.root))
    assert rc == 0, err
    assert machine.kexec_argv() == ["-p", "-u"]
    assert (machine.sys / "kernel/kexec_crash_loaded").read_text() == "0\n"
    assert not (machine.state / "loaded.json").exists()
    assert out == "unloaded the crash kernel\n"


def test_unload_under_lockdown_uses_kexec_file_load(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    m = make_machine(tmp_path, lockdown="confidentiality")
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    rc, out, err = cli("unload", "--dry-run", "--root", str(m.root))
    assert rc == 0, err
    assert out.splitlines() == [shlex.join([m.kexec, "-p", "-s", "-u"])]
