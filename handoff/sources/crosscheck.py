"""Cross-checks between a dump and the records in it: the kernel, and whether the dump is whole.

A record names the kernel that made it (``kernel_release``, spec §3); a dump names the kernel
it is the memory of (VMCOREINFO's ``OSRELEASE``, written by ``crash_save_vmcoreinfo_init()``).
They differ when a record is injected into the wrong dump, or when the crashed kernel was not
the one that ran ``handoff save`` (a kernel updated without a new ``handoff load``). Neither
makes the record invalid; both are worth a warning.
"""

from __future__ import annotations

from typing import Any


def osrelease(path: str) -> str | None:
    """The OSRELEASE of the dump at ``path`` (headers and notes only), or None if it has none
    or is not a dump handoff reads."""
    from handoff import errors as E
    from handoff.sources import scan_path

    try:
        c = scan_path(path)
    except (E.HandoffError, OSError):
        return None
    return c.vmcoreinfo.osrelease if c.vmcoreinfo is not None else None


def release_mismatch(generation: int, record_release: str, dump_release: str) -> str:
    return (f"the record (generation {generation}) was made on kernel {record_release}, but "
            f"the dump is of kernel {dump_release} (VMCOREINFO OSRELEASE): the record may "
            "belong to another crash")


def warnings(c: Any) -> list[str]:
    """What a scanned dump container's own checks flag: a truncated file, notes crash cannot
    read (an ELF dump an older handoff wrote), and records made on another kernel than the
    dump's."""
    out: list[str] = []
    cut = c.details.get("truncated")
    if cut:
        out.append(f"{c.name}: {cut}")
    why = c.details.get("crash_cannot_read_notes")
    if why:
        fix = (f"; `handoff inject-notes --output NEW {c.name} {c.name}` writes a copy it reads"
               if c.found else "")
        out.append(f"crash cannot read the notes of {c.name}: {why}{fix}")
    release = c.vmcoreinfo.osrelease if c.vmcoreinfo is not None else None
    if release:
        for f in c.found:
            r = f.record
            if r is not None and r.kernel_release and r.kernel_release != release:
                out.append(release_mismatch(r.generation, r.kernel_release, release))
    return out
