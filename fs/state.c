// SPDX-License-Identifier: MIT
/*
 * The daemon's one state struct (fsd.h) from start to end: made empty, filled from the
 * store before mounting (the first environment table and .condafs reports, the writers'
 * socket), and released after the session ends. main.c owns the struct and says when.
 */
#include "fsd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int fsd_init(struct fsd *fs)
{
	int r;

	memset(fs, 0, sizeof(*fs));
	fs->watch_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fs->watch_wake < 0)
		return -errno;
	if ((r = pthread_mutex_init(&fs->envtab_lock, NULL)))
		return -r;
	return 0;
}

/* Open the store once, here, so that a wrong --store is said on the terminal, and load
 * the first environment table. The handle is closed again: SQLite connections must not
 * cross the fork of fuse_daemonize; every thread opens its own afterwards. */
int fsd_load(struct fsd *fs)
{
	struct cfs_err err = {{0}};
	struct envtab *t = NULL;
	struct store *st = NULL;
	int r;

	r = store_open(fs->store_dir, STORE_READONLY, &st, &err);
	/* A catalog of an older version (readers read the current one alone) is upgraded
	 * here, before anything is served, waiting for a writer that holds the lock. */
	if (r == -EPROTO) {
		store_close(st);
		st = NULL;
		r = store_open_notify(fs->store_dir, 0, log_notice, NULL, &st, &err);
		store_close(st);
		st = NULL;
		if (!r)
			r = store_open(fs->store_dir, STORE_READONLY, &st, &err);
	}
	/* Once it is known to be a store, and before the table is loaded and the mount made:
	 * a writer that commits after either is heard (the watcher catches up with what came
	 * in between before it answers). */
	if (!r)
		watch_listen(fs);
	if (!r)
		r = envtab_load(fs, st, 1, &t, &err);
	if (!r) {
		fs->envtab = t;
		atomic_store(&fs->envtab_version, t->version);
		r = meta_new(fs, &fs->meta);
	}
	/* The first reports before the mount answers; on failure it is logged, and the
	 * watcher tries again at the next change. */
	if (!r)
		meta_refresh(fs, st, false);
	store_close(st);
	if (r) {
		log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
		return r;
	}
	log_msg(LOG_LEVEL_INFO, "%s: %zu environment%s", fs->store_dir, t->n, t->n == 1 ? "" : "s");
	return 0;
}

static void log_cache(const char *what, struct cache *c)
{
	uint64_t hits, misses, prefetched;
	size_t bytes;

	if (!c)
		return;
	cache_stats(c, &hits, &misses, &prefetched, &bytes);
	log_msg(LOG_LEVEL_DEBUG, "%s: %llu hits, %llu misses, %llu read ahead, %zu bytes", what,
	        (unsigned long long)hits, (unsigned long long)misses,
	        (unsigned long long)prefetched, bytes);
}

void fsd_log_caches(const struct fsd *fs)
{
	log_cache("served blocks", fs->cache);
	log_cache("decoded frames", fs->frames);
}

void fsd_release(struct fsd *fs)
{
	envtab_put(fs->envtab);
	use_free(fs->use);
	meta_free(fs->meta);
	cache_free(fs->cache);
	cache_free(fs->frames);
	store_listener_close(fs->listener);
	if (fs->watch_wake >= 0)
		close(fs->watch_wake);
	pthread_mutex_destroy(&fs->envtab_lock);
	free(fs->mountpoint);
	free(fs->store_dir);
}
