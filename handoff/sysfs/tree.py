"""A sysfs root and what it says about each PCI device now: attributes, the bound driver,
the ``resource`` lines, and the device's ``config`` accessor."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from handoff._slots import Slots
from handoff.errors import EnvironmentProblem
from handoff.sysfs.config import ConfigSpace

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from handoff.sysfs.resource import Resource


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

    def driver_now(self, addr: str) -> str | None:
        """The driver bound to the device in the running kernel (the ``driver`` link), not
        the one a record names: in a capture kernel, ``pcieport`` on root ports already."""
        return self.link_name(addr, "driver")

    def resources(self, addr: str) -> list[Resource]:
        """The kernel's view of the device's regions: one per line of ``resource``
        (resource_show() in drivers/pci/pci-sysfs.c prints start, end and flags of each)."""
        from handoff.sysfs.resource import parse_resources

        return parse_resources(self.attr(addr, "resource") or "")
