"""Writes through sysfs: config space, ``reset``/``reset_method``/``enable``, ``remove`` and
``bus/pci/rescan``, each only inside the tree it was given, and each logged.

:class:`SysfsAccess` is the one implementation of :class:`DeviceAccess` over a sysfs tree
(``/sys`` in a capture kernel, a copy in tests). Resolved paths are checked against the
tree's real root, addresses must be PCI addresses, and files are never created. It also
answers the two questions restore asks of the running kernel about a device: which driver
holds it now (:meth:`SysfsAccess.driver_now`) and where the kernel placed its regions
(:meth:`SysfsAccess.resources`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from handoff.sysfs import paths as _paths
from handoff.sysfs.config import ConfigAccessError, ConfigSpace
from handoff.sysfs.paths import ADDR as _ADDR
from handoff.sysfs.paths import OutsideTree
from handoff.sysfs.resource import Resource, read_resources
from handoff.sysfs.tree import SysfsTree

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

_ATTRS = ("reset", "reset_method", "enable")  # the only attributes restore ever writes


class ConfigPort(Protocol):
    def read(self, offset: int, width: int) -> int: ...

    def write(self, offset: int, width: int, value: int) -> None: ...


class DeviceAccess(Protocol):
    def config(self, addr: str) -> ConfigPort: ...

    def read_attr(self, addr: str, name: str) -> str | None: ...

    def write_attr(self, addr: str, name: str, text: str) -> None: ...

    def remove(self, addr: str) -> None: ...

    def rescan(self) -> None: ...

    def present(self, addr: str) -> bool: ...

    def driver_now(self, addr: str) -> str | None: ...

    def resources(self, addr: str) -> list[Resource]: ...


class SysfsAccess:
    """Device access inside one sysfs tree (``/sys`` in a capture kernel, a copy in tests).

    Paths are strings spelled as pathlib spells them (pathlib stays off the restore path);
    ``config_factory`` gets a ``Path`` unless it is the default :class:`ConfigSpace`."""

    def __init__(self, tree: SysfsTree,
                 config_factory: Callable[[Path], ConfigPort] = ConfigSpace) -> None:
        self.tree = tree
        self._root = _paths.pathstr(tree.root_dir)  # as str(tree.root) spells it
        self._real_root = os.path.realpath(self._root)
        self._factory = config_factory
        self.log: list[tuple[str, str, str]] = []  # (addr, what, value) of every write

    @property
    def root(self) -> Path:
        """The tree's real root (symlinks resolved)."""
        from pathlib import Path

        return Path(self._real_root)

    def _inside(self, path: str) -> str:
        return _paths.checked(path, self._real_root)

    def _dev(self, addr: str, name: str) -> str:
        return _paths.join(_paths.device_dir(self._root, addr), name)

    def config(self, addr: str) -> ConfigPort:
        path = self._inside(self._dev(addr, "config"))
        if self._factory is ConfigSpace:
            port: ConfigPort = ConfigSpace(path)
        else:
            from pathlib import Path

            port = self._factory(Path(path))
        return _Logged(port, addr, self.log)

    def read_attr(self, addr: str, name: str) -> str | None:
        return _paths.read_attr(_paths.join(self._root, "bus", "pci", "devices", addr, name))

    def write_attr(self, addr: str, name: str, text: str) -> None:
        if name not in _ATTRS:
            raise OutsideTree(f"writing attribute {name!r} is not something restore does")
        self._write_file(self._inside(self._dev(addr, name)), text)
        self.log.append((addr, name, text))

    def remove(self, addr: str) -> None:
        """``echo 1 > remove``: the kernel stops and removes the device and anything below it
        (remove_store(): pci_stop_and_remove_bus_device_locked())."""
        self._write_file(self._inside(self._dev(addr, "remove")), "1")
        self.log.append((addr, "remove", "1"))

    def rescan(self) -> None:
        """``echo 1 > bus/pci/rescan``: the kernel rescans every bus (rescan_store():
        pci_rescan_bus() on each root bus) before the write returns."""
        self._write_file(self._inside(_paths.join(self._root, "bus", "pci", "rescan")), "1")
        self.log.append(("", "bus/pci/rescan", "1"))

    def present(self, addr: str) -> bool:
        return _ADDR.fullmatch(addr) is not None and os.path.exists(
            _paths.join(self._root, "bus", "pci", "devices", addr))

    def driver_now(self, addr: str) -> str | None:
        """The driver the running kernel has bound to the device now (``pcieport`` on a
        capture kernel's root ports), read from the ``driver`` link; None when unbound."""
        return _paths.link_name(self._dev(addr, "driver"))

    def resources(self, addr: str) -> list[Resource]:
        """The device's ``resource`` lines as the running kernel has them now."""
        return read_resources(self._dev(addr, ""))

    def _write_file(self, path: str, text: str) -> None:
        try:
            # Never O_CREAT: only existing attributes. O_TRUNC is what `echo >` does; sysfs
            # ignores it, and a copy of a tree then holds exactly the value written.
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        except OSError as e:
            raise ConfigAccessError(f"{path}: cannot open for writing: {e.strerror}",
                                    errno_=e.errno) from None
        try:
            os.write(fd, text.encode())
        except OSError as e:
            raise ConfigAccessError(f"{path}: write of {text!r} refused: {e.strerror}",
                                    errno_=e.errno) from None
        finally:
            os.close(fd)


class _Logged:
    def __init__(self, port: ConfigPort, addr: str, log: list[tuple[str, str, str]]) -> None:
        self.port, self.addr, self.log = port, addr, log

    def read(self, offset: int, width: int) -> int:
        return self.port.read(offset, width)

    def write(self, offset: int, width: int, value: int) -> None:
        self.port.write(offset, width, value)
        self.log.append((self.addr, f"config@{offset:#x}/{width}",
                         f"{value:#0{2 + 2 * width}x}"))


__all__ = ["ConfigPort", "DeviceAccess", "OutsideTree", "SysfsAccess"]
