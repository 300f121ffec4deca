// SPDX-License-Identifier: MIT
/*
 * The pyc rewrite (store/pyc.c pyc_scan) on any bytes: the marshal walk reads nothing
 * outside the file and ends (Y1); what it rewrites is a record that decodes again from its
 * encoding, serves a file of the size it claims under any prefix, with the header's
 * source size field following the prefix, and slices equal to the whole.
 *
 * Input: the source's inserts (1 byte), then the pyc.
 */
#include "fuzz.h"
#include "pyc.h"

#include <errno.h>

struct mem {
	const uint8_t *p;
	size_t n;
};

static int mem_src(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	const struct mem *m = ctx;

	FUZZ_CHECK(off <= m->n && len <= m->n - off);
	memcpy(buf, m->p + off, len);
	return 0;
}

static void serve(struct reloc *r, const struct mem *m, const char *prefix, uint32_t k,
                  const uint8_t *pyc)
{
	size_t plen = strlen(prefix), size = m->n + (size_t)reloc_text_inserts(r) * plen, n = 0;
	uint8_t *whole = malloc(size + 1), slice[37];
	uint32_t field;

	FUZZ_CHECK(whole);
	FUZZ_CHECK(reloc_read(r, m->n, prefix, plen, 0, size + 1, whole, &n, mem_src, (void *)m) ==
	           0);
	FUZZ_CHECK(n == size && n >= PYC_HEADER);
	FUZZ_CHECK(memcmp(whole, pyc, 12) == 0);
	field = (uint32_t)whole[12] | (uint32_t)whole[13] << 8 | (uint32_t)whole[14] << 16 |
	        (uint32_t)whole[15] << 24;
	FUZZ_CHECK(field == (uint32_t)(1000 + (uint64_t)k * plen));
	for (size_t off = 0; off < n; off += 1 + off / 5) {
		size_t got = 0, want = n - off < sizeof(slice) ? n - off : sizeof(slice);

		FUZZ_CHECK(reloc_read(r, m->n, prefix, plen, off, sizeof(slice), slice, &got,
		                      mem_src, (void *)m) == 0);
		FUZZ_CHECK(got == want && memcmp(slice, whole + off, got) == 0);
	}
	free(whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reloc *r = NULL, *again = NULL;
	uint8_t *neutral = NULL, *blob = NULL;
	size_t nlen = 0, blen = 0;
	struct mem m;
	int rc;

	if (size < 1)
		return 0;
	rc = pyc_scan(data + 1, size - 1, "/p", 2, 1000, data[0], &neutral, &nlen, &r);
	FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
	if (!r)
		return 0;
	FUZZ_CHECK(reloc_encode(r, &blob, &blen) == 0 && blen <= RELOC_PYC_MAX);
	FUZZ_CHECK(reloc_decode(blob, blen, &again) == 0);
	m = (struct mem){neutral, nlen};
	serve(again, &m, "/p", data[0], data + 1);
	serve(again, &m, "/a/much/longer/prefix/than/the/one/it/was/built/at", data[0], data + 1);
	serve(r, &m, "", data[0], data + 1);
	reloc_free(again);
	reloc_free(r);
	free(blob);
	free(neutral);
	return 0;
}
