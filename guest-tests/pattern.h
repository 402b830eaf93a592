/*
 * pattern.h: the one test byte pattern, shared with the TypeScript side
 * (src/pattern.ts), and zlib's CRC32.
 *
 * pattern(seed, n): a 32-bit state s = seed; for each 4-byte word
 * s = s * 1664525 + 1013904223 (mod 2^32), written little-endian; cut
 * after n bytes. pattern(1, 8) = 6c 59 88 3c db 85 88 5e, CRC32 0xab3b8c88.
 */
#ifndef VPHI_PATTERN_H
#define VPHI_PATTERN_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t pattern_next(uint32_t s) { return s * 1664525u + 1013904223u; }

/* Fill buf with the first n bytes of pattern(seed). */
static inline void pattern_fill(uint32_t seed, void *buf, size_t n)
{
	uint8_t *b = buf;
	uint32_t s = seed;
	for (size_t i = 0; i < n; i += 4) {
		s = pattern_next(s);
		for (size_t k = 0; k < 4 && i + k < n; k++)
			b[i + k] = (uint8_t)(s >> (8 * k));
	}
}

/* Offset of the first byte of buf[0, n) that differs from pattern(seed), or n if none does. */
static inline size_t pattern_mismatch(uint32_t seed, const void *buf, size_t n)
{
	const uint8_t *b = buf;
	uint32_t s = seed;
	for (size_t i = 0; i < n; i += 4) {
		s = pattern_next(s);
		for (size_t k = 0; k < 4 && i + k < n; k++)
			if (b[i + k] != (uint8_t)(s >> (8 * k)))
				return i + k;
	}
	return n;
}

/* zlib's crc32(crc, buf, n) (reflected 0xEDB88320), table-driven; start with crc = 0. */
static inline uint32_t crc32_update(uint32_t crc, const void *buf, size_t n)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = (c >> 1) ^ (0xEDB88320u & -(c & 1u));
			table[i] = c;
		}
	const uint8_t *b = buf;
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static inline uint32_t crc32(const void *buf, size_t n) { return crc32_update(0, buf, n); }

/* pattern(seed, n) produced in pieces (the source service sends it in chunks). */
struct pattern_stream {
	uint32_t s;
	uint32_t word;
	unsigned used; /* bytes of `word` already produced, 0..4 */
};

static inline void pattern_stream_init(struct pattern_stream *p, uint32_t seed)
{
	p->s = seed;
	p->word = 0;
	p->used = 4;
}

static inline void pattern_stream_next(struct pattern_stream *p, void *buf, size_t n)
{
	uint8_t *b = buf;
	for (size_t i = 0; i < n; i++) {
		if (p->used == 4) {
			p->word = p->s = pattern_next(p->s);
			p->used = 0;
		}
		b[i] = (uint8_t)(p->word >> (8 * p->used++));
	}
}

#endif
