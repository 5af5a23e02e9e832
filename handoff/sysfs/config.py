"""One device's config space through its sysfs ``config`` file, at an offset and width."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from handoff._slots import Slots
from handoff.errors import HandoffError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

_WIDTHS = (1, 2, 4)


class ConfigAccessError(HandoffError):
    """A config-space read or write failed; ``errno`` says how (EPERM under lockdown, ...)."""

    def __init__(self, message: str, *, errno_: int | None = None, offset: int | None = None):
        super().__init__(message)
        self.errno = errno_
        self.offset = offset


class ConfigSpace(Slots):
    """Read and write one device's sysfs ``config`` file at an offset and width.

    Writes use ``pwrite`` of exactly ``width`` bytes at the register offset, as the kernel's
    ``pci_write_config`` expects aligned accesses, and never touch neighbouring registers.
    """

    __slots__ = ("path",)

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def read_all(self, limit: int = 4096) -> bytes:
        """Read up to ``limit`` bytes; a non-root read of real sysfs returns only 64."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(fd, limit, 0)
        finally:
            os.close(fd)

    def read(self, offset: int, width: int) -> int:
        _check(offset, width)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            raw = os.pread(fd, width, offset)
        except OSError as e:
            raise ConfigAccessError(
                f"{self.path}: read of {width} byte(s) at {offset:#x} failed: {e.strerror}",
                errno_=e.errno, offset=offset) from None
        finally:
            os.close(fd)
        if len(raw) != width:
            raise ConfigAccessError(
                f"{self.path}: short read at {offset:#x} ({len(raw)} of {width} bytes)",
                errno_=errno.EIO, offset=offset)
        return int.from_bytes(raw, "little")

    def write(self, offset: int, width: int, value: int) -> None:
        _check(offset, width)
        if not 0 <= value < 1 << (8 * width):
            raise ValueError(f"value {value:#x} does not fit in {width} byte(s)")
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError as e:
            raise ConfigAccessError(f"{self.path}: cannot open for writing: {e.strerror}",
                                    errno_=e.errno, offset=offset) from None
        try:
            n = os.pwrite(fd, value.to_bytes(width, "little"), offset)
        except OSError as e:
            raise ConfigAccessError(
                f"{self.path}: write of {width} byte(s) at {offset:#x} refused: {e.strerror}",
                errno_=e.errno, offset=offset) from None
        finally:
            os.close(fd)
        if n != width:
            raise ConfigAccessError(f"{self.path}: short write at {offset:#x}",
                                    errno_=errno.EIO, offset=offset)


def _check(offset: int, width: int) -> None:
    if width not in _WIDTHS:
        raise ValueError(f"width {width} is not 1, 2 or 4")
    if offset < 0 or offset % width or offset + width > 4096:
        raise ValueError(f"offset {offset:#x} is not {width}-aligned inside config space")
