"""Decompressing one compressed archive of an initrd, boundedly, as a cpio Stream.

gzip, xz, lzma and bzip2 use the standard library; zstd runs the ``zstd`` program (the frame
extent is found from frame headers, so a missing program only hides that archive). Output
counts against a shared budget and a ratio limit so that a decompression bomb stops early.
"""

from __future__ import annotations

import bz2
import lzma
import os
import subprocess
import threading
import zlib
from collections.abc import Callable
from typing import Any

from handoff.budget import spend
from handoff.errors import BadContainer
from handoff.formats.blob import Blob
from handoff.sources.context import Context, MissingTool

MAX_RATIO = 2000  # output / input, enforced once output passes RATIO_FLOOR
RATIO_FLOOR = 64 << 20
CHUNK = 1 << 20  # decompressed output per step
IN_CHUNK = 256 << 10  # compressed input per step (zlib copies its unconsumed tail)
MAX_ZSTD_BLOCKS = 1 << 20  # frames + blocks walked to find a zstd stream's end (128 GiB of data)


class Decompressed:
    """Decompressed output of one compressed stream in the initrd, as a cpio Stream.

    ``end`` (the offset in the initrd just after the compressed stream) is known once the
    decompressor reports the end of its stream.
    """

    def __init__(self, blob: Blob, start: int, method: str, ctx: Context) -> None:
        self.blob, self.start, self.method, self.ctx = blob, start, method, ctx
        self.pos = 0
        self.buf = bytearray()
        self.eof = False
        self.consumed = 0  # compressed bytes fed
        self.produced = 0
        self.end: int | None = None
        self._pull: Callable[[], bytes] = self._setup()

    # -- decompressors --------------------------------------------------------------------
    def _setup(self) -> Callable[[], bytes]:
        m = self.method
        if m == "zstd":
            return self._zstd()
        if m == "gzip":
            d: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif m == "xz":
            d = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        elif m == "lzma":
            d = lzma.LZMADecompressor(lzma.FORMAT_ALONE)
        elif m == "bzip2":
            d = bz2.BZ2Decompressor()
        else:  # pragma: no cover - callers check SUPPORTED
            raise BadContainer(f"{m} decompression is not supported", offset=self.start)
        pending = b""

        def pull() -> bytes:
            nonlocal pending
            while True:
                if m == "gzip":
                    if d.eof:
                        # At the end of the stream zlib puts all leftover input in
                        # unused_data and leaves the same bytes in unconsumed_tail
                        # (``pending``): count them once, or the next archive's offset is
                        # wrong (negative) when output was limited in the final call.
                        return self._finish(len(d.unused_data))
                    if not pending:
                        pending = self._input()
                        if not pending:
                            return self._truncated()
                    out = d.decompress(pending, CHUNK)
                    pending = d.unconsumed_tail
                else:
                    if d.eof:
                        return self._finish(len(d.unused_data) + len(pending))
                    if d.needs_input:
                        if pending:
                            data, pending = pending, b""
                        else:
                            data = self._input()
                            if not data:
                                return self._truncated()
                    else:
                        data = b""
                    out = d.decompress(data, CHUNK)
                if out:
                    return out

        def guarded() -> bytes:
            try:
                return pull()
            except BadContainer:
                raise
            except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:
                raise BadContainer(
                    f"{m} archive at offset {self.start} is corrupt: {e}", offset=self.start
                ) from None

        return guarded

    def _input(self) -> bytes:
        data = self.blob.pread(self.start + self.consumed, IN_CHUNK)
        self.consumed += len(data)
        return data

    def _finish(self, unused: int) -> bytes:
        self.eof = True
        self.end = self.start + self.consumed - unused
        return b""

    def _truncated(self) -> bytes:
        raise BadContainer(
            f"{self.method} archive at offset {self.start} is truncated", offset=self.start
        )

    def _zstd(self) -> Callable[[], bytes]:
        length = zstd_frames_length(self.blob, self.start)
        if self.ctx.zstd() is None:
            raise MissingTool(
                f"zstd-compressed archive at offset {self.start}: the zstd program is not "
                "installed, so handoff cannot look inside (install zstd)",
                offset=self.start,
            )
        proc = subprocess.Popen(
            [str(self.ctx.zstd()), "-d", "-c", "-q", "--no-progress"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout
        self.consumed = length
        self._proc = proc

        def feed() -> None:
            try:
                at = 0
                while at < length:
                    data = self.blob.pread(self.start + at, min(CHUNK, length - at))
                    if not data:
                        break
                    stdin.write(data)
                    at += len(data)
            except (BrokenPipeError, OSError, ValueError):
                pass
            finally:
                try:
                    stdin.close()
                except OSError:
                    pass

        t = threading.Thread(target=feed, daemon=True)
        t.start()

        def pull() -> bytes:
            out = os.read(stdout.fileno(), CHUNK)
            if out:
                return out
            t.join()
            rc = proc.wait()
            stdout.close()
            if rc != 0:
                raise BadContainer(
                    f"zstd archive at offset {self.start} is corrupt (zstd exited {rc})",
                    offset=self.start,
                )
            return self._finish(0)

        return pull

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None and proc.stdout and not proc.stdout.closed:
            proc.stdout.close()

    # -- Stream ---------------------------------------------------------------------------
    def _fill(self, n: int) -> None:
        while len(self.buf) < n and not self.eof:
            out = self._pull()
            if not out:
                continue
            self.produced += len(out)
            # Every decompressed byte of every level counts against the input's budget.
            spend(self.ctx.work, len(out), f"{self.method} output", self.start)
            self.ctx.budget -= len(out)
            if self.ctx.budget < 0:
                raise BadContainer(
                    f"{self.method} archive at offset {self.start}: decompressed output exceeds "
                    f"{self.ctx.limit >> 20} MiB in total (a decompression bomb?)",
                    offset=self.start,
                )
            if self.produced > RATIO_FLOOR and self.produced > MAX_RATIO * max(self.consumed, 1):
                raise BadContainer(
                    f"{self.method} archive at offset {self.start}: expands more than "
                    f"{MAX_RATIO}:1 (a decompression bomb?)",
                    offset=self.start,
                )
            self.buf += out

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.pos += len(out)
        return out

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self.buf[:n])

    def skip(self, n: int) -> int:
        done = 0
        while done < n:
            self._fill(min(n - done, CHUNK))
            k = min(n - done, len(self.buf))
            if not k:
                break
            del self.buf[:k]
            done += k
        self.pos += done
        return done

    def skip_zeros(self) -> int:
        start = self.pos
        while True:
            self._fill(1)
            if not self.buf:
                break
            nz = len(self.buf) - len(self.buf.lstrip(b"\x00"))
            del self.buf[:nz]
            self.pos += nz
            if self.buf:
                break
        return self.pos - start

    def drain(self) -> None:
        """Run the decompressor to the end of its stream (to learn ``end``)."""
        while not self.eof:
            self.buf.clear()
            self._fill(CHUNK)
        self.buf.clear()


def zstd_frames_length(blob: Blob, start: int) -> int:
    """Length of the run of zstd (and skippable) frames at ``start``, from frame headers only.

    RFC 8878 §3.1: a frame is a header, blocks with 3-byte headers (last-block bit, type, size)
    and an optional 4-byte checksum. Consecutive frames form one stream, as ``zstd -T`` writes.
    """
    pos = start
    steps = [0]
    while True:
        _step(steps, start)
        magic = blob.pread(pos, 4)
        if len(magic) < 4:
            break
        m = int.from_bytes(magic, "little")
        if 0x184D2A50 <= m <= 0x184D2A5F:  # skippable frame
            sz = blob.pread(pos + 4, 4)
            if len(sz) < 4:
                raise BadContainer(f"truncated zstd skippable frame at offset {pos}", offset=pos)
            pos += 8 + int.from_bytes(sz, "little")
        elif m == 0xFD2FB528:
            pos = _zstd_frame_end(blob, pos, steps)
        else:
            break
        if pos > blob.size:
            raise BadContainer(f"zstd frame at offset {start} is truncated", offset=start)
    return pos - start


def _step(steps: list[int], start: int) -> None:
    steps[0] += 1
    if steps[0] > MAX_ZSTD_BLOCKS:
        raise BadContainer(
            f"zstd stream at offset {start} has more than {MAX_ZSTD_BLOCKS} frames and blocks",
            offset=start,
        )


def _zstd_frame_end(blob: Blob, pos: int, steps: list[int]) -> int:
    hdr = blob.pread(pos + 4, 1)
    if not hdr:
        raise BadContainer(f"truncated zstd frame header at offset {pos}", offset=pos)
    d = hdr[0]
    fcs_flag, single, checksum, dict_flag = d >> 6, (d >> 5) & 1, (d >> 2) & 1, d & 3
    if d & 0x08:
        raise BadContainer(f"zstd frame at offset {pos}: reserved bit set", offset=pos + 4)
    size = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    size += ((1 if single else 0), 2, 4, 8)[fcs_flag]
    at = pos + size
    while True:
        _step(steps, pos)
        bh = blob.pread(at, 3)
        if len(bh) < 3:
            raise BadContainer(f"truncated zstd frame at offset {pos}", offset=pos)
        v = int.from_bytes(bh, "little")
        last, btype, bsize = v & 1, (v >> 1) & 3, v >> 3
        if btype == 3:
            raise BadContainer(f"zstd frame at offset {pos}: reserved block type", offset=at)
        at += 3 + (1 if btype == 1 else bsize)
        if at > blob.size:
            raise BadContainer(f"truncated zstd frame at offset {pos}", offset=pos)
        if last:
            break
    return at + (4 if checksum else 0)


