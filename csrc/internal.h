/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * internal.h - helpers shared by the C sources; not part of the contract.
 */
#ifndef HANDOFF_INTERNAL_H
#define HANDOFF_INTERNAL_H

#include <stdbool.h>

#include "handoff.h"

/* CRC-32C of one buffer with the fastest implementation available. */
uint32_t handoff__crc32c(const void *buf, size_t len);

/*
 * handoff__utf8_valid() - Check strict UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF).
 * @bad_ret: offset of the first byte of the first bad sequence.
 */
bool handoff__utf8_valid(const uint8_t *s, size_t len, size_t *bad_ret);

/* Fill a diagnostic if there is one to fill; @path may be NULL. */
void handoff__diag(struct handoff_diag *diag, uint64_t offset, uint32_t rule, const char *what,
		   const char *path);

#endif /* HANDOFF_INTERNAL_H */
