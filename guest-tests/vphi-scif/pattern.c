/*
 * pattern(seed, n) and CRC32 of the card services, for vphi-scif.c (which
 * includes this file: guest programs are built from one source file).
 *
 * pattern: s = seed; for each 4-byte word s = s * 1664525 + 1013904223
 * (mod 2^32), stored little-endian; cut after n bytes. pattern(1, 8) is
 * 6c 59 88 3c db 85 88 5e, CRC32 0xab3b8c88.
 * crc32: IEEE 802.3, reflected 0xedb88320, as zlib's crc32(crc, buf, len).
 */
#include <stddef.h>
#include <stdint.h>

/* A pattern stream that can be produced in pieces (the source service sends it in chunks). */
struct pattern {
	uint32_t s;
	uint32_t word;
	unsigned used; /* bytes of `word` already produced, 0..4 */
};

static inline void pattern_init(struct pattern *p, uint32_t seed)
{
	p->s = seed;
	p->word = 0;
	p->used = 4;
}

static inline void pattern_next(struct pattern *p, void *buf, size_t n)
{
	uint8_t *b = buf;
	for (size_t i = 0; i < n; i++) {
		if (p->used == 4) {
			p->s = p->s * 1664525u + 1013904223u;
			p->word = p->s;
			p->used = 0;
		}
		b[i] = (uint8_t)(p->word >> (8 * p->used++));
	}
}

static inline void pattern_fill(uint32_t seed, void *buf, size_t n)
{
	struct pattern p;
	pattern_init(&p, seed);
	pattern_next(&p, buf, n);
}

static inline uint32_t crc32(uint32_t crc, const void *buf, size_t n)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	const uint8_t *b = buf;
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}
