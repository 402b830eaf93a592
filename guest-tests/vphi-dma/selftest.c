/*
 * vphi-dma selftest: the C pattern and CRC32 (pattern.h) against the known
 * vectors, no card needed; "# pattern-crc SEED LEN CRC" lines for the host
 * to compare with src/pattern.ts.
 */
#include "vphi-dma.h"

static int t_pattern_vector(void)
{
	static const uint8_t want[8] = { 0x6c, 0x59, 0x88, 0x3c, 0xdb, 0x85, 0x88, 0x5e };
	uint8_t got[9] = { 0 };
	pattern_fill(1, got, 8);
	ktap_diag("pattern(1, 8) = %02x %02x %02x %02x %02x %02x %02x %02x", got[0], got[1], got[2], got[3], got[4], got[5],
		  got[6], got[7]);
	uint8_t cut[3];
	pattern_fill(1, cut, 3);
	return !memcmp(got, want, 8) && got[8] == 0 && !memcmp(cut, want, 3);
}

static int t_crc32_vector(void)
{
	uint8_t p[8];
	pattern_fill(1, p, 8);
	uint32_t a = crc32(p, 8), b = crc32("123456789", 9), c = crc32_update(crc32(p, 3), p + 3, 5);
	ktap_diag("crc32(pattern(1, 8)) = 0x%08x, crc32(\"123456789\") = 0x%08x, in two parts 0x%08x", a, b, c);
	return a == 0xab3b8c88u && b == 0xcbf43926u && c == a;
}

static int t_pattern_mismatch(void)
{
	static uint8_t b[4099];
	pattern_fill(0xdeadbeef, b, sizeof(b));
	int ok = pattern_mismatch(0xdeadbeef, b, sizeof(b)) == sizeof(b) && !check_pattern(b, sizeof(b), 0xdeadbeef, "clean");
	b[4097] ^= 0x10;
	ok = ok && pattern_mismatch(0xdeadbeef, b, sizeof(b)) == 4097 && check_pattern(b, sizeof(b), 0xdeadbeef, "tail") == 1;
	b[5] ^= 1;
	ok = ok && pattern_mismatch(0xdeadbeef, b, sizeof(b)) == 5;
	return ok;
}

static int t_pattern_crc_lines(void)
{
	static const struct {
		uint32_t seed;
		size_t len;
	} v[] = { { 1, 8 }, { 0xdeadbeef, 4099 }, { 0, 65536 }, { 0x55f00c0d, 1 } };
	static uint8_t b[65536];
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		pattern_fill(v[i].seed, b, v[i].len);
		ktap_diag("pattern-crc 0x%08x %zu 0x%08x", v[i].seed, v[i].len, crc32(b, v[i].len));
	}
	return 1;
}

static const struct dma_test tests[] = {
	{ "pattern-vector", t_pattern_vector },
	{ "crc32-vector", t_crc32_vector },
	{ "pattern-mismatch", t_pattern_mismatch },
	{ "pattern-crc-lines", t_pattern_crc_lines },
	{ 0 },
};

static void no_teardown(void) {}

const struct dma_group group_selftest = { GR_SELFTEST, 0, 0, tests, no_teardown, NULL };
