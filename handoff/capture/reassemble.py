"""Turn a flattened dump (makedumpfile -F, what Debian's kdump-tools saves) into the
kdump-compressed dump it streams, under the same name, so notes can be added to it.

A flattened file is a stream of (offset, size, bytes) chunks meant for a pipe; it has no note
area of its own to extend, and makedumpfile reads it back only through ``-R``. ``makedumpfile
-R`` writes every chunk at its offset, which gives the kdump-compressed dump makedumpfile
would have written without ``-F``: the same header, bitmaps and pages. The result goes to a
new file beside the original, is fsynced, and replaces it by one rename, so an interruption
leaves either the original or the whole new file.
"""

from __future__ import annotations

import os
import subprocess

from handoff import errors as E
from handoff.capture.inject import dump_format

END_MARKER = b"\xff" * 16  # (offset, size) = (-1, -1), big-endian: the stream's last chunk


def reassemble(path: str, makedumpfile: str) -> str:
    """Replace the flattened dump at ``path`` by its reassembled form; returns the format
    ("kdump" or "elf") of the result. The original is untouched if anything fails."""
    tmp = pending(path)
    try:
        os.unlink(tmp)  # a leftover of an interrupted run: never the dump itself
    except FileNotFoundError:
        pass
    with open(path, "rb") as src:
        st = os.fstat(src.fileno())
        src.seek(max(0, st.st_size - 16))
        if st.st_size < 4096 + 16 or src.read(16) != END_MARKER:
            # makedumpfile -R waits forever for the rest of such a stream (measured: 1.7.2)
            raise E.BadContainer(
                f"{path} does not end with the flattened format's end marker: makedumpfile "
                "did not finish writing it", offset=max(0, st.st_size - 16),
                hint=f"{path} is unchanged; reassemble what there is by hand if it matters")
    try:
        with open(path, "rb") as src:
            # at least 5 MiB/s: makedumpfile -R only copies chunks to their offsets
            proc = subprocess.run([makedumpfile, "-R", tmp], stdin=src, capture_output=True,
                                  text=True, timeout=60 + st.st_size // (5 << 20),
                                  check=False, env=dict(os.environ, LC_ALL="C"))
        if proc.returncode != 0:
            last = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            raise E.EnvironmentProblem(
                f"makedumpfile -R could not reassemble {path} (exit {proc.returncode}): "
                f"{' / '.join(last[-2:]) or 'no message'}",
                hint=f"{path} is unchanged; it needs as much free space again beside it")
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fmt = dump_format(os.pread(fd, 16, 0))
            os.fchmod(fd, st.st_mode & 0o7777)  # makedumpfile creates 0600; keep the saver's
            os.fsync(fd)
        finally:
            os.close(fd)
        if fmt not in ("kdump", "elf"):
            raise E.BadContainer(f"makedumpfile -R turned {path} into a {fmt} file", offset=0,
                                 hint=f"{path} is unchanged")
        return fmt
    except subprocess.TimeoutExpired:
        _discard(tmp)
        raise E.EnvironmentProblem(f"makedumpfile -R took too long to reassemble {path}",
                                   hint=f"{path} is unchanged") from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def replace(path: str) -> None:
    """Rename the reassembled file over ``path`` (after notes were added to it) and make the
    rename durable."""
    from handoff.capture.meta import fsync_dir

    os.replace(pending(path), path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def pending(path: str) -> str:
    """Where :func:`reassemble` puts the reassembled form of ``path``."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.handoff-reassemble")
