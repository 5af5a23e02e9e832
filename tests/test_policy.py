"""Restore policy: patterns, rules, the written-down defaults, and errors naming line and key."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from helpers import fakesysfs as F
from helpers.asserts import raises_exactly

from handoff.devices.model import PciDevice, Snapshot
from handoff.devices.pci import collect
from handoff.errors import EXIT_USAGE, UsageError
from handoff.restore.policy import (
    DEFAULT_POLICY,
    default_action,
    default_decision,
    parse_address,
    parse_class,
    parse_id,
    parse_policy,
)
from handoff.sysfs import SysfsTree

DOCS = Path(__file__).resolve().parents[1] / "docs" / "policy.md"


@pytest.fixture(scope="module")
def q35(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PciDevice]:
    root = F.build_tree(tmp_path_factory.mktemp("q35") / "sys", F.Q35)
    devs = {d.addr: d for d in collect(SysfsTree(root), privileged=True).devices}
    for d in devs.values():
        d.early = d.live
    return devs


# --- patterns ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,code,ok", [
    ("0x0108xx", 0x010802, True), ("0x0108xx", 0x010902, False), ("01:08", 0x010802, True),
    ("01:08:02", 0x010802, True), ("01:08:01", 0x010802, False), ("0108", 0x0108FF, True),
    ("01", 0x01FFFF, True), ("02", 0x010000, False), ("02:*:00", 0x028000, True),
    ("0x02x0xx", 0x020000, True), ("0x02x0xx", 0x021000, True), ("0x02x0xx", 0x020100, False),
])
def test_class_patterns(text: str, code: int, ok: bool) -> None:
    assert parse_class(text).matches(code) is ok


@pytest.mark.parametrize("bad", ["0x1", "01:8", "zz", "01:08:02:00", "0x01080", ""])
def test_bad_class_patterns(bad: str) -> None:
    with raises_exactly(ValueError, match=rf"^class {re.escape(repr(bad))} is not "):
        parse_class(bad)


def test_id_and_address_patterns() -> None:
    assert parse_id("8086:10D3").matches(0x8086, 0x10D3)
    assert parse_id("8086:*").matches(0x8086, 0x1234)
    assert not parse_id("*:10d3").matches(0x8086, 0x10D4)
    for bad in ("8086", "8086:10d3:1", "808g:1234", "8086:123"):
        with raises_exactly(ValueError, match=rf"^id {re.escape(repr(bad))}"):
            parse_id(bad)
    assert parse_address("03:00.0") == "0000:03:00.0"
    assert parse_address("0000:03:*") == "0000:03:*"
    for bad in ("3:00.0", "0000:03:00.8", "0000:03:00", "/sys/../x"):
        with raises_exactly(ValueError, match=rf"^address {re.escape(repr(bad))} is not "):
            parse_address(bad)


# --- defaults (docs/policy.md "Default policy") -----------------------------------------

def test_defaults_on_the_q35_machine(q35: dict[str, PciDevice]) -> None:
    got = {a: default_action(d) for a, d in q35.items()}
    assert got == {
        "0000:00:00.0": "skip",  # host bridge
        "0000:00:01.0": "restore-early", "0000:00:02.0": "restore-early",  # root ports
        "0000:00:03.0": "restore-early", "0000:00:04.0": "restore-early",
        "0000:00:05.0": "quiesce",  # e1000, Bus Master on
        "0000:00:1f.0": "skip",  # ISA bridge
        "0000:00:1f.2": "restore-early",  # AHCI
        "0000:00:1f.3": "skip",  # SMBus, Bus Master off
        "0000:01:00.0": "restore-early",  # nvme
        "0000:02:00.0": "quiesce",  # virtio-net
        "0000:03:00.0": "restore-early", "0000:04:00.0": "restore-early",  # virtio-blk
    }


def test_defaults_blacklist_display_and_no_early(q35: dict[str, PciDevice]) -> None:
    nvme = q35["0000:01:00.0"]
    assert default_action(nvme, blacklist=["nvme"]) == "quiesce"
    port = q35["0000:00:01.0"]
    assert default_action(port, blacklist=["pcieport"]) == "restore-early"  # bridges first
    no_early = PciDevice(nvme.addr, nvme.ids, nvme.path, nvme.live, None, "nvme")
    d = default_decision(no_early)
    assert d.action == "restore-live" and "no early snapshot" in d.why
    vga = nvme.ids.replace(class_code=0x030000)
    assert default_action(PciDevice(nvme.addr, vga, nvme.path, nvme.live)) == "skip"
    quiet = bytearray(nvme.live.data)
    quiet[4] &= ~0x04
    nic = nvme.ids.replace(class_code=0x020000)
    assert default_action(PciDevice(nvme.addr, nic, nvme.path,
                                    Snapshot("live", 4096, bytes(quiet)))) == "skip"
    assert default_action(PciDevice(nvme.addr, nic, nvme.path,
                                    Snapshot("live", 4096, b""))) == "quiesce"  # unknown


def test_save_records_the_same_defaults(tmp_path: Path) -> None:
    from handoff.save import collect_devices

    res = collect_devices(SysfsTree(F.build_tree(tmp_path / "sys", F.Q35)),
                          running_kernel=False, privileged=True)
    for d in res.devices:
        assert d.policy == default_action(d), d.addr


# --- rules ---------------------------------------------------------------------------------

POLICY = """\
# site policy
blacklist = ["mlx5_core", "e1000"]

