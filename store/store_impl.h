/* SPDX-License-Identifier: MIT */
/*
 * The store handle's insides, shared by the store's own modules (store.c, read.c, ingest.c,
 * verify.c) and by nothing else.
 */
#ifndef CONDAFS_STORE_IMPL_H
#define CONDAFS_STORE_IMPL_H

#include "catalog.h"
#include "lockwait.h"
#include "object.h"
#include "reloc.h"

#include <time.h>
#include <zstd.h>

#define READ_NODES  16
#define READ_IMAGES 8

/* Where the content of a recently read node is: kept between reads of the same file. */
struct read_node {
	int64_t node; /* 0: empty */
	uint64_t used;
	struct objkey image;
	uint64_t base, len;  /* the content within the image */
	struct reloc *reloc; /* NULL when not relocated */
};

/* A recently read image, with its last decoded frame: the small files of one package
 * share a pack frame, so an import decodes it once. */
struct read_image {
	struct object *obj; /* NULL: empty */
	struct objkey key;
	uint64_t used;
};

struct store {
	int fd; /* the store directory */
	char *dir;
	unsigned flags;
	struct catalog *cat;
	ZSTD_DCtx *dctx;
	struct cache *frames;   /* shared decoded frames for reads, or NULL */
	struct lockwait notify; /* store_open_notify */
	time_t snapshot_at;     /* STORE_SNAPSHOT: when the read transaction began (monotonic s) */
	bool snapshot_held;     /* ...and whether one is open (store_snapshot_release) */
	uint64_t clock;
	struct read_node nodes[READ_NODES];
	struct read_image images[READ_IMAGES];
	struct cfs_err reloc_err; /* what the last failed read of a relocation record said */
};

/* Take the store lock (LOCK_SH for ingests, LOCK_EX for gc's deletions, gc.c G2);
 * *ret_fd holds it until closed (store.c). */
int store_lock(struct store *st, int how, int *ret_fd, struct cfs_err *err);
/* -EROFS naming the store when it was opened STORE_READONLY: what every writing action
 * checks first (store.c). */
int store_writable(struct store *st, struct cfs_err *err);

/* store.c S1: 0, or -EUCLEAN naming catalog.db when the catalog names no object while
 * objects/ holds images (it is not the store's, or lost its rows), or, with links, when a
 * tree names a content that has no row (which reads every tree). gc (with links, before the
 * first image it takes for unreferenced) and verify and repair (without: they name such
 * nodes themselves, verify.c V4) call it, under the store lock for the deleting ones, before they
 * take any image for unreferenced. */
int store_check_catalog(struct store *st, bool links, struct cfs_err *err);

#endif
