"""Every touch of sysfs: the tree and its paths, config access, ``resource``/``resourceN``, the
kernel capability probe, and the writes restore makes (reset, enable, remove, rescan).

The root is ``/sys`` in production and a copy of a tree in tests, so the same code runs on
both; nothing else in handoff opens files under ``/sys/bus/pci``. Modules, bottom up:

- :mod:`handoff.sysfs.paths`: string paths spelled as pathlib spells them, PCI address
  checks, and :class:`~handoff.sysfs.paths.OutsideTree` for anything resolving outside;
- :mod:`handoff.sysfs.config`: :class:`ConfigSpace`, one device's ``config`` file;
- :mod:`handoff.sysfs.tree`: :class:`SysfsTree`, attributes, the driver bound now;
- :mod:`handoff.sysfs.resource`: the kernel's ``resource`` lines, BAR agreement, and
  mapping ``resourceN``;
- :mod:`handoff.sysfs.probe`: lockdown, config writability, BAR mapping, resets, rescan;
- :mod:`handoff.sysfs.ops`: :class:`~handoff.sysfs.ops.SysfsAccess`, the writes.

Only the first three are imported here: ``handoff save`` imports this package and pays for
every module at start-up.
"""

from __future__ import annotations

from handoff.sysfs.config import ConfigAccessError, ConfigSpace
from handoff.sysfs.tree import SysfsTree

__all__ = ["ConfigAccessError", "ConfigSpace", "SysfsTree"]
