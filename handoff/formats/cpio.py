"""cpio "newc" archives as the kernel's initramfs unpacker reads them: a reader and a writer.

Format (``man 5 cpio``, init/initramfs.c, usr/gen_init_cpio.c): each member is a 110-byte ASCII
header ("070701" and 13 eight-digit hex fields), the NUL-terminated name, zero padding so that
header + name end on a 4-byte boundary, the data, and zero padding to 4 bytes. The archive ends
with a member named "TRAILER!!!". Alignment is relative to the start of the archive, which the
kernel requires to be 4-byte aligned in the initrd.

The reader never extracts anything: it iterates headers and hands out member data on request.
Unsafe names (absolute, or with a ``..`` component) are flagged, not followed. The writer makes
reproducible archives: uid, gid and mtime are 0, inode numbers are sequential.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Protocol

from handoff._slots import Frozen
from handoff.errors import BadContainer

NEWC_MAGIC = b"070701"
CRC_MAGIC = b"070702"  # newc with a checksum field; the kernel reads both
ODC_MAGIC = b"070707"
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
PATH_MAX = 4096  # the kernel refuses longer names (init/initramfs.c)
_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
           "rdevmajor", "rdevminor", "namesize", "check")


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


class Stream(Protocol):
    """Sequential bytes with a position: an archive in a file, or decompressed output."""

    pos: int

    def read(self, n: int) -> bytes: ...  # fewer than n bytes only at the end

    def skip(self, n: int) -> int: ...  # returns how many bytes were skipped


class Member(Frozen):
    __slots__ = (
        "data_offset",
        "gid",
        "ino",
        "mode",
        "mtime",
        "name",
        "nlink",
        "offset",
        "rdevmajor",
        "rdevminor",
        "size",
        "uid",
    )
    name: str
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    size: int
    ino: int
    rdevmajor: int
    rdevminor: int
    offset: int  # of the header, in the stream
    data_offset: int

    def __init__(
        self,
        name: str,
        mode: int,
        uid: int,
        gid: int,
        nlink: int,
        mtime: int,
        size: int,
        ino: int,
        rdevmajor: int,
        rdevminor: int,
        offset: int,
        data_offset: int,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "uid", uid)
        object.__setattr__(self, "gid", gid)
        object.__setattr__(self, "nlink", nlink)
        object.__setattr__(self, "mtime", mtime)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "ino", ino)
        object.__setattr__(self, "rdevmajor", rdevmajor)
        object.__setattr__(self, "rdevminor", rdevminor)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "data_offset", data_offset)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def unsafe(self) -> str | None:
        """Why extracting this name would be unsafe, or None."""
        return unsafe_name(self.name)


def unsafe_name(name: str) -> str | None:
    if name.startswith("/"):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' component"
    return None


def parse_header(raw: bytes, at: int) -> dict[str, int]:
    """Decode a 110-byte newc header found at stream offset ``at``."""
    magic = raw[:6]
    if magic == ODC_MAGIC:
        raise BadContainer(
            f"old (odc) cpio archive at offset {at}: the kernel reads only newc", offset=at
        )
    if magic not in (NEWC_MAGIC, CRC_MAGIC):
        raise BadContainer(f"bad cpio magic {bytes(magic)!r} at offset {at}", offset=at)
    out = {}
    for i, name in enumerate(_FIELDS):
        field = raw[6 + 8 * i : 14 + 8 * i]
        try:
            if not all(c in b"0123456789abcdefABCDEF" for c in field):
                raise ValueError
            out[name] = int(field, 16)
        except ValueError:
            raise BadContainer(
                f"cpio header at offset {at}: field {name} is not hex ({bytes(field)!r})",
                offset=at + 6 + 8 * i,
            ) from None
    return out


class ArchiveReader:
    """Iterate the members of one newc archive starting at the stream's current position.

    After a member is yielded the caller may :meth:`read_data`; the rest of the member is
    skipped when iteration resumes. Iteration ends after the trailer (not yielded).
    """

    def __init__(self, stream: Stream, max_members: int = 1 << 20) -> None:
        self.s = stream
        self.start = stream.pos
        self.max_members = max_members
        self.count = 0
        self._left = 0  # data bytes of the current member not yet consumed
        self._pad = 0
        self._cur: Member | None = None

    def members(self) -> Iterator[Member]:
        while True:
            self._finish_member()
            at = self.s.pos
            raw = self.s.read(HEADER_SIZE)
            if len(raw) < HEADER_SIZE:
                raise BadContainer(
                    f"truncated cpio header at offset {at} (archive has no {TRAILER})", offset=at
                )
            h = parse_header(raw, at)
            namesize = h["namesize"]
            if namesize < 1 or namesize > PATH_MAX:
                raise BadContainer(
                    f"cpio member at offset {at}: name size {namesize} is outside [1, {PATH_MAX}]",
                    offset=at + 94,
                )
            name_raw = self.s.read(namesize)
            if len(name_raw) < namesize:
                raise BadContainer(f"truncated cpio member name at offset {at}", offset=at)
            if name_raw[-1] != 0 or b"\x00" in name_raw[:-1]:
                raise BadContainer(
                    f"cpio member at offset {at}: name is not one NUL-terminated string",
                    offset=at + HEADER_SIZE,
                )
            name = name_raw[:-1].decode("utf-8", "surrogateescape")
            npad = _pad4(self.s.pos - self.start)
            if len(self.s.read(npad)) < npad:
                raise BadContainer(f"truncated cpio member name at offset {at}", offset=at)
            if name == TRAILER:
                return
            self.count += 1
            if self.count > self.max_members:
                raise BadContainer(f"more than {self.max_members} cpio members", offset=at)
            size = h["filesize"]
            self._left = size
            self._pad = _pad4(size)
            self._cur = Member(
                name=name, mode=h["mode"], uid=h["uid"], gid=h["gid"], nlink=h["nlink"],
                mtime=h["mtime"], size=size, ino=h["ino"], rdevmajor=h["rdevmajor"],
                rdevminor=h["rdevminor"], offset=at, data_offset=self.s.pos,
            )
            yield self._cur

    def read_data(self, n: int) -> bytes:
        """Read up to ``n`` bytes of the current member's data."""
        want = min(n, self._left)
        got = self.s.read(want)
        self._left -= len(got)
        if len(got) < want:
            self._truncated()
        return got

    def _truncated(self) -> None:
        m = self._cur
        assert m is not None
        have = self.s.pos - m.data_offset
        raise BadContainer(
            f"cpio member {m.name!r} at offset {m.offset}: data truncated ({have} of {m.size} "
            "bytes)",
            offset=m.offset,
        )

    def _finish_member(self) -> None:
        want = self._left + self._pad
        if want:
            got = self.s.skip(want)
            if got < self._left:
                self._truncated()
            self._left = self._pad = 0


