"""Fast checks of the harness's own logic (no QEMU): the stage watcher, the cpio writer, and
what lets two kernel lines share the cache (prune, modules, vmlinux)."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import pytest
from e2e_harness import jsonfile
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
    proc = subprocess.run([str(binary), "msix", "0000:ff:1f.7"], capture_output=True, check=False)
    assert proc.returncode == 1 and b"No such file" in proc.stderr
    proc = subprocess.run([str(binary), "msix"], capture_output=True, check=False)
    assert proc.returncode == 2 and b"pcimem msix BDF" in proc.stderr


def test_readme_commands_are_what_a_user_types_for_each_generator() -> None:
    from e2e_harness import bootinitrd

    itools = bootinitrd.readme_commands("initramfs-tools")
    dracut = bootinitrd.readme_commands("dracut")
    for cmds in (itools, dracut):
        assert cmds[0] == "make -C csrc/collector install"  # the comment is dropped
        assert all("\\" not in c and "  #" not in c for c in cmds)
    assert itools[-1] == "update-initramfs -u"
    assert any(
        c.startswith("install -m 0755 contrib/initramfs-tools/scripts/init-top/") for c in itools
    )
    assert dracut[-1] == "dracut -f"
    assert "cp -r contrib/dracut/90handoff-early /usr/lib/dracut/modules.d/" in dracut
    with pytest.raises(bootinitrd.InitrdError):
        bootinitrd.readme_commands("no-such-generator")


def test_a_real_initrd_scenario_boots_by_label_and_may_end_in_the_first_kernel() -> None:
    from e2e_harness import Scenario

    sc = Scenario(
        name="x",
        first_script="",
        first_initrd="dracut",
        transition="poweroff",
        script_stages=("a",),
        extra_cmdline="foo=1",
    )
    names = [s.name for s in sc.stages()]
    assert names == ["first-root", "first-drivers", "first-script", "a", "poweroff"]
    assert sc.stages()[0].timeout >= 150  # kernel, initrd and root mount in one stage
    cmdline = sc.cmdline().split()
    assert "root=LABEL=e2eroot" in cmdline and "init=/sbin/e2e-first-init" in cmdline
    assert cmdline[-1] == "foo=1" and "pci=earlydump" in cmdline
    plain = Scenario(name="y", first_script="")
    assert [s.name for s in plain.stages()][:2] == ["first-init", "first-root"]
    assert "capture-done" in [s.name for s in plain.stages()]
    assert "root=" not in plain.cmdline()


def test_checks_read_the_collectors_snapshot_of_a_fake_sysfs(tmp_path: Path) -> None:
    import shutil

    from e2e_harness import checks
    from e2e_harness.config import REPO_ROOT

    assert checks.crc32c(b"123456789") == 0xE3069283
    assert shutil.which("make") and shutil.which("cc"), "make and cc: bash .ci/e2e-deps"
    prog = tmp_path / "collect"
    subprocess.run(
        ["make", "-s", "-C", str(REPO_ROOT / "csrc/collector"), f"OUT={prog}"],
        check=True,
        capture_output=True,
    )
    devs = tmp_path / "sys/bus/pci/devices"
    for addr, size, bound in (("0000:00:05.0", 256, False), ("0000:01:00.0", 4096, True)):
        d = devs / addr
        d.mkdir(parents=True)
        (d / "config").write_bytes(bytes([0x86, 0x80, 0x0E, 0x10, 0x03, 0x01]).ljust(size, b"\1"))
        for name, value in (
            ("vendor", "0x8086"),
            ("device", "0x100e"),
            ("class", "0x020000"),
            ("subsystem_vendor", "0x1af4"),
            ("subsystem_device", "0x1100"),
            ("revision", "0x03"),
        ):
            (d / name).write_text(value + "\n")
        if bound:
            (d / "driver").symlink_to(tmp_path)
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("df6cbc5c-72ab-42e1-be08-57ca505678ea\n")
    out = tmp_path / "run/handoff/early.bin"
    subprocess.run(
        [str(prog), "-q", "-r", str(tmp_path / "sys"), "-o", str(out), "-b", str(boot_id)],
        check=True,
    )
    raw = out.read_bytes()
    snap = checks.early_snapshot(raw)
    assert snap.boot_id == "df6cbc5c-72ab-42e1-be08-57ca505678ea" and snap.flags == 0
    assert list(snap.entries) == ["0000:00:05.0", "0000:01:00.0"]
    e1000, nvme = snap.entries.values()
    assert (e1000.config_size, len(e1000.data), e1000.driver_bound) == (256, 256, False)
    assert (nvme.config_size, len(nvme.data), nvme.driver_bound) == (4096, 4096, True)
    assert e1000.data == (devs / "0000:00:05.0/config").read_bytes() and e1000.vendor == 0x8086
    bad = bytearray(raw)
    bad[64 + 32 + 4] ^= 1  # a config byte of the first entry
    with pytest.raises(AssertionError, match="CRC"):
        checks.early_snapshot(bytes(bad))


def test_checks_read_earlydump_and_module_load_trace_lines() -> None:
    from e2e_harness import checks

    rows = "".join(
        f"[    0.702{i:03d}] {16 * i:08x}: "
        + " ".join(f"{(16 * i + j) & 0xFF:02x}" for j in range(16))
        + "\n"
        for i in range(16)
    )
    dmesg = "[    0.702310] pci 0000:00:05.0: config space:\n" + rows + "[    4.7] Run /init\n"
    assert checks.earlydump(dmesg) == {"0000:00:05.0": bytes(range(256))}
    assert checks.first_event(checks.kernel_log(dmesg), r"^Run /init")[0] == 4.7
    trace = (
        "# tracer: nop\n"
        "         systemd-1       [001] .....     5.634259: module_load: virtio_pci \n"
        "   (udev-worker)-128     [001] .....     9.743283: module_load: e1000 \n"
        "   (udev-worker)-121     [001] .....    10.113443: module_request: crypto-x wait=1\n"
    )
    assert checks.module_loads(trace) == [
        checks.ModuleLoad(5.634259, "systemd-1", "virtio_pci"),
        checks.ModuleLoad(9.743283, "(udev-worker)-128", "e1000"),
    ]


def _type0(bars: list[int], command: int = 0x0006) -> bytearray:
    cfg = bytearray(256)
    cfg[0x04:0x06] = command.to_bytes(2, "little")
    for i, b in enumerate(bars):
        cfg[0x10 + 4 * i : 0x14 + 4 * i] = b.to_bytes(4, "little")
    return cfg


def _resources(*lines: tuple[int, int, int]) -> list:
    from e2e_harness.pciview import Resource

    rows = [Resource(*x) for x in lines]
    return rows + [Resource(0, 0, 0)] * (17 - len(rows))


def test_pciview_finds_a_bar_the_kernel_did_not_enumerate_and_a_closed_window() -> None:
    from e2e_harness import pciview as V

    # A 64-bit memory BAR0 (type bits 0x4) at 0xfdc04000, an I/O BAR2 at 0xc000.
    nvme = _type0([0xFDC04004, 0, 0xC001])
    res = _resources((0xFDC04000, 0xFDC07FFF, 0x140204), (0, 0, 0), (0xC000, 0xC03F, 0x40101))
    assert V.bars(bytes(nvme)) == {0: (0xFDC04000, False), 2: (0xC000, True), 3: (0, False),
                                   4: (0, False), 5: (0, False)}
    iomem = [(0xFDC04000, 0xFDC07FFF, "0000:01:00.0")]
    agree = V.View({"0000:01:00.0": bytes(nvme)}, {"0000:01:00.0": res}, iomem, {}, "")
    assert V.disagreements(agree) == []
    moved = bytearray(nvme)
    moved[0x10:0x14] = (0xFDC00004).to_bytes(4, "little")  # written behind the kernel's back
    bad = V.View({"0000:01:00.0": bytes(moved)}, {"0000:01:00.0": res}, iomem, {}, "")
    assert V.disagreements(bad) == [
        "0000:01:00.0 BAR0: config 0xfdc00000, sysfs resource 0xfdc04000"
    ]
    assert V.changed_registers(bytes(nvme), bytes(moved)) == {"BAR0": (0xFDC04004, 0xFDC00004)}
    gone = V.View({"0000:01:00.0": bytes(nvme)}, {"0000:01:00.0": res}, [], {}, "")
    assert V.disagreements(gone) == [
        "0000:01:00.0 BAR0: 0xfdc04000-0xfdc07fff not in /proc/iomem as 0000:01:00.0"
    ]
    # A bridge whose I/O window firmware's state closed while the kernel still lists it.
    port = bytearray(256)
    port[0x0E] = 1
    port[0x1C], port[0x1D] = 0x10, 0x10  # I/O 0x1000-0x1fff
    port[0x20:0x24] = (0xFDCFFDC0).to_bytes(4, "little")  # memory 0xfdc00000-0xfdcfffff
    port[0x24:0x28] = (0x0001FFF1).to_bytes(4, "little")  # prefetchable: closed, 64-bit
    lines = [(0, 0, 0)] * 13 + [(0x1000, 0x1FFF, 0x101), (0xFDC00000, 0xFDCFFFFF, 0x200)]
    res = _resources(*lines)
    assert V.windows(bytes(port)) == {13: (0x1000, 0x1FFF), 14: (0xFDC00000, 0xFDCFFFFF)}
    ok = V.View({"0000:00:01.0": bytes(port)}, {"0000:00:01.0": res}, [], {}, "")
    assert V.disagreements(ok) == []
    port[0x1C], port[0x1D] = 0xF0, 0x00
    closed = V.View({"0000:00:01.0": bytes(port)}, {"0000:00:01.0": res}, [], {}, "")
    assert V.disagreements(closed) == [
        "0000:00:01.0 window 13: config closed, sysfs resource 0x1000-0x1fff"
    ]

def _core_with_loads(path: Path, loads: list[tuple[int, bytes]]) -> None:
    """An ELF64 core with one PT_LOAD per (physical address, bytes), data page-aligned."""
    import struct

    phoff, phsize = 64, 56
    off = 4096
    ehdr = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    ehdr += struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, phsize, len(loads), 0, 0, 0)
    phdrs, blobs = b"", b""
    for pa, blob in loads:
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, off + len(blobs), pa, pa, len(blob), len(blob), 0)
        blobs += blob
    path.write_bytes((ehdr + phdrs).ljust(off, b"\0") + blobs)


def test_dmaprobe_hashes_each_physical_page_once_and_the_host_finds_the_changes(
    tmp_path: Path,
) -> None:
    import shutil

    from e2e_harness import dma, tools

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (bash .ci/e2e-deps installs it)")
    probe = tools.build("dmaprobe")
    ram = bytearray(b"\x11" * 4096 * 4)
    core = tmp_path / "core"
    # The second segment maps RAM pages 1-2 again (as x86_64 cores map the kernel image).
    _core_with_loads(core, [(0x100000, bytes(ram)), (0x101000, bytes(ram[4096:12288]))])
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    out = subprocess.run([probe, "hash", core, a], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("pages 4 ms ")
    frame = dma.frame(b"N" * 8, 7, 12.5)
    ram[0x2100 : 0x2100 + len(frame)] = frame  # "DMA" into the third page
    _core_with_loads(core, [(0x100000, bytes(ram)), (0x101000, bytes(ram[4096:12288]))])
    subprocess.run([probe, "hash", core, b], capture_output=True, check=True)
    ha, hb = dma.read_hashes(a.read_bytes()), dma.read_hashes(b.read_bytes())
    assert sorted(ha) == [0x100000, 0x101000, 0x102000, 0x103000]
    assert dma.changed(ha, hb) == [0x102000]
    assert dma.frame(b"N" * 8, 7, 12.5)[14:46] in dma.page_bytes(core, 0x102000)
    assert dma.frames_in(core, b"N" * 8) == {7} and dma.frames_in(core, b"M" * 8) == set()
    with pytest.raises(ValueError, match="different pages"):
        dma.changed(ha, {0x100000: 1})
    with pytest.raises(ValueError, match="no DMAH header"):
        dma.read_hashes(b"XXXX\0\0\0\0")
    proc = subprocess.run([probe, "ring"], capture_output=True, check=False)
    assert proc.returncode == 2 and b"usage" in proc.stderr


def test_dma_sender_is_bounded_and_its_frames_carry_nonce_seq_and_time() -> None:
    import socket
    import struct
    import time

    from e2e_harness import dma

    sender = dma.Sender(rate=500)
    netdev = sender.netdev("n3")
    assert netdev == (
        f"socket,id=n3,udp=127.0.0.1:{sender.own_port},localaddr=127.0.0.1:{sender.qemu_port}"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as qemu:  # stands in for QEMU
        qemu.bind(("127.0.0.1", sender.qemu_port))
        qemu.settimeout(5)
        sender.start()
        got = [qemu.recv(2048) for _ in range(5)]
        sender.stop()
    log = sender.log()
    assert len(log["sent"]) >= 5 and log["sent"] == sorted(log["sent"])
    for seq, raw in enumerate(got):
        assert raw[:6] == bytes.fromhex("525400000003") and raw[12:14] == b"\x88\xb5"
        magic, nonce, n, sent = struct.unpack_from("<8s8sQd", raw, 14)
        assert (magic, nonce, n) == (dma.MAGIC, sender.nonce, seq)
        assert sent == log["sent"][seq] <= time.monotonic()
    with pytest.raises(ValueError, match="expected 0 < rate <= 1000"):
        bad = dma.Sender(rate=5000)
        bad.netdev("n3")
        try:
            bad.start()
        finally:
            bad.stop()


# -- two kernel lines (6.1 and 6.12) ------------------------------------------------------


def test_prune_keeps_the_other_kernel_lines_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from e2e_harness import debs

    monkeypatch.setattr(debs, "DEB_DIR", tmp_path / "debs")
    monkeypatch.setattr(debs, "PKG_DIR", tmp_path / "pkgs")
    names = {
        "k61": "linux-image-6.1.0-57-amd64_6.1.192-3_amd64",
        "k61old": "linux-image-6.1.0-56-amd64_6.1.190-1_amd64",
        "k612": "linux-image-6.12.118+deb12-amd64-unsigned_6.12.118-1~deb12u1_amd64",
        "lib": "libc6_2.36-9+deb12u14_amd64",
        "libold": "libc6_2.36-9+deb12u13_amd64",
    }
    for stem in names.values():
        (tmp_path / "debs").mkdir(exist_ok=True)
        (tmp_path / "debs" / f"{stem}.deb").write_bytes(b"")
        (tmp_path / "pkgs" / stem).mkdir(parents=True)
    keep = [
        debs.Deb("linux-image-6.1.0-57-amd64", f"{names['k61']}.deb"),
        debs.Deb("libc6", f"{names['lib']}.deb"),
    ]
    debs.prune(keep, "6.1")  # what a 6.1 run keeps: the 6.12 kernel is another line's
    left = {p.name.removesuffix(".deb") for p in (tmp_path / "debs").iterdir()}
    assert left == {names["k61"], names["k612"], names["lib"]}
    assert {p.name for p in (tmp_path / "pkgs").iterdir()} == left
    debs.prune([debs.Deb("libc6", f"{names['lib']}.deb")], "6.12")  # a 6.12 run's view
    assert {p.name for p in (tmp_path / "pkgs").iterdir()} == {names["k61"], names["lib"]}
    assert debs.is_kernel_of("linux-image-6.12.118+deb12-amd64-unsigned", "6.12")
    assert not debs.is_kernel_of("linux-image-6.12.118+deb12-amd64-unsigned", "6.1")
    assert not debs.is_kernel_of("linux-image-6.1.0-57-amd64", "6.12")


def test_kernel_lines_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from e2e_harness.config import KERNEL_LINES, kernel_lines

    monkeypatch.delenv("HANDOFF_E2E_KERNELS", raising=False)
    assert kernel_lines() == list(KERNEL_LINES) == ["6.1", "6.12"]
    monkeypatch.setenv("HANDOFF_E2E_KERNELS", " 6.12 ")
    assert kernel_lines() == ["6.12"]
    monkeypatch.setenv("HANDOFF_E2E_KERNELS", "6.1,5.10")
    with pytest.raises(ValueError, match=r"unknown kernel lines \['5.10'\]"):
        kernel_lines()


def test_a_scenario_on_another_kernel_line_runs_under_its_own_name() -> None:
    from e2e_harness import Scenario

    sc = Scenario.from_dir("handoff-kdump")
    assert (sc.kernel, sc.run_name) == ("6.1", "handoff-kdump")
    sc = Scenario.from_dir("handoff-kdump", kernel="6.12")
    assert (sc.kernel, sc.run_name) == ("6.12", "handoff-kdump-6.12")


def _module(tmp_path: Path, name: str, modinfo: str) -> bytes:
    """A relocatable ELF object with a .modinfo section, as a kernel module has."""
    src = tmp_path / f"{name}.c"
    items = "".join(f'"{kv}\\0"' for kv in modinfo.split(";"))
    src.write_text(f'__attribute__((section(".modinfo"), used)) const char mi[] = {items};\n')
    obj = tmp_path / f"{name}.o"
    subprocess.run(["gcc", "-c", "-o", str(obj), str(src)], check=True)
    return obj.read_bytes()


def test_module_tree_decompresses_ko_xz_and_leaves_built_in_modules_out(tmp_path: Path) -> None:
    import lzma
    import shutil

    from e2e_harness.kmods import ModuleTree

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (bash .ci/e2e-deps installs it)")
    root = tmp_path / "lib/modules/6.12.0-test"
    drv = root / "kernel/drivers"
    drv.mkdir(parents=True)
    # ext4 needs jbd2 (a module) and crc16 (built in: depends never names a built-in).
    (drv / "ext4.ko.xz").write_bytes(lzma.compress(_module(tmp_path, "ext4", "depends=jbd2")))
    (drv / "jbd2.ko.xz").write_bytes(lzma.compress(_module(tmp_path, "jbd2", "depends=")))
    (root / "modules.builtin").write_text(
        "kernel/drivers/virtio/virtio_pci.ko\nkernel/crypto/crc64_rocksoft_generic.ko\n"
    )
    tree = ModuleTree.load(root, tmp_path / "plain")
    assert tree.paths == {"ext4": "kernel/drivers/ext4.ko", "jbd2": "kernel/drivers/jbd2.ko"}
    assert tree.builtin == {"virtio_pci", "crc64_rocksoft_generic"}
    assert tree.load_order(("virtio_pci", "ext4")) == ["jbd2", "ext4"]
    assert tree.file("ext4").read_bytes()[:4] == b"\x7fELF"
    assert tree.file("ext4") == tmp_path / "plain/kernel/drivers/ext4.ko"
    assert tree.modules_dep(["jbd2", "ext4"]) == (
        "kernel/drivers/jbd2.ko:\nkernel/drivers/ext4.ko: kernel/drivers/jbd2.ko\n"
    )
    with pytest.raises(KeyError, match="no module 'nvme'"):
        tree.load_order(["nvme"])


def _bzimage(payload: bytes) -> bytes:
    """A minimal bzImage: the setup header's fields extract() reads, then the payload."""
    import struct

    setup = bytearray(2 * 512)  # setup_sects = 1
    setup[0x1F1] = 1
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", setup, 0x248, 16, len(payload))
    return bytes(setup) + b"\0" * 16 + payload + b"\0" * 64


