/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * handoff.h - public C API of the handoff record format.
 *
 * This is a contract. spec/format.md is the normative wire format; this header
 * is its C form, and every constant below cites the requirement (R<n>) it
 * implements. Two things are frozen here:
 *
 *  - The wire structs (struct handoff_wire_*): their layout is the byte layout
 *    of spec/format.md, checked by _Static_assert below. Changing one means a
 *    new major format version (bump HANDOFF_VERSION_MAJOR and the spec).
 *  - The error codes: Python (handoff/_binding.py) maps each value to one
 *    exception. Never renumber one; add new codes at the end.
 *
 * Conventions: every function returns 0 or a negative HANDOFF_E_* code and
 * passes results back through trailing *_ret parameters; all memory is
 * provided by the caller (nothing allocated here is ever handed back); no
 * length read from input is trusted before it is bounded. Multi-byte wire
 * fields are little-endian byte arrays (R1): use handoff_get_le*() and
 * handoff_put_le*(), never a cast to a host integer.
 *
 * csrc/handoff_cdef.h repeats the declarations Python needs. When cffi builds
 * handoff._native it takes constant values and struct layouts from this header
 * and type-checks every struct field, so Python always sees what C compiled.
 */
#ifndef HANDOFF_H
#define HANDOFF_H

#include <stddef.h>
#include <stdint.h>

/* Error codes. Python maps each to one exception: keep the values. */
enum handoff_err {
	HANDOFF_OK = 0,
	HANDOFF_E_INVAL = -1,		/* bad argument */
	HANDOFF_E_TRUNCATED = -2,	/* §8 steps 1, 6, 7 */
	HANDOFF_E_MAGIC = -3,		/* §8 step 2, R4 */
	HANDOFF_E_HEADER_CRC = -4,	/* §8 step 4, R12 */
	HANDOFF_E_VERSION = -5,		/* §8 step 5, R14: major differs */
	HANDOFF_E_HEADER_SIZE = -6,	/* §8 step 6, R8 */
	HANDOFF_E_PAYLOAD_SIZE = -7,	/* §8 step 7, R9: too large */
	HANDOFF_E_DIGEST = -8,		/* §8 step 8, R13 */
	HANDOFF_E_ALG = -9,		/* §8 steps 3, 8, R23 */
	HANDOFF_E_TEXT = -10,		/* §8 step 9, R3 */
	HANDOFF_E_NOSPACE = -11,	/* output buffer or region slot too small */
	HANDOFF_E_IO = -12,		/* system call failed; errno preserved */
	HANDOFF_E_NO_RECORD = -13,	/* region holds no valid record (R25) */
	HANDOFF_E_REGION = -14,		/* bad region header or layout (§7) */
	HANDOFF_E_INTERRUPTED = -15,	/* write budget exhausted (fault injection) */
	HANDOFF_E_TRAILING = -16,	/* bytes follow a raw record (§8) */
	HANDOFF_E_CBOR = -17,		/* §8 step 10: R15, R16, R18, R19 */
	HANDOFF_E_SCHEMA = -18,		/* §8 step 10: R20, R21 */
};

/* Record constants, spec/format.md §2-§5. */
#define HANDOFF_MAGIC "HANDOFF"			/* R4: 8 bytes with the NUL */
#define HANDOFF_MAGIC_SIZE 8
#define HANDOFF_VERSION_MAJOR 1			/* R5 */
#define HANDOFF_VERSION_MINOR 0			/* R6 */
#define HANDOFF_FIXED_HEADER_SIZE 128		/* §2 */
#define HANDOFF_HEADER_CRC_OFFSET 124		/* R12: crc covers [0, 124) */
#define HANDOFF_HEADER_SIZE_V1_0 256		/* §3: what this writer emits */
#define HANDOFF_HEADER_SIZE_MIN 256		/* R8 */
#define HANDOFF_HEADER_SIZE_MAX 4096		/* R8 */
#define HANDOFF_PAYLOAD_SIZE_MAX (16u << 20)	/* R9: 16 MiB */
#define HANDOFF_RECORD_SIZE_MAX (HANDOFF_HEADER_SIZE_MAX + HANDOFF_PAYLOAD_SIZE_MAX)
#define HANDOFF_ALG_CRC32C 1			/* R10, §5 */
#define HANDOFF_ALG_SHA256 1			/* R11, §5 */
#define HANDOFF_DIGEST_SIZE 32			/* R13 */
#define HANDOFF_TEXT_SIZE 64			/* §3: kernel_release, hostname */
#define HANDOFF_CBOR_MAX_DEPTH 16		/* R18 */