class BytesStream:
    """A :class:`Stream` over a bytes-like object (tests, small archives)."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def read(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return bytes(out)

    def skip(self, n: int) -> int:
        k = max(0, min(n, len(self.data) - self.pos))
        self.pos += k
        return k


def list_members(data: bytes) -> list[Member]:
    """All members of the single newc archive at the start of ``data``."""
    return list(ArchiveReader(BytesStream(data)).members())


# --- writer -----------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not name or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"cpio member name {name!r} must be relative, without a trailing '/'")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"cpio member name {name!r} has an empty, '.' or '..' component")
    if "\x00" in name or len(name.encode()) + 1 > PATH_MAX:
        raise ValueError(f"cpio member name {name!r} has a NUL or is too long")
    return name


def header(name: str, mode: int, size: int, ino: int, nlink: int = 1,
           rdevmajor: int = 0, rdevminor: int = 0) -> bytes:
    """One newc header and padded name; uid, gid, mtime and devices are 0 (reproducible)."""
    raw_name = name.encode("utf-8", "surrogateescape") + b"\x00"
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevmajor, rdevminor, len(raw_name), 0)
    if any(not 0 <= f <= 0xFFFFFFFF for f in fields):
        raise ValueError(f"cpio member {name!r}: a field does not fit in 32 bits")
    h = NEWC_MAGIC + b"".join(b"%08X" % f for f in fields) + raw_name
    return h + bytes(_pad4(len(h)))


def trailer() -> bytes:
    return header(TRAILER, 0, 0, 0, nlink=1)


def align_for_append(length: int) -> bytes:
    """Zeros to put after ``length`` initrd bytes before appending an uncompressed archive.

    The kernel reads an uncompressed archive only at a 4-byte-aligned offset; elsewhere it logs
    "invalid magic at start of compressed archive" and silently drops the files.
    """
    return bytes(_pad4(length))


class Writer:
    """Build a newc archive in memory, reproducibly. Parents must be added first (or use
    ``parents=True``); the kernel does not create missing directories."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 0
        self._names: set[str] = set()
        self._done = False

    def _add(self, name: str, mode: int, data: bytes, nlink: int, parents: bool) -> None:
        if self._done:
            raise ValueError("archive already finished")
        _check_name(name)
        if name in self._names:
            raise ValueError(f"duplicate cpio member {name!r}")
        if parents:
            parts = name.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in self._names:
                    self.directory(d)
        self._names.add(name)
        self._ino += 1
        self._out += header(name, mode, len(data), self._ino, nlink)
        self._out += data
        self._out += bytes(_pad4(len(data)))

    def directory(self, name: str, mode: int = 0o755, *, parents: bool = False) -> None:
        self._add(name, stat.S_IFDIR | (mode & 0o7777), b"", 2, parents)

    def file(self, name: str, data: bytes, mode: int = 0o644, *, parents: bool = False) -> None:
        self._add(name, stat.S_IFREG | (mode & 0o7777), bytes(data), 1, parents)

    def symlink(self, name: str, target: str, *, parents: bool = False) -> None:
        self._add(name, stat.S_IFLNK | 0o777, target.encode("utf-8", "surrogateescape"), 1,
                  parents)

    def node(self, name: str, kind: int, major: int, minor: int, mode: int = 0o600) -> None:
        """A device node (``kind`` is stat.S_IFCHR or S_IFBLK), e.g. dev/console."""
        if kind not in (stat.S_IFCHR, stat.S_IFBLK):
            raise ValueError("node kind must be S_IFCHR or S_IFBLK")
        if self._done:
            raise ValueError("archive already finished")
        _check_name(name)
        if name in self._names:
            raise ValueError(f"duplicate cpio member {name!r}")
        self._names.add(name)
        self._ino += 1
        self._out += header(name, kind | (mode & 0o7777), 0, self._ino, 1, major, minor)

    def finish(self) -> bytes:
        """Append the trailer and return the archive (a multiple of 4 bytes)."""
        if not self._done:
            self._out += trailer()
            self._done = True
        return bytes(self._out)
