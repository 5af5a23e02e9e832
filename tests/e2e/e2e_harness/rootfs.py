"""Assemble the guest trees from unpacked packages: the first kernel's root and its initramfs,
and the capture initrd."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import debs, jsonfile
from .config import (
    CACHE_DIR,
    DEFAULT_KERNEL,
    DRIVER_MODULES,
    GUEST_PACKAGES,
    GUEST_SCRIPTS,
    KERNEL_LINES,
    LIBRARY_SEED,
    ROOT_DISK_MODULES,
    SONAME_PACKAGES,
)
from .cpio import write_initrd
from .elfinfo import is_elf, needed
from .kmods import ModuleTree
from .pyinstall import python311
from .vmlinux import extract

# Bump when the layout of the cached base tree changes, so old caches are not reused.
BASE_LAYOUT = "4"
_SKIP_DIRS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "usr/share/bug",
    "usr/share/doc-base",
)
_MERGED = ("bin", "sbin", "lib", "lib64")


class BuildError(RuntimeError):
    """A guest tree or image could not be built."""


@dataclass
class Packages:
    """Every unpacked package the guest uses, and the kernel among them."""

    by_name: dict[str, debs.Deb]
    kernel: debs.Deb
    release: str
    line: str = DEFAULT_KERNEL  # the kernel line (config.KERNEL_LINES), e.g. "6.12"

    @property
    def key(self) -> str:
        """Names what the cached trees are built from."""
        names = sorted(d.filename for d in self.by_name.values())
        parts = [BASE_LAYOUT, *names, *ROOT_DISK_MODULES, *DRIVER_MODULES]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    @cached_property
    def modules(self) -> ModuleTree:
        # Compressed modules (6.12: .ko.xz) are decompressed once, per kernel package.
        plain = CACHE_DIR / "kmods" / f"{self.line}-{self.kernel.filename.removesuffix('.deb')}"
        if not plain.is_dir():
            _clear_line(plain.parent, self.line)
        return ModuleTree.load(self.kernel.root / "lib/modules" / self.release, plain)

    @property
    def bzimage(self) -> Path:
        return self.kernel.root / "boot" / f"vmlinuz-{self.release}"


def _elf_files(root: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            if not p.is_symlink() and p.is_file() and is_elf(p):
                out.append(p)
    return out


def _provided_sonames(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*.so*")}


def _library_closure(resolved: dict[str, debs.Deb]) -> dict[str, debs.Deb]:
    """Add the packages that provide every DT_NEEDED soname until nothing is missing."""
    while True:
        provided: set[str] = set()
        wanted: dict[str, str] = {}
        for deb in resolved.values():
            if deb.name.startswith("linux-image"):
                continue
            provided |= _provided_sonames(deb.root)
            for elf in _elf_files(deb.root):
                for so in needed(elf):
                    wanted.setdefault(so, str(elf.relative_to(deb.root)))
        missing = sorted(set(wanted) - provided)
        if not missing:
            return resolved
        names = set()
        for so in missing:
            pkg = SONAME_PACKAGES.get(so) or debs.dpkg_owner(so)
            if pkg is None:
                raise BuildError(
                    f"no package known for {so} (needed by {wanted[so]}); "
                    "add it to SONAME_PACKAGES in tests/e2e/e2e_harness/config.py"
                )
            if pkg in resolved:
                raise BuildError(f"{pkg} was expected to provide {so} but does not")
            names.add(pkg)
        new = debs.resolve(sorted(names))
        debs.fetch(list(new.values()))
        resolved.update(new)


def prepare_packages(kernel: str = DEFAULT_KERNEL) -> Packages:
    """Resolve today's candidate versions, download what is new, unpack, close over libs.
    `kernel` is a kernel line of config.KERNEL_LINES ("6.1", "6.12")."""
    if kernel not in KERNEL_LINES:
        raise BuildError(f"unknown kernel line {kernel!r}; known: {', '.join(KERNEL_LINES)}")
    meta, unsigned = KERNEL_LINES[kernel]
    kernel_name = debs.kernel_package(meta, unsigned)
    top = [*GUEST_PACKAGES, kernel_name]
    # The library packages found last time are resolved in the same apt call (each call
    # costs ~0.8 s); the closure is recomputed only when some package version is new.
    closure_file = CACHE_DIR / "closure.json"
    libs: list[str] = (
        json.loads(closure_file.read_text()) if closure_file.exists() else list(LIBRARY_SEED)
    )
    resolved = debs.resolve(top + [n for n in libs if n not in top])
    new = [d for d in resolved.values() if not d.root.is_dir()]
    debs.fetch(list(resolved.values()))
    if new or not closure_file.exists():
        resolved = _library_closure(resolved)
        jsonfile.replace(closure_file, sorted(set(resolved) - set(top)))
        debs.prune(list(resolved.values()), kernel)
    deb = resolved[kernel_name]
    releases = [p.name for p in (deb.root / "lib/modules").iterdir()]
    if len(releases) != 1:
        raise BuildError(f"expected one kernel release in {deb.root}, found {releases}")
    return Packages(resolved, deb, releases[0], kernel)


def check_libraries(tree: Path, under: str) -> None:
    """Refuse a guest tree where an ELF file below `under` needs a library it lacks."""
    provided = _provided_sonames(tree / "usr/lib") | _provided_sonames(tree / under)
    for elf in _elf_files(tree / under):
        lacking = sorted(set(needed(elf)) - provided)
        if lacking:
            raise BuildError(
                f"/{elf.relative_to(tree)} needs {', '.join(lacking)}, which the "
                "guest lacks; add the package to GUEST_PACKAGES in "
                "tests/e2e/e2e_harness/config.py"
            )


def vmlinux_for(pkgs: Packages) -> Path:
    """The uncompressed kernel for QEMU's -kernel, or the bzImage if extraction fails."""
    out = CACHE_DIR / "kernel" / f"vmlinux-{pkgs.kernel.filename.removesuffix('.deb')}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return extract(pkgs.bzimage, out) or pkgs.bzimage


