"""Packing the capture-side runtime: the import set, an interpreter and its libraries, as cpio.

The modules of :mod:`handoff.kexec.imports`' import set are placed under ``/handoff``: the
pure-Python ones (stdlib as sourceless bytecode, handoff with its source) in one deflated zip
that Python's zipimport serves, the extension modules as files beside it, with the running
interpreter, every shared library the dynamic loader resolves for them, and the loader itself:
the wrapper runs it explicitly, so the capture initrd needs no libc of its own (it reuses the
initrd's own copy of a library when that copy is byte for byte the one handoff would ship).
"""

from __future__ import annotations

import importlib.machinery
import json
import lzma
import os
import py_compile
import re
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handoff.errors import EnvironmentProblem
from handoff.formats import cpio
from handoff.kexec.imports import ImportSet
from handoff.kexec.runner import Runner

PREFIX = "handoff"  # top directory in the cpio (/handoff in the capture kernel)
SITE = f"{PREFIX}/site"  # handoff and third-party packages
LIB = f"{PREFIX}/lib"  # shared libraries and the dynamic loader
CACHE_TAG = sys.implementation.cache_tag
PYVER = f"{sys.version_info[0]}.{sys.version_info[1]}"
# The zip Python puts on sys.path by itself, before the stdlib directory (Modules/getpath.py:
# ``{prefix}/lib/python3X.zip``), so the stdlib in it serves `encodings` at startup.
ZIP_NAME = f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
SITE_ZIP = f"{PREFIX}/site.zip"  # handoff's packages when the initrd's own Python runs them


# -- files ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuntimeFile:
    """One file of the runtime: ``dest`` in the cpio, from ``src`` (or literal ``data``)."""

    dest: str
    src: str | None = None
    data: bytes | None = None
    mode: int = 0o644
    kind: str = "data"  # "py", "pyc", "ext", "lib", "interp", "loader", "data"


def _under(path: str, base: str | None) -> bool:
    if not base:
        return False
    try:
        return os.path.commonpath([os.path.realpath(path), os.path.realpath(base)]) == \
            os.path.realpath(base)
    except ValueError:
        return False


def plan_modules(imports: ImportSet, stdlib_dest: str) -> list[RuntimeFile]:
    """Where each module's file goes: the stdlib below ``stdlib_dest``, packages below SITE."""
    stdlib = imports.paths.get("stdlib")
    platstdlib = imports.paths.get("platstdlib")
    site_dirs = {imports.paths.get("purelib"), imports.paths.get("platlib")}
    out: dict[str, RuntimeFile] = {}
    for name, f in sorted(imports.modules.items()):
        if not f or not os.path.isfile(f):
            continue  # built in, frozen, or a namespace package
        is_ext = f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        in_site = any(_under(f, s) for s in site_dirs if s) or \
            "site-packages" in f.split(os.sep) or "dist-packages" in f.split(os.sep)
        base = os.path.basename(f)
        if not in_site and (_under(f, stdlib) or _under(f, platstdlib)):
            root = stdlib if _under(f, stdlib) else platstdlib
            assert root is not None
            rel = os.path.relpath(os.path.realpath(f), os.path.realpath(root))
            dest = f"{stdlib_dest}/{rel}"
        else:
            parts = name.split(".")
            if base.startswith("__init__."):
                dest = f"{SITE}/{'/'.join(parts)}/{base}"
            else:
                dest = f"{SITE}/{'/'.join(parts[:-1] + [base])}" if len(parts) > 1 \
                    else f"{SITE}/{base}"
        if is_ext:
            out[dest] = RuntimeFile(dest, f, mode=0o755, kind="ext")
        elif f.endswith(".py"):
            out[dest] = RuntimeFile(dest, f, kind="py")
    return list(out.values())


