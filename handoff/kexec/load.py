"""The load pipeline: record, handoff cpio, initrd copy, command line, kexec, verification.

1. preflight (root, kexec, crashkernel, lockdown); 2. collect a record (or take --record) and
write it with the next generation; 3. build the handoff cpio: the record as a note file at
handoff/record.note, the hooks, and the compressed runtime; 4. append it to a *copy* of the
capture initrd, 4-byte aligned; 5. assemble the command line; 6. run kexec from an argv list;
7. check kexec_crash_loaded (kexec_loaded for a reboot load) and write loaded.json.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handoff.errors import EnvironmentProblem, HandoffError, NoRecordFound, UsageError
from handoff.formats import cpio
from handoff.kexec import checks, cmdline, hooks, initrd, previous, runtime, state
from handoff.kexec.config import CaptureConfig, Host, discover
from handoff.kexec.explain import KernelLog, explain
from handoff.kexec.imports import compute_imports
from handoff.kexec.runner import Runner

SYSCALLS = ("auto", "file", "legacy")
RECORD_FILE = "record.bin"
INITRD_COPY = "capture-initrd.img"
# kexec-tools options handoff sets itself; the distro's KEXEC_ARGS may not repeat them.
_OWN_OPTIONS = ("-p", "--load-panic", "-l", "--load", "-s", "--kexec-file-syscall", "-c",
                "--kexec-syscall", "-a", "--kexec-syscall-auto", "-u", "--unload", "-e",
                "--exec", "--initrd", "--ramdisk", "--append", "--command-line",
                "--reuse-cmdline")


@dataclass
class LoadOptions:
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    append: str | None = None
    record: str | None = None
    policy: str | None = None
    reboot: bool = False
    syscall: str = "auto"
    dry_run: bool = False
    work_dir: str | None = None
    dump_dir: str = ""
    capture: bool = True
    compression: str = runtime.DEFAULT_COMPRESSION
    runtime_cache: str | None = None  # default: <state dir>/runtime-cache


@dataclass
class LoadResult:
    argv: list[str]
    mode: str
    kernel: str
    initrd: str
    initrd_copy: str
    cmdline: str
    generation: int
    record: str
    boot_id: str
    config_source: str
    sizes: dict[str, int]
    parts: dict[str, tuple[int, int]]
    runtime: dict[str, Any]
    memory: dict[str, Any] | None
    crash_size: int | None
    lockdown: str | None
    dry_run: bool
    loaded: bool
    warnings: list[str] = field(default_factory=list)
    replaces: dict[str, Any] | None = None  # previous.Previous of a kernel handoff did not load

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["parts"] = {k: {"offset": o, "size": s} for k, (o, s) in self.parts.items()}
        return d


def syscall_flags(syscall: str, lockdown: str | None, distro_args: tuple[str, ...]) -> list[str]:
    """kexec-tools flags for ``--syscall``: file → -s, legacy → -c, auto → none.

    ``auto`` leaves the choice to kexec-tools, except where the answer is known: under
    lockdown kexec_load is always refused, and a distro that passes -s (Secure Boot) wants
    kexec_file_load; both get -s.
    """
    if syscall not in SYSCALLS:
        raise UsageError(f"--syscall {syscall!r}: choose from {', '.join(SYSCALLS)}")
    locked = lockdown not in (None, "none")
    if syscall == "file":
        return ["-s"]
    if syscall == "legacy":
        if locked:
            raise EnvironmentProblem(
                f"kexec_load (--syscall legacy) is refused under lockdown ({lockdown})",
                hint="use --syscall file (kexec_file_load) with a kernel signed by a key in "
                     "the kernel's keyrings",
            )
        return ["-c"]
    if locked or "-s" in distro_args or "--kexec-file-syscall" in distro_args:
        return ["-s"]
    return []


def _distro_args(cfg: CaptureConfig) -> list[str]:
    return [a for a in cfg.kexec_args if a.split("=", 1)[0] not in _OWN_OPTIONS]


def kexec_argv(kexec: str, *, reboot: bool, flags: list[str], extra: list[str], kernel: str,
               initrd_copy: str, line: str) -> list[str]:
    return [kexec, "-l" if reboot else "-p", *flags, *extra, kernel,
            f"--initrd={initrd_copy}", f"--append={line}"]


def load(opts: LoadOptions, host: Host, runner: Runner) -> LoadResult:
    """Run the pipeline; with ``opts.dry_run`` everything is built and nothing is loaded."""
    warnings: list[str] = []
    mode = "reboot" if opts.reboot else "crash"
    _check_options(opts)
    pre = _preflight(opts, host, runner, mode)
    cfg = pre.cfg
    assert cfg.initrd is not None  # discover() refuses a configuration without one
    work = _work_dir(opts, host)
    # 2. the record
    rec, rec_path, generation, rec_boot = _record(opts, host, work, pre.policy)
    # handoff.boot_id= names the kernel that will crash: this boot. restore compares it with
    # the record's producer, so a --record from another boot is caught there.
    boot = state.boot_id(host) or rec_boot
    if rec_boot and boot != rec_boot:
        warnings.append(f"the record was saved in boot {rec_boot}, not this one ({boot}); "
                        "restore will refuse it unless forced")
    inv = state.inventory(host.sys)
    # 3. the handoff cpio
    from handoff import _binding
    from handoff.record import NT_HANDOFF_RECORD

    note = _binding.wrap_note(rec, NT_HANDOFF_RECORD)
    listing = initrd.list_initrd(cfg.initrd, hooks.WANTED)
    if not listing.complete:
        warnings.append(f"could not list all of {cfg.initrd}: {listing.problem}")
    rt = _runtime(host, rec, note, opts, listing)
    handoff_cpio = _handoff_cpio(opts, pre.policy, listing, note, generation, boot, warnings)
    # 4. a copy of the initrd with both appended
    copy = work / INITRD_COPY
    appended = initrd.append_copy(cfg.initrd, copy,
                                  [("handoff", handoff_cpio), ("runtime", rt.archive)])
    est = checks.estimate(
        kernel_mem=checks.kernel_memory(cfg.kernel),
        initrd_compressed=appended.size,
        initrd_unpacked=(listing.unpacked_size if listing.complete else 3 * appended.original_size)
        + rt.unpacked_size + len(handoff_cpio),
        runtime_peak=rt.peak_private or rt.peak_rss,
        devices=len(inv),
        capture=opts.capture,
    )
    if pre.reserved is not None:
        tight = checks.check_memory(est, pre.reserved)
        if tight:
            warnings.append(tight)
    # 5. the command line
    line = capture_cmdline(opts, host, cfg, generation, boot, pre.policy)
    argv = kexec_argv(pre.kexec, reboot=opts.reboot, flags=pre.flags, extra=_distro_args(cfg),
                      kernel=str(cfg.kernel), initrd_copy=str(copy), line=line)
    result = LoadResult(
        argv=argv, mode=mode, kernel=str(cfg.kernel), initrd=str(cfg.initrd),
        initrd_copy=str(copy), cmdline=line, generation=generation, record=rec_path,
        boot_id=boot, config_source=cfg.source,
        sizes={"kernel": cfg.kernel.stat().st_size, "initrd": appended.original_size,
               "handoff_cpio": len(handoff_cpio), "runtime_compressed": len(rt.archive),
               "runtime_unpacked": rt.unpacked_size, "initrd_copy": appended.size},
        parts=appended.parts, runtime=rt.summary(), memory=est.as_dict(),
        crash_size=pre.reserved, lockdown=pre.lock, dry_run=opts.dry_run, loaded=False,
        warnings=warnings, replaces=pre.prev.to_json() if pre.prev else None,
    )
    # 6. kexec
    _run_kexec(opts, host, runner, argv, mode, pre, est)
    if opts.dry_run:
        return result
    # 7. verify and remember
    _verify_loaded(host, mode)
    result.loaded = True
    state.save_state(host, state.LoadState(
        generation=generation, record=rec_path, record_sha256=_sha256(rec), boot_id=boot,
        mode=mode, syscall=opts.syscall, kernel=str(cfg.kernel), initrd=str(cfg.initrd),
        initrd_copy=str(copy), cmdline=line, argv=argv, inventory=inv,
        fingerprint=state.fingerprint(inv)))
    return result


def _check_options(opts: LoadOptions) -> None:
    """Options that contradict each other: a usage error (exit 2) before anything is read."""
    if opts.compression not in runtime.COMPRESSIONS:
        raise UsageError(f"unknown compression {opts.compression!r}")
    if opts.cmdline is not None and opts.append is not None:
        raise UsageError("--cmdline and --append exclude each other",
                         hint="--cmdline replaces the base command line, --append adds to it")


@dataclass
class _Preflight:
    """What the machine offers a load, found before anything is built."""

    kexec: str
    reserved: int | None  # crashkernel bytes; None for a kexec reboot
    lock: str | None
    cfg: CaptureConfig
    flags: list[str]
    policy: Any
    prev: Any


def _preflight(opts: LoadOptions, host: Host, runner: Runner, mode: str) -> _Preflight:
    """1. Root, kexec-tools, kexec enabled, the reservation, lockdown, the kernel and initrd
    to load, the policy: every failure is an EnvironmentProblem (exit 4) or a usage error."""
    checks.check_root(host)
    kexec = runner.which("kexec", hint=checks.KEXEC_HINT)
    checks.check_kexec_enabled(host)
    reserved = checks.crash_size(host) if mode == "crash" else None
    lock = checks.lockdown(host)
    cfg = discover(host, opts.kernel, opts.initrd)
    flags = syscall_flags(opts.syscall, lock, cfg.kexec_args)
    policy = _policy(opts.policy)
    prev = previous.loaded_by_other(host, mode)
    return _Preflight(kexec, reserved, lock, cfg, flags, policy, prev)


def _handoff_cpio(opts: LoadOptions, policy: Any, listing: Any, note: bytes, generation: int,
                  boot: str, warnings: list[str]) -> bytes:
    """The cpio appended to the capture initrd: the record note, the hooks and their
    configuration, the quiescer (the first hook) when it is built, and the policy file."""
    restore_args: tuple[str, ...] = ("--policy", "/" + hooks.POLICY) if policy else ()
    if opts.reboot:
        # After `kexec -e` there is no /proc/vmcore, and restore refuses to write to a running
        # system's /sys unless told this is the kernel the record was loaded for.
        restore_args += ("--allow-running-system",)
    conf = hooks.CaptureConf(generation=generation, boot_id=boot, dump_dir=opts.dump_dir,
                             restore_args=restore_args, capture=opts.capture)
    w = cpio.Writer()
    made: set[str] = set()
    listing.writes_safely(w, hooks.RECORD, note, 0o644, made)
    policy_text = Path(opts.policy).read_bytes() if opts.policy else None
    from handoff.kexec import quiescer

    qbin, qsrc = quiescer.binary()
    dyn = quiescer.dynamic(listing) if qbin is not None else None
    if qbin is None:
        warnings.append(qsrc)
    elif dyn is not None:  # the initrd has this system's libc: the small build
        listing.writes_safely(w, quiescer.DYNAMIC_DEST, dyn[0], 0o755, made)
        listing.writes_safely(w, hooks.QUIESCER, dyn[1], 0o755, made)
    else:
        listing.writes_safely(w, hooks.QUIESCER, qbin, 0o755, made)
    for name, data, fmode in hooks.hook_files(conf, listing, policy_text, warnings,
                                              quiescer=qbin is not None):
        listing.writes_safely(w, name, data, fmode, made)
    return w.finish()


def _run_kexec(opts: LoadOptions, host: Host, runner: Runner, argv: list[str], mode: str,
               pre: _Preflight, est: Any) -> None:
    """6. Run kexec (a dry run prints the argv); a failure is explained from its output and
    the kernel log, and says when it left no capture kernel loaded."""
    klog = KernelLog(str(host.p("/dev/kmsg"))) if not opts.dry_run else None
    was_loaded = state.loaded_flag(host, mode)
    res = runner.run(argv)
    if not res.ok:
        err = explain(res, klog.new_lines() if klog else [], lockdown=pre.lock,
                      syscall_flag=pre.flags[0] if pre.flags else None,
                      recommended_crashkernel=est.recommended_crashkernel())
        if was_loaded and not state.loaded_flag(host, mode):
            # kexec_load and kexec_file_load free the loaded image before loading the new
            # one (kernel/kexec.c, kexec_file.c): a failed reload leaves nothing loaded.
            err.hint = (err.hint or "") + (
                "; NOTE: no capture kernel is loaded now (the old one is freed before a load): "
                "restore the distro's with `kdump-config load` or `kdumpctl restart`")
        raise err


def _verify_loaded(host: Host, mode: str) -> None:
    """kexec's exit status is not proof: the kernel's loaded flag is."""
    if not state.loaded_flag(host, mode):
        flag = "kexec_crash_loaded" if mode == "crash" else "kexec_loaded"
        raise EnvironmentProblem(
            f"kexec reported success but {host.sys / 'kernel' / flag} is not 1",
            hint="check `dmesg | tail` for kexec messages and run the printed kexec command "
                 "by hand with -d",
        )


def capture_cmdline(opts: LoadOptions, host: Host, cfg: CaptureConfig, generation: int,
                    boot: str, policy: Any) -> str:
    """The distro's kdump line (or /proc/cmdline cleaned), plus kdump and handoff parameters."""
    blacklist = list(policy.blacklist) if policy is not None else []
    remove: tuple[str, ...] = ()
    if opts.cmdline is not None:
        base, append = opts.cmdline, ""
    else:
        base = cfg.base_cmdline if cfg.base_cmdline is not None else \
            (host.read_text("/proc/cmdline") or "")
        remove, append = cfg.remove, cfg.append
    return cmdline.assemble(base, remove_names=remove, append=append, extra=opts.append or "",
                            handoff=cmdline.handoff_params(generation, boot),
                            blacklist=blacklist)


