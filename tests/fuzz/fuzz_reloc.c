// SPDX-License-Identifier: MIT
/*
 * Prefix relocation (store/reloc.c) as a round trip: scan a file for a prefix, then read
 * the neutral content back under the same prefix, whole and in slices, directly and
 * through the record's encoding: always the file's bytes. Under another prefix, text
 * mode must give what replacing every occurrence gives, and binary mode the same size.
 *
 * Input: mode byte (bit 0: text or binary), prefix length byte, placeholder length byte
 * (what a conda-meta record says, so anything; 0 is none), the prefix (a NUL in it reads
 * as '/'), then the file.
 */
#include "fuzz.h"
#include "reloc.h"

#include <errno.h>

struct mem {
	const uint8_t *p;
	uint64_t n;
};

static int mem_src(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	const struct mem *m = ctx;

	/* reloc_read asks only for neutral bytes that exist (R5). */
	FUZZ_CHECK(off <= m->n && len <= m->n - off);
	memcpy(buf, m->p + off, len);
	return 0;
}

/* The whole content under prefix p, and slices of it that must agree. */
static uint8_t *read_all(struct reloc *r, const struct mem *neutral, const char *p, size_t plen,
                         size_t *ret_n, int *ret_rc)
{
	size_t cap = 64, n = 0;
	uint8_t *out = NULL;

	/* The output size is not known before: grow until a read comes back short. */
	for (;;) {
		uint8_t *grown = realloc(out, cap);

		FUZZ_CHECK(grown);
		out = grown;
		*ret_rc = reloc_read(r, neutral->n, p, plen, 0, cap, out, &n, mem_src,
		                     (void *)neutral);
		if (*ret_rc || n < cap)
			break;
		cap *= 2;
	}
	for (size_t off = 0; !*ret_rc && off < n; off += 1 + off / 2 + (off % 7)) {
		uint8_t slice[97];
		size_t got = 0, want = n - off < sizeof(slice) ? n - off : sizeof(slice);

		FUZZ_CHECK(reloc_read(r, neutral->n, p, plen, off, sizeof(slice), slice, &got,
		                      mem_src, (void *)neutral) == 0);
		FUZZ_CHECK(got == want && memcmp(slice, out + off, got) == 0);
	}
	*ret_n = n;
	return out;
}

/* data with every occurrence of p replaced by q, left to right: conda's text rule. */
static uint8_t *replaced(const uint8_t *data, size_t len, const char *p, size_t plen, const char *q,
                         size_t qlen, size_t *ret_n)
{
	uint8_t *out = malloc(len / plen * qlen + len + 1);
	size_t n = 0;

	FUZZ_CHECK(out);
	for (size_t i = 0; i < len;) {
		if (len - i >= plen && memcmp(data + i, p, plen) == 0) {
			memcpy(out + n, q, qlen);
			n += qlen;
			i += plen;
		} else {
			out[n++] = data[i++];
		}
	}
	*ret_n = n;
	return out;
}

static void round_trip(const uint8_t *data, size_t len, const char *prefix, size_t plen,
                       enum reloc_mode mode, size_t phlen)
{
	struct cfs_err err = {{0}};
	struct reloc *r = NULL, *again = NULL;
	uint8_t *neutral = NULL, *out, *blob = NULL, *ref;
	size_t nlen = 0, n, blen, rn;
	char other[300];
	size_t olen;
	int rc;

	rc = reloc_scan(data, len, prefix, plen, mode, phlen, &neutral, &nlen, &r, &err);
	if (rc < 0) {
		FUZZ_CHECK(err.msg[0]);
		fuzz_check_one_line(err.msg);
		return;
	}
	if (!r) {
		/* Text mode removes every occurrence: none found means none there. */
		FUZZ_CHECK(mode != RELOC_TEXT || !memmem(data, len, prefix, plen));
		return;
	}
	struct mem m = {neutral, nlen};

	out = read_all(r, &m, prefix, plen, &n, &rc);
	FUZZ_CHECK(rc == 0 && n == len && memcmp(out, data, len) == 0);
	free(out);
	FUZZ_CHECK(reloc_encode(r, &blob, &blen) == 0);
	FUZZ_CHECK(reloc_decode(blob, blen, &again) == 0);
	out = read_all(again, &m, prefix, plen, &n, &rc);
	FUZZ_CHECK(rc == 0 && n == len && memcmp(out, data, len) == 0);
	free(out);

	/* Another prefix, longer and shorter. */
	for (int k = 0; k < 2; k++) {
		olen = k ? plen - 1 : plen + 5;
		if (olen == 0)
			continue;
		memset(other, 'q', olen);
		out = read_all(r, &m, other, olen, &n, &rc);
		if (mode == RELOC_TEXT) {
			ref = replaced(data, len, prefix, plen, other, olen, &rn);
			FUZZ_CHECK(rc == 0 && n == rn && memcmp(out, ref, n) == 0);
			free(ref);
		} else {
			FUZZ_CHECK(rc == reloc_fits(r, olen));
			FUZZ_CHECK(rc || n == len);
		}
		free(out);
	}
	reloc_free(again);
	free(blob);
	reloc_free(r);
	free(neutral);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char prefix[256];
	size_t plen;

	if (size < 3)
		return 0;
	plen = 1 + data[1] % 64;
	if (size < 3 + plen)
		return 0;
	for (size_t i = 0; i < plen; i++)
		prefix[i] = data[3 + i] ? (char)data[3 + i] : '/';
	round_trip(data + 3 + plen, size - 3 - plen, prefix, plen,
	           data[0] & 1 ? RELOC_BINARY : RELOC_TEXT, data[2]);
	return 0;
}