def test_vmlinux_comes_out_of_a_zstd_bzimage_and_an_xz_one(tmp_path: Path) -> None:
    import lzma
    import shutil
    import struct

    from e2e_harness import vmlinux

    elf = b"\x7fELF" + bytes(range(256)) * 64
    xz = tmp_path / "vmlinuz-xz"
    xz.write_bytes(_bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ)))
    assert vmlinux.extract(xz, tmp_path / "v-xz") == tmp_path / "v-xz"
    assert (tmp_path / "v-xz").read_bytes() == elf
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed (.ci/run installs it)")
    frame = subprocess.run(["zstd", "-19", "-c"], input=elf, capture_output=True,
                           check=True).stdout
    zst = tmp_path / "vmlinuz-zst"
    zst.write_bytes(_bzimage(frame + struct.pack("<I", len(elf))))  # the kernel's size_append
    assert vmlinux.extract(zst, tmp_path / "v-zst") == tmp_path / "v-zst"
    assert (tmp_path / "v-zst").read_bytes() == elf
    # A wrong appended size is refused rather than booted.
    zst.write_bytes(_bzimage(frame + struct.pack("<I", len(elf) - 1)))
    assert vmlinux.extract(zst, tmp_path / "v-bad") is None
    assert not (tmp_path / "v-bad").exists()


def test_cache_json_is_replaced_never_written_through_a_hard_link(tmp_path: Path) -> None:
    """A private cache made with `cp -al` shares inodes with the shared one: rewriting a
    timings file in place would change both. Replacing it leaves the other copy as it was."""
    shared, private = tmp_path / "shared.json", tmp_path / "private.json"
    shared.write_text('{"run": 1}\n')
    private.hardlink_to(shared)
    jsonfile.replace(private, {"run": 2})
    assert shared.read_text() == '{"run": 1}\n'
    assert private.read_text() == '{\n "run": 2\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.json", "shared.json"]
