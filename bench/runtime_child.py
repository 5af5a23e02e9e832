"""Build the capture-side runtime cpio through handoff.kexec's public API (run by the bench in
handoff's own interpreter, so the runtime packs the installation a user has).

usage: python runtime_child.py OUT.json RECORD CAPTURE_INITRD|- COMPRESSION
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    out, record, initrd_path, compression = sys.argv[1:5]
    from handoff.capture.inject import encode_note
    from handoff.kexec import imports, initrd, runtime
    from handoff.kexec.runner import Runner
    from handoff.record import NT_HANDOFF_RECORD

    rec = Path(record).read_bytes()
    note = encode_note(NT_HANDOFF_RECORD, rec)
    t0 = time.perf_counter()
    listing = initrd.list_initrd(Path(initrd_path)) if initrd_path != "-" else None
    t1 = time.perf_counter()
    imp = imports.compute_imports(rec, note)
    t2 = time.perf_counter()
    rt = runtime.build(imp, Runner(), compression=compression, listing=listing)
    t3 = time.perf_counter()
    doc = {"summary": rt.summary(), "seconds": {"list_initrd": t1 - t0, "imports": t2 - t1,
                                                "build": t3 - t2},
           "initrd_unpacked": listing.unpacked_size if listing is not None else None}
    Path(out).write_text(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
