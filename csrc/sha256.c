// SPDX-License-Identifier: GPL-2.0-only
/*
 * sha256.c - SHA-256 (FIPS 180-4), digest algorithm 1 of spec/format.md §5.
 *
 * Our own so that the C core needs no crypto library in a capture initrd;
 * the tests compare it with the NIST vectors and with hashlib. The block
 * function is portable C, or on x86 CPUs with the SHA extensions the
 * sha256rnds2/msg1/msg2 instructions (eight times faster: the payload
 * digest is most of the cost of writing a record). The tests hold the two to
 * the same digests.
 */
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHANI_CODE 1
#endif

/* FIPS 180-4 §4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n)
{
	return x >> n | x << (32 - n);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* FIPS 180-4 §6.2.2: one 64-byte block. */
static void compress(uint32_t h[8], const uint8_t *block)
{
	uint32_t w[64], a, b, c, d, e, f, g, k;

	for (int t = 0; t < 16; t++)
		w[t] = get_be32(block + 4 * t);
	for (int t = 16; t < 64; t++) {
		uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
		uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);

		w[t] = w[t - 16] + s0 + w[t - 7] + s1;
	}
	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
	for (int t = 0; t < 64; t++) {
		uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));

		k = g, g = f, f = e, e = d + t1;
		d = c, c = b, b = a, a = t1 + t2;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d;
	h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

#ifdef HAVE_SHANI_CODE
/*
 * Rounds 4g..4g+3 with the SHA extensions, and the message schedule around
 * them: w[g & 3] holds schedule words 4g..4g+3; sha256msg2 completes those of
 * group g + 1 (in the slot of group g - 3), sha256msg1 starts those of group
 * g + 3 (in the slot of group g - 1). @g is a constant, so the conditions fold.
 */
#define SHANI_GROUP(g) do {								\
	__m128i m_ = _mm_add_epi32(w[(g) & 3], _mm_loadu_si128((const __m128i *)&K[4 * (g)])); \
											\
	cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m_);					\
	if ((g) >= 3 && (g) <= 14)							\
		w[((g) + 1) & 3] = _mm_sha256msg2_epu32(				\
			_mm_add_epi32(w[((g) + 1) & 3],					\
				      _mm_alignr_epi8(w[(g) & 3], w[((g) + 3) & 3], 4)), \
			w[(g) & 3]);							\
	m_ = _mm_shuffle_epi32(m_, 0x0e);						\
	abef = _mm_sha256rnds2_epu32(abef, cdgh, m_);					\
	if ((g) >= 1 && (g) <= 12)							\
		w[((g) + 3) & 3] = _mm_sha256msg1_epu32(w[((g) + 3) & 3], w[(g) & 3]);	\
} while (0)

/* @n 64-byte blocks; compiled for the SHA extensions alone, used only when the CPU has them. */
__attribute__((target("sha,sse4.1")))
static void blocks_shani(uint32_t h[8], const uint8_t *p, size_t n)
{
	/* big-endian words: reverse the bytes of each 32-bit lane */
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bull, 0x0405060700010203ull);
	__m128i abef, cdgh, tmp, abef_in, cdgh_in, w[4];

	/* the instructions keep the state as ABEF and CDGH */
	tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xb1);	/* CDAB */
	cdgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1b);	/* EFGH */
	abef = _mm_alignr_epi8(tmp, cdgh, 8);
	cdgh = _mm_blend_epi16(cdgh, tmp, 0xf0);
	for (; n; n--, p += 64) {
		abef_in = abef;
		cdgh_in = cdgh;
		for (int i = 0; i < 4; i++)
			w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
		SHANI_GROUP(0); SHANI_GROUP(1); SHANI_GROUP(2); SHANI_GROUP(3);
		SHANI_GROUP(4); SHANI_GROUP(5); SHANI_GROUP(6); SHANI_GROUP(7);
		SHANI_GROUP(8); SHANI_GROUP(9); SHANI_GROUP(10); SHANI_GROUP(11);
		SHANI_GROUP(12); SHANI_GROUP(13); SHANI_GROUP(14); SHANI_GROUP(15);
		abef = _mm_add_epi32(abef, abef_in);
		cdgh = _mm_add_epi32(cdgh, cdgh_in);
	}
	tmp = _mm_shuffle_epi32(abef, 0x1b);		/* FEBA */
	cdgh = _mm_shuffle_epi32(cdgh, 0xb1);		/* DCHG */
	_mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(tmp, cdgh, 0xf0));	/* DCBA */
	_mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(cdgh, tmp, 8));	/* HGFE */
}

