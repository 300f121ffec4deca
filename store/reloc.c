// SPDX-License-Identifier: MIT
/*
 * Prefix relocation: reloc_scan takes the build prefix out of a file's bytes and records
 * where it was, in coordinates of the stored ("neutral") content, so neither the content nor
 * the record depends on the prefix the file was ingested from. reloc_read serves any byte
 * range of the file under another prefix from that record, asking the caller only for the
 * neutral bytes the range needs; reloc_encode/reloc_decode carry the record to the catalog,
 * and reloc_open reads a large one from there piece by piece.
 *
 * Invariants. A broken one serves wrong bytes, which is losing the file:
 * R1: reloc_read under the ingest prefix returns the original bytes, at every offset and
 *     length. So a binary slot never holds less than the file held (n * plen), whatever
 *     placeholder length conda-meta claims. A pyc record (store/pyc.c) is the one
 *     exception: its strings that held the prefix are served with 4-byte lengths, so
 *     under the ingest prefix it loads to the same objects but is not the same bytes.
 * R2: reloc_read under another prefix returns what conda's own replacement would write
 *     (text: str.replace; binary: per NUL-terminated string, replace and take or give NULs
 *     after it), or -ENOSPC before any byte is read or written.
 * R3: neutral content and record do not depend on the ingest prefix: installs of one
 *     package at prefixes of different lengths store one object and equal records.
 * R4: the bytes a binary read takes out (n * |P| at a string's end e) are NULs scan put
 *     there and lie inside the NUL run after the string: capacity leaves its terminator
 *     and the next string alone (e + cap < next string's first insert, e + cap < size).
 * R5: reloc_decode and reloc_open return only records that satisfy R4's ordering with no
 *     sum past UINT64_MAX; reloc_read checks the record against the neutral length before
 *     it reads, and every item it decodes as it goes (a record read piecewise is read
 *     again). Anything else is -EBADMSG, never an access outside the caller's buffer.
 * R6: what a record holds in memory does not grow with the file: a record opened from the
 *     catalog is kept whole only up to RELOC_WINDOW bytes, else read through a window that
 *     size, with at most RELOC_MARKS marks; it is never decoded into arrays.
 * R7: a pyc record is at most RELOC_PYC_MAX bytes, so it is always held whole; its fields
 *     lie inside the neutral content (checked by every read) and no insert falls strictly
 *     inside a field (checked by decode): patching one never writes outside it.
 */
#include "reloc.h"

#include "err.h"
#include "grow.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * A record is kept in memory in its encoded form (below), never decoded into arrays: a
 * file of nothing but copies of the prefix has as many inserts as it has copies, and the
 * daemon must not hold eight bytes for each of them per thread (R6). Reading starts at a
 * mark, the decoder's state saved right after an insert, and decodes forward from there.
 */
struct cursor {
	uint64_t pos;  /* the record offset of the next item */
	uint64_t prev; /* the base of the next delta */
	uint64_t dec;  /* inserts decoded */
	uint32_t left; /* binary: inserts of the current string still to decode */
	uint32_t n;    /* binary: the current string's inserts; 0 between strings */
	uint32_t strs; /* binary: strings decoded to their end */
	/* Where serving stands: the neutral offset reached (the last insert's, or past the
	 * NULs a string's end takes out), inserts served, and inserts paid back by those
	 * NULs. The output offset is y + (ins - paid) * plen. */
	uint64_t y, ins, paid;
};

/* Bytes of the record: all of it (len bytes from 0), or a window onto it. */
struct window {
	uint8_t *p;
	size_t cap;
	uint64_t off;
	size_t n;
};

struct reloc {
	enum reloc_mode mode; /* RELOC_TEXT or RELOC_BINARY */
	uint32_t ninserts;
	uint32_t nstrs;
	/* Binary: the longest prefix every slot holds (min of cap / n), so reloc_fits is O(1)
	 * and reloc_read can call it on every read. */
	uint64_t max_plen;
	/* Text: the last insert's neutral offset; binary: the last string's end + cap. The
	 * neutral content must reach past it (R5). */
	uint64_t last;
	uint64_t len;          /* of the encoded record */
	struct reloc_blob src; /* src.read NULL: the record is whole in win */
	struct window win;
	struct cursor *marks; /* marks[i] after insert i * step; marks[0] the start */
	size_t marks_cap;
	uint32_t nmarks, step;
	/* A pyc record (format 2): text inserts plus nfields fields, encoded from record
	 * offset fields_pos; the inserts' deltas from body_pos; the last field ends at
	 * fields_end. */
	bool pyc;
	uint32_t nfields;
	uint64_t fields_pos, body_pos, fields_end;
};

