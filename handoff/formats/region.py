"""The two-slot region header (spec/format.md §7): its layout once, and a reader's checks."""

from __future__ import annotations

import struct

from handoff._slots import Frozen
from handoff.errors import RegionError
from handoff.record import crc32c

MAGIC = b"HDOFREGN"  # §7: 8 bytes, no NUL
VERSION_MAJOR = 1  # §7; any minor of major 1 is read (as R7)
VERSION_MINOR = 0
HEADER_SIZE = 64  # §7: what a 1.0 writer emits
MAX_HEADER_SIZE = 4096  # §7: a reader accepts any multiple of 8 in [64, 4096]
CRC_OFFSET = 60  # §7: crc is the CRC-32C of bytes [0, 60)
# §7: magic, version_major, version_minor, header_size, region_size, slot_size, slot0_offset,
# slot1_offset, reserved (R2), crc
HEADER = struct.Struct("<8sHHIQQQQ12sI")
assert HEADER.size == HEADER_SIZE


class RegionHeader(Frozen):
    """A validated region header: both slots lie inside the region and do not overlap."""

    __slots__ = ("header_size", "region_size", "slot_size", "slots", "version_major",
                 "version_minor")
    version_major: int
    version_minor: int
    header_size: int
    region_size: int
    slot_size: int
    slots: tuple[int, int]  # offsets of slot 0 and slot 1 from the region's start

    def __init__(self, version_major: int, version_minor: int, header_size: int,
                 region_size: int, slot_size: int, slots: tuple[int, int]) -> None:
        object.__setattr__(self, "version_major", version_major)
        object.__setattr__(self, "version_minor", version_minor)
        object.__setattr__(self, "header_size", header_size)
        object.__setattr__(self, "region_size", region_size)
        object.__setattr__(self, "slot_size", slot_size)
        object.__setattr__(self, "slots", slots)


def parse_header(raw: bytes, available: int) -> RegionHeader:
    """Validate the first HEADER_SIZE bytes of a region of which ``available`` bytes are
    present. Raises :class:`RegionError` naming the field and its offset in the header."""
    (magic, major, minor, hsize, rsize, ssize, s0, s1, _reserved, crc) = HEADER.unpack(raw)
    if magic != MAGIC:
        raise RegionError("not a two-slot region (bad magic)", offset=0)
    want = crc32c(raw[:CRC_OFFSET])
    if want != crc:
        raise RegionError(
            f"region header checksum mismatch: stored {crc:#010x}, computed {want:#010x}",
            offset=CRC_OFFSET,
        )
    if major != VERSION_MAJOR:
        raise RegionError(
            f"region is format {major}.{minor}, this reader reads {VERSION_MAJOR}.x", offset=8)
    if hsize < HEADER_SIZE or hsize % 8 or hsize > MAX_HEADER_SIZE:
        raise RegionError(
            f"region header_size {hsize} is not a multiple of 8 in [{HEADER_SIZE}, "
            f"{MAX_HEADER_SIZE}]", offset=12)
    if rsize > available:
        raise RegionError(
            f"region_size {rsize} is larger than the {available} bytes present (truncated region)",
            offset=16,
        )
    if ssize == 0 or ssize % 8:
        raise RegionError(f"slot_size {ssize} is not a positive multiple of 8", offset=24)
    for i, s in enumerate((s0, s1)):
        if s < hsize or s % 8 or s > rsize or ssize > rsize - s:
            raise RegionError(
                f"slot {i} [{s}, {s + ssize}) is misaligned or outside the region "
                f"[{hsize}, {rsize})",
                offset=32 + 8 * i,
            )
    if abs(s0 - s1) < ssize:
        raise RegionError(f"slots at {s0} and {s1} of {ssize} bytes overlap", offset=32)
    return RegionHeader(major, minor, hsize, rsize, ssize, (s0, s1))
