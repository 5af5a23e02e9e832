"""The capture side's import set, computed: dry runs of the capture commands plus a static pass.

(1) The commands the capture hooks run execute in a fresh interpreter, on stand-ins made from
the record (a sysfs tree, a /proc whose cmdline names the record, a one-page ELF core), and
report ``sys.modules``; (2) a static pass (modulefinder) adds every import handoff's capture
side code can reach, including imports inside functions the runs did not execute, and the
module-level imports of the stdlib modules those need.
"""

from __future__ import annotations

import json
import modulefinder
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

from handoff.errors import EnvironmentProblem

# Commands the capture kernel runs; their code is scanned in full by the static pass.
CAPTURE_COMMANDS = ("restore", "capture", "inspect", "inject_notes")
# Load-side code: imported by `handoff --help` (module level) but never run in the capture kernel.
LOAD_SIDE = ("handoff.kexec", "handoff.cli.load", "handoff.cli.unload", "handoff.cli.status",
             "handoff.cli.save", "handoff.save", "handoff.cli.diff", "handoff.cli.plugins")
# Always present even when no dry run needed them: the codecs a C/POSIX-locale initramfs
# may select for stdio, and the landmark Python uses to find its stdlib (Modules/getpath.py).
ALWAYS = ("encodings", "encodings.aliases", "encodings.utf_8", "encodings.ascii",
          "encodings.latin_1", "os")

_TRACER = r"""
import sys
spec = __import__("json").loads(sys.argv[1])
sys.path[:0] = spec["path_first"]
sys.path += spec["path_last"]
import contextlib, io, json
from handoff.cli import main
runs = []
for argv in spec["runs"]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException as e:
        rc = repr(e)
    runs.append({"argv": argv, "rc": rc, "stderr": err.getvalue()[-4000:]})
import sysconfig
mods = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items()) if m is not None}
hwm = 0
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
paths = {k: sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
with open(spec["out"], "w") as f:
    json.dump({"modules": mods, "runs": runs, "sys_path": sys.path, "paths": paths,
               "builtin": list(sys.builtin_module_names), "peak_rss": hwm,
               "executable": sys.executable}, f)
"""


# Runs one capture command in a fresh interpreter and reports its memory at exit: VmHWM (the
# peak resident set) and RssFile (file pages mapped then: the interpreter, its libraries and
# extension modules, which in the capture kernel are the runtime's own unpacked rootfs pages,
# not memory added again). Python rarely returns heap to the kernel, so the file pages mapped
# at exit are those mapped at the peak.
_PEAK = r"""
import sys
spec = __import__("json").loads(sys.argv[1])
sys.path[:0] = spec["path_first"]
sys.path += spec["path_last"]
import contextlib, io
from handoff.cli import main
try:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(spec["argv"])
except SystemExit:
    pass
mem = {}
with open("/proc/self/status") as f:
    for line in f:
        k, _, v = line.partition(":")
        if k in ("VmHWM", "RssFile", "RssAnon"):
            mem[k] = int(v.split()[0]) * 1024
print(__import__("json").dumps(mem))
"""


@dataclass
class ImportSet:
    """Modules the capture side needs, by name, with their files (None: built in or frozen)."""

    modules: dict[str, str | None]
    traced: list[str]
    static_only: list[str]
    runs: list[dict[str, Any]]
    sys_path: list[str]
    paths: dict[str, str]
    peak_rss: int  # VmHWM of the one process that ran every dry run (host file pages too)
    peak_private: int = 0  # the largest capture command's own peak minus its file pages


def _search_path() -> tuple[str, list[str]]:
    here = str(Path(__file__).resolve().parents[2])  # the directory holding the handoff package
    # Everything this process can import from, after handoff's own tree: site-packages,
    # PYTHONPATH entries, .pth additions (the child runs with -I -S and sees none of them).
    return here, [p for p in sys.path if p and os.path.isdir(p) and p != here]


