// SPDX-License-Identifier: GPL-2.0-only
/*
 * record.c - encode and validate a record's headers, spec/format.md §2, §3 and §8.
 *
 * Validation follows §8 step by step and stops at the first failure, so that
 * every reader (this one, the Python one, the vectors) names the same error
 * for the same bytes. Nothing is allocated: lengths from the header are only
 * compared against the buffer the caller has.
 */
#include <string.h>

#include "internal.h"

#define HDR(field) offsetof(struct handoff_wire_header, field)
#define EXT(field) (HANDOFF_FIXED_HEADER_SIZE + offsetof(struct handoff_wire_ext_v1_0, field))

/* R3: UTF-8, NUL padding, and nothing but NULs after the first NUL. */
static bool text_valid(const uint8_t *field, size_t size, size_t *bad_ret)
{
	const uint8_t *nul = memchr(field, 0, size);
	size_t len = nul ? (size_t)(nul - field) : size;

	for (size_t i = len; i < size; i++) {
		if (field[i]) {
			*bad_ret = i;
			return false;
		}
	}
	return handoff__utf8_valid(field, len, bad_ret);
}

/* Copy a valid R3 field to a C string of size + 1 bytes. */
static void text_copy(char *dst, const uint8_t *field, size_t size)
{
	memcpy(dst, field, size);
	dst[size] = '\0';
}

int handoff_record_encode(const uint8_t *payload, size_t payload_len,
			  const struct handoff_producer *producer, uint8_t *out,
			  size_t out_cap, size_t *len_ret)
{
	size_t need, bad;
	uint8_t *p = out;

	if ((!payload && payload_len) || !producer || (!out && out_cap) || !len_ret)
		return HANDOFF_E_INVAL;
	if (payload_len > HANDOFF_PAYLOAD_SIZE_MAX)
		return HANDOFF_E_PAYLOAD_SIZE;	/* R9 */
	if (producer->generation == 0)
		return HANDOFF_E_INVAL;		/* R17: generations start at 1 */
	if (!text_valid(producer->kernel_release, HANDOFF_TEXT_SIZE, &bad) ||
	    !text_valid(producer->hostname, HANDOFF_TEXT_SIZE, &bad))
		return HANDOFF_E_TEXT;
	need = HANDOFF_HEADER_SIZE_V1_0 + payload_len;
	*len_ret = need;
	if (out_cap < need)
		return HANDOFF_E_NOSPACE;

	memset(p, 0, HANDOFF_HEADER_SIZE_V1_0);	/* R2: flags, reserved */
	memcpy(p + HDR(magic), HANDOFF_MAGIC, HANDOFF_MAGIC_SIZE);
	handoff_put_le16(p + HDR(version_major), HANDOFF_VERSION_MAJOR);
	handoff_put_le16(p + HDR(version_minor), HANDOFF_VERSION_MINOR);
	handoff_put_le32(p + HDR(header_size), HANDOFF_HEADER_SIZE_V1_0);
	handoff_put_le64(p + HDR(payload_size), payload_len);
	handoff_put_le64(p + HDR(generation), producer->generation);
	handoff_put_le64(p + HDR(created_ns), producer->created_ns);
	handoff_put_le16(p + HDR(header_check_alg), HANDOFF_ALG_CRC32C);
	handoff_put_le16(p + HDR(payload_digest_alg), HANDOFF_ALG_SHA256);
	memcpy(p + HDR(boot_id), producer->boot_id, sizeof(producer->boot_id));
	memcpy(p + HDR(machine_id), producer->machine_id, sizeof(producer->machine_id));
	memcpy(p + EXT(kernel_release), producer->kernel_release, HANDOFF_TEXT_SIZE);
	memcpy(p + EXT(hostname), producer->hostname, HANDOFF_TEXT_SIZE);
	if (payload_len)
		memcpy(p + HANDOFF_HEADER_SIZE_V1_0, payload, payload_len);
	/* R13 before R12: the digest lies inside the range the CRC covers. */
	handoff_sha256(p + HANDOFF_FIXED_HEADER_SIZE, need - HANDOFF_FIXED_HEADER_SIZE,
		       p + HDR(payload_digest));
	handoff_put_le32(p + HDR(header_crc), handoff__crc32c(p, HANDOFF_HEADER_CRC_OFFSET));
	return 0;
}

/* Decode the fixed header; the values are trusted only after step 4. */
static void decode_fixed(const uint8_t *p, struct handoff_record_info *info)
{
	info->version_major = handoff_get_le16(p + HDR(version_major));
	info->version_minor = handoff_get_le16(p + HDR(version_minor));
	info->header_size = handoff_get_le32(p + HDR(header_size));
	info->payload_size = handoff_get_le64(p + HDR(payload_size));
	info->generation = handoff_get_le64(p + HDR(generation));
	info->created_ns = handoff_get_le64(p + HDR(created_ns));
	info->header_check_alg = handoff_get_le16(p + HDR(header_check_alg));
	info->payload_digest_alg = handoff_get_le16(p + HDR(payload_digest_alg));
	info->flags = handoff_get_le32(p + HDR(flags));	/* R2: no flags in 1.0; ignored */
	info->header_crc = handoff_get_le32(p + HDR(header_crc));
	memcpy(info->payload_digest, p + HDR(payload_digest), HANDOFF_DIGEST_SIZE);
	memcpy(info->boot_id, p + HDR(boot_id), sizeof(info->boot_id));
	memcpy(info->machine_id, p + HDR(machine_id), sizeof(info->machine_id));
}

#define FAIL(err, off, rule, what, field) do { \
	handoff__diag(&info->diag, (off), (rule), (what), (field)); \
	return (err); \
} while (0)

