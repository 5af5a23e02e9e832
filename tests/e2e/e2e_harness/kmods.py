"""Pick kernel modules and their dependencies out of an unpacked linux-image package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .elfinfo import modinfo


def _norm(name: str) -> str:
    return name.replace("-", "_")


@dataclass
class ModuleTree:
    """The modules of one kernel release, indexed by normalized module name."""

    root: Path  # .../lib/modules/<release>
    paths: dict[str, str]  # name -> path relative to root

    @classmethod
    def load(cls, root: Path) -> ModuleTree:
        paths = {
            _norm(p.name.removesuffix(".ko")): str(p.relative_to(root))
            for p in sorted((root / "kernel").rglob("*.ko"))
        }
        return cls(root, paths)

    @property
    def release(self) -> str:
        return self.root.name

    def depends(self, name: str) -> list[str]:
        deps = modinfo(self.root / self.paths[name]).get("depends", [""])[0]
        return [_norm(d) for d in deps.split(",") if d]

    def load_order(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """Module names with every dependency before its user (insmod order)."""
        order: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = _norm(name)
            if name in order:
                return
            if name not in self.paths:
                raise KeyError(f"kernel {self.release} has no module {name!r} (via {chain})")
            for dep in self.depends(name):
                visit(dep, (*chain, name))
            order.append(name)

        for n in names:
            visit(n, ())
        return order

    def modules_dep(self, names: list[str]) -> str:
        """A modules.dep covering just `names`, so busybox modprobe works on the subset."""
        lines = []
        for name in names:
            # modules.dep lists dependencies nearest-first; modprobe loads them in reverse.
            deps = [self.paths[d] for d in reversed(self.load_order([name])[:-1])]
            lines.append(f"{self.paths[name]}: {' '.join(deps)}".rstrip())
        return "\n".join(lines) + "\n"
