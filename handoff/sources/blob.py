"""Random-access byte sources for the container parsers: a file (pread), a buffer, a slice."""

from __future__ import annotations

import os
from typing import Self

from handoff.formats.blob import Blob


class FileBlob:
    """A file read with ``os.pread``: only the ranges asked for are read, so a 64 GiB sparse
    vmcore costs what its headers cost."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(self.fd)
            if not _is_regular_or_block(st.st_mode):
                raise IsADirectoryError(path)
            self.size = st.st_size if st.st_size else _seek_size(self.fd)
        except BaseException:
            os.close(self.fd)
            raise

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        out = os.pread(self.fd, length, offset)
        while len(out) < length:  # pread may return short on pipes/procfs; loop to the end
            more = os.pread(self.fd, length - len(out), offset + len(out))
            if not more:
                break
            out += more
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_regular_or_block(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode) or stat.S_ISBLK(mode)


def _seek_size(fd: int) -> int:
    # Block devices report st_size 0; /proc/vmcore reports its real size.
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    except OSError:
        return 0


class BytesBlob:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = bytes(data)
        self.size: int = len(self.data)

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0:
            return b""
        return self.data[offset : offset + length]


class SubBlob:
    """``length`` bytes of another blob starting at ``start`` (a cpio member in a raw archive)."""

    def __init__(self, blob: Blob, start: int, length: int) -> None:
        self.blob = blob
        self.start = start
        self.size: int = max(0, min(length, blob.size - start))

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        return self.blob.pread(self.start + offset, min(length, self.size - offset))
