"""cffi build script for handoff._native (out-of-line API mode), run by setup.py at install."""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # setup.py's directory, where setuptools runs the build

# Found from this file, not the cwd; written relative to ROOT because setuptools refuses
# absolute source paths (and a "../" path would put object files outside the build tree).
SOURCES = sorted(str(p.relative_to(ROOT)) for p in HERE.glob("*.c"))
HEADERS = sorted(str(p.relative_to(ROOT)) for p in HERE.glob("*.h"))

ffibuilder = FFI()
ffibuilder.cdef((HERE / "handoff_cdef.h").read_text(encoding="utf-8"))
ffibuilder.set_source(
    "handoff._native",
    '#include "handoff.h"',
    sources=SOURCES,
    depends=HEADERS,
    include_dirs=[str(HERE.relative_to(ROOT))],
    # CI sets HANDOFF_WERROR=1 (the sources and cffi's wrapper build clean with gcc 12); a
    # user's install must not fail because a newer compiler grew a new warning.
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"]
    + (["-Werror"] if os.environ.get("HANDOFF_WERROR") == "1" else []),
)
