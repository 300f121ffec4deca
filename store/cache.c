// SPDX-License-Identifier: MIT
/*
 * A block cache shared by threads: blocks named by (id, version, index), each filled once
 * by the thread that asked first while the others wait for it. Bounded in bytes, least
 * recently used out. The daemon keeps the blocks it serves in one (so a frame is
 * decompressed, and a relocated file rewritten, once however the kernel slices its reads);
 * the store keeps decoded frames of its images in another (read.c), so the small files
 * packed in one frame cost one decompression between them.
 *
 * Invariants:
 * H1: a block is found only by its exact name: a user that changes what an id means
 *     (the daemon, when a nodeid is given to another file) changes the version with it,
 *     and the old blocks are never served again; they age out.
 * H2: a block being filled (LOADING) is waited for, never read; a failed fill leaves the
 *     table, so the next reader tries again (and gets the error itself).
 * H3: a block is freed only when it is out of the table and nobody holds it.
 *
 * A block is as good as its filler made it: the store checks a frame when it decodes it
 * (object.c O3) and reports a mismatch as a failed fill, which H2 keeps from ever being
 * READY; a READY block is served as it is, not checked again.
 */
#include <condafs/cache.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_BUCKETS 4096 /* a power of two */

enum block_state {
	BLOCK_LOADING,
	BLOCK_READY,
	BLOCK_FAILED,
};

struct cache_block {
	/* All fields but data under cache->lock; data is written by the filler while
	 * LOADING and only read once READY. */
	uint64_t id, version, index;
	size_t cap, len;
	enum block_state state;
	unsigned refs;
	bool hashed;
	struct cache_block *hnext;       /* hash chain */
	struct cache_block *prev, *next; /* LRU: head most recent */
	uint8_t data[];
};

struct cache {
	pthread_mutex_t lock;
	pthread_cond_t filled;
	/* Under lock: */
	size_t bytes, max_bytes;
	struct cache_block *buckets[CACHE_BUCKETS];
	struct cache_block *head, *tail;
	uint64_t hits, misses, prefetched;
};

int cache_new(size_t max_bytes, struct cache **ret)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->filled, NULL);
	c->max_bytes = max_bytes;
	*ret = c;
	return 0;
}