def compile_modules(files: list[RuntimeFile], *, keep_source: Iterable[str] = ("handoff",)
                    ) -> list[RuntimeFile]:
    """Replace .py files by bytecode.

    Stdlib and third-party modules ship as sourceless ``.pyc`` (smaller, nothing to compile in
    the capture kernel). Packages named in ``keep_source`` keep their source for readable
    tracebacks, with an unchecked-hash ``__pycache__`` file so nothing is compiled at startup.
    """
    keep = tuple(f"{SITE}/{k}/" for k in keep_source)
    out: list[RuntimeFile] = []
    with tempfile.TemporaryDirectory(prefix="handoff-pyc-") as tmp:
        for i, rf in enumerate(files):
            if rf.kind != "py":
                out.append(rf)
                continue
            assert rf.src is not None
            cfile = os.path.join(tmp, f"{i}.pyc")
            py_compile.compile(rf.src, cfile=cfile, dfile="/" + rf.dest, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            pyc = Path(cfile).read_bytes()
            stem = rf.dest[:-3]
            if rf.dest.startswith(keep) or rf.dest.endswith("/os.py"):
                # os.py stays: it is the landmark getpath looks for to find the stdlib.
                out.append(rf)
                d, b = os.path.split(stem)
                out.append(RuntimeFile(f"{d}/__pycache__/{b}.{CACHE_TAG}.pyc", src=rf.src,
                                       data=pyc, kind="pyc"))
            else:
                out.append(RuntimeFile(stem + ".pyc", src=rf.src, data=pyc, kind="pyc"))
    return out


ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same files give the same archive
LANDMARK = b"# getpath's stdlib landmark (Modules/getpath.py); the modules are in the zip.\n"


def zip_modules(files: list[RuntimeFile], roots: dict[str, str], *,
                keep_source: Iterable[str] = ("handoff",)) -> tuple[bytes, list[str],
                                                                     list[RuntimeFile]]:
    """Pack the pure-Python modules below ``roots`` (cpio directory → zip prefix) into one zip.

    Returns (zip bytes, its member names, the files left outside). zipimport serves modules
    from a deflated archive, so what the capture kernel holds unpacked is about a third of the
    bytecode files; a module is inflated only when imported. Bytecode uses unchecked hashes
    (nothing to compare or compile at startup); packages named in ``keep_source`` also carry
    their source, for readable tracebacks. Extension modules cannot be imported from a zip:
    they stay files, and so does every module of a top-level package that has one (except
    handoff, whose extension directory the wrapper adds to ``handoff.__path__``).
    """
    ext_pkgs = {f.dest[len(r):].split("/")[0] for f in files if f.kind == "ext"
                for r in roots if f.dest.startswith(r) and "/" in f.dest[len(r):]}
    ext_pkgs -= set(keep_source)
    keep = tuple(f"{k}/" for k in keep_source)
    out: list[RuntimeFile] = []
    members: dict[str, bytes] = {}
    for rf in files:
        root = next((r for r in roots if rf.dest.startswith(r)), None)
        rel = rf.dest[len(root):] if root is not None else ""
        if root is None or rf.kind != "py" or rel.split("/")[0] in ext_pkgs or \
                rel.startswith("lib-dynload/"):
            out.append(rf)
            continue
        assert rf.src is not None
        src = Path(rf.src).read_bytes()
        code = compile(src, "/" + rf.dest, "exec", dont_inherit=True)
        # An unchecked-hash pyc (PEP 552): flags 0b01, then the source hash; zipimport
        # (like the path finder) uses it without looking at the source.
        import importlib.util

        pyc = importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little") + \
            importlib.util.source_hash(src) + __import__("marshal").dumps(code)
        arc = roots[root] + rel
        members[arc[:-3] + ".pyc"] = pyc
        if arc.startswith(keep):
            members[arc] = src
    buf = __import__("io").BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, members[name], compresslevel=9)
    return buf.getvalue(), sorted(members), out