[[rule]]
address = "0000:02:*"
action = "reset"
reset_method = "flr"

[[rule]]
id = "1af4:1042"
class = "01:00"
action = "restore-live"
why = "virtio-blk: live state"

[[rule]]
driver = "nvme"
action = "skip"
"""


def test_rules_first_match_wins(q35: dict[str, PciDevice]) -> None:
    pol = parse_policy(POLICY, "site.toml")
    assert pol.blacklist == ("mlx5_core", "e1000")
    assert [r.line for r in pol.rules] == [4, 9, 15]
    d = pol.decide(q35["0000:02:00.0"], "quiesce")
    assert (d.action, d.reset_method, d.source, d.rule.index) == ("reset", "flr", "rule", 1)
    d = pol.decide(q35["0000:03:00.0"], "restore-early")
    assert (d.action, d.why) == ("restore-live", "virtio-blk: live state")
    assert pol.decide(q35["0000:01:00.0"], "restore-early").action == "skip"
    # no rule: the record's choice
    d = pol.decide(q35["0000:00:01.0"], "restore-early")
    assert (d.action, d.source) == ("restore-early", "record")
    # no rule, no recorded action: defaults with the policy's blacklist
    d = pol.decide(q35["0000:00:05.0"], None)
    assert d.action == "quiesce" and "blacklisted" in d.why


def test_policy_default_key(q35: dict[str, PciDevice]) -> None:
    pol = parse_policy('default = "skip"\n[[rule]]\nclass = "0604"\naction = "restore-live"\n')
    assert pol.decide(q35["0000:00:01.0"], "restore-early").action == "restore-live"
    assert pol.decide(q35["0000:00:05.0"], "quiesce").action == "skip"
    assert parse_policy('default = "auto"\n').default is None
    assert DEFAULT_POLICY.decide(q35["0000:00:05.0"], "skip").action == "skip"


def test_docs_example_parses() -> None:
    text = DOCS.read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert block, "docs/policy.md has a toml example"
    pol = parse_policy(block.group(1), "docs")
    assert len(pol.rules) == 3 and pol.blacklist == ("mlx5_core",)


# --- errors name the line and the key -------------------------------------------------------

@pytest.mark.parametrize("text,line,key,words", [
    ("blacklist = [\"a\"]\n[[rule]]\naddress = \"0000:01:00.0\"\naction = \"reboot\"\n",
     4, "action", "unknown action 'reboot'"),
    ("[[rule]]\naddress = \"01:00.0\"\nacton = \"skip\"\n", 3, "acton", "unknown key"),
    ("colour = 1\n", 1, "colour", "unknown key"),
    ("\n\nblacklist = \"mlx5_core\"\n", 3, "blacklist", "list of module names"),
    (("[[rule]]\ndriver = \"x\"\naction = \"skip\"\n\n[[rule]]\nclass = \"0x01x\"\n"
      "action = \"skip\"\n"), 6, "class", "hex digits"),
    ("[[rule]]\nid = \"8086\"\naction = \"skip\"\n", 2, "id", "VVVV:DDDD"),
    ("[[rule]]\nclass = \"01\"\naction = \"skip\"\nreset_method = \"flr\"\n", 4,
     "reset_method", "only a rule with action"),
    ("[[rule]]\nclass = \"01\"\naction = \"reset\"\nreset_method = \"kick\"\n", 4,
     "reset_method", "unknown reset method"),
    ("default = \"explode\"\n", 1, "default", "unknown action"),
    ("version = 2\n", 1, "version", "policy version 2"),
    ("[[rule]]\nclass = \"01\"\naction = 3\n", 3, "action", "expected a string"),
])
def test_semantic_errors_name_line_and_key(text: str, line: int, key: str, words: str) -> None:
    with pytest.raises(UsageError) as ei:
        parse_policy(text, "p.toml")
    msg = str(ei.value)
    assert msg.startswith(f"p.toml:{line}: "), msg
    assert f"key {key!r}" in msg and words in msg
    assert ei.value.exit_code == EXIT_USAGE and ei.value.hint


def test_rule_without_action_or_criteria_names_the_rule_line() -> None:
    with pytest.raises(UsageError, match=r"^p.toml:4: rule 2: missing key 'action'"):
        parse_policy('[[rule]]\nclass = "01"\naction = "skip"\n[[rule]]\nclass = "02"\n',
                     "p.toml")
    with pytest.raises(UsageError, match=r"^p.toml:1: rule 1: a rule needs at least one"):
        parse_policy('[[rule]]\naction = "skip"\n', "p.toml")


def test_syntax_errors_carry_the_toml_line() -> None:
    with pytest.raises(UsageError, match=r"^p.toml:3: not valid TOML: .*line 3"):
        parse_policy('version = 1\n[[rule]]\naction = "skip\n', "p.toml")


def test_cli_bad_policy_exits_2(tmp_path: Path) -> None:
    from handoff.cli import main

    pol = tmp_path / "bad.toml"
    pol.write_text('[[rule]]\ndriver = "nvme"\naction = "nuke"\n')
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["restore", "--policy", str(pol), "--record", str(tmp_path / "none"),
                   "--dry-run"])
    assert rc == EXIT_USAGE
    assert f"{pol}:3: rule 1, key 'action': unknown action 'nuke'" in err.getvalue()
    assert "hint:" in err.getvalue()