def _merged_usr(rel: Path) -> Path:
    return Path("usr", *rel.parts) if rel.parts and rel.parts[0] in _MERGED else rel


def _copy_package(src: Path, dest: Path) -> None:
    """Copy an unpacked package into a merged-/usr tree, leaving out documentation."""
    for dirpath, dirnames, files in os.walk(src):
        rel_dir = Path(dirpath).relative_to(src)
        if any(str(rel_dir).startswith(s) for s in _SKIP_DIRS):
            dirnames[:] = []
            continue
        target_dir = dest / _merged_usr(rel_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            s, t = Path(dirpath, name), target_dir / name
            if t.is_symlink() or t.exists():
                t.unlink()
            if s.is_symlink():
                os.symlink(os.readlink(s), t)
            else:
                shutil.copy2(s, t)


def _busybox_links(busybox: Path, dest: Path, bindir: str, merged: bool) -> None:
    """Symlink every applet to busybox unless a real program already has that path."""
    proc = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    for line in proc.stdout.split():
        rel = Path(line)
        rel = _merged_usr(rel) if merged else Path(bindir, rel.name)
        t = dest / rel
        if t.exists() or t.is_symlink():
            continue
        t.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f"/{bindir}/busybox" if not merged else "/usr/bin/busybox", t)


def _install_modules(pkgs: Packages, dest: Path, names: tuple[str, ...]) -> list[str]:
    """Copy `names` and their dependencies; write modules.dep; return insmod order."""
    tree = pkgs.modules
    order = tree.load_order(names)
    mdir = dest / "lib/modules" / pkgs.release
    for name in order:
        t = mdir / tree.paths[name]
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree.file(name), t)
    (mdir / "modules.dep").write_text(tree.modules_dep(order))
    return [tree.paths[n] for n in order]