_LIST_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-f]+\)\s*$")
_LIST_LOADER = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def elf_interpreter(path: str) -> str | None:
    """PT_INTERP of an ELF64 little-endian executable (its dynamic loader), None if static."""
    with open(path, "rb") as f:
        eh = f.read(64)
        if len(eh) < 64 or eh[:4] != b"\x7fELF" or eh[4] != 2 or eh[5] != 1:
            return None
        phoff = int.from_bytes(eh[32:40], "little")
        phentsize = int.from_bytes(eh[54:56], "little")
        phnum = int.from_bytes(eh[56:58], "little")
        if phentsize < 56 or phnum > 512:
            return None
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(len(table) // phentsize):
            ph = table[i * phentsize:(i + 1) * phentsize]
            if int.from_bytes(ph[0:4], "little") == 3:  # PT_INTERP
                off = int.from_bytes(ph[8:16], "little")
                size = int.from_bytes(ph[32:40], "little")
                if size > 4096:
                    return None
                f.seek(off)
                return f.read(size).split(b"\0", 1)[0].decode("utf-8", "replace")
    return None


def shared_libraries(elfs: Iterable[str], loader: str, runner: Runner) -> dict[str, str]:
    """Sonames → files for everything the ELF files need, as the dynamic loader resolves them.

    Runs ``LOADER --list FILE`` (what ``ldd`` does, without needing bash), reading nothing
    but the loader's own resolution.
    """
    libs: dict[str, str] = {}
    for elf in elfs:
        res = runner.query([loader, "--list", elf])
        text = res.stdout + res.stderr
        if not res.ok and "not a dynamic" in text:
            continue  # static
        if not res.ok:
            raise EnvironmentProblem(
                f"{loader} --list {elf} failed: {text.strip()}",
                hint="the capture runtime bundles this interpreter and its libraries; check "
                     "that the interpreter runs (or use another Python)")
        for line in res.stdout.splitlines():
            if "not found" in line:
                raise EnvironmentProblem(f"{elf}: a shared library is missing: {line.strip()}",
                                         hint="install it; the capture runtime needs every library")
            m = _LIST_LINE.match(line)
            if m:
                libs.setdefault(m.group(1), m.group(2))
    return libs


def reusable_libraries(listing: Any, wanted: dict[str, str]) -> dict[str, str]:
    """Soname → initrd path of each library in ``wanted`` (soname → host file) that the
    capture initrd already holds byte for byte, in a directory where the soname resolves.

    A distro's kdump initrd (initramfs-tools, dracut) carries the system's own libc and
    loader for udev and its shell: reusing them saves ~2 MiB of the crashkernel reservation,
    and being the same files they are exactly what the interpreter was linked against.
    """
    out: dict[str, str] = {}
    if listing is None or not getattr(listing, "digests", None):
        return out
    import hashlib

    for soname, path in wanted.items():
        real = os.path.realpath(path)
        try:
            with open(real, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue
        found = listing.same_file(digest, os.path.basename(real))
        if found is None:
            continue
        where = found.rsplit("/", 1)[0]
        if soname != os.path.basename(real) and not listing.has(f"{where}/{soname}"):
            continue  # the soname link is missing: the loader would not find it there
        out[soname] = found
    return out


# -- the runtime ----------------------------------------------------------------------------

XZ_DICT = 1 << 20  # the kernel's own initramfs rule (usr/Makefile: xz --lzma2=dict=1MiB)
GZIP_LEVEL = 6  # gzip -6: level 9 took 3.5x as long for a 0.7% smaller runtime (measured)
# The default first. What the kernel spends unpacking the runtime (16.6 MiB of files) in the
# capture kernel, measured under QEMU TCG with Debian's 6.1 kernel (docs/load.md, "Runtime"):
# xz 1.6 s, gzip 0.35 s, none 0.08 s (plus ~0.02 s per MiB that purgatory hashes at the crash).
COMPRESSIONS = ("gzip", "xz", "none")
DEFAULT_COMPRESSION = COMPRESSIONS[0]


def compress(data: bytes, method: str) -> bytes:
    """Compress a cpio archive so the kernel's initramfs unpacker reads it.

    gzip (the default; every distribution kernel has CONFIG_RD_GZIP) unpacks 4-5 times as
    fast as xz in the capture kernel for a 30% larger archive. xz uses CRC32 (the kernel's xz
    decoder does not check SHA-256, and older ones not CRC64), no BCJ filter
    (CONFIG_XZ_DEC_X86 may be off) and a 1 MiB dictionary, which is what the capture kernel
    allocates while unpacking. none appends the archive as it is (4-byte aligned).
    """
    if method == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                             filters=[{"id": lzma.FILTER_LZMA2, "preset": 6,
                                       "dict_size": XZ_DICT}])
    if method == "gzip":
        co = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip, mtime 0
        return co.compress(data) + co.flush()
    if method == "none":
        return data
    raise ValueError(f"unknown compression {method!r} (choose from {', '.join(COMPRESSIONS)})")


@dataclass
class Runtime:
    """The packed runtime: a compressed cpio and what is in it."""

    archive: bytes
    compression: str
    cpio_size: int
    unpacked_size: int
    mode: str  # "bundled" (own interpreter) or "initrd-python"
    python: str  # the interpreter in the capture kernel
    peak_rss: int  # of the dry runs that computed the import set
    manifest: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    # restore's or capture's own peak without file pages (imports.peak_private): what the
    # capture kernel adds to the unpacked runtime while handoff runs
    peak_private: int = 0

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "python": self.python, "compression": self.compression,
                "compressed_size": len(self.archive), "cpio_size": self.cpio_size,
                "unpacked_size": self.unpacked_size, "peak_rss": self.peak_rss,
                "peak_private": self.peak_private,
                "modules": len(self.manifest.get("modules", [])), "cached": self.cached}


