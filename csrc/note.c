// SPDX-License-Identifier: GPL-2.0-only
/*
 * note.c - wrap a record or a report as one ELF note, spec/format.md §6 (R24).
 */
#include <string.h>

#include "internal.h"

/* Elf64_Nhdr: n_namesz, n_descsz, n_type, each a 4-byte word. */
#define NHDR_SIZE 12

static size_t pad4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

int handoff_note_wrap(const uint8_t *desc, size_t desc_len, uint32_t n_type, uint8_t *out,
		      size_t out_cap, size_t *len_ret)
{
	size_t need;

	if ((!desc && desc_len) || (!out && out_cap) || !len_ret)
		return HANDOFF_E_INVAL;
	if (n_type != NT_HANDOFF_RECORD && n_type != NT_HANDOFF_REPORT)
		return HANDOFF_E_INVAL;
	/* n_descsz is 32 bits, and its padded size must be too. */
	if (desc_len > UINT32_MAX - 3)
		return HANDOFF_E_INVAL;
	need = NHDR_SIZE + HANDOFF_NOTE_NAMESZ + pad4(desc_len);
	*len_ret = need;
	if (out_cap < need)
		return HANDOFF_E_NOSPACE;
	handoff_put_le32(out, HANDOFF_NOTE_NAMESZ);
	handoff_put_le32(out + 4, (uint32_t)desc_len);
	handoff_put_le32(out + 8, n_type);
	/* "HANDOFF\0" is 8 bytes, already a multiple of 4: no name padding. */
	memcpy(out + NHDR_SIZE, HANDOFF_NOTE_NAME, HANDOFF_NOTE_NAMESZ);
	if (desc_len)
		memmove(out + NHDR_SIZE + HANDOFF_NOTE_NAMESZ, desc, desc_len);
	memset(out + NHDR_SIZE + HANDOFF_NOTE_NAMESZ + desc_len, 0, pad4(desc_len) - desc_len);
	return 0;
}