def peak_private(argv: Sequence[str], *, python: str | None = None) -> int:
    """Peak memory of ``handoff ARGV`` run alone in a fresh interpreter, without the file pages
    it maps (VmHWM - RssFile at exit, bytes); 0 when it cannot be measured."""
    here, search = _search_path()
    spec = {"argv": list(argv), "path_first": [here], "path_last": search}
    try:
        proc = subprocess.run([python or sys.executable, "-I", "-S", "-c", _PEAK,
                               json.dumps(spec)], capture_output=True, text=True, timeout=300,
                              check=False)
        mem = json.loads(proc.stdout.strip().splitlines()[-1])
        return max(0, int(mem["VmHWM"]) - int(mem["RssFile"]))
    except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError, TypeError):
        return 0


def trace_imports(runs: Sequence[Sequence[str]], *, python: str | None = None,
                  extra_path: Sequence[str] = ()) -> ImportSet:
    """Run ``handoff`` with each argv in a fresh interpreter and collect what it imported."""
    python = python or sys.executable
    here, search = _search_path()
    with tempfile.TemporaryDirectory(prefix="handoff-trace-") as tmp:
        out = Path(tmp) / "trace.json"
        spec = {"runs": [list(r) for r in runs], "out": str(out),
                "path_first": [here, *extra_path], "path_last": search}
        # -I -S: no site, no environment, no cwd: the same import rules as the packed runtime.
        try:
            proc = subprocess.run([python, "-I", "-S", "-c", _TRACER, json.dumps(spec)],
                                  capture_output=True, text=True, timeout=300, cwd=tmp,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(
                "computing the runtime's import set took more than 300 s",
                hint="a capture command hung in its dry run; run `handoff restore --dry-run "
                     "--record FILE` by hand to see where") from None
        if proc.returncode != 0 or not out.exists():
            raise EnvironmentProblem(
                f"computing the runtime's import set failed ({python} exited {proc.returncode})",
                hint=(proc.stderr.strip().splitlines() or ["no output"])[-1],
            )
        doc = json.loads(out.read_text())
    traced = {n: f for n, f in doc["modules"].items() if n != "__main__"}
    static = static_closure(traced, doc["sys_path"])
    modules = dict(traced)
    for n, f in static.items():
        modules.setdefault(n, f)
    _substitute(modules)
    return ImportSet(modules=modules, traced=sorted(traced),
                     static_only=sorted((set(static) - set(traced)) & set(modules)),
                     runs=doc["runs"],
                     sys_path=doc["sys_path"], paths=doc["paths"], peak_rss=doc["peak_rss"])


# hashlib falls back to these built-in implementations when _hashlib (OpenSSL) is absent
# (Lib/hashlib.py __get_builtin_constructor); _hashlib needs libcrypto, 4-5 MiB.
# Accelerators the capture side works without (see _substitute).
OPTIONAL = ("cbor2",)
HASHLIB_FALLBACKS = ("_md5", "_sha1", "_sha256", "_sha512", "_blake2", "_sha3")


def _substitute(modules: dict[str, str | None]) -> None:
    """Swap modules that drag in big libraries for the fallbacks their stdlib users take,
    and add what compiled modules import from C, where modulefinder cannot see it."""
    # cbor2 only speeds up decoding payloads over 32 KiB (handoff.cbor.loads falls back to
    # its own decoder, loads_py, when cbor2 cannot be imported); the capture side encodes no
    # CBOR. Its extension is ~1 MiB of the crashkernel reservation: leave it out.
    for name in [n for n in modules if n.split(".")[0] in OPTIONAL]:
        del modules[name]
    if "handoff._native" in modules and "_cffi_backend" not in modules:
        # An out-of-line cffi module imports _cffi_backend when it is loaded (the dry runs
        # on a small record may never load it: the Python decoder serves small payloads).
        import importlib.util

        spec = importlib.util.find_spec("_cffi_backend")
        if spec is not None:
            modules["_cffi_backend"] = spec.origin if spec.has_location else None
    if modules.pop("_hashlib", None) is not None or "hashlib" in modules:
        import importlib.util

        for name in HASHLIB_FALLBACKS:
            spec = importlib.util.find_spec(name)
            if spec is not None:
                modules.setdefault(name, spec.origin if spec.has_location else None)


class _Finder(modulefinder.ModuleFinder):
    """modulefinder that follows every import in handoff's capture-side code, and only the
    module-level imports elsewhere (a stdlib function handoff never calls may import
    anything: following it would pull in half the stdlib)."""

    def scan_code(self, co: CodeType, m: Any) -> None:  # type: ignore[override]
        if not _full_scan(m.__name__):
            co = co.replace(co_consts=tuple(None if isinstance(c, CodeType) else c
                                            for c in co.co_consts))
        super().scan_code(co, m)


def _full_scan(name: str) -> bool:
    if name != "handoff" and not name.startswith("handoff."):
        return False
    if any(name == p or name.startswith(p + ".") for p in LOAD_SIDE):
        return False
    return not name.startswith("handoff.cli.") or \
        name.split(".")[2] in (*CAPTURE_COMMANDS, "_output")


def static_closure(traced: dict[str, str | None], path: list[str]) -> dict[str, str | None]:
    """Modules reachable from the traced handoff modules and the capture-side packages."""
    finder = _Finder(path=list(path))
    seeds = [n for n in traced if _full_scan(n)]
    for pkg in ("handoff.restore", "handoff.capture", "handoff.sources"):
        seeds += _submodules(pkg, path)
    for name in ALWAYS:
        seeds.append(name)
    for name in sorted(set(seeds)):
        try:
            finder.import_hook(name)
        except ImportError:
            continue
    return {n: getattr(m, "__file__", None) for n, m in finder.modules.items()
            if n != "__main__"}


def _submodules(pkg: str, path: list[str]) -> list[str]:
    rel = pkg.replace(".", "/")
    for base in path:
        d = Path(base) / rel
        if (d / "__init__.py").is_file():
            return [pkg] + [f"{pkg}.{p.stem}" for p in sorted(d.glob("*.py"))
                            if p.stem != "__init__"]
    return []


# -- stand-ins for the dry runs -----------------------------------------------------------------

def sysfs_from_record(payload: dict[str, Any], root: Path) -> Path:
    """A sysfs tree holding the record's PCI devices as they were saved (for the dry runs)."""
    from handoff.devices.model import devices_from_payload

    devs = root / "devices"
    bus = root / "bus" / "pci"
    (bus / "devices").mkdir(parents=True, exist_ok=True)
    for d in devices_from_payload(payload):
        ddir = devs.joinpath(*d.path) if d.path else devs / "pci0000:00" / d.addr
        ddir.mkdir(parents=True, exist_ok=True)
        cfg = d.live.data + bytes(max(0, d.live.size - len(d.live.data)))
        (ddir / "config").write_bytes(cfg)
        i = d.ids
        for name, value in (("vendor", f"0x{i.vendor:04x}"), ("device", f"0x{i.device:04x}"),
                            ("subsystem_vendor", f"0x{i.subvendor:04x}"),
                            ("subsystem_device", f"0x{i.subdevice:04x}"),
                            ("class", f"0x{i.class_code:06x}"), ("revision", f"0x{i.revision:02x}")):
            (ddir / name).write_text(value + "\n")
        bars = {b.index: b for b in d.bars}
        (ddir / "resource").write_text("".join(
            f"0x{b.start:016x} 0x{b.start + b.size - 1 if b.size else 0:016x} 0x{b.flags:016x}\n"
            if (b := bars.get(n)) else f"0x{0:016x} 0x{0:016x} 0x{0:016x}\n" for n in range(7)))
        if d.reset_methods:
            (ddir / "reset_method").write_text(" ".join(d.reset_methods) + "\n")
        if d.sriov:
            (ddir / "sriov_totalvfs").write_text(f"{d.sriov[0]}\n")
            (ddir / "sriov_numvfs").write_text(f"{d.sriov[1]}\n")
        if d.driver:
            drv = bus / "drivers" / d.driver
            drv.mkdir(parents=True, exist_ok=True)
            _symlink(ddir / "driver", drv)
        _symlink(bus / "devices" / d.addr, ddir)
    return root


def _symlink(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def tiny_vmcore(path: Path, release: str) -> Path:
    """A minimal ELF64 core like /proc/vmcore: a VMCOREINFO note and one zero-filled page."""
    desc = f"OSRELEASE={release}\nPAGESIZE=4096\n".encode()
    note = struct.pack("<III", 10, len(desc), 0) + b"VMCOREINFO\0\0" + desc
    note += bytes(-len(note) % 4)
    phoff, phnum = 64, 2
    note_off = phoff + 56 * phnum
    load_off = (note_off + len(note) + 4095) // 4096 * 4096
    eh = (b"\x7fELF\x02\x01\x01" + bytes(9)
          + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0))
    ph = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(note), len(note), 0)  # PT_NOTE
    ph += struct.pack("<IIQQQQQQ", 1, 7, load_off, 0xFFFFFFFF81000000, 0x1000000, 4096, 4096,
                      4096)  # PT_LOAD
    data = eh + ph + note
    path.write_bytes(data + bytes(load_off - len(data)) + bytes(4096))
    return path


