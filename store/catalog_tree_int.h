/* SPDX-License-Identifier: MIT */
/*
 * What catalog_tree.c (reading environments' trees) and catalog_tree_count.c (making them,
 * counting what they name) share: the statements, a handle's caches, and the readers the
 * counting walks with. Nothing else includes it.
 */
#ifndef CONDAFS_CATALOG_TREE_INT_H
#define CONDAFS_CATALOG_TREE_INT_H

#include "catalog_int.h"
#include "dirtree.h"
#include "envimage.h"
#include "envindex.h"

#include <zstd.h>

#include <stdbool.h>
#include <stdint.h>

/* The kinds of the trees table of catalog versions 5 and 6, which the upgrade reads. */
enum tree_kind {
	TREE_DIR = 0,
	TREE_INDEX = 1,
	TREE_RELOC = 2,
};

enum tstmt {
	T_V6_DATA,
	T_ENV_AT,
	T_ENV,
	T_ENV_SET,
	T_ENVS,
	T_OBJ_COUNT,
	T_OBJ_COUNT_ID,
	T_GRP_COUNT,
	T_GRP_DROP,
	T_OBJ_BY_KEY,
	T_GRP_CONTENT,
	T_OBJ_KEY,
	T_GRP_OBJ,
	T_OBJ_REFS,
	T_GRP_NLINKS,
	T_V4_ENVS,
	T_V4_NODES,
	T_COUNT,
};

/* Decoded objects a handle keeps: directory objects by key, indexes by environment. */
#define DIR_SLOTS  64
#define DIR_BUDGET (4u << 20)
#define ENV_SLOTS  4
#define REC_OK     8

struct dslot {
	struct objkey key;
	uint8_t *data;
	size_t len;
	struct dirtree t;
	uint64_t used; /* 0: empty */
};

/* An environment's tree image, open, with its tables read and checked. */
struct eslot {
	int64_t env;
	struct objkey key; /* the image's */
	struct object *img;
	uint8_t *tables;
	struct envimage m;
	struct envindex x;
	/* The last records kept apart checked against their keys: files read in turn each
	 * find theirs here, and are not hashed whole again at every window. */
	struct objkey rec_ok[REC_OK];
	unsigned nrec_ok, next_rec_ok;
	uint64_t used;
};

/* A node an ingest inserted, waiting for catalog_env_ref. */
struct pend {
	struct catalog_node_row row;
	struct objkey key; /* a directory's object, once built */
	uint32_t dir;      /* a directory's position in the index */
};

struct cattree {
	sqlite3_stmt *st[T_COUNT];
	struct dslot dirs[DIR_SLOTS];
	size_t dir_bytes;
	struct eslot envs[ENV_SLOTS];
	uint64_t clock;
	struct pend *pend;
	size_t npend, cappend;
	ZSTD_DCtx *dctx; /* for the images' frames */
};

/* An environment's row, as the tree needs it. */
struct envref {
	int64_t id, root;
	uint32_t nodes;
	struct objkey tree;
	bool removed;
	char hash[33];
};

/* The statement id of catalog_tree.c's table, reset and with its bindings cleared. */
int ctree_stmt(struct catalog *c, enum tstmt id, sqlite3_stmt **ret, struct cfs_err *err);
/* The store's key of n bytes at p. */
void ctree_key(const uint8_t *p, size_t n, struct objkey *ret);
/* Column col of s as a key: false when it is not 16 bytes. */
bool ctree_column_key(sqlite3_stmt *s, int col, struct objkey *ret);
/* -EUCLEAN: environment e's tree is damaged, saying what. */
int ctree_damaged(struct catalog *c, const struct envref *e, const char *what, struct cfs_err *err);
/* What a reader said (dirtree_open, envindex_open, envimage_open, object.c) in err, as
 * damage of e's tree. */
int ctree_said(struct catalog *c, const struct envref *e, struct cfs_err *err);
/* Environment id's row: -ENOENT if none. */
int ctree_env(struct catalog *c, int64_t id, struct envref *ret, struct cfs_err *err);
/* Environment e's index, and its directory i (in the index's order), checked (T5), from
 * the handle's caches: valid until the next call of the same function (the two caches are
 * apart). */
int ctree_index(struct catalog *c, const struct envref *e, const struct envindex **ret,
                struct cfs_err *err);
int ctree_dir(struct catalog *c, const struct envref *e, uint32_t i, const struct dirtree **ret,
              struct cfs_err *err);
/* Calls fn for every node of environment e in id order, with its entry (type NODE_DIR and
 * nothing else for the top). */
typedef int (*ctree_walk_fn)(void *ctx, const struct envref *e, const struct store_node *n,
                             const struct dirtree_entry *ent);

int ctree_walk(struct catalog *c, const struct envref *e, ctree_walk_fn fn, void *ctx,
               struct cfs_err *err);
/* The object row of key as content (-ENOENT for none). */
int ctree_object(struct catalog *c, const struct objkey *key, struct catalog_content *ret,
                 struct cfs_err *err);
/* Free the nodes waiting for catalog_env_ref. */
void ctree_pend_clear(struct cattree *t);

#endif