/* Sparse config space, §4.1. */
#define HANDOFF_SPARSE_CONFIG_MAX 0xffff	/* run offsets and lengths are 16 bits */
#define HANDOFF_SPARSE_MIN_GAP 4		/* zeros that end a run: a run header's size */
/* Bound on handoff_sparse_encode()'s output for @n config bytes. */
#define HANDOFF_SPARSE_ENCODED_MAX(n) ((n) + 4)

/* ELF note form, R24. */
#define HANDOFF_NOTE_NAME "HANDOFF"		/* n_namesz 8, with the NUL */
#define HANDOFF_NOTE_NAMESZ 8
#define NT_HANDOFF_RECORD 0x48440001u
#define NT_HANDOFF_REPORT 0x48440002u

/* Two-slot region, §7. */
#define HANDOFF_REGION_MAGIC "HDOFREGN"		/* 8 bytes, no NUL */
#define HANDOFF_REGION_VERSION_MAJOR 1
#define HANDOFF_REGION_VERSION_MINOR 0
#define HANDOFF_REGION_HEADER_SIZE 64		/* what this writer emits */
#define HANDOFF_REGION_HEADER_SIZE_MAX 4096	/* what a reader accepts (§7) */
#define HANDOFF_REGION_CRC_OFFSET 60		/* crc covers [0, 60) */

/**
 * struct handoff_wire_header - the fixed header, spec/format.md §2.
 *
 * Frozen for all of major 1 (a minor version only grows the extended header):
 * any change here is a new major version. Fields are little-endian byte
 * arrays (R1); reserved is written as zero and ignored on read (R2).
 */
struct handoff_wire_header {
	uint8_t magic[8];		/* R4 */
	uint8_t version_major[2];	/* R5 */
	uint8_t version_minor[2];	/* R6 */
	uint8_t header_size[4];		/* R8 */
	uint8_t payload_size[8];	/* R9 */
	uint8_t generation[8];		/* R17 */
	uint8_t created_ns[8];
	uint8_t header_check_alg[2];	/* R10 */
	uint8_t payload_digest_alg[2];	/* R11 */
	uint8_t flags[4];
	uint8_t payload_digest[32];	/* R13 */
	uint8_t boot_id[16];
	uint8_t machine_id[16];
	uint8_t reserved[12];		/* R2 */
	uint8_t header_crc[4];		/* R12 */
};

/**
 * struct handoff_wire_ext_v1_0 - the extended header of version 1.0, at
 * offset 128 (§3). Frozen: a later minor version appends its fields after
 * these in a struct of its own (and bumps HANDOFF_VERSION_MINOR); readers
 * ignore what they do not know (R7).
 */
struct handoff_wire_ext_v1_0 {
	uint8_t kernel_release[64];	/* R3 text */
	uint8_t hostname[64];		/* R3 text */
};

/**
 * struct handoff_wire_region - the region header, spec/format.md §7.
 * Any change is a new region major version (HANDOFF_REGION_VERSION_MAJOR).
 */
struct handoff_wire_region {
	uint8_t magic[8];
	uint8_t version_major[2];
	uint8_t version_minor[2];
	uint8_t header_size[4];
	uint8_t region_size[8];
	uint8_t slot_size[8];
	uint8_t slot0_offset[8];
	uint8_t slot1_offset[8];
	uint8_t reserved[12];		/* R2 */
	uint8_t crc[4];
};

