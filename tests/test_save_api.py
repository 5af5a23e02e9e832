"""handoff.save.save, the library call `handoff save` is a thin wrapper around."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import fakesysfs as F
from helpers.restore import run_cli

from handoff import errors as E
from handoff import record
from handoff.identity import IdentitySource
from handoff.save import save
from handoff.sysfs import SysfsTree


def _identity(tmp: Path) -> IdentitySource:
    root = tmp / "id"
    (root / "proc/sys/kernel/random").mkdir(parents=True)
    (root / "proc/sys/kernel/random/boot_id").write_text("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n")
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-56-amd64\n")
    (root / "proc/sys/kernel/hostname").write_text("q35\n")
    (root / "etc").mkdir()
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    return IdentitySource(root, clock=lambda: 1_764_000_000_000_000_000)


def test_save_tells_what_it_found_as_it_goes_and_returns_it(tmp_path: Path) -> None:
    tree = SysfsTree(F.build_tree(tmp_path / "sys", F.Q35))
    heard: list[tuple[str, str]] = []
    res = save(tmp_path / "rec.bin", tree, identity=_identity(tmp_path), running_kernel=False,
               notify=lambda kind, text: heard.append((kind, text)))
    assert heard == [("warning", w) for w in res.warnings] + [("note", n) for n in res.notes]
    assert res.path == str(tmp_path / "rec.bin") and res.generation == 1
    assert (tmp_path / "rec.bin").read_bytes() == res.record
    assert len(record.parse(res.record, exact=True).payload["devices"]) == len(res.devices) > 0


def test_a_tree_without_pci_devices_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(E.EnvironmentProblem) as ei:
        save(tmp_path / "rec.bin", SysfsTree(tmp_path / "empty"), identity=_identity(tmp_path))
    assert str(ei.value) == f"{tmp_path}/empty/bus/pci/devices is not a directory"
    assert not (tmp_path / "rec.bin").exists()


def test_the_cli_writes_what_the_library_writes(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35)
    # The CLI reads the identity of the machine it runs on (root "/", the real clock): give
    # every IdentitySource() the fake root and a fixed clock, so both records are comparable.
    monkeypatch.setattr("handoff.identity.IdentitySource.__init__.__defaults__",
                        (str(_identity(tmp_path).root), lambda: 1_764_000_000_000_000_000))
    out, err, rc = run_cli(["save", "--sysfs-root", str(root), "-o", str(tmp_path / "cli.bin")])
    assert rc == 0, err
    res = save(tmp_path / "lib.bin", SysfsTree(root))
    assert out == (f"wrote {tmp_path}/cli.bin: {len(res.devices)} device(s), generation 1, "
                   f"{len(res.record)} bytes\n")
    assert (tmp_path / "cli.bin").read_bytes() == res.record
