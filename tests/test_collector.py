"""The early collector (csrc/collector): build, run on a fake tree, read its snapshot file."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import fakesysfs as F

from handoff.devices import early as EARLY
from handoff.record import crc32c
from handoff.save import collect_devices
from handoff.sysfs import SysfsTree

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR_DIR = ROOT / "csrc" / "collector"
BOOT_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def _static_libc_available(tmp: Path) -> bool:
    src = tmp / "t.c"
    src.write_text("int main(void){return 0;}\n")
    r = subprocess.run(["cc", "-static", "-o", str(tmp / "t"), str(src)], capture_output=True, check=False)
    return r.returncode == 0


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("cc") or not shutil.which("make"):
        pytest.skip("no C compiler or make")
    out = tmp_path_factory.mktemp("collector") / "handoff-early-collect"
    r = subprocess.run(["make", "-s", "-C", str(COLLECTOR_DIR), f"OUT={out}",
                        "CFLAGS=-O2 -Wall -Wextra -Werror -std=c11"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return out


def _boot_id_file(tmp: Path, text: str = BOOT_ID) -> Path:
    p = tmp / "boot_id"
    p.write_text(text + "\n")
    return p


def _run(collector: Path, root: Path, out: Path, boot: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(collector), "-r", str(root), "-o", str(out), "-b", str(boot)],
                          capture_output=True, text=True, check=False)


def test_builds_static_when_static_libc_exists(collector: Path, tmp_path: Path) -> None:
    data = collector.read_bytes()
    assert data[:4] == b"\x7fELF"
    # PT_INTERP (3) in the program headers means dynamically linked.
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    if _static_libc_available(tmp_path):
        assert 3 not in types, "static libc exists but the collector was linked dynamically"


def test_runs_on_fake_tree_and_file_is_valid(collector: Path, tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35, drivers={a: None for a in _q35_addrs()})
    out = tmp_path / "run" / "handoff" / "early.bin"
    r = _run(collector, root, out, _boot_id_file(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "13 device(s) saved" in r.stderr
    assert not (out.parent / "early.bin.tmp").exists()
    snap = EARLY.read_snapshot_file(out.read_bytes())
    assert snap.version == (1, 0)
    assert snap.boot_id == BOOT_ID
    assert sorted(snap.entries) == _q35_addrs()
    for addr, e in snap.entries.items():
        raw = (F.Q35 / f"{addr}.bin").read_bytes()
        assert e.data == raw and e.size == len(raw)
        assert (e.vendor, e.device) == (raw[0] | raw[1] << 8, raw[2] | raw[3] << 8)
        assert e.class_code == raw[9] | raw[10] << 8 | raw[11] << 16
        assert not e.driver_bound and e.read_errno == 0
    assert snap.dropped == []


def test_layout_matches_spec(collector: Path, tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35, only=["0000:00:05.0"])
    out = tmp_path / "early.bin"
    assert _run(collector, root, out, _boot_id_file(tmp_path)).returncode == 0
    b = out.read_bytes()
    assert b[:8] == b"HDOFEARL"
    assert struct.unpack_from("<HHII", b, 8) == (1, 0, 64, 1)
    assert b[32:48] == uuid.UUID(BOOT_ID).bytes
    total, hcrc = struct.unpack_from("<II", b, 56)
    assert total == len(b) == 64 + 32 + 256
    assert hcrc == crc32c(b[:60])
    dom, bus, devfn, size, ln = struct.unpack_from("<IBBHH", b, 64)
    assert (dom, bus, devfn, size, ln) == (0, 0, 5 << 3, 256, 256)
    assert struct.unpack_from("<BB", b, 64 + 18) == (3, 1)  # revision 3, driver (e1000) bound
    ecrc, = struct.unpack_from("<I", b, 64 + 28)
    assert ecrc == crc32c(b[64 + 32:64 + 32 + 256], crc32c(b[64:64 + 28]))


def test_damaged_files(collector: Path, tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    out = tmp_path / "early.bin"
    assert _run(collector, root, out, _boot_id_file(tmp_path)).returncode == 0
    good = out.read_bytes()
    # A flipped data byte in the first entry: that entry is dropped, the rest survive.
    bad = bytearray(good)
    bad[64 + 32 + 10] ^= 0xFF
    snap = EARLY.read_snapshot_file(bytes(bad))
    assert snap.dropped == ["0000:00:00.0"] and len(snap.entries) == 12
    with pytest.raises(EARLY.SnapshotFileError, match="header checksum"):
        EARLY.read_snapshot_file(b"HDOFEARL" + good[8:20] + b"\x01" + good[21:])
    with pytest.raises(EARLY.SnapshotFileError, match="bad magic"):
        EARLY.read_snapshot_file(b"X" + good[1:])
    with pytest.raises(EARLY.SnapshotFileError, match="truncated header"):
        EARLY.read_snapshot_file(good[:63])
    with pytest.raises(EARLY.SnapshotFileError, match="total_size"):
        EARLY.read_snapshot_file(good[:-8])
    # A lying config_len must be refused before it is used (header CRC recomputed to pass).
    lie = bytearray(good)
    struct.pack_into("<H", lie, 64 + 8, 4000)
    with pytest.raises(EARLY.SnapshotFileError, match="config_len 4000"):
        EARLY.read_snapshot_file(bytes(lie))
    v2 = bytearray(good)
    struct.pack_into("<H", v2, 8, 2)
    struct.pack_into("<I", v2, 60, crc32c(bytes(v2[:60])))
    with pytest.raises(EARLY.SnapshotFileError, match="version 2.0, this reader reads 1.x"):
        EARLY.read_snapshot_file(bytes(v2))


def test_unreadable_config_is_partial(collector: Path, tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    cfg = root / "bus" / "pci" / "devices" / "0000:00:1f.3" / "config"
    os.unlink(os.path.realpath(cfg))
    out = tmp_path / "early.bin"
    r = _run(collector, root, out, _boot_id_file(tmp_path))
    assert r.returncode == 1, r.stderr
    e = EARLY.read_snapshot_file(out.read_bytes()).entries["0000:00:1f.3"]
    assert e.data == b"" and e.read_errno == 2  # ENOENT


def test_usage_and_environment_errors(collector: Path, tmp_path: Path) -> None:
    r = subprocess.run([str(collector), "-x"], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run([str(collector), "-r", str(tmp_path / "nope"), "-o",
                        str(tmp_path / "o")], capture_output=True, text=True, check=False)
    assert r.returncode == 4 and "cannot open" in r.stderr


def test_save_consumes_collector_snapshot(collector: Path, tmp_path: Path) -> None:
    early_root = F.build_tree(tmp_path / "early-sys", F.Q35_CAPTURE,
                              drivers={a: None for a in _q35_addrs()})
    out = tmp_path / "early.bin"
    assert _run(collector, early_root, out, _boot_id_file(tmp_path)).returncode == 0
    live_root = F.build_tree(tmp_path / "sys", F.Q35)
    res = collect_devices(SysfsTree(live_root), early_snapshot=out, boot_id=BOOT_ID,
                          running_kernel=False)
    assert res.early_sources == [f"collector ({out})"]
    for d in res.devices:
        assert d.early is not None and d.early.source == "collector"
        assert d.early.data == (F.Q35_CAPTURE / f"{d.addr}.bin").read_bytes()
        assert d.early.partial is None and d.early.size == d.live.size
    # MSI-X Enable differs between the two dumps on the 4 MSI-X devices (facts: the capture
    # kernel clears it), so early and live really are different sources.
    assert sum(d.early.data != d.live.data for d in res.devices if d.early) >= 4


def test_snapshot_from_another_boot_is_ignored(collector: Path, tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    out = tmp_path / "early.bin"
    assert _run(collector, root, out, _boot_id_file(tmp_path)).returncode == 0
    res = collect_devices(SysfsTree(root), early_snapshot=out,
                          boot_id="11111111-2222-3333-4444-555555555555", running_kernel=False)
    assert all(d.early is None for d in res.devices)
    assert any("not this boot" in n for n in res.notes)


def _q35_addrs() -> list[str]:
    return sorted(p.name[:-4] for p in F.Q35.glob("*.bin"))


CONTRIB = ROOT / "contrib"


@pytest.mark.parametrize("script", [
    "initramfs-tools/hooks/handoff-early",
    "initramfs-tools/scripts/init-top/handoff-early",
    "dracut/90handoff-early/handoff-early.sh",
])
def test_contrib_scripts_parse(script: str) -> None:
    path = CONTRIB / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0


@pytest.mark.parametrize("script", ["initramfs-tools/hooks/handoff-early",
                                    "initramfs-tools/scripts/init-top/handoff-early"])
def test_initramfs_tools_prereqs_protocol(script: str) -> None:
    r = subprocess.run(["sh", str(CONTRIB / script), "prereqs"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == ""


def test_dracut_module_setup_parses() -> None:
    if not shutil.which("bash"):
        pytest.skip("no bash")
    r = subprocess.run(["bash", "-n", str(CONTRIB / "dracut/90handoff-early/module-setup.sh")],
                       check=False)
    assert r.returncode == 0


def test_a_symlink_planted_at_the_temporary_name_is_never_followed(collector: Path,
                                                                    tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    out = tmp_path / "run" / "early.bin"
    out.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (out.parent / "early.bin.tmp").symlink_to(victim)
    r = _run(collector, root, out, _boot_id_file(tmp_path))
    assert r.returncode == 0, r.stderr
    assert victim.read_bytes() == b"keep"
    assert sorted(p.name for p in out.parent.iterdir()) == ["early.bin"]
    assert not out.is_symlink() and (out.stat().st_mode & 0o777) == 0o600
    assert EARLY.read_snapshot_file(out.read_bytes()).boot_id == BOOT_ID


def test_write_errors_name_the_output_not_the_temporary(collector: Path, tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    out = tmp_path / "no-such" / "dir" / "early.bin"
    (tmp_path / "no-such").write_text("a file where a directory should be")
    r = _run(collector, root, out, _boot_id_file(tmp_path))
    assert r.returncode != 0
    assert f"cannot create {out}: Not a directory" in r.stderr and ".tmp" not in r.stderr
