/* SPDX-License-Identifier: MIT */
/*
 * Environment indexes (docs/tree-format.md): what of an environment's tree is its own and
 * not its directories' — its directories in node id order with the key of each one's
 * directory object and where its children's ids start, its top directory's mode and mtime,
 * and its hard links. A node id is the environment's root plus an ordinal, and the index
 * turns an ordinal into a directory object and an entry with two binary searches.
 */
#ifndef CONDAFS_ENVINDEX_H
#define CONDAFS_ENVINDEX_H

#include "condafs/store.h"
#include "object.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One directory: its node ordinal, and the ordinals of its children from first_child on,
 * one per entry of its directory object. */
struct envindex_dir {
	struct objkey key;
	uint32_t self, first_child;
};

/* A path of a source inode with several: the ordinal of the inode's first path. */
struct envindex_link {
	uint32_t node, first;
};

/* The index's bytes, malloc'd into *ret. dirs in ordinal order (dirs[0] the top, ordinal
 * 0), links by node; -EINVAL for an index the format does not allow. */
int envindex_build(uint32_t nodes, uint32_t root_mode, int64_t root_mtime_ns,
                   const struct envindex_dir *dirs, uint32_t ndirs,
                   const struct envindex_link *links, uint32_t nlinks, uint8_t **ret,
                   size_t *ret_len, struct cfs_err *err);

/* A checked index: valid while its bytes are. */
struct envindex {
	const uint8_t *buf;
	size_t len;
	uint32_t nodes, ndirs, nlinks;
	uint32_t root_mode;
	int64_t root_mtime_ns;
};

/* Checks every rule of the format; -EUCLEAN naming what when one is broken. */
int envindex_open(const uint8_t *buf, size_t len, const char *what, struct envindex *ret,
                  struct cfs_err *err);
/* Directory i < x->ndirs; *ret_n its number of children. */
void envindex_dir(const struct envindex *x, uint32_t i, struct envindex_dir *ret, uint32_t *ret_n);
/* The directory whose children hold ordinal node (1 <= node < x->nodes). */
uint32_t envindex_parent_of(const struct envindex *x, uint32_t node);
/* The directory that is node ordinal node: -ENOENT if it is none. */
int envindex_dir_of(const struct envindex *x, uint32_t node, uint32_t *ret);
/* The ordinal of the first path of node's source inode, or -ENOENT when it had one path. */
int envindex_link_of(const struct envindex *x, uint32_t node, uint32_t *ret);

#endif
