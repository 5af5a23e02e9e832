"""Saving the dump in the capture kernel and keeping the device state with it, as ELF notes.

- :mod:`handoff.capture.inject`: :func:`inject_notes` adds notes to an ELF or
  kdump-compressed dump without moving any of its bytes (O(notes), crash-safe ordering).
- :mod:`handoff.capture.layout`: where an ELF dump's notes go so that crash reads them, and
  the copy that leaves room for more.
- :mod:`handoff.capture.save`: :func:`copy_sparse` (ELF copy, zero pages left as holes, room
  after the notes) and makedumpfile as an alternative.
- :mod:`handoff.capture.meta`: the metadata file beside the dump.
- :mod:`handoff.capture.pipeline`: :func:`capture`, all of the above in the order that never
  loses the dump.
"""

from __future__ import annotations

from handoff.capture.inject import InjectResult, NoteArea, dump_format, encode_note, inject_notes
from handoff.capture.pipeline import CaptureResult, capture, load_record, load_report
from handoff.capture.save import SaveResult, copy_sparse

__all__ = [
    "CaptureResult",
    "InjectResult",
    "NoteArea",
    "SaveResult",
    "capture",
    "copy_sparse",
    "dump_format",
    "encode_note",
    "inject_notes",
    "load_record",
    "load_report",
]