WRAPPER = """\
#!/bin/sh
# handoff's capture-side command, generated by `handoff load` (docs/load.md, "Runtime").
# {why}
# -E -S -P: no PYTHON* variables, no site, no script directory on sys.path.
exec {launch} -E -S -P -c '{boot}' "$@"
"""
BOOT = "import sys; sys.path[:0] = {path}; {extend}from handoff.cli import main; sys.exit(main())"


def wrapper(launch: str, why: str, path: Iterable[str] = (f"/{SITE}",),
            handoff_ext: bool = False) -> bytes:
    """The /bin/sh wrapper; ``path`` goes first on sys.path, and ``handoff_ext`` adds handoff's
    extension directory to the package's ``__path__`` (handoff itself comes from the zip)."""
    extend = f'import handoff; handoff.__path__.append("/{SITE}/handoff"); ' if handoff_ext else ""
    boot = BOOT.format(path=json.dumps(list(path)), extend=extend)
    return WRAPPER.format(launch=launch, why=why, boot=boot).encode()


def initrd_python(listing: Any) -> str | None:
    """Path of a ``python3*`` interpreter in the initrd listing (usr/bin or bin), else None."""
    for name in sorted(listing.names()):
        if re.fullmatch(r"(usr/)?bin/python3(\.\d+)?", name):
            return "/" + name
    return None


def build(
    imports: ImportSet,
    runner: Runner,
    *,
    compression: str = DEFAULT_COMPRESSION,
    listing: Any = None,
    python: str | None = None,
) -> Runtime:
    """Pack ``imports`` with an interpreter into a compressed cpio below /handoff.

    When the capture initrd (``listing``) has a Python of this version with every stdlib
    file the import set needs, that interpreter is used and only handoff's packages ship;
    otherwise the running interpreter, its stdlib subset and its libraries are bundled.
    """
    exe = os.path.realpath(python or sys.executable)
    stdlib_dest = f"{PREFIX}/python/lib/python{PYVER}"
    files = plan_modules(imports, stdlib_dest)
    mode, target = "bundled", f"/{PREFIX}/python/bin/{os.path.basename(exe)}"
    reused: dict[str, str] = {}
    reuse = _reusable_python(listing, files, stdlib_dest) if listing is not None else None
    if reuse:
        mode, target = "initrd-python", reuse
        files = [f for f in files if not f.dest.startswith(stdlib_dest + "/")]
    if mode == "bundled":
        # The stdlib and handoff's packages in the zip getpath already puts on sys.path.
        zip_dest = f"{PREFIX}/python/lib/{ZIP_NAME}"
        roots = {stdlib_dest + "/": "", SITE + "/": ""}
    else:
        zip_dest, roots = SITE_ZIP, {SITE + "/": ""}
    zdata, zipped, files = zip_modules(files, roots)
    files = compile_modules(files)
    files.append(RuntimeFile(zip_dest, data=zdata, kind="zip"))
    if mode == "bundled":
        files.append(RuntimeFile(f"{stdlib_dest}/os.py", data=LANDMARK))
    handoff_ext = any(f.kind == "ext" and f.dest.startswith(f"{SITE}/handoff/") for f in files)
    sys_path = [f"/{SITE}"] + ([f"/{SITE_ZIP}"] if mode != "bundled" else [])
    exts = [f.src for f in files if f.kind == "ext" and f.src]
    if mode == "bundled":
        launch, why, reused = _bundle_interpreter(exe, exts, target, listing, runner, files)
    else:
        launch = target
        why = "Uses the capture initrd's own Python; only handoff's packages ship here."
    files.append(RuntimeFile(f"{PREFIX}/bin/handoff", data=wrapper(launch, why, sys_path,
                                                                  handoff_ext), mode=0o755))
    manifest = {
        "mode": mode, "python": target, "version": PYVER, "reused": dict(sorted(reused.items())),
        "modules": sorted(imports.modules), "static_only": imports.static_only,
        "files": sorted(f.dest for f in files), "zip": zip_dest, "zipped": zipped,
        "sources": sorted({f.src for f in files if f.src}),
    }
    files.append(RuntimeFile(f"{PREFIX}/etc/runtime.json",
                             data=(json.dumps(manifest, indent=1) + "\n").encode()))
    raw, unpacked = _pack(files, f"{stdlib_dest}/lib-dynload" if mode == "bundled" else None,
                          runner)
    return Runtime(archive=compress(raw, compression), compression=compression,
                   cpio_size=len(raw), unpacked_size=unpacked, mode=mode, python=target,
                   peak_rss=imports.peak_rss, manifest=manifest,
                   peak_private=imports.peak_private)


