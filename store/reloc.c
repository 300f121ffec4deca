// SPDX-License-Identifier: MIT
/*
 * Prefix relocation: reloc_scan takes the build prefix out of a file's bytes and records
 * where it was, in coordinates of the stored ("neutral") content, so neither the content nor
 * the record depends on the prefix the file was ingested from. reloc_read serves any byte
 * range of the file under another prefix from that record, asking the caller only for the
 * neutral bytes the range needs; reloc_encode/reloc_decode carry the record to the catalog.
 *
 * Invariants. A broken one serves wrong bytes, which is losing the file:
 * R1: reloc_read under the ingest prefix returns the original bytes, at every offset and
 *     length. So a binary slot never holds less than the file held (n * plen), whatever
 *     placeholder length conda-meta claims.
 * R2: reloc_read under another prefix returns what conda's own replacement would write
 *     (text: str.replace; binary: per NUL-terminated string, replace and take or give NULs
 *     after it), or -ENOSPC before any byte is read or written.
 * R3: neutral content and record do not depend on the ingest prefix: installs of one
 *     package at prefixes of different lengths store one object and equal records.
 * R4: the bytes a binary read takes out (n * |P| at a string's end e) are NULs scan put
 *     there and lie inside the NUL run after the string: capacity leaves its terminator
 *     and the next string alone (e + cap < next string's first insert, e + cap < size).
 * R5: reloc_decode returns only records that satisfy R4's ordering with no sum past
 *     UINT64_MAX; reloc_read checks the record against the neutral length before it reads.
 *     Anything else is -EBADMSG, never an access outside the caller's buffer.
 */
#include "reloc.h"

#include "err.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One NUL-terminated string of a binary file that held the prefix. */
struct reloc_str {
	uint64_t end;   /* neutral offset where its content ends, its NULs begin */
	uint64_t cap;   /* prefix bytes it may hold in all, keeping one NUL */
	uint32_t n;     /* occurrences: inserts [first, first + n) */
	uint32_t first; /* derived, not encoded */
};

struct reloc {
	enum reloc_mode mode; /* RELOC_TEXT or RELOC_BINARY */
	uint32_t ninserts;
	uint32_t nstrs;
	/* Binary: the longest prefix every slot holds (min of cap / n), so reloc_fits is O(1)
	 * and reloc_read can call it on every read. */
	uint64_t max_plen;
	uint64_t *inserts; /* neutral offsets, non-decreasing (adjacent occurrences repeat) */
	struct reloc_str *strs;
};

#define RELOC_FORMAT_VERSION 1

enum reloc_mode reloc_mode_guess(const char *relpath, const uint8_t *data, size_t len)
{
	/* Length-prefixed or checksummed formats: any rewrite corrupts them. */
	static const char *const never[] = {".pyc", ".pyo", ".whl", ".zip", ".egg", ".jar"};
	size_t n = relpath ? strlen(relpath) : 0;

	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
		size_t sn = strlen(never[i]);

		if (n >= sn && strcasecmp(relpath + n - sn, never[i]) == 0)
			return RELOC_NONE;
	}
	if (len >= 4 && memcmp(data, "PK\x03\x04", 4) == 0)
		return RELOC_NONE;
	if (len && memchr(data, 0, len))
		return RELOC_BINARY;
	return RELOC_TEXT;
}

void reloc_free(struct reloc *r)
{
	if (!r)
		return;
	free(r->inserts);
	free(r->strs);
	free(r);
}

uint32_t reloc_text_inserts(const struct reloc *r)
{
	return r && r->mode == RELOC_TEXT ? r->ninserts : 0;
}

int reloc_fits(const struct reloc *r, size_t plen)
{
	if (!r || r->mode != RELOC_BINARY)
		return 0;
	return plen <= r->max_plen ? 0 : -ENOSPC;
}

/* ---- scan ---- */

/* Grows *p (of *cap elements of size sz) to hold need elements; doubling keeps the
 * total copying O(final size). */
