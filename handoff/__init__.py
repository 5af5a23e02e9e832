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

import sys
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


# Modules that moved into a package. Their old names still import, with a DeprecationWarning,
# until 0.2: a finder at the end of sys.meta_path (so it is asked only after every real module
# was not found) hands out the module under its new name.
_MOVED = {
    "handoff.elfcore": "handoff.formats.elfcore",
    "handoff.kdump": "handoff.formats.kdump",
    "handoff.cpio": "handoff.formats.cpio",
    "handoff.vmcoreinfo": "handoff.formats.vmcoreinfo",
}


class _MovedFinder:
    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> Any:
        new = _MOVED.get(name)
        if new is None:
            return None
        import importlib.util

        # a create_module/exec_module loader; typeshed still asks for load_module
        return importlib.util.spec_from_loader(name, _MovedLoader(new))  # type: ignore[arg-type]


class _MovedLoader:
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: Any) -> Any:
        import importlib
        import warnings

        warnings.warn(f"{spec.name} moved to {self.new}; import it from there",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.new)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        module.__spec__ = self.real_spec  # the import system stamped the old name's spec on it


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())


def __getattr__(name: str) -> Any:
    # Lazy submodule access keeps `import handoff` cheap for the CLI.
    if name in {"record", "errors", "sources", "payload", "formats"}:
        import importlib

        return importlib.import_module(f"handoff.{name}")
    raise AttributeError(name)
