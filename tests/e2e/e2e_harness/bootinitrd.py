"""Real Debian 12 initramfs images for the first kernel, built the way a user would: the
early collector's boot hooks (contrib/initramfs-tools, contrib/dracut) installed by the
commands in contrib/README.md into a Debian chroot, then `update-initramfs -u` or
`dracut -f --kver KVER` from the chroot's own packages.

The host never gets initramfs-tools or dracut (they conflict with each other, and the host
stays clean): each generator lives in its own `debootstrap --variant=minbase bookworm` chroot
under the cache. Every command that touches a chroot runs inside `unshare -m`, so no mount
outlives it: debootstrap (which mounts /proc and /sys in its target while packages configure)
and the builds, which get /proc only (no /sys, no /dev bind: they must not look at the host's
devices).

Cached in CACHE_DIR/bootinitrd/:
- `chroot-<kind>-<key>/`: the debootstrapped tree; key = the package list and the host apt's
  candidate versions of those packages;
- `<kind>-<key>.img` (+ `.list`, `.json`, `.log`): the initrd; key = the chroot key, the guest
  kernel package, contrib/README.md, contrib/<kind>/, csrc/collector/ and this file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import debs
from .config import CACHE_DIR, REPO_ROOT

BOOT_DIR = CACHE_DIR / "bootinitrd"
SUITE = "bookworm"
MIRROR = os.environ.get("HANDOFF_E2E_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Bump when the chroot or the build recipe changes in a way the keys do not see.
RECIPE = "1"
COLLECTOR_DIR = REPO_ROOT / "csrc" / "collector"
README = REPO_ROOT / "contrib" / "README.md"

# What `apt-get install <generator>` gives a Debian 12 user, without the recommends that only
# add storage stacks (cryptsetup, lvm2, mdadm, ...). initramfs-tools recommends busybox and
# zstd (its default compressor); dracut is used with systemd in the initrd (as on Fedora, RHEL
# and SUSE), systemd-sysv gives dracut's shutdown module its poweroff/reboot/halt, and pigz is
# dracut's recommended parallel gzip.
KINDS: dict[str, tuple[str, ...]] = {
    "initramfs-tools": ("initramfs-tools", "busybox", "zstd"),
    "dracut": ("dracut", "systemd", "systemd-sysv", "pigz"),
}
# The README section (its "## " heading starts with this) that installs each kind's hooks.
SECTIONS = {"initramfs-tools": "initramfs-tools", "dracut": "dracut"}
# The kernel command line that disables each hook for one boot (contrib/README.md).
DISABLE_ARG = {"initramfs-tools": "handoff.early=0", "dracut": "rd.handoff.early=0"}
# Versions recorded from each chroot (dpkg-query) for the reports.
REPORTED = (
    "initramfs-tools",
    "initramfs-tools-core",
    "dracut",
    "dracut-core",
    "udev",
    "systemd",
    "busybox",
    "klibc-utils",
    "kmod",
    "zstd",
    "pigz",
)


class InitrdError(RuntimeError):
    """A chroot or an initrd could not be built."""


@dataclass(frozen=True)
class BootInitrd:
    """A built initrd and what it was built from."""

    kind: str
    image: Path
    listing: Path  # lsinitramfs / lsinitrd output
    info: dict[str, Any]  # versions, commands, build seconds (also in <image>.json)

    def contents(self) -> str:
        return self.listing.read_text(errors="replace")


def _log_tail(text: str, n: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _run(argv: list[str], log: Path, what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    out = proc.stdout + proc.stderr
    with log.open("a") as f:
        f.write(f"$ {shlex.join(argv)}\n{out}\n[exit {proc.returncode}]\n")
    if proc.returncode != 0:
        raise InitrdError(f"{what} failed (exit {proc.returncode}); log {log}:\n{_log_tail(out)}")
    return out


def _in_chroot(root: Path, script: str, log: Path, what: str) -> str:
    """Run `script` (sh -e) as root inside `root`, in a private mount namespace with /proc."""
    outer = (
        'set -e; mount -t proc proc "$0/proc"; exec chroot "$0" /usr/bin/env -i '
        'PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 /bin/sh -e -c "$1"'
    )
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", outer, str(root), script]
    return _run(argv, log, what)


def _tree_hash(h: hashlib._Hash, *paths: Path) -> None:
    for base in paths:
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for p in files:
            if "__pycache__" in p.parts or p.name == "handoff-early-collect":
                continue
            st = p.stat()
            h.update(f"{p.relative_to(REPO_ROOT)}\0{st.st_mode & 0o111}\0".encode())
            h.update(p.read_bytes() + b"\0")


def _chroot_key(kind: str) -> str:
    pkgs = KINDS[kind]
    resolved = debs.resolve(list(pkgs))
    h = hashlib.sha256(f"{RECIPE}\0{SUITE}\0{MIRROR}\0{kind}\0".encode())
    for name in sorted(resolved):
        h.update(resolved[name].filename.encode() + b"\0")
    return h.hexdigest()[:16]


def _build_chroot(kind: str, key: str) -> Path:
    out = BOOT_DIR / f"chroot-{kind}-{key}"
    if (out / "etc/debian_version").is_file():
        return out
    BOOT_DIR.mkdir(parents=True, exist_ok=True)
    for old in BOOT_DIR.glob(f"chroot-{kind}-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log = out.with_name(out.name + ".log")
    log.unlink(missing_ok=True)
    argv = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(KINDS[kind])}",
        SUITE,
        str(tmp),
        MIRROR,
    ]
    try:
        _run(argv, log, f"debootstrap of the {kind} chroot")
    except InitrdError as e:
        inner = tmp / "debootstrap/debootstrap.log"
        if inner.is_file():
            e.add_note(f"{inner}:\n{_log_tail(inner.read_text(errors='replace'))}")
        raise
    tmp.rename(out)
    return out


def readme_commands(section: str) -> list[str]:
    """The shell commands of contrib/README.md's section whose heading starts with `section`
    (its 4-space indented blocks, backslash continuations joined), plus the collector's
    build-and-install command from the part before the first section."""
    text = README.read_text()
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    preamble = parts[0]
    body = next((p for p in parts[1:] if p.startswith(section)), None)
    if body is None:
        raise InitrdError(f"{README} has no '## {section}' section")

    def commands(chunk: str) -> list[str]:
        out: list[str] = []
        cur = ""
        for line in chunk.splitlines():
            if not line.startswith("    "):
                continue
            cur += line.strip()
            if cur.endswith("\\"):
                cur = cur[:-1] + " "
                continue
            cmd = re.sub(r"\s+#.*$", "", cur).strip()  # a trailing comment
            if cmd:
                out.append(cmd)
            cur = ""
        return out

    return commands(preamble) + commands(body)


def _collector(log: Path) -> Path:
    """handoff-early-collect built by csrc/collector's Makefile (static when possible)."""
    h = hashlib.sha256()
    _tree_hash(h, COLLECTOR_DIR)
    out = BOOT_DIR / f"collector-{h.hexdigest()[:16]}" / "handoff-early-collect"
    if out.is_file():
        return out
    for old in BOOT_DIR.glob("collector-*"):
        shutil.rmtree(old, ignore_errors=True)
    out.parent.mkdir(parents=True)
    log.unlink(missing_ok=True)
    _run(["make", "-s", "-C", str(COLLECTOR_DIR), f"OUT={out}"], log, "make -C csrc/collector")
    return out


