"""handoff diff: saved config space versus a tree now, decoded into registers and bits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import fakesysfs as F
from helpers.restore import (
    E1000,
    NVME,
    PORT1,
    VBLK,
    VNET,
    capture_tree,
    fixture,
    get,
    parsed,
    put,
    record_of,
    run_cli,
    saved_devices,
)

from handoff.diff import diff_config, diff_record, render
from handoff.restore.apply import scan


def test_qemu_pair_decodes_to_four_msix_enables(tmp_path: Path) -> None:
    rec = parsed(record_of(saved_devices(tmp_path)))
    diffs = diff_record(rec.payload, scan(capture_tree(tmp_path)), "live")
    changed = {d.addr: d for d in diffs if d.status == "changed"}
    assert sorted(changed) == [NVME, VNET, VBLK, "0000:04:00.0"]
    for d in changed.values():
        (c,) = d.changes
        assert c.reg == "MSI-X Message Control"
        assert c.fields == [("Enable", "1", "0", "rw")]
    assert all(d.status == "same" for d in diffs if d.addr not in changed)
    text = render(diffs, "live")
    assert "0000:01:00.0  1b36:0010  Non-Volatile memory controller: 1 register(s) differ" in text
    assert "  MSI-X Message Control (0x042): 0x8040 -> 0x0040\n      Enable: 1 -> 0" in text
    assert "13 device(s): 4 changed, 9 unchanged, 0 not comparable" in text
    assert "0000:00:05.0" not in text  # unchanged devices are not listed by default
    assert "0000:00:05.0" in render(diffs, "live", show_same=True)


def test_header_fields_bits_and_bars_are_named() -> None:
    old = bytes(fixture(NVME))
    new = bytearray(old)
    put(new, 0x04, 2, get(old, 4, 2) & ~0x4)  # Bus Master off
    put(new, 0x06, 2, get(new, 6, 2) | 0x2000)  # Received Master Abort
    put(new, 0x10, 4, 0x4)  # BAR0 lost its address
    put(new, 0x88, 2, (get(new, 0x88, 2) & ~0xE0) | 0x20)  # Max Payload 256
    changes, notes = diff_config(old, bytes(new))
    by = {c.reg: c for c in changes}
    assert by["COMMAND"].fields == [("Bus Master", "1", "0", "rw")]
    assert by["STATUS"].fields == [("Received Master Abort", "0", "1", "w1c")]
    assert by["BAR0"].fields[0][1:3] == ("memory at 0xfe000000 (64-bit, non-prefetchable)",
                                         "memory at 0x0 (64-bit, non-prefetchable)")
    assert by["PCIe Device Control"].fields == [("Max Payload", "128 bytes", "256 bytes", "rw")]
    text = render([_dd(changes)], "live")
    assert "      Received Master Abort: 0 -> 1 (status, W1C)" in text
    assert "  BAR0 (0x010): 0xfe000004 -> 0x00000004" in text
    assert "memory at 0xfe000000 (64-bit, non-prefetchable) -> memory at 0x0" in text
    assert not notes


def _dd(changes: list) -> object:
    from handoff.diff import DeviceDiff

    return DeviceDiff(NVME, "1b36:0010", "NVMe", "changed", changes)


def test_bridge_windows_and_vendor_capabilities() -> None:
    old = bytes(fixture(PORT1))
    new = bytearray(old)
    put(new, 0x1C, 2, 0x2020)
    put(new, 0x19, 1, 5)
    changes, _ = diff_config(old, bytes(new))
    by = {c.reg: c for c in changes}
    assert ("I/O Base", "0x1000", "0x2000", "rw") in by["I/O Base/Limit"].fields
    assert ("I/O Limit", "0x1fff", "0x2fff", "rw") in by["I/O Base/Limit"].fields
    assert by["Bus Numbers"].fields == [("Secondary Bus", "0x1", "0x5", "rw")]
    vold = bytes(fixture(VNET))
    vnew = bytearray(vold)
    put(vnew, 0x84 + 8, 4, 0xABCDEF01)
    (c,), _ = diff_config(vold, bytes(vnew))
    assert c.reg == "Vendor Specific +0x8" and c.offset == 0x8C and not c.fields


def test_partial_snapshot_and_capability_changes() -> None:
    old = bytes(fixture(PORT1))[:256]
    changes, notes = diff_config(old, bytes(fixture(PORT1, F.Q35_CAPTURE)))
    assert not changes
    assert notes == ["only the first 256 bytes are compared (saved 256, now 4096)"]
    new = bytearray(fixture(PORT1))
    new[0x34] = 0x48  # the list now starts at MSI-X: the PCIe capability disappears
    _, notes = diff_config(bytes(fixture(PORT1)), bytes(new))
    assert "PCI Express at 0x54 was there, is not now" in notes


def test_cli_diff_text_json_and_identity_changes(tmp_path: Path) -> None:
    rec = tmp_path / "rec.bin"
    rec.write_bytes(record_of(saved_devices(tmp_path)))
    src = tmp_path / "src"
    shutil.copytree(F.Q35_CAPTURE, src)
    (src / f"{E1000}.bin").unlink()
    shutil.copy(src / f"{VNET}.bin", src / "0000:05:00.0.bin")
    tree = capture_tree(tmp_path, src)
    out, err, rc = run_cli(["diff", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--against", "early"])
    assert rc == 0, err
    assert out.startswith("saved early state -> now\n")
    assert "0000:00:05.0  8086:100e  Ethernet controller: VANISHED" in out
    assert "0000:05:00.0  1af4:1041  Ethernet controller: NEW" in out
    assert "Enable: 1 -> 0" in out and "0xffff" not in out.split("NEW")[0][-200:]
    out, err, rc = run_cli(["diff", "--record", str(rec), "--sysfs-root", str(tree.root),
                            "--json"])
    doc = json.loads(out)
    assert doc["kind"] == "diff" and set(doc["against"]) == {"early", "live"}
    live = {d["addr"]: d for d in doc["against"]["live"]}
    assert live[E1000]["status"] == "vanished" and live["0000:05:00.0"]["status"] == "appeared"
    (ch,) = live[NVME]["changes"]
    assert ch == {"reg": "MSI-X Message Control", "offset": 0x42, "width": 2,
                  "old": "0x8040", "new": "0x0040",
                  "fields": [{"field": "Enable", "old": "1", "new": "0", "kind": "rw"}]}
