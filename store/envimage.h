/* SPDX-License-Identifier: MIT */
/*
 * Tree images (docs/tree-format.md): an environment's whole tree as one object of the
 * store, its index followed by where each directory object and each relocation record
 * kept apart lies in the image, then those objects. Read piecewise: the head, then the
 * tables, then one object at a time.
 */
#ifndef CONDAFS_ENVIMAGE_H
#define CONDAFS_ENVIMAGE_H

#include "condafs/store.h"
#include "object.h"

#include <stddef.h>
#include <stdint.h>

#define ENVIMAGE_HEAD       24
#define ENVIMAGE_SHIFT      15          /* 32 KiB frames: a directory decodes little more */
#define ENVIMAGE_OBJECT_MAX (64u << 20) /* a directory object or record */

/* What the head says: the length of the tables that follow it. */
struct envimage_head {
	uint32_t index_len, ndirs, nrecs;
	uint64_t tables_len; /* index, directory locations and record table */
};

/* The head of an image of size content bytes at p (ENVIMAGE_HEAD bytes): -EUCLEAN naming
 * what when it is not one. */
int envimage_head(const uint8_t *p, uint64_t size, const char *what, struct envimage_head *ret,
                  struct cfs_err *err);

/* A checked image's tables, valid while their bytes are. */
struct envimage {
	const uint8_t *index;
	size_t index_len;
	uint32_t ndirs, nrecs;
	const uint8_t *locs, *recs;
};

/* The tables (h->tables_len bytes from offset ENVIMAGE_HEAD) of an image of size bytes,
 * every rule of the format checked but the objects' keys (their readers check those). */
int envimage_open(const struct envimage_head *h, const uint8_t *tables, uint64_t size,
                  const char *what, struct envimage *ret, struct cfs_err *err);
/* Where directory i (< m->ndirs, in the index's order) lies. */
void envimage_dir(const struct envimage *m, uint32_t i, uint32_t *ret_off, uint32_t *ret_len);
/* Where the record kept apart with key lies: -ENOENT when the image has none. */
int envimage_record(const struct envimage *m, const struct objkey *key, uint32_t *ret_off,
                    uint32_t *ret_len);

/* An object to lay out: its key and bytes. */
struct envimage_piece {
	struct objkey key;
	const uint8_t *data;
	size_t len;
};

/* The image's content, malloc'd into *ret: index, then dirs (in the index's order) laid out
 * in the order order gives (a permutation of 0..ndirs), identical ones once, then recs
 * (any order, repeats allowed). -EFBIG when it would not fit the format. */
int envimage_build(const uint8_t *index, size_t index_len, const struct envimage_piece *dirs,
                   uint32_t ndirs, const uint32_t *order, const struct envimage_piece *recs,
                   size_t nrecs, uint8_t **ret, size_t *ret_len, struct cfs_err *err);

#endif
