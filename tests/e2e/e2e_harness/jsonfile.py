"""Cache-level JSON files, written whole and renamed into place.

A rename gives the file a new inode, so a cache copied with hard links (`cp -al`, how a private
run shares the downloads) never writes through to the copy it was made from, and a reader never
sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def replace(path: Path, doc: Any) -> None:
    """Write ``doc`` as indented JSON to ``path`` through a temporary file in its folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
