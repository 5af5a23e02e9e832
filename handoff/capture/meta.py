"""The small JSON file saved beside a dump: where it came from, what it holds, and who made it.

Written atomically (temporary file, fsync, rename, fsync of the directory), so a reader finds
either no metadata or a whole document, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

META_NAME = "handoff-capture.json"
SCHEMA_VERSION = 1


def iso_time(t: float) -> str:
    """UTC, second resolution, e.g. "2024-05-01T12:00:00Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tool_versions(makedumpfile: str | None = None) -> dict[str, str]:
    """Versions worth knowing when the dump is read years later."""
    from handoff import __version__

    out = {
        "handoff": __version__,
        "python": sys.version.split()[0],  # platform.python_version(), without platform
        "capture_kernel": os.uname().release,
    }
    if makedumpfile:
        out["makedumpfile"] = makedumpfile
    return out


def write_meta(directory: str, doc: dict[str, Any], name: str = META_NAME, *,
               force: bool = False) -> str:
    """Write ``doc`` (plus ``schema_version`` and ``kind``) to ``directory/name``, mode 0600;
    return the path. Replaces an older metadata file atomically; any other file there, or a
    symlink, is refused (:class:`handoff.errors.UsageError`) unless ``force``. A write error
    raises :class:`handoff.errors.EnvironmentProblem` and leaves no temporary file."""
    from handoff import outfile

    body = {"schema_version": SCHEMA_VERSION, "kind": "handoff-capture"}
    body.update(doc)
    data = (json.dumps(body, indent=2, sort_keys=False) + "\n").encode()
    path = os.path.join(directory, name)
    return outfile.write_file(path, data, outfile.META, force=force)


def read_meta(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        doc = json.loads(f.read(1 << 20))
    if not isinstance(doc, dict) or doc.get("kind") != "handoff-capture":
        raise ValueError(f"{path} is not a handoff capture metadata file")
    return doc


def fsync_dir(directory: str) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