#define RELOC_FORMAT_VERSION 1
/* Pyc records only: text and binary records are still written as version 1. */
#define RELOC_FORMAT_PYC 2
/* Records up to this size are kept whole; larger ones read through a window this size. */
#define RELOC_WINDOW 4096
/* At most this many marks per record: every RELOC_MARK_STEP-th insert, then every other
 * one of those whenever they are all taken, so a read decodes at most about
 * 2 * ninserts / RELOC_MARKS inserts before its range. */
#define RELOC_MARKS     256
#define RELOC_MARK_STEP 16
/* Inserts served per read of neutral bytes. */
#define RELOC_SEG 64
/* Indexing a record read through its source reads this much at a time. */
#define RELOC_INDEX_WINDOW (64 * 1024)
/* find_prefix's first and largest windows, past the prefix's own length. */
#define FIND_WINDOW_MIN 256
#define FIND_WINDOW_MAX (1u << 20)

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
	free(r->win.p);
	free(r->marks);
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

/* Grows *p (of *cap elements of size sz) to hold need elements; doubling keeps the
 * total copying O(final size). */
/* ---- encoding ----
 *
 * Version 1, all integers unsigned LEB128 varints in their shortest form:
 *   u8 version (1), u8 mode (1 text, 2 binary)
 *   text:   m >= 1, then m deltas: x[0], x[1] - x[0], ...
 *   binary: nstrs >= 1, then per string: n >= 1; x[first] - base, where base is 0 for
 *           the first string and prev.end + prev.cap + 1 after it (R4 holds by
 *           construction); n - 1 deltas between its inserts; end - x[last]; cap.
 * Deltas make a record small (about a byte per insert) and keep offsets sorted by
 * construction.
 *
 * Version 2, for pyc records only (mode 3), at most RELOC_PYC_MAX bytes:
 *   u8 version (2), u8 mode (3), f, then f fields: x - end of the previous field (0 for
 *   the first), k; then m >= 0 and m deltas as in text mode.
 * A reader of version 1 only refuses it (-EBADMSG) rather than serve it wrong. The spec
 * is docs/reloc-format.md.
 */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static int put_bytes(struct buf *b, const void *p, size_t n)
{
	uint8_t *v = grow_array(b->p, &b->cap, b->n + n, 1);

	if (!v)
		return -ENOMEM;
	b->p = v;
	memcpy(b->p + b->n, p, n);
	b->n += n;
	return 0;
}

