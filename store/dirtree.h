/* SPDX-License-Identifier: MIT */
/*
 * Directory objects (docs/tree-format.md): one directory's entries, sorted by name, files
 * by content key and subdirectories by the key of their own directory object. The bytes
 * are untrusted until dirtree_open has checked every rule of the format.
 */
#ifndef CONDAFS_DIRTREE_H
#define CONDAFS_DIRTREE_H

#include "condafs/store.h"
#include "object.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIRTREE_MAX_ENTRIES (1u << 20)
#define DIRTREE_MAX_TARGET  4095
/* A relocation record longer than this is an object of its own, named by its key: a
 * directory object stays small, and a record is never read whole (reloc.h). */
#define DIRTREE_RELOC_INLINE 4096

/* One entry. Pointers point into the bytes it was read from (or, for dirtree_add, are
 * copied). */
struct dirtree_entry {
	enum node_type type;
	uint32_t mode;
	int64_t mtime_ns;
	const uint8_t *name;
	size_t namelen;
	struct objkey key;    /* the content, or the subdirectory's directory object */
	uint64_t size;        /* files */
	uint32_t inserts;     /* files */
	int64_t group;        /* files: > 0 when served as one inode in every environment */
	const uint8_t *reloc; /* inline records; NULL for one kept apart */
	size_t reloc_len;     /* files: 0 for no relocation record */
	bool reloc_external;  /* the record is the object reloc_key (reloc_len > the limit) */
	struct objkey reloc_key;
	const uint8_t *target;
	size_t target_len; /* symlinks */
};

/* ---- writing ---- */

struct dirtree_builder;

int dirtree_builder_new(struct dirtree_builder **ret);
void dirtree_builder_free(struct dirtree_builder *b);
/* Adds e (its bytes copied). -EINVAL, with the reason, for an entry the format does not
 * allow; a name already added is found by dirtree_builder_finish. */
int dirtree_add(struct dirtree_builder *b, const struct dirtree_entry *e, struct cfs_err *err);
/* The object's bytes, entries sorted by name; *ret is malloc'd, the caller frees it. The
 * builder is empty again afterwards. -EINVAL for a name added twice. */
int dirtree_builder_finish(struct dirtree_builder *b, uint8_t **ret, size_t *ret_len,
                           struct cfs_err *err);

/* ---- reading ---- */

/* A checked object: valid while its bytes are. */
struct dirtree {
	const uint8_t *buf;
	size_t len;
	uint32_t n;
	const uint8_t *offs;    /* n little-endian uint32 */
	const uint8_t *entries; /* where the offsets count from */
};

/* Checks every rule of the format; -EUCLEAN naming what (for what: the object's name in
 * messages) when one is broken. */
int dirtree_open(const uint8_t *buf, size_t len, const char *what, struct dirtree *ret,
                 struct cfs_err *err);
/* Entry i < t->n (already checked by dirtree_open). */
void dirtree_get(const struct dirtree *t, uint32_t i, struct dirtree_entry *ret);
/* The index of name, or -ENOENT. */
int dirtree_find(const struct dirtree *t, const void *name, size_t len, uint32_t *ret);

#endif
