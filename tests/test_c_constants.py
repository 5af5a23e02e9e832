"""Every wire constant the Python reader restates equals the one in csrc/handoff.h.

A tiny C program includes the contract header and prints what the compiler sees (values, string
literals, field offsets and struct sizes); each is compared with the Python name that restates
it. A constant added on either side without the other fails here.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from handoff import cbor, payload, record
from handoff.formats import region

ROOT = Path(__file__).resolve().parents[1]

# C expression -> the Python value that restates it.
VALUES = {
    "HANDOFF_MAGIC_SIZE": len(record.MAGIC),
    "HANDOFF_VERSION_MAJOR": record.VERSION_MAJOR,
    "HANDOFF_VERSION_MINOR": record.VERSION_MINOR,
    "HANDOFF_FIXED_HEADER_SIZE": record.FIXED_HEADER_SIZE,
    "HANDOFF_HEADER_CRC_OFFSET": record.CRC_OFFSET,
    "HANDOFF_HEADER_SIZE_V1_0": record.HEADER_SIZE_V1_0,
    "HANDOFF_HEADER_SIZE_MIN": record.MIN_HEADER_SIZE,
    "HANDOFF_HEADER_SIZE_MAX": record.MAX_HEADER_SIZE,
    "HANDOFF_PAYLOAD_SIZE_MAX": record.MAX_PAYLOAD_SIZE,
    "HANDOFF_ALG_CRC32C": record.CHECK_CRC32C,
    "HANDOFF_ALG_SHA256": record.DIGEST_SHA256,
    "HANDOFF_TEXT_SIZE": record.EXT_1_0.size // 2,
    "HANDOFF_CBOR_MAX_DEPTH": cbor.MAX_DEPTH,
    "HANDOFF_SPARSE_CONFIG_MAX": payload.CONFIG_MAX,
    "HANDOFF_SPARSE_MIN_GAP": payload._MIN_ZERO_GAP,
    "HANDOFF_NOTE_NAMESZ": len(record.NOTE_NAME),
    "NT_HANDOFF_RECORD": record.NT_HANDOFF_RECORD,
    "NT_HANDOFF_REPORT": record.NT_HANDOFF_REPORT,
    "HANDOFF_REGION_VERSION_MAJOR": region.VERSION_MAJOR,
    "HANDOFF_REGION_VERSION_MINOR": region.VERSION_MINOR,
    "HANDOFF_REGION_HEADER_SIZE": region.HEADER_SIZE,
    "HANDOFF_REGION_HEADER_SIZE_MAX": region.MAX_HEADER_SIZE,
    "HANDOFF_REGION_CRC_OFFSET": region.CRC_OFFSET,
    "sizeof(struct handoff_wire_header)": record.FIXED.size,
    "sizeof(struct handoff_wire_ext_v1_0)": record.EXT_1_0.size,
    "sizeof(struct handoff_wire_region)": region.HEADER.size,
}
# C string literal (its bytes with the terminating NUL) -> the Python bytes restating it.
STRINGS = {
    "HANDOFF_MAGIC": record.MAGIC,
    "HANDOFF_NOTE_NAME": record.NOTE_NAME,
    "HANDOFF_REGION_MAGIC": region.MAGIC + b"\0",  # 8 bytes on the wire, without a NUL
}
# The field order of each wire struct, as the Python struct.Struct formats lay them out.
HEADER_FIELDS = ("magic", "version_major", "version_minor", "header_size", "payload_size",
                 "generation", "created_ns", "header_check_alg", "payload_digest_alg", "flags",
                 "payload_digest", "boot_id", "machine_id", "reserved", "header_crc")
EXT_FIELDS = ("kernel_release", "hostname")
REGION_FIELDS = ("magic", "version_major", "version_minor", "header_size", "region_size",
                 "slot_size", "slot0_offset", "slot1_offset", "reserved", "crc")


def offsets(fmt: struct.Struct) -> list[int]:
    """The offset of each field of a little-endian, unpadded struct.Struct format."""
    out, pos = [], 0
    for count, code in re.findall(r"(\d*)([a-zA-Z])", fmt.format.lstrip("<")):
        out.append(pos)
        pos += struct.calcsize("<" + (count or "") + code)
    return out


def c_values(tmp: Path) -> dict[str, int | bytes]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (apt install build-essential): the C core needs one anyway")
    lines = ['#include <stdio.h>', '#include "handoff.h"', "int main(void) {"]
    for expr in VALUES:
        lines.append(f'  printf("v %s %llu\\n", "{expr}", (unsigned long long)({expr}));')
    for name in STRINGS:
        lines.append(f'  printf("s {name} ");')
        lines.append(f'  for (size_t i = 0; i < sizeof({name}); i++) printf("%02x", '
                     f'(unsigned char){name}[i]);')
        lines.append('  printf("\\n");')
    for struct_name, fields in (("handoff_wire_header", HEADER_FIELDS),
                                ("handoff_wire_ext_v1_0", EXT_FIELDS),
                                ("handoff_wire_region", REGION_FIELDS)):
        for f in fields:
            lines.append(f'  printf("o {struct_name}.{f} %zu\\n", '
                         f"offsetof(struct {struct_name}, {f}));")
    lines += ["  return 0;", "}"]
    src = tmp / "constants.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp / "constants"
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", str(ROOT / "csrc"), "-o", str(exe),
                    str(src)], check=True, capture_output=True)
    out: dict[str, int | bytes] = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        kind, _, rest = line.partition(" ")
        name, _, value = rest.rpartition(" ")
        out[name] = bytes.fromhex(value) if kind == "s" else int(value)
    return out


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int | bytes]:
    return c_values(tmp_path_factory.mktemp("cconst"))


@pytest.mark.parametrize("expr", VALUES)
def test_value_equals_the_c_header(c: dict[str, int | bytes], expr: str) -> None:
    assert c[expr] == VALUES[expr]


@pytest.mark.parametrize("name", STRINGS)
def test_string_equals_the_c_header(c: dict[str, int | bytes], name: str) -> None:
    assert c[name] == STRINGS[name]


@pytest.mark.parametrize("struct_name, fmt, fields", [
    ("handoff_wire_header", record.FIXED, HEADER_FIELDS),
    ("handoff_wire_ext_v1_0", record.EXT_1_0, EXT_FIELDS),
    ("handoff_wire_region", region.HEADER, REGION_FIELDS),
])
def test_struct_layout_equals_the_c_header(c: dict[str, int | bytes], struct_name: str,
                                           fmt: struct.Struct, fields: tuple[str, ...]) -> None:
    assert [c[f"{struct_name}.{f}"] for f in fields] == offsets(fmt)
