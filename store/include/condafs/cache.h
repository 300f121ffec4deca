/* SPDX-License-Identifier: MIT */
/*
 * A byte-bounded block cache that threads share (store/cache.c): the daemon's served
 * blocks, and the store's decoded frames (store_share_frames in store.h). Thread-safe.
 */
#ifndef CONDAFS_CACHE_H
#define CONDAFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache;
struct cache_block;

int cache_new(size_t max_bytes, struct cache **ret);
void cache_free(struct cache *c); /* after every block is given back; NULL is fine */
/*
 * Block (id, version, index), holding cap bytes. Found: *ret_fill false, the block is
 * ready. Not found: a new block, *ret_fill true, and the caller must fill it and call
 * cache_filled (others wait for it meanwhile). -ENOBUFS when it cannot be cached
 * (everything held): read around it. Every block got is given back with cache_put.
 */
int cache_get(struct cache *c, uint64_t id, uint64_t version, uint64_t index, size_t cap,
              struct cache_block **ret, bool *ret_fill);
/* Reserve a block for filling (as cache_get's *ret_fill) without ever waiting: -EEXIST when
 * the block is there in any state, -ENOBUFS when there is no room. */
int cache_reserve(struct cache *c, uint64_t id, uint64_t version, uint64_t index, size_t cap,
                  struct cache_block **ret);
uint8_t *cache_block_data(struct cache_block *b);
size_t cache_block_len(const struct cache_block *b);
/* r: 0, or the fill's error (the block then leaves the cache); len: bytes filled. */
void cache_filled(struct cache *c, struct cache_block *b, int r, size_t len);
void cache_put(struct cache *c, struct cache_block *b); /* NULL is fine */
void cache_stats(struct cache *c, uint64_t *ret_hits, uint64_t *ret_misses,
                 uint64_t *ret_prefetched, size_t *ret_bytes);

#endif
