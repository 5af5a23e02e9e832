"""lspci habits on real data: `inspect -x` of a record saved from this machine's /sys prints
what `lspci -x` prints (names from the system's pci.ids, hex as show_hex_dump()), and -s/-d
select the same devices as lspci's on save, inspect, diff, restore and plugins."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from helpers import fakesysfs as F

from handoff.cli import main
from handoff.devices.pciids import PciIds


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _blocks(text: str) -> list[str]:
    """The device blocks of `lspci -x` (or of inspect's -x tail): header + hex lines."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln[:1].isdigit() and ": " in ln
                  and not ln.startswith("00: ")), len(lines))
    return [ln for ln in lines[start:] if ln.strip()]


@pytest.fixture(scope="module")
def real_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.isdir("/sys/bus/pci/devices") or not os.listdir("/sys/bus/pci/devices"):
        pytest.fail("this machine shows no PCI devices in /sys; the test needs some")
    rec = tmp_path_factory.mktemp("real") / "rec.bin"
    rc, _, err = _run("save", "-o", str(rec))
    assert rc == 0, err
    return rec


@pytest.mark.parametrize("flag", ["-x", "-xxx"])
def test_inspect_hex_is_lspcis(real_record: Path, flag: str) -> None:
    lspci = shutil.which("lspci")
    assert lspci, "pciutils is missing: .ci/run installs it"
    if flag == "-xxx" and os.geteuid() != 0:
        pytest.skip("only root reads past 64 bytes of config space, for lspci and for save")
    theirs = subprocess.run([lspci, flag], capture_output=True, text=True, check=True).stdout
    rc, ours, err = _run("inspect", str(real_record), flag)
    assert rc == 0, err
    assert _blocks(ours) == _blocks(theirs)
    assert len(_blocks(theirs)) > 0


def test_selection_on_real_devices_is_lspcis(real_record: Path) -> None:
    lspci = shutil.which("lspci")
    assert lspci
    for args in (["-s", "00:03"], ["-d", "1af4:"], ["-d", "::0200"], ["-s", ".0", "-d", "8086:"]):
        theirs = _blocks(subprocess.run([lspci, "-x", *args], capture_output=True, text=True,
                                        check=True).stdout)
        rc, ours, err = _run("inspect", str(real_record), "-x", *args)
        assert rc == 0, err
        assert _blocks(ours) == theirs, args


def test_names_follow_pciids_rules(tmp_path: Path) -> None:
    ids = tmp_path / "pci.ids"
    ids.write_text("# test\n8086  Intel Corporation\n\t10d3  82574L Gigabit Network Connection\n"
                   "1af4  Red Hat, Inc.\nC 02  Network controller\n\t00  Ethernet controller\n"
                   "C ff  Unassigned class\n")
    p = PciIds(str(ids))
    assert p.line("0000:03:00.0", 0x8086, 0x10D3, 0x020000, 0) == \
        "03:00.0 Ethernet controller: Intel Corporation 82574L Gigabit Network Connection"
    assert p.line("0001:03:00.0", 0x1AF4, 0x1000, 0xFFFF00, 1) == \
        "0001:03:00.0 Unassigned class [ffff]: Red Hat, Inc. Device 1000 (rev 01)"
    assert p.line("0000:00:01.0", 0x1234, 0x5678, 0x028000, 0) == \
        "00:01.0 Network controller [0280]: Device 1234:5678"
    assert PciIds(str(tmp_path / "none")).class_name(0x010802) == "Class 0108"
    # asked again (a record repeats ids), each pair keeps its own name
    assert [p.vendor_device(v, d) for v, d in ((0x8086, 0x10D3), (0x8086, 0x10D4)) * 2] == [
        "Intel Corporation 82574L Gigabit Network Connection", "Intel Corporation Device 10d4"
    ] * 2


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return F.build_tree(tmp_path / "sys")


def test_every_device_command_takes_s_and_d(tree: Path, tmp_path: Path) -> None:
    rec = tmp_path / "rec.bin"
    rc, _, err = _run("save", "--sysfs-root", str(tree), "-o", str(rec))
    assert rc == 0, err
    rc, out, _ = _run("save", "--sysfs-root", str(tree), "--json")
    every = [d["addr"] for d in json.loads(out)["devices"]]
    rc, out, err = _run("save", "--sysfs-root", str(tree), "--json", "-s", "00:")
    assert rc == 0, err
    on_bus0 = [d["addr"] for d in json.loads(out)["devices"]]
    assert on_bus0 == [a for a in every if a.startswith("0000:00:")] and on_bus0 != every
    rc, out, err = _run("inspect", str(rec), "--json", "-s", "00:")
    assert [d["addr"] for d in json.loads(out)["records"][0]["devices"]] == on_bus0
    rc, out, err = _run("diff", "--record", str(rec), "--sysfs-root", str(tree), "--json",
                        "-s", "00:", "--all")
    assert rc == 0, err
    assert sorted({d["addr"] for d in json.loads(out)["against"]["live"]}) == on_bus0
    rc, out, err = _run("restore", "--record", str(rec), "--sysfs-root", str(tree), "--dry-run",
                        "--force", "--no-plugins", "--json", "-s", "00:")
    assert rc in (0, 1), err
    assert sorted(d["addr"] for d in json.loads(out)["report"]["devices"]) == on_bus0
    rc, out, err = _run("plugins", "--sysfs-root", str(tree), "--json", "-s", "00:")
    assert rc == 0, err
    assert [d["addr"] for d in json.loads(out)["devices"]] == on_bus0
    rc, _, err = _run("plugins", "-d", "1af4:")
    assert rc == 2 and "need --sysfs-root" in err
