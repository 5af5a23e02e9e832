"""Read what the guests wrote to the results disk, on the host, without mounting it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class ResultsError(RuntimeError):
    """debugfs could not read the results disk."""


def extract(image: Path, dirs: tuple[str, ...], out: Path) -> dict[str, Path]:
    """Copy the listed top-level directories out of the ext4 image with `debugfs rdump`;
    return every extracted file by its path relative to `out` ("capture/vmcore")."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    listing = subprocess.run(
        ["debugfs", "-R", "ls -p /", str(image)], capture_output=True, text=True, check=False
    )
    present = {f.split("/")[5] for f in listing.stdout.splitlines() if f.count("/") >= 6}
    for d in dirs:
        if d not in present:
            continue
        proc = subprocess.run(
            ["debugfs", "-R", f"rdump /{d} {out}", str(image)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not (out / d).is_dir():
            raise ResultsError(f"debugfs rdump /{d} from {image} failed:\n{proc.stderr}")
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file()}
