"""handoff/_native.pyi declares exactly what csrc/handoff_cdef.h gives the compiled module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from handoff import _binding

ROOT = Path(__file__).resolve().parents[1]


def cdef_names() -> set[str]:
    text = re.sub(r"/\*.*?\*/", "", (ROOT / "csrc" / "handoff_cdef.h").read_text(), flags=re.DOTALL)
    enums = re.findall(r"^\s*(\w+) = -?\d+,", text, re.MULTILINE)
    consts = re.findall(r"static const (?:unsigned )?int (\w+);", text)
    funcs = re.findall(r"^(?:int|const char \*)\s*(handoff_\w+)\(", text, re.MULTILINE)
    return set(enums) | set(consts) | set(funcs)


def stub_names() -> set[str]:
    tree = ast.parse((ROOT / "handoff" / "_native.pyi").read_text())
    (lib,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Lib"]
    names = set()
    for node in lib.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return names


def test_stub_declares_every_cdef_name_and_nothing_else() -> None:
    want = cdef_names()
    assert len(want) > 60  # the parse found the header's enums, constants and functions
    assert stub_names() == want


def test_every_stub_name_is_in_the_compiled_module() -> None:
    assert sorted(n for n in stub_names() if not hasattr(_binding.lib, n)) == []
