"""The one device-pattern grammar (handoff.devices.patterns): ids, classes, drivers, and
lspci's -s and -d, the latter checked against pciutils' own lspci on a dump file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.asserts import raises_exactly

from handoff.devices import patterns
from handoff.devices.patterns import (
    ClassPattern,
    IdPattern,
    parse_class,
    parse_device_filter,
    parse_driver,
    parse_id,
    parse_slot,
)


def test_every_user_shares_one_grammar() -> None:
    from handoff.plugins import api
    from handoff.restore import defaults, policy

    assert api.parse_id is policy.parse_id is patterns.parse_id
    assert api.parse_class is policy.parse_class is patterns.parse_class
    assert api.IdRule is policy.IdPattern is IdPattern
    assert api.ClassRule is policy.ClassPattern is ClassPattern
    assert policy.default_action is defaults.default_action is patterns.default_action


@pytest.mark.parametrize("text,vendor,device,ok", [
    ("8086:10d3", 0x8086, 0x10D3, True), ("8086:10D3", 0x8086, 0x10D4, False),
    ("8086:*", 0x8086, 0x1234, True), ("*:10d3", 0x1AF4, 0x10D3, True),
    ("xxxx:10d3", 0x1AF4, 0x10D4, False), (":10d3", 0x1, 0x10D3, True), ("8086:", 0x8086, 7, True),
    ("1af4:1040-107f", 0x1AF4, 0x1040, True), ("1af4:1040-107f", 0x1AF4, 0x107F, True),
    ("1af4:1040-107f", 0x1AF4, 0x1080, False), ("*:1040-107f", 0x8086, 0x1041, True),
])
def test_ids(text: str, vendor: int, device: int, ok: bool) -> None:
    assert parse_id(text).matches(vendor, device) is ok


@pytest.mark.parametrize("bad,why", [
    ("8086", "is not VVVV:DDDD"), ("8086:10d3:1", "is not VVVV:DDDD"),
    ("808g:1234", "vendor '808g'"), ("8086:123", "device '123'"),
    ("8086:2000-1000", "range ends before it starts"), ("8086:*-1000", "needs a first"),
    ("8086:1000-", "needs a last"),
])
def test_bad_ids(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_id(bad)


def test_id_and_class_text_and_equality() -> None:
    assert parse_id("1AF4:1040-107f") == IdPattern(0x1AF4, 0x1040, 0x107F)
    assert str(parse_id("1AF4:1040-107f")) == "1af4:1040-107f"
    assert parse_id("1AF4:1040-107f").text == "1AF4:1040-107f"  # the user's own words
    assert str(parse_id("*:10d3")) == "*:10d3"
    assert parse_class("01:08") == parse_class("0108") == parse_class("0x0108xx")
    assert str(parse_class("02:*:00")) == "02xx00"
    assert ClassPattern(0x10, 0x1F) == ClassPattern(0x10, 0x1F, "x")


@pytest.mark.parametrize("bad", ["0x1", "01:8", "zz", "01:08:02:00", "0x01080", "", "0108x"])
def test_bad_classes(bad: str) -> None:
    with pytest.raises(ValueError, match="class"):
        parse_class(bad)


def test_drivers() -> None:
    assert parse_driver("mlx5_core") == "mlx5_core"
    for bad in ("", "../x", "a b", "nvme*"):
        with pytest.raises(ValueError, match="is not a module name"):
            parse_driver(bad)


def test_a_policy_rule_takes_the_driver_grammar() -> None:
    from handoff.errors import UsageError
    from handoff.restore.policy import parse_policy

    with pytest.raises(UsageError, match=r"p.toml:2: rule 1, key 'driver': driver '../x'"):
        parse_policy('[[rule]]\ndriver = "../x"\naction = "skip"\n', "p.toml")


@pytest.mark.parametrize("text,fields", [
    ("03:00.0", (None, 3, 0, 0)), ("0000:03:00.0", (0, 3, 0, 0)), ("1:3:", (1, 3, None, None)),
    (".1", (None, None, None, 1)), ("1f", (None, None, 0x1F, None)), ("*:*.*", (None,) * 4),
    ("::", (None,) * 4), ("", (None,) * 4), ("3:.7", (None, 3, None, 7)),
])
def test_slots(text: str, fields: tuple[int | None, ...]) -> None:
    s = parse_slot(text)
    assert (s.domain, s.bus, s.dev, s.fn) == fields


@pytest.mark.parametrize("bad,why", [
    ("100:00.0", "invalid bus"), ("20", "invalid device"), (".8", "invalid function"),
    ("g:0", "invalid bus"), ("1:2:3:4", "is not"), ("x", "invalid device"),
])
def test_bad_slots(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_slot(bad)


def test_device_filter_class_is_lspcis() -> None:
    f = parse_device_filter("::0200")
    assert f.matches(0x1AF4, 0x1041, 0x020000) and not f.matches(0x1AF4, 0x1041, 0x018000)
    f = parse_device_filter("1af4::0108:02")
    assert f.matches(0x1AF4, 1, 0x010802) and not f.matches(0x1AF4, 1, 0x010801)
    for bad in ("8086", "8086:1:2:3:4", "10000:", ":1:10000", "::1:100"):
        with raises_exactly(ValueError, match=f"^(device filter )?{re.escape(repr(bad))}"):
            parse_device_filter(bad)


# --- against pciutils ------------------------------------------------------------------------

_DEVICES = [  # (address, vendor, device, class << 8 | prog-if)
    ("0000:00:00.0", 0x8086, 0x29C0, 0x060000), ("0000:00:1f.2", 0x8086, 0x2922, 0x010601),
    ("0000:01:00.0", 0x1AF4, 0x1041, 0x020000), ("0000:02:00.0", 0x1B36, 0x0010, 0x010802),
    ("0000:03:1f.7", 0x8086, 0x10D3, 0x020000), ("0001:03:00.1", 0x144D, 0xA808, 0x010802),
    ("0001:81:00.0", 0x1AF4, 0x1042, 0x010000), ("000a:00:02.3", 0x15B3, 0x101D, 0x020700),
]


def _lspci_dump(path: Path) -> None:
    """A file in `lspci -x` form that `lspci -F` reads (64 bytes per function)."""
    out = []
    for addr, v, d, c in _DEVICES:
        cfg = bytearray(64)
        cfg[0:4] = v.to_bytes(2, "little") + d.to_bytes(2, "little")
        cfg[9:12] = c.to_bytes(3, "little")
        out.append(f"{addr} x")
        out += [f"{o:02x}: " + " ".join(f"{b:02x}" for b in cfg[o:o + 16]) for o in (0, 16, 32, 48)]
        out.append("")
    path.write_text("\n".join(out))


@pytest.mark.parametrize("args", [
    ["-s", "03:"], ["-s", "1:3:"], ["-s", "0:3:1f.7"], ["-s", ".1"], ["-s", "00.0"],
    ["-s", "*:*.3"], ["-s", "a::"], ["-s", "1f"], ["-s", "81:0"],
    ["-d", "8086:"], ["-d", ":1041"], ["-d", "::0108"], ["-d", "*:*:0200"], ["-d", "::0108:02"],
    ["-d", "1af4::0100"], ["-s", "03:", "-d", "8086:"], ["-s", "1:", "-d", "::0200"],
])
def test_selection_agrees_with_lspci(tmp_path: Path, args: list[str]) -> None:
    lspci = shutil.which("lspci")
    assert lspci, "pciutils is missing: .ci/run installs it"
    dump = tmp_path / "dump.txt"
    _lspci_dump(dump)
    out = subprocess.run([lspci, "-F", str(dump), "-D", "-n", *args], capture_output=True,
                         text=True, check=True).stdout
    theirs = sorted(line.split()[0] for line in out.splitlines())
    opts = dict(zip(args[::2], args[1::2]))
    sel = patterns.Selection(parse_slot(opts["-s"]) if "-s" in opts else None,
                             parse_device_filter(opts["-d"]) if "-d" in opts else None)
    ours = sorted(a for a, v, d, c in _DEVICES if sel.matches(a, v, d, c))
    assert ours == theirs
    assert ours, "a filter that selects nothing proves little"


@pytest.mark.parametrize("args", [["-s", "100:"], ["-s", "20"], ["-s", ".8"],
                                  ["-d", "10000:"], ["-d", "8086"]])
def test_lspci_refuses_what_we_refuse(tmp_path: Path, args: list[str]) -> None:
    lspci = shutil.which("lspci")
    assert lspci
    dump = tmp_path / "dump.txt"
    _lspci_dump(dump)
    r = subprocess.run([lspci, "-F", str(dump), *args], check=False, capture_output=True,
                       text=True)
    assert r.returncode != 0
    with raises_exactly(ValueError):
        (parse_slot if args[0] == "-s" else parse_device_filter)(args[1])
