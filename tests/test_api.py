"""The public names the package docstring advertises exist, so the documentation cannot drift."""

from __future__ import annotations

import importlib
import re

import handoff


def advertised() -> list[tuple[str, list[str]]]:
    """(module, names) for each ``- ``handoff.x``: ``Name``, ...`` item of the API list."""
    api = (handoff.__doc__ or "").partition("Public API")[2]
    out = []
    for item in re.split(r"\n- ", api)[1:]:
        head, _, rest = " ".join(item.split()).partition(": ")
        (module,) = re.findall(r"^``(handoff(?:\.\w+)*)``$", head) or [None]
        if module is not None:
            out.append((module, re.findall(r"``(\w+)``", rest)))
    return out


def test_every_name_the_package_docstring_advertises_exists() -> None:
    items = advertised()
    assert ("handoff.record", ["Record", "parse", "encode", "Producer"]) in items
    for module_name, names in items:
        module = importlib.import_module(module_name)
        assert [n for n in names if not hasattr(module, n)] == [], module_name
    assert callable(handoff.read) and callable(handoff.read_bytes)
