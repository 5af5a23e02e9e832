"""The plugins that ship with handoff; each module cites the specification it implements."""

from __future__ import annotations

from handoff.plugins.builtin.e1000 import E1000
from handoff.plugins.builtin.msix import Msix
from handoff.plugins.builtin.nvme import Nvme
from handoff.plugins.builtin.virtio import Virtio

BUILTINS = (Nvme, Virtio, E1000, Msix)

__all__ = ["BUILTINS", "E1000", "Msix", "Nvme", "Virtio"]
