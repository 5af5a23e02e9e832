"""What a capture initrd holds (names, sizes, a few small files), and appending to a copy of it.

Listing walks the concatenated archives the way the kernel does, with handoff's cpio reader and
the decompressors of :mod:`handoff.sources.initrd`; it never extracts anything.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from handoff.errors import BadContainer
from handoff.formats import cpio

MAX_WANTED = 1 << 20  # small text files read during listing (ORDER files)
MAX_LIBRARY = 32 << 20  # shared libraries hashed during listing (a libc is ~2 MiB)
# Shared libraries and dynamic loaders, which the runtime may reuse instead of shipping its own
# copies when they are byte for byte the same files (handoff.kexec.runtime).
LIBRARY = re.compile(r"(usr/)?lib(32|64|x32)?/(.*/)?(ld-linux[^/]*\.so[^/]*|lib[^/]*\.so[^/]*)")


@dataclass
class Listing:
    """Members of an initrd by name (the last archive's member wins, as in the kernel).

    ``complete`` is False when part of the initrd could not be read (``problem`` says why);
    callers must then not rely on an absence.
    """

    members: dict[str, cpio.Member] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)  # name -> target
    digests: dict[str, str] = field(default_factory=dict)  # shared library -> SHA-256 (hex)
    archives: list[tuple[int, str | None]] = field(default_factory=list)  # (offset, compression)
    complete: bool = True
    problem: str | None = None

    @property
    def unpacked_size(self) -> int:
        """Bytes the files take once unpacked (rootfs keeps every file in memory)."""
        return sum(m.size for m in self.members.values())

    def has(self, name: str) -> bool:
        return name in self.members

    def same_file(self, digest: str, basename: str) -> str | None:
        """A regular file of the initrd named ``basename`` in a library directory whose
        SHA-256 is ``digest`` (a library the runtime need not ship), else None."""
        for name, d in sorted(self.digests.items()):
            if d == digest and name.rsplit("/", 1)[-1] == basename:
                return name
        return None

    def names(self) -> Iterable[str]:
        return self.members.keys()

    def resolve(self, name: str) -> str:
        """``name`` with every directory symlink of the initrd followed (``lib/x`` becomes
        ``usr/lib/x`` in a merged-/usr initrd). The last component is not followed."""
        parts = name.split("/")
        done: list[str] = []
        hops = 0
        while len(parts) > 1:
            c = parts.pop(0)
            if c in ("", "."):
                continue
            if c == "..":
                if done:
                    done.pop()
                continue
            target = self.symlinks.get("/".join([*done, c]))
            if target is not None and hops < 40:
                hops += 1
                if target.startswith("/"):
                    done = []
                parts = target.split("/") + parts
                continue
            done.append(c)
        return "/".join([*done, *parts])

    def writes_safely(self, writer: cpio.Writer, name: str, data: bytes, mode: int,
                      made: set[str]) -> str:
        """Add a file to ``writer`` at ``name`` resolved through this initrd's symlinks, with
        directory entries only for directories the initrd lacks; returns the name used.

        A directory entry where the initrd has a symlink would replace the symlink: the
        kernel's clean_path() (init/initramfs.c) first removes an entry of another type, so a
        ``lib`` entry would cut ``lib -> usr/lib`` and every library path with it.
        """
        real = self.resolve(name)
        parts = real.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made and d not in self.members:
                writer.directory(d)
                made.add(d)
        writer.file(real, data, mode)
        return real


def list_initrd(path: Path, wanted: Iterable[str] = ()) -> Listing:
    """List ``path``; the data of members named in ``wanted`` (up to 1 MiB each) is kept."""
    from handoff.sources.blob import FileBlob
    from handoff.sources.initrd import Context, archives

    want = set(wanted)
    out = Listing()
    with FileBlob(str(path)) as blob:
        try:
            for part in archives(blob, Context()):
                out.archives.append((part.offset, part.method))
                if part.stream is None:
                    raise BadContainer(f"cannot read the {part.method} part at offset "
                                       f"{part.offset} (install zstd)", offset=part.offset)
                _members(part.stream, out, want, single=part.raw)
        except BadContainer as e:
            out.complete = False
            out.problem = str(e)
    return out


def _members(s: object, out: Listing, want: set[str], *, single: bool) -> None:
    while True:
        s.skip_zeros()  # type: ignore[attr-defined]
        if not s.peek(6):  # type: ignore[attr-defined]
            return
        reader = cpio.ArchiveReader(s)  # type: ignore[arg-type]
        for m in reader.members():
            name = m.name.removeprefix("./")
            out.members[name] = m
            out.data.pop(name, None)
            out.symlinks.pop(name, None)
            out.digests.pop(name, None)
            if m.is_file and m.size <= MAX_LIBRARY and LIBRARY.fullmatch(name):
                out.digests[name] = hashlib.sha256(reader.read_data(m.size)).hexdigest()
            elif name in want and m.is_file and m.size <= MAX_WANTED:
                out.data[name] = reader.read_data(m.size)
            elif m.is_symlink and m.size <= cpio.PATH_MAX:
                out.symlinks[name] = reader.read_data(m.size).decode("utf-8", "replace")
        if single:
            return


@dataclass(frozen=True)
class Appended:
    """Where each part of the new initrd starts. ``parts`` maps a name to (offset, size)."""

    path: Path
    size: int
    original_size: int
    parts: dict[str, tuple[int, int]]


def append_copy(original: Path, dest: Path, parts: list[tuple[str, bytes]]) -> Appended:
    """Copy ``original`` to ``dest`` and append ``parts`` (cpio archives, raw or compressed).

    Each part starts at a 4-byte-aligned offset, zero-padded: the kernel reads an uncompressed
    archive only there (kdump-in-qemu.md) and skips the zeros. The original is only read.
    """
    from handoff import outfile

    offsets: dict[str, tuple[int, int]] = {}
    with open(original, "rb") as src, outfile.create(dest, outfile.OWN) as out:
        shutil.copyfileobj(src, out, 1 << 20)
        size = out.tell()
        original_size = size
        for name, data in parts:
            pad = cpio.align_for_append(size)
            out.write(pad)
            size += len(pad)
            offsets[name] = (size, len(data))
            out.write(data)
            size += len(data)
    return Appended(dest, size, original_size, offsets)