def _policy(path: str | None) -> Any:
    if path is None:
        return None
    from handoff.plugins import load
    from handoff.restore.policy import load_policy

    policy = load_policy(path)
    # A plugin name the capture kernel will not find is a typo: say it now, not after a crash.
    policy.check_plugins(load(entry_points=True).names())
    return policy


def _work_dir(opts: LoadOptions, host: Host) -> Path:
    if opts.work_dir:
        work = Path(opts.work_dir)
    elif opts.dry_run:
        # A dry run keeps what it built (for inspection) but never touches the state dir.
        return Path(tempfile.mkdtemp(prefix="handoff-load-"))
    else:
        work = host.state
    work.mkdir(parents=True, exist_ok=True)
    return work


def _record(opts: LoadOptions, host: Host, work: Path, policy: Any
            ) -> tuple[bytes, str, int, str]:
    """(record bytes, where it is, generation, producer boot id)."""
    if opts.record is not None:
        return _given_record(opts.record)
    from handoff.identity import IdentitySource
    from handoff.save import save
    from handoff.sysfs import SysfsTree

    out = (work if opts.dry_run else host.state) / RECORD_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    current = host.state / RECORD_FILE
    if opts.dry_run and current.is_file() and out != current:
        shutil.copyfile(current, out)  # so the dry run numbers the generation as a load would
    kw: dict[str, Any] = {"kmsg_path": str(host.p("/dev/kmsg"))}
    if policy is not None:
        kw["policy"] = lambda dev: policy.decide(dev).action
    res = save(str(out), SysfsTree(host.sys), identity=IdentitySource(root=host.root), **kw)
    from handoff.record import parse

    rec = parse(res.record, validate_schema=False)
    return res.record, str(out), res.generation, rec.boot_id


