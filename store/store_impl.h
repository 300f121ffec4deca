/* SPDX-License-Identifier: MIT */
/*
 * The store handle's insides, shared by the store's own modules (store.c, read.c, ingest.c,
 * verify.c) and by nothing else.
 */
#ifndef CONDAFS_STORE_IMPL_H
#define CONDAFS_STORE_IMPL_H

#include "catalog.h"
#include "object.h"
#include "reloc.h"

#include <zstd.h>

#define READ_CACHE_SLOTS 16

/* An opened file content kept between reads of the same node. */
struct read_slot {
	int64_t node;           /* 0: empty */
	uint64_t used;          /* for LRU */
	struct object *obj;
	struct reloc *reloc;    /* NULL when not relocated */
	uint8_t *blob;          /* owned copy of an inline image */
};

struct store {
	int fd; /* the store directory */
	char *dir;
	unsigned flags;
	struct catalog *cat;
	ZSTD_DCtx *dctx;
	uint64_t clock;
	struct read_slot slots[READ_CACHE_SLOTS];
};

#endif