void cache_free(struct cache *c)
{
	struct cache_block *b, *next;

	if (!c)
		return;
	for (b = c->head; b; b = next) {
		next = b->next;
		free(b);
	}
	pthread_cond_destroy(&c->filled);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static size_t bucket(uint64_t id, uint64_t version, uint64_t index)
{
	uint64_t h = (id * 0x9e3779b97f4a7c15ull) ^ (index * 0xc2b2ae3d27d4eb4full) ^
	             (version * 0x165667b19e3779f9ull);

	return (size_t)(h >> 52) & (CACHE_BUCKETS - 1);
}

static void lru_unlink(struct cache *c, struct cache_block *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		c->head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		c->tail = b->prev;
	b->prev = b->next = NULL;
}

static void lru_push(struct cache *c, struct cache_block *b)
{
	b->prev = NULL;
	b->next = c->head;
	if (c->head)
		c->head->prev = b;
	c->head = b;
	if (!c->tail)
		c->tail = b;
}

/* Under lock: take b out of the table (H3: freed here only if nobody holds it). */
static void unhash(struct cache *c, struct cache_block *b)
{
	struct cache_block **p = &c->buckets[bucket(b->id, b->version, b->index)];

	while (*p != b)
		p = &(*p)->hnext;
	*p = b->hnext;
	b->hashed = false;
	lru_unlink(c, b);
	c->bytes -= b->cap;
	if (b->refs == 0)
		free(b);
}

/* Under lock: make room for need more bytes; false if everything is held. */
static bool make_room(struct cache *c, size_t need)
{
	struct cache_block *b = c->tail, *prev;

	for (; b && c->bytes + need > c->max_bytes; b = prev) {
		prev = b->prev;
		if (b->refs == 0)
			unhash(c, b);
	}
	return c->bytes + need <= c->max_bytes;
}

static struct cache_block *find(struct cache *c, uint64_t id, uint64_t version, uint64_t index)
{
	struct cache_block *b = c->buckets[bucket(id, version, index)];

	while (b && (b->id != id || b->version != version || b->index != index))
		b = b->hnext;
	return b;
}

/* Under lock: a new LOADING block, held once, in the table. */
static struct cache_block *add(struct cache *c, uint64_t id, uint64_t version, uint64_t index,
                               size_t cap)
{
	size_t h = bucket(id, version, index);
	struct cache_block *b = malloc(sizeof(*b) + cap);

	if (!b)
		return NULL;
	*b = (struct cache_block){.id = id,
	                          .version = version,
	                          .index = index,
	                          .cap = cap,
	                          .state = BLOCK_LOADING,
	                          .refs = 1,
	                          .hashed = true};
	b->hnext = c->buckets[h];
	c->buckets[h] = b;
	lru_push(c, b);
	c->bytes += cap;
	return b;
}

int cache_get(struct cache *c, uint64_t id, uint64_t version, uint64_t index, size_t cap,
              struct cache_block **ret, bool *ret_fill)
{
	struct cache_block *b;
	int r = 0;

	pthread_mutex_lock(&c->lock);
again:
	b = find(c, id, version, index);
	if (b) {
		b->refs++;
		lru_unlink(c, b);
		lru_push(c, b);
		while (b->state == BLOCK_LOADING)
			pthread_cond_wait(&c->filled, &c->lock);
		if (b->state == BLOCK_FAILED) {
			/* H2: out of the table already; try (and fail) ourselves. */
			if (--b->refs == 0)
				free(b);
			goto again;
		}
		c->hits++;
		*ret = b;
		*ret_fill = false;
		goto out;
	}
	if (cap > c->max_bytes || !make_room(c, cap)) {
		r = -ENOBUFS; /* the caller reads around the cache */
		goto out;
	}
	b = add(c, id, version, index, cap);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	c->misses++;
	*ret = b;
	*ret_fill = true;
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

int cache_reserve(struct cache *c, uint64_t id, uint64_t version, uint64_t index, size_t cap,
                  struct cache_block **ret)
{
	int r = 0;

	pthread_mutex_lock(&c->lock);
	if (find(c, id, version, index)) {
		r = -EEXIST; /* whatever its state: nothing to read ahead */
		goto out;
	}
	if (cap > c->max_bytes || !make_room(c, cap)) {
		r = -ENOBUFS;
		goto out;
	}
	*ret = add(c, id, version, index, cap);
	if (!*ret) {
		r = -ENOMEM;
		goto out;
	}
	c->prefetched++;
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

uint8_t *cache_block_data(struct cache_block *b)
{
	return b->data;
}

size_t cache_block_len(const struct cache_block *b)
{
	return b->len;
}

void cache_filled(struct cache *c, struct cache_block *b, int r, size_t len)
{
	pthread_mutex_lock(&c->lock);
	if (r) {
		b->state = BLOCK_FAILED;
		if (b->hashed)
			unhash(c, b);
	} else {
		b->state = BLOCK_READY;
		b->len = len;
	}
	pthread_cond_broadcast(&c->filled);
	pthread_mutex_unlock(&c->lock);
}

void cache_put(struct cache *c, struct cache_block *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&c->lock);
	if (--b->refs == 0 && !b->hashed)
		free(b);
	pthread_mutex_unlock(&c->lock);
}

void cache_stats(struct cache *c, uint64_t *ret_hits, uint64_t *ret_misses,
                 uint64_t *ret_prefetched, size_t *ret_bytes)
{
	pthread_mutex_lock(&c->lock);
	*ret_hits = c->hits;
	*ret_misses = c->misses;
	*ret_prefetched = c->prefetched;
	*ret_bytes = c->bytes;
	pthread_mutex_unlock(&c->lock);
}
