"""The seam between handoff and the kernel's PCI sysfs: a tree root and a config-space accessor.

Everything that reads or writes device state goes through ``SysfsTree`` and ``ConfigSpace``.
The root is ``/sys`` in production and a copy of a tree in tests, so the same code runs on
both; nothing else in handoff opens files under ``/sys/bus/pci``.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from handoff._slots import Slots
from handoff.errors import EnvironmentProblem, HandoffError

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


class SysfsTree(Slots):
    """A sysfs root: ``/sys`` or a copy whose ``bus/pci/devices`` entries are symlinks into
    ``devices/pci0000:00/...``, as ``lspci -A linux-sysfs -O sysfs.path=ROOT/bus/pci`` reads.

    The root is kept as a string: ``handoff save`` walks the tree with plain paths, and
    importing pathlib would cost it ~4 ms of start-up. ``root``, ``pci_devices`` and
    ``device_dir`` still give ``Path`` objects to the code that wants them.
    """

    __slots__ = ("_root",)

    def __init__(self, root: Path | str = "/sys") -> None:
        self._root = os.fspath(root)

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    @property
    def root_dir(self) -> str:
        return self._root

    @property
    def pci_devices(self) -> Path:
        return self.root / "bus" / "pci" / "devices"

    @property
    def pci_devices_dir(self) -> str:
        """``bus/pci/devices`` under the root, as a string (for the walk)."""
        return os.path.join(self._root, "bus", "pci", "devices")

    def pci_addresses(self) -> list[str]:
        try:
            names = os.listdir(self.pci_devices_dir)
        except FileNotFoundError:
            raise EnvironmentProblem(
                f"{self.pci_devices_dir} does not exist",
                hint="pass --sysfs-root pointing at a sysfs tree (the directory holding bus/pci)",
            ) from None
        return sorted(names)

    def device_dir(self, addr: str) -> Path:
        return self.pci_devices / addr

    def device_path(self, addr: str) -> list[str]:
        """Components of the device's realpath below ``devices/`` (topology)."""
        real = os.path.realpath(os.path.join(self.pci_devices_dir, addr))
        devroot = os.path.realpath(os.path.join(self._root, "devices"))
        if real == devroot:
            return []
        if not real.startswith(devroot.rstrip("/") + "/"):
            return [addr]
        return [c for c in real[len(devroot.rstrip("/")) + 1:].split("/") if c]

    def attr(self, addr: str, name: str) -> str | None:
        """A sysfs attribute's text, stripped; None when absent or unreadable."""
        try:
            with open(self.device_dir(addr) / name, "rb") as f:
                return f.read(65536).decode("utf-8", "replace").strip()
        except OSError:
            return None

    def link_name(self, addr: str, name: str) -> str | None:
        """Basename of a symlink such as ``driver``; None when absent."""
        try:
            return os.path.basename(os.readlink(self.device_dir(addr) / name))
        except OSError:
            return None

    def config(self, addr: str) -> ConfigSpace:
        return ConfigSpace(self.device_dir(addr) / "config")
