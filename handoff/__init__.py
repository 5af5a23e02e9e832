"""handoff: carry device state across kexec and kdump.

Public API (stable within a major version):

- ``handoff.read(path)`` / ``handoff.read_bytes(data)``: find and validate every record in a
  file of any supported kind (raw, note file, region, initrd, ELF vmcore, kdump-compressed,
  flattened); see ``handoff.sources``.
- ``handoff.record``: ``Record``, ``parse`` (validate the bytes of one record) and ``encode``
  (a payload and a ``Producer`` into a record, through the C core).
- ``handoff.errors``: the exception hierarchy.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from handoff.sources import Found


def read(path: str) -> list[Found]:
    """Find and validate every handoff record in the file at ``path``."""
    from handoff.sources import read_path

    return read_path(path)


def read_bytes(data: bytes, name: str = "<bytes>") -> list[Found]:
    """Find and validate every handoff record in ``data`` (any supported container)."""
    from handoff.sources import read_bytes as _read_bytes

    return _read_bytes(data, name)


def __getattr__(name: str) -> Any:
    # Lazy submodule access keeps `import handoff` cheap for the CLI.
    if name in {"record", "errors", "sources", "payload"}:
        import importlib

        return importlib.import_module(f"handoff.{name}")
    raise AttributeError(name)
