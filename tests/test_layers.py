"""Each package imports only from the layers below it, and no imports go round in a cycle.

The layers (README.md, CONTRIBUTING.md): errors and _slots -> binding -> record/payload ->
formats/sources -> sysfs -> devices (save) -> restore/plugins -> kexec/capture (and diff) -> cli.
Every import in handoff/ counts, also one inside a function: it runs as surely, only later.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {
    "handoff._slots": 0, "handoff.errors": 0, "handoff.paths": 0, "handoff.budget": 0,
    "handoff._native": 1, "handoff._binding": 1,
    "handoff.cbor": 2, "handoff.record": 2, "handoff.payload": 2, "handoff.identity": 2,
    "handoff.outfile": 2,
    "handoff.formats": 3, "handoff.sources": 3,
    "handoff.sysfs": 4,
    "handoff.devices": 5, "handoff.save": 5,
    "handoff.restore": 6, "handoff.plugins": 6,
    "handoff.kexec": 7, "handoff.capture": 7, "handoff.diff": 7,
    "handoff.cli": 8, "handoff.__main__": 8,
}
# Known exceptions, each owned by work in progress; remove an entry when its fix lands.
KNOWN_UPWARD: set[tuple[str, str]] = set()
# One module pair inside one package (the packages themselves form no cycle), and in types
# only: a PluginStep's body takes a StepContext (api names it under TYPE_CHECKING), and a
# StepContext runs one PluginStep (context imports api). Plugin bodies are annotated with the
# concrete StepContext, so a Protocol in api would not type-check against them; merging the
# two modules would make one of 640 lines. Left as it is.
KNOWN_CYCLES = {
    frozenset({"handoff.plugins.api", "handoff.plugins.context"}),
}


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted((ROOT / "handoff").rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def imports(path: Path) -> set[str]:
    """Every handoff module or package ``path`` imports, at any depth of the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in out if n.startswith("handoff.")}


def layer(name: str) -> tuple[str, int] | None:
    """The longest LAYERS prefix of ``name``, and its rank."""
    hits = [(p, r) for p, r in LAYERS.items() if name == p or name.startswith(p + ".")]
    return max(hits, key=lambda h: len(h[0])) if hits else None


def graph(level: int | None) -> dict[str, set[str]]:
    """Import edges between modules (``level`` None) or between packages ``handoff.x``."""
    mods = modules()
    g: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        if name == "handoff":  # the package facade imports lazily from everything
            continue
        src = name if level is None else ".".join(name.split(".")[:level])
        for target in imports(path):
            if target not in mods or name.startswith(target + "."):
                continue  # a name inside a module, or a module's own parent package
            dst = target if level is None else ".".join(target.split(".")[:level])
            if dst != src:
                g[src].add(dst)
    return g


def cycles(g: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in list(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if m != "handoff" and layer(m) is None] == []


def test_imports_point_down_the_layers() -> None:
    upward = set()
    for name, path in modules().items():
        me = layer(name)
        if me is None:
            continue
        for target in imports(path):
            to = layer(target)
            if to is not None and to[1] > me[1]:
                upward.add((name, ".".join(target.split(".")[:3])))
    assert upward - KNOWN_UPWARD == set()


def test_no_import_cycles() -> None:
    found = cycles(graph(None)) | cycles(graph(2))
    assert found - KNOWN_CYCLES == set()


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The checks themselves can fail: a made-up cycle is found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert layer("handoff.sources.detect") == ("handoff.sources", 3)
    assert layer("handoff.cli.restore") == ("handoff.cli", 8)


def test_test_modules_import_helpers_not_each_other() -> None:
    """Shared builders live in tests/helpers/ and fixtures in conftest.py; a test module that
    imports another one runs that module's tests' set-up and couples the two files."""
    tests = ROOT / "tests"
    names = {p.stem for p in tests.glob("test_*.py")}
    found = sorted(f"{p.name} imports {t}" for p in tests.glob("test_*.py")
                   for t in _top_level_imports(p) if t in names)
    assert found == []


def _top_level_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.partition(".")[0])
    return out
