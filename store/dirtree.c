// SPDX-License-Identifier: MIT
/*
 * Directory objects, format 1 (docs/tree-format.md): the builder writes them, the reader
 * checks every rule before anything is read from them, since a damaged store must give an
 * error, never a wrong tree.
 *
 * Invariants:
 * T1: a struct dirtree exists only for bytes dirtree_open accepted: every entry fills its
 *     slot exactly and follows the format's rules, and the names are strictly sorted, so
 *     dirtree_get and dirtree_find read nothing outside the bytes and need no checks.
 * T2: the builder writes only what dirtree_open accepts (the unit test and the fuzz
 *     harness hold each to the other).
 */
#include "dirtree.h"

#include "err.h"
#include "le.h"
#include "memdup.h"
#include "varint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char magic[8] = {'C', 'F', 'S', 'T', 'R', 'E', 'E', '1'};

#define HEADER 16

static int64_t get64s(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return (int64_t)v;
}

static bool name_ok(const uint8_t *name, size_t len)
{
	if (len < 1 || len > 255 || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' || name[i] == 0)
			return false;
	return true;
}

/* Why e cannot be written or was read wrong, or NULL when it is fine. */
static const char *entry_problem(const struct dirtree_entry *e)
{
	if (!name_ok(e->name, e->namelen))
		return "a name that is empty, too long, \".\", \"..\" or holds '/' or NUL";
	switch (e->type) {
	case NODE_DIR:
		return e->mode > 07777 ? "a mode beyond 07777" : NULL;
	case NODE_FILE:
		if (e->mode > 07777)
			return "a mode beyond 07777";
		if (e->group < 0 || (e->group > 0 && e->reloc_len))
			return "a group for a file with a relocation record";
		if (e->inserts && !e->reloc_len)
			return "text inserts without a relocation record";
		if (e->reloc_external != (e->reloc_len > DIRTREE_RELOC_INLINE))
			return "a relocation record kept apart unless it is larger than the inline "
			       "limit";
		return NULL;
	case NODE_SYMLINK:
		if (e->mode != 0777)
			return "a symbolic link whose mode is not 0777";
		/* Empty only when relocated: a link to the prefix itself. */
		if ((e->target_len < 1 && !e->reloc_len) || e->target_len > DIRTREE_MAX_TARGET ||
		    (e->target_len && memchr(e->target, 0, e->target_len)))
			return "a symbolic link target that is empty, too long or holds NUL";
		if (e->inserts && !e->reloc_len)
			return "text inserts without a relocation record";
		if (e->reloc_external || e->reloc_len > DIRTREE_RELOC_INLINE)
			return "a symbolic link's relocation record that is not inline";
		return NULL;
	}
	return "an unknown type";
}

static size_t entry_size(const struct dirtree_entry *e)
{
	size_t n = 1 + 2 + 8 + 1 + e->namelen;

	switch (e->type) {
	case NODE_DIR:
		return n + 16;
	case NODE_FILE:
		return n + 16 + varint_len(e->size) + varint_len(e->inserts) +
		       varint_len((uint64_t)e->group) + varint_len((uint64_t)e->reloc_len << 1) +
		       (e->reloc_external ? 16 : e->reloc_len);
	case NODE_SYMLINK:
		return n + varint_len(e->target_len) + e->target_len + varint_len(e->inserts) +
		       varint_len((uint64_t)e->reloc_len << 1) + e->reloc_len;
	}
	return n;
}

static uint8_t *put_entry(uint8_t *p, const struct dirtree_entry *e)
{
	uint64_t mt = (uint64_t)e->mtime_ns;

	*p++ = (uint8_t)e->type;
	*p++ = (uint8_t)e->mode;
	*p++ = (uint8_t)(e->mode >> 8);
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(mt >> (8 * i));
	*p++ = (uint8_t)e->namelen;
	memcpy(p, e->name, e->namelen);
	p += e->namelen;
	switch (e->type) {
	case NODE_DIR:
		memcpy(p, e->key.b, 16);
		p += 16;
		break;
	case NODE_FILE:
		memcpy(p, e->key.b, 16);
		p += 16;
		p += put_varint(p, e->size);
		p += put_varint(p, e->inserts);
		p += put_varint(p, (uint64_t)e->group);
		p += put_varint(p, (uint64_t)e->reloc_len << 1 | e->reloc_external);
		if (e->reloc_external) {
			memcpy(p, e->reloc_key.b, 16);
			p += 16;
		} else if (e->reloc_len) {
			memcpy(p, e->reloc, e->reloc_len);
			p += e->reloc_len;
		}
		break;
	case NODE_SYMLINK:
		p += put_varint(p, e->target_len);
		if (e->target_len)
			memcpy(p, e->target, e->target_len);
		p += e->target_len;
		p += put_varint(p, e->inserts);
		p += put_varint(p, (uint64_t)e->reloc_len << 1);
		if (e->reloc_len)
			memcpy(p, e->reloc, e->reloc_len);
		p += e->reloc_len;
		break;
	}
	return p;
}

/* Reads the entry in [p, end), which it must fill exactly; NULL, or why not. */
static const char *parse_entry(const uint8_t *p, const uint8_t *end, struct dirtree_entry *e)
{
	uint64_t v;

	memset(e, 0, sizeof(*e));
	if (end - p < 12)
		return "an entry shorter than its fixed fields";
	e->type = (enum node_type)p[0];
	e->mode = (uint32_t)p[1] | (uint32_t)p[2] << 8;
	e->mtime_ns = get64s(p + 3);
	e->namelen = p[11];
	p += 12;
	if ((size_t)(end - p) < e->namelen)
		return "a name that runs past its entry";
	e->name = p;
	p += e->namelen;
	switch (e->type) {
	case NODE_DIR:
	case NODE_FILE:
		if (end - p < 16)
			return "a key that runs past its entry";
		memcpy(e->key.b, p, 16);
		p += 16;
		if (e->type == NODE_DIR)
			break;
		if (!get_varint(&p, end, &e->size) || !get_varint(&p, end, &v) || v > UINT32_MAX)
			return "a bad size or insert count";
		e->inserts = (uint32_t)v;
		if (!get_varint(&p, end, &v) || v > INT64_MAX)
			return "a bad group";
		e->group = (int64_t)v;
		if (!get_varint(&p, end, &v))
			return "a bad relocation record length";
		e->reloc_external = v & 1;
		e->reloc_len = (size_t)(v >> 1);
		if (e->reloc_external) {
			if (end - p < 16)
				return "a relocation record key that runs past its entry";
			if (e->reloc_len <= DIRTREE_RELOC_INLINE)
				return "a relocation record kept apart that is small enough to be "
				       "inline";
			memcpy(e->reloc_key.b, p, 16);
			p += 16;
			break;
		}
		if (e->reloc_len > (uint64_t)(end - p))
			return "a relocation record that runs past its entry";
		if (e->reloc_len > DIRTREE_RELOC_INLINE)
			return "an inline relocation record larger than the format allows";
		e->reloc = e->reloc_len ? p : NULL;
		p += e->reloc_len;
		break;
	case NODE_SYMLINK:
		if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p))
			return "a link target that runs past its entry";
		e->target_len = (size_t)v;
		e->target = p;
		p += v;
		if (!get_varint(&p, end, &v) || v > UINT32_MAX)
			return "a bad insert count";
		e->inserts = (uint32_t)v;
		if (!get_varint(&p, end, &v) || (v & 1) || (v >> 1) > (uint64_t)(end - p))
			return "a symbolic link's relocation record that runs past its entry";
		e->reloc_len = (size_t)(v >> 1);
		e->reloc = e->reloc_len ? p : NULL;
		p += e->reloc_len;
		break;
	default:
		return "an unknown type";
	}
	if (p != end)
		return "an entry that does not fill its slot";
	return entry_problem(e);
}

