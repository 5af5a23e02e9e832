"""`handoff status`: fresh, stale (devices, drivers, VF counts changed), unloaded, not loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.machine import BOOT_ID, Machine, cli

NVME = "0000:01:00.0"


def loaded(m: Machine) -> Machine:
    rc, _, err = cli("load", "--root", str(m.root))
    assert rc == 0, err
    return m


def status(m: Machine) -> tuple[int, dict, str]:
    rc, out, err = cli("status", "--json", "--root", str(m.root))
    return rc, json.loads(out), err


def test_not_loaded_exits_3(machine: Machine) -> None:
    rc, out, _ = cli("status", "--root", str(machine.root))
    assert rc == 3
    assert out.splitlines()[0] == (
        f"status          NOT-LOADED: handoff has not loaded a kernel "
        f"({machine.state}/loaded.json is absent)")
    assert out.splitlines()[1] == "crash kernel    loaded: no, 256 MiB reserved"


def test_fresh_after_load(machine: Machine) -> None:
    rc, doc, _ = status(loaded(machine))
    assert rc == 0
    assert (doc["verdict"], doc["stale"], doc["changes"]) == ("fresh", False, [])
    assert doc["loaded"]["generation"] == 1
    assert doc["exit_code"] == 0 and "error" not in doc
    assert doc["crash_loaded"] is True
    assert doc["crash_size"] == 256 << 20


def test_driver_unbound_makes_it_stale(machine: Machine) -> None:
    loaded(machine)
    link = machine.sys / "bus/pci/devices" / NVME / "driver"
    assert os.path.basename(os.readlink(link)) == "nvme"
    link.unlink()
    rc, doc, _ = status(machine)
    assert rc == 1
    assert doc["verdict"] == "stale" and doc["stale"] is True
    assert doc["changes"] == [f"{NVME}: driver nvme -> (none)"]
    # the error contract's keys, as on every non-zero exit with --json
    assert (doc["error"], doc["exit_code"], doc["hint"]) == (
        "stale: 1 change(s) since generation 1 was loaded", 1,
        "run `handoff load` again so the capture kernel gets a current record")
    rc, out, _ = cli("status", "--root", str(machine.root))
    assert rc == 1
    assert out.splitlines()[0] == ("status          STALE: 1 change(s) since generation 1 was "
                                   "loaded")
    assert f"  changed: {NVME}: driver nvme -> (none)" in out.splitlines()
    assert out.splitlines()[-1] == ("run `handoff load` again so the capture kernel gets a "
                                    "current record")


def test_driver_rebound_elsewhere_makes_it_stale(machine: Machine) -> None:
    loaded(machine)
    drv = machine.sys / "bus/pci/drivers/vfio-pci"
    drv.mkdir(parents=True)
    link = machine.sys / "bus/pci/devices" / NVME / "driver"
    link.unlink()
    link.symlink_to(os.path.relpath(drv, link.parent))
    assert status(machine)[1]["changes"] == [f"{NVME}: driver nvme -> vfio-pci"]


def test_sriov_and_device_changes(machine: Machine) -> None:
    (machine.sys / "bus/pci/devices" / NVME / "sriov_numvfs").write_text("0\n")
    loaded(machine)
    (machine.sys / "bus/pci/devices" / NVME / "sriov_numvfs").write_text("4\n")
    (machine.sys / "bus/pci/devices/0000:04:00.0").unlink()
    rc, doc, _ = status(machine)
    assert rc == 1
    assert doc["changes"] == [f"{NVME}: sriov_numvfs 0 -> 4",
                              "0000:04:00.0: device 1af4:1042 is gone"]


def test_unloaded_since_exits_3(machine: Machine) -> None:
    loaded(machine)
    (machine.sys / "kernel/kexec_crash_loaded").write_text("0\n")
    rc, doc, _ = status(machine)
    assert rc == 3
    assert doc["verdict"] == "unloaded"
    assert doc["reason"] == "generation 1 was loaded, but kexec_crash_loaded is now 0"


def test_load_from_an_earlier_boot_is_not_this_boots(machine: Machine) -> None:
    loaded(machine)
    (machine.root / "proc/sys/kernel/random/boot_id").write_text(
        "11111111-2222-3333-4444-555555555555\n")
    rc, doc, _ = status(machine)
    assert rc == 3
    assert doc["reason"] == "the last `handoff load` was in an earlier boot"


def test_lockdown_is_reported(machine: Machine) -> None:
    sec = machine.sys / "kernel/security"
    sec.mkdir()
    (sec / "lockdown").write_text("none [integrity] confidentiality\n")
    assert status(machine)[1]["lockdown"] == "integrity"


def test_status_shows_what_the_kernel_permits(machine: Machine) -> None:
    """Lockdown, config writes, BAR mapping and reset methods, as restore will record them;
    status only reads (no write-back probe, no mapping)."""
    sec = machine.sys / "kernel/security"
    sec.mkdir()
    (sec / "lockdown").write_text("none [integrity] confidentiality\n")
    before = {p: p.read_bytes() for p in machine.sys.rglob("config")}
    caps = status(machine)[1]["capabilities"]
    assert caps["lockdown"] == "integrity"
    assert caps["config_writes"]["permitted"] is False
    assert caps["bar_mapping"]["permitted"] is False
    assert set(caps["devices"]) == {p.name for p in (machine.sys / "bus/pci/devices").iterdir()}
    assert "config writes   REFUSED" in caps["text"]
    assert {p: p.read_bytes() for p in machine.sys.rglob("config")} == before
    _rc, out, _ = cli("status", "--root", str(machine.root))
    assert "what this kernel permits" in out and "lockdown        integrity" in out


def test_unreadable_state_file(machine: Machine) -> None:
    (machine.state / "loaded.json").write_text("{not json")
    rc, _, err = cli("status", "--root", str(machine.root))
    assert rc == 2
    assert err.splitlines()[0].startswith(f"handoff: error: {machine.state}/loaded.json: not JSON")


@pytest.mark.parametrize("boot", [BOOT_ID])
def test_state_names_this_boot(machine: Machine, boot: str) -> None:
    loaded(machine)
    st = json.loads((machine.state / "loaded.json").read_text())
    assert st["boot_id"] == boot
    assert Path(st["initrd_copy"]).is_file()