def _bundle_interpreter(exe: str, exts: list[str], target: str, listing: Any, runner: Runner,
                        files: list[RuntimeFile]) -> tuple[str, str, dict[str, str]]:
    """Add the running interpreter, its dynamic loader and the libraries it and ``exts``
    need to ``files``, except those the initrd already has (the same files). Returns the
    command that launches it, the wrapper's comment on why, and the reused libraries."""
    loader = elf_interpreter(exe)
    if loader is None:
        raise EnvironmentProblem(f"{exe} is not a dynamically linked ELF executable",
                                 hint="handoff bundles the running interpreter; use a "
                                      "distribution or pyenv Python")
    libs = shared_libraries([exe, *exts], loader, runner)
    loader_name = os.path.basename(loader)
    reused = reusable_libraries(listing, {loader_name: loader, **libs})
    files.append(RuntimeFile(target.lstrip("/"), exe, mode=0o755, kind="interp"))
    if loader_name not in reused:
        files.append(RuntimeFile(f"{LIB}/{loader_name}", loader, mode=0o755, kind="loader"))
    files += [RuntimeFile(f"{LIB}/{so}", path, mode=0o755, kind="lib")
              for so, path in sorted(libs.items()) if so not in reused]
    run_loader = "/" + reused[loader_name] if loader_name in reused else f"/{LIB}/{loader_name}"
    lib_path = [f"/{LIB}"] + sorted({"/" + p.rsplit("/", 1)[0] for so, p in reused.items()
                                     if so != loader_name})
    launch = f"{run_loader} --library-path {':'.join(lib_path)} {target}"
    why = ("The dynamic loader runs explicitly with --library-path: the initrd needs no "
           "libc of its own, and tools handoff starts keep the initrd's libraries."
           + (f"\n# Reused from the initrd (the same files): {', '.join(sorted(reused))}."
              if reused else ""))
    return launch, why, reused


def _pack(files: list[RuntimeFile], dynload: str | None, runner: Runner) -> tuple[bytes, int]:
    """The uncompressed cpio of ``files`` (sorted, with their directories) and the bytes they
    unpack to; ``dynload`` is a directory that must exist even when empty."""
    writer = cpio.Writer()
    unpacked = 0
    dirs: set[str] = set()
    if dynload is not None:  # exec_prefix landmark (Modules/getpath.py): lib-dynload must exist
        _mkdirs(writer, dirs, f"{dynload}/x")
    for f in sorted(files, key=lambda f: f.dest):
        data = f.data if f.data is not None else _contents(f, runner)
        _mkdirs(writer, dirs, f.dest)
        writer.file(f.dest, data, f.mode)
        unpacked += len(data)
    return writer.finish(), unpacked


def _mkdirs(writer: cpio.Writer, done: set[str], dest: str) -> None:
    parts = dest.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in done:
            writer.directory(d)
            done.add(d)


