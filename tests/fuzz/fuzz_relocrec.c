// SPDX-License-Identifier: MIT
/*
 * Relocation records as the catalog stores them (store/reloc.c reloc_decode) on any
 * bytes, then read under a prefix against a neutral content of a given length: R5 says a
 * record decoded is safe to read with, whatever the neutral length (-EBADMSG when they
 * disagree), and reads never ask for bytes past the neutral content.
 *
 * Input: prefix length byte, neutral length (2 bytes, little endian), then the record.
 */
#include "fuzz.h"
#include "reloc.h"

#include <errno.h>

struct pattern {
	uint64_t n;
};

static uint8_t byte_at(uint64_t y)
{
	return (uint8_t)(y * 131 + 7);
}

static int pattern_src(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	const struct pattern *p = ctx;

	FUZZ_CHECK(off <= p->n && len <= p->n - off);
	for (size_t i = 0; i < len; i++)
		buf[i] = byte_at(off + i);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pattern pat;
	struct reloc *r = NULL;
	uint8_t *whole, *blob = NULL, slice[61];
	char prefix[256];
	size_t plen, n = 0, cap, blen;
	int rc;

	if (size < 3 || reloc_decode(data + 3, size - 3, &r) < 0)
		return 0;
	/* One record, one encoding: what decodes encodes back to the same bytes. */
	FUZZ_CHECK(reloc_encode(r, &blob, &blen) == 0);
	FUZZ_CHECK(blen == size - 3 && memcmp(blob, data + 3, blen) == 0);
	free(blob);
	plen = 1 + data[0];
	memset(prefix, 'p', plen);
	pat.n = (uint64_t)data[1] | (uint64_t)data[2] << 8;
	/* Text grows by plen per insert, binary never: the output fits in cap. */
	cap = (size_t)pat.n + (size_t)reloc_text_inserts(r) * plen;
	whole = malloc(cap + 1);
	FUZZ_CHECK(whole);
	rc = reloc_read(r, pat.n, prefix, plen, 0, cap + 1, whole, &n, pattern_src, &pat);
	FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOSPC);
	FUZZ_CHECK(rc || n == cap);
	for (size_t off = 0; !rc && off < n; off += 1 + off / 3) {
		size_t got = 0, want = n - off < sizeof(slice) ? n - off : sizeof(slice);

		FUZZ_CHECK(reloc_read(r, pat.n, prefix, plen, off, sizeof(slice), slice, &got,
		                      pattern_src, &pat) == 0);
		FUZZ_CHECK(got == want && memcmp(slice, whole + off, got) == 0);
	}
	free(whole);
	reloc_free(r);
	return 0;
}