def _clear_line(directory: Path, line: str, prefix: str = "") -> None:
    """Delete what `directory` holds for kernel line `line` only (names start with
    prefix + "<line>-"; "6.1-" is no prefix of "6.12-"), so the lines' caches coexist."""
    if not directory.is_dir():
        return
    for old in directory.iterdir():
        if not old.name.startswith(f"{prefix}{line}-"):
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def write_file(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # never write through a hard link into the cache
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    path.chmod(mode)


def base_tree(pkgs: Packages) -> Path:
    """The first kernel's root filesystem, without anything scenario-specific (cached)."""
    out = CACHE_DIR / "base" / f"{pkgs.line}-{pkgs.key}"
    if out.is_dir():
        return out
    _clear_line(out.parent, pkgs.line)  # this line's trees built from older inputs
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for top in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        (tmp / top).mkdir(parents=True)
    for link in _MERGED:
        os.symlink(f"usr/{link}", tmp / link)
    for _name, deb in sorted(pkgs.by_name.items()):
        if deb is not pkgs.kernel:
            _copy_package(deb.root, tmp)
    _busybox_links(tmp / "usr/bin/busybox", tmp, "usr/bin", merged=True)
    os.symlink("python3.11", tmp / "usr/bin/python3")
    _compile_stdlib(tmp / "usr/lib/python3.11")
    boot = tmp / "boot"
    boot.mkdir()
    shutil.copy2(pkgs.bzimage, boot / pkgs.bzimage.name)
    os.symlink(pkgs.bzimage.name, boot / "vmlinuz")
    shutil.copy2(pkgs.kernel.root / "boot" / f"config-{pkgs.release}", boot)
    mods = _install_modules(pkgs, tmp / "usr", ROOT_DISK_MODULES + DRIVER_MODULES)
    tree = pkgs.modules
    drivers = [tree.paths[n] for n in tree.load_order(DRIVER_MODULES)]
    write_file(tmp / "etc/e2e/modules-drivers", "\n".join(drivers) + "\n")
    write_file(tmp / "etc/e2e/modules-all", "\n".join(mods) + "\n")
    for d in ("proc", "sys", "dev", "tmp", "run", "results", "root", "var/tmp", "mnt"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    write_file(tmp / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    write_file(tmp / "etc/group", "root:x:0:\n")
    write_file(tmp / "etc/hostname", "handoff-e2e\n")
    tmp.rename(out)
    return out


def _compile_stdlib(libdir: Path) -> None:
    """Byte-compile the stdlib now: Debian generates .pyc files at install time, which
    dpkg -x skips, and compiling on every guest boot costs seconds under TCG. 3.11.x share
    one bytecode format, so the host's 3.11 compiles for the guest's."""
    argv = [python311(), "-m", "compileall", "-q", "-j", "0"]
    argv += ["--invalidation-mode", "unchecked-hash"]  # never re-validated against sources
    argv += ["-s", str(libdir.parent.parent.parent), "-p", "/"]  # record guest paths
    argv += ["-x", r"/(test|lib2to3/tests|idlelib|tkinter|turtledemo)/", str(libdir)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):  # 1: some file did not compile (e.g. bad_coding tests)
        raise BuildError(f"compileall {libdir} failed:\n{proc.stdout}{proc.stderr}")


def _busybox(pkgs: Packages) -> Path:
    return pkgs.by_name["busybox-static"].root / "bin/busybox"


def _small_tree(pkgs: Packages, dest: Path, init: str, modules: tuple[str, ...]) -> None:
    """A busybox-only tree with an /init, the shared shell library and some modules."""
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(_busybox(pkgs), dest / "bin/busybox")
    _busybox_links(dest / "bin/busybox", dest, "bin", merged=False)
    os.symlink("bin", dest / "sbin")
    for d in ("proc", "sys", "dev", "run", "tmp", "results", "sysroot"):
        (dest / d).mkdir()
    write_file(dest / "init", (GUEST_SCRIPTS / init).read_text(), 0o755)
    write_file(dest / "etc/e2e/lib.sh", (GUEST_SCRIPTS / "lib.sh").read_text())
    order = _install_modules(pkgs, dest, modules)
    write_file(dest / "etc/e2e/modules-all", "\n".join(order) + "\n")


def first_initramfs(pkgs: Packages) -> Path:
    """The first kernel's initramfs: just enough to mount the root disk (cached)."""
    script = (GUEST_SCRIPTS / "first-initramfs-init.sh").read_bytes()
    lib = (GUEST_SCRIPTS / "lib.sh").read_bytes()
    key = hashlib.sha256(pkgs.key.encode() + script + lib).hexdigest()[:16]
    out = CACHE_DIR / "initrd" / f"first-{pkgs.line}-{key}.img"
    if out.exists():
        return out
    _clear_line(out.parent, pkgs.line, "first-")
    stage = out.with_name(out.name + ".d")
    shutil.rmtree(stage, ignore_errors=True)
    _small_tree(pkgs, stage, "first-initramfs-init.sh", ROOT_DISK_MODULES)
    tmp = out.with_name(out.name + ".tmp")
    write_initrd(stage, tmp)
    tmp.rename(out)
    shutil.rmtree(stage)
    return out


def capture_initrd(
    pkgs: Packages,
    hooks: dict[str, str],
    vmcore_mode: str,
    out: Path,
    extra: dict[str, tuple[bytes, int]] | None = None,
) -> int:
    """The capture kernel's initrd with the scenario's dracut-style hooks; returns its size.

    `hooks` maps a path under /lib/dracut/hooks/ (e.g. "pre-udev/50-x.sh") to its text;
    `extra` maps other paths (relative to /) to (content, mode)."""
    stage = out.with_name(out.name + ".d")
    shutil.rmtree(stage, ignore_errors=True)
    _small_tree(pkgs, stage, "capture-init.sh", ROOT_DISK_MODULES + DRIVER_MODULES)
    for d in ("pre-udev", "pre-pivot"):
        (stage / "lib/dracut/hooks" / d).mkdir(parents=True)
    for rel, text in hooks.items():
        hook = stage / "lib/dracut/hooks" / rel
        if hook.parent.parent != stage / "lib/dracut/hooks":
            raise BuildError(f"capture hook {rel!r} must be <hook-dir>/<name>.sh")
        write_file(hook, text, 0o755)
    write_file(stage / "etc/e2e/vmcore-mode", vmcore_mode + "\n")
    for rel, (content, mode) in (extra or {}).items():
        write_file(stage / rel, content, mode)
    size = write_initrd(stage, out)
    shutil.rmtree(stage)
    return size


def make_ext4(tree: Path | None, image: Path, size_mb: int, label: str) -> None:
    """An ext4 image holding `tree` (or empty), built without mounting (mke2fs -d). No
    journal: the disks are scratch, and it spares the guest the journal writes."""
    image.unlink(missing_ok=True)
    argv = [
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext4",
        "-O",
        "^has_journal",
        "-L",
        label,
        "-E",
        "lazy_itable_init=0",
        *(["-d", str(tree)] if tree else []),
        str(image),
        f"{size_mb}M",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed:\n{proc.stderr.strip()}")


def tree_size_mb(tree: Path) -> int:
    total = 0
    for dirpath, _d, files in os.walk(tree):
        for f in files:
            st = os.lstat(Path(dirpath, f))
            if stat.S_ISREG(st.st_mode):
                total += st.st_blocks * 512
    return total // (1 << 20) + 1