def _given_record(path: str) -> tuple[bytes, str, int, str]:
    import handoff

    try:
        found = handoff.read(path)
    except FileNotFoundError:
        raise UsageError(f"--record {path}: no such file",
                         hint="give a record file, or leave --record out to save a new one"
                         ) from None
    valid = [f.record for f in found if f.record is not None]
    if not valid:
        errs = [f.error for f in found if f.error is not None]
        if errs:
            raise errs[0]
        raise NoRecordFound(f"{path} holds no valid record")
    rec = max(valid, key=lambda r: r.generation)
    return rec.raw, path, rec.generation, rec.boot_id


def _runtime(host: Host, rec: bytes, note: bytes, opts: LoadOptions,
             listing: initrd.Listing) -> runtime.Runtime:
    runner = Runner()  # read-only tools (ld.so --list, strip on copies) run even in dry runs
    cache = Path(opts.runtime_cache) if opts.runtime_cache else host.state / "runtime-cache"
    key = runtime.cache_key(opts.compression, listing)
    rt = runtime.load_cached(cache, key)
    if rt is not None:
        return rt
    imports = compute_imports(rec, note, opts.policy)
    rt = runtime.build(imports, runner, compression=opts.compression, listing=listing)
    try:
        runtime.store_cached(cache, key, rt)
    except OSError:
        pass  # a read-only state dir (dry run as a user) only costs the next build
    return rt


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@dataclass
class UnloadResult:
    argv: list[str]
    mode: str
    dry_run: bool
    unloaded: bool