def capture_runs(note: str, sysfs: str, empty: str, proc: str, work: str,
                 policy: str | None = None) -> list[list[str]]:
    """The argv lists the dry runs execute: what the capture hooks run, on stand-ins.

    Restore runs against a tree made from the record (so matching and planning run), with a
    /proc whose cmdline names the record (as `handoff load` puts it on the capture command
    line), then against an empty tree and without that cmdline (the refusal paths). Capture
    runs on a one-page ELF core into ``work`` (a real save and note injection), and dry.
    """
    pol = ["--policy", policy] if policy else []
    report = f"{work}/report.json"
    restore = ["restore", "--dry-run", "--record", note, "--sysfs-root", sysfs,
               "--proc-root", proc, "--report", report, *pol]
    capture = ["capture", "--vmcore", f"{proc}/vmcore", "--record", note, "--report", report]
    return [
        ["--help"],
        ["restore", "--help"],
        ["capture", "--help"],
        ["inspect", note],
        ["inspect", "--json", note],
        restore,
        restore[:1] + ["--json"] + restore[1:],
        ["restore", "--dry-run", "--record", note, "--sysfs-root", empty, "--proc-root",
         empty, *pol],
        capture + ["--dry-run", "--dump-dir", f"{work}/dump"],
        capture + ["--dump-dir", f"{work}/dump", "--no-subdir"],
        ["inspect", f"{work}/dump/vmcore"],
    ]


