"""Run scenarios from the command line: python -m e2e_harness [--prepare-only] NAME..."""

from __future__ import annotations

import argparse
import json
import sys

from . import bootinitrd, debsys_boots, debsys_figures, debsys_tree, rootfs
from .config import DEFAULT_KERNEL, KERNEL_LINES
from .qemu import StageError
from .scenario import Scenario, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e_harness", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=["baseline"],
        help="directories under tests/e2e/scenarios (default: baseline), or debian-system "
        "(debsys_*.py: the Debian 12 system with kdump-tools, with handoff and without)",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="download and unpack the packages, build the cached trees and the real "
        "initrds of the early-* scenarios, exit",
    )
    parser.add_argument(
        "--kernel",
        default=DEFAULT_KERNEL,
        choices=sorted(KERNEL_LINES),
        help=f"the Debian 12 kernel line to boot (default {DEFAULT_KERNEL})",
    )
    args = parser.parse_args(argv)
    if args.prepare_only:
        pkgs = rootfs.prepare_packages(args.kernel)
        print(f"kernel {pkgs.release}: {rootfs.vmlinux_for(pkgs)}")
        print(f"first initramfs: {rootfs.first_initramfs(pkgs)}")
        print(f"base tree: {rootfs.base_tree(pkgs)}")
        if args.kernel != DEFAULT_KERNEL:  # the early-* scenarios boot the default line only
            return 0
        kinds = list(bootinitrd.KINDS)
        for kind, built in bootinitrd.build(
            kinds, pkgs.kernel.root, pkgs.release, pkgs.kernel.filename
        ).items():
            print(f"{kind} initrd: {built.image} ({built.info['size']} bytes)")
        return 0
    status = 0
    for name in args.scenarios:
        if name == debsys_boots.NAME:  # not a scenario directory: a whole Debian system, two boots
            if args.kernel != DEFAULT_KERNEL:
                print(f"{name}: FAILED\nit boots the {DEFAULT_KERNEL} line only", file=sys.stderr)
                status = 1
                continue
            try:
                print(json.dumps(debsys_figures.figures(debsys_boots.run_pair()), indent=1))
            except (StageError, debsys_tree.ImageError) as e:
                print(f"{name}: FAILED\n{e}", file=sys.stderr)
                status = 1
            continue
        try:
            result = run(Scenario.from_dir(name, kernel=args.kernel))
        except StageError as e:
            print(f"{name}: FAILED\n{e}", file=sys.stderr)
            status = 1
            continue
        print(result.table())
    return status


if __name__ == "__main__":
    sys.exit(main())