#define HANDOFF_WIRE_AT(type, field, off) \
	_Static_assert(offsetof(struct type, field) == (off), #type "." #field " moved")
_Static_assert(sizeof(struct handoff_wire_header) == HANDOFF_FIXED_HEADER_SIZE, "fixed header");
HANDOFF_WIRE_AT(handoff_wire_header, version_major, 8);
HANDOFF_WIRE_AT(handoff_wire_header, version_minor, 10);
HANDOFF_WIRE_AT(handoff_wire_header, header_size, 12);
HANDOFF_WIRE_AT(handoff_wire_header, payload_size, 16);
HANDOFF_WIRE_AT(handoff_wire_header, generation, 24);
HANDOFF_WIRE_AT(handoff_wire_header, created_ns, 32);
HANDOFF_WIRE_AT(handoff_wire_header, header_check_alg, 40);
HANDOFF_WIRE_AT(handoff_wire_header, payload_digest_alg, 42);
HANDOFF_WIRE_AT(handoff_wire_header, flags, 44);
HANDOFF_WIRE_AT(handoff_wire_header, payload_digest, 48);
HANDOFF_WIRE_AT(handoff_wire_header, boot_id, 80);
HANDOFF_WIRE_AT(handoff_wire_header, machine_id, 96);
HANDOFF_WIRE_AT(handoff_wire_header, reserved, 112);
HANDOFF_WIRE_AT(handoff_wire_header, header_crc, HANDOFF_HEADER_CRC_OFFSET);
_Static_assert(sizeof(struct handoff_wire_ext_v1_0) ==
	       HANDOFF_HEADER_SIZE_V1_0 - HANDOFF_FIXED_HEADER_SIZE, "extended header 1.0");
HANDOFF_WIRE_AT(handoff_wire_ext_v1_0, hostname, 64);
_Static_assert(sizeof(struct handoff_wire_region) == HANDOFF_REGION_HEADER_SIZE, "region header");
HANDOFF_WIRE_AT(handoff_wire_region, header_size, 12);
HANDOFF_WIRE_AT(handoff_wire_region, region_size, 16);
HANDOFF_WIRE_AT(handoff_wire_region, slot_size, 24);
HANDOFF_WIRE_AT(handoff_wire_region, slot0_offset, 32);
HANDOFF_WIRE_AT(handoff_wire_region, slot1_offset, 40);
HANDOFF_WIRE_AT(handoff_wire_region, reserved, 48);
HANDOFF_WIRE_AT(handoff_wire_region, crc, HANDOFF_REGION_CRC_OFFSET);

/* Little-endian field access (R1), independent of host byte order. */
static inline uint16_t handoff_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t handoff_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t handoff_get_le64(const uint8_t *p)
{
	return (uint64_t)handoff_get_le32(p) | (uint64_t)handoff_get_le32(p + 4) << 32;
}

static inline void handoff_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void handoff_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void handoff_put_le64(uint8_t *p, uint64_t v)
{
	handoff_put_le32(p, (uint32_t)v);
	handoff_put_le32(p + 4, (uint32_t)(v >> 32));
}

/**
 * handoff_strerror() - Describe an error code.
 * @err: HANDOFF_OK or a HANDOFF_E_* value.
 *
 * Return: a static one-line description; "unknown error" for other values.
 */
const char *handoff_strerror(int err);

/**
 * struct handoff_diag - where and why a check failed.
 * @offset: byte offset of the offending field or item. For record checks it
 *	is from the start of the record, except for HANDOFF_E_CBOR and
 *	HANDOFF_E_SCHEMA, where it is from the start of the payload (§8 step 10).
 * @rule: the R-number of spec/format.md that was broken, 0 if none applies.
 * @what: short NUL-terminated reason, e.g. "non-shortest integer".
 * @path: NUL-terminated name of the bad field ("hostname") or, for schema
 *	violations, the path of the bad value ("payload.devices[0].live.size").
 */
struct handoff_diag {
	uint64_t offset;
	uint32_t rule;
	char what[96];
	char path[128];
};

/* CRC-32C implementations, for handoff_crc32c(). */
enum handoff_crc32c_impl {
	HANDOFF_CRC32C_AUTO = 0,	/* SSE4.2 when the CPU has it, else table */
	HANDOFF_CRC32C_TABLE = 1,
	HANDOFF_CRC32C_SSE42 = 2,
};

/**
 * handoff_crc32c() - CRC-32C (Castagnoli) of a buffer, catalogue id 1 (§5).
 * @crc: CRC of the data before @buf (0 to start), so that calls chain like
 *	zlib's crc32().
 * @buf: data.
 * @len: length of @buf.
 * @impl: an enum handoff_crc32c_impl.
 * @crc_ret: the CRC of the data so far.
 *
 * Return: 0, or HANDOFF_E_INVAL if @impl is unknown or not available on
 * this CPU.
 */
int handoff_crc32c(uint32_t crc, const void *buf, size_t len, int impl, uint32_t *crc_ret);

/**
 * handoff_crc32c_available() - Tell whether a CRC-32C implementation runs here.
 * @impl: an enum handoff_crc32c_impl.
 *
 * Return: 0 if it does, HANDOFF_E_INVAL if not.
 */
int handoff_crc32c_available(int impl);

/**
 * struct handoff_sha256 - incremental SHA-256 state (FIPS 180-4). Opaque:
 * use only through the functions below.
 */
struct handoff_sha256 {
	uint32_t h[8];
	uint64_t nbytes;
	uint8_t block[64];
};

/**
 * handoff_sha256_init() - Start a SHA-256 computation.
 * @ctx: state to initialise.
 *
 * Return: 0, or HANDOFF_E_INVAL if @ctx is NULL.
 */
int handoff_sha256_init(struct handoff_sha256 *ctx);

/**
 * handoff_sha256_update() - Feed bytes to a SHA-256 computation.
 * @ctx: state from handoff_sha256_init().
 * @data: bytes.
 * @len: length of @data; the total may not reach 2^61 bytes.
 *
 * Return: 0, or HANDOFF_E_INVAL on a NULL argument.
 */
int handoff_sha256_update(struct handoff_sha256 *ctx, const void *data, size_t len);

/**
 * handoff_sha256_final() - Finish a SHA-256 computation.
 * @ctx: state; it must be initialised again before reuse.
 * @digest_ret: the 32-byte digest.
 *
 * Return: 0, or HANDOFF_E_INVAL on a NULL argument.
 */
int handoff_sha256_final(struct handoff_sha256 *ctx, uint8_t digest_ret[32]);

/**
 * handoff_sha256() - SHA-256 of one buffer, digest algorithm 1 (§5).
 * @data: bytes.
 * @len: length of @data.
 * @digest_ret: the 32-byte digest.
 *
 * Return: 0, or HANDOFF_E_INVAL on a NULL argument.
 */
int handoff_sha256(const void *data, size_t len, uint8_t digest_ret[32]);

/* SHA-256 block functions, for handoff_sha256_using(). */
enum handoff_sha256_impl {
	HANDOFF_SHA256_AUTO = 0,	/* SHANI when the CPU has it, else PORTABLE */
	HANDOFF_SHA256_PORTABLE = 1,
	HANDOFF_SHA256_SHANI = 2,	/* x86 SHA extensions */
};

/**
 * handoff_sha256_using() - handoff_sha256() with a chosen block function.
 * @data: bytes.
 * @len: length of @data.
 * @impl: an enum handoff_sha256_impl. Every other SHA-256 function uses
 *	HANDOFF_SHA256_AUTO; this one lets tests compare the implementations.
 * @digest_ret: the 32-byte digest.
 *
 * Return: 0, or HANDOFF_E_INVAL on a NULL argument or if @impl is unknown
 * or not available on this CPU.
 */
int handoff_sha256_using(const void *data, size_t len, int impl, uint8_t digest_ret[32]);

/**
 * handoff_sha256_available() - Tell whether a SHA-256 implementation runs here.
 * @impl: an enum handoff_sha256_impl.
 *
 * Return: 0 if it does, HANDOFF_E_INVAL if not.
 */
int handoff_sha256_available(int impl);

/**
 * struct handoff_producer - what a producer says about itself (§2, §3).
 * @generation: R17, at least 1.
 * @created_ns: CLOCK_REALTIME nanoseconds.
 * @boot_id: raw UUID bytes, zero if unknown.
 * @machine_id: raw bytes, zero if unknown.
 * @kernel_release: the field's bytes as written: UTF-8, NUL-padded (R3).
 * @hostname: likewise.
 */
struct handoff_producer {
	uint64_t generation;
	uint64_t created_ns;
	uint8_t boot_id[16];
	uint8_t machine_id[16];
	uint8_t kernel_release[64];
	uint8_t hostname[64];
};

/**
 * struct handoff_record_info - a record's header, decoded.
 *
 * handoff_record_verify() fills the fixed-header fields even when a check
 * fails, so that the caller can report them, but they are trustworthy only
 * once step 4 (header_crc) has passed; text fields are set once step 9 has.
 * @record_size: header_size + payload_size, the record's length.
 * @computed_crc: the CRC-32C of bytes [0, 124), for a mismatch report.
 * @computed_digest: the SHA-256 computed in step 8, for a mismatch report.
 * @diag: the failed check, when there is one.
 */
struct handoff_record_info {
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t header_size;
	uint64_t payload_size;
	uint64_t record_size;
	uint64_t generation;
	uint64_t created_ns;
	uint16_t header_check_alg;
	uint16_t payload_digest_alg;
	uint32_t flags;
	uint32_t header_crc;
	uint32_t computed_crc;
	uint8_t payload_digest[32];
	uint8_t computed_digest[32];
	uint8_t boot_id[16];
	uint8_t machine_id[16];
	char kernel_release[65];
	char hostname[65];
	struct handoff_diag diag;
};

/* Flags of handoff_record_check(). */
enum handoff_check_flags {
	HANDOFF_CHECK_PAYLOAD = 1,	/* also run §8 step 10 */
	HANDOFF_CHECK_EXACT = 2,	/* the buffer is a raw record: refuse trailing bytes */
};

/**
 * handoff_record_encode() - Build a version 1.0 record.
 * @payload: the CBOR payload. Not checked here: run handoff_payload_check()
 *	first unless building a deliberately bad record for a test.
 * @payload_len: its length, at most HANDOFF_PAYLOAD_SIZE_MAX (R9).
 * @producer: header fields; @producer->generation must be at least 1 (R17)
 *	and both text fields must follow R3.
 * @out: where to write the record; may not overlap @payload.
 * @out_cap: size of @out.
 * @len_ret: the record's length; set to the length needed also when
 *	HANDOFF_E_NOSPACE is returned.
 *
 * The header is 256 bytes (§3); flags and reserved bytes are zero (R2).
 *
 * Return: 0; HANDOFF_E_PAYLOAD_SIZE, HANDOFF_E_TEXT, HANDOFF_E_NOSPACE, or
 * HANDOFF_E_INVAL.
 */
int handoff_record_encode(const uint8_t *payload, size_t payload_len,
			  const struct handoff_producer *producer, uint8_t *out,
			  size_t out_cap, size_t *len_ret);

/**
 * handoff_record_verify() - Validate a record, spec/format.md §8 steps 1-9.
 * @buf: bytes believed to start with a record; bytes after the record are
 *	allowed (a container gives the record's start, the record its length).
 * @len: length of @buf.
 * @info_ret: the decoded header, and on failure the failed check in ->diag.
 *
 * The steps run in the order of §8 and the first that fails decides the
 * error. Nothing is allocated, whatever the header claims.
 *
 * Return: 0, or the error of the first failing step: HANDOFF_E_TRUNCATED,
 * _MAGIC, _ALG, _HEADER_CRC, _VERSION, _HEADER_SIZE, _PAYLOAD_SIZE, _DIGEST,
 * _TEXT; HANDOFF_E_INVAL on a NULL argument.
 */
int handoff_record_verify(const uint8_t *buf, size_t len, struct handoff_record_info *info_ret);

/**
 * handoff_record_check() - Validate a record, with the optional checks.
 * @buf: as for handoff_record_verify().
 * @len: length of @buf.
 * @flags: enum handoff_check_flags. HANDOFF_CHECK_PAYLOAD runs step 10 after
 *	step 9; HANDOFF_CHECK_EXACT then refuses bytes after the record.
 * @info_ret: as for handoff_record_verify().
 *
 * Return: as handoff_record_verify(), plus HANDOFF_E_CBOR, HANDOFF_E_SCHEMA
 * and HANDOFF_E_TRAILING.
 */
int handoff_record_check(const uint8_t *buf, size_t len, unsigned flags,
			 struct handoff_record_info *info_ret);

/**
 * handoff_record_set_generation() - Re-stamp a record's generation (R17).
 * @buf: a record; it is verified (steps 1-9) before it is changed, so that a
 *	damaged header is never given a fresh checksum.
 * @len: length of @buf.
 * @generation: the new generation, at least 1.
 *
 * Recomputes header_crc. The payload digest does not cover the fixed header
 * (R13), so it stays valid.
 *
 * Return: 0, an error of handoff_record_verify(), or HANDOFF_E_INVAL.
 */
int handoff_record_set_generation(uint8_t *buf, size_t len, uint64_t generation);

/**
 * handoff_payload_check() - Validate a payload, spec/format.md §8 step 10.
 * @payload: the CBOR bytes.
 * @len: their length, at most HANDOFF_PAYLOAD_SIZE_MAX.
 * @diag_ret: optional (may be NULL): the failed rule, its payload offset and,
 *	for schema violations, the path of the bad value.
 *
 * First the whole item is checked as CBOR (R15, R16, R18, R19), then against
 * the subset of payload.cddl that concerns the format's own structure: "v"
 * is 1, "devices" is an array of maps with a text "bus", and each PCI
 * device's snapshots are well-formed with valid sparse runs (R20, R21).
 * Recursion is bounded by R18 and nothing is allocated.
 *
 * Return: 0, HANDOFF_E_CBOR, HANDOFF_E_SCHEMA, HANDOFF_E_PAYLOAD_SIZE, or
 * HANDOFF_E_INVAL.
 */
int handoff_payload_check(const uint8_t *payload, size_t len, struct handoff_diag *diag_ret);

/**
 * handoff_cbor_check() - Check that bytes are one item of strict CBOR.
 * @buf: the CBOR bytes.
 * @len: their length (no limit: this is not a payload check).
 * @diag_ret: optional (may be NULL): the failed rule and its offset.
 *
 * The first half of handoff_payload_check(): R15 (core deterministic
 * encoding: shortest arguments, definite lengths, map keys in increasing
 * bytewise order of their encodings, no duplicates), R16 (allowed items
 * only), R18 (depth, lengths bounded by the bytes left) and R19 (exactly one
 * item). No schema. A writer uses it to prove that an encoder which was not
 * asked to sort map keys produced the deterministic encoding anyway.
 *
 * Return: 0, HANDOFF_E_CBOR, or HANDOFF_E_INVAL.
 */
int handoff_cbor_check(const uint8_t *buf, size_t len, struct handoff_diag *diag_ret);

/**
 * handoff_sparse_encode() - Write config space as the runs of §4.1.
 * @config: config-space bytes as read.
 * @len: their number, at most HANDOFF_SPARSE_CONFIG_MAX.
 * @out: where to write the runs; may not overlap @config.
 * @out_cap: size of @out; HANDOFF_SPARSE_ENCODED_MAX(@len) always suffices.
 * @len_ret: the length of the runs; set to the length needed also when
 *	HANDOFF_E_NOSPACE is returned (@out then holds a prefix of them).
 *
 * Runs are split only at gaps of HANDOFF_SPARSE_MIN_GAP or more zero bytes
 * (the SHOULD of §4.1), and leading and trailing zeros are left out: every
 * run starts and ends on a non-zero byte. All-zero or empty config space
 * gives no runs (*@len_ret 0).
 *
 * Return: 0, HANDOFF_E_NOSPACE, or HANDOFF_E_INVAL (a NULL argument, or
 * @len above HANDOFF_SPARSE_CONFIG_MAX).
 */
int handoff_sparse_encode(const uint8_t *config, size_t len, uint8_t *out, size_t out_cap,
			  size_t *len_ret);

/**
 * handoff_note_wrap() - Wrap a descriptor as one ELF note (R24).
 * @desc: the descriptor: a record, or a report's JSON.
 * @desc_len: its length, below 2^32 - 3.
 * @n_type: NT_HANDOFF_RECORD or NT_HANDOFF_REPORT.
 * @out: where to write the note.
 * @out_cap: size of @out.
 * @len_ret: the note's length (12 + 8 + @desc_len padded to 4); set also
 *	when HANDOFF_E_NOSPACE is returned.
 *
 * The three header words are little-endian (§6), as in an ELFDATA2LSB file.
 *
 * Return: 0, HANDOFF_E_NOSPACE or HANDOFF_E_INVAL.
 */
int handoff_note_wrap(const uint8_t *desc, size_t desc_len, uint32_t n_type, uint8_t *out,
		      size_t out_cap, size_t *len_ret);

/**
 * struct handoff_region_info - a region's layout and slots (§7).
 * @slot_status: per slot, 0 if it holds a record that validates (§8 steps
 *	1-10), else the error code of the check that failed.
 * @slot_generation: per valid slot, its record's generation.
 * @slot_length: per valid slot, its record's length.
 * @newest: the slot R25 picks; meaningful only when one slot is valid.
 * @diag: why the region header was refused, on HANDOFF_E_REGION.
 */
struct handoff_region_info {
	uint16_t version_major;
	uint16_t version_minor;
	uint64_t region_size;
	uint64_t slot_size;
	uint64_t slot_offset[2];
	int slot_status[2];
	uint64_t slot_generation[2];
	uint64_t slot_length[2];
	unsigned newest;
	struct handoff_diag diag;
};

/**
 * handoff_region_format() - Lay out an empty two-slot region in memory (§7).
 * @base: the region's bytes.
 * @size: their length; the region_size written.
 * @slot_size: size of each slot, a multiple of 8 of at least
 *	HANDOFF_HEADER_SIZE_MIN; 0 picks the largest that fits.
 *
 * Slot 0 follows the 64-byte header and slot 1 follows slot 0. Both slots'
 * fixed headers are zeroed first and the region header written last, so no
 * stale record survives.
 *
 * Return: 0, or HANDOFF_E_INVAL if the slots do not fit.
 */
int handoff_region_format(uint8_t *base, size_t size, uint64_t slot_size);

/**
 * handoff_region_inspect() - Validate a region's header and both slots.
 * @base: the region's bytes.
 * @size: their length; the header's region_size may not exceed it.
 * @info_ret: layout, per-slot status, and the reason for HANDOFF_E_REGION.
 *
 * Return: 0 if a slot holds a valid record, HANDOFF_E_NO_RECORD if neither
 * does, HANDOFF_E_REGION for a bad header or layout, HANDOFF_E_INVAL.
 */
int handoff_region_inspect(const uint8_t *base, size_t size,
			   struct handoff_region_info *info_ret);

/**
 * handoff_region_read_mem() - Find a region's valid record (R25).
 * @base: the region's bytes.
 * @size: their length.
 * @off_ret: offset of the record from @base.
 * @len_ret: the record's length.
 * @gen_ret: its generation.
 * @slot_ret: its slot, 0 or 1.
 *
 * Return: as handoff_region_inspect().
 */
int handoff_region_read_mem(const uint8_t *base, size_t size, uint64_t *off_ret,
			    uint64_t *len_ret, uint64_t *gen_ret, unsigned *slot_ret);

/**
 * handoff_region_update_mem() - Store a record in a region's other slot (R26).
 * @base: the region's bytes.
 * @size: their length.
 * @record: a raw record that passes handoff_record_check() with
 *	HANDOFF_CHECK_PAYLOAD | HANDOFF_CHECK_EXACT; its generation is replaced.
 *	It may not overlap the slot being written.
 * @len: its length; at most the slot size.
 * @budget: NULL for no limit. Otherwise the number of bytes this call may
 *	still write: each byte written decrements it, and when it reaches 0
 *	before the update is complete the update stops there and returns
 *	HANDOFF_E_INTERRUPTED, as a power cut would (fault injection).
 * @flush: optional, called after each of the three phases of R26 (cache
 *	write-back for reserved memory); a nonzero return aborts with that
 *	value if it is negative, HANDOFF_E_IO otherwise.
 * @flush_ctx: passed to @flush.
 * @slot_ret: the slot written.
 * @generation_ret: the generation given to the record: one more than the
 *	newest valid one in the region, or 1 if there is none.
 *
 * Writes the slot that does not hold the newest valid record: (1) zeroes its
 * fixed header, (2) writes bytes [128, end) of the record, (3) writes the
 * re-stamped fixed header, flushing after each, so an interruption at any
 * byte leaves the previous record valid and newest.
 *
 * Return: 0; an error of handoff_record_check() for @record;
 * HANDOFF_E_REGION, HANDOFF_E_NOSPACE, HANDOFF_E_INTERRUPTED, HANDOFF_E_INVAL.
 */
int handoff_region_update_mem(uint8_t *base, size_t size, const uint8_t *record, size_t len,
			      uint64_t *budget, int (*flush)(void *ctx), void *flush_ctx,
			      unsigned *slot_ret, uint64_t *generation_ret);

/**
 * handoff_region_format_file() - handoff_region_format() on a byte range of a file.
 * @path: a regular file or a device; a regular file shorter than
 *	@offset + @size is extended.
 * @offset: start of the region in the file; need not be page aligned.
 * @size: length of the region.
 * @slot_size: as for handoff_region_format().
 *
 * The range is mapped shared (from the page boundary below @offset) and
 * msync()ed; if it cannot be mapped, pwrite() and fsync() are used.
 *
 * Return: 0, HANDOFF_E_IO with errno set, HANDOFF_E_INVAL.
 */
int handoff_region_format_file(const char *path, uint64_t offset, uint64_t size,
			       uint64_t slot_size);

/**
 * handoff_region_inspect_file() - handoff_region_inspect() on a byte range of a file.
 * @path: a regular file or a device.
 * @offset: start of the region in the file.
 * @size: length of the region.
 * @info_ret: as for handoff_region_inspect().
 *
 * Return: as handoff_region_inspect(), plus HANDOFF_E_IO with errno set.
 */
int handoff_region_inspect_file(const char *path, uint64_t offset, uint64_t size,
				struct handoff_region_info *info_ret);

/**
 * handoff_region_read_file() - Copy out the valid record of a region in a file.
 * @path: a regular file or a device.
 * @offset: start of the region in the file.
 * @size: length of the region.
 * @out: where to copy the record.
 * @out_cap: size of @out.
 * @off_ret: offset of the record from the region start.
 * @len_ret: the record's length; set also when HANDOFF_E_NOSPACE is returned.
 * @gen_ret: its generation.
 * @slot_ret: its slot.
 *
 * Return: as handoff_region_inspect(), plus HANDOFF_E_IO with errno set and
 * HANDOFF_E_NOSPACE.
 */
int handoff_region_read_file(const char *path, uint64_t offset, uint64_t size, uint8_t *out,
			     size_t out_cap, uint64_t *off_ret, size_t *len_ret, uint64_t *gen_ret,
			     unsigned *slot_ret);

/**
 * handoff_region_update_file() - handoff_region_update_mem() on a byte range of a file.
 * @path: a regular file or a device holding a formatted region.
 * @offset: start of the region in the file.
 * @size: length of the region.
 * @record: as for handoff_region_update_mem().
 * @len: its length.
 * @budget: as for handoff_region_update_mem().
 * @slot_ret: the slot written.
 * @generation_ret: the generation given to the record.
 *
 * Each of the three phases of R26 ends with msync(MS_SYNC) (or fsync() when
 * the range could not be mapped), so the order reaches the medium.
 *
 * Return: as handoff_region_update_mem(), plus HANDOFF_E_IO with errno set.
 */
int handoff_region_update_file(const char *path, uint64_t offset, uint64_t size,
			       const uint8_t *record, size_t len, uint64_t *budget,
			       unsigned *slot_ret, uint64_t *generation_ret);

#endif /* HANDOFF_H */
