"""The sysfs layer: the driver bound now, the kernel's ``resource`` lines, BAR agreement, the
outside-the-tree checks, and the import rule that keeps it below restore and plugins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fakesysfs as F

from handoff.sysfs import SysfsTree
from handoff.sysfs.ops import OutsideTree, SysfsAccess
from handoff.sysfs.resource import (
    IORESOURCE_MEM,
    IORESOURCE_UNSET,
    Resource,
    bar_disagreements,
    parse_resources,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_driver_bound_now_is_the_capture_kernels(tmp_path: Path) -> None:
    tree = SysfsTree(F.build_tree(tmp_path / "sys", F.Q35_CAPTURE))
    access = SysfsAccess(tree)
    assert tree.driver_now("0000:00:01.0") == access.driver_now("0000:00:01.0") == "pcieport"
    assert tree.driver_now("0000:01:00.0") is None and access.driver_now("0000:01:00.0") is None


def test_resource_lines_and_bars_agree_on_a_fresh_tree(tmp_path: Path) -> None:
    tree = SysfsTree(F.build_tree(tmp_path / "sys", F.Q35_CAPTURE))
    res = SysfsAccess(tree).resources("0000:01:00.0")
    assert res == tree.resources("0000:01:00.0")
    assert (res[0].start, res[0].size, res[0].is_mem, res[0].assigned) == (
        0xFE000000, 0x4000, True, True)
    for addr in tree.pci_addresses():
        assert bar_disagreements(tree.config(addr).read_all(), tree.resources(addr)) == []


def test_a_bar_moved_behind_the_kernels_back_is_a_disagreement(tmp_path: Path) -> None:
    tree = SysfsTree(F.build_tree(tmp_path / "sys", F.Q35_CAPTURE))
    cfg = bytearray(tree.config("0000:01:00.0").read_all())
    cfg[0x10:0x14] = (int.from_bytes(cfg[0x10:0x14], "little") + 0x4000).to_bytes(4, "little")
    assert bar_disagreements(bytes(cfg), tree.resources("0000:01:00.0")) == [
        "BAR0 holds 0xfe004000, the kernel's resource0 starts at 0xfe000000"]


def test_an_unset_resource_is_not_assigned() -> None:
    (r,) = parse_resources(f"0x0 0x3fff {IORESOURCE_MEM | IORESOURCE_UNSET:#x}\n")
    assert r == Resource(0, 0, 0x3FFF, IORESOURCE_MEM | IORESOURCE_UNSET)
    assert not r.assigned
    assert parse_resources("garbage\n0x1000 0x1fff 0x200\n")[0] == Resource(0, 0, 0, 0)


def test_paths_outside_the_tree_are_refused(tmp_path: Path) -> None:
    access = SysfsAccess(SysfsTree(F.build_tree(tmp_path / "sys", F.Q35_CAPTURE)))
    with pytest.raises(OutsideTree, match="is not a PCI address"):
        access.driver_now("../../etc")
    with pytest.raises(OutsideTree, match="not something restore does"):
        access.write_attr("0000:01:00.0", "driver_override", "x")


@pytest.mark.parametrize("module,forbidden", [
    ("handoff.sysfs.probe", "handoff.restore"), ("handoff.sysfs.ops", "handoff.restore"),
    ("handoff.sysfs.probe", "handoff.plugins"), ("handoff.plugins.bar", "handoff.restore"),
    ("handoff.plugins", "handoff.restore"), ("handoff.kexec.checks", "handoff.restore"),
])
def test_layers_import_only_from_below(module: str, forbidden: str) -> None:
    """sysfs sits below restore and plugins; plugins and the loader's checks do not need
    the restore engine (issue 17: the restore <-> plugins and kexec -> restore cycles)."""
    code = (f"import sys, {module}; "
            f"print(sorted(m for m in sys.modules if m == {forbidden!r} "
            f"or m.startswith({forbidden + '.'!r})))")
    r = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       text=True, cwd=ROOT)
    assert r.stdout.strip() == "[]"