def compute_imports(record: bytes, note: bytes, policy: str | None = None) -> ImportSet:
    """Trace the capture commands on a tree made from ``record`` and return the import set."""
    from handoff.kexec.cmdline import handoff_params
    from handoff.record import parse

    rec = parse(record, validate_schema=False)
    with tempfile.TemporaryDirectory(prefix="handoff-dryrun-") as tmp:
        t = Path(tmp)
        (t / "record.note").write_bytes(note)
        sysfs_from_record(rec.payload, t / "sys")
        (t / "empty" / "bus" / "pci" / "devices").mkdir(parents=True)
        (t / "proc").mkdir()
        (t / "proc" / "cmdline").write_text(
            " ".join(["reset_devices", *handoff_params(rec.generation, rec.boot_id)]) + "\n")
        tiny_vmcore(t / "proc" / "vmcore", rec.kernel_release or "unknown")
        (t / "dump").mkdir()
        runs = capture_runs(str(t / "record.note"), str(t / "sys"), str(t / "empty"),
                            str(t / "proc"), tmp, policy)
        found = trace_imports(runs)
        # What the capture kernel runs, each alone as the hooks run it: restore (the dry run
        # plans every write the real one makes) and capture (a real save, note injection).
        (t / "dump-peak").mkdir()
        capture = [a.replace(f"{tmp}/dump", f"{tmp}/dump-peak") for a in runs[PEAK_RUNS[1]]]
        found.peak_private = max(peak_private(runs[PEAK_RUNS[0]]), peak_private(capture))
        return found


PEAK_RUNS = (5, 9)  # indexes in capture_runs(): restore --dry-run, capture into the work dir
