"""Fast checks of the harness's own logic (no QEMU): the stage watcher and the cpio writer."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import pytest
from e2e_harness.cpio import newc_from_tree, write_initrd
from e2e_harness.qemu import Stage, StageError, run


def _guest(script: str) -> list[str]:
    """A stand-in for QEMU: a shell printing to stdout what a guest prints on its console."""
    return ["sh", "-c", script]


def test_watcher_records_stages_in_order_and_extra_markers(tmp_path: Path) -> None:
    out = run(
        _guest(
            "echo 'HANDOFF-E2E STAGE a 10'; echo '[ 1.0] noise HANDOFF-E2E STAGE x 15';"
            "echo 'HANDOFF-E2E INFO memfree-kb 42'; printf 'HANDOFF-E2E STAGE b 20\\r\\n'"
        ),
        [Stage("a", 5), Stage("b", 5)],
        tmp_path / "serial.log",
        overall_timeout=10,
    )
    assert [(s.name, s.guest_ms) for s in out.stages] == [("a", 10), ("x", 15), ("b", 20)]
    assert out.infos == ["memfree-kb 42"]
    assert out.exit_code == 0
    assert "HANDOFF-E2E STAGE b 20" in (tmp_path / "serial.log").read_text()


def test_watcher_names_the_stage_a_guest_failure_reports(tmp_path: Path) -> None:
    with pytest.raises(StageError) as e:
        run(
            _guest("echo 'HANDOFF-E2E STAGE a 1'; echo 'HANDOFF-E2E FAIL b disk gone'; sleep 30"),
            [Stage("a", 5), Stage("b", 5)],
            tmp_path / "serial.log",
            overall_timeout=10,
        )
    assert e.value.stage == "b"
    assert "guest reported: disk gone" in str(e.value)
    assert "  | HANDOFF-E2E STAGE a 1" in str(e.value)


def test_watcher_kills_a_hang_after_the_stage_timeout(tmp_path: Path) -> None:
    with pytest.raises(StageError) as e:
        run(
            _guest("echo 'HANDOFF-E2E STAGE a 1'; exec sleep 60"),
            [Stage("a", 5), Stage("b", 0.5)],
            tmp_path / "serial.log",
            overall_timeout=10,
        )
    assert e.value.stage == "b"
    assert "not reached within 0 s" in e.value.reason or "within" in e.value.reason


def test_watcher_enforces_the_overall_timeout(tmp_path: Path) -> None:
    with pytest.raises(StageError) as e:
        run(
            _guest("while :; do echo 'HANDOFF-E2E STAGE tick 1'; sleep 0.1; done"),
            [Stage("never", 30)],
            tmp_path / "serial.log",
            overall_timeout=1,
        )
    assert "overall timeout" in e.value.reason


def test_watcher_reports_an_early_exit_and_a_skipped_stage(tmp_path: Path) -> None:
    with pytest.raises(StageError) as e:
        run(_guest("exit 3"), [Stage("a", 5)], tmp_path / "s.log", overall_timeout=10)
    assert e.value.stage == "a" and "status 3" in e.value.reason
    with pytest.raises(StageError) as e:
        run(
            _guest("echo 'HANDOFF-E2E STAGE b 1'"),
            [Stage("a", 5), Stage("b", 5)],
            tmp_path / "s.log",
            overall_timeout=10,
        )
    assert e.value.stage == "a" and "'b' came first" in e.value.reason


def test_initrd_is_a_gzip_newc_archive_that_cpio_lists_and_is_aligned(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/busybox").write_bytes(b"\x7fELF" + b"x" * 5)
    (tree / "bin/sh").symlink_to("busybox")
    (tree / "init").write_text("#!/bin/sh\n")
    (tree / "init").chmod(0o755)
    out = tmp_path / "initrd.img"
    size = write_initrd(tree, out)
    assert size % 512 == 0 and out.stat().st_size == size
    gz = zlib.decompressobj(wbits=31)  # one gzip member; the zero padding stays unused
    archive = gz.decompress(out.read_bytes())
    assert gz.eof and gz.unused_data.strip(b"\0") == b""
    assert archive == newc_from_tree(tree, devices={"dev/console": (5, 1)})
    listing = subprocess.run(
        ["cpio", "-t", "-v"], input=archive, capture_output=True, check=True
    ).stdout.decode()
    names = [
        line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.splitlines()
    ]
    assert names == ["init", "bin", "bin/busybox", "bin/sh", "dev/console"]  # parents first
    assert "crw-------" in listing


def _core_with_notes(path: Path, notes: list[tuple[bytes, int, bytes]]) -> None:
    """A minimal ELF64 ET_CORE file with one PT_NOTE segment holding `notes`."""
    import struct

    blob = b""
    for name, ntype, desc in notes:
        n = name + b"\0"
        blob += struct.pack("<III", len(n), len(desc), ntype)
        blob += n + b"\0" * (-len(n) % 4) + desc + b"\0" * (-len(desc) % 4)
    phoff, phsize = 64, 56
    ehdr = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    ehdr += struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, phsize, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 4, 0, phoff + phsize, 0, 0, len(blob), 0, 4)
    path.write_bytes(ehdr + phdr + blob)


def test_checks_read_notes_as_readelf_and_eu_readelf_list_them(tmp_path: Path) -> None:
    import shutil

    from e2e_harness import checks

    core = tmp_path / "core"
    notes = [
        (b"CORE", 1, b"\1" * 336),
        (b"VMCOREINFO", 0, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n"),
        (b"HANDOFF", 0x48440001, b"HANDOFF\0" + b"\0" * 9),
    ]
    _core_with_notes(core, notes)
    got = checks.elf_notes(core)
    assert [(n.owner, n.type, n.desc) for n in got] == [(o.decode(), t, d) for o, t, d in notes]
    assert checks.vmcoreinfo(got) == {"OSRELEASE": "6.1.0", "PAGESIZE": "4096"}
    for tool in ("readelf", "eu-readelf"):
        if shutil.which(tool) is None:
            continue
        listed = checks.tool_notes(tool, core)
        assert [owner for owner, _ in listed] == ["CORE", "VMCOREINFO", "HANDOFF"], (tool, listed)


def test_pcimem_builds_static_and_checks_its_arguments() -> None:
    import shutil

    from e2e_harness import tools

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (bash .ci/e2e-deps installs it)")
    from e2e_harness.elfinfo import needed

    binary = tools.build("pcimem")
    assert needed(binary) == []  # static: the capture initrd has no libc
    proc = subprocess.run(
        [str(binary), "0000:00:00.0", "9", "0", "4"], capture_output=True, check=False
    )
    assert proc.returncode == 2 and b"usage" in proc.stderr
    proc = subprocess.run(
        [str(binary), "0000:ff:1f.7", "0", "0", "4"], capture_output=True, check=False
    )
    assert proc.returncode == 1 and b"No such file" in proc.stderr  # never maps anything here
