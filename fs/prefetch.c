// SPDX-License-Identifier: MIT
/*
 * Reading ahead of sequential readers: when a read of a file starts where the previous
 * one ended, the next few blocks are reserved in the block cache and filled by a thread of
 * their own while the worker replies, so a file read front to back is decompressed on two
 * cores. Random readers (page faults around an mmap) are left alone.
 *
 * Invariants:
 * P1: a queued job holds its block (reserved LOADING in the cache), so every job ends in
 *     cache_filled and cache_put, also when the thread is stopped.
 * P2: a job carries copies (node, prefix): nothing it uses belongs to a worker.
 */
#include "fsd.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define PREFETCH_QUEUE   16
#define PREFETCH_STREAMS 64
/* Blocks read ahead of a sequential reader: 1 MiB. */
#define PREFETCH_AHEAD 4

struct prefetch_job {
	struct cache_block *block;
	uint64_t start;
	size_t cap;
	uint64_t version;
	struct store_node n;
	char *prefix;
};

struct prefetch {
	struct fsd *fs;
	pthread_t thread;
	bool running; /* the main thread only */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* Under lock: */
	bool stop;
	struct prefetch_job q[PREFETCH_QUEUE];
	unsigned head, count;
	struct {
		fuse_ino_t ino;
		uint64_t next; /* where a sequential read would start */
	} streams[PREFETCH_STREAMS];
};

static void job_run(struct prefetch *p, struct store **st, uint64_t *st_version,
                    struct prefetch_job *j)
{
	struct cfs_err err = {{0}};
	size_t got = 0;
	int r = 0;

	/* A handle of its own, opened again when the table changes (it must see new
	 * environments' nodes). */
	if (!*st || *st_version != j->version) {
		store_close(*st);
		*st = NULL;
		r = worker_store_open(p->fs, st, &err);
		*st_version = j->version;
	} else {
		r = store_snapshot_refresh(*st, &err);
	}
	if (!r)
		r = store_read(*st, &j->n, j->prefix, j->start, j->cap, cache_block_data(j->block),
		               &got, &err);
	/* A failed block leaves the cache: the reader that wants it gets the error. */
	cache_filled(p->fs->cache, j->block, r, got);
	cache_put(p->fs->cache, j->block);
	free(j->prefix);
}

static void *prefetch_main(void *arg)
{
	struct prefetch *p = arg;
	struct store *st = NULL;
	uint64_t st_version = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct prefetch_job j;
		struct timespec idle;

		/* Idle for a second: let go of the snapshot, as idle workers do (worker.c). */
		clock_gettime(CLOCK_REALTIME, &idle);
		idle.tv_sec++;
		while (!p->stop && p->count == 0 && st &&
		       pthread_cond_timedwait(&p->wake, &p->lock, &idle) != ETIMEDOUT)
			;
		if (!p->stop && p->count == 0 && st) {
			pthread_mutex_unlock(&p->lock);
			store_snapshot_release(st);
			pthread_mutex_lock(&p->lock);
		}
		while (!p->stop && p->count == 0)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->count == 0)
			break;
		j = p->q[p->head];
		p->head = (p->head + 1) % PREFETCH_QUEUE;
		p->count--;
		/* P1: once stopping, the rest are released unfilled. */
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			cache_filled(p->fs->cache, j.block, -ECANCELED, 0);
			cache_put(p->fs->cache, j.block);
			free(j.prefix);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		pthread_mutex_unlock(&p->lock);
		job_run(p, &st, &st_version, &j);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	store_close(st);
	return NULL;
}

int prefetch_start(struct fsd *fs, struct prefetch **ret)
{
	struct prefetch *p = calloc(1, sizeof(*p));
	sigset_t all, old;
	int r;

	if (!p)
		return -ENOMEM;
	p->fs = fs;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&p->thread, NULL, prefetch_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return r;
	}
	p->running = true;
	*ret = p;
	return 0;
}

void prefetch_stop(struct prefetch *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Under p->lock: queue block index of the file, unless cached, queued or no room. */
static void queue_block(struct prefetch *p, fuse_ino_t ino, const struct store_node *n,
                        const char *prefix, uint64_t version, uint64_t index, uint64_t fsize)
{
	struct prefetch_job *j;
	uint64_t start = index << CACHE_BLOCK_SHIFT;
	size_t cap;

	if (p->count == PREFETCH_QUEUE || start >= fsize)
		return;
	cap = fsize - start < CACHE_BLOCK_SIZE ? (size_t)(fsize - start) : CACHE_BLOCK_SIZE;
	j = &p->q[(p->head + p->count) % PREFETCH_QUEUE];
	*j = (struct prefetch_job){.start = start, .cap = cap, .version = version, .n = *n};
	j->prefix = strdup(prefix);
	if (!j->prefix)
		return;
	/* Never waits: cached, being filled, or no room all mean "leave it". */
	if (cache_reserve(p->fs->cache, ino, version, index, cap, &j->block)) {
		free(j->prefix);
		return;
	}
	p->count++;
	pthread_cond_signal(&p->wake);
}

void prefetch_note(struct prefetch *p, fuse_ino_t ino, const struct store_node *n,
                   const char *prefix, uint64_t version, uint64_t off, uint64_t end, uint64_t fsize)
{
	unsigned slot;
	bool sequential;

	if (!p)
		return;
	slot = (unsigned)((ino * 0x9e3779b97f4a7c15ull) >> 58) % PREFETCH_STREAMS;
	pthread_mutex_lock(&p->lock);
	sequential = p->streams[slot].ino == ino && p->streams[slot].next == off && off > 0;
	p->streams[slot].ino = ino;
	p->streams[slot].next = end;
	if (sequential && !p->stop) {
		uint64_t last = (end - 1) >> CACHE_BLOCK_SHIFT;

		for (uint64_t i = 1; i <= PREFETCH_AHEAD; i++)
			queue_block(p, ino, n, prefix, version, last + i, fsize);
	}
	pthread_mutex_unlock(&p->lock);
}
