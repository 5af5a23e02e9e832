"""The DMA scenarios' host side: a bounded loopback UDP sender that feeds the guest's second
e1000e, the frames it sends, and readers for what the guest's probe and dump hold.

QEMU's `-netdev socket,udp=127.0.0.1:A,localaddr=127.0.0.1:B` binds B and sends the guest's
frames to A; every datagram that reaches B is one Ethernet frame for the NIC. The sender binds
A (so the guest's own frames land somewhere) and sends to B. Each frame carries a run nonce,
its sequence number and its send time (time.monotonic(), the clock qemu.run stamps stages
with), so the host can tell which frames in a saved dump were sent after a given stage.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NIC_MAC = "52:54:00:00:00:03"
NIC_BDF = "0000:05:00.0"  # behind root port rp5 (qemu.argv)
SRC_MAC = bytes.fromhex("020000000001")  # locally administered
ETHERTYPE = 0x88B5  # IEEE 802 local experimental
MAGIC = b"HOFFDMA1"
# One record: magic, nonce, sequence number, send time. Repeated in the frame so that every
# piece of a frame buffer larger than a record names its frame.
RECORD = struct.Struct("<8s8sQd")
REPEAT = 4
MAX_DURATION_S = 600.0  # the sender stops by itself after this, whatever happens
MAX_FRAMES = 30000


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frame(nonce: bytes, seq: int, sent: float) -> bytes:
    rec = RECORD.pack(MAGIC, nonce, seq, sent)
    dst = bytes.fromhex(NIC_MAC.replace(":", ""))
    return dst + SRC_MAC + struct.pack(">H", ETHERTYPE) + rec * REPEAT


@dataclass
class Sender:
    """Sends `rate` frames per second to the guest NIC from start() until stop(), at most
    MAX_FRAMES frames and MAX_DURATION_S seconds; loopback only."""

    rate: float
    nonce: bytes = field(default_factory=lambda: os.urandom(8))
    sent: list[float] = field(default_factory=list)  # send time by sequence number
    qemu_port: int = 0  # QEMU's localaddr (B): the frames go there
    own_port: int = 0  # QEMU's udp= peer (A): the sender's socket
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def netdev(self, netdev_id: str) -> str:
        """The QEMU -netdev argument; binds the sender's own socket first."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.bind(("127.0.0.1", 0))
            self.own_port = self._sock.getsockname()[1]
            self.qemu_port = _free_udp_port()
        return (
            f"socket,id={netdev_id},udp=127.0.0.1:{self.own_port},"
            f"localaddr=127.0.0.1:{self.qemu_port}"
        )

    def start(self) -> None:
        assert self._sock is not None, "netdev() first"
        if not 0 < self.rate <= 1000:
            raise ValueError(f"DMA sender rate {self.rate}: expected 0 < rate <= 1000 frames/s")
        self._thread = threading.Thread(target=self._run, name="dma-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._sock is not None
        period = 1.0 / self.rate
        start = time.monotonic()
        dest = ("127.0.0.1", self.qemu_port)
        while len(self.sent) < MAX_FRAMES:
            due = start + len(self.sent) * period
            now = time.monotonic()
            if now - start > MAX_DURATION_S or self._stop.wait(max(0.0, due - now)):
                break
            now = time.monotonic()
            try:
                self._sock.sendto(frame(self.nonce, len(self.sent), now), dest)
            except OSError:
                pass  # QEMU not listening yet (ECONNREFUSED from an earlier ICMP): count it
            self.sent.append(now)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def log(self) -> dict[str, object]:
        return {"rate": self.rate, "nonce": self.nonce.hex(), "sent": self.sent}


def frames_in(path: Path, nonce: bytes) -> set[int]:
    """Sequence numbers of this run's frames found anywhere in the file (a dump)."""
    key = MAGIC + nonce
    seqs: set[int] = set()
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        at = m.find(key)
        while at >= 0:
            if at + RECORD.size <= len(m):
                _, _, seq, _ = RECORD.unpack_from(m, at)
                if seq < MAX_FRAMES:
                    seqs.add(seq)
            at = m.find(key, at + len(key))
    return seqs


def read_hashes(raw: bytes) -> dict[int, int]:
    """dmaprobe hash output: physical page address -> hash."""
    if raw[:4] != b"DMAH" or len(raw) < 8:
        raise ValueError("not a dmaprobe hash file (no DMAH header)")
    (count,) = struct.unpack_from("<I", raw, 4)
    if len(raw) != 8 + 16 * count:
        raise ValueError(f"dmaprobe hash file: {len(raw)} bytes for {count} pages")
    it = struct.iter_unpack("<QQ", raw[8:])
    return dict(it)


def changed(a: dict[int, int], b: dict[int, int]) -> list[int]:
    """Pages whose hash differs between two passes (both must cover the same pages)."""
    if a.keys() != b.keys():
        raise ValueError(f"hash passes cover different pages ({len(a)} vs {len(b)})")
    return sorted(p for p in a if a[p] != b[p])


def page_bytes(core: Path, paddr: int) -> bytes:
    """The 4 KiB page at physical address paddr in an ELF64 core (a saved dump)."""
    with core.open("rb") as f:
        eh = f.read(64)
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", eh, 32)[0],
            *struct.unpack_from("<HH", eh, 54),
        )
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _, off, _, pa, filesz = struct.unpack("<IIQQQQ", f.read(40))
            if p_type == 1 and pa <= paddr < pa + filesz:
                f.seek(off + paddr - pa)
                return f.read(min(4096, pa + filesz - paddr))
    raise ValueError(f"{core}: no PT_LOAD holds physical address {paddr:#x}")


