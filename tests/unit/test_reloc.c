// SPDX-License-Identifier: MIT
/*
 * Prefix relocation against independent reference implementations of conda's rules
 * (text: str.replace; binary: per NUL-terminated string, replace and pad or take NULs):
 * fixed cases from conda.md, random files and random "conda installs" of one package at
 * several prefixes, reads at every offset and length, the record encoding, and a decoder
 * fed random and damaged blobs. RELOC_SEED=<n> reruns one random sequence.
 */
#include "reloc.h"
#include "test.h"

#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1du;
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	return p;
}

struct bytes {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct bytes *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;

		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_rep(struct bytes *b, uint8_t c, size_t times)
{
	for (size_t i = 0; i < times; i++)
		put(b, &c, 1);
}

static void put_str(struct bytes *b, const char *s)
{
	put(b, s, strlen(s));
}

/* Neutral content served from memory; counts what reloc_read asks for. */
struct src {
	const uint8_t *p;
	uint64_t n;
	unsigned calls;
	uint64_t bytes;
	bool out_of_range;
};

static int mem_src(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	struct src *s = ctx;

	s->calls++;
	s->bytes += len;
	if (off > s->n || len > s->n - off) {
		s->out_of_range = true;
		return -EIO;
	}
	memcpy(buf, s->p + off, len);
	return 0;
}

/* Neutral content of any size, made up from its offset. */
static uint8_t pattern(uint64_t y)
{
	return (uint8_t)(y * 131 + (y >> 29) + 7);
}

static int pattern_src(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	struct src *s = ctx;

	s->calls++;
	s->bytes += len;
	if (off > s->n || len > s->n - off) {
		s->out_of_range = true;
		return -EIO;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern(off + i);
	return 0;
}

/* ---- reference implementations of conda's replacement ---- */

/* Left to right, non-overlapping, like Python's bytes.replace. */
static void replace_run(struct bytes *out, const uint8_t *d, size_t n, const char *a, const char *b,
                        size_t *count)
{
	size_t alen = strlen(a), i = 0;

	while (i < n) {
		if (i + alen <= n && memcmp(d + i, a, alen) == 0) {
			put_str(out, b);
			i += alen;
			(*count)++;
		} else {
			put(out, d + i, 1);
			i++;
		}
	}
}

static void ref_text(const uint8_t *d, size_t n, const char *a, const char *b, struct bytes *out)
{
	size_t count = 0;

	out->n = 0;
	replace_run(out, d, n, a, b, &count);
}

/* Every maximal run of non-NUL bytes followed by a NUL is a string; its NUL run grows or
 * shrinks by occurrences * (|a| - |b|) and must keep one NUL. */
static int ref_binary(const uint8_t *d, size_t n, const char *a, const char *b, struct bytes *out)
{
	size_t i = 0;

	out->n = 0;
	while (i < n) {
		size_t t = i, u, count = 0;
		long long pad;

		if (d[i] == 0) {
			put(out, d + i, 1);
			i++;
			continue;
		}
		while (t < n && d[t] != 0)
			t++;
		if (t == n) {
			put(out, d + i, n - i);
			break;
		}
		replace_run(out, d + i, t - i, a, b, &count);
		for (u = t; u < n && d[u] == 0; u++)
			;
		pad = (long long)(u - t) +
		      (long long)count * ((long long)strlen(a) - (long long)strlen(b));
		if (pad < 1)
			return -ENOSPC;
		put_rep(out, 0, (size_t)pad);
		i = u;
	}
	return 0;
}

static int ref_replace(enum reloc_mode mode, const uint8_t *d, size_t n, const char *a,
                       const char *b, struct bytes *out)
{
	if (mode == RELOC_TEXT) {
		ref_text(d, n, a, b, out);
		return 0;
	}
	return ref_binary(d, n, a, b, out);
}

/* ---- serving checks ---- */

/* Reads of r under p must give want: whole, in random chunks, at random ranges, past the
 * end, and (small files) at every offset and length. */
static void check_serve(struct reloc *r, const uint8_t *neutral, size_t nlen, const char *p,
                        const uint8_t *want, size_t want_len)
{
	struct src s = {neutral, nlen, 0, 0, false};
	size_t plen = strlen(p), n, off;
	uint8_t *got = xmalloc(want_len + 64);
	bool whole = true, chunks = true, ranges = true, every = true;

	if (reloc_read(r, nlen, p, plen, 0, want_len + 64, got, &n, mem_src, &s) != 0 ||
	    n != want_len || memcmp(got, want, n) != 0)
		whole = false;
	CHECK(whole);

	for (off = 0; off < want_len;) {
		size_t len = 1 + rnd_below(rnd_below(4) ? 16 : 300);

		if (reloc_read(r, nlen, p, plen, off, len, got + off, &n, mem_src, &s) != 0 ||
		    n == 0 || n > len) {
			chunks = false;
			break;
		}
		off += n;
	}
	CHECK(chunks && (want_len == 0 || memcmp(got, want, want_len) == 0));

	for (int k = 0; k < 40; k++) {
		size_t o = rnd_below(want_len + 2), len = rnd_below(want_len + 4), exp;

		exp = o >= want_len ? 0 : (want_len - o < len ? want_len - o : len);
		if (reloc_read(r, nlen, p, plen, o, len, got, &n, mem_src, &s) != 0 || n != exp ||
		    (n && memcmp(got, want + o, n) != 0))
			ranges = false;
	}
	CHECK(ranges);
	CHECK(reloc_read(r, nlen, p, plen, UINT64_MAX, 16, got, &n, mem_src, &s) == 0 && n == 0);

	if (want_len <= 40) {
		for (size_t o = 0; o <= want_len; o++) {
			for (size_t len = 0; len <= want_len - o + 1; len++) {
				size_t exp = want_len - o < len ? want_len - o : len;
				int rc = reloc_read(r, nlen, p, plen, o, len, got, &n, mem_src, &s);

				if (rc != 0 || n != exp || (n && memcmp(got, want + o, n) != 0))
					every = false;
			}
		}
		CHECK(every);
	}
	CHECK(!s.out_of_range);
	free(got);
}

/* Encodes r, decodes it, encodes again: the blobs match and the decoded record serves the
 * same bytes. *ret is the blob. */
static void check_codec(const struct reloc *r, uint8_t **ret, size_t *ret_len)
{
	struct reloc *d = NULL;
	uint8_t *blob = NULL, *again = NULL;
	size_t len = 0, alen = 0;

	CHECK(reloc_encode(r, &blob, &len) == 0);
	CHECK(reloc_decode(blob, len, &d) == 0);
	if (d) {
		CHECK(reloc_encode(d, &again, &alen) == 0);
		CHECK(alen == len && memcmp(again, blob, len) == 0);
		CHECK(reloc_text_inserts(d) == reloc_text_inserts(r));
		for (size_t plen = 0; plen < 300; plen += 7)
			CHECK(reloc_fits(d, plen) == reloc_fits(r, plen));
	}
	reloc_free(d);
	free(again);
	*ret = blob;
	*ret_len = len;
}

/* Scans data for a; its record must serve data back under a, and under b what the
 * reference writes (or -ENOSPC where the reference finds no room). */
static void check_file(enum reloc_mode mode, const uint8_t *data, size_t len, const char *a,
                       const char *b)
{
	struct reloc *r = NULL;
	uint8_t *neutral = NULL, *blob = NULL;
	size_t nlen = 0, blen = 0;
	struct bytes want = {0};
	int rc;

	CHECK(reloc_scan(data, len, a, strlen(a), mode, 0, &neutral, &nlen, &r, NULL) == 0);
	if (!r) {
		/* Nothing counted: conda's replacement leaves the file alone too. */
		CHECK(neutral == NULL);
		CHECK(ref_replace(mode, data, len, a, b, &want) == 0);
		CHECK(want.n == len && (len == 0 || memcmp(want.p, data, len) == 0));
		free(want.p);
		return;
	}
	CHECK(mode == RELOC_TEXT ? nlen + (size_t)reloc_text_inserts(r) * strlen(a) == len
	                         : nlen == len && reloc_text_inserts(r) == 0);
	check_serve(r, neutral, nlen, a, data, len);

	rc = ref_replace(mode, data, len, a, b, &want);
	CHECK(reloc_fits(r, strlen(b)) == rc);
	if (rc == 0) {
		check_serve(r, neutral, nlen, b, want.p, want.n);
	} else {
		struct src s = {neutral, nlen, 0, 0, false};
		uint8_t buf[8];
		size_t n = 99;

		CHECK(reloc_read(r, nlen, b, strlen(b), 0, sizeof(buf), buf, &n, mem_src, &s) ==
		      -ENOSPC);
		CHECK(n == 99 && s.calls == 0);
	}

	check_codec(r, &blob, &blen);
	free(blob);
	free(want.p);
	free(neutral);
	reloc_free(r);
}

/* ---- fixed cases ---- */

static void test_mode_guess(void)
{
	const uint8_t text[] = "#!/bin/sh\necho hi\n", bin[] = "\177ELF\0\0\1";

	CHECK(reloc_mode_guess("lib/python3.11/__pycache__/os.cpython-311.pyc", text, 5) ==
	      RELOC_NONE);
	CHECK(reloc_mode_guess("a.pyo", text, 5) == RELOC_NONE);
	CHECK(reloc_mode_guess("x/pip-23.0-py3-none-any.whl", bin, 6) == RELOC_NONE);
	CHECK(reloc_mode_guess("x/a.ZIP", text, 5) == RELOC_NONE);
	CHECK(reloc_mode_guess("x/a.egg", text, 5) == RELOC_NONE);
	CHECK(reloc_mode_guess("share/java/a.jar", text, 5) == RELOC_NONE);
	CHECK(reloc_mode_guess("bin/launcher", (const uint8_t *)"PK\x03\x04zz", 6) == RELOC_NONE);
	CHECK(reloc_mode_guess("bin/x", text, sizeof(text) - 1) == RELOC_TEXT);
	CHECK(reloc_mode_guess("lib/libz.so.1", bin, sizeof(bin) - 1) == RELOC_BINARY);
	CHECK(reloc_mode_guess("empty", NULL, 0) == RELOC_TEXT);
	CHECK(reloc_mode_guess("pyc", text, 5) == RELOC_TEXT);
	CHECK(reloc_mode_guess("bin/PK", (const uint8_t *)"PK\x03", 3) == RELOC_TEXT);
}

static void test_shebang(void)
{
	const char *orig = "#!/opt/env/bin/python3.11\nimport sys\nP = '/opt/env/lib'\n";
	const char *moved =
	        "#!/home/u/envs/e/bin/python3.11\nimport sys\nP = '/home/u/envs/e/lib'\n";
	struct reloc *r = NULL;
	uint8_t *neutral = NULL;
	size_t nlen = 0;

	CHECK(reloc_scan((const uint8_t *)orig, strlen(orig), "/opt/env", 8, RELOC_TEXT, 0,
	                 &neutral, &nlen, &r, NULL) == 0);
	CHECK(r && reloc_text_inserts(r) == 2);
	CHECK(nlen == strlen("#!/bin/python3.11\nimport sys\nP = '/lib'\n") &&
	      memcmp(neutral, "#!/bin/python3.11\nimport sys\nP = '/lib'\n", nlen) == 0);
	CHECK(reloc_fits(r, 4000) == 0);
	if (r) {
		check_serve(r, neutral, nlen, "/opt/env", (const uint8_t *)orig, strlen(orig));
		check_serve(r, neutral, nlen, "/home/u/envs/e", (const uint8_t *)moved,
		            strlen(moved));
	}
	free(neutral);
	reloc_free(r);
	check_file(RELOC_TEXT, (const uint8_t *)orig, strlen(orig), "/opt/env", "/x");
}

/* conda.md: XX<P>/lib:<P>/lib64\0YY installed at /envs/abc keeps its length. */
static void test_conda_md_example(void)
{
	struct bytes ph = {0}, tmpl = {0}, inst = {0}, longer = {0};
	struct reloc *rt = NULL, *ri = NULL;
	uint8_t *nt = NULL, *ni = NULL, *bt = NULL, *bi = NULL;
	size_t ntl = 0, nil = 0, btl = 0, bil = 0;

	put_str(&ph, "/opt/conda/conda-bld/pkg_1700000000/_h_env");
	while (ph.n < 255)
		put_str(&ph, ph.n + 10 <= 255 ? "_placehold" : "_");
	ph.n = 255;
	put(&ph, "", 1);
	put_str(&tmpl, "XX");
	put_str(&tmpl, (const char *)ph.p);
	put_str(&tmpl, "/lib:");
	put_str(&tmpl, (const char *)ph.p);
	put(&tmpl, "/lib64\0YY", 9);

	put_str(&inst, "XX/envs/abc/lib:/envs/abc/lib64");
	put_rep(&inst, 0, 1 + 2 * (255 - 9));
	put_str(&inst, "YY");
	CHECK(inst.n == tmpl.n);

	CHECK(reloc_scan(tmpl.p, tmpl.n, (const char *)ph.p, 255, RELOC_BINARY, 255, &nt, &ntl, &rt,
	                 NULL) == 0);
	CHECK(reloc_scan(inst.p, inst.n, "/envs/abc", 9, RELOC_BINARY, 255, &ni, &nil, &ri, NULL) ==
	      0);
	CHECK(rt && ri && ntl == tmpl.n && nil == ntl && memcmp(nt, ni, ntl) == 0);
	if (rt && ri) {
		CHECK(reloc_encode(rt, &bt, &btl) == 0 && reloc_encode(ri, &bi, &bil) == 0);
		CHECK(btl == bil && memcmp(bt, bi, btl) == 0);
		check_serve(rt, nt, ntl, "/envs/abc", inst.p, inst.n);
		check_serve(ri, ni, nil, (const char *)ph.p, tmpl.p, tmpl.n);
		CHECK(reloc_fits(ri, 255) == 0);
		CHECK(reloc_fits(ri, 256) == -ENOSPC);
		put_rep(&longer, 'L', 256);
		put(&longer, "", 1);
		{
			struct src s = {ni, nil, 0, 0, false};
			uint8_t buf[16];
			size_t n;

			CHECK(reloc_read(ri, nil, (const char *)longer.p, 256, 100, sizeof(buf),
			                 buf, &n, mem_src, &s) == -ENOSPC);
		}
	}
	check_file(RELOC_BINARY, tmpl.p, tmpl.n, (const char *)ph.p, "/envs/abc");
	check_file(RELOC_BINARY, inst.p, inst.n, "/envs/abc", "/e");
	check_file(RELOC_BINARY, inst.p, inst.n, "/envs/abc", "/a/longer/prefix/than/before");
	free(ph.p);
	free(tmpl.p);
	free(inst.p);
	free(longer.p);
	free(nt);
	free(ni);
	free(bt);
	free(bi);
	reloc_free(rt);
	reloc_free(ri);
}

static void scan_expect(enum reloc_mode mode, const char *data, size_t len, const char *p,
                        const char *want_neutral, size_t want_len, uint32_t want_ins)
{
	struct reloc *r = NULL;
	uint8_t *neutral = NULL;
	size_t nlen = 0;
	uint8_t *blob = NULL;
	size_t blen = 0;

	CHECK(reloc_scan((const uint8_t *)data, len, p, strlen(p), mode, 0, &neutral, &nlen, &r,
	                 NULL) == 0);
	if (!want_neutral) {
		CHECK(r == NULL && neutral == NULL && nlen == 0);
	} else {
		CHECK(r != NULL && nlen == want_len && memcmp(neutral, want_neutral, nlen) == 0);
		if (r) {
			CHECK(reloc_text_inserts(r) == want_ins);
			CHECK(reloc_encode(r, &blob, &blen) == 0);
		}
	}
	free(blob);
	free(neutral);
	reloc_free(r);
	check_file(mode, (const uint8_t *)data, len, p, "/q");
	check_file(mode, (const uint8_t *)data, len, p, "/somewhere/much/longer");
}

static void test_edges(void)
{
	struct reloc *r = (struct reloc *)&r;
	uint8_t *neutral = (uint8_t *)&neutral;
	size_t nlen = 7;
	struct cfs_err err = {{0}};

	/* Empty file, prefix longer than the file, nothing found. */
	CHECK(reloc_scan(NULL, 0, "/p", 2, RELOC_TEXT, 0, &neutral, &nlen, &r, NULL) == 0);
	CHECK(r == NULL && neutral == NULL && nlen == 0);
	scan_expect(RELOC_BINARY, "/p", 2, "/p/q/r", NULL, 0, 0);
	scan_expect(RELOC_TEXT, "abc\ndef", 7, "/p", NULL, 0, 0);
	scan_expect(RELOC_BINARY, "abc\0def", 7, "/p", NULL, 0, 0);
	CHECK(reloc_scan((const uint8_t *)"/p", 2, "", 0, RELOC_TEXT, 0, &neutral, &nlen, &r,
	                 &err) == -EINVAL);
	CHECK(err.msg[0] != 0);
	CHECK(reloc_scan((const uint8_t *)"/p", 2, "/\0", 2, RELOC_BINARY, 0, &neutral, &nlen, &r,
	                 NULL) == -EINVAL);
	CHECK(reloc_scan((const uint8_t *)"/p", 2, "/p", 2, (enum reloc_mode)7, 0, &neutral, &nlen,
	                 &r, NULL) == -EINVAL);
	r = NULL;
	CHECK(reloc_scan((const uint8_t *)"/p\0", 3, "/p", 2, RELOC_NONE, 0, &neutral, &nlen, &r,
	                 NULL) == 0);
	CHECK(r == NULL && neutral == NULL);
	CHECK(reloc_text_inserts(NULL) == 0 && reloc_fits(NULL, 1000) == 0);
	reloc_free(NULL);

	/* Text: start, end, whole file, adjacent, overlapping candidates. */
	scan_expect(RELOC_TEXT, "/pabc/p", 7, "/p", "abc", 3, 2);
	scan_expect(RELOC_TEXT, "/p", 2, "/p", "", 0, 1);
	scan_expect(RELOC_TEXT, "/p/p/p", 6, "/p", "", 0, 3);
	scan_expect(RELOC_TEXT, "aaa", 3, "aa", "a", 1, 1);
	scan_expect(RELOC_TEXT, "x\0/p\0y", 6, "/p", "x\0\0y", 4, 1);

	/* Binary: several occurrences in one string, at the very start, at the end with and
	 * without a NUL after, adjacent ones, strings of only the prefix. */
	scan_expect(RELOC_BINARY, "/p/lib:/p/lib64\0YY", 18, "/p", "/lib:/lib64\0\0\0\0\0YY", 18,
	            0);
	scan_expect(RELOC_BINARY, "/p\0", 3, "/p", "\0\0\0", 3, 0);
	scan_expect(RELOC_BINARY, "ab\0/p", 5, "/p", NULL, 0, 0);
	scan_expect(RELOC_BINARY, "/pab", 4, "/p", NULL, 0, 0);
	scan_expect(RELOC_BINARY, "x/p\0ab/p", 8, "/p", "x\0\0\0ab/p", 8, 0);
	scan_expect(RELOC_BINARY, "/p/p\0\0z/p\0", 10, "/p", "\0\0\0\0\0\0z\0\0\0", 10, 0);
	scan_expect(RELOC_BINARY, "aaa\0", 4, "aa", "a\0\0\0", 4, 0);
	scan_expect(RELOC_BINARY, "q\nx/p\n\0", 7, "/p", "q\nx\n\0\0\0", 7, 0);
}

/* A slot of 2 * 4 + 3 - 1 = 10 bytes for the two occurrences of "/abc": 5 bytes each. */
static void test_slot(void)
{
	const char data[] = "L=/abc:/abc\0\0\0R";
	struct reloc *r = NULL;
	uint8_t *neutral = NULL;
	size_t nlen = 0;

	CHECK(reloc_scan((const uint8_t *)data, sizeof(data) - 1, "/abc", 4, RELOC_BINARY, 0,
	                 &neutral, &nlen, &r, NULL) == 0);
	CHECK(reloc_fits(r, 5) == 0 && reloc_fits(r, 6) == -ENOSPC);
	if (r) {
		check_serve(r, neutral, nlen, "/abcd", (const uint8_t *)"L=/abcd:/abcd\0R", 15);
		check_serve(r, neutral, nlen, "/", (const uint8_t *)"L=/:/\0\0\0\0\0\0\0\0\0R", 15);
	}
	free(neutral);
	reloc_free(r);

	/* The placeholder conda-meta records bounds the slot below the NUL run. */
	CHECK(reloc_scan((const uint8_t *)data, sizeof(data) - 1, "/abc", 4, RELOC_BINARY, 4,
	                 &neutral, &nlen, &r, NULL) == 0);
	CHECK(reloc_fits(r, 4) == 0 && reloc_fits(r, 5) == -ENOSPC);
	free(neutral);
	reloc_free(r);

	/* One shorter than the prefix cannot describe the file: the file's own prefix fits. */
	CHECK(reloc_scan((const uint8_t *)data, sizeof(data) - 1, "/abc", 4, RELOC_BINARY, 2,
	                 &neutral, &nlen, &r, NULL) == 0);
	CHECK(reloc_fits(r, 4) == 0);
	if (r)
		check_serve(r, neutral, nlen, "/abc", (const uint8_t *)data, sizeof(data) - 1);
	free(neutral);
	reloc_free(r);
}

/* ---- random files ---- */

static void random_prefix(char *p, size_t len, const char *alphabet)
{
	size_t an = strlen(alphabet);

	p[0] = '/';
	for (size_t i = 1; i < len; i++)
		p[i] = alphabet[rnd_below(an)];
	p[len] = 0;
}

/* Random bytes from a small alphabet (so near-misses and overlaps are common) with the
 * prefix put in at random places, and NUL runs like conda's padding. */
static void test_random_files(void)
{
	char a[40], b[80];

	for (int iter = 0; iter < 3000; iter++) {
		enum reloc_mode mode = iter % 2 ? RELOC_BINARY : RELOC_TEXT;
		const char *alpha = mode == RELOC_TEXT ? "ab/\n" : "ab/\n\0\0";
		size_t alen = 1 + rnd_below(iter % 10 == 0 ? 30 : 5), items = rnd_below(12);
		struct bytes d = {0};

		random_prefix(a, alen, "ab/");
		random_prefix(b, 1 + rnd_below(2 * alen + 2), "xyz/");
		for (size_t i = 0; i < items; i++) {
			switch (rnd_below(4)) {
			case 0:
				put_str(&d, a);
				break;
			case 1:
				put_rep(&d, 0, mode == RELOC_BINARY ? 1 + rnd_below(40) : 0);
				break;
			default:
				for (size_t k = rnd_below(10); k > 0; k--)
					put(&d, alpha + rnd_below(mode == RELOC_TEXT ? 4 : 6), 1);
			}
		}
		check_file(mode, d.p, d.n, a, b);
		free(d.p);
	}
}

/*
 * A package file holds the placeholder; conda installs it at A by the reference rule.
 * Installs at prefixes of different lengths must store the same neutral content and the
 * same record, and each record serves every install and the package file itself.
 */
static void test_conda_installs(void)
{
	char ph[65], pfx[3][64];

	memset(ph, 0, sizeof(ph));
	snprintf(ph, sizeof(ph), "%s", "/OPT/CONDA-BLD/_H_ENV_PLACEHOLD");
	memset(ph + strlen(ph), '_', 64 - strlen(ph));
	for (int iter = 0; iter < 600; iter++) {
		enum reloc_mode mode = iter % 3 ? RELOC_BINARY : RELOC_TEXT;
		struct bytes tmpl = {0}, inst[3] = {{0}};
		struct reloc *r[3] = {NULL};
		uint8_t *neutral[3] = {NULL}, *blob[3] = {NULL};
		size_t nlen[3] = {0}, blen[3] = {0};
		size_t items = 1 + rnd_below(10);
		size_t placeholder_len = iter % 2 ? 64 : 0;

		/* Content bytes never hold '/', prefixes hold one, at their start: every '/'
		 * in an install starts an inserted prefix, so no occurrence is accidental. */
		for (size_t i = 0; i < items; i++) {
			if (rnd_below(3) == 0) {
				put_str(&tmpl, ph);
			} else if (mode == RELOC_BINARY && rnd_below(2)) {
				put_rep(&tmpl, 0, 1 + rnd_below(8));
			} else {
				for (size_t k = rnd_below(12); k > 0; k--) {
					uint8_t c = mode == RELOC_TEXT
					                    ? (uint8_t) "abc:.\n "[rnd_below(7)]
					                    : (uint8_t)(1 + rnd_below(255));

					put(&tmpl, c == '/' ? "." : (const char *)&c, 1);
				}
			}
		}
		if (mode == RELOC_BINARY && rnd_below(4))
			put_rep(&tmpl, 0, 1);
		for (int k = 0; k < 3; k++) {
			random_prefix(pfx[k], 1 + rnd_below(63),
			              "abcdefghijklmnopqrstuvwxyz0123456789._-");
			CHECK(ref_replace(mode, tmpl.p, tmpl.n, ph, pfx[k], &inst[k]) == 0);
			CHECK(reloc_scan(inst[k].p, inst[k].n, pfx[k], strlen(pfx[k]), mode,
			                 placeholder_len, &neutral[k], &nlen[k], &r[k], NULL) == 0);
			if (r[k])
				CHECK(reloc_encode(r[k], &blob[k], &blen[k]) == 0);
		}
		for (int k = 1; k < 3; k++) {
			CHECK((r[k] == NULL) == (r[0] == NULL));
			CHECK(nlen[k] == nlen[0] &&
			      (nlen[0] == 0 || memcmp(neutral[k], neutral[0], nlen[0]) == 0));
			CHECK(blen[k] == blen[0] &&
			      (blen[0] == 0 || memcmp(blob[k], blob[0], blen[0]) == 0));
		}
		for (int k = 0; k < 3 && r[k]; k++) {
			check_serve(r[k], neutral[k], nlen[k], pfx[k], inst[k].p, inst[k].n);
			check_serve(r[k], neutral[k], nlen[k], pfx[(k + 1) % 3],
			            inst[(k + 1) % 3].p, inst[(k + 1) % 3].n);
			check_serve(r[k], neutral[k], nlen[k], ph, tmpl.p, tmpl.n);
		}
		if (mode == RELOC_BINARY && r[0]) {
			struct bytes scratch = {0};
			char too_long[80];

			memset(too_long, 'z', 65);
			too_long[0] = '/';
			too_long[65] = 0;
			if (placeholder_len)
				CHECK(reloc_fits(r[0], 65) == -ENOSPC);
			else
				CHECK(reloc_fits(r[0], 65) ==
				      ref_binary(inst[0].p, inst[0].n, pfx[0], too_long, &scratch));
			free(scratch.p);
		}
		for (int k = 0; k < 3; k++) {
			free(inst[k].p);
			free(neutral[k]);
			free(blob[k]);
			reloc_free(r[k]);
		}
		free(tmpl.p);
	}
}

/* ---- large files and huge offsets ---- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		p[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

/* Where the big file's k-th string starts: in every tenth, at a varying page offset. */
static size_t big_at(size_t len, int k)
{
	return len / 10 * (size_t)k + 10000 + (size_t)k * 4090;
}

/* A 64 MiB binary with the prefix in ten strings: reading 4 KiB in the middle asks for
 * little more than 4 KiB of neutral content, in at most two calls per string end crossed. */
static void test_large(void)
{
	const size_t len = 64u << 20;
	const char *p = "/opt/conda/envs/build_env_placehold_placehold";
	size_t plen = strlen(p), nlen = 0, n;
	uint8_t *d = xmalloc(len), *neutral = NULL, *got = xmalloc(8192);
	struct reloc *r = NULL;

	for (size_t i = 0; i < len; i++)
		d[i] = (uint8_t)(i % 251 == 0 ? 0 : 'a' + i % 23);
	for (int k = 0; k < 10; k++) {
		size_t at = big_at(len, k);

		d[at - 1] = 0;
		memcpy(d + at, p, plen);
		memcpy(d + at + plen, "/lib", 4);
		memset(d + at + plen + 4, 0, 200);
	}
	CHECK(reloc_scan(d, len, p, plen, RELOC_BINARY, 0, &neutral, &nlen, &r, NULL) == 0);
	CHECK(r && nlen == len);
	for (int k = 0; r && k < 10; k++) {
		size_t at = big_at(len, k);
		struct src s = {neutral, nlen, 0, 0, false};
		size_t off = at - 2048 + (size_t)k * 97;

		CHECK(reloc_read(r, nlen, p, plen, off, 4096, got, &n, mem_src, &s) == 0);
		CHECK(n == 4096 && memcmp(got, d + off, n) == 0);
		CHECK(s.calls <= 2 && s.bytes <= 4096 + 200);
	}
	free(neutral);
	reloc_free(r);

	/* The same as text: one call of at most 4 KiB. */
	CHECK(reloc_scan(d, len, p, plen, RELOC_TEXT, 0, &neutral, &nlen, &r, NULL) == 0);
	CHECK(r && reloc_text_inserts(r) == 10 && nlen == len - 10 * plen);
	if (r) {
		struct src s = {neutral, nlen, 0, 0, false};
		size_t off = big_at(len, 5) - 1000;

		CHECK(reloc_read(r, nlen, p, plen, off, 4096, got, &n, mem_src, &s) == 0);
		CHECK(n == 4096 && memcmp(got, d + off, n) == 0);
		CHECK(s.calls == 1 && s.bytes <= 4096);
	}
	free(neutral);
	reloc_free(r);
	free(d);
	free(got);
}

/* Records with offsets near 2^63, served from content made up from its offsets. */
static void test_huge_offsets(void)
{
	const char *p = "/huge/prefix";
	const size_t plen = strlen(p);
	const uint64_t x[3] = {1ull << 40, 1ull << 62, (1ull << 63) + 5}, nlen = (1ull << 63) + 100;
	uint8_t blob[64], *again = NULL, got[64], want[64];
	size_t len = 2, n, alen = 0;
	struct reloc *r = NULL;
	struct src s = {NULL, nlen, 0, 0, false};

	blob[0] = 1;
	blob[1] = RELOC_TEXT;
	len += put_varint(blob + len, 3);
	len += put_varint(blob + len, x[0]);
	len += put_varint(blob + len, x[1] - x[0]);
	len += put_varint(blob + len, x[2] - x[1]);
	CHECK(reloc_decode(blob, len, &r) == 0);
	if (r) {
		CHECK(reloc_encode(r, &again, &alen) == 0 && alen == len &&
		      memcmp(again, blob, len) == 0);
		for (int k = 0; k < 3; k++) {
			uint64_t o = x[k] + (uint64_t)k * plen - 3;

			for (int i = 0; i < 3; i++)
				want[i] = pattern(x[k] - 3 + (uint64_t)i);
			memcpy(want + 3, p, plen);
			for (int i = 0; i < 3; i++)
				want[3 + plen + (size_t)i] = pattern(x[k] + (uint64_t)i);
			CHECK(reloc_read(r, nlen, p, plen, o, plen + 6, got, &n, pattern_src, &s) ==
			      0);
			CHECK(n == plen + 6 && memcmp(got, want, n) == 0);
		}
		CHECK(reloc_read(r, nlen, p, plen, nlen + 3 * plen - 5, 64, got, &n, pattern_src,
		                 &s) == 0);
		CHECK(n == 5 && got[0] == pattern(nlen - 5) && got[4] == pattern(nlen - 1));
		CHECK(reloc_read(r, x[2] - 1, p, plen, 0, 1, got, &n, pattern_src, &s) == -EBADMSG);
		CHECK(reloc_read(r, UINT64_MAX - 10, p, plen, 0, 1, got, &n, pattern_src, &s) ==
		      -EOVERFLOW);
	}
	reloc_free(r);
	free(again);
	r = NULL;
	again = NULL;

	/* Binary: one string with inserts at 2^50 and 2^50 + 7, ending at 2^50 + 10. */
	{
		const uint64_t x0 = 1ull << 50, e = x0 + 10, cap = 64, blen = 1ull << 51;
		uint64_t o = x0 - 2;
		size_t w = 0;

		len = 2;
		blob[1] = RELOC_BINARY;
		len += put_varint(blob + len, 1);
		len += put_varint(blob + len, 2);
		len += put_varint(blob + len, x0);
		len += put_varint(blob + len, 7);
		len += put_varint(blob + len, 3);
		len += put_varint(blob + len, cap);
		CHECK(reloc_decode(blob, len, &r) == 0);
		CHECK(reloc_fits(r, 32) == 0 && reloc_fits(r, 33) == -ENOSPC);
		if (r) {
			CHECK(reloc_encode(r, &again, &alen) == 0 && alen == len &&
			      memcmp(again, blob, len) == 0);
			want[w++] = pattern(x0 - 2);
			want[w++] = pattern(x0 - 1);
			memcpy(want + w, p, plen);
			w += plen;
			for (int i = 0; i < 7; i++)
				want[w++] = pattern(x0 + (uint64_t)i);
			memcpy(want + w, p, plen);
			w += plen;
			for (int i = 0; i < 3; i++)
				want[w++] = pattern(x0 + 7 + (uint64_t)i);
			for (int i = 0; i < 4; i++)
				want[w++] = pattern(e + 2 * plen + (uint64_t)i);
			s = (struct src){NULL, blen, 0, 0, false};
			CHECK(reloc_read(r, blen, p, plen, o, w, got, &n, pattern_src, &s) == 0);
			CHECK(n == w && memcmp(got, want, w) == 0);
			CHECK(s.calls == 2 && s.bytes == w - 2 * plen && !s.out_of_range);
			CHECK(reloc_read(r, e + cap, p, plen, o, w, got, &n, pattern_src, &s) ==
			      -EBADMSG);
		}
		reloc_free(r);
		free(again);
	}
}

/* ---- the decoder ---- */

static void check_blob(const uint8_t *blob, size_t len)
{
	struct reloc *r = NULL;
	uint8_t *again = NULL, buf[256];
	size_t alen = 0, n;
	int rc = reloc_decode(blob, len, &r);

	CHECK(rc == 0 || rc == -EBADMSG);
	if (rc)
		return;
	/* One record, one encoding: what decodes re-encodes to the same bytes. */
	CHECK(reloc_encode(r, &again, &alen) == 0 && alen == len && memcmp(again, blob, len) == 0);
	for (int k = 0; k < 4; k++) {
		struct src s = {NULL, rnd_below(600), 0, 0, false};
		int rrc = reloc_read(r, s.n, "/fz", rnd_below(4), rnd_below(700), rnd_below(256),
		                     buf, &n, pattern_src, &s);

		CHECK(rrc == 0 || rrc == -EBADMSG || rrc == -ENOSPC);
		CHECK(!s.out_of_range);
	}
	free(again);
	reloc_free(r);
}

static void test_decode_malformed(void)
{
	static const struct {
		const char *blob;
		size_t len;
	} bad[] = {
	        {"", 0},
	        {"\1", 1},
	        {"\2\1\1\0", 4},     /* unknown version */
	        {"\1\0\1\0", 4},     /* mode none */
	        {"\1\3\1\0", 4},     /* unknown mode */
	        {"\1\1\0", 3},       /* no inserts */
	        {"\1\1\1", 3},       /* count with nothing after */
	        {"\1\1\2\5", 4},     /* truncated */
	        {"\1\1\1\5\0", 5},   /* trailing byte */
	        {"\1\1\1\x85\0", 5}, /* overlong varint */
	        {"\1\1\1\x80", 4},   /* varint cut short */
	        {"\1\1\1\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 13},   /* past 64 bits */
	        {"\1\1\2\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\1", 14}, /* sum past 2^64 */
	        {"\1\1\x85\x80\x80\x80\x10", 7},                          /* count past 2^32 */
	        {"\1\2\0", 3},                                            /* no strings */
	        {"\1\2\1\0\0\0\0", 7}, /* string without inserts */
	        {"\1\2\1\1\0\0", 6},   /* string without capacity */
	        {"\1\2\2\1\0\0\0", 7}, /* second string missing */
	        {"\1\2\1\1\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 16}, /* end + cap = max */
	};
	const uint8_t good[] = {1, 2, 2, 2, 5, 3, 4, 10, 1, 9, 0, 8};
	struct reloc *r = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = NULL;
		CHECK(reloc_decode((const uint8_t *)bad[i].blob, bad[i].len, &r) == -EBADMSG);
		CHECK(r == NULL);
		check_blob((const uint8_t *)bad[i].blob, bad[i].len);
	}
	CHECK(reloc_decode(good, sizeof(good), &r) == 0);
	reloc_free(r);
	for (size_t l = 0; l < sizeof(good); l++)
		CHECK(reloc_decode(good, l, &r) == -EBADMSG);

	/* Random blobs, most with a valid header so the fuzzing reaches past it; every
	 * truncation and random damage of real records. */
	for (int iter = 0; iter < 100000; iter++) {
		uint8_t blob[48];
		size_t len = rnd_below(sizeof(blob) + 1);

		for (size_t i = 0; i < len; i++)
			blob[i] = (uint8_t)(rnd_below(3) ? rnd_below(20) : rnd());
		if (len >= 2 && rnd_below(4)) {
			blob[0] = 1;
			blob[1] = (uint8_t)(1 + rnd_below(2));
		}
		check_blob(blob, len);
	}
	for (int iter = 0; iter < 300; iter++) {
		struct bytes d = {0};
		struct reloc *sr = NULL;
		uint8_t *neutral = NULL, *blob = NULL;
		size_t nlen = 0, blen = 0;
		enum reloc_mode mode = iter % 2 ? RELOC_BINARY : RELOC_TEXT;

		for (size_t k = rnd_below(40); k > 0; k--)
			put(&d, rnd_below(3) ? "/p" : mode == RELOC_TEXT ? "ab" : "\0\0", 2);
		put(&d, "\0", 1);
		if (reloc_scan(d.p, d.n, "/p", 2, mode, 0, &neutral, &nlen, &sr, NULL) == 0 && sr &&
		    reloc_encode(sr, &blob, &blen) == 0) {
			for (size_t l = 0; l <= blen; l++)
				check_blob(blob, l);
			for (int k = 0; k < 50; k++) {
				size_t at = rnd_below(blen);
				uint8_t old = blob[at];

				blob[at] = (uint8_t)rnd();
				check_blob(blob, blen);
				blob[at] = old;
			}
		}
		free(blob);
		free(neutral);
		reloc_free(sr);
		free(d.p);
	}
}

/* ---- store_relocate: served bytes from one prefix to another ---- */

struct sink {
	struct bytes b;
	unsigned calls;
};

static int to_sink(void *ctx, const void *buf, size_t n)
{
	struct sink *k = ctx;

	k->calls++;
	put(&k->b, buf, n);
	return 0;
}

/* A file served at one prefix, relocated to another, is what conda writes at the other
 * (the reference), in the mode guessed from its bytes; a slot too short is -ENOSPC before
 * any byte goes out; a .pyc and a file without the prefix go out as they are. */
static void test_relocate(void)
{
	for (int iter = 0; iter < 400; iter++) {
		enum reloc_mode mode = iter % 2 ? RELOC_BINARY : RELOC_TEXT;
		char from[64], to[64], ph[] = "/PLACEHOLDER";
		struct bytes tmpl = {0}, inst = {0}, want = {0};
		struct sink got = {{0}, 0};
		struct cfs_err err = {{0}};
		int r, wr;

		for (size_t i = 1 + rnd_below(8); i > 0; i--) {
			if (rnd_below(3) == 0)
				put_str(&tmpl, ph);
			else if (mode == RELOC_BINARY && rnd_below(2))
				put_rep(&tmpl, 0, 1 + rnd_below(40));
			else
				put_str(&tmpl, mode == RELOC_TEXT ? "ab:c\n" : "x\x01y");
		}
		/* The guess sees a NUL in every binary file. */
		if (mode == RELOC_BINARY)
			put_rep(&tmpl, 0, 1);
		random_prefix(from, 2 + rnd_below(29), "abcdefgh");
		random_prefix(to, 1 + rnd_below(30), "ijklmnop");
		/* An install at from needs from to fit first. */
		if (ref_replace(mode, tmpl.p, tmpl.n, ph, from, &inst)) {
			free(tmpl.p);
			free(inst.p);
			continue;
		}
		wr = ref_replace(mode, tmpl.p, tmpl.n, ph, to, &want);
		r = store_relocate("lib/f", inst.p, inst.n, from, to, to_sink, &got, &err);
		CHECK(r == wr);
		if (r == 0)
			CHECK(got.b.n == want.n &&
			      (!want.n || memcmp(got.b.p, want.p, want.n) == 0));
		else
			CHECK(got.calls == 0 && strstr(err.msg, "lib/f") && strstr(err.msg, to));
		free(got.b.p);
		got = (struct sink){{0}, 0};
		CHECK(store_relocate("lib/f.pyc", inst.p, inst.n, from, to, to_sink, &got, NULL) ==
		      0);
		CHECK(got.b.n == inst.n && (!inst.n || memcmp(got.b.p, inst.p, inst.n) == 0));
		free(got.b.p);
		got = (struct sink){{0}, 0};
		CHECK(store_relocate("lib/f", tmpl.p, tmpl.n, from, to, to_sink, &got, NULL) == 0);
		CHECK(got.b.n == tmpl.n && (!tmpl.n || memcmp(got.b.p, tmpl.p, tmpl.n) == 0));
		free(got.b.p);
		free(tmpl.p);
		free(inst.p);
		free(want.p);
	}
}

/* ---- records read piecewise (reloc_open) ---- */

/* An encoded record as reloc_open's source, counting what is taken from it. */
struct blob_src {
	uint8_t *p;
	uint64_t n;
	uint64_t bytes; /* read since the test reset it */
	unsigned reads, dones;
	int fail; /* every read fails with it, when not 0 */
	bool out_of_range;
};

static int blob_read(void *ctx, int64_t key, uint64_t off, size_t len, uint8_t *buf)
{
	struct blob_src *b = ctx;

	CHECK(key == 42);
	b->reads++;
	b->bytes += len;
	if (b->fail)
		return b->fail;
	if (off > b->n || len > b->n - off) {
		b->out_of_range = true;
		return -EIO;
	}
	memcpy(buf, b->p + off, len);
	return 0;
}

static void blob_done(void *ctx)
{
	((struct blob_src *)ctx)->dones++;
}

static int open_src(struct blob_src *b, struct reloc **ret)
{
	struct reloc_blob rb = {blob_read, blob_done, b, 42, b->n};

	return reloc_open(&rb, ret);
}

/*
 * data scanned for a gives a record of many inserts; opened through a source, it serves
 * random ranges under a and under b as the reference does, each read taking from the
 * record only a small part of it (the stretch from the mark before the range), and the
 * source is told it is done after every read.
 */
static void check_windowed(enum reloc_mode mode, const uint8_t *data, size_t len, const char *a,
                           const char *b, uint32_t want_inserts)
{
	struct reloc *r = NULL, *ro = NULL;
	uint8_t *neutral = NULL, *got = xmalloc(70000);
	size_t nlen = 0, n;
	struct blob_src bs = {0};
	struct bytes want = {0};
	bool same = true, small = true, told = true;

	CHECK(reloc_scan(data, len, a, strlen(a), mode, 0, &neutral, &nlen, &r, NULL) == 0);
	CHECK(r && reloc_encode(r, &bs.p, &bs.n) == 0);
	CHECK(bs.n > 16 * 4096);
	CHECK(open_src(&bs, &ro) == 0 && ro && bs.dones == 1);
	CHECK(ro && reloc_text_inserts(ro) == reloc_text_inserts(r));
	CHECK(ro && reloc_fits(ro, strlen(b)) == reloc_fits(r, strlen(b)));
	if (!ro)
		goto out;
	CHECK(mode == RELOC_BINARY || reloc_text_inserts(ro) == want_inserts);
	for (int pass = 0; pass < 2; pass++) {
		const char *p = pass ? b : a;
		struct src s = {neutral, nlen, 0, 0, false};

		if (pass) {
			want = (struct bytes){0};
			CHECK(ref_replace(mode, data, len, a, b, &want) == 0);
		} else
			want = (struct bytes){(uint8_t *)data, len, len};
		for (int k = 0; k < 300; k++) {
			size_t o = rnd_below(want.n + 2), l = rnd_below(k % 3 ? 5000 : 70000), exp;
			unsigned dones = bs.dones;

			exp = o >= want.n ? 0 : (want.n - o < l ? want.n - o : l);
			bs.bytes = 0;
			if (reloc_read(ro, nlen, p, strlen(p), o, l, got, &n, mem_src, &s) != 0 ||
			    n != exp || (n && memcmp(got, want.p + o, n) != 0))
				same = false;
			/* Marks every 2 * ninserts / 256 inserts at most, of a few bytes each,
			 * and the windows around them. */
			if (bs.bytes > bs.n / 32 + 3 * 4096 + (uint64_t)l)
				small = false;
			if (bs.dones != dones + (bs.bytes ? 1 : 0))
				told = false;
		}
		CHECK(!s.out_of_range);
		if (pass)
			free(want.p);
	}
	CHECK(same);
	CHECK(small);
	CHECK(told);
	CHECK(!bs.out_of_range);

	/* A failing source fails the read with its error. */
	bs.fail = -EIO;
	{
		struct src s = {neutral, nlen, 0, 0, false};

		CHECK(reloc_read(ro, nlen, a, strlen(a), len / 2, 4096, got, &n, mem_src, &s) ==
		      -EIO);
	}
	bs.fail = 0;
	/* A record that changes under its reader (damage after it was opened) gives wrong
	 * bytes or -EBADMSG, never a read outside the content or the buffer. */
	for (int k = 0; k < 200; k++) {
		struct src s = {neutral, nlen, 0, 0, false};
		size_t at = 2 + rnd_below(bs.n - 2);
		uint8_t old = bs.p[at];
		int rc;

		bs.p[at] = (uint8_t)rnd();
		rc = reloc_read(ro, nlen, b, strlen(b), rnd_below(len), 1 + rnd_below(9000), got,
		                &n, mem_src, &s);
		CHECK(rc == 0 || rc == -EBADMSG);
		CHECK(!s.out_of_range);
		bs.p[at] = old;
	}
out:
	reloc_free(ro);
	reloc_free(r);
	free(bs.p);
	free(neutral);
	free(got);
}

static void test_windowed(void)
{
	const char *a = "/opt/conda/envs/windowed", *b = "/x/y";
	struct bytes d = {0};
	uint32_t copies = 0;

	/* Text: nothing but copies of the prefix, with 0 to 2 bytes between. */
	for (; d.n < (6u << 20); copies++) {
		put_str(&d, a);
		for (size_t k = rnd_below(3); k > 0; k--)
			put(&d, "ab\n" + rnd_below(3), 1);
	}
	check_windowed(RELOC_TEXT, d.p, d.n, a, b, copies);
	/* Binary: many strings, and one string of many copies, and padding to share. */
	d.n = 0;
	for (int i = 0; i < 60000; i++) {
		put_str(&d, a);
		put_str(&d, i % 7 ? "/lib" : "/share/x");
		put_rep(&d, 0, 1 + rnd_below(40));
	}
	for (int i = 0; i < 50000; i++)
		put_str(&d, a);
	put_rep(&d, 0, 50000 * (strlen(a) - strlen(b)) + 1);
	put_str(&d, "tail");
	check_windowed(RELOC_BINARY, d.p, d.n, a, b, 0);
	free(d.p);
}

/* The memory a record opened from a source holds does not grow with the record (R6): a
 * file of four million copies of a short prefix. */
static void test_windowed_memory(void)
{
	const char *a = "/p";
	const size_t copies = 4u << 20;
	struct bytes d = {0};
	struct reloc *r = NULL, *ro = NULL;
	uint8_t *neutral = NULL;
	size_t nlen = 0, before, after;
	struct blob_src bs = {0};

	for (size_t i = 0; i < copies; i++) {
		put_str(&d, a);
		put(&d, i % 3 ? "\n" : "x", 1);
	}
	CHECK(reloc_scan(d.p, d.n, a, 2, RELOC_TEXT, 0, &neutral, &nlen, &r, NULL) == 0);
	CHECK(r && reloc_encode(r, &bs.p, &bs.n) == 0 && bs.n > copies);
	reloc_free(r);
	before = mallinfo2().uordblks;
	CHECK(open_src(&bs, &ro) == 0);
	after = mallinfo2().uordblks;
	CHECK(after - before < 64 * 1024);
	if (ro) {
		struct src s = {neutral, nlen, 0, 0, false};
		uint8_t got[64];
		size_t n, o = d.n / 2 + 5;

		/* Output = neutral + inserts: the file itself under its own prefix. */
		CHECK(reloc_read(ro, nlen, a, 2, o, sizeof(got), got, &n, mem_src, &s) == 0);
		CHECK(n == sizeof(got) && memcmp(got, d.p + o, n) == 0);
	}
	reloc_free(ro);
	free(bs.p);
	free(neutral);
	free(d.p);
}

/* ---- pyc records (format 2): inserts plus 32-bit fields that grow with the prefix ---- */

static void test_pyc_records(void)
{
	static const uint64_t ins[] = {20, 30, 30};
	static const struct reloc_field fields[] = {{12, 3}, {16, 2}};
	const char *p = "/abc";
	uint8_t neutral[40], want[64], got[64], *blob = NULL;
	struct src s = {neutral, sizeof(neutral), 0, 0, false};
	struct reloc *r = NULL, *r2 = NULL;
	struct reloc_field many[1200];
	size_t n = 0, w = 0, blen = 0;

	for (size_t i = 0; i < sizeof(neutral); i++)
		neutral[i] = (uint8_t)('A' + i % 26);
	memcpy(neutral + 12, "\x64\0\0\0\xff\xff\xff\xff", 8); /* 100, then 2^32 - 1 */
	for (size_t i = 0, k = 0; i < sizeof(neutral); i++) {
		while (k < 3 && ins[k] == i) {
			memcpy(want + w, p, 4);
			w += 4;
			k++;
		}
		want[w++] = neutral[i];
	}
	memcpy(want + 12, "\x70\0\0\0\x07\0\0\0", 8); /* 100 + 3 * 4; wraps to 7 */
	CHECK(reloc_make_pyc(ins, 3, fields, 2, &r) == 0);
	CHECK(r && reloc_text_inserts(r) == 3 && reloc_fits(r, 4096) == 0);
	CHECK(reloc_read(r, sizeof(neutral), p, 4, 0, sizeof(got), got, &n, mem_src, &s) == 0);
	CHECK(n == w && memcmp(got, want, w) == 0);
	/* Every slice, fields cut by its edges too. */
	for (size_t off = 0; off < w; off++)
		for (size_t len = 1; off + len <= w; len++) {
			CHECK(reloc_read(r, sizeof(neutral), p, 4, off, len, got, &n, mem_src,
			                 &s) == 0 &&
			      n == len && memcmp(got, want + off, len) == 0);
		}
	/* The encoding decodes to the same record; a content shorter than a field is refused. */
	CHECK(reloc_encode(r, &blob, &blen) == 0 && blob[0] == 2 && blob[1] == 3);
	CHECK(reloc_decode(blob, blen, &r2) == 0);
	CHECK(reloc_read(r2, sizeof(neutral), p, 4, 0, sizeof(got), got, &n, mem_src, &s) == 0 &&
	      n == w && memcmp(got, want, w) == 0);
	CHECK(reloc_read(r2, 19, p, 4, 0, sizeof(got), got, &n, mem_src, &s) == -EBADMSG);
	free(blob);
	reloc_free(r);
	reloc_free(r2);

	/* No inserts: the fields alone. */
	r = NULL;
	CHECK(reloc_make_pyc(NULL, 0, fields, 1, &r) == 0 && reloc_text_inserts(r) == 0);
	CHECK(reloc_read(r, sizeof(neutral), p, 4, 0, sizeof(got), got, &n, mem_src, &s) == 0 &&
	      n == sizeof(neutral) && got[12] == 0x70 && memcmp(got + 16, neutral + 16, 24) == 0);
	reloc_free(r);

	/* An insert inside a field, unsorted input, a record past its bound. */
	r = NULL;
	CHECK(reloc_make_pyc((const uint64_t[]){14}, 1, fields, 1, &r) == -EBADMSG && !r);
	CHECK(reloc_make_pyc((const uint64_t[]){30, 20}, 2, fields, 1, &r) == -EINVAL);
	CHECK(reloc_make_pyc(NULL, 0, (const struct reloc_field[]){{16, 1}, {12, 1}}, 2, &r) ==
	      -EINVAL);
	for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		many[i] = (struct reloc_field){i * 1000, 300};
	CHECK(reloc_make_pyc(NULL, 0, many, sizeof(many) / sizeof(many[0]), &r) == -E2BIG);
	static const struct {
		const char *blob;
		size_t len;
	} bad[] = {
	        {"\2\3\1\x0c\1\1\x0e", 7},                /* insert inside the field */
	        {"\2\3\1\x0c", 4},                        /* field without k */
	        {"\2\3\1\x0c\1", 5},                      /* no insert count */
	        {"\2\3\2\x0c\1\0", 6},                    /* second field missing */
	        {"\2\3\0\0\5", 5},                        /* trailing byte */
	        {"\2\1\1\1\0", 5},                        /* format 2 of a text record */
	        {"\2\3\1\x0c\x80\x80\x80\x80\x10\0", 10}, /* k past 2^32 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = NULL;
		CHECK(reloc_decode((const uint8_t *)bad[i].blob, bad[i].len, &r) == -EBADMSG);
		CHECK(r == NULL);
	}
	CHECK(reloc_decode((const uint8_t *)"\2\3\1\x0c\1\0", 6, &r) == 0);
	reloc_free(r);
}

int main(void)
{
	const char *seed = getenv("RELOC_SEED");

	if (seed)
		rng = strtoull(seed, NULL, 0) | 1;
	printf("seed %llu\n", (unsigned long long)rng);
	test_mode_guess();
	test_shebang();
	test_conda_md_example();
	test_edges();
	test_slot();
	test_random_files();
	test_conda_installs();
	test_large();
	test_huge_offsets();
	test_decode_malformed();
	test_relocate();
	test_windowed();
	test_windowed_memory();
	test_pyc_records();
	return test_exit();
}