def unload(host: Host, runner: Runner, *, reboot: bool = False) -> UnloadResult:
    """``kexec -p -u`` (``-u`` for a reboot load), with -s when kexec_load would be refused."""
    checks.check_root(host)
    kexec = runner.which("kexec", hint=checks.KEXEC_HINT)
    mode = "reboot" if reboot else "crash"
    st = state.read_state(host)
    lock = checks.lockdown(host)
    # Unloading goes through the same syscall checks as loading: under lockdown only
    # kexec_file_load (with KEXEC_FILE_UNLOAD) is allowed.
    flags = ["-s"] if lock not in (None, "none") or (st and st.syscall == "file") else []
    argv = [kexec, *(["-p"] if not reboot else []), *flags, "-u"]
    klog = KernelLog(str(host.p("/dev/kmsg"))) if not runner.dry_run else None
    res = runner.run(argv)
    if not res.ok:
        raise explain(res, klog.new_lines() if klog else [], lockdown=lock,
                      syscall_flag=flags[0] if flags else None)
    if runner.dry_run:
        return UnloadResult(argv, mode, True, False)
    if state.loaded_flag(host, mode):
        raise EnvironmentProblem(
            f"kexec -u succeeded but the {mode} kernel is still loaded",
            hint="check `dmesg | tail`; another tool may have loaded it again")
    if st is not None and st.mode == mode:
        state.clear_state(host)
    return UnloadResult(argv, mode, False, True)


__all__ = [
    "HandoffError",
    "LoadOptions",
    "LoadResult",
    "UnloadResult",
    "capture_cmdline",
    "kexec_argv",
    "load",
    "syscall_flags",
    "unload",
]
