"""The capture command line, parsed by the kernel's rules (lib/cmdline.c next_arg(),
kernel/params.c parse_args(), init/main.c: what follows a bare ``--`` belongs to init)."""

from __future__ import annotations

import pytest
from helpers.machine import HANDOFF_PARAMS, Machine, dry, expected_argv

from handoff.kexec.cmdline import assemble, param, parse, split


@pytest.mark.parametrize("line,words", [
    ("a b", ["a", "b"]),
    ("  a \t\n b  ", ["a", "b"]),  # any run of isspace() separates; leading space skipped
    ("a\xa0b", ["a", "b"]),  # 0xa0 is a space to the kernel's isspace() (lib/ctype.c)
    ('a="b c" d', ['a="b c"', "d"]),  # a quote anywhere toggles quoting
    ('"a b"c d', ['"a b"c', "d"]),
    ('x"y z"w v', ['x"y z"w', "v"]),
    ('a="unterminated b', ['a="unterminated b']),  # an open quote runs to the end
])
def test_split_at_unquoted_space(line: str, words: list[str]) -> None:
    assert split(line) == words


@pytest.mark.parametrize("word,expected", [
    ("ro", ("ro", None)), ("a=b", ("a", "b")), ("a=", ("a", "")),
    ('a="b c"', ("a", "b c")),  # "Don't include quotes in value."
    ('"a=b c"', ("a", "b c")),  # a word that starts with a quote loses it and the last one
    ('"ro"', ("ro", None)),
    ('"--"', ("--", None)),  # so a quoted -- still ends the kernel's parameters
    ('root="/dev/x"y', ("root", '/dev/x"y')),  # the closing quote must end the word
    ("=x=y", ("=x", "y")),  # next_arg() takes the first '=' after position 0
    ("a=b=c", ("a", "b=c")),
])
def test_param_and_value(word: str, expected: tuple[str, str | None]) -> None:
    assert param(word) == expected


@pytest.mark.parametrize("line,kernel,init", [
    ("ro quiet", ["ro", "quiet"], []),
    ("ro -- single x=1", ["ro"], ["single", "x=1"]),
    ('ro "--" single', ["ro"], ["single"]),
    ("ro --=x -- single", ["ro", "--=x"], ["single"]),  # '--=x' has a value: a parameter
    ("ro -- a -- b", ["ro"], ["a", "--", "b"]),  # only the first -- splits
    ('ro a="x -- y" -- z', ["ro", 'a="x -- y"'], ["z"]),  # a quoted -- inside a value is not
])
def test_double_dash_hands_the_rest_to_init(line: str, kernel: list[str],
                                            init: list[str]) -> None:
    assert parse(line) == (kernel, init)


def test_handoff_parameters_go_before_the_double_dash() -> None:
    line = assemble("BOOT_IMAGE=/x root=/dev/sda rdinit=/bin/sh ro initrd=/i -- single",
                    remove_names=("root", "BOOT_IMAGE"), append="irqpoll -- emergency",
                    extra='console=ttyS0 "rdinit=/x"', handoff=["handoff.generation=3"],
                    blacklist=["mlx5_core"])
    assert line == ("ro irqpoll console=ttyS0 reset_devices handoff.generation=3 "
                    "module_blacklist=mlx5_core -- single emergency")
    kernel, init = parse(line)
    assert "handoff.generation=3" in kernel and init == ["single", "emergency"]


def test_quoted_values_survive_and_are_matched_by_name() -> None:
    line = assemble('ro "dyndbg=file x +p" crashkernel=256M', remove_names=("crashkernel",))
    assert line == 'ro "dyndbg=file x +p" reset_devices'


def test_load_puts_its_parameters_before_the_dash_dash(machine: Machine) -> None:
    (machine.root / "proc/cmdline").write_text(
        'BOOT_IMAGE=/boot/vmlinuz root=UUID=1 ro rdinit=/bin/sh crashkernel=256M '
        '"acpi_osi=Linux x" -- single\n')
    rc, out, err, work = dry(machine)
    assert rc == 0, err
    assert out.splitlines()[0] == expected_argv(
        machine, work, "-p", [],
        f'ro "acpi_osi=Linux x" irqpoll nr_cpus=1 reset_devices {HANDOFF_PARAMS} -- single')


def test_user_cmdline_loses_rdinit_too(machine: Machine) -> None:
    rc, out, err, work = dry(machine, "--cmdline", "console=ttyS0 rdinit=/bin/sh")
    assert rc == 0, err
    assert out.splitlines()[0] == expected_argv(
        machine, work, "-p", [], f"console=ttyS0 reset_devices {HANDOFF_PARAMS}")