static int name_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

/* ---- the builder ---- */

struct dirtree_builder {
	struct dirtree_entry *v; /* names, records and targets malloc'd, owned here */
	size_t n, cap;
	size_t bytes; /* of the entries */
};

int dirtree_builder_new(struct dirtree_builder **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

static void clear(struct dirtree_builder *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free((void *)b->v[i].name);
		free((void *)b->v[i].reloc);
		free((void *)b->v[i].target);
	}
	b->n = 0;
	b->bytes = 0;
}

void dirtree_builder_free(struct dirtree_builder *b)
{
	if (!b)
		return;
	clear(b);
	free(b->v);
	free(b);
}

int dirtree_add(struct dirtree_builder *b, const struct dirtree_entry *e, struct cfs_err *err)
{
	const char *why = entry_problem(e);
	struct dirtree_entry c = *e;
	bool fail = false;

	if (why)
		return err_set(err, -EINVAL, "directory object: entry %.*s: %s", (int)e->namelen,
		               (const char *)e->name, why);
	if (b->n >= DIRTREE_MAX_ENTRIES)
		return err_set(err, -EFBIG, "directory object: more than %u entries",
		               DIRTREE_MAX_ENTRIES);
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct dirtree_entry *v = realloc(b->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	c.name = memdup_or_null(e->name, e->namelen, &fail);
	c.reloc = e->type != NODE_DIR && !e->reloc_external
	                  ? memdup_or_null(e->reloc, e->reloc_len, &fail)
	                  : NULL;
	c.target = e->type == NODE_SYMLINK ? memdup_or_null(e->target, e->target_len, &fail) : NULL;
	if (e->type != NODE_FILE) {
		c.size = 0;
		c.group = 0;
	}
	if (e->type == NODE_DIR) {
		c.reloc_len = 0;
		c.inserts = 0;
		c.reloc_external = false;
	}
	if (e->type != NODE_SYMLINK)
		c.target_len = 0;
	if (fail) {
		free((void *)c.name);
		free((void *)c.reloc);
		free((void *)c.target);
		return -ENOMEM;
	}
	b->v[b->n++] = c;
	b->bytes += entry_size(&c);
	return 0;
}

static int entry_cmp(const void *x, const void *y)
{
	const struct dirtree_entry *a = x, *b = y;

	return name_cmp(a->name, a->namelen, b->name, b->namelen);
}

int dirtree_builder_finish(struct dirtree_builder *b, uint8_t **ret, size_t *ret_len,
                           struct cfs_err *err)
{
	size_t len = HEADER + 4 * b->n + b->bytes;
	uint8_t *buf, *p;
	int r = 0;

	if (b->n)
		qsort(b->v, b->n, sizeof(*b->v), entry_cmp);
	for (size_t i = 1; i < b->n; i++)
		if (entry_cmp(&b->v[i - 1], &b->v[i]) == 0) {
			r = err_set(err, -EINVAL, "directory object: the name %.*s twice",
			            (int)b->v[i].namelen, (const char *)b->v[i].name);
			goto out;
		}
	buf = malloc(len);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(buf, magic, 8);
	le32_put(buf + 8, (uint32_t)b->n);
	le32_put(buf + 12, 0);
	p = buf + HEADER + 4 * b->n;
	for (size_t i = 0; i < b->n; i++) {
		le32_put(buf + HEADER + 4 * i, (uint32_t)(p - (buf + HEADER + 4 * b->n)));
		p = put_entry(p, &b->v[i]);
	}
	*ret = buf;
	*ret_len = len;
out:
	clear(b);
	return r;
}

/* ---- the reader ---- */

int dirtree_open(const uint8_t *buf, size_t len, const char *what, struct dirtree *ret,
                 struct cfs_err *err)
{
	struct dirtree t = {.buf = buf, .len = len};
	struct dirtree_entry prev = {0}, e;
	size_t area;

	if (len < HEADER || memcmp(buf, magic, 8) != 0)
		return err_set(err, -EUCLEAN, "%s: not a directory object (format 1)", what);
	t.n = le32_get(buf + 8);
	if (le32_get(buf + 12) != 0)
		return err_set(err, -EUCLEAN, "%s: directory object flags %#x unknown", what,
		               le32_get(buf + 12));
	if (t.n > DIRTREE_MAX_ENTRIES || (size_t)t.n * 4 > len - HEADER)
		return err_set(err, -EUCLEAN, "%s: directory object of %u entries in %zu bytes",
		               what, t.n, len);
	t.offs = buf + HEADER;
	t.entries = t.offs + 4 * (size_t)t.n;
	area = len - HEADER - 4 * (size_t)t.n;
	if (area > UINT32_MAX)
		return err_set(err, -EUCLEAN, "%s: directory object of %zu bytes", what, len);
	if (t.n == 0 && area)
		return err_set(err, -EUCLEAN, "%s: directory object with bytes after its entries",
		               what);
	for (uint32_t i = 0; i < t.n; i++) {
		uint32_t start = le32_get(t.offs + 4 * (size_t)i);
		uint32_t end =
		        i + 1 < t.n ? le32_get(t.offs + 4 * ((size_t)i + 1)) : (uint32_t)area;
		const char *why;

		if ((i == 0 && start != 0) || start >= end || end > area)
			return err_set(err, -EUCLEAN, "%s: directory object entry %u: bad offset",
			               what, i);
		why = parse_entry(t.entries + start, t.entries + end, &e);
		if (!why && i && name_cmp(prev.name, prev.namelen, e.name, e.namelen) >= 0)
			why = "names not strictly sorted";
		if (why)
			return err_set(err, -EUCLEAN, "%s: directory object entry %u: %s", what, i,
			               why);
		prev = e;
	}
	*ret = t;
	return 0;
}

void dirtree_get(const struct dirtree *t, uint32_t i, struct dirtree_entry *ret)
{
	uint32_t start = le32_get(t->offs + 4 * (size_t)i);
	uint32_t end = i + 1 < t->n ? le32_get(t->offs + 4 * ((size_t)i + 1))
	                            : (uint32_t)(t->len - HEADER - 4 * (size_t)t->n);

	/* T1: checked by dirtree_open. */
	(void)parse_entry(t->entries + start, t->entries + end, ret);
}

int dirtree_find(const struct dirtree *t, const void *name, size_t len, uint32_t *ret)
{
	uint32_t lo = 0, hi = t->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const uint8_t *e = t->entries + le32_get(t->offs + 4 * (size_t)mid);
		int c = name_cmp(e + 12, e[11], name, len);

		if (c == 0) {
			*ret = mid;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}
