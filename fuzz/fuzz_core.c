// SPDX-License-Identifier: GPL-2.0-only
/*
 * fuzz_core.c - libFuzzer target for the C core: every entry point that reads
 * untrusted bytes, on every input.
 *
 * The input is tried as a record (all check flags), as a payload, as CBOR, as
 * config space to encode, as a two-slot region (inspect, read, and an update
 * that writes a fixed valid record into a copy), and as a record stored into a
 * fresh region. Beyond "no crash, no sanitizer report" it asserts the
 * contract's invariants: a record the full check accepts has a length inside
 * the buffer and passes the steps-1-9 check; a region read returns a slot
 * inside the region whose record passes the full check; an update leaves a
 * region whose newest record is the one written.
 *
 * Build with clang -fsanitize=fuzzer,address,undefined (fuzz/run.sh), or with
 * any compiler and fuzz/driver.c to replay a corpus without libFuzzer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handoff.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static uint8_t valid_record[512];
static size_t valid_len;

static void make_valid_record(void)
{
	/* {"v": 1, "devices": []} in deterministic CBOR */
	static const uint8_t payload[] = { 0xa2, 0x61, 'v', 0x01, 0x67, 'd', 'e', 'v', 'i', 'c',
					   'e', 's', 0x80 };
	struct handoff_producer p;

	memset(&p, 0, sizeof(p));
	p.generation = 1;
	p.created_ns = 1;
	memcpy(p.kernel_release, "6.1.0-fuzz", 10);
	memcpy(p.hostname, "fuzz", 4);
	CHECK(handoff_record_encode(payload, sizeof(payload), &p, valid_record,
				    sizeof(valid_record), &valid_len) == 0);
}

static void as_record(const uint8_t *data, size_t size)
{
	struct handoff_record_info info;

	for (unsigned flags = 0; flags < 4; flags++) {
		int err = handoff_record_check(data, size, flags, &info);

		if (err == 0) {
			CHECK(info.record_size <= size);
			CHECK(handoff_record_verify(data, size, &info) == 0);
		}
	}
}

static void as_region(const uint8_t *data, size_t size)
{
	struct handoff_region_info info;
	uint64_t off, len, gen;
	unsigned slot;
	uint8_t *copy;
	int err;

	err = handoff_region_inspect(data, size, &info);
	if (handoff_region_read_mem(data, size, &off, &len, &gen, &slot) == 0) {
		struct handoff_record_info ri;

		CHECK(err == 0 && slot < 2 && off <= size && len <= size - off);
		CHECK(handoff_record_check(data + off, len, HANDOFF_CHECK_PAYLOAD |
					   HANDOFF_CHECK_EXACT, &ri) == 0);
		CHECK(ri.generation == gen);
	}
	copy = malloc(size ? size : 1);
	if (!copy)
		return;
	memcpy(copy, data, size);
	if (handoff_region_update_mem(copy, size, valid_record, valid_len, NULL, NULL, NULL,
				      &slot, &gen) == 0) {
		uint64_t g2;
		unsigned s2;

		CHECK(handoff_region_read_mem(copy, size, &off, &len, &g2, &s2) == 0);
		CHECK(s2 == slot && g2 == gen && len == valid_len);
	}
	free(copy);
}

static void into_region(const uint8_t *data, size_t size)
{
	static uint8_t region[64 + 2 * 8192];
	unsigned slot;
	uint64_t gen, off, len, g2;
	unsigned s2;

	if (handoff_region_format(region, sizeof(region), 0) != 0)
		abort();
	if (handoff_region_update_mem(region, sizeof(region), data, size, NULL, NULL, NULL,
				      &slot, &gen) == 0) {
		CHECK(gen == 1);
		CHECK(handoff_region_read_mem(region, sizeof(region), &off, &len, &g2, &s2) == 0);
		CHECK(s2 == slot && g2 == 1 && len == size);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct handoff_diag diag;
	uint8_t out[HANDOFF_SPARSE_ENCODED_MAX(4096)];
	size_t n;

	if (!ready) {
		make_valid_record();
		ready = 1;
	}
	as_record(data, size);
	handoff_payload_check(data, size, &diag);
	handoff_cbor_check(data, size, &diag);
	if (size <= 4096)
		CHECK(handoff_sparse_encode(data, size, out, sizeof(out), &n) == 0);
	as_region(data, size);
	into_region(data, size);
	return 0;
}
