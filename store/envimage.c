// SPDX-License-Identifier: MIT
/*
 * Tree images, format 1 (docs/tree-format.md): the content of the one object that holds an
 * environment's tree. The reader checks every rule of the tables before anything is read
 * through them, since a damaged store must give an error, never a wrong tree.
 *
 * Invariant:
 * T6: a struct envimage exists only for tables envimage_open accepted: every location lies
 *     past the tables and within the content, no object is empty or past
 *     ENVIMAGE_OBJECT_MAX, and the record keys strictly increase; so a read through a
 *     location never leaves the image, and a record is found by one binary search.
 */
#include "envimage.h"

#include "err.h"
#include "le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char magic[8] = {'C', 'F', 'S', 'E', 'N', 'V', 'T', '1'};

#define LOC_SIZE 8
#define REC_SIZE 24

int envimage_head(const uint8_t *p, uint64_t size, const char *what, struct envimage_head *ret,
                  struct cfs_err *err)
{
	if (size < ENVIMAGE_HEAD || size > UINT32_MAX || memcmp(p, magic, 8) != 0)
		return err_set(err, -EUCLEAN, "%s: not a tree image", what);
	if (le32_get(p + 8) != 0)
		return err_set(err, -EUCLEAN, "%s: tree image with unknown flags", what);
	ret->index_len = le32_get(p + 12);
	ret->ndirs = le32_get(p + 16);
	ret->nrecs = le32_get(p + 20);
	ret->tables_len = (uint64_t)ret->index_len + (uint64_t)LOC_SIZE * ret->ndirs +
	                  (uint64_t)REC_SIZE * ret->nrecs;
	if (ret->ndirs == 0 || ENVIMAGE_HEAD + ret->tables_len > size)
		return err_set(err, -EUCLEAN, "%s: tree image tables past its end", what);
	return 0;
}

/* An object at off, len of an image of size bytes whose tables end at start: in it. */
static bool loc_ok(uint32_t off, uint32_t len, uint64_t start, uint64_t size)
{
	return len > 0 && len <= ENVIMAGE_OBJECT_MAX && off >= start && (uint64_t)off + len <= size;
}

int envimage_open(const struct envimage_head *h, const uint8_t *tables, uint64_t size,
                  const char *what, struct envimage *ret, struct cfs_err *err)
{
	uint64_t start = ENVIMAGE_HEAD + h->tables_len;

	ret->index = tables;
	ret->index_len = h->index_len;
	ret->ndirs = h->ndirs;
	ret->nrecs = h->nrecs;
	ret->locs = tables + h->index_len;
	ret->recs = ret->locs + (size_t)LOC_SIZE * h->ndirs;
	for (uint32_t i = 0; i < h->ndirs; i++) {
		const uint8_t *l = ret->locs + (size_t)LOC_SIZE * i;

		if (!loc_ok(le32_get(l), le32_get(l + 4), start, size))
			return err_set(err, -EUCLEAN, "%s: tree image: directory %u out of place",
			               what, i);
	}
	for (uint32_t i = 0; i < h->nrecs; i++) {
		const uint8_t *q = ret->recs + (size_t)REC_SIZE * i;

		if (!loc_ok(le32_get(q + 16), le32_get(q + 20), start, size))
			return err_set(err, -EUCLEAN, "%s: tree image: record %u out of place",
			               what, i);
		if (i && memcmp(q - REC_SIZE, q, 16) >= 0)
			return err_set(err, -EUCLEAN, "%s: tree image: records out of order", what);
	}
	return 0;
}

void envimage_dir(const struct envimage *m, uint32_t i, uint32_t *ret_off, uint32_t *ret_len)
{
	const uint8_t *l = m->locs + (size_t)LOC_SIZE * i;

	*ret_off = le32_get(l);
	*ret_len = le32_get(l + 4);
}

