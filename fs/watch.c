// SPDX-License-Identifier: MIT
/*
 * Environments added and removed while mounted. A thread of its own (notifications must
 * never come from a request handler) polls the store's change counter; when another
 * process has committed, it loads the environment list, swaps in a new table, and tells
 * the kernel: a new name drops a cached miss, a removed one is deleted, and the root's
 * cached listing and attributes are dropped.
 */
#include "fsd.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#define WATCH_INTERVAL_MS 250

/* Names in a but not in b (or there with another top directory), by hash order. */
static void diff(const struct envtab *a, const struct envtab *b,
                 void (*fn)(struct fsd *fs, const struct fsd_env *e), struct fsd *fs, size_t *ret_n)
{
	size_t i = 0, j = 0, n = 0;

	while (i < a->n) {
		int c = j < b->n ? memcmp(a->by_hash[i].hash, b->by_hash[j].hash, 32) : -1;

		if (c > 0) {
			j++;
			continue;
		}
		if (c < 0 || a->by_hash[i].ino != b->by_hash[j].ino) {
			if (fn)
				fn(fs, &a->by_hash[i]);
			n++;
		}
		i++;
		if (c == 0)
			j++;
	}
	*ret_n = n;
}

static void notify_removed(struct fsd *fs, const struct fsd_env *e)
{
	int r = fuse_lowlevel_notify_delete(fs->se, INO_ROOT, e->ino, e->hash, 32);

	/* -ENOENT: the kernel did not know the name; nothing to drop. */
	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_delete %s: %s", e->hash, strerror(-r));
	log_msg(LOG_LEVEL_NOTICE, "environment %s removed", e->hash);
}

static void notify_added(struct fsd *fs, const struct fsd_env *e)
{
	int r = fuse_lowlevel_notify_inval_entry(fs->se, INO_ROOT, e->hash, 32);

	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_inval_entry %s: %s", e->hash, strerror(-r));
	log_msg(LOG_LEVEL_NOTICE, "environment %s added", e->hash);
}

static int reload(struct fsd *fs, struct store *st)
{
	struct envtab *old = envtab_get(fs), *t = NULL;
	struct cfs_err err = {{0}};
	size_t gone = 0, added = 0;
	int r;

	r = envtab_load(fs, st, old->version + 1, &t, &err);
	if (r) {
		log_msg(LOG_LEVEL_ERR, "cannot list environments: %s",
		        err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}
	diff(old, t, NULL, fs, &gone);
	diff(t, old, NULL, fs, &added);
	if (!gone && !added) {
		/* Another commit (say, a last-used time): nothing the mount shows changed. */
		envtab_put(t);
		goto out;
	}
	/* Publish first, so a lookup that follows a notification finds the new table. */
	envtab_publish(fs, t);
	diff(old, t, notify_removed, fs, &gone);
	diff(t, old, notify_added, fs, &added);
	r = fuse_lowlevel_notify_inval_inode(fs->se, INO_ROOT, 0, 0);
	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_inval_inode root: %s", strerror(-r));
	r = 0;
out:
	envtab_put(old);
	return r;
}

/* Sleep one interval; true when asked to stop. */
static bool watch_wait(struct fsd *fs)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += WATCH_INTERVAL_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&fs->watch_lock);
	while (!fs->watch_stop &&
	       pthread_cond_timedwait(&fs->watch_cond, &fs->watch_lock, &until) != ETIMEDOUT)
		;
	stop = fs->watch_stop;
	pthread_mutex_unlock(&fs->watch_lock);
	return stop;
}

static void *watch_main(void *arg)
{
	struct fsd *fs = arg;
	struct cfs_err err = {{0}};
	struct store *st = NULL;
	uint64_t seen = 0, v;
	bool logged = false;
	int r;

	for (;;) {
		r = store_open(fs->store_dir, STORE_READONLY, &st, &err);
		if (!r)
			break;
		if (!logged)
			log_msg(LOG_LEVEL_ERR, "watcher: %s", err.msg[0] ? err.msg : strerror(-r));
		logged = true;
		if (watch_wait(fs))
			return NULL;
	}
	/* The table was loaded before the daemon forked: catch up with what came since. */
	if (store_changes(st, &seen, &err) == 0)
		reload(fs, st);
	while (!watch_wait(fs)) {
		r = store_changes(st, &v, &err);
		if (r) {
			log_file_error(INO_ROOT, "watcher: %s",
			               err.msg[0] ? err.msg : strerror(-r));
			continue;
		}
		if (v == seen)
			continue;
		/* On failure the counter is not taken: the next tick tries again. */
		if (reload(fs, st) == 0)
			seen = v;
	}
	store_close(st);
	return NULL;
}

int watch_start(struct fsd *fs)
{
	sigset_t all, old;
	int r;

	/* Signals go to the main thread, which ends the session loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&fs->watch_thread, NULL, watch_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return r;
	fs->watch_running = true;
	return 0;
}

void watch_stop(struct fsd *fs)
{
	if (!fs->watch_running)
		return;
	pthread_mutex_lock(&fs->watch_lock);
	fs->watch_stop = true;
	pthread_cond_signal(&fs->watch_cond);
	pthread_mutex_unlock(&fs->watch_lock);
	pthread_join(fs->watch_thread, NULL);
	fs->watch_running = false;
}
