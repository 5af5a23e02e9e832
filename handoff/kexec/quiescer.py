"""Where `handoff load` finds handoff-quiesce, the capture kernel's first hook (csrc/quiesce).

setup.py builds it into handoff/data/ at install; HANDOFF_QUIESCER names another build.
A dynamically linked build beside it is packed instead when the capture initrd holds this
system's own loader and libc (:func:`dynamic`): 40 KiB instead of 830 KiB, counted twice in the
capture kernel's unpacking peak (docs/load.md, "Memory").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from handoff.errors import EnvironmentProblem

ENV = "HANDOFF_QUIESCER"
PACKAGED = Path(__file__).resolve().parent.parent / "data" / "handoff-quiesce"
PACKAGED_DYNAMIC = PACKAGED.with_name("handoff-quiesce-dynamic")
# Where the dynamic build goes in the capture initrd; CAPTURE_QUIESCER becomes a sh wrapper
# that runs it with the initrd's own loader (as the runtime's wrapper runs the interpreter).
DYNAMIC_DEST = "handoff/lib/handoff-quiesce"
ELF_MAGIC = b"\x7fELF"


def binary() -> tuple[bytes | None, str]:
    """The quiescer's bytes and where they came from, or None and why there are none."""
    path = Path(os.environ.get(ENV) or PACKAGED)
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, (f"no handoff-quiesce at {path} ({e.strerror}): DMA stops only when "
                      "`handoff restore` runs; reinstall handoff with a C compiler (and "
                      f"static libc) or set {ENV}")
    if not data.startswith(ELF_MAGIC):
        return None, f"{path} is not an ELF executable; handoff-quiesce is not packed"
    return data, str(path)


def dynamic(listing: Any) -> tuple[bytes, bytes] | None:
    """(the dynamic build, the wrapper that runs it) when the capture initrd holds the loader
    and libc it links against byte for byte, in directories where they resolve; else None
    (the static build is packed). Not with HANDOFF_QUIESCER, which names one build."""
    from handoff.kexec import runtime
    from handoff.kexec.runner import Runner

    if os.environ.get(ENV) or listing is None:
        return None
    path = str(PACKAGED_DYNAMIC)
    try:
        data = PACKAGED_DYNAMIC.read_bytes()
        loader = runtime.elf_interpreter(path)
    except OSError:
        return None
    if loader is None or not data.startswith(ELF_MAGIC):
        return None
    try:
        libs = runtime.shared_libraries([path], loader, Runner())
    except EnvironmentProblem:
        return None
    name = os.path.basename(loader)
    reused = runtime.reusable_libraries(listing, {name: loader, **libs})
    if name not in reused or set(libs) - set(reused):
        return None
    dirs = ":".join(sorted({"/" + p.rsplit("/", 1)[0] for so, p in reused.items() if so != name}))
    wrapper = (f"#!/bin/sh\n# handoff-quiesce, linked against the initrd's own libc (the same "
               f"files as this system's): run with its loader.\n"
               f"exec /{reused[name]} --library-path {dirs} /{DYNAMIC_DEST} \"$@\"\n")
    return data, wrapper.encode()
