"""Run scenarios from the command line: python -m e2e_harness [--prepare-only] NAME..."""

from __future__ import annotations

import argparse
import json
import sys

from . import bootinitrd, debsys, rootfs
from .qemu import StageError
from .scenario import Scenario, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e_harness", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=["baseline"],
        help="directories under tests/e2e/scenarios (default: baseline), or debian-system "
        "(debsys.py: the Debian 12 system with kdump-tools, with handoff and without)",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="download and unpack the packages, build the cached trees and the real "
        "initrds of the early-* scenarios, exit",
    )
    args = parser.parse_args(argv)
    if args.prepare_only:
        pkgs = rootfs.prepare_packages()
        print(f"kernel {pkgs.release}: {rootfs.vmlinux_for(pkgs)}")
        print(f"first initramfs: {rootfs.first_initramfs(pkgs)}")
        print(f"base tree: {rootfs.base_tree(pkgs)}")
        kinds = list(bootinitrd.KINDS)
        for kind, built in bootinitrd.build(
            kinds, pkgs.kernel.root, pkgs.release, pkgs.kernel.filename
        ).items():
            print(f"{kind} initrd: {built.image} ({built.info['size']} bytes)")
        return 0
    status = 0
    for name in args.scenarios:
        if name == debsys.NAME:  # not a scenario directory: a whole Debian system, two boots
            try:
                print(json.dumps(debsys.figures(debsys.run_pair()), indent=1))
            except (StageError, debsys.ImageError) as e:
                print(f"{name}: FAILED\n{e}", file=sys.stderr)
                status = 1
            continue
        try:
            result = run(Scenario.from_dir(name))
        except StageError as e:
            print(f"{name}: FAILED\n{e}", file=sys.stderr)
            status = 1
            continue
        print(result.table())
    return status


if __name__ == "__main__":
    sys.exit(main())