# Frames the live kernel may still have received after its `crash` marker (printed just
# before `echo c`) are not counted as post-crash.
CRASH_MARGIN_S = 1.0


def summary(result: Any) -> dict[str, Any]:
    """A DMA scenario's figures for the bench (bench/sections/e2e.py): pages changed in each
    hash window, this run's frames in the dump by when they were sent, and handoff-quiesce's
    hook start to last Bus Master cleared. `result` is a scenario.Result."""
    import json
    import re

    def hashes(name: str) -> dict[int, int] | None:
        key = f"capture/hash-{name}.bin"
        return read_hashes(result.read(key)) if key in result.files else None

    out: dict[str, Any] = {"scenario": result.scenario, "kernel": result.kernel, "pages": {}}
    for window, (a, b) in {
        "arrival": ("arrival-1", "arrival-2"),
        "across-hooks": ("arrival-2", "after-1"),
        "after-hooks": ("after-1", "after-2"),
    }.items():
        ha, hb = hashes(a), hashes(b)
        if ha is not None and hb is not None:
            out["pages"][window] = len(changed(ha, hb))
    dumps = [p for k, p in result.files.items() if re.fullmatch(r"capture/(.+/)?vmcore", k)]
    if result.dma is None or len(dumps) != 1:
        return out
    sent = result.dma["sent"]
    seqs = frames_in(dumps[0], bytes.fromhex(result.dma["nonce"]))

    def stage_at(name: str) -> float | None:
        s = [x for x in result.stages if x.name == name]
        return result.qemu_started + s[0].host_s if s else None

    def after(t: float | None) -> int | None:
        return None if t is None else sum(1 for s in seqs if s < len(sent) and sent[s] > t)

    # The first capture hook: handoff's scenario marks it; the baseline's first is dma-arrival.
    crash, hook = stage_at("crash"), stage_at("hook-start") or stage_at("dma-arrival")
    out["frames"] = {
        "sent": len(sent),
        "in_dump": len(seqs),
        "sent_after_crash": after(None if crash is None else crash + CRASH_MARGIN_S),
        "sent_after_restored": after(stage_at("restored")),
        "sent_after_first_hook_plus_0.2s": after(None if hook is None else hook + 0.2),
    }
    if "capture/restore-report.json" in result.files:
        q = json.loads(result.read("capture/restore-report.json")).get("quiescer") or {}
        out["quiescer_ms"] = q.get("start_to_last_cleared_ms")
        out["quiescer_cleared"] = [c["addr"] for c in q.get("cleared", [])]
    before, restored = stage_at("before-restore"), stage_at("restored")
    if before is not None and restored is not None:
        out["restore_s"] = round(restored - before, 3)
    return out
