// SPDX-License-Identifier: GPL-2.0-only
/*
 * util.c - error strings, diagnostics and UTF-8 validation shared by the sources.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *handoff_strerror(int err)
{
	switch (err) {
	case HANDOFF_OK: return "success";
	case HANDOFF_E_INVAL: return "invalid argument";
	case HANDOFF_E_TRUNCATED: return "record truncated";
	case HANDOFF_E_MAGIC: return "bad magic";
	case HANDOFF_E_HEADER_CRC: return "header checksum mismatch";
	case HANDOFF_E_VERSION: return "unsupported major version";
	case HANDOFF_E_HEADER_SIZE: return "bad header size";
	case HANDOFF_E_PAYLOAD_SIZE: return "payload too large";
	case HANDOFF_E_DIGEST: return "payload digest mismatch";
	case HANDOFF_E_ALG: return "unsupported algorithm";
	case HANDOFF_E_TEXT: return "bad text field";
	case HANDOFF_E_NOSPACE: return "output buffer too small";
	case HANDOFF_E_IO: return "I/O error";
	case HANDOFF_E_NO_RECORD: return "no valid record in region";
	case HANDOFF_E_REGION: return "bad region header or layout";
	case HANDOFF_E_INTERRUPTED: return "update interrupted";
	case HANDOFF_E_TRAILING: return "trailing data after record";
	case HANDOFF_E_CBOR: return "bad CBOR";
	case HANDOFF_E_SCHEMA: return "schema violation";
	default: return "unknown error";
	}
}

void handoff__diag(struct handoff_diag *diag, uint64_t offset, uint32_t rule, const char *what,
		   const char *path)
{
	if (!diag)
		return;
	diag->offset = offset;
	diag->rule = rule;
	snprintf(diag->what, sizeof(diag->what), "%s", what);
	snprintf(diag->path, sizeof(diag->path), "%s", path ? path : "");
}

bool handoff__utf8_valid(const uint8_t *s, size_t len, size_t *bad_ret)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		uint8_t lo = 0x80, hi = 0xbf;	/* range of the second byte */
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;	/* overlong */
			else if (c == 0xed)
				hi = 0x9f;	/* UTF-16 surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;	/* overlong */
			else if (c == 0xf4)
				hi = 0x8f;	/* above U+10FFFF */
		} else {
			goto bad;	/* continuation byte, C0, C1, F5-FF */
		}
		if (len - i <= n || s[i + 1] < lo || s[i + 1] > hi)
			goto bad;
		for (size_t k = 2; k <= n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				goto bad;
		i += n + 1;
	}
	return true;
bad:
	if (bad_ret)
		*bad_ret = i;
	return false;
}
