"""A fake machine for `handoff load`, `unload` and `status`: a root with /boot, /proc, /etc,
a fake sysfs tree, and a fake `kexec` on PATH that records its argv.

Nothing here touches the real /sys or runs the real kexec: PATH holds only the fake, and every
command gets --root.
"""

from __future__ import annotations

import io
import lzma
import os
import shlex
import shutil
import struct
import subprocess
import zlib
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from handoff.cli import main
from handoff.kexec.config import Host
from helpers import fakesysfs as F

RELEASE = "6.1.0-test"
BOOT_ID = "0b6f7c3e-1d2a-4c5b-9e8f-123456789abc"
PROC_CMDLINE = ("BOOT_IMAGE=/boot/vmlinuz-6.1.0-test root=UUID=1234 ro quiet crashkernel=256M "
                "console=ttyS0 resume=/dev/sda2")
HANDOFF_PARAMS = f"handoff.generation=1 handoff.boot_id={BOOT_ID}"
INIT_SIZE = 40 << 20
CPIO = shutil.which("cpio")  # looked up before the tests narrow PATH to the fake kexec

FAKE_KEXEC = """\
#!/bin/sh
# Fake kexec for tests: records its argv, then behaves as $FAKE_KEXEC_MODE says.
printf '%s\\n' "$@" > "$FAKE_KEXEC_LOG"
case "$FAKE_KEXEC_MODE" in
eperm)
    echo "kexec_file_load failed: Operation not permitted" >&2
    echo "5,1234,5678,-;Lockdown: kexec: kexec of unsigned images is restricted; see man kernel_lockdown.7" >> "$FAKE_KMSG"
    exit 255 ;;
eperm-plain)
    echo "kexec_load failed: Operation not permitted" >&2
    exit 255 ;;
noflag)
    exit 0 ;;
enomem)
    # like the kernel: the loaded image is freed before the new one fails to fit
    echo 0 > "$FAKE_SYS/kernel/kexec_crash_loaded"
    echo "Could not find a free area of memory of 0x4000000 bytes..." >&2
    exit 255 ;;
esac
value=1
file=kexec_crash_loaded
for a in "$@"; do
    case "$a" in
    -u) value=0 ;;
    -l) file=kexec_loaded ;;
    esac
done
echo $value > "$FAKE_SYS/kernel/$file"
exit 0
"""


def bzimage(init_size: int = INIT_SIZE) -> bytes:
    """A file with an x86 boot setup header (protocol 2.15): what checks.kernel_memory reads."""
    k = bytearray(4096)
    k[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", k, 0x206, 0x020F)
    struct.pack_into("<I", k, 0x260, init_size)
    return bytes(k)


def gz_initrd(tree: Path, out: Path) -> None:
    """A gzip-compressed newc initrd made by the real cpio tool, as mkinitramfs makes it."""
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    assert CPIO, "these tests need the cpio tool (apt install cpio)"
    proc = subprocess.run([CPIO, "-o", "-H", "newc", "--quiet"], cwd=tree,
                          input=("\n".join(names) + "\n").encode(), capture_output=True,
                          check=True)
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    out.write_bytes(co.compress(proc.stdout) + co.flush())


@dataclass
class Machine:
    root: Path
    fakebin: Path
    kexec_log: Path

    @property
    def sys(self) -> Path:
        return self.root / "sys"

    @property
    def state(self) -> Path:
        return self.root / "var/lib/handoff"

    @property
    def kernel(self) -> Path:
        return self.root / f"boot/vmlinuz-{RELEASE}"

    @property
    def initrd(self) -> Path:
        return self.root / f"boot/initrd.img-{RELEASE}"

    @property
    def kexec(self) -> str:
        return str(self.fakebin / "kexec")

    def host(self, **kw: object) -> Host:
        return Host(root=self.root, **kw)  # type: ignore[arg-type]

    def kexec_argv(self) -> list[str]:
        return self.kexec_log.read_text().splitlines()


def make_machine(tmp: Path, *, crash_size: int = 256 << 20, lockdown: str | None = None,
                 merged_usr: bool = False, libraries: dict[str, Path] | None = None) -> Machine:
    root = tmp / "root"
    F.build_tree(root / "sys")
    kern = root / "sys/kernel"
    kern.mkdir(parents=True, exist_ok=True)
    (kern / "kexec_crash_size").write_text(f"{crash_size}\n")
    (kern / "kexec_crash_loaded").write_text("0\n")
    (kern / "kexec_loaded").write_text("0\n")
    if lockdown:
        (kern / "security").mkdir()
        modes = ["none", "integrity", "confidentiality"]
        (kern / "security/lockdown").write_text(
            " ".join(f"[{m}]" if m == lockdown else m for m in modes) + "\n")
    (root / "boot").mkdir()
    (root / f"boot/vmlinuz-{RELEASE}").write_bytes(bzimage())
    src = tmp / "initrd-src"
    (src / "bin").mkdir(parents=True)
    (src / "init").write_text("#!/bin/sh\nexec /bin/sh\n")
    (src / "scripts/init-top").mkdir(parents=True)
    (src / "scripts/init-top/udev").write_text("#!/bin/sh\n")
    (src / "scripts/init-top/ORDER").write_text(
        '/scripts/init-top/udev "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n')
    if merged_usr:  # Debian 12 and Fedora initrds: lib -> usr/lib
        (src / "usr/lib/modules").mkdir(parents=True)
        (src / "usr/lib/modules/modules.dep").write_text("")
        (src / "lib").symlink_to("usr/lib")
    for name, lib in (libraries or {}).items():  # as a distro initrd carries them for udev
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(lib.read_bytes())
        (src / name).chmod(0o755)
    gz_initrd(src, root / f"boot/initrd.img-{RELEASE}")
    proc = root / "proc"
    (proc / "sys/kernel/random").mkdir(parents=True)
    (proc / "cmdline").write_text(PROC_CMDLINE + "\n")
    (proc / "sys/kernel/osrelease").write_text(RELEASE + "\n")
    (proc / "sys/kernel/hostname").write_text("testhost\n")
    (proc / "sys/kernel/random/boot_id").write_text(BOOT_ID + "\n")
    (proc / "sys/kernel/kexec_load_disabled").write_text("0\n")
    (proc / "iomem").write_text("00000000-00000fff : Reserved\n"
                                "27000000-36ffffff : Crash kernel\n")
    (root / "etc").mkdir()
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "dev").mkdir()
    (root / "dev/kmsg").write_text("")
    fakebin = tmp / "fakebin"
    fakebin.mkdir()
    (fakebin / "kexec").write_text(FAKE_KEXEC)
    (fakebin / "kexec").chmod(0o755)
    return Machine(root, fakebin, tmp / "kexec.log")


