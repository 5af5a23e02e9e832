"""Creating output files: never through a symlink, never over a stranger's file, never half.

Every file handoff writes goes through :func:`create` (or :func:`write_file`):

- the bytes go to a new temporary file beside the target, opened ``O_CREAT|O_EXCL|O_NOFOLLOW``
  (a name planted there, symlink or not, makes the open fail instead of being followed), mode
  0600 unless the caller says otherwise; then fsync, rename into place, fsync of the directory;
- an existing target is replaced only if it is a file of the same kind (a record by a record,
  a restore report by a report, capture metadata by metadata) or empty, else refused unless
  ``force``; a symbolic link at the target is refused unless ``force``, and even then it is
  replaced, never followed (handoff's own working files, kind :data:`OWN`, are always
  replaced, links included);
- a new target is moved into place without replacing anything (link, then unlink): a file
  that appears meanwhile is refused, not clobbered;
- on any error the temporary file is removed, and the message names the user's path.

A character device or FIFO named explicitly (``-o /dev/null``) is written in place when the
caller allows it (``special_ok``).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from handoff.errors import EnvironmentProblem, UsageError

PEEK = 8 << 20  # bytes of an existing file read to recognise its kind (a report is <= 4 MiB)


class Kind:
    """What may be replaced at an output path without ``force``: a name for messages and a
    predicate over the existing file's first :data:`PEEK` bytes."""

    def __init__(self, name: str, test: Callable[[bytes], bool] | None) -> None:
        self.name = name
        self.test = test


def _json_kind(kind: str, key: str = "kind") -> Callable[[bytes], bool]:
    def test(data: bytes) -> bool:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False
        return isinstance(doc, dict) and doc.get(key) == kind
    return test


def _is_record(data: bytes) -> bool:
    from handoff.record import MAGIC

    return data[:8] == MAGIC


RECORD = Kind("a handoff record", _is_record)
REPORT = Kind("a handoff restore report", _json_kind("handoff-restore-report"))
META = Kind("handoff capture metadata", _json_kind("handoff-capture"))
OWN = Kind("a file of handoff's own", None)  # handoff's working files: always replaced


def _fail(path: str, e: OSError, hint: str | None = None) -> EnvironmentProblem:
    """The error for ``e`` while writing ``path``: the user's path, never the temporary one."""
    why = e.strerror or str(e)
    if hint is None:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = f"free space on the file system that holds {os.path.dirname(path) or '.'}"
        elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = "run as root, or write to a directory you may write"
        else:
            hint = "write to another path"
    return EnvironmentProblem(f"cannot write {path}: {why}", hint=hint)


def check(path: str | os.PathLike[str], kind: Kind, *, force: bool = False,
          special_ok: bool = False, flag: str = "--force") -> str:
    """What writing ``path`` would do: "new", "replace" or "special" (written in place).

    Raises :class:`UsageError` for a target that must not be replaced and
    :class:`EnvironmentProblem` for a directory that does not exist. Nothing is written.
    """
    p = os.fspath(path)
    head = os.path.dirname(p) or "."
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        if not os.path.isdir(head):
            raise EnvironmentProblem(f"cannot write {p}: {head} is not a directory",
                                     hint="create the directory, or pass a file in one") from None
        return "new"
    except OSError as e:
        raise _fail(p, e) from None
    if stat.S_ISLNK(st.st_mode):
        if not force and kind.test is not None:
            raise UsageError(
                f"refusing to write {p}: it is a symbolic link (to {_readlink(p)}), and handoff "
                "never writes through one",
                hint=f"remove it, pass another path, or {flag} to replace the link itself")
        return "replace"
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cannot write {p}: it is a directory", hint="pass a file path")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        if special_ok:
            return "special"
        raise UsageError(f"refusing to write {p}: it is a device or FIFO",
                         hint="pass a regular file path")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"refusing to write {p}: it is not a regular file",
                         hint="pass a regular file path")
    if force or kind.test is None or st.st_size == 0:
        return "replace"
    if st.st_size <= PEEK and kind.test(_peek(p)):
        return "replace"
    raise UsageError(
        f"refusing to replace {p}: it exists and is not {kind.name} "
        f"({st.st_size} bytes)",
        hint=f"pass another path, or {flag} to replace it")


def _readlink(p: str) -> str:
    try:
        return os.readlink(p)
    except OSError:
        return "?"


def _peek(p: str) -> bytes:
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        return os.read(fd, PEEK)
    except OSError:
        return b""
    finally:
        os.close(fd)


@contextmanager
def create(path: str | os.PathLike[str], kind: Kind, *, force: bool = False,
           mode: int = 0o600, special_ok: bool = False,
           flag: str = "--force") -> Iterator[IO[bytes]]:
    """A binary file object whose contents become ``path`` when the block ends without error.

    See the module docstring for the rules. An ``OSError`` inside the block (ENOSPC, EIO) or
    while committing becomes :class:`EnvironmentProblem` naming ``path``; the temporary file
    is removed and an existing target is left as it was.
    """
    p = os.fspath(path)
    how = check(p, kind, force=force, special_ok=special_ok, flag=flag)
    if how == "special":
        try:
            fd = os.open(p, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise _fail(p, e) from None
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
        except OSError as e:
            raise _fail(p, e) from None
        return
    head, name = os.path.split(p)
    tmp = _temp(head, name, mode, p)
    fd = tmp[1]
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if how == "replace":
            os.replace(tmp[0], p)
        else:
            rename_noreplace(tmp[0], p)
        done = True
    except FileExistsError:
        raise UsageError(f"refusing to replace {p}: it appeared while handoff was writing it",
                         hint="pass another path, or run again") from None
    except OSError as e:
        raise _fail(p, e) from None
    finally:
        if not done:
            try:
                os.unlink(tmp[0])
            except OSError:
                pass
    fsync_dir(head or ".")


def _temp(head: str, name: str, mode: int, p: str) -> tuple[str, int]:
    for _ in range(16):
        t = os.path.join(head, f".{name}.{os.urandom(4).hex()}.tmp")
        try:
            return t, os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
        except OSError as e:
            raise _fail(p, e) from None
    raise EnvironmentProblem(f"cannot create a temporary file beside {p}")  # pragma: no cover


def write_file(path: str | os.PathLike[str], data: bytes, kind: Kind, *, force: bool = False,
               mode: int = 0o600, special_ok: bool = False, flag: str = "--force") -> str:
    """Write ``data`` to ``path`` by the rules of :func:`create`; returns the path."""
    with create(path, kind, force=force, mode=mode, special_ok=special_ok, flag=flag) as f:
        f.write(data)
    return os.fspath(path)


def rename_noreplace(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` unless ``dst`` exists (FileExistsError), symlink or not.

    A hard link fails on an existing name without following it; file systems without hard
    links (vfat) fall back to a check and a rename.
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                           errno.ENOSYS, errno.EXDEV):
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def create_new(path: str, mode: int = 0o600) -> int:
    """A new file at ``path`` for writing in place (a dump): O_EXCL|O_NOFOLLOW, never an
    existing name. Raises UsageError if it exists, EnvironmentProblem if it cannot be made."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise UsageError(f"{path} already exists; a dump is never overwritten",
                         hint="move it away, or save into a new directory") from None
    except OSError as e:
        raise _fail(path, e) from None


def fsync_dir(directory: str) -> None:
    """Make a rename or a new file in ``directory`` durable (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