static int put_varint(struct buf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;

	do {
		tmp[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		tmp[n] |= v ? 0x80 : 0;
		n++;
	} while (v);
	return put_bytes(b, tmp, n);
}

/* ---- scan ---- */

struct scan {
	struct buf body; /* the record after its header */
	struct buf str;  /* binary: the deltas of the current string */
	uint64_t last;   /* the last insert's neutral offset, or the next string's base */
	uint64_t nins;   /* inserts in all */
	uint64_t nstrs;  /* binary: strings */
	uint32_t n;      /* binary: inserts of the current string */
	uint8_t *out;    /* neutral content, allocated at the first occurrence that counts */
	size_t w;        /* bytes of out written */
};

/* An insert at the neutral offset reached, s->w. */
static int scan_insert(struct scan *s, enum reloc_mode mode, struct cfs_err *err)
{
	/* reloc_text_inserts and the catalog count occurrences in 32 bits. */
	if (s->nins == UINT32_MAX)
		return err_set(err, -EOVERFLOW, "more than %u prefix occurrences", UINT32_MAX);
	if (put_varint(mode == RELOC_TEXT ? &s->body : &s->str, s->w - s->last))
		return err_set(err, -ENOMEM, "out of memory for prefix offsets");
	s->last = s->w;
	s->nins++;
	s->n++;
	return 0;
}

/* Binary: the current string ends at the neutral offset reached, with capacity cap. */
static int scan_string_end(struct scan *s, uint64_t cap, struct cfs_err *err)
{
	if (put_varint(&s->body, s->n) || put_bytes(&s->body, s->str.p, s->str.n) ||
	    put_varint(&s->body, s->w - s->last) || put_varint(&s->body, cap))
		return err_set(err, -ENOMEM, "out of memory for prefix slots");
	s->last = s->w + cap + 1;
	s->nstrs++;
	s->n = 0;
	s->str.n = 0;
	return 0;
}

/*
 * The first occurrence of prefix in data[0, n), searched in windows that double from
 * small: each memmem call looks only a little past the occurrence it finds. A file made
 * of nothing but occurrences then costs linear time however memmem goes about it: a
 * sanitizer's wrapper checks every byte it is given, which over the rest of a file at
 * each occurrence took 14 s for 4 MB.
 */
static const uint8_t *find_prefix(const uint8_t *data, size_t n, const char *prefix, size_t plen)
{
	size_t at = 0, w = FIND_WINDOW_MIN + plen;

	while (n - at >= plen) {
		size_t span = n - at < w ? n - at : w;
		const uint8_t *hit = memmem(data + at, span, prefix, plen);

		if (hit || span == n - at)
			return hit;
		/* An occurrence may straddle the window's end: the next starts plen - 1 back. */
		at += span - plen + 1;
		if (w < FIND_WINDOW_MAX)
			w *= 2;
	}
	return NULL;
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

	while ((hit = find_prefix(data + pos, len - pos, prefix, plen))) {
		size_t h = (size_t)(hit - data);
		int rc = scan_start(s, len, err);

		if (rc)
			return rc;
		scan_copy(s, data + pos, h - pos);
		rc = scan_insert(s, RELOC_TEXT, err);
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

	while (pos < len && (hit = find_prefix(data + pos, len - pos, prefix, plen))) {
		size_t h = (size_t)(hit - data), t, u, n = 0;
		const uint8_t *nul = memchr(hit + plen, 0, len - h - plen);
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

			rc = scan_insert(s, RELOC_BINARY, err);
			if (rc)
				return rc;
			n++;
			q = (size_t)(hit - data) + plen;
			hit = find_prefix(data + q, t - q, prefix, plen);
			scan_copy(s, data + q, (hit ? (size_t)(hit - data) : t) - q);
		}
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
		rc = scan_string_end(s, cap, err);
		if (rc)
			return rc;
		/* n * plen <= len: the occurrences do not overlap. */
		memset(s->out + s->w, 0, n * plen);
		s->w += n * plen;
		copied = t;
		pos = u;
	}
	if (s->out)
		scan_copy(s, data + copied, len - copied);
	return 0;
}

static int index_record(struct reloc *r, struct window *w);

/* A record made of blob (len bytes, malloc'd: r owns it from here on, also on failure). */
static int adopt(uint8_t *blob, size_t len, struct reloc **ret)
{
	struct reloc *r = calloc(1, sizeof(*r));
	int rc;

	if (!r) {
		free(blob);
		return -ENOMEM;
	}
	r->len = len;
	r->win = (struct window){blob, len, 0, len};
	rc = index_record(r, &r->win);
	if (rc) {
		reloc_free(r);
		return rc;
	}
	*ret = r;
	return 0;
}

int reloc_scan(const uint8_t *data, size_t len, const char *prefix, size_t plen,
               enum reloc_mode mode, size_t placeholder_len, uint8_t **ret_neutral,
               size_t *ret_neutral_len, struct reloc **ret, struct cfs_err *err)
{
	struct scan s = {0};
	struct buf rec = {0};
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

	rec.p = malloc(12 + s.body.n);
	rec.cap = 12 + s.body.n;
	if (!rec.p) {
		rc = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	rec.p[0] = RELOC_FORMAT_VERSION;
	rec.p[1] = (uint8_t)mode;
	rec.n = 2;
	put_varint(&rec, mode == RELOC_TEXT ? s.nins : s.nstrs);
	put_bytes(&rec, s.body.p, s.body.n);
	/* What scan wrote, decode reads back: a failure here is this file's bug. */
	rc = adopt(rec.p, rec.n, &r);
	if (rc) {
		rc = err_set(err, rc == -ENOMEM ? rc : -EIO,
		             "prefix relocation: the record just made does not decode");
		goto out;
	}
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
	free(s.body.p);
	free(s.str.p);
	return rc;
}

/* ---- decoding ---- */

struct rd {
	struct reloc *r;
	struct window *w;
	bool bad; /* malformed, or the source failed (err) */
	int err;
	bool used; /* the source was read */
};

/* The byte at *pos, read through the window (refilled from the source when it does not
 * hold it); -1 past the end or on a failed read. */
static int get_byte(struct rd *d, uint64_t *pos)
{
	struct window *w = d->w;

	if (*pos >= d->r->len) {
		d->bad = true;
		return -1;
	}
	if (*pos < w->off || *pos - w->off >= w->n) {
		size_t n = d->r->len - *pos < w->cap ? (size_t)(d->r->len - *pos) : w->cap;
		int rc = d->r->src.read
		                 ? d->r->src.read(d->r->src.ctx, d->r->src.key, *pos, n, w->p)
		                 : -EBADMSG;

		d->used = true;
		if (rc) {
			w->n = 0;
			d->err = rc < 0 ? rc : -EIO;
			d->bad = true;
			return -1;
		}
		w->off = *pos;
		w->n = n;
	}
	return w->p[(*pos)++ - w->off];
}

static uint64_t get_varint(struct rd *d, uint64_t *pos)
{
	uint64_t v = 0;

	for (unsigned shift = 0; !d->bad; shift += 7) {
		int b = get_byte(d, pos);

		if (b < 0)
			break;
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

static uint64_t get_add(struct rd *d, uint64_t *pos, uint64_t base)
{
	uint64_t v = get_varint(d, pos);

	if (__builtin_add_overflow(base, v, &v))
		d->bad = true;
	return v;
}

enum ev_kind {
	EV_INSERT,     /* an insert at neutral offset x */
	EV_STRING_END, /* binary: a string of n inserts ends at x, with capacity cap */
	EV_END,
};

struct ev {
	enum ev_kind kind;
	uint64_t x, cap;
	uint32_t n;
};

/* Decode the next item at c into *e; d->bad when the record is malformed there. */
static void next_event(struct rd *d, struct cursor *c, struct ev *e)
{
	struct reloc *r = d->r;

	if (r->mode == RELOC_TEXT) {
		if (c->dec == r->ninserts) {
			e->kind = EV_END;
			return;
		}
		c->prev = get_add(d, &c->pos, c->prev);
		c->dec++;
		*e = (struct ev){EV_INSERT, c->prev, 0, 0};
		return;
	}
	if (c->left == 0 && c->n == 0) {
		uint64_t n;

		if (c->strs == r->nstrs) {
			e->kind = EV_END;
			return;
		}
		n = get_varint(d, &c->pos);
		/* Every insert takes a byte of the record at least. */
		if (d->bad || n == 0 || n > r->len - c->pos || n > UINT32_MAX - c->dec) {
			d->bad = true;
			return;
		}
		c->n = c->left = (uint32_t)n;
	}
	if (c->left) {
		c->prev = get_add(d, &c->pos, c->prev);
		c->left--;
		c->dec++;
		*e = (struct ev){EV_INSERT, c->prev, 0, 0};
		return;
	}
	e->kind = EV_STRING_END;
	e->x = get_add(d, &c->pos, c->prev);
	e->cap = get_varint(d, &c->pos);
	e->n = c->n;
	/* The next string's base is end + cap + 1; reads need end + cap < size. */
	if (__builtin_add_overflow(e->x, e->cap, &c->prev) || c->prev == UINT64_MAX)
		d->bad = true;
	c->prev++;
	c->n = 0;
	c->strs++;
}

static int add_mark(struct reloc *r, const struct cursor *c)
{
	struct cursor *marks;

	if (r->nmarks == RELOC_MARKS) {
		for (uint32_t i = 0; i < RELOC_MARKS / 2; i++)
			r->marks[i] = r->marks[2 * i];
		r->nmarks = RELOC_MARKS / 2;
		r->step *= 2;
		if (c->ins % r->step)
			return 0;
	}
	marks = grow_array(r->marks, &r->marks_cap, r->nmarks + 1, sizeof(*marks));
	if (!marks)
		return -ENOMEM;
	r->marks = marks;
	r->marks[r->nmarks++] = *c;
	return 0;
}

/* The next field of a pyc record at *pos, whose previous field ended at *end. */
static void next_field(struct rd *d, uint64_t *pos, uint64_t *end, struct reloc_field *f)
{
	uint64_t k;

	f->x = get_add(d, pos, *end);
	k = get_varint(d, pos);
	if (k > UINT32_MAX || f->x > UINT64_MAX - 4)
		d->bad = true;
	f->k = (uint32_t)k;
	*end = f->x + 4;
}

/* A pyc record's fields (R7): whole in memory, each well formed. */
static int index_fields(struct reloc *r, struct rd *d, uint64_t *pos)
{
	uint64_t n, end = 0;
	struct reloc_field f;

	if (r->len > RELOC_PYC_MAX || r->src.read)
		return -EBADMSG;
	r->pyc = true;
	n = get_varint(d, pos);
	/* Every field takes two bytes of the record at least. */
	if (d->bad || n > (r->len - *pos) / 2)
		return -EBADMSG;
	r->nfields = (uint32_t)n;
	r->fields_pos = *pos;
	for (uint32_t i = 0; i < r->nfields && !d->bad; i++)
		next_field(d, pos, &end, &f);
	if (d->bad)
		return -EBADMSG;
	r->fields_end = end;
	return 0;
}

/* R7: no insert strictly inside a field. Both lists are sorted: one merged pass. */
static int check_fields(struct reloc *r)
{
	struct rd d = {r, &r->win, false, 0, false};
	struct cursor c = {.pos = r->body_pos};
	uint64_t fpos = r->fields_pos, end = 0;
	struct reloc_field f;
	struct ev e = {EV_END, 0, 0, 0};
	uint32_t i = 0;

	next_event(&d, &c, &e);
	while (!d.bad && i < r->nfields) {
		next_field(&d, &fpos, &end, &f);
		i++;
		while (!d.bad && e.kind == EV_INSERT && e.x <= f.x)
			next_event(&d, &c, &e);
		if (e.kind == EV_INSERT && e.x < f.x + 4)
			return -EBADMSG;
	}
	return d.bad ? -EBADMSG : 0;
}

/*
 * Validate the whole record through w (R5) and lay down its marks, max_plen and last. Any
 * record it accepts, reloc_read serves without reading outside the neutral content.
 */
static int index_record(struct reloc *r, struct window *w)
{
	struct rd d = {r, w, false, 0, false};
	struct cursor c = {0};
	uint64_t pos = 0, count;
	int version = get_byte(&d, &pos), mode = get_byte(&d, &pos);
	struct ev e;

	if (version == RELOC_FORMAT_PYC && mode == RELOC_PYC) {
		int rc = index_fields(r, &d, &pos);

		if (rc)
			return rc;
		mode = RELOC_TEXT;
	} else if (version != RELOC_FORMAT_VERSION ||
	           (mode != RELOC_TEXT && mode != RELOC_BINARY)) {
		return d.err ? d.err : -EBADMSG;
	}
	r->mode = (enum reloc_mode)mode;
	count = get_varint(&d, &pos);
	/* Every insert, and every string, takes at least one byte more of the record; only a
	 * pyc record may have none (its fields alone change). */
	if (d.bad || (count == 0 && !r->pyc) || count > r->len - pos || count > UINT32_MAX)
		return d.err ? d.err : -EBADMSG;
	r->body_pos = pos;
	if (r->mode == RELOC_TEXT)
		r->ninserts = (uint32_t)count;
	else
		r->nstrs = (uint32_t)count;
	r->max_plen = UINT64_MAX;
	r->step = RELOC_MARK_STEP;
	c.pos = pos;
	if (add_mark(r, &c))
		return -ENOMEM;
	for (;;) {
		next_event(&d, &c, &e);
		if (d.bad || e.kind == EV_END)
			break;
		if (e.kind == EV_STRING_END) {
			/* n >= 1: decode rejects strings without inserts. */
			if (e.cap / e.n < r->max_plen)
				r->max_plen = e.cap / e.n;
			r->last = e.x + e.cap;
			c.paid += e.n;
			continue;
		}
		c.ins++;
		c.y = e.x;
		if (r->mode == RELOC_TEXT)
			r->last = e.x;
		if (c.ins % r->step == 0 && add_mark(r, &c))
			return -ENOMEM;
	}
	if (d.bad || c.pos != r->len)
		return d.err ? d.err : -EBADMSG;
	if (r->mode == RELOC_BINARY)
		r->ninserts = (uint32_t)c.dec;
	return r->pyc ? check_fields(r) : 0;
}

int reloc_make_pyc(const uint64_t *ins, size_t nins, const struct reloc_field *fields,
                   size_t nfields, struct reloc **ret)
{
	struct buf b = {0};
	uint64_t end = 0, prev = 0;
	uint8_t head[2] = {RELOC_FORMAT_PYC, RELOC_PYC};
	int rc = put_bytes(&b, head, 2) || put_varint(&b, nfields) ? -ENOMEM : 0;

	for (size_t i = 0; !rc && i < nfields; i++) {
		if (fields[i].x < end || fields[i].x > UINT64_MAX - 4)
			rc = -EINVAL;
		else if (put_varint(&b, fields[i].x - end) || put_varint(&b, fields[i].k))
			rc = -ENOMEM;
		end = fields[i].x + 4;
	}
	if (!rc && put_varint(&b, nins))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < nins; i++) {
		if (ins[i] < prev)
			rc = -EINVAL;
		else if (put_varint(&b, ins[i] - prev))
			rc = -ENOMEM;
		prev = ins[i];
	}
	if (!rc && b.n > RELOC_PYC_MAX)
		rc = -E2BIG;
	if (rc) {
		free(b.p);
		return rc;
	}
	/* adopt checks what was just made: no insert inside a field (R7). */
	return adopt(b.p, b.n, ret);
}

int reloc_decode(const uint8_t *blob, size_t len, struct reloc **ret)
{
	uint8_t *copy = malloc(len ? len : 1);

	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, blob, len);
	return adopt(copy, len, ret);
}

int reloc_open(const struct reloc_blob *b, struct reloc **ret)
{
	struct window iw = {0};
	struct reloc *r;
	int rc;

	if (b->len <= RELOC_WINDOW) {
		uint8_t *p = malloc(b->len ? b->len : 1);

		rc = p ? b->read(b->ctx, b->key, 0, b->len, p) : -ENOMEM;
		if (b->done)
			b->done(b->ctx);
		if (rc) {
			free(p);
			return rc < 0 ? rc : -EIO;
		}
		return adopt(p, b->len, ret);
	}
	r = calloc(1, sizeof(*r));
	iw.cap = RELOC_INDEX_WINDOW;
	iw.p = malloc(iw.cap);
	if (r) {
		r->len = b->len;
		r->src = *b;
		r->win.cap = RELOC_WINDOW;
		r->win.p = malloc(r->win.cap);
	}
	rc = !r || !iw.p || !r->win.p ? -ENOMEM : index_record(r, &iw);
	free(iw.p);
	if (b->done)
		b->done(b->ctx);
	if (rc) {
		reloc_free(r);
		return rc;
	}
	*ret = r;
	return 0;
}

int reloc_encode(const struct reloc *r, uint8_t **ret, size_t *ret_len)
{
	uint8_t *p;

	if (r->src.read)
		return -EINVAL;
	p = malloc(r->len);
	if (!p)
		return -ENOMEM;
	memcpy(p, r->win.p, r->len);
	*ret = p;
	*ret_len = r->len;
	return 0;
}

/* ---- read ---- */

/*
 * The output is the neutral content with the prefix put in before each insert and, in
 * binary records, n * |P| NULs taken out at the end of each string of n inserts. A span is
 * the stretch between two such ends: in it, output offset = neutral offset + (inserts of
 * the span before) * |P|. A segment is some consecutive inserts of one span, decoded into
 * x[0..m); base is the number of the span's inserts before x[0].
 */
struct seg {
	uint64_t x[RELOC_SEG];
	uint32_t m;
	uint64_t base;
};

/* How many of the segment's prefixes end at or before output offset o. */
static uint32_t seg_before(const struct seg *s, size_t plen, uint64_t o)
{
	uint32_t lo = 0, hi = s->m;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (s->x[mid] + (s->base + mid + 1) * plen <= o)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The neutral offset of output offset o; inside a prefix, the neutral byte after it. */
static uint64_t seg_neutral_at(const struct seg *s, size_t plen, uint64_t o)
{
	uint32_t i = seg_before(s, plen, o);
	uint64_t y = o - (s->base + i) * plen;

	return i < s->m && s->x[i] < y ? s->x[i] : y;
}

/*
 * Output [o, o + k) of one segment into out, k not past the next item after it. The
 * neutral bytes it needs are contiguous, so one callback reads them into the tail of out;
 * they are then spread forward with the prefixes put between. The writer never passes the
 * reader: the gap between them is the prefix bytes still to write.
 */
static int seg_read(const struct seg *s, const char *prefix, size_t plen, uint64_t o, size_t k,
                    uint8_t *out, reloc_source_fn src, void *ctx)
{
	uint64_t y0 = seg_neutral_at(s, plen, o), y1 = seg_neutral_at(s, plen, o + k);
	size_t nb, w = 0, rd;
	uint32_t i = seg_before(s, plen, o);

	/* Never more neutral bytes than output: a record that says otherwise is damaged. */
	if (y1 < y0 || y1 - y0 > k)
		return -EBADMSG;
	nb = (size_t)(y1 - y0);
	rd = k - nb;
	if (nb) {
		int rc = src(ctx, y0, nb, out + rd);

		if (rc)
			return rc < 0 ? rc : -EIO;
	}
	while (w < k) {
		uint64_t at = i < s->m ? s->x[i] + (s->base + i) * plen : UINT64_MAX;
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

/* x + k * plen, or UINT64_MAX when that does not fit: an output offset past any end. */
static uint64_t out_at(uint64_t x, uint64_t k, size_t plen)
{
	uint64_t o;

	if (__builtin_mul_overflow(k, plen, &o) || __builtin_add_overflow(o, x, &o))
		return UINT64_MAX;
	return o;
}

/* The output offset of a mark. */
static uint64_t mark_out(const struct cursor *c, size_t plen)
{
	return out_at(c->y, c->ins - c->paid, plen);
}

/* The last mark at or before output offset off. */
static const struct cursor *mark_at(const struct reloc *r, size_t plen, uint64_t off)
{
	uint32_t lo = 1, hi = r->nmarks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (mark_out(&r->marks[mid], plen) <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return &r->marks[lo - 1];
}

/* Serving checks what it decodes against the neutral length as it goes: the source's
 * record may not be the one indexed, and nothing may be read outside the content. */
static bool insert_ok(const struct cursor *c, const struct ev *e, uint64_t nlen)
{
	return e->x >= c->y && e->x <= nlen;
}

static bool string_end_ok(const struct cursor *c, const struct ev *e, size_t plen, uint64_t nlen)
{
	return e->x >= c->y && e->cap < nlen && e->x < nlen - e->cap &&
	       out_at(0, e->n, plen) <= e->cap;
}

/* Output [off, off + n) from c, a mark at or before off. */
static int serve(struct rd *d, struct cursor *c, uint64_t nlen, const char *prefix, size_t plen,
                 uint64_t off, size_t n, uint8_t *buf, reloc_source_fn src, void *ctx)
{
	uint64_t end = off + n, o = off;
	size_t w = 0;
	struct ev e;

	/* Up to off: every insert that ends, and every string end that lies, at or before it. */
	for (;;) {
		next_event(d, c, &e);
		if (d->bad)
			return d->err ? d->err : -EBADMSG;
		if (e.kind == EV_INSERT) {
			if (!insert_ok(c, &e, nlen))
				return -EBADMSG;
			if (out_at(e.x, c->ins - c->paid + 1, plen) > off)
				break;
			c->ins++;
			c->y = e.x;
		} else if (e.kind == EV_STRING_END) {
			if (!string_end_ok(c, &e, plen, nlen))
				return -EBADMSG;
			if (out_at(e.x, c->ins - c->paid, plen) > off)
				break;
			c->y = e.x + (uint64_t)e.n * plen;
			c->paid += e.n;
		} else {
			break;
		}
	}
	while (w < n) {
		struct seg s = {.m = 0, .base = c->ins - c->paid};
		uint64_t limit;
		size_t k;

		while (e.kind == EV_INSERT && s.m < RELOC_SEG &&
		       out_at(e.x, s.base + s.m, plen) < end) {
			s.x[s.m++] = e.x;
			c->ins++;
			c->y = e.x;
			next_event(d, c, &e);
			if (d->bad)
				return d->err ? d->err : -EBADMSG;
			if (e.kind == EV_INSERT && !insert_ok(c, &e, nlen))
				return -EBADMSG;
		}
		/* Up to the next item's output: an insert beyond the segment or the range, a
		 * string end, or the end of the content. */
		limit = out_at(e.kind == EV_END ? nlen : e.x, s.base + s.m, plen);
		if (limit == UINT64_MAX || limit < o)
			return -EBADMSG;
		k = (size_t)((limit < end ? limit : end) - o);
		if (k) {
			int rc = seg_read(&s, prefix, plen, o, k, buf + w, src, ctx);

			if (rc)
				return rc;
			w += k;
			o += k;
		}
		if (w == n)
			break;
		if (e.kind == EV_STRING_END) {
			if (!string_end_ok(c, &e, plen, nlen))
				return -EBADMSG;
			c->y = e.x + (uint64_t)e.n * plen;
			c->paid += e.n;
			next_event(d, c, &e);
			if (d->bad)
				return d->err ? d->err : -EBADMSG;
			if (e.kind == EV_INSERT && !insert_ok(c, &e, nlen))
				return -EBADMSG;
		} else if (e.kind == EV_END) {
			/* The content ends before the range: the record does not fit it. */
			return -EBADMSG;
		}
	}
	return 0;
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * A pyc record's fields in output [off, off + n) of buf, which holds the neutral bytes
 * there (no insert lies inside a field, R7). A field cut by the range's edge is read
 * whole from the source.
 */
static int patch_fields(struct reloc *r, size_t plen, uint64_t off, size_t n, uint8_t *buf,
                        reloc_source_fn src, void *ctx)
{
	struct rd d = {r, &r->win, false, 0, false};
	struct cursor c = {.pos = r->body_pos};
	uint64_t fpos = r->fields_pos, end = 0, before = 0;
	struct reloc_field f;
	struct ev e;

	next_event(&d, &c, &e);
	for (uint32_t i = 0; i < r->nfields && !d.bad; i++) {
		uint8_t v[4];
		uint64_t fo;
		uint32_t val;

		next_field(&d, &fpos, &end, &f);
		while (!d.bad && e.kind == EV_INSERT && e.x <= f.x) {
			before++;
			next_event(&d, &c, &e);
		}
		fo = out_at(f.x, before, plen);
		if (d.bad || fo >= off + n)
			break;
		if (fo + 4 <= off)
			continue;
		if (fo >= off && fo + 4 <= off + n) {
			memcpy(v, buf + (fo - off), 4);
		} else {
			int rc = src(ctx, f.x, 4, v);

			if (rc)
				return rc < 0 ? rc : -EIO;
		}
		val = get_le32(v) + (uint32_t)((uint64_t)f.k * plen);
		for (unsigned j = 0; j < 4; j++)
			if (fo + j >= off && fo + j < off + n)
				buf[fo + j - off] = (uint8_t)(val >> (8 * j));
	}
	return d.bad ? -EBADMSG : 0;
}

int reloc_read(struct reloc *r, uint64_t neutral_len, const char *prefix, size_t plen, uint64_t off,
               size_t len, uint8_t *buf, size_t *ret_n, reloc_source_fn src, void *ctx)
{
	uint64_t size = neutral_len;
	struct rd d = {r, &r->win, false, 0, false};
	struct cursor c;
	size_t n;
	int rc;

	if (r->mode == RELOC_TEXT) {
		if (r->last > neutral_len || r->fields_end > neutral_len)
			return -EBADMSG;
		if (__builtin_mul_overflow((uint64_t)r->ninserts, plen, &size) ||
		    __builtin_add_overflow(size, neutral_len, &size))
			return -EOVERFLOW;
	} else {
		/* R4: the last string's NULs, terminator included, are inside the file. */
		if (r->last >= neutral_len)
			return -EBADMSG;
		rc = reloc_fits(r, plen);
		if (rc)
			return rc;
	}
	if (off >= size) {
		*ret_n = 0;
		return 0;
	}
	n = size - off < len ? (size_t)(size - off) : len;
	c = *mark_at(r, plen, off);
	rc = serve(&d, &c, neutral_len, prefix, plen, off, n, buf, src, ctx);
	if (d.used && r->src.done)
		r->src.done(r->src.ctx);
	if (!rc && r->nfields)
		rc = patch_fields(r, plen, off, n, buf, src, ctx);
	if (rc)
		return rc;
	*ret_n = n;
	return 0;
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
	uint8_t *neutral = NULL;
	struct reloc *r = NULL;
	int rc = 0;

	if (mode != RELOC_NONE && flen)
		rc = reloc_scan(data, len, from, flen, mode, 0, &neutral, &nlen, &r, err);
	if (rc)
		return rc;
	if (!r)
		return len ? out(ctx, data, len) : 0;
	if (reloc_fits(r, tlen))
		rc = err_set(err, -ENOSPC, "%s: prefix %s (%zu bytes) does not fit a binary slot",
		             relpath, to, tlen);
	else
		rc = reloc_emit(r, neutral, nlen, relpath, to, out, ctx, err);
	free(neutral);
	reloc_free(r);
	return rc;
}

int reloc_emit(struct reloc *r, const uint8_t *neutral, size_t nlen, const char *relpath,
               const char *to, int (*out)(void *ctx, const void *buf, size_t n), void *ctx,
               struct cfs_err *err)
{
	struct neutral_src src = {neutral, nlen};
	uint8_t *piece = malloc(RELOCATE_PIECE);
	size_t tlen = strlen(to);
	uint64_t off = 0;
	int rc = 0;

	/* The content r was made of (reloc_scan's neutral copy, never NULL with r): said so
	 * for clang's analyzer, which loses it inside reloc_scan. */
	assert(neutral || nlen == 0);
	if (!piece)
		return -ENOMEM;
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
	free(piece);
	return rc;
}
