"""The public names the package docstring advertises exist, so the documentation cannot drift."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("old, new", [
    ("handoff.elfcore", "handoff.formats.elfcore"),
    ("handoff.kdump", "handoff.formats.kdump"),
    ("handoff.cpio", "handoff.formats.cpio"),
    ("handoff.vmcoreinfo", "handoff.formats.vmcoreinfo"),
])
def test_a_moved_module_still_imports_under_its_old_name_with_a_warning(old: str,
                                                                         new: str) -> None:
    code = (f"import warnings, sys\n"
            f"with warnings.catch_warnings(record=True) as w:\n"
            f"    warnings.simplefilter('always')\n"
            f"    import {old} as old\n"
            f"    from {old.rpartition('.')[0]} import {old.rpartition('.')[2]} as again\n"
            f"import {new} as new\n"
            f"print(old is new is again, new.__spec__.name, [str(x.message) for x in w\n"
            f"      if x.category is DeprecationWarning])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == (f"True {new} ['{old} moved to {new}; import it from there']")
