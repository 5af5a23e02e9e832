"""handoff-quiesce (csrc/quiesce): the capture kernel's first hook, run on fake sysfs trees.

The binary setup.py built into handoff/data/ runs here against the q35 capture tree and a
record `handoff save` made of the same machine: it must clear Bus Master (and set INTx
Disable) on exactly the unbound, identity-matched, bus-mastering endpoints, write nothing
else, and refuse records that are damaged or from another boot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import recordgen as G
from helpers.restore import (
    BOOT,
    capture_tree,
    digest,
    proc_dir,
    record_of,
    run_cli,
    saved_devices,
    tree_state,
)

from handoff.kexec import quiescer
from handoff.restore import quiesce_log

BIN = quiescer.PACKAGED
pytestmark = pytest.mark.skipif(
    not BIN.exists() and shutil.which("make") is None,
    reason="handoff-quiesce was not built (no make or C compiler at install)",
)


def _binary() -> Path:
    if not BIN.exists():
        subprocess.run(["make", "-s", "-C", str(Path(__file__).parent.parent / "csrc" /
                                                 "quiesce"), f"OUT={BIN}"], check=True)
    return BIN


def _run(tmp: Path, tree: Path, record: bytes | None, cmdline: str | None = None,
         vmcore: str = "vmcore") -> tuple[int, str, str]:
    note = tmp / "record.note"
    if record is not None:
        note.write_bytes(G.note(record))
    cmd = tmp / "cmdline"
    cmd.write_text(cmdline if cmdline is not None else
                   f"console=ttyS0 handoff.boot_id={BOOT} handoff.generation=1\n")
    log = tmp / "quiesce.log"
    (tmp / "vmcore").write_bytes(b"")
    proc = subprocess.run([str(_binary()), "--record", str(note), "--sysfs-root", str(tree),
                           "--cmdline", str(cmd), "--vmcore", str(tmp / vmcore),
                           "--log", str(log)],
                          capture_output=True, text=True, check=False)
    return proc.returncode, log.read_text() if log.exists() else "", proc.stderr


def _command(tree: Path, addr: str) -> int:
    with open(tree / "bus/pci/devices" / addr / "config", "rb") as f:
        return int.from_bytes(f.read(6)[4:6], "little")


def _expected(tree: Path) -> set[str]:
    """Unbound endpoints (header type 0, not class 06) with Bus Master set, by reading the
    tree the way the quiescer must (the saved record has the same ids)."""
    out = set()
    for d in sorted((tree / "bus/pci/devices").iterdir()):
        cfg = (d / "config").read_bytes()
        if (d / "driver").exists() or cfg[0x0E] & 0x7F or cfg[0x0B] == 0x06:
            continue
        if int.from_bytes(cfg[4:6], "little") & 0x4:
            out.add(d.name)
    return out


def test_clears_bus_master_of_unbound_endpoints_only(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path).root
    rec = record_of(saved_devices(tmp_path))
    want = _expected(Path(tree))
    assert want, "the q35 capture tree has unbound bus-mastering endpoints"
    before = tree_state(Path(tree))
    rc, log, err = _run(tmp_path, Path(tree), rec)
    assert rc == 0, err + log
    doc = quiesce_log.parse(log)
    assert {c["addr"] for c in doc["cleared"]} == want
    after = tree_state(Path(tree))
    changed = {k for k in before if before[k] != after[k]}
    real = {os.path.relpath(os.path.realpath(Path(tree) / "bus/pci/devices" / a / "config"),
                            os.path.realpath(tree)) for a in want}
    assert changed == real
    for addr in want:
        cmd = _command(Path(tree), addr)
        assert not cmd & 0x4 and cmd & 0x400, f"{addr} COMMAND {cmd:#06x}"
    # Only COMMAND moved: every other byte of each config file is as it was.
    for k in changed:
        a, b = before[k], after[k]
        assert a[:4] == b[:4] and a[6:] == b[6:], k
    assert doc["version"] == 1 and doc["record_generation"] == 1
    assert doc["start_to_last_cleared_ms"] is not None and doc["took_ms"] >= 0
    # Bridges and bound functions are named in the log, never written.
    assert any("not-endpoint" in s or "bound" in s for s in doc["skipped"])


def test_a_second_run_finds_nothing_to_clear(tmp_path: Path) -> None:
    tree = Path(capture_tree(tmp_path).root)
    rec = record_of(saved_devices(tmp_path))
    assert _run(tmp_path, tree, rec)[0] == 0
    state = digest(tree)
    rc, log, _ = _run(tmp_path, tree, rec)
    assert rc == 0 and quiesce_log.parse(log)["cleared"] == []
    assert digest(tree) == state


@pytest.mark.parametrize("cmdline", [
    "console=ttyS0",
    f"handoff.boot_id={BOOT} handoff.generation=2",
    "handoff.boot_id=00000000-0000-4000-8000-000000000000 handoff.generation=1",
])
def test_a_record_from_another_boot_or_generation_writes_nothing(tmp_path: Path,
                                                                  cmdline: str) -> None:
    tree = Path(capture_tree(tmp_path).root)
    state = digest(tree)
    rc, log, _ = _run(tmp_path, tree, record_of(saved_devices(tmp_path)), cmdline)
    assert rc == 1 and digest(tree) == state
    assert quiesce_log.parse(log)["refused_record"].startswith("foreign generation 1")


def test_a_damaged_or_missing_record_writes_nothing(tmp_path: Path) -> None:
    tree = Path(capture_tree(tmp_path).root)
    state = digest(tree)
    rec = bytearray(record_of(saved_devices(tmp_path)))
    rec[300] ^= 0xFF  # a payload byte: the SHA-256 digest no longer matches
    rc, log, _ = _run(tmp_path, tree, bytes(rec))
    assert rc == 1 and digest(tree) == state
    assert quiesce_log.parse(log)["refused_record"].startswith("invalid ")
    (tmp_path / "record.note").unlink()
    rc, log, _ = _run(tmp_path, tree, None)
    assert rc == 3 and quiesce_log.parse(log)["refused_record"].startswith("no-record ")


def test_outside_a_capture_kernel_nothing_is_written(tmp_path: Path) -> None:
    tree = Path(capture_tree(tmp_path).root)
    state = digest(tree)
    rc, log, _ = _run(tmp_path, tree, record_of(saved_devices(tmp_path)), vmcore="no-vmcore")
    assert rc == 0 and digest(tree) == state
    assert quiesce_log.parse(log)["refused_record"].startswith("not-capture-kernel ")


def test_usage_and_an_unwritable_log(tmp_path: Path) -> None:
    proc = subprocess.run([str(_binary()), "--bogus", "x"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: handoff-quiesce")
    proc = subprocess.run([str(_binary()), "--log", str(tmp_path / "no" / "such")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 4 and "cannot write" in proc.stderr


def test_restore_carries_the_log_into_its_report(tmp_path: Path) -> None:
    tree = capture_tree(tmp_path)
    rec = record_of(saved_devices(tmp_path))
    _, log, _ = _run(tmp_path, Path(tree.root), rec)
    (tmp_path / "r.bin").write_bytes(rec)
    rep = tmp_path / "report.json"
    out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(tmp_path / "r.bin"),
                            "--sysfs-root", str(tree.root), "--proc-root",
                            str(proc_dir(tmp_path)), "--report", str(rep),
                            "--quiesce-log", str(tmp_path / "quiesce.log")])
    assert rc == 0, err + out
    doc = json.loads(rep.read_bytes())
    assert doc["quiescer"]["log"] == str(tmp_path / "quiesce.log")
    assert doc["quiescer"]["cleared"] == quiesce_log.parse(log)["cleared"]
    out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(tmp_path / "r.bin"),
                            "--sysfs-root", str(tree.root), "--proc-root",
                            str(proc_dir(tmp_path)), "--dry-run", "--json",
                            "--quiesce-log", str(tmp_path / "none.log")])
    assert rc == 0 and "quiescer" not in json.loads(out)["report"]


def test_log_parser_keeps_unknown_lines_and_bounds_lists() -> None:
    lines = ["handoff-quiesce 1", "start 1000000", "record generation 7",
             "cleared 0000:05:00.0 0x0507 0x0503 3000000",
             "refused 0000:01:00.0 0x0507 Operation not permitted",
             "skip 0000:00:01.0 not-endpoint", "mystery line",
             "end 4000000 cleared 1 last 3000000"]
    text = "\n".join(lines)
    doc = quiesce_log.parse(text)
    assert doc["cleared"] == [{"addr": "0000:05:00.0", "command": "0x0507 -> 0x0503",
                               "after_start_ms": 2.0}]
    assert doc["refused"] == ["0000:01:00.0 COMMAND 0x0507: Operation not permitted"]
    assert doc["start_to_last_cleared_ms"] == 2.0 and doc["took_ms"] == 3.0
    assert doc["other"] == ["mystery line"] and doc["record_generation"] == 7
    many = "\n".join(f"skip 0000:00:{i:02x}.0 absent" for i in range(300))
    assert len(quiesce_log.parse(many)["skipped"]) == quiesce_log.MAX_LINES


def _listing_with(files: dict[str, str]) -> Any:
    """An initrd listing holding these host files (initrd path -> host path), hashed as
    handoff.kexec.initrd lists a library."""
    import hashlib

    from handoff.formats import cpio
    from handoff.kexec.initrd import Listing

    out = Listing()
    for name, host in files.items():
        data = Path(host).read_bytes()
        out.members[name] = cpio.Member(name=name, mode=0o100755, uid=0, gid=0, nlink=1,
                                        mtime=0, size=len(data), ino=0, rdevmajor=0,
                                        rdevminor=0, offset=0, data_offset=0)
        out.digests[name] = hashlib.sha256(data).hexdigest()
    return out


def test_the_dynamic_build_is_packed_only_with_the_systems_own_loader_and_libc() -> None:
    from handoff.kexec import runtime
    from handoff.kexec.runner import Runner

    dyn = quiescer.PACKAGED_DYNAMIC
    if not dyn.exists():
        pytest.skip("no dynamic handoff-quiesce built (pip install -e . builds it)")
    loader = runtime.elf_interpreter(str(dyn))
    assert loader is not None
    libs = runtime.shared_libraries([str(dyn)], loader, Runner())
    assert set(libs) == {"libc.so.6"}  # the C core needs nothing else
    libc = os.path.realpath(libs["libc.so.6"])
    both = _listing_with({"usr/lib64/ld-linux-x86-64.so.2": os.path.realpath(loader),
                          "usr/lib/x86_64-linux-gnu/libc.so.6": libc})
    got = quiescer.dynamic(both)
    assert got is not None
    data, wrapper = got
    assert data == dyn.read_bytes() and len(data) < len(quiescer.binary()[0] or b"") // 4
    assert wrapper.decode().splitlines()[-1] == (
        "exec /usr/lib64/ld-linux-x86-64.so.2 --library-path /usr/lib/x86_64-linux-gnu "
        f"/{quiescer.DYNAMIC_DEST} \"$@\"")
    # without the loader, or with another libc, the static build is packed
    assert quiescer.dynamic(_listing_with({"usr/lib/x86_64-linux-gnu/libc.so.6": libc})) is None
    other = _listing_with({"usr/lib64/ld-linux-x86-64.so.2": os.path.realpath(loader),
                           "usr/lib/x86_64-linux-gnu/libc.so.6": str(dyn)})
    assert quiescer.dynamic(other) is None
    assert quiescer.dynamic(None) is None