def shared_runtime_cache(factory: pytest.TempPathFactory) -> Path:
    """One packed runtime for the whole session (packing takes tens of seconds): every test
    module links its machines' cache to this directory of the session's base temp dir."""
    d = factory.getbasetemp() / "runtime-cache"
    d.mkdir(exist_ok=True)
    return d


def use_machine(m: Machine, monkeypatch: pytest.MonkeyPatch, runtime_cache: Path) -> None:
    """Only the fake kexec on PATH; the shared runtime cache linked into the state dir."""
    monkeypatch.setenv("PATH", str(m.fakebin))
    monkeypatch.setenv("FAKE_KEXEC_LOG", str(m.kexec_log))
    monkeypatch.setenv("FAKE_SYS", str(m.sys))
    monkeypatch.setenv("FAKE_KMSG", str(m.root / "dev/kmsg"))
    monkeypatch.delenv("FAKE_KEXEC_MODE", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    m.state.mkdir(parents=True, exist_ok=True)
    link = m.state / "runtime-cache"
    if not link.exists():
        link.symlink_to(runtime_cache)
    assert shutil.which("kexec") == m.kexec  # never the real one


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def dry(m: Machine, *extra: str) -> tuple[int, str, str, Path]:
    work = m.root.parent / "work"
    rc, out, err = cli("load", "--dry-run", "--root", str(m.root), "--work-dir", str(work),
                       *extra)
    return rc, out, err, work


def parts_of(path: Path) -> list[tuple[int, str | None, bytes]]:
    from handoff.kexec.initrd import list_initrd

    data = path.read_bytes()
    listing = list_initrd(path)
    assert listing.complete, listing.problem
    offs = [o for o, _ in listing.archives] + [len(data)]
    out = []
    for (o, method), end in zip(listing.archives, offs[1:]):
        raw = data[o:end]
        if method == "gzip":
            raw = zlib.decompressobj(31).decompress(raw)
        elif method == "xz":
            raw = lzma.LZMADecompressor().decompress(raw)
        else:
            assert method is None
        out.append((o, method, raw))
    return out


def unpack_like_the_kernel(path: Path, dest: Path) -> None:
    """Extract every archive in order with the real cpio tool; -u makes a later member replace
    an earlier one, as init/initramfs.c does."""
    dest.mkdir()
    for _, _, raw in parts_of(path):
        subprocess.run([CPIO, "-idmu", "--quiet"], cwd=dest, input=raw, check=True)


def expected_argv(m: Machine, work: Path, mode: str, flags: list[str], cmdline: str) -> str:
    """The kexec argv `load --dry-run` must print for machine *m*."""
    return shlex.join([m.kexec, mode, *flags, str(m.kernel),
                       f"--initrd={work}/capture-initrd.img", f"--append={cmdline}"])
