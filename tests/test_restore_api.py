"""handoff.restore.run, the library call `handoff restore` is a thin wrapper around."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.restore import (
    E1000,
    VNET,
    capture_tree,
    digest,
    proc_dir,
    record_of,
    run_cli,
    saved_devices,
)

import handoff.restore
from handoff import errors as E
from handoff.restore import report


def _record(tmp: Path) -> Path:
    rec = tmp / "rec.bin"
    rec.write_bytes(record_of(saved_devices(tmp)))
    return rec


def test_a_dry_run_returns_the_plan_and_the_report_and_writes_nothing(tmp_path: Path) -> None:
    rec, tree = _record(tmp_path), capture_tree(tmp_path)
    before = digest(tree.root)
    seen: list[tuple[str, str]] = []
    done = handoff.restore.run(str(rec), sysfs_root=str(tree.root),
                               proc_root=str(proc_dir(tmp_path)), dry_run=True,
                               notify=lambda kind, text: seen.append((kind, text)))
    assert isinstance(done, handoff.restore.Report)
    assert digest(tree.root) == before
    assert done.dry_run and not done.failed and done.refused == [] and seen == []
    assert done.record.generation == 1
    assert done.doc["kind"] == "handoff-restore-report" and done.doc["dry_run"] is True
    assert done.summary() == report.summary(done.doc)
    assert done.summary().startswith("handoff restore (dry run): record generation 1 of ")
    assert {d.addr for d in done.plan.devices} >= {E1000, VNET}


def test_run_and_the_cli_write_the_same_report(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    lib_tree, cli_tree = capture_tree(tmp_path, name="a"), capture_tree(tmp_path, name="b")
    proc = str(proc_dir(tmp_path))
    lib_rep, cli_rep = tmp_path / "lib.json", tmp_path / "cli.json"
    # No plugins: the fake trees have no BARs to map (test_restore_plugins has those).
    done = handoff.restore.run(str(rec), sysfs_root=str(lib_tree.root), proc_root=proc,
                               report_path=str(lib_rep), plugins=False)
    _out, err, rc = run_cli(["restore", "--no-plugins", "--record", str(rec), "--sysfs-root",
                             str(cli_tree.root), "--proc-root", proc, "--report",
                             str(cli_rep)])
    assert rc == (1 if done.failed else 0) == 0, err
    lib_doc, cli_doc = (json.loads(p.read_text()) for p in (lib_rep, cli_rep))
    # the process's own memory is measured, not derived: both have it, it differs
    for doc in (lib_doc, cli_doc):
        mem = doc.pop("memory")
        assert 0 < mem["rss_file"] <= mem["peak_rss"]
        assert mem["peak_private"] == mem["peak_rss"] - mem["rss_file"]
    assert lib_doc == cli_doc
    assert digest(lib_tree.root) == digest(cli_tree.root) != digest(capture_tree(
        tmp_path, name="c").root)  # the same writes happened, and some did


def test_an_unusable_record_raises_and_still_leaves_a_report(tmp_path: Path) -> None:
    bad = bytearray(_record(tmp_path).read_bytes())
    bad[-5] ^= 0x40
    rec = tmp_path / "bad.bin"
    rec.write_bytes(bytes(bad))
    tree = capture_tree(tmp_path)
    rep = tmp_path / "report.json"
    with pytest.raises(E.DigestMismatch):
        handoff.restore.run(str(rec), sysfs_root=str(tree.root),
                            proc_root=str(proc_dir(tmp_path)), report_path=str(rep))
    doc = json.loads(rep.read_text())
    assert doc["refused"] is True and doc["record"]["error_type"] == "DigestMismatch"


def test_a_missing_sysfs_tree_is_an_environment_problem(tmp_path: Path) -> None:
    with pytest.raises(E.EnvironmentProblem) as ei:
        handoff.restore.run(str(_record(tmp_path)), sysfs_root=str(tmp_path / "nope"),
                            dry_run=True)
    assert str(ei.value) == f"{tmp_path}/nope/bus/pci/devices is not a directory"
