"""Type stub for the compiled C core (csrc/, built by csrc/build_ffi.py at pip install).

Generated from csrc/handoff_cdef.h and kept equal to it by tests/test_native_stub.py. Only
handoff._binding imports this module; pointers and structs are cffi ``CData`` (``Any`` here).
"""

from typing import Any

ffi: Any

class _Lib:
    # enum handoff_err, handoff_crc32c_impl, handoff_sha256_impl, handoff_check_flags
    HANDOFF_OK: int
    HANDOFF_E_INVAL: int
    HANDOFF_E_TRUNCATED: int
    HANDOFF_E_MAGIC: int
    HANDOFF_E_HEADER_CRC: int
    HANDOFF_E_VERSION: int
    HANDOFF_E_HEADER_SIZE: int
    HANDOFF_E_PAYLOAD_SIZE: int
    HANDOFF_E_DIGEST: int
    HANDOFF_E_ALG: int
    HANDOFF_E_TEXT: int
    HANDOFF_E_NOSPACE: int
    HANDOFF_E_IO: int
    HANDOFF_E_NO_RECORD: int
    HANDOFF_E_REGION: int
    HANDOFF_E_INTERRUPTED: int
    HANDOFF_E_TRAILING: int
    HANDOFF_E_CBOR: int
    HANDOFF_E_SCHEMA: int
    HANDOFF_CRC32C_AUTO: int
    HANDOFF_CRC32C_TABLE: int
    HANDOFF_CRC32C_SSE42: int
    HANDOFF_SHA256_AUTO: int
    HANDOFF_SHA256_PORTABLE: int
    HANDOFF_SHA256_SHANI: int
    HANDOFF_CHECK_PAYLOAD: int
    HANDOFF_CHECK_EXACT: int
    # static const values, from handoff.h at build time
    HANDOFF_VERSION_MAJOR: int
    HANDOFF_VERSION_MINOR: int
    HANDOFF_FIXED_HEADER_SIZE: int
    HANDOFF_HEADER_SIZE_V1_0: int
    HANDOFF_HEADER_SIZE_MIN: int
    HANDOFF_HEADER_SIZE_MAX: int
    HANDOFF_PAYLOAD_SIZE_MAX: int
    HANDOFF_RECORD_SIZE_MAX: int
    HANDOFF_TEXT_SIZE: int
    HANDOFF_CBOR_MAX_DEPTH: int
    NT_HANDOFF_RECORD: int
    NT_HANDOFF_REPORT: int
    HANDOFF_REGION_HEADER_SIZE: int
    HANDOFF_SPARSE_CONFIG_MAX: int
    HANDOFF_SPARSE_MIN_GAP: int
    def handoff_strerror(self, err: int) -> Any: ...
    def handoff_crc32c(self, crc: int, buf: Any, len: int, impl: int, crc_ret: Any) -> int: ...
    def handoff_crc32c_available(self, impl: int) -> int: ...
    def handoff_sha256_init(self, ctx: Any) -> int: ...
    def handoff_sha256_update(self, ctx: Any, data: Any, len: int) -> int: ...
    def handoff_sha256_final(self, ctx: Any, digest_ret: Any) -> int: ...
    def handoff_sha256(self, data: Any, len: int, digest_ret: Any) -> int: ...
    def handoff_sha256_using(self, data: Any, len: int, impl: int, digest_ret: Any) -> int: ...
    def handoff_sha256_available(self, impl: int) -> int: ...
    def handoff_record_encode(
        self, payload: Any, payload_len: int, producer: Any, out: Any, out_cap: int, len_ret: Any
    ) -> int: ...
    def handoff_record_verify(self, buf: Any, len: int, info_ret: Any) -> int: ...
    def handoff_record_check(self, buf: Any, len: int, flags: int, info_ret: Any) -> int: ...
    def handoff_record_set_generation(self, buf: Any, len: int, generation: int) -> int: ...
    def handoff_payload_check(self, payload: Any, len: int, diag_ret: Any) -> int: ...
    def handoff_cbor_check(self, buf: Any, len: int, diag_ret: Any) -> int: ...
    def handoff_sparse_encode(
        self, config: Any, len: int, out: Any, out_cap: int, len_ret: Any
    ) -> int: ...
    def handoff_note_wrap(
        self, desc: Any, desc_len: int, n_type: int, out: Any, out_cap: int, len_ret: Any
    ) -> int: ...
    def handoff_region_format(self, base: Any, size: int, slot_size: int) -> int: ...
    def handoff_region_inspect(self, base: Any, size: int, info_ret: Any) -> int: ...
    def handoff_region_read_mem(
        self, base: Any, size: int, off_ret: Any, len_ret: Any, gen_ret: Any, slot_ret: Any
    ) -> int: ...
    def handoff_region_update_mem(
        self,
        base: Any,
        size: int,
        record: Any,
        len: int,
        budget: Any,
        flush: Any,
        flush_ctx: Any,
        slot_ret: Any,
        generation_ret: Any,
    ) -> int: ...
    def handoff_region_format_file(
        self, path: Any, offset: int, size: int, slot_size: int
    ) -> int: ...
    def handoff_region_inspect_file(
        self, path: Any, offset: int, size: int, info_ret: Any
    ) -> int: ...
    def handoff_region_read_file(
        self,
        path: Any,
        offset: int,
        size: int,
        out: Any,
        out_cap: int,
        off_ret: Any,
        len_ret: Any,
        gen_ret: Any,
        slot_ret: Any,
    ) -> int: ...
    def handoff_region_update_file(
        self,
        path: Any,
        offset: int,
        size: int,
        record: Any,
        len: int,
        budget: Any,
        slot_ret: Any,
        generation_ret: Any,
    ) -> int: ...

lib: _Lib