def _initrd_key(kind: str, chroot_key: str, kernel_deb: str) -> str:
    h = hashlib.sha256(f"{RECIPE}\0{chroot_key}\0{kernel_deb}\0".encode())
    _tree_hash(h, README, REPO_ROOT / "contrib" / kind, COLLECTOR_DIR, Path(__file__).resolve())
    return h.hexdigest()[:16]


def _install_kernel(work: Path, kernel_root: Path, release: str) -> None:
    """What installing linux-image-<release> leaves behind: /lib/modules/<release> (hard
    links into the unpacked package; depmod below writes new files beside them) and /boot."""
    mods = work / "usr/lib/modules"
    mods.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(kernel_root / "lib/modules" / release), str(mods)], check=True)
    for name in (f"vmlinuz-{release}", f"config-{release}", f"System.map-{release}"):
        src = kernel_root / "boot" / name
        if src.exists():
            shutil.copy2(src, work / "boot" / name)


def _cached(kind: str, key: str) -> BootInitrd | None:
    image = BOOT_DIR / f"{kind}-{key}.img"
    listing, meta = image.with_suffix(".list"), image.with_suffix(".json")
    if image.is_file() and listing.is_file() and meta.is_file():
        return BootInitrd(kind, image, listing, json.loads(meta.read_text()))
    return None


