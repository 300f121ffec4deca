// SPDX-License-Identifier: MIT
/*
 * A .pyc compiled beside a source that holds the build prefix. The source is served with
 * the mount path in it, so its size changes, and Python would find the pyc stale (PEP 552:
 * a timestamp pyc names its source's mtime and size) and compile the module on every
 * import from a mount it cannot write to; where it did not, the pyc's constants would
 * still name the build prefix. So the pyc is rewritten for the source as served: the
 * header's size field follows the source's size, and every string of the marshal data
 * that holds the prefix holds the new one, re-encoded, since marshal strings carry their
 * length (a 1-byte one for short ASCII strings).
 *
 * The rewrite is a pyc record (reloc.c, RELOC_PYC): the neutral content has each such
 * string with the prefix taken out and a 4-byte length (type 'u', or 't' when interned:
 * marshal reads an ASCII string of either type as the same str), and the record inserts the
 * prefix and adds |prefix| times the string's inserts to its length field. Every string
 * is long whatever the prefix, so the served size is the neutral size + inserts * |prefix|
 * as for any text file: st_size needs no decoding. The price: under the ingest prefix the
 * pyc is not the same bytes (reloc.c R1), only the same objects.
 *
 * Only a pyc that Python would use is rewritten: a timestamp pyc of a CPython whose code
 * object layout is known here, matching its source's mtime and size at ingest. A
 * hash-based pyc (checked: it would need the served source's SipHash; unchecked: Python
 * never compares it), a stale one, one of another magic or one whose marshal data does not
 * parse is served as it was. Python then does with it what it did before.
 *
 * Invariants:
 * Y1: the walk reads nothing outside data: every length is checked against what is left,
 *     the nesting is at most PYC_DEPTH_MAX, and every object takes a byte at least, so
 *     the walk's time and memory are linear in the file.
 * Y2: a pyc is rewritten only when its marshal data parses to its last byte; only strings
 *     of objects change, never the bytes of code (co_code, line and exception tables).
 */
#include "pyc.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Deeper than any compiler nests code (functions in classes in functions...). */
#define PYC_DEPTH_MAX 200

#define FLAG_REF 0x80

/* The code object layouts marshal writes. */
enum layout {
	LAYOUT_38,  /* 3.8-3.10: 6 ints, code consts names varnames freevars cellvars filename
	             * name, int firstlineno, lnotab */
	LAYOUT_311, /* 3.11-3.13: 5 ints, code consts names localsplusnames localspluskinds
	             * filename name qualname, int firstlineno, linetable exceptiontable */
};

static const struct {
	uint16_t magic;
	enum layout layout;
} known[] = {
        {3413, LAYOUT_38},  /* 3.8 */
        {3425, LAYOUT_38},  /* 3.9 */
        {3439, LAYOUT_38},  /* 3.10 */
        {3495, LAYOUT_311}, /* 3.11 */
        {3531, LAYOUT_311}, /* 3.12 */
        {3571, LAYOUT_311}, /* 3.13 */
};

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static bool layout_of(const uint8_t *data, size_t len, enum layout *ret)
{
	if (len < PYC_HEADER || data[2] != '\r' || data[3] != '\n')
		return false;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if ((uint16_t)(data[0] | data[1] << 8) == known[i].magic) {
			*ret = known[i].layout;
			return true;
		}
	return false;
}

bool store_pyc_source(const char *relpath, char *buf, size_t size)
{
	const char *name = strrchr(relpath, '/'), *dot;
	size_t n = strlen(relpath), dirlen;

	if (!name || n < 4 || strcmp(relpath + n - 4, ".pyc") != 0)
		return false;
	dirlen = (size_t)(name - relpath);
	/* The directory is __pycache__ itself, or ends in /__pycache__. */
	if (dirlen < 11 || memcmp(name - 11, "__pycache__", 11) != 0 ||
	    (dirlen > 11 && name[-12] != '/'))
		return false;
	name++;
	dot = strchr(name, '.');
	/* NAME, then a tag: "NAME.pyc" alone is not a cached pyc. */
	if (!dot || dot == name || dot + 4 == relpath + n)
		return false;
	if ((size_t)(dot - name) + 4 > size)
		return false;
	memcpy(buf, name, (size_t)(dot - name));
	memcpy(buf + (dot - name), ".py", 4);
	return true;
}

bool pyc_header_matches(const uint8_t *data, size_t len, int64_t src_mtime_s, uint64_t src_size)
{
	enum layout l;

	/* Python compares int(mtime) and the size, each mod 2^32; flags 0: timestamp. */
	return layout_of(data, len, &l) && le32(data + 4) == 0 &&
	       le32(data + 8) == (uint32_t)src_mtime_s && le32(data + 12) == (uint32_t)src_size;
}

/* A string to rewrite: its type byte at at, its body [body, body + len). */
struct str {
	size_t at, body, len;
	uint32_t n; /* occurrences of the prefix */
};

struct walk {
	const uint8_t *p;
	size_t len, pos;
	const char *prefix;
	size_t plen;
	enum layout layout;
	struct str *strs;
	size_t nstrs, cap;
	bool bad;
};