static int grow(void **p, size_t *cap, size_t need, size_t sz)
{
	size_t ncap = *cap ? *cap : 16, bytes;
	void *np;

	if (need <= *cap)
		return 0;
	while (ncap < need) {
		if (__builtin_mul_overflow(ncap, 2, &ncap))
			return -ENOMEM;
	}
	if (__builtin_mul_overflow(ncap, sz, &bytes))
		return -ENOMEM;
	np = realloc(*p, bytes);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

struct scan {
	uint64_t *ins;
	size_t nins, ins_cap;
	struct reloc_str *strs;
	size_t nstrs, strs_cap;
	uint8_t *out; /* neutral content, allocated at the first occurrence that counts */
	size_t w;     /* bytes of out written */
};

static int scan_insert(struct scan *s, struct cfs_err *err)
{
	/* reloc_text_inserts and the catalog count occurrences in 32 bits. */
	if (s->nins == UINT32_MAX)
		return err_set(err, -EOVERFLOW, "more than %u prefix occurrences", UINT32_MAX);
	if (grow((void **)&s->ins, &s->ins_cap, s->nins + 1, sizeof(*s->ins)))
		return err_set(err, -ENOMEM, "out of memory for prefix offsets");
	s->ins[s->nins++] = s->w;
	return 0;
}

/* Most files hold no prefix: the neutral copy is made only once one counts. */
static int scan_start(struct scan *s, size_t len, struct cfs_err *err)
{
	if (s->out)
		return 0;
	s->out = malloc(len);
	if (!s->out)
		return err_set(err, -ENOMEM, "out of memory for %zu bytes", len);
	return 0;
}

static void scan_copy(struct scan *s, const uint8_t *from, size_t n)
{
	memcpy(s->out + s->w, from, n);
	s->w += n;
}

static int scan_text(struct scan *s, const uint8_t *data, size_t len, const char *prefix,
                     size_t plen, struct cfs_err *err)
{
	size_t pos = 0;
	const uint8_t *hit;

	while ((hit = memmem(data + pos, len - pos, prefix, plen))) {
		size_t h = (size_t)(hit - data);
		int rc = scan_start(s, len, err);

		if (rc)
			return rc;
		scan_copy(s, data + pos, h - pos);
		rc = scan_insert(s, err);
		if (rc)
			return rc;
		pos = h + plen;
	}
	if (s->out)
		scan_copy(s, data + pos, len - pos);
	return 0;
}

/*
 * conda's rule: an occurrence counts only inside a string followed by a NUL. The string's
 * occurrences are taken out left to right and as many prefix lengths of NULs put after its
 * content, so every byte outside the string keeps its offset.
 */
static int scan_binary(struct scan *s, const uint8_t *data, size_t len, const char *prefix,
                       size_t plen, size_t placeholder_len, struct cfs_err *err)
{
	size_t pos = 0, copied = 0;
	const uint8_t *hit;

	while (pos < len && (hit = memmem(data + pos, len - pos, prefix, plen))) {
		size_t h = (size_t)(hit - data), t, u, n = 0;
		const uint8_t *nul = memchr(hit + plen, 0, len - h - plen);
		struct reloc_str *str;
		uint64_t cap, pcap;
		int rc;

		/* No NUL up to the end: neither this nor any later occurrence is in a C string. */
		if (!nul)
			break;
		t = (size_t)(nul - data);
		rc = scan_start(s, len, err);
		if (rc)
			return rc;
		scan_copy(s, data + copied, h - copied);
		/* The prefix holds no NUL, so every occurrence in [h, t) is in this string. */
		while (hit) {
			size_t q;

			rc = scan_insert(s, err);
			if (rc)
				return rc;
			n++;
			q = (size_t)(hit - data) + plen;
			hit = memmem(data + q, t - q, prefix, plen);
			scan_copy(s, data + q, (hit ? (size_t)(hit - data) : t) - q);
		}
		if (grow((void **)&s->strs, &s->strs_cap, s->nstrs + 1, sizeof(*s->strs)))
			return err_set(err, -ENOMEM, "out of memory for prefix slots");
		str = &s->strs[s->nstrs++];
		str->end = s->w;
		str->n = (uint32_t)n;
		str->first = (uint32_t)(s->nins - n);
		/* n * plen <= len: the occurrences do not overlap. */
		memset(s->out + s->w, 0, n * plen);
		s->w += n * plen;
		for (u = t; u < len && data[u] == 0; u++)
			;
		cap = n * plen + (u - t) - 1;
		/* 0 (unknown) is no bound. A placeholder shorter than the prefix cannot
		 * describe this file, and honouring it would refuse the file's own prefix (R1). */
		if (placeholder_len >= plen) {
			if (__builtin_mul_overflow(n, placeholder_len, &pcap))
				pcap = UINT64_MAX;
			if (pcap < cap)
				cap = pcap;
		}
		str->cap = cap;
		copied = t;
		pos = u;
	}
	if (s->out)
		scan_copy(s, data + copied, len - copied);
	return 0;
}

static uint64_t max_plen(const struct reloc *r)
{
	uint64_t m = UINT64_MAX;

	for (uint32_t j = 0; j < r->nstrs; j++) {
		/* n >= 1: scan records only strings with occurrences, decode rejects 0. */
		uint64_t q = r->strs[j].cap / r->strs[j].n;

		if (q < m)
			m = q;
	}
	return m;
}

int reloc_scan(const uint8_t *data, size_t len, const char *prefix, size_t plen,
               enum reloc_mode mode, size_t placeholder_len, uint8_t **ret_neutral,
               size_t *ret_neutral_len, struct reloc **ret, struct cfs_err *err)
{
	struct scan s = {0};
	struct reloc *r = NULL;
	int rc = 0;

	if (plen == 0 || memchr(prefix, 0, plen))
		return err_set(err, -EINVAL,
		               "prefix relocation: empty prefix or prefix with a NUL");
	if (mode != RELOC_NONE && mode != RELOC_TEXT && mode != RELOC_BINARY)
		return err_set(err, -EINVAL, "prefix relocation: unknown mode %d", (int)mode);
	if (mode == RELOC_NONE || len < plen)
		goto nothing;

	if (mode == RELOC_TEXT)
		rc = scan_text(&s, data, len, prefix, plen, err);
	else
		rc = scan_binary(&s, data, len, prefix, plen, placeholder_len, err);
	if (rc)
		goto out;
	if (s.nins == 0)
		goto nothing;

	r = calloc(1, sizeof(*r));
	if (!r) {
		rc = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	r->mode = mode;
	r->ninserts = (uint32_t)s.nins;
	r->nstrs = (uint32_t)s.nstrs;
	r->inserts = s.ins;
	r->strs = s.strs;
	s.ins = NULL;
	s.strs = NULL;
	r->max_plen = max_plen(r);
	*ret_neutral = s.out;
	*ret_neutral_len = s.w;
	*ret = r;
	s.out = NULL;
	goto out;

nothing:
	*ret_neutral = NULL;
	*ret_neutral_len = 0;
	*ret = NULL;
out:
	free(s.out);
	free(s.ins);
	free(s.strs);
	return rc;
}

/* ---- read ---- */

/*
 * The output is a sequence of spans. A span is neutral bytes [a, b) with the prefix put
 * in before each of its inserts x[0..m); it starts at output offset a, because before it
 * every insert has been paid back by a removal. Text: one span, the whole file. Binary:
 * span j < nstrs ends at string j's end, span j + 1 starts after the n * |P| NULs removed
 * there, and the last span runs to the end of the file.
 */
struct span {
	uint64_t a, b;
	const uint64_t *x;
	uint32_t m;
};

static struct span span_at(const struct reloc *r, uint64_t nlen, size_t plen, uint32_t j)
{
	struct span sp = {0, nlen, NULL, 0};

	if (r->mode == RELOC_TEXT) {
		sp.x = r->inserts;
		sp.m = r->ninserts;
		return sp;
	}
	if (j > 0)
		sp.a = r->strs[j - 1].end + (uint64_t)r->strs[j - 1].n * plen;
	if (j < r->nstrs) {
		sp.b = r->strs[j].end;
		sp.x = r->inserts + r->strs[j].first;
		sp.m = r->strs[j].n;
	}
	return sp;
}

/* How many of the span's prefixes end at or before output offset o. */
static uint32_t inserts_before(const struct span *sp, size_t plen, uint64_t o)
{
	uint32_t lo = 0, hi = sp->m;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (sp->x[mid] + ((uint64_t)mid + 1) * plen <= o)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The neutral offset of output offset o; inside a prefix, the neutral byte after it. */
static uint64_t neutral_at(const struct span *sp, size_t plen, uint64_t o)
{
	uint32_t i = inserts_before(sp, plen, o);
	uint64_t y = o - (uint64_t)i * plen;

	return i < sp->m && sp->x[i] < y ? sp->x[i] : y;
}

/*
 * Output [o, o + k) of one span into out. The neutral bytes it needs are contiguous, so
 * one callback reads them into the tail of out; they are then spread forward with the
 * prefixes put between. The writer never passes the reader: the gap between them is the
 * prefix bytes still to write.
 */
static int span_read(const struct span *sp, const char *prefix, size_t plen, uint64_t o, size_t k,
                     uint8_t *out, reloc_source_fn src, void *ctx)
{
	uint64_t y0 = neutral_at(sp, plen, o), y1 = neutral_at(sp, plen, o + k);
	size_t nb = (size_t)(y1 - y0), w = 0, rd = k - nb;
	uint32_t i = inserts_before(sp, plen, o);

	if (nb) {
		int rc = src(ctx, y0, nb, out + rd);

		if (rc)
			return rc < 0 ? rc : -EIO;
	}
	while (w < k) {
		uint64_t at = i < sp->m ? sp->x[i] + (uint64_t)i * plen : UINT64_MAX;
		size_t c;

		if (o >= at) {
			size_t po = (size_t)(o - at);

			c = plen - po < k - w ? plen - po : k - w;
			memcpy(out + w, prefix + po, c);
			if (po + c == plen)
				i++;
		} else {
			c = at - o < k - w ? (size_t)(at - o) : k - w;
			memmove(out + w, out + rd, c);
			rd += c;
		}
		w += c;
		o += c;
	}
	return 0;
}

/* Binary: the first span whose output reaches past o (the strings before it end there). */
static uint32_t first_span(const struct reloc *r, size_t plen, uint64_t o)
{
	uint32_t lo = 0, hi = r->nstrs;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct reloc_str *st = &r->strs[mid];

		if (st->end + (uint64_t)st->n * plen <= o)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int reloc_read(const struct reloc *r, uint64_t neutral_len, const char *prefix, size_t plen,
               uint64_t off, size_t len, uint8_t *buf, size_t *ret_n, reloc_source_fn src,
               void *ctx)
{
	uint64_t size = neutral_len, o = off;
	uint32_t j = 0, nspans;
	size_t n, w = 0;
	int rc;

	if (r->mode == RELOC_TEXT) {
		if (r->inserts[r->ninserts - 1] > neutral_len)
			return -EBADMSG;
		if (__builtin_mul_overflow((uint64_t)r->ninserts, plen, &size) ||
		    __builtin_add_overflow(size, neutral_len, &size))
			return -EOVERFLOW;
		nspans = 1;
	} else {
		const struct reloc_str *last = &r->strs[r->nstrs - 1];

		/* R4: the last string's NULs, terminator included, are inside the file. */
		if (last->end + last->cap >= neutral_len)
			return -EBADMSG;
		rc = reloc_fits(r, plen);
		if (rc)
			return rc;
		nspans = r->nstrs + 1;
		j = first_span(r, plen, off);
	}
	if (off >= size) {
		*ret_n = 0;
		return 0;
	}
	n = size - off < len ? (size_t)(size - off) : len;
	for (; w < n && j < nspans; j++) {
		struct span sp = span_at(r, neutral_len, plen, j);
		uint64_t end = sp.b + (uint64_t)sp.m * plen;
		/* o < end: no span is empty (R4), and the first one reaches past off. */
		size_t k = end - o < n - w ? (size_t)(end - o) : n - w;

		rc = span_read(&sp, prefix, plen, o, k, buf + w, src, ctx);
		if (rc)
			return rc;
		w += k;
		o += k;
	}
	*ret_n = n;
	return 0;
}

/* ---- encoding ----
 *
 * Version 1, all integers unsigned LEB128 varints in their shortest form:
 *   u8 version (1), u8 mode (1 text, 2 binary)
 *   text:   m >= 1, then m deltas: x[0], x[1] - x[0], ...
 *   binary: nstrs >= 1, then per string: n >= 1; x[first] - base, where base is 0 for
 *           the first string and prev.end + prev.cap + 1 after it (R4 holds by
 *           construction); n - 1 deltas between its inserts; end - x[last]; cap.
 * Deltas make a record small and keep offsets sorted by construction.
 */

struct wr {
	uint8_t *p; /* NULL: only count */
	size_t n;
};

static void put_varint(struct wr *w, uint64_t v)
{
	do {
		uint8_t b = (uint8_t)(v & 0x7f);

		v >>= 7;
		if (w->p)
			w->p[w->n] = b | (v ? 0x80 : 0);
		w->n++;
	} while (v);
}

static void put_record(struct wr *w, const struct reloc *r)
{
	uint64_t prev = 0;

	if (w->p) {
		w->p[0] = RELOC_FORMAT_VERSION;
		w->p[1] = (uint8_t)r->mode;
	}
	w->n = 2;
	if (r->mode == RELOC_TEXT) {
		put_varint(w, r->ninserts);
		for (uint32_t i = 0; i < r->ninserts; i++) {
			put_varint(w, r->inserts[i] - prev);
			prev = r->inserts[i];
		}
		return;
	}
	put_varint(w, r->nstrs);
	for (uint32_t j = 0; j < r->nstrs; j++) {
		const struct reloc_str *st = &r->strs[j];

		put_varint(w, st->n);
		for (uint32_t i = st->first; i < st->first + st->n; i++) {
			put_varint(w, r->inserts[i] - prev);
			prev = r->inserts[i];
		}
		put_varint(w, st->end - prev);
		put_varint(w, st->cap);
		prev = st->end + st->cap + 1;
	}
}

int reloc_encode(const struct reloc *r, uint8_t **ret, size_t *ret_len)
{
	struct wr w = {NULL, 0};

	put_record(&w, r);
	w.p = malloc(w.n);
	if (!w.p)
		return -ENOMEM;
	put_record(&w, r);
	*ret = w.p;
	*ret_len = w.n;
	return 0;
}

struct rd {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t get_varint(struct rd *d)
{
	uint64_t v = 0;

	for (unsigned shift = 0; d->p < d->end; shift += 7) {
		uint8_t b = *d->p++;

		/* Past 64 bits, or a longer form than needed: one record, one encoding. */
		if (shift == 63 && b > 1)
			break;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			if (b == 0 && shift)
				break;
			return v;
		}
	}
	d->bad = true;
	return 0;
}

static uint64_t get_add(struct rd *d, uint64_t base)
{
	uint64_t v = get_varint(d);

	if (__builtin_add_overflow(base, v, &v))
		d->bad = true;
	return v;
}

/* Parses blob into r. With r->inserts NULL it only validates and counts, so the arrays
 * can be allocated exactly for the second pass. */
static int parse(const uint8_t *blob, size_t len, struct reloc *r)
{
	bool fill = r->inserts != NULL;
	uint64_t prev = 0, count, total = 0;
	struct rd d;

	if (len < 2 || blob[0] != RELOC_FORMAT_VERSION)
		return -EBADMSG;
	d = (struct rd){blob + 2, blob + len, false};
	r->mode = blob[1];
	if (r->mode != RELOC_TEXT && r->mode != RELOC_BINARY)
		return -EBADMSG;
	count = get_varint(&d);
	/* Every insert, and every string, takes at least one byte more of the blob: this
	 * bounds what the second pass allocates by the blob's size. */
	if (d.bad || count == 0 || count > (uint64_t)(d.end - d.p) || count > UINT32_MAX)
		return -EBADMSG;
	if (r->mode == RELOC_TEXT) {
		for (uint64_t i = 0; i < count && !d.bad; i++) {
			prev = get_add(&d, prev);
			if (fill)
				r->inserts[i] = prev;
		}
		total = count;
	} else {
		r->nstrs = (uint32_t)count;
		for (uint32_t j = 0; j < count && !d.bad; j++) {
			uint64_t n = get_varint(&d), e, cap;

			if (n == 0 || n > (uint64_t)(d.end - d.p) || n > UINT32_MAX - total) {
				d.bad = true;
				break;
			}
			for (uint64_t i = 0; i < n && !d.bad; i++) {
				prev = get_add(&d, prev);
				if (fill)
					r->inserts[total + i] = prev;
			}
			e = get_add(&d, prev);
			cap = get_varint(&d);
			/* The next string's base is e + cap + 1; reads need e + cap < size. */
			if (__builtin_add_overflow(e, cap, &prev) || prev == UINT64_MAX)
				d.bad = true;
			prev++;
			if (fill)
				r->strs[j] =
				        (struct reloc_str){e, cap, (uint32_t)n, (uint32_t)total};
			total += n;
		}
	}
	if (d.bad || d.p != d.end)
		return -EBADMSG;
	r->ninserts = (uint32_t)total;
	return 0;
}

int reloc_decode(const uint8_t *blob, size_t len, struct reloc **ret)
{
	struct reloc *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = parse(blob, len, r);
	if (rc)
		goto out;
	r->inserts = calloc(r->ninserts, sizeof(*r->inserts));
	if (r->mode == RELOC_BINARY)
		r->strs = calloc(r->nstrs, sizeof(*r->strs));
	if (!r->inserts || (r->mode == RELOC_BINARY && !r->strs)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = parse(blob, len, r);
	if (rc)
		goto out;
	r->max_plen = max_plen(r);
	*ret = r;
	r = NULL;
out:
	reloc_free(r);
	return rc;
}

/* ---- relocating served bytes, for readers of a mount ---- */

#define RELOCATE_PIECE (1u << 20)

struct neutral_src {
	const uint8_t *p;
	size_t len;
};

static int neutral_read(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	struct neutral_src *s = ctx;

	if (off > s->len || len > s->len - off)
		return -EBADMSG;
	memcpy(buf, s->p + off, len);
	return 0;
}

/* The record reloc_scan makes of the served bytes is the one ingest made of the source,
 * with from in the place of the build prefix (R3), so reading it under to is conda's
 * relocation from one to the other (R2). */
int store_relocate(const char *relpath, const void *data, size_t len, const char *from,
                   const char *to, int (*out)(void *ctx, const void *buf, size_t n), void *ctx,
                   struct cfs_err *err)
{
	enum reloc_mode mode = reloc_mode_guess(relpath, data, len);
	size_t flen = strlen(from), tlen = strlen(to), nlen = 0;
	struct neutral_src src = {NULL, 0};
	uint8_t *neutral = NULL, *piece = NULL;
	struct reloc *r = NULL;
	uint64_t off = 0;
	int rc = 0;

	if (mode != RELOC_NONE && flen)
		rc = reloc_scan(data, len, from, flen, mode, 0, &neutral, &nlen, &r, err);
	if (rc)
		return rc;
	if (!r)
		return len ? out(ctx, data, len) : 0;
	if (reloc_fits(r, tlen)) {
		rc = err_set(err, -ENOSPC, "%s: prefix %s (%zu bytes) does not fit a binary slot",
		             relpath, to, tlen);
		goto out;
	}
	piece = malloc(RELOCATE_PIECE);
	if (!piece) {
		rc = -ENOMEM;
		goto out;
	}
	src = (struct neutral_src){neutral, nlen};
	for (;;) {
		size_t got = 0;

		rc = reloc_read(r, nlen, to, tlen, off, RELOCATE_PIECE, piece, &got, neutral_read,
		                &src);
		if (rc)
			rc = err_set(err, rc, "%s: cannot relocate: %s", relpath, strerror(-rc));
		if (rc || got == 0)
			break;
		rc = out(ctx, piece, got);
		if (rc)
			break;
		off += got;
	}
out:
	free(piece);
	free(neutral);
	reloc_free(r);
	return rc;
}