def _build_initrd(
    kind: str,
    chroot: Path,
    key: str,
    kernel_root: Path,
    release: str,
    kernel_deb: str,
    collector: Path,
) -> BootInitrd:
    image = BOOT_DIR / f"{kind}-{key}.img"
    listing = image.with_suffix(".list")
    meta = image.with_suffix(".json")
    for old in BOOT_DIR.glob(f"{kind}-*"):
        if old.is_file():
            old.unlink()
    log = image.with_suffix(".log")
    t0 = time.monotonic()
    work = BOOT_DIR / f"work-{kind}"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["cp", "-a", str(chroot), str(work)], check=True)
    _install_kernel(work, kernel_root, release)
    # The user's checkout of the project, where the README's commands run.
    src = work / "src"
    shutil.copytree(REPO_ROOT / "contrib", src / "contrib", symlinks=True)
    boot_initrd = f"/boot/initrd.img-{release}"
    # The README's commands: the collector's `make ... install` runs on the host (the chroot
    # has no compiler) into the chroot; the rest run inside it from /src.
    steps = readme_commands(SECTIONS[kind])
    inside: list[str] = [f"depmod -a {release}"]
    if kind == "initramfs-tools":
        # linux-image's postinst would have made an initrd already; `update-initramfs -u`
        # regenerates the newest existing one, so a stand-in is enough for it to pick this
        # kernel (the host's own `uname -r` means nothing in the chroot).
        inside.append(f": > {boot_initrd}")
    ran: list[str] = []
    for cmd in steps:
        if cmd.startswith("make ") and "csrc/collector" in cmd:
            argv = [*shlex.split(cmd), f"DESTDIR={work}", f"OUT={collector}"]
            argv[argv.index("-C") + 1] = str(COLLECTOR_DIR)
            _run(argv, log, f"{cmd} (on the host, DESTDIR={work})")
            ran.append(f"[host] {shlex.join(argv)}")
            continue
        if re.match(r"^dracut\b", cmd):
            cmd += f" --kver {release}"  # the chroot's `uname -r` is the host's kernel
        inside.append(cmd)
    script = "cd /src\n" + "\n".join(inside) + "\n"
    _in_chroot(work, script, log, f"the {kind} steps of contrib/README.md in the chroot")
    ran += [f"[chroot] {c}" for c in inside]
    built = work / boot_initrd.lstrip("/")
    if not built.is_file() or built.stat().st_size < 1 << 20:
        raise InitrdError(
            f"{kind}: {boot_initrd} was not built (log {log}):\n"
            f"{_log_tail(log.read_text(errors='replace'))}"
        )
    lister = "lsinitramfs -l" if kind == "initramfs-tools" else "lsinitrd"
    contents = _in_chroot(work, f"{lister} {boot_initrd}", log, f"{lister} of the initrd")
    versions = _in_chroot(
        work,
        "dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' "
        + " ".join(REPORTED)
        + " 2>/dev/null || true",
        log,
        "dpkg-query",
    )
    info: dict[str, Any] = {
        "kind": kind,
        "kernel": release,
        "kernel_package": kernel_deb,
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": {
            line.split()[0]: line.split()[1]
            for line in versions.splitlines()
            if len(line.split()) >= 3 and line.split()[2].startswith("ii")
        },
        "commands": ran,
        "build_s": round(time.monotonic() - t0, 1),
        "size": built.stat().st_size,
    }
    listing.write_text(contents)
    meta.write_text(json.dumps(info, indent=1) + "\n")
    tmp = image.with_name(image.name + ".tmp")
    shutil.move(built, tmp)
    tmp.rename(image)
    shutil.rmtree(work)
    return BootInitrd(kind, image, listing, info)


def build(
    kinds: list[str],
    kernel_root: Path,
    release: str,
    kernel_deb: str,
    also: tuple[str, ...] | list[str] = (),
) -> dict[str, BootInitrd]:
    """The initrd of each kind in `kinds` (cached). Missing ones are built in parallel, and
    when something must be built, the missing ones of `also` are built alongside (a cold
    cache then costs the time of one); a failure among those is reported only when they are
    asked for themselves."""
    extra = [k for k in also if k not in kinds]
    for kind in [*kinds, *extra]:
        if kind not in KINDS:
            raise InitrdError(f"unknown initrd kind {kind!r}; known: {', '.join(KINDS)}")
    BOOT_DIR.mkdir(parents=True, exist_ok=True)

    keys = {kind: _chroot_key(kind) for kind in kinds}
    found = {kind: _cached(kind, _initrd_key(kind, keys[kind], kernel_deb)) for kind in kinds}
    if all(found.values()):
        return {kind: b for kind, b in found.items() if b is not None}
    for kind in extra:
        keys[kind] = _chroot_key(kind)
        found[kind] = _cached(kind, _initrd_key(kind, keys[kind], kernel_deb))
    todo = [kind for kind in [*kinds, *extra] if found[kind] is None]
    collector = _collector(BOOT_DIR / "collector.log")

    def one(kind: str) -> BootInitrd:
        key = _initrd_key(kind, keys[kind], kernel_deb)
        chroot = _build_chroot(kind, keys[kind])
        return _build_initrd(kind, chroot, key, kernel_root, release, kernel_deb, collector)

    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        futures = {kind: pool.submit(one, kind) for kind in todo}
    for kind in extra:
        if kind in futures:
            futures[kind].exception()  # built for later, or retried (and reported) then
    return {kind: found[kind] or futures[kind].result() for kind in kinds}
