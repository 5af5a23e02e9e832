"""The capture-side runtime: its computed import set, the packed interpreter really running
`handoff restore` in an empty chroot, hooks, command line, distro configuration, estimates."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from helpers import fakesysfs as F
from helpers.machine import (
    BOOT_ID,
    Machine,
    dry,
    make_machine,
    unpack_like_the_kernel,
    use_machine,
)

from handoff import _binding
from handoff.errors import EnvironmentProblem, UsageError
from handoff.kexec import checks, cmdline, config, hooks, imports, runtime
from handoff.kexec.config import Host
from handoff.kexec.explain import explain
from handoff.kexec.initrd import Listing
from handoff.kexec.runner import Result, Runner
from handoff.record import NT_HANDOFF_RECORD
from handoff.save import save
from handoff.sysfs import SysfsTree

BUSYBOX = shutil.which("busybox")
CHROOT = shutil.which("chroot")


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> imports.ImportSet:
    tmp = tmp_path_factory.mktemp("trace")
    F.build_tree(tmp / "sys")
    res = save(None, SysfsTree(tmp / "sys"))
    return imports.compute_imports(res.record, _binding.wrap_note(res.record, NT_HANDOFF_RECORD))


# -- the import set -----------------------------------------------------------------------------

def test_dry_runs_exercise_restore_and_capture(traced: imports.ImportSet) -> None:
    rcs = {" ".join(r["argv"][:2]) + (" dry" if "--dry-run" in r["argv"] else ""): r["rc"]
           for r in traced.runs}
    # restore planned against the record's own tree; capture saved a one-page core for real
    assert [r["rc"] for r in traced.runs if r["argv"][:1] == ["restore"]
            and "--dry-run" in r["argv"]] == [0, 0, 1]
    assert [r["rc"] for r in traced.runs if r["argv"][:1] == ["capture"]] == [0, 0, 0]
    assert rcs["--help"] == 0


def test_import_set_is_computed_not_guessed(traced: imports.ImportSet) -> None:
    mods = traced.modules
    for name in ("handoff.cli.restore", "handoff.restore.plan", "handoff.restore.apply",
                 "handoff.capture.save", "handoff.sources.records", "encodings.utf_8", "json"):
        assert name in mods, name
    # load-side code stays out unless a capture command imported it
    assert "handoff.kexec.load" not in mods and "handoff.kexec.runtime" not in mods
    # hashlib runs on its built-in fallbacks; OpenSSL's _hashlib (libcrypto) is left out
    assert "_hashlib" not in mods and "_sha256" in mods
    assert set(traced.static_only) <= set(mods) and not set(traced.static_only) & set(traced.traced)
    # cbor2 only accelerates large payloads (handoff.cbor falls back to loads_py): left out;
    # the cffi backend handoff._native loads from C is put in, though no dry run loaded it
    assert not {m for m in mods if m.split(".")[0] == "cbor2"}
    assert "handoff._native" in mods and "_cffi_backend" in mods
    # restore's and capture's own peak, each alone and without file pages, is below the VmHWM
    # of the one process that ran every dry run
    assert 1 << 20 < traced.peak_private < traced.peak_rss
    assert traced.peak_rss > 1 << 20


def test_static_pass_follows_imports_inside_handoff_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "handoff" / "restore"
    pkg.mkdir(parents=True)
    (tmp_path / "handoff" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "lazy.py").write_text("def f():\n    import colorsys\n    return colorsys\n")
    (tmp_path / "other.py").write_text("def g():\n    import wave\n")
    found = imports.static_closure({"other": str(tmp_path / "other.py")},
                                   [str(tmp_path)] + sys.path)
    assert "colorsys" in found  # inside a handoff function: followed
    assert "wave" not in found  # inside a function elsewhere: not followed


# -- the packed runtime runs ------------------------------------------------------------------------

def chroot_tree(machine: Machine, work: Path, dest: Path) -> Path:
    unpack_like_the_kernel(work / "capture-initrd.img", dest)
    (dest / "bin").mkdir(exist_ok=True)
    assert BUSYBOX is not None
    shutil.copy(BUSYBOX, dest / "bin/sh")  # the wrapper is a /bin/sh script
    F.copy_tree(machine.sys, dest / "fake")
    (dest / "proc_fake").mkdir()
    (dest / "proc_fake/cmdline").write_text(
        f"reset_devices handoff.generation=1 handoff.boot_id={BOOT_ID}\n")
    return dest


needs_chroot = pytest.mark.skipif(
    os.geteuid() != 0 or BUSYBOX is None or CHROOT is None
    or runtime.elf_interpreter(os.path.realpath(BUSYBOX)) is not None,
    reason="needs root, chroot and a static busybox (apt install busybox-static)")


def host_handoff(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "handoff", *argv], capture_output=True,
                          text=True, env=env, check=False)


@needs_chroot
def test_packed_runtime_runs_restore_in_an_empty_chroot(machine: Machine, tmp_path: Path) -> None:
    rc, _, err, work = dry(machine)
    assert rc == 0, err
    root = chroot_tree(machine, work, tmp_path / "chroot")
    # nothing but the initrd's files, the runtime, sh and the fake trees
    assert sorted(p.name for p in root.iterdir()) == [
        "bin", "fake", "handoff", "init", "lib", "proc_fake", "scripts"]
    argv = ["restore", "--dry-run", "--record", "/handoff/record.note", "--sysfs-root", "/fake",
            "--proc-root", "/proc_fake"]
    inside = subprocess.run([CHROOT, str(root), "/handoff/bin/handoff", *argv],
                            capture_output=True, text=True, env={}, check=False)
    assert inside.returncode == 0, inside.stderr
    # the same command with the development tree gives the same output, byte for byte
    outside = host_handoff(*[a.replace("/handoff/", f"{root}/handoff/")
                             .replace("/fake", f"{root}/fake")
                             .replace("/proc_fake", f"{root}/proc_fake") for a in argv])
    assert inside.stdout == outside.stdout.replace(str(root), "")
    assert inside.stdout.splitlines()[-1].startswith("13 devices: ")


@needs_chroot
def test_packed_runtime_applies_a_plan_to_a_fake_tree(machine: Machine, tmp_path: Path) -> None:
    rc, _, err, work = dry(machine)
    assert rc == 0, err
    root = chroot_tree(machine, work, tmp_path / "chroot")
    twin = F.copy_tree(root / "fake", tmp_path / "twin")
    argv = ["--record", "/handoff/record.note", "--proc-root", "/proc_fake"]
    inside = subprocess.run([CHROOT, str(root), "/handoff/bin/handoff", "restore",
                             "--sysfs-root", "/fake", *argv], capture_output=True, text=True,
                            env={}, check=False)
    outside = host_handoff("restore", "--sysfs-root", str(twin), "--record",
                           f"{root}/handoff/record.note", "--proc-root", f"{root}/proc_fake")
    assert (inside.returncode, inside.stdout) == (outside.returncode, outside.stdout)
    for cfg in sorted((root / "fake/devices").rglob("config")):
        twin_cfg = twin / cfg.relative_to(root / "fake")
        assert cfg.read_bytes() == twin_cfg.read_bytes(), cfg


@needs_chroot
def test_runtime_reuses_the_initrds_own_libc_and_loader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    loader = runtime.elf_interpreter(os.path.realpath(sys.executable))
    assert loader is not None
    libs = runtime.shared_libraries([os.path.realpath(sys.executable)], loader, Runner())
    libc = Path(os.path.realpath(libs["libc.so.6"]))
    ld = Path(os.path.realpath(loader))
    # the same bytes at the initrd's multiarch path, and one library that differs
    m = make_machine(tmp_path, libraries={f"usr/lib/x86_64-linux-gnu/{ld.name}": ld,
                                          "usr/lib/x86_64-linux-gnu/libc.so.6": libc})
    use_machine(m, monkeypatch, tmp_path / "own-cache")
    rc, out, err, work = dry(m, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    root = chroot_tree(m, work, tmp_path / "chroot")
    manifest = json.loads((root / "handoff/etc/runtime.json").read_text())
    assert manifest["reused"] == {ld.name: f"usr/lib/x86_64-linux-gnu/{ld.name}",
                                  "libc.so.6": "usr/lib/x86_64-linux-gnu/libc.so.6"}
    assert not (root / "handoff/lib/libc.so.6").exists()
    assert not (root / f"handoff/lib/{ld.name}").exists()
    wrapper = (root / "handoff/bin/handoff").read_text()
    assert f"exec /usr/lib/x86_64-linux-gnu/{ld.name} --library-path " \
        "/handoff/lib:/usr/lib/x86_64-linux-gnu " in wrapper
    assert doc["runtime"]["mode"] == "bundled"
    argv = ["restore", "--dry-run", "--record", "/handoff/record.note", "--sysfs-root", "/fake",
            "--proc-root", "/proc_fake"]
    inside = subprocess.run([CHROOT, str(root), "/handoff/bin/handoff", *argv],
                            capture_output=True, text=True, env={}, check=False)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.splitlines()[-1].startswith("13 devices: ")


def test_runtime_size_and_manifest(machine: Machine, tmp_path: Path) -> None:
    rc, out, err, work = dry(machine, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    rt = doc["runtime"]
    assert rt["mode"] == "bundled" and rt["compression"] == runtime.DEFAULT_COMPRESSION == "gzip"
    assert rt["compressed_size"] < 8 << 20  # the goal for the crashkernel budget
    assert doc["sizes"]["runtime_compressed"] == rt["compressed_size"]
    dest = tmp_path / "u"
    unpack_like_the_kernel(work / "capture-initrd.img", dest)
    manifest = json.loads((dest / "handoff/etc/runtime.json").read_text())
    files = {str(p.relative_to(dest)) for p in (dest / "handoff").rglob("*") if p.is_file()}
    assert set(manifest["files"]) <= files
    assert f"handoff/lib/{os.path.basename(runtime.elf_interpreter(sys.executable) or '')}" in files
    # pure-Python modules are served from the zip Python puts on sys.path by itself
    zpath = f"handoff/python/lib/{runtime.ZIP_NAME}"
    assert manifest["zip"] == zpath and zpath in files
    import zipfile

    with zipfile.ZipFile(dest / zpath) as z:
        zipped = set(z.namelist())
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    assert zipped == set(manifest["zipped"])
    assert {"handoff/restore/plan.py", "handoff/restore/plan.pyc", "json/decoder.pyc",
            "encodings/utf_8.pyc"} <= zipped
    assert "json/decoder.py" not in zipped  # the stdlib ships as bytecode only
    assert not any(f.endswith(".py") and f.startswith("handoff/site/") for f in files)
    assert "handoff/site/handoff/_native.abi3.so" in files  # extensions stay files
    landmark = dest / f"handoff/python/lib/python{runtime.PYVER}/os.py"  # getpath's landmark
    assert landmark.read_bytes() == runtime.LANDMARK
    for load_side in ("load", "runtime", "checks", "config"):  # never imported by capture
        assert f"handoff/kexec/{load_side}.pyc" not in zipped
    # handoff-quiesce comes with the handoff cpio (with the record), not the runtime.
    from handoff.kexec import quiescer

    quiesce = "handoff/bin/handoff-quiesce"
    assert (quiesce in files) == (quiescer.binary()[0] is not None)
    assert sum((dest / f).stat().st_size for f in files - {quiesce}
               if f.startswith(("handoff/python", "handoff/site", "handoff/lib", "handoff/bin"))
               ) <= rt["unpacked_size"]


# -- compression -------------------------------------------------------------------------------

def test_xz_uses_crc32_and_a_small_dictionary() -> None:
    data = os.urandom(1000) * 50
    xz = runtime.compress(data, "xz")
    assert xz[:6] == b"\xfd7zXZ\x00" and xz[7] == 0x01  # stream flags: check type 1 = CRC32
    assert lzma.decompress(xz) == data
    # block header: LZMA2 filter (0x21), 1 property byte: dictionary 2^20 = 1 MiB -> 0x10
    bh = xz[12:12 + (xz[12] + 1) * 4]
    assert bh[2:5] == b"\x21\x01\x10"
    gz = runtime.compress(data, "gzip")
    assert gz[:2] == b"\x1f\x8b" and zlib.decompressobj(31).decompress(gz) == data
    assert runtime.compress(data, "none") == data
    with pytest.raises(ValueError, match="unknown compression 'zstd'"):
        runtime.compress(data, "zstd")


def test_the_cli_offers_the_runtime_compressions_default_first() -> None:
    from handoff.cli import load as cli_load

    assert cli_load.COMPRESSIONS == runtime.COMPRESSIONS
    assert runtime.COMPRESSIONS[0] == runtime.DEFAULT_COMPRESSION


# -- hooks -------------------------------------------------------------------------------------------

def listing(members: dict[str, bytes], complete: bool = True) -> Listing:
    from handoff.formats.cpio import Member

    lst = Listing(complete=complete)
    for name, data in members.items():
        lst.members[name] = Member(name, 0o100644, 0, 0, 1, 0, len(data), 1, 0, 0, 0, 0)
        lst.data[name] = data
    return lst


ORIG_TOP = b'/scripts/init-top/udev "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n'


def test_order_puts_restore_first_and_capture_last() -> None:
    conf = hooks.CaptureConf(generation=3, boot_id=BOOT_ID)
    bottom = b'/scripts/init-bottom/udev "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n'
    files = {n: d for n, d, _ in hooks.hook_files(conf, listing(
        {"scripts/init-top/ORDER": ORIG_TOP, "scripts/init-top/udev": b"",
         "scripts/init-bottom/ORDER": bottom, "scripts/init-bottom/udev": b""}))}
    assert files["scripts/init-top/ORDER"] == (
        b'/scripts/init-top/handoff "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n'
        + ORIG_TOP)
    assert files["scripts/init-bottom/ORDER"] == bottom + (
        b'/scripts/init-bottom/handoff-capture "$@"\n[ -e /conf/param.conf ] && '
        b'. /conf/param.conf\n')
    # idempotent: an ORDER that already lists handoff is kept as it is
    assert hooks.order_with(files["scripts/init-top/ORDER"], hooks.ITOOLS_RESTORE,
                            first=True) == files["scripts/init-top/ORDER"]


def test_unreadable_order_is_never_replaced_blindly() -> None:
    warnings: list[str] = []
    lst = listing({"scripts/init-top/udev": b""}, complete=False)
    names = [n for n, _, _ in hooks.hook_files(hooks.CaptureConf(1, BOOT_ID), lst,
                                                warnings=warnings)]
    assert "scripts/init-top/ORDER" not in names
    assert warnings == [("could not read scripts/init-top/ORDER from the initrd; "
                         "/scripts/init-top/handoff will not run under initramfs-tools")]


def test_dracut_only_initrd_gets_no_initramfs_tools_scripts() -> None:
    names = [n for n, _, _ in hooks.hook_files(hooks.CaptureConf(1, BOOT_ID),
                                                listing({"usr/lib/dracut/modules.txt": b""}))]
    assert names == [hooks.CONF, hooks.DRACUT_RESTORE, hooks.DRACUT_CAPTURE]
    names = [n for n, _, _ in hooks.hook_files(hooks.CaptureConf(1, BOOT_ID, capture=False),
                                                listing({}))]
    assert names == [hooks.CONF, hooks.DRACUT_RESTORE]


def test_the_quiescer_is_the_first_hook_in_both_flavours() -> None:
    files = {n: d for n, d, _ in hooks.hook_files(
        hooks.CaptureConf(1, BOOT_ID), listing({"scripts/init-top/ORDER": b"/scripts/init-top/udev\n",
                                                "scripts/init-top/udev": b""}), quiescer=True)}
    dracut = files[hooks.DRACUT_QUIESCE].decode()
    assert hooks.DRACUT_QUIESCE.rsplit("/", 1)[1] < hooks.DRACUT_RESTORE.rsplit("/", 1)[1]
    assert "/handoff/bin/handoff-quiesce --record /handoff/record.note " \
        "--log /handoff/quiesce.log" in dracut
    assert not [ln for ln in dracut.splitlines() if ln.split()[:1] == ["exit"]]  # sourced
    itools = files[hooks.ITOOLS_RESTORE].decode()
    assert itools.index("handoff-quiesce") < itools.index("handoff restore")
    assert files["scripts/init-top/ORDER"].startswith(b"/scripts/init-top/handoff ")
    without = {n for n, _, _ in hooks.hook_files(hooks.CaptureConf(1, BOOT_ID), listing({}))}
    assert hooks.DRACUT_QUIESCE not in without


def test_capture_conf_is_a_shell_fragment(tmp_path: Path) -> None:
    conf = hooks.CaptureConf(7, BOOT_ID, dump_dir="/mnt/dump dir",
                             restore_args=("--policy", "/handoff/etc/policy.toml"))
    (tmp_path / "c").write_bytes(conf.render())
    script = '. "$1"; printf "%s|%s|%s" "$HANDOFF_GENERATION" "$HANDOFF_DUMP_DIR" ' \
        '"$HANDOFF_RESTORE_ARGS"'
    out = subprocess.run(["/bin/sh", "-c", script, "sh", str(tmp_path / "c")],
                         capture_output=True, text=True, check=True)
    assert out.stdout == "7|/mnt/dump dir|--policy /handoff/etc/policy.toml"


def test_listing_resolves_directory_symlinks() -> None:
    lst = listing({})
    lst.symlinks.update({"lib": "usr/lib", "lib64": "/usr/lib64", "usr/lib/alt": "../share",
                         "loop": "loop"})
    assert lst.resolve("lib/dracut/hooks/x.sh") == "usr/lib/dracut/hooks/x.sh"
    assert lst.resolve("lib64/ld.so") == "usr/lib64/ld.so"
    assert lst.resolve("lib/alt/f") == "usr/share/f"
    assert lst.resolve("lib") == "lib"  # the last component is not followed
    assert lst.resolve("scripts/init-top/ORDER") == "scripts/init-top/ORDER"
    lst.resolve("loop/x")  # a symlink loop ends


def test_initrd_python_detection() -> None:
    assert runtime.initrd_python(listing({"usr/bin/python3.11": b"", "bin/sh": b""})) == \
        "/usr/bin/python3.11"
    assert runtime.initrd_python(listing({"bin/sh": b"", "usr/bin/python": b""})) is None


def test_initrd_python_is_reused_only_when_complete() -> None:
    v = runtime.PYVER
    stdlib = f"handoff/python/lib/python{v}"
    files = [runtime.RuntimeFile(f"{stdlib}/json/__init__.py", "/x", kind="py"),
             runtime.RuntimeFile("handoff/site/handoff/cli/__init__.py", "/y", kind="py")]
    full = listing({"usr/bin/python3": b"", f"usr/lib/python{v}/os.py": b"",
                    f"usr/lib/python{v}/json/__init__.pyc": b""})
    assert runtime._reusable_python(full, files, stdlib) == "/usr/bin/python3"
    lacking = listing({"usr/bin/python3": b"", f"usr/lib/python{v}/os.py": b""})
    assert runtime._reusable_python(lacking, files, stdlib) is None
    other_version = listing({"usr/bin/python3": b"", "usr/lib/python3.9/os.py": b""})
    assert runtime._reusable_python(other_version, files, stdlib) is None
    ext = files + [runtime.RuntimeFile("handoff/site/handoff/_native.abi3.so", "/z", kind="ext")]
    assert runtime._reusable_python(full, ext, stdlib) is None


# -- command line and configuration ----------------------------------------------------------------

def test_cmdline_assembly() -> None:
    base = ('BOOT_IMAGE=/vmlinuz root=/dev/sda1 crashkernel=512M@16M quiet '
            'dyndbg="file drivers/pci/* +p" module_blacklist=floppy nr-cpus=4')
    assert cmdline.split(base)[4] == 'dyndbg="file drivers/pci/* +p"'
    assert cmdline.assemble(base, remove_names=["crashkernel", "root", "nr_cpus"],
                            append="irqpoll nr_cpus=1 reset_devices", extra="quiet",
                            handoff=["handoff.generation=2", "handoff.boot_id=x"],
                            blacklist=["mlx5-core", "floppy"]) == (
        'BOOT_IMAGE=/vmlinuz quiet dyndbg="file drivers/pci/* +p" irqpoll nr_cpus=1 '
        'reset_devices handoff.generation=2 handoff.boot_id=x module_blacklist=floppy,mlx5_core')
    # an earlier handoff.* parameter is replaced, not repeated
    assert cmdline.assemble("handoff.generation=1 ro", handoff=["handoff.generation=5"]) == \
        "ro reset_devices handoff.generation=5"


def test_kdump_tools_file_is_parsed_not_run(tmp_path: Path) -> None:
    host = Host(root=tmp_path, release="6.1.0-x")
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/kdump-tools").write_text(
        "# comment\nUSE_KDUMP=1\nKDUMP_KERNEL=/k\nKDUMP_INITRD='/i'\n"
        "export KDUMP_KEXEC_ARGS=\"-d --elf64-core-headers\"\n")
    (tmp_path / "k").write_bytes(b"k")
    (tmp_path / "i").write_bytes(b"i")
    cfg = config.discover(host)
    assert (cfg.kernel, cfg.initrd, cfg.base_cmdline) == (tmp_path / "k", tmp_path / "i", None)
    # kdump-config 1:1.8.1 (Debian 12): KDUMP_CMDLINE_APPEND's default, as shipped
    assert cfg.append == "reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 " \
        "irqpoll usbcore.nousb"
    assert cfg.kexec_args == ("-d", "--elf64-core-headers")
    (tmp_path / "etc/default/kdump-tools").write_text("KDUMP_KERNEL=/boot/vmlinuz-$(uname -r)\n")
    with pytest.raises(UsageError, match=r"KDUMP_KERNEL=/boot/vmlinuz-\$\(uname -r\) needs "
                                         "shell expansion"):
        config.discover(host)


def test_kdumpctl_initrd_falls_back_to_var_lib_kdump(tmp_path: Path) -> None:
    host = Host(root=tmp_path, release="6.9.0-x")
    (tmp_path / "etc/sysconfig").mkdir(parents=True)
    (tmp_path / "etc/sysconfig/kdump").write_text('KDUMP_COMMANDLINE_REMOVE="quiet"\n')
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz-6.9.0-x").write_bytes(b"k")
    (tmp_path / "var/lib/kdump").mkdir(parents=True)
    (tmp_path / "var/lib/kdump/initramfs-6.9.0-xkdump.img").write_bytes(b"i")
    cfg = config.discover(host)
    assert cfg.initrd == tmp_path / "var/lib/kdump/initramfs-6.9.0-xkdump.img"
    assert cfg.remove == config.KDUMPCTL_ALWAYS_REMOVE + ("quiet",)
    assert cfg.source == "kdumpctl (/etc/sysconfig/kdump)"


# -- memory --------------------------------------------------------------------------------------

def test_kernel_memory_of_each_image_kind(tmp_path: Path) -> None:
    bz = bytearray(0x300)
    bz[0x202:0x206] = b"HdrS"
    struct.pack_into("<HI", bz, 0x206, 0x020F, 0)
    struct.pack_into("<I", bz, 0x260, 0x3F98000)
    (tmp_path / "bz").write_bytes(bz)
    assert checks.kernel_memory(tmp_path / "bz") == 0x3F98000
    elf = bytearray(64 + 2 * 56)
    elf[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", elf, 32, 64)
    struct.pack_into("<HH", elf, 54, 56, 2)
    struct.pack_into("<I", elf, 64, 1)
    struct.pack_into("<Q", elf, 64 + 40, 5 << 20)
    struct.pack_into("<I", elf, 120, 1)
    struct.pack_into("<Q", elf, 120 + 40, 3 << 20)
    (tmp_path / "vmlinux").write_bytes(elf)
    assert checks.kernel_memory(tmp_path / "vmlinux") == 8 << 20
    arm = bytearray(0x300)
    arm[0x38:0x3C] = b"ARM\x64"
    struct.pack_into("<Q", arm, 16, 30 << 20)
    (tmp_path / "Image").write_bytes(arm)
    assert checks.kernel_memory(tmp_path / "Image") == 30 << 20
    (tmp_path / "blob").write_bytes(bytes(1000))
    assert checks.kernel_memory(tmp_path / "blob") == 4000


def test_estimate_arithmetic() -> None:
    M = 1 << 20
    est = checks.estimate(kernel_mem=64 * M, initrd_compressed=10 * M, initrd_unpacked=30 * M,
                          runtime_peak=16 * M, devices=16)
    assert est.unpack_peak == (64 + 12 + 10 + 30) * M
    assert est.userspace_peak == (64 + 3 + 30 + 16 + 16 + 1) * M
    assert est.required == int(130 * M * 1.1)
    assert est.recommended_crashkernel() == "160M"
    assert checks.check_memory(est, 160 * M) is None
    assert "is safer" in (checks.check_memory(est, 140 * M) or "")
    with pytest.raises(EnvironmentProblem, match="needs about 143 MiB but crashkernel "
                                                 "reserves 128 MiB"):
        checks.check_memory(est, 128 * M)
    # --no-capture: restore has exited before udevd starts, so only the larger one counts
    alone = checks.estimate(kernel_mem=64 * M, initrd_compressed=10 * M,
                            initrd_unpacked=30 * M, runtime_peak=8 * M, devices=16,
                            capture=False)
    assert alone.userspace_peak == (64 + 3 + 30 + 16) * M
    bigger = checks.estimate(kernel_mem=64 * M, initrd_compressed=10 * M,
                             initrd_unpacked=30 * M, runtime_peak=20 * M, devices=16,
                             capture=False)
    assert bigger.userspace_peak == (64 + 3 + 30 + 20 + 1) * M


# -- kexec failures ---------------------------------------------------------------------------------

def fail(stderr: str, rc: int = 255) -> Result:
    return Result(("kexec", "-p", "k"), rc, "", stderr)


def test_explanations_name_the_cause() -> None:
    e = explain(fail("kexec_load failed: Operation not permitted\n"), [
        "Lockdown: kexec: kexec of unsigned images is restricted; see man kernel_lockdown.7"],
        lockdown="integrity", syscall_flag=None)
    assert str(e).startswith("the kernel refused the capture kernel: kexec of unsigned images "
                             "is restricted (lockdown: integrity)")
    assert e.hint and e.hint.startswith("kexec_load is always refused under lockdown, so use "
                                        "--syscall file; then the kernel image must be signed")
    e = explain(fail("kexec_file_load failed: Key was rejected by service\n"), [],
                lockdown="none", syscall_flag="-s")
    assert str(e).startswith("the kernel could not verify the capture kernel's signature")
    e = explain(fail("Could not find a free area of memory of 0x4000000 bytes...\n"), [],
                lockdown=None, syscall_flag=None, recommended_crashkernel="192M")
    assert e.hint == "boot with crashkernel=192M, or use a smaller capture initrd"
    e = explain(fail("something new\n", rc=1), [], lockdown=None, syscall_flag=None)
    assert str(e) == "kexec failed [kexec exited 1: something new]"
    assert e.exit_code == 4


def test_runner_dry_run_echoes_and_runs_nothing() -> None:
    lines: list[str] = []
    r = Runner(dry_run=True, echo=lines.append)
    res = r.run(["/nonexistent/kexec", "--append=a b"])
    assert (res.ok, res.dry_run, lines) == (True, True, ["/nonexistent/kexec '--append=a b'"])
    with pytest.raises(EnvironmentProblem, match=r"kexec not found on PATH \(/nonexistent\)"):
        Runner(path="/nonexistent").which("kexec")


def test_sysfs_from_record_round_trips_the_inventory(tmp_path: Path) -> None:
    from handoff.kexec.state import inventory
    from handoff.record import parse

    F.build_tree(tmp_path / "sys")
    res = save(None, SysfsTree(tmp_path / "sys"))
    imports.sysfs_from_record(parse(res.record).payload, tmp_path / "copy")
    assert inventory(tmp_path / "copy") == inventory(tmp_path / "sys")
