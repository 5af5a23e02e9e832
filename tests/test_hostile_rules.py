"""Issue 14's rules outside the container parsers: save writes only what its reader accepts,
inspect shows any spec-valid record, JSON output stays JSON, and a policy's typos are errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import fakesysfs as F
from helpers import recordgen as G
from helpers import restore as TR

from handoff import errors as E
from handoff import payload as P
from handoff import sources
from handoff.cli import main
from handoff.restore.policy import parse_address, parse_policy

# --- save: the reader's address rule --------------------------------------------------------


@pytest.mark.parametrize("odd", ["0000:00:02.8", "0000:00:20.0", "0000:00:0A.0"])
def test_save_skips_an_entry_the_record_cannot_hold(tmp_path: Path, odd: str) -> None:
    tree = F.q35_tree(tmp_path)
    devs = Path(tree.pci_devices_dir)
    good = sorted(p.name for p in devs.iterdir())
    shutil.copytree(devs / good[1], devs / odd, symlinks=True)
    out = tmp_path / "rec"
    o, err, rc = TR.run_cli(["save", "--sysfs-root", str(tree.root_dir), "-o", str(out)])
    assert rc == 0, err
    assert (f"handoff: warning: {odd!r}: not a PCI address the record can hold (DDDD:BB:DD.F, "
            "device <= 1f, function <= 7), skipped") in err.splitlines()
    (found,) = sources.read_path(str(out))
    assert found.ok and found.record is not None
    assert sorted(d["addr"] for d in found.record.devices) == good
    assert o.startswith(f"wrote {out}: {len(good)} device(s)")


def test_save_skips_a_device_whose_entry_breaks_the_schema(tmp_path: Path) -> None:
    from handoff.save import collect_devices

    res = collect_devices(F.q35_tree(tmp_path), running_kernel=False)
    n = len(res.devices)
    from handoff.save import _writable

    res.devices[1].policy = 5  # type: ignore[assignment]  # what no reader accepts
    warnings: list[str] = []
    kept = _writable(res.devices, warnings)
    assert len(kept) == n - 1
    assert warnings == [(f"{res.devices[1].addr!r}: skipped, the record cannot hold it: "
                         "payload.policy: expected str, got int (R20)")]


@pytest.mark.parametrize("addr", ["0000:00:02.0\n", "0000:00:02.0\r", " 0000:00:02.0"])
def test_the_address_schema_matches_the_whole_string(addr: str) -> None:
    p = {"v": 1, "devices": [G.device(addr)]}
    with pytest.raises(E.SchemaViolation, match=r"is not DDDD:BB:DD.F"):
        P.validate(p)
    assert not P.is_pci_addr(addr)


# --- inspect: any spec-valid record ---------------------------------------------------------


@pytest.mark.parametrize("ids", [
    {"vendor": "8086", "device": "x"}, {"vendor": [1], "device": b"\x01"},
    {"vendor": -1, "device": 1 << 40, "class": "net"}, "not even a map", {"vendor": True},
])
def test_inspect_shows_other_bus_devices_with_odd_ids(tmp_path: Path, ids: object,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    p = {"v": 1, "devices": [G.device("0000:00:03.0"),
                             {"bus": "usb", "addr": "1-1", "ids": ids}]}
    P.validate(p)  # spec-valid: other buses are opaque (R20)
    f = tmp_path / "rec"
    f.write_bytes(G.make_record(p))
    assert main(["inspect", str(f)]) == 0
    out = capsys.readouterr().out
    assert "usb:1-1" in out
    assert main(["inspect", "--json", str(f)]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["records"][0]["devices"]
    assert rows[0]["ids"] == "1af4:1041" and rows[1]["addr"] == "usb:1-1"


def test_inspect_json_never_prints_nan(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import elfwriter as W

    report = b'{"summary": "x", "ratio": NaN, "big": Infinity}'
    core = W.core_bytes(W.default_notes() + [G.note(G.make_record()),
                                             G.note(report, n_type=0x48440002)])
    f = tmp_path / "vmcore"
    f.write_bytes(core)
    assert main(["inspect", "--json", str(f)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    (rep,) = doc["container"]["reports"]
    assert rep["error"].startswith("not UTF-8 JSON: NaN is not JSON")


def test_emit_json_turns_non_finite_floats_into_text(capsys: pytest.CaptureFixture[str]) -> None:
    from handoff.cli._output import emit_json

    emit_json("x", {"a": [float("nan"), {"b": float("-inf")}], "c": 1.5})
    doc = json.loads(capsys.readouterr().out,
                     parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert doc["a"] == ["nan", {"b": "-inf"}] and doc["c"] == 1.5


# --- policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern,why", [
    ("[0000", "'[' at position 1 is never closed"),
    ("0000:00:0]", "']' at position 10 closes no '['"),
    ("0000:0[[1]:00.0", "'[' at position 7 holds another '['"),
    ("0000:00:0[]", "'[' at position 10 is never closed"),
])
def test_an_unbalanced_address_glob_is_an_error(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"^address pattern {pattern!r}: ".replace("[", r"\[")
                       .replace("]", r"\]") + why.replace("[", r"\[").replace("]", r"\]")):
        parse_address(pattern)


def test_balanced_globs_still_work() -> None:
    assert parse_address("0000:0[1-3]:*") == "0000:0[1-3]:*"
    assert parse_address("0000:00:0[0-3].?") == "0000:00:0[0-3].?"


def test_the_address_glob_error_names_the_line() -> None:
    with pytest.raises(E.UsageError, match=r"^p.toml:3: rule 1, key 'address': "):
        parse_policy('version = 1\n[[rule]]\naddress = "[0000"\naction = "skip"\n', "p.toml")


def test_an_unknown_plugin_name_is_an_error(tmp_path: Path) -> None:
    pol = tmp_path / "p.toml"
    pol.write_text('plugins = ["nvmee"]\n')
    rec, tree = TR.cli_setup(tmp_path)
    before = TR.digest(tree.root)
    out, err, rc = TR.run_cli(["restore", "--policy", str(pol), "--record", str(rec),
                               "--sysfs-root", str(tree.root), "--proc-root",
                               str(TR.proc_dir(tmp_path)), "--dry-run"])
    assert rc == E.EXIT_USAGE and out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"handoff: error: {pol}: top level, key 'plugins': no installed "
                               "plugin is named 'nvmee' (installed: ")
    assert "nvme" in lines[0] and TR.digest(tree.root) == before
    assert lines[1] == ("handoff: hint: fix the name; `handoff plugins` lists the installed "
                        "plugins")


def test_a_rule_with_an_unknown_plugin_names_its_line() -> None:
    pol = parse_policy('[[rule]]\ndriver = "nvme"\naction = "quiesce"\nplugins = ["msi-x"]\n',
                       "p.toml")
    with pytest.raises(E.UsageError, match=r"^p.toml:1: rule 1, key 'plugins': no installed "
                       r"plugin is named 'msi-x' \(installed: msix, nvme\)$"):
        pol.check_plugins(["msix", "nvme"])
    pol.check_plugins(["msi-x"])


def test_load_refuses_a_policy_naming_an_unknown_plugin(machine: object, tmp_path: Path) -> None:
    from helpers.machine import dry

    pol = tmp_path / "policy.toml"
    pol.write_text('version = 1\n[[rule]]\ndriver = "nvme"\naction = "quiesce"\n'
                   'plugins = ["nvmee"]\n')
    rc, out, err, _work = dry(machine, "--policy", str(pol))  # type: ignore[arg-type]
    assert rc == E.EXIT_USAGE and out == ""
    assert err.splitlines()[0].startswith(
        f"handoff: error: {pol}:2: rule 1, key 'plugins': no installed plugin is named "
        "'nvmee' (installed: ")
