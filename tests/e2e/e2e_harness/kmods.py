"""Pick kernel modules and their dependencies out of an unpacked linux-image package."""

from __future__ import annotations

import lzma
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .elfinfo import modinfo

# Debian 12's 6.1 ships plain .ko files; 6.12 ships .ko.xz. busybox's insmod cannot be relied
# on to decompress, so the harness installs every module as a plain .ko.
_SUFFIXES = (".ko.xz", ".ko.zst", ".ko")


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _stem(filename: str) -> str:
    for suffix in _SUFFIXES:
        if filename.endswith(suffix):
            return filename.removesuffix(suffix)
    return filename


@dataclass
class ModuleTree:
    """The modules of one kernel release, indexed by normalized module name.

    `paths` are the installed (uncompressed) paths relative to the release directory, which
    is what modules.dep and the guest's insmod lists name; `builtin` holds the modules built
    into the kernel (modules.builtin), which are never installed or loaded."""

    root: Path  # .../lib/modules/<release>
    paths: dict[str, str]  # name -> kernel/.../name.ko
    sources: dict[str, Path]  # name -> the file in the package (maybe compressed)
    builtin: set[str] = field(default_factory=set)
    plain_dir: Path | None = None  # where compressed modules are decompressed to (cached)

    @classmethod
    def load(cls, root: Path, plain_dir: Path | None = None) -> ModuleTree:
        paths: dict[str, str] = {}
        sources: dict[str, Path] = {}
        for p in sorted((root / "kernel").rglob("*.ko*")):
            if not p.name.endswith(_SUFFIXES):
                continue
            name = _norm(_stem(p.name))
            rel = p.relative_to(root)
            paths[name] = str(rel.parent / (_stem(p.name) + ".ko"))
            sources[name] = p
        builtin_file = root / "modules.builtin"
        builtin = set()
        if builtin_file.exists():
            builtin = {_norm(_stem(Path(ln).name)) for ln in builtin_file.read_text().split()}
        return cls(root, paths, sources, builtin, plain_dir)

    @property
    def release(self) -> str:
        return self.root.name

    def file(self, name: str) -> Path:
        """The module as a plain ELF .ko (decompressed once into plain_dir if need be)."""
        src = self.sources[name]
        if src.name.endswith(".ko"):
            return src
        if self.plain_dir is None:
            raise ValueError(f"{src} is compressed and the tree has no plain_dir")
        out = self.plain_dir / self.paths[name]
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.name.endswith(".xz"):
            data = lzma.decompress(src.read_bytes())
        else:
            data = subprocess.run(
                ["zstd", "-dc", str(src)], capture_output=True, check=True
            ).stdout
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        tmp.rename(out)
        return out

    def depends(self, name: str) -> list[str]:
        deps = modinfo(self.file(name)).get("depends", [""])[0]
        return [_norm(d) for d in deps.split(",") if d]

    def load_order(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """Module names with every dependency before its user (insmod order); modules built
        into this kernel are left out (6.12 builds virtio_pci in, 6.1 does not)."""
        order: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = _norm(name)
            if name in order:
                return
            if name not in self.paths:
                if name in self.builtin:
                    return
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
