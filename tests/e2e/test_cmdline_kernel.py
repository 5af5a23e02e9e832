"""The capture command line `handoff load` builds, read back by a real kernel's own parser.

Debian 12's kernel boots in QEMU with the line ``handoff.kexec.cmdline.assemble`` makes from a
base line holding quotes and a ``--``, and a tiny static /init prints what it got. The kernel
is the judge: lib/cmdline.c next_arg() and kernel/params.c parse_args() split the line,
init/main.c passes unknown ``name=value`` parameters before the ``--`` to init's environment
and everything after it to init's argv. So an environment entry is a parameter the kernel
read as its own (before ``--``, quotes removed as next_arg() removes them), and argv is what
it handed to init.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from e2e_harness import cpio as ecpio
from e2e_harness import rootfs
from e2e_harness.qemu import QEMU

from handoff.kexec.cmdline import assemble, param, parse

pytestmark = pytest.mark.e2e

INIT_C = r"""
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    char buf[4096];
    FILE *f;
    size_t n;
    for (int i = 0; i < argc; i++) printf("CMDLINE-TEST ARGV %s\n", argv[i]);
    for (char **e = environ; *e; e++) printf("CMDLINE-TEST ENV %s\n", *e);
    mount("proc", "/proc", "proc", 0, 0);
    f = fopen("/proc/cmdline", "r");
    n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (n && buf[n - 1] == '\n') buf[n - 1] = 0;
    printf("CMDLINE-TEST PROC %s\nCMDLINE-TEST END\n", buf);
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
"""

# A base line as /proc/cmdline may hold one: quoted values, a quoted word, and init arguments.
BASE = 'ro hx="a b" "hy=c d" rdinit=/bin/sh -- first "se cond" th=3'


def _initrd(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    src = tmp / "init.c"
    src.write_text(INIT_C)
    subprocess.run(["gcc", "-static", "-Os", "-o", str(root / "init"), str(src)], check=True)
    out = tmp / "initrd.cpio"
    out.write_bytes(ecpio.newc_from_tree(root, {"dev/console": (5, 1)}))
    return out


def test_the_kernel_reads_the_line_as_handoff_built_it(qemu_ready: None, tmp_path: Path) -> None:
    kernel = rootfs.prepare_packages().bzimage
    line = assemble(BASE, remove_names=("root",), append="irqpoll -- extra",
                    extra='console=ttyS0 panic=-1 "hz=e f"', handoff=["hgen=7"])
    assert " -- " in line and line.index("hgen=7") < line.index(" -- ")
    r = subprocess.run(
        [QEMU, "-accel", "tcg", "-M", "q35", "-m", "256M", "-nodefaults", "-display", "none",
         "-serial", "stdio", "-no-reboot", "-kernel", str(kernel), "-initrd",
         str(_initrd(tmp_path)), "-append", line],
        capture_output=True, text=True, errors="replace", timeout=600, check=False)
    got = [m.group(1, 2) for m in re.finditer(r"^CMDLINE-TEST (\w+) ?(.*?)\r?$", r.stdout, re.MULTILINE)]
    assert ("END", "") in got, r.stdout[-3000:]
    argv = [v for k, v in got if k == "ARGV"]
    env = {v for k, v in got if k == "ENV"}
    proc = next(v for k, v in got if k == "PROC")
    kernel_words, init_words = parse(line)

    def word(w: str) -> str:  # a word as the kernel hands it on: quotes gone, name=value
        name, val = param(w)
        return name if val is None else f"{name}={val}"

    assert proc.strip() == line  # the kernel keeps the line as given
    # After the '--': exactly init's arguments, unquoted as next_arg() unquotes them.
    assert argv[1:] == [word(w) for w in init_words] == ["first", "se cond", "th=3", "extra"]
    # Before it: the parameters the kernel does not know reach init's environment, so the
    # kernel parsed them as its own, with the values our parser gives them.
    ours = {word(w) for w in kernel_words if param(w)[0] in ("hx", "hy", "hz", "hgen")}
    assert ours == {"hx=a b", "hy=c d", "hz=e f", "hgen=7"}
    assert ours <= env, sorted(env)
    assert not any(a.startswith("rdinit") for a in argv + sorted(env)) and "rdinit" not in line