/* Occurrences of the prefix in [p, p + n), non-overlapping from the left (str.replace). */
static uint32_t count_prefix(const struct walk *w, const uint8_t *p, size_t n)
{
	uint32_t c = 0;
	const uint8_t *hit;

	while (n >= w->plen && (hit = memmem(p, n, w->prefix, w->plen)) && c < UINT32_MAX) {
		c++;
		n -= (size_t)(hit - p) + w->plen;
		p = hit + w->plen;
	}
	return c;
}

static bool take(struct walk *w, size_t n)
{
	if (w->bad || n > w->len - w->pos) {
		w->bad = true;
		return false;
	}
	w->pos += n;
	return true;
}

static uint32_t take32(struct walk *w)
{
	if (!take(w, 4))
		return 0;
	return le32(w->p + w->pos - 4);
}

/* A string's body of len bytes at w->pos; its type byte was at at. */
static void string_body(struct walk *w, size_t at, size_t len, bool rewrite)
{
	size_t body = w->pos;
	uint32_t n;

	if (!take(w, len) || !rewrite)
		return;
	n = count_prefix(w, w->p + body, len);
	if (!n)
		return;
	if (w->nstrs == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		struct str *v = realloc(w->strs, cap * sizeof(*v));

		if (!v) {
			w->bad = true;
			return;
		}
		w->strs = v;
		w->cap = cap;
	}
	w->strs[w->nstrs++] = (struct str){at, body, len, n};
}

static bool walk_object(struct walk *w, unsigned depth, bool rewrite);

/* n objects; each takes a byte at least, so n is checked against what is left. */
static void walk_objects(struct walk *w, uint64_t n, unsigned depth)
{
	if (n > w->len - w->pos) {
		w->bad = true;
		return;
	}
	for (uint64_t i = 0; i < n && !w->bad; i++)
		walk_object(w, depth, true);
}

static void walk_code(struct walk *w, unsigned depth)
{
	/* code, then the other objects before firstlineno; true: may hold the prefix. */
	static const bool before38[] = {false, true, true, true, true, true, true, true};
	static const bool before311[] = {false, true, true, true, false, true, true, true};
	const bool *before = w->layout == LAYOUT_38 ? before38 : before311;

	take(w, w->layout == LAYOUT_38 ? 24 : 20);
	for (size_t i = 0; i < sizeof(before38) / sizeof(before38[0]) && !w->bad; i++)
		walk_object(w, depth, before[i]);
	take(w, 4);
	/* lnotab, or linetable and exceptiontable: bytes of the compiler's, never strings. */
	for (int i = 0; i < (w->layout == LAYOUT_38 ? 1 : 2) && !w->bad; i++)
		walk_object(w, depth, false);
}

/* One object at w->pos. rewrite: its strings may be rewritten (not code's own bytes).
 * Returns false for the NULL object (the end of a dict). */
static bool walk_object(struct walk *w, unsigned depth, bool rewrite)
{
	size_t at = w->pos;
	uint8_t type;
	uint32_t n;

	if (depth >= PYC_DEPTH_MAX || !take(w, 1)) {
		w->bad = true;
		return false;
	}
	type = w->p[at] & (uint8_t)~FLAG_REF;
	switch (type) {
	case '0':
		return false;
	case 'N':
	case 'F':
	case 'T':
	case 'S':
	case '.':
		break;
	case 'i':
	case 'r':
		take(w, 4);
		break;
	case 'I':
	case 'g':
		take(w, 8);
		break;
	case 'y':
		take(w, 16);
		break;
	case 'f':
		if (take(w, 1))
			take(w, w->p[w->pos - 1]);
		break;
	case 'x':
		for (int i = 0; i < 2 && take(w, 1); i++)
			take(w, w->p[w->pos - 1]);
		break;
	case 'l': {
		int32_t d = (int32_t)take32(w);
		uint64_t digits = d < 0 ? (uint64_t)(-(int64_t)d) : (uint64_t)d;

		take(w, digits > w->len ? w->len + 1 : (size_t)digits * 2);
		break;
	}
	case 's':
	case 't':
	case 'u':
	case 'a':
	case 'A':
		n = take32(w);
		string_body(w, at, n, rewrite && !w->bad);
		break;
	case 'z':
	case 'Z':
		if (take(w, 1))
			string_body(w, at, w->p[w->pos - 1], rewrite);
		break;
	case ')':
		if (take(w, 1))
			walk_objects(w, w->p[w->pos - 1], depth + 1);
		break;
	case '(':
	case '[':
	case '<':
	case '>':
		n = take32(w);
		if (!w->bad)
			walk_objects(w, n, depth + 1);
		break;
	case '{':
		/* Key, value pairs up to a NULL key; each takes two bytes at least. */
		while (!w->bad && walk_object(w, depth + 1, true))
			walk_object(w, depth + 1, true);
		break;
	case 'c':
		walk_code(w, depth + 1);
		break;
	default:
		w->bad = true;
	}
	return true;
}