static int have_shani(void)
{
	static int cached;	/* 0: not asked yet, 1: no, 2: yes */
	int have = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	unsigned a, b, c, d;

	if (!have) {
		/* SHA (leaf 7 EBX bit 29) and SSE4.1 (leaf 1 ECX bit 19), which the code also uses */
		have = __get_cpuid(1, &a, &b, &c, &d) && (c & 1u << 19) &&
		       __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & 1u << 29) ? 2 : 1;
		__atomic_store_n(&cached, have, __ATOMIC_RELAXED);
	}
	return have == 2;
}
#else
static int have_shani(void)
{
	return 0;
}
#endif

/* @n 64-byte blocks at @p with implementation @impl (not AUTO). */
static void blocks(int impl, uint32_t h[8], const uint8_t *p, size_t n)
{
#ifdef HAVE_SHANI_CODE
	if (impl == HANDOFF_SHA256_SHANI) {
		blocks_shani(h, p, n);
		return;
	}
#endif
	(void)impl;
	for (; n; n--, p += 64)
		compress(h, p);
}

static int resolve(int impl)
{
	if (impl == HANDOFF_SHA256_AUTO)
		return have_shani() ? HANDOFF_SHA256_SHANI : HANDOFF_SHA256_PORTABLE;
	return impl;
}

int handoff_sha256_available(int impl)
{
	switch (impl) {
	case HANDOFF_SHA256_AUTO:
	case HANDOFF_SHA256_PORTABLE:
		return 0;
	case HANDOFF_SHA256_SHANI:
		return have_shani() ? 0 : HANDOFF_E_INVAL;
	default:
		return HANDOFF_E_INVAL;
	}
}

int handoff_sha256_init(struct handoff_sha256 *ctx)
{
	/* FIPS 180-4 §5.3.3 */
	static const uint32_t h0[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};

	if (!ctx)
		return HANDOFF_E_INVAL;
	memcpy(ctx->h, h0, sizeof(h0));
	ctx->nbytes = 0;
	return 0;
}

static int update(struct handoff_sha256 *ctx, const void *data, size_t len, int impl)
{
	const uint8_t *p = data;
	size_t used;

	if (!ctx || (!data && len))
		return HANDOFF_E_INVAL;
	if (!len)
		return 0;	/* data may be NULL, which memcpy() may not see */
	used = ctx->nbytes % 64;
	ctx->nbytes += len;
	if (used) {
		size_t take = len < 64 - used ? len : 64 - used;

		memcpy(ctx->block + used, p, take);
		p += take, len -= take;
		if (used + take < 64)
			return 0;
		blocks(impl, ctx->h, ctx->block, 1);
	}
	blocks(impl, ctx->h, p, len / 64);
	p += len / 64 * 64, len %= 64;
	if (len)
		memcpy(ctx->block, p, len);
	return 0;
}

static int finish(struct handoff_sha256 *ctx, uint8_t digest_ret[32], int impl)
{
	size_t used;
	uint64_t bits;

	if (!ctx || !digest_ret)
		return HANDOFF_E_INVAL;
	/* FIPS 180-4 §5.1.1: 0x80, zeros to 56 mod 64, then the length in bits, big-endian. */
	used = ctx->nbytes % 64;
	bits = ctx->nbytes * 8;
	ctx->block[used++] = 0x80;
	if (used > 56) {
		memset(ctx->block + used, 0, 64 - used);
		blocks(impl, ctx->h, ctx->block, 1);
		used = 0;
	}
	memset(ctx->block + used, 0, 56 - used);
	put_be32(ctx->block + 56, (uint32_t)(bits >> 32));
	put_be32(ctx->block + 60, (uint32_t)bits);
	blocks(impl, ctx->h, ctx->block, 1);
	for (int i = 0; i < 8; i++)
		put_be32(digest_ret + 4 * i, ctx->h[i]);
	return 0;
}

int handoff_sha256_update(struct handoff_sha256 *ctx, const void *data, size_t len)
{
	return update(ctx, data, len, resolve(HANDOFF_SHA256_AUTO));
}

int handoff_sha256_final(struct handoff_sha256 *ctx, uint8_t digest_ret[32])
{
	return finish(ctx, digest_ret, resolve(HANDOFF_SHA256_AUTO));
}

int handoff_sha256_using(const void *data, size_t len, int impl, uint8_t digest_ret[32])
{
	struct handoff_sha256 ctx;
	int err;

	if (handoff_sha256_available(impl))
		return HANDOFF_E_INVAL;
	impl = resolve(impl);
	err = handoff_sha256_init(&ctx);
	if (!err)
		err = update(&ctx, data, len, impl);
	if (!err)
		err = finish(&ctx, digest_ret, impl);
	return err;
}

int handoff_sha256(const void *data, size_t len, uint8_t digest_ret[32])
{
	return handoff_sha256_using(data, len, HANDOFF_SHA256_AUTO, digest_ret);
}