def _contents(f: RuntimeFile, runner: Runner) -> bytes:
    """File bytes; ELF binaries are stripped of symbols first when ``strip`` is available."""
    assert f.src is not None
    if f.kind in ("interp", "lib", "ext", "loader"):
        # strip is optional and works on a copy: also look where binutils lives when PATH
        # was narrowed (tests put only a fake kexec on it).
        strip = shutil.which("strip", path=f"{runner.search_path}:/usr/bin:/bin")
        if strip:
            with tempfile.TemporaryDirectory(prefix="handoff-strip-") as tmp:
                out = os.path.join(tmp, "out")
                if runner.query([strip, "--strip-unneeded", "-o", out, f.src]).ok:
                    data = Path(out).read_bytes()
                    if data[:4] == b"\x7fELF":
                        return data
    return Path(f.src).read_bytes()


def _reusable_python(listing: Any, files: list[RuntimeFile], stdlib_dest: str) -> str | None:
    """The initrd's interpreter if it is this Python version and has every stdlib file."""
    py = initrd_python(listing)
    if py is None:
        return None
    base = f"usr/lib/python{PYVER}"
    if not listing.has(f"{base}/os.py") and not listing.has(f"{base}/os.pyc"):
        return None  # another version, or no stdlib
    for f in files:
        if not f.dest.startswith(stdlib_dest + "/"):
            continue
        rel = f.dest[len(stdlib_dest) + 1:]
        alts = {rel, rel[:-3] + ".pyc"} if rel.endswith(".py") else {rel}
        if not any(listing.has(f"{base}/{a}") for a in alts):
            return None
    for f in files:
        if f.kind == "ext" and not f.dest.startswith(stdlib_dest + "/"):
            return None  # extension modules of our own would need our libraries and loader
    return py


# -- cache --------------------------------------------------------------------------------------

def cache_key(compression: str, listing: Any, python: str | None = None) -> str:
    """Everything the packed runtime depends on that cannot be checked by stat afterwards."""
    import hashlib

    h = hashlib.sha256()
    exe = os.path.realpath(python or sys.executable)
    st = os.stat(exe)
    h.update(f"{exe}\0{st.st_size}\0{st.st_mtime_ns}\0{compression}\0{PYVER}\0".encode())
    pkg = Path(__file__).resolve().parents[1]
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".so") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(pkg)).encode() + b"\0" + p.read_bytes() + b"\0")
    if listing is not None:
        h.update((initrd_python(listing) or "").encode())
        h.update("\0".join(sorted(n for n in listing.names()
                                  if n.startswith(f"usr/lib/python{PYVER}/"))).encode())
        h.update("\0".join(f"{n}={d}" for n, d in sorted(getattr(listing, "digests", {}).items())
                           ).encode())  # libraries the runtime may reuse
    return h.hexdigest()[:32]


def _sources(files_src: Iterable[str]) -> list[list[Any]]:
    out = []
    for s in sorted(set(files_src)):
        st = os.stat(s)
        out.append([s, st.st_size, st.st_mtime_ns])
    return out


def load_cached(cache_dir: Path, key: str) -> Runtime | None:
    d = cache_dir / key
    try:
        meta = json.loads((d / "runtime.json").read_text())
        archive = (d / "runtime.cpio").read_bytes()
    except (OSError, ValueError):
        return None
    for path, size, mtime in meta.get("sources", []):
        try:
            st = os.stat(path)
        except OSError:
            return None
        if st.st_size != size or st.st_mtime_ns != mtime:
            return None
    return Runtime(archive=archive, compression=meta["compression"], cpio_size=meta["cpio_size"],
                   unpacked_size=meta["unpacked_size"], mode=meta["mode"], python=meta["python"],
                   peak_rss=meta["peak_rss"], manifest=meta["manifest"], cached=True,
                   peak_private=meta.get("peak_private", meta["peak_rss"]))


def store_cached(cache_dir: Path, key: str, rt: Runtime) -> None:
    """Keep one cached runtime: the newest."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.iterdir():
        if old.name != key and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    d = cache_dir / key
    d.mkdir(exist_ok=True)
    from handoff import outfile

    outfile.write_file(d / "runtime.cpio", rt.archive, outfile.OWN, mode=0o644)
    meta = {"compression": rt.compression, "cpio_size": rt.cpio_size,
            "unpacked_size": rt.unpacked_size, "mode": rt.mode, "python": rt.python,
            "peak_rss": rt.peak_rss, "peak_private": rt.peak_private, "manifest": rt.manifest,
            "sources": _sources(rt.manifest.get("sources", []))}
    outfile.write_file(d / "runtime.json", json.dumps(meta).encode(), outfile.OWN, mode=0o644)
