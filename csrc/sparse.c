// SPDX-License-Identifier: GPL-2.0-only
/*
 * sparse.c - the writer's side of spec/format.md §4.1: config space as runs.
 *
 * A run covers a stretch of config space that starts and ends on a non-zero
 * byte and holds no gap of HANDOFF_SPARSE_MIN_GAP or more zero bytes; such a
 * gap (a run header costs four bytes) ends it. Zero bytes before the first
 * run and after the last are left out, whatever their number. This is the
 * split the SHOULD of §4.1 asks for, and byte for byte what the reference in
 * Python (handoff/payload.py, sparse_encode_py) writes; the tests compare
 * the two on real dumps and on random input.
 *
 * Config space is mostly zero (the extended space of most functions is
 * empty), so zeros are skipped a word at a time.
 */
#include <string.h>

#include "internal.h"

/* Index of the first non-zero byte of @p at or after @i, or @n if there is none. */
static size_t skip_zeros(const uint8_t *p, size_t i, size_t n)
{
	uint64_t w[4];

	/* memcpy: p + i need not be aligned; compilers turn it into plain loads. */
	for (; i + sizeof(w) <= n; i += sizeof(w)) {
		memcpy(w, p + i, sizeof(w));
		if (w[0] | w[1] | w[2] | w[3])
			break;
	}
	for (; i + sizeof(w[0]) <= n; i += sizeof(w[0])) {
		memcpy(w, p + i, sizeof(w[0]));
		if (w[0])
			break;
	}
	while (i < n && !p[i])
		i++;
	return i;
}

int handoff_sparse_encode(const uint8_t *config, size_t len, uint8_t *out, size_t out_cap,
			  size_t *len_ret)
{
	size_t i, need = 0;

	if ((!config && len) || (!out && out_cap) || !len_ret)
		return HANDOFF_E_INVAL;
	if (len > HANDOFF_SPARSE_CONFIG_MAX)
		return HANDOFF_E_INVAL;	/* offsets and lengths are 16 bits (§4.1) */
	i = skip_zeros(config, 0, len);
	while (i < len) {
		size_t start = i, end;	/* config[start] is not zero */

		for (;;) {
			size_t zeros;

			while (i < len && config[i])
				i++;
			end = i;	/* config[end - 1] is the last non-zero byte so far */
			i = skip_zeros(config, i, len);
			zeros = i - end;
			if (i == len || zeros >= HANDOFF_SPARSE_MIN_GAP)
				break;	/* trailing zeros or a gap: the run ends at @end */
		}
		/*
		 * start < end <= len <= 0xffff, so both fit the 16-bit fields; and
		 * runs are at least one byte long with gaps of four or more between
		 * them, so need never exceeds len + 4 (HANDOFF_SPARSE_ENCODED_MAX).
		 */
		if (out_cap >= need && out_cap - need >= 4 + (end - start)) {
			handoff_put_le16(out + need, (uint16_t)start);
			handoff_put_le16(out + need + 2, (uint16_t)(end - start));
			memcpy(out + need + 4, config + start, end - start);
		}
		need += 4 + (end - start);
	}
	*len_ret = need;
	return need > out_cap ? HANDOFF_E_NOSPACE : 0;
}
