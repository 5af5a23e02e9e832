"""Build records, notes and two-slot regions in pure Python for tests.

Independent of the C core on purpose (so tests of the reader do not depend on the writer);
``native()`` gives the C encoder where a test wants to cross-check the two.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from typing import Any

from handoff import cbor, payload
from handoff import record as R

BOOT_ID = uuid.UUID("8c6f3d2a-1b4e-4f5a-9c7d-0e1f2a3b4c5d")
MACHINE_ID = bytes.fromhex("0123456789abcdef0123456789abcdef")
CREATED_NS = 1_700_000_000_123_456_789
REGION = struct.Struct("<8sHHIQQQQ12sI")


def config(vendor: int = 0x1AF4, device: int = 0x1041, size: int = 256) -> bytes:
    """A small plausible config space: ids, command/status, class, a BAR, zeros elsewhere."""
    c = bytearray(size)
    struct.pack_into("<HHHH", c, 0, vendor, device, 0x0406, 0x0010)
    c[8:12] = bytes((1, 0, 0, 2))  # revision, prog-if, subclass, class
    struct.pack_into("<I", c, 0x10, 0xFEB00000)
    struct.pack_into("<HH", c, 0x2C, vendor, 0x0001)
    return bytes(c)


def device(addr: str = "0000:00:03.0", *, vendor: int = 0x1AF4, dev: int = 0x1041,
           cls: int = 0x020000, driver: str | None = "virtio-pci", policy: str = "quiesce",
           early: bool = True, size: int = 256) -> dict[str, Any]:
    d: dict[str, Any] = {
        "bus": "pci",
        "addr": addr,
        "ids": {"vendor": vendor, "device": dev, "subvendor": vendor, "subdevice": 1,
                "class": cls, "revision": 1},
        "path": ["pci0000:00", addr],
        "live": payload.snapshot("live", config(vendor, dev, size), size),
        "policy": policy,
    }
    if driver:
        d["driver"] = driver
    if early:
        d["early"] = payload.snapshot("collector", config(vendor, dev, size), size)
    return d


def sample_payload(n_devices: int = 2) -> dict[str, Any]:
    devs = [device(f"0000:{(3 + i) // 32:02x}:{(3 + i) % 32:02x}.0", dev=0x1041 + i)
            for i in range(n_devices)]
    return {"v": 1, "devices": devs}


def make_record(
    payload_obj: dict[str, Any] | None = None,
    *,
    body: bytes | None = None,
    generation: int = 1,
    created_ns: int = CREATED_NS,
    boot_id: bytes = BOOT_ID.bytes,
    machine_id: bytes = MACHINE_ID,
    kernel_release: str = "6.1.0-test-amd64",
    hostname: str = "testhost",
    version: tuple[int, int] = (1, 0),
    ext_extra: bytes = b"",
) -> bytes:
    """A record per spec/format.md §2-3. ``ext_extra`` grows the extended header (a newer
    minor version); ``body`` overrides the CBOR payload bytes."""
    if body is None:
        body = cbor.dumps(payload_obj if payload_obj is not None else sample_payload())
    ext = R.EXT_1_0.pack(kernel_release.encode(), hostname.encode()) + ext_extra
    header_size = R.FIXED_HEADER_SIZE + len(ext)
    assert header_size % 8 == 0
    digest = hashlib.sha256(ext + body).digest()
    fields = [R.MAGIC, version[0], version[1], header_size, len(body), generation, created_ns,
              R.CHECK_CRC32C, R.DIGEST_SHA256, 0, digest, boot_id, machine_id, bytes(12), 0]
    head = bytearray(R.FIXED.pack(*fields))
    struct.pack_into("<I", head, R.CRC_OFFSET, R.crc32c(head[: R.CRC_OFFSET]))
    return bytes(head) + ext + body


def refresh_crc(rec: bytes) -> bytes:
    """Recompute header_crc after a test edited the fixed header."""
    b = bytearray(rec)
    struct.pack_into("<I", b, R.CRC_OFFSET, R.crc32c(b[: R.CRC_OFFSET]))
    return bytes(b)


def note(desc: bytes, n_type: int = R.NT_HANDOFF_RECORD, name: bytes = R.NOTE_NAME) -> bytes:
    """One ELF note (64-bit layout, 4-byte padding), as R24 describes."""
    def pad(n: int) -> bytes:
        return bytes(-n % 4)

    return (struct.pack("<III", len(name), len(desc), n_type) + name + pad(len(name))
            + desc + pad(len(desc)))


def region(slot0: bytes | None, slot1: bytes | None, *, slot_size: int = 64 << 10,
           version: tuple[int, int] = (1, 0), fill: int = 0) -> bytes:
    """A two-slot region (§7): header, slot 0 at 64-byte-rounded 4096, slot 1 after it."""
    s0 = 4096
    s1 = s0 + slot_size
    size = s1 + slot_size
    buf = bytearray([fill]) * size
    buf[:64] = region_header(size, slot_size, s0, s1, version=version)
    for off, rec in ((s0, slot0), (s1, slot1)):
        if rec is not None:
            assert len(rec) <= slot_size
            buf[off : off + len(rec)] = rec
    return bytes(buf)


def region_header(size: int, slot_size: int, s0: int, s1: int, *,
                  version: tuple[int, int] = (1, 0), header_size: int = 64) -> bytes:
    h = bytearray(REGION.pack(b"HDOFREGN", version[0], version[1], header_size, size,
                              slot_size, s0, s1, bytes(12), 0))
    struct.pack_into("<I", h, 60, R.crc32c(h[:60]))
    return bytes(h)


def native() -> Any:
    """The C binding. The C core is part of the package (pip install builds it), so a missing
    one is an ImportError here: a failure, never a skip."""
    from handoff import _binding

    return _binding


def native_record(payload_obj: dict[str, Any] | None = None, **kw: Any) -> bytes:
    b = native()
    assert b is not None
    return b.encode_record(
        cbor.dumps(payload_obj if payload_obj is not None else sample_payload()),
        generation=kw.get("generation", 1),
        created_ns=kw.get("created_ns", CREATED_NS),
        boot_id=kw.get("boot_id", BOOT_ID.bytes),
        machine_id=kw.get("machine_id", MACHINE_ID),
        kernel_release=kw.get("kernel_release", "6.1.0-test-amd64"),
        hostname=kw.get("hostname", "testhost"),
    )