/* The type a rewritten string is served as: 4-byte length, ASCII ones as UTF-8. */
static uint8_t long_type(uint8_t t)
{
	uint8_t ref = t & FLAG_REF, base = t & (uint8_t)~FLAG_REF;

	if (base == 'a' || base == 'z')
		base = 'u';
	else if (base == 'A' || base == 'Z')
		base = 't';
	return base | ref;
}

int pyc_scan(const uint8_t *data, size_t len, const char *prefix, size_t plen, uint64_t src_neutral,
             uint32_t src_inserts, uint8_t **ret_neutral, size_t *ret_neutral_len,
             struct reloc **ret)
{
	struct walk w = {data, len, PYC_HEADER, prefix, plen, LAYOUT_38, NULL, 0, 0, false};
	struct reloc_field *fields = NULL;
	uint64_t *ins = NULL;
	size_t nins = 0, nfields = 0, o = 0, from = 0;
	uint8_t *out = NULL;
	int rc = 0;

	*ret = NULL;
	*ret_neutral = NULL;
	*ret_neutral_len = 0;
	if (plen == 0 || !layout_of(data, len, &w.layout))
		return 0;
	walk_object(&w, 0, true);
	/* Y2: all of it, and nothing after. */
	if (w.bad || w.pos != len)
		goto out;
	/* Each string grows by 3 bytes at most (a 1-byte length becomes 4) and loses its
	 * prefixes; inserts are fewer than the bytes of the file. */
	for (size_t i = 0; i < w.nstrs; i++)
		nins += w.strs[i].n;
	out = malloc(len + 3 * w.nstrs);
	ins = malloc((nins ? nins : 1) * sizeof(*ins));
	fields = malloc((w.nstrs + 1) * sizeof(*fields));
	if (!out || !ins || !fields) {
		rc = -ENOMEM;
		goto out;
	}
	nins = 0;
	/* The header: the source's size field is its neutral size + inserts * |prefix|. */
	memcpy(out, data, PYC_HEADER);
	put_le32(out + 12, (uint32_t)src_neutral);
	fields[nfields++] = (struct reloc_field){12, src_inserts};
	o = from = PYC_HEADER;
	for (size_t i = 0; i < w.nstrs; i++) {
		const struct str *s = &w.strs[i];
		const uint8_t *p = data + s->body, *end = p + s->len, *hit;

		memcpy(out + o, data + from, s->at - from);
		o += s->at - from;
		out[o++] = long_type(data[s->at]);
		fields[nfields++] = (struct reloc_field){o, s->n};
		put_le32(out + o, (uint32_t)(s->len - (size_t)s->n * plen));
		o += 4;
		for (uint32_t k = 0; k < s->n; k++) {
			hit = memmem(p, (size_t)(end - p), prefix, plen);
			memcpy(out + o, p, (size_t)(hit - p));
			o += (size_t)(hit - p);
			ins[nins++] = o;
			p = hit + plen;
		}
		memcpy(out + o, p, (size_t)(end - p));
		o += (size_t)(end - p);
		from = s->body + s->len;
	}
	memcpy(out + o, data + from, len - from);
	o += len - from;
	rc = reloc_make_pyc(ins, nins, fields, nfields, ret);
	if (rc == -E2BIG)
		rc = 0;
	if (rc || !*ret)
		goto out;
	*ret_neutral = out;
	*ret_neutral_len = o;
	out = NULL;
out:
	free(out);
	free(ins);
	free(fields);
	free(w.strs);
	return rc;
}

/* The served bytes of a pyc go through the same rewrite: its strings hold from where the
 * store's hold no prefix, its header names the source as served under from. */
int store_relocate_pyc(const char *relpath, const void *data, size_t len, const void *src,
                       size_t src_len, int64_t src_mtime_s, const char *from, const char *to,
                       int (*out)(void *ctx, const void *buf, size_t n), void *ctx,
                       struct cfs_err *err)
{
	size_t flen = strlen(from), snlen = 0, nlen = 0;
	uint8_t *sneutral = NULL, *neutral = NULL;
	struct reloc *srl = NULL, *r = NULL;
	int rc = 0;

	if (flen && len <= STORE_PYC_MAX && src_len <= STORE_PYC_MAX &&
	    pyc_header_matches(data, len, src_mtime_s, src_len) &&
	    reloc_mode_guess("source.py", src, src_len) == RELOC_TEXT)
		rc = reloc_scan(src, src_len, from, flen, RELOC_TEXT, 0, &sneutral, &snlen, &srl,
		                err);
	if (!rc && srl)
		rc = pyc_scan(data, len, from, flen, snlen, reloc_text_inserts(srl), &neutral,
		              &nlen, &r);
	if (rc == -ENOMEM)
		err_set(err, rc, "%s: out of memory", relpath);
	if (!rc && r)
		rc = reloc_emit(r, neutral, nlen, relpath, to, out, ctx, err);
	else if (!rc && len)
		rc = out(ctx, data, len);
	free(sneutral);
	free(neutral);
	reloc_free(srl);
	reloc_free(r);
	return rc;
}
