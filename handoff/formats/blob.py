"""The random-access bytes every format reader takes: a file, a buffer, or a view of one."""

from __future__ import annotations

from typing import Protocol

from handoff.errors import BadContainer


class Blob(Protocol):
    """Random-access bytes: a file, a buffer, or a reassembled view of one."""

    size: int

    def pread(self, offset: int, length: int) -> bytes: ...


def read_exact(blob: Blob, offset: int, length: int, what: str) -> bytes:
    """Read ``length`` bytes at ``offset`` or raise BadContainer naming ``what``."""
    if offset < 0 or length < 0 or offset > blob.size or length > blob.size - offset:
        raise BadContainer(
            f"{what} at offset {offset} ({length} bytes) extends past the end of the file "
            f"({blob.size} bytes)",
            offset=offset,
        )
    data = blob.pread(offset, length)
    if len(data) != length:
        raise BadContainer(f"{what} at offset {offset}: short read", offset=offset)
    return data
