// SPDX-License-Identifier: MIT
/*
 * Environment indexes, format 1 (docs/tree-format.md). The reader checks every rule
 * before anything is read, since a damaged store must give an error, never a wrong tree.
 *
 * Invariant:
 * T3: a struct envindex exists only for bytes envindex_open accepted: the directories'
 *     ordinals strictly increase, their children's ranges follow each other without a gap
 *     or an overlap from ordinal 1 to the node count, each directory comes before its
 *     children, and the links are sorted and in range; so the searches below need no
 *     checks and never leave the bytes.
 */
#include "envindex.h"

#include "err.h"
#include "le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char magic[8] = {'C', 'F', 'S', 'I', 'N', 'D', 'X', '1'};

#define HEADER    36
#define DIR_SIZE  24
#define LINK_SIZE 8

int envindex_build(uint32_t nodes, uint32_t root_mode, int64_t root_mtime_ns,
                   const struct envindex_dir *dirs, uint32_t ndirs,
                   const struct envindex_link *links, uint32_t nlinks, uint8_t **ret,
                   size_t *ret_len, struct cfs_err *err)
{
	struct envindex x;
	size_t len = HEADER + (size_t)ndirs * DIR_SIZE + (size_t)nlinks * LINK_SIZE;
	uint64_t mt = (uint64_t)root_mtime_ns;
	uint8_t *buf, *p;
	int r;

	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, magic, 8);
	le32_put(buf + 8, nodes);
	le32_put(buf + 12, ndirs);
	le32_put(buf + 16, nlinks);
	le32_put(buf + 20, 0);
	le32_put(buf + 24, root_mode);
	le32_put(buf + 28, (uint32_t)mt);
	le32_put(buf + 32, (uint32_t)(mt >> 32));
	p = buf + HEADER;
	for (uint32_t i = 0; i < ndirs; i++, p += DIR_SIZE) {
		memcpy(p, dirs[i].key.b, 16);
		le32_put(p + 16, dirs[i].self);
		le32_put(p + 20, dirs[i].first_child);
	}
	for (uint32_t i = 0; i < nlinks; i++, p += LINK_SIZE) {
		le32_put(p, links[i].node);
		le32_put(p + 4, links[i].first);
	}
	/* What the reader would refuse is never written. */
	r = envindex_open(buf, len, "environment index", &x, err);
	if (r) {
		free(buf);
		return -EINVAL;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static void dir_at(const uint8_t *buf, uint32_t i, struct envindex_dir *ret)
{
	const uint8_t *p = buf + HEADER + (size_t)i * DIR_SIZE;

	memcpy(ret->key.b, p, 16);
	ret->self = le32_get(p + 16);
	ret->first_child = le32_get(p + 20);
}

static void link_at(const struct envindex *x, uint32_t i, struct envindex_link *ret)
{
	const uint8_t *p = x->buf + HEADER + (size_t)x->ndirs * DIR_SIZE + (size_t)i * LINK_SIZE;

	ret->node = le32_get(p);
	ret->first = le32_get(p + 4);
}

int envindex_open(const uint8_t *buf, size_t len, const char *what, struct envindex *ret,
                  struct cfs_err *err)
{
	struct envindex x = {.buf = buf, .len = len};
	struct envindex_dir prev = {0}, d;
	struct envindex_link pl = {0}, l;

	if (len < HEADER || memcmp(buf, magic, 8) != 0)
		return err_set(err, -EUCLEAN, "%s: not an environment index (format 1)", what);
	x.nodes = le32_get(buf + 8);
	x.ndirs = le32_get(buf + 12);
	x.nlinks = le32_get(buf + 16);
	x.root_mode = le32_get(buf + 24);
	x.root_mtime_ns =
	        (int64_t)((uint64_t)le32_get(buf + 28) | (uint64_t)le32_get(buf + 32) << 32);
	if (le32_get(buf + 20) != 0)
		return err_set(err, -EUCLEAN, "%s: environment index flags %#x unknown", what,
		               le32_get(buf + 20));
	if (x.ndirs < 1 || x.ndirs > x.nodes || x.nlinks > x.nodes ||
	    len != HEADER + (size_t)x.ndirs * DIR_SIZE + (size_t)x.nlinks * LINK_SIZE)
		return err_set(err, -EUCLEAN,
		               "%s: environment index of %zu bytes for %u directories", what, len,
		               x.ndirs);
	/* check() on the bytes, one element at a time: nothing is copied. */
	for (uint32_t i = 0; i < x.ndirs; i++, prev = d) {
		const char *why = NULL;

		dir_at(buf, i, &d);
		if (i == 0 && (d.self != 0 || d.first_child != 1))
			why = "a first directory that is not the top";
		else if (i && (d.self <= prev.self || d.first_child < prev.first_child ||
		               d.self >= d.first_child || d.first_child > x.nodes))
			why = "directories out of order";
		if (why)
			return err_set(err, -EUCLEAN, "%s: environment index: %s", what, why);
	}
	for (uint32_t i = 0; i < x.nlinks; i++, pl = l) {
		link_at(&x, i, &l);
		if (l.node < 1 || l.node >= x.nodes || l.first < 1 || l.first > l.node ||
		    (i && l.node <= pl.node))
			return err_set(err, -EUCLEAN, "%s: environment index: links out of order",
			               what);
	}
	if (x.root_mode > 07777)
		return err_set(err, -EUCLEAN, "%s: environment index: a mode beyond 07777", what);
	*ret = x;
	return 0;
}

void envindex_dir(const struct envindex *x, uint32_t i, struct envindex_dir *ret, uint32_t *ret_n)
{
	struct envindex_dir next;

	dir_at(x->buf, i, ret);
	if (i + 1 < x->ndirs) {
		dir_at(x->buf, i + 1, &next);
		*ret_n = next.first_child - ret->first_child;
	} else {
		*ret_n = x->nodes - ret->first_child;
	}
}

uint32_t envindex_parent_of(const struct envindex *x, uint32_t node)
{
	uint32_t lo = 0, hi = x->ndirs;

	/* The last directory whose children start at or before node: one with none shares
	 * its start with the next, which is the one holding node (T3). */
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct envindex_dir d;

		dir_at(x->buf, mid, &d);
		if (d.first_child <= node)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int envindex_dir_of(const struct envindex *x, uint32_t node, uint32_t *ret)
{
	uint32_t lo = 0, hi = x->ndirs;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct envindex_dir d;

		dir_at(x->buf, mid, &d);
		if (d.self == node) {
			*ret = mid;
			return 0;
		}
		if (d.self < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int envindex_link_of(const struct envindex *x, uint32_t node, uint32_t *ret)
{
	uint32_t lo = 0, hi = x->nlinks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct envindex_link l;

		link_at(x, mid, &l);
		if (l.node == node) {
			*ret = l.first;
			return 0;
		}
		if (l.node < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}