/* spec/format.md §8 steps 1-9, in order. */
static int verify(const uint8_t *b, size_t n, struct handoff_record_info *info)
{
	const struct {
		const char *name;
		size_t off;
		char *dst;
	} texts[] = {
		{ "kernel_release", EXT(kernel_release), info->kernel_release },
		{ "hostname", EXT(hostname), info->hostname },
	};
	size_t bad;

	/* 1 */
	if (n < HANDOFF_FIXED_HEADER_SIZE)
		FAIL(HANDOFF_E_TRUNCATED, n, 0, "buffer ends inside the fixed header", "header");
	/* 2 */
	if (memcmp(b + HDR(magic), HANDOFF_MAGIC, HANDOFF_MAGIC_SIZE))
		FAIL(HANDOFF_E_MAGIC, HDR(magic), 4, "bad magic", "magic");
	decode_fixed(b, info);
	/* 3: R23, before the CRC, since the algorithm says how to check it */
	if (info->header_check_alg != HANDOFF_ALG_CRC32C)
		FAIL(HANDOFF_E_ALG, HDR(header_check_alg), 23, "unsupported header check algorithm",
		     "header_check_alg");
	/* 4: R12; only now are the other fields trusted */
	info->computed_crc = handoff__crc32c(b, HANDOFF_HEADER_CRC_OFFSET);
	if (info->computed_crc != info->header_crc)
		FAIL(HANDOFF_E_HEADER_CRC, HDR(header_crc), 12, "header checksum mismatch",
		     "header_crc");
	/* 5: R14 */
	if (info->version_major != HANDOFF_VERSION_MAJOR)
		FAIL(HANDOFF_E_VERSION, HDR(version_major), 14, "unsupported major version",
		     "version_major");
	/* 6: R8 */
	if (info->header_size < HANDOFF_HEADER_SIZE_MIN ||
	    info->header_size > HANDOFF_HEADER_SIZE_MAX || info->header_size % 8)
		FAIL(HANDOFF_E_HEADER_SIZE, HDR(header_size), 8, "bad header size", "header_size");
	if (n < info->header_size)
		FAIL(HANDOFF_E_TRUNCATED, n, 8, "buffer ends inside the header", "header");
	/* 7: R9; the sum cannot overflow once both sizes are bounded */
	if (info->payload_size > HANDOFF_PAYLOAD_SIZE_MAX)
		FAIL(HANDOFF_E_PAYLOAD_SIZE, HDR(payload_size), 9, "payload too large",
		     "payload_size");
	info->record_size = info->header_size + info->payload_size;
	if (n < info->record_size)
		FAIL(HANDOFF_E_TRUNCATED, n, 9, "buffer ends inside the payload", "payload");
	/* 8: R23, R13 */
	if (info->payload_digest_alg != HANDOFF_ALG_SHA256)
		FAIL(HANDOFF_E_ALG, HDR(payload_digest_alg), 23,
		     "unsupported payload digest algorithm", "payload_digest_alg");
	handoff_sha256(b + HANDOFF_FIXED_HEADER_SIZE,
		       (size_t)info->record_size - HANDOFF_FIXED_HEADER_SIZE, info->computed_digest);
	if (memcmp(info->computed_digest, info->payload_digest, HANDOFF_DIGEST_SIZE))
		FAIL(HANDOFF_E_DIGEST, HDR(payload_digest), 13, "payload digest mismatch",
		     "payload_digest");
	/* 9: R7 (the 1.0 fields; later ones are ignored), R3 */
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (!text_valid(b + texts[i].off, HANDOFF_TEXT_SIZE, &bad))
			FAIL(HANDOFF_E_TEXT, texts[i].off + bad, 3,
			     "not UTF-8 with NUL padding", texts[i].name);
		text_copy(texts[i].dst, b + texts[i].off, HANDOFF_TEXT_SIZE);
	}
	return 0;
}

int handoff_record_check(const uint8_t *buf, size_t len, unsigned flags,
			 struct handoff_record_info *info_ret)
{
	struct handoff_record_info *info = info_ret;
	const uint8_t *payload;
	int err;

	if ((!buf && len) || !info || flags & ~(unsigned)(HANDOFF_CHECK_PAYLOAD | HANDOFF_CHECK_EXACT))
		return HANDOFF_E_INVAL;
	memset(info, 0, sizeof(*info));
	err = verify(buf, len, info);
	if (err)
		return err;
	if (flags & HANDOFF_CHECK_PAYLOAD) {
		/* 10: R15-R21; diag offsets are in the payload, as §8 asks */
		payload = buf + info->header_size;
		err = handoff_payload_check(payload, (size_t)info->payload_size, &info->diag);
		if (err)
			return err;
	}
	/* A raw record file is exactly one record (§8, last paragraph). */
	if (flags & HANDOFF_CHECK_EXACT && len > info->record_size)
		FAIL(HANDOFF_E_TRAILING, info->record_size, 0, "bytes follow the record",
		     "record");
	return 0;
}

int handoff_record_verify(const uint8_t *buf, size_t len, struct handoff_record_info *info_ret)
{
	return handoff_record_check(buf, len, 0, info_ret);
}

int handoff_record_set_generation(uint8_t *buf, size_t len, uint64_t generation)
{
	struct handoff_record_info info;
	int err;

	if (generation == 0)
		return HANDOFF_E_INVAL;		/* R17 */
	err = handoff_record_verify(buf, len, &info);
	if (err)
		return err;
	handoff_put_le64(buf + HDR(generation), generation);
	handoff_put_le32(buf + HDR(header_crc), handoff__crc32c(buf, HANDOFF_HEADER_CRC_OFFSET));
	return 0;
}