int envimage_record(const struct envimage *m, const struct objkey *key, uint32_t *ret_off,
                    uint32_t *ret_len)
{
	size_t lo = 0, hi = m->nrecs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const uint8_t *q = m->recs + REC_SIZE * mid;
		int c = memcmp(key->b, q, 16);

		if (c == 0) {
			*ret_off = le32_get(q + 16);
			*ret_len = le32_get(q + 20);
			return 0;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

/* ---- building ---- */

static int piece_cmp(const void *a, const void *b)
{
	return memcmp(((const struct envimage_piece *)a)->key.b,
	              ((const struct envimage_piece *)b)->key.b, 16);
}

/* Where each directory's key is laid out, for identical directories: sorted by key, a
 * run of identical keys laid out at its first. */
struct laid {
	struct objkey key;
	uint32_t off, len;
};

static int laid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/* The first of v[0..n) with key k (there is one). */
static struct laid *laid_first(struct laid *v, size_t n, const struct objkey *k)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(v[mid].key.b, k->b, 16) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return &v[lo];
}

int envimage_build(const uint8_t *index, size_t index_len, const struct envimage_piece *dirs,
                   uint32_t ndirs, const uint32_t *order, const struct envimage_piece *recs,
                   size_t nrecs, uint8_t **ret, size_t *ret_len, struct cfs_err *err)
{
	struct envimage_piece *rs = NULL;
	struct laid *laid = NULL;
	uint64_t size, tables, at;
	uint8_t *out = NULL;
	size_t nr = 0;
	int r = 0;

	if (nrecs) {
		rs = malloc(nrecs * sizeof(*rs));
		if (!rs)
			return -ENOMEM;
		memcpy(rs, recs, nrecs * sizeof(*rs));
		qsort(rs, nrecs, sizeof(*rs), piece_cmp);
	}
	for (size_t i = 0; i < nrecs; i++)
		if (!nr || memcmp(rs[nr - 1].key.b, rs[i].key.b, 16) != 0)
			rs[nr++] = rs[i];
	tables = ENVIMAGE_HEAD + (uint64_t)index_len + (uint64_t)LOC_SIZE * ndirs +
	         (uint64_t)REC_SIZE * nr;
	size = tables;
	for (uint32_t i = 0; i < ndirs; i++)
		size += dirs[i].len;
	for (size_t i = 0; i < nr; i++)
		size += rs[i].len;
	if (size > UINT32_MAX || index_len > UINT32_MAX || ndirs == 0) {
		r = err_set(err, -EFBIG, "a tree of %llu bytes: too large for a tree image",
		            (unsigned long long)size);
		goto out;
	}
	out = malloc(size);
	laid = malloc(ndirs * sizeof(*laid));
	if (!out || !laid) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(out, magic, 8);
	le32_put(out + 8, 0);
	le32_put(out + 12, (uint32_t)index_len);
	le32_put(out + 16, ndirs);
	le32_put(out + 20, (uint32_t)nr);
	memcpy(out + ENVIMAGE_HEAD, index, index_len);
	for (uint32_t i = 0; i < ndirs; i++)
		laid[i] = (struct laid){dirs[i].key, UINT32_MAX, 0};
	qsort(laid, ndirs, sizeof(*laid), laid_cmp);
	at = tables;
	for (uint32_t k = 0; k < ndirs; k++) {
		const struct envimage_piece *d = &dirs[order[k]];
		struct laid *l = laid_first(laid, ndirs, &d->key);

		if (l->off != UINT32_MAX)
			continue;
		memcpy(out + at, d->data, d->len);
		l->off = (uint32_t)at;
		l->len = (uint32_t)d->len;
		at += d->len;
	}
	for (uint32_t i = 0; i < ndirs; i++) {
		const struct laid *l = laid_first(laid, ndirs, &dirs[i].key);
		uint8_t *p = out + ENVIMAGE_HEAD + index_len + (size_t)LOC_SIZE * i;

		if (l->off == UINT32_MAX) {
			r = err_set(err, -EINVAL, "a tree image's order misses directory %u", i);
			goto out;
		}

		le32_put(p, l->off);
		le32_put(p + 4, l->len);
	}
	for (size_t i = 0; i < nr; i++) {
		uint8_t *q = out + ENVIMAGE_HEAD + index_len + (size_t)LOC_SIZE * ndirs +
		             (size_t)REC_SIZE * i;

		memcpy(q, rs[i].key.b, 16);
		le32_put(q + 16, (uint32_t)at);
		le32_put(q + 20, (uint32_t)rs[i].len);
		memcpy(out + at, rs[i].data, rs[i].len);
		at += rs[i].len;
	}
	*ret = out;
	*ret_len = (size_t)at;
	out = NULL;
out:
	free(out);
	free(laid);
	free(rs);
	return r;
}
