// SPDX-License-Identifier: MIT
/*
 * Environments added and removed while mounted. A thread of its own (notifications must
 * never come from a request handler) checks the store's change counter whenever a writer
 * says it committed (the store's listener socket, mounts.c) and every quarter second;
 * when another process has committed, it loads the environment list, swaps in a new
 * table, and tells the kernel: a new name drops a cached miss, a removed one is deleted,
 * and the root's cached listing and attributes are dropped. Only then does it answer the
 * waiting writers, so that a command that returns has its change visible here.
 * MOUNTPOINT/.condafs follows every change (meta.c). Once a
 * minute, and when it stops, it writes the environments' last use to the catalog (use.c),
 * off every request's path.
 */
#include "fsd.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Changes made without telling the mount (another program on the store) show this late. */
#define WATCH_INTERVAL_MS 250
#define USE_FLUSH_SECS    60
/* Writers answered together after one check; more wait in the socket's backlog. */
#define WATCH_MAX_WAITING 64

/* Root names in a but not in b (or there with another nodeid), in name order. */
static void diff(const struct envtab *a, const struct envtab *b,
                 void (*fn)(struct fsd *fs, const struct fsd_root *e), struct fsd *fs,
                 size_t *ret_n)
{
	size_t i = 0, j = 0, n = 0;

	while (i < a->nroot) {
		const struct fsd_root *x = &a->root[i], *y = j < b->nroot ? &b->root[j] : NULL;
		int c = -1;

		if (y) {
			c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
			if (!c)
				c = (x->len > y->len) - (x->len < y->len);
		}
		if (c > 0) {
			j++;
			continue;
		}
		if (c < 0 || x->ino != y->ino) {
			if (fn)
				fn(fs, x);
			n++;
		}
		i++;
		if (c == 0)
			j++;
	}
	*ret_n = n;
}

static const char *what(const struct fsd_root *e)
{
	return e->env ? "environment" : "tag";
}

static void notify_removed(struct fsd *fs, const struct fsd_root *e)
{
	int r = fuse_lowlevel_notify_delete(fs->se, INO_ROOT, e->ino, e->name, e->len);

	/* -ENOENT: the kernel did not know the name; nothing to drop. */
	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_delete %s: %s", e->name, strerror(-r));
	log_msg(LOG_LEVEL_NOTICE, "%s %s removed", what(e), e->name);
}

static void notify_added(struct fsd *fs, const struct fsd_root *e)
{
	int r = fuse_lowlevel_notify_inval_entry(fs->se, INO_ROOT, e->name, e->len);

	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_inval_entry %s: %s", e->name, strerror(-r));
	if (e->env)
		log_msg(LOG_LEVEL_NOTICE, "environment %s added", e->name);
	else
		log_msg(LOG_LEVEL_NOTICE, "tag %s -> %s", e->name, e->target);
}

/*
 * Tell the kernel that the files it holds of removed environments are deleted, before
 * their directories go (it finds a file by its parent's name): a file not open is
 * forgotten at once, an open one as soon as it is closed (its link count is now 0),
 * rather than whenever memory gets short. Then nothing holds the environment (use.c) and
 * gc can reap it.
 */
static void evict_removed(struct fsd *fs, struct store *st, const struct envtab *t)
{
	static const enum ino_kind kinds[] = {INO_NODE, INO_GROUP};
	struct cfs_err err = {{0}};

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		fuse_ino_t *inos = NULL;
		size_t n = 0;

		if (use_list_removed(fs->use, t, kinds[k], &inos, &n))
			return;
		for (size_t i = 0; i < n; i++) {
			int64_t id = ino_id_of(inos[i]);
			struct store_node node;
			fuse_ino_t parent;
			/* A group's nodeid: the node it was handed out as (use.c U2). */
			int r = kinds[k] == INO_GROUP ? use_node(fs->use, inos[i], &id) : 0;

			if (!r)
				r = store_node_get(st, id, &node, &err);

			if (r || !node.parent || ino_make(INO_NODE, node.parent, &parent))
				continue;
			fuse_lowlevel_notify_delete(fs->se, parent, inos[i], node.name,
			                            node.namelen);
		}
		free(inos);
	}
}

/*
 * A failure of the watcher's that may last (the catalog unreadable, last use not recorded):
 * logged when it begins and when its message changes, and once when it ends. Not at every
 * tick (a line each quarter second), nor once in the daemon's life, as a file error's key
 * would have it (every later failure, of any kind, went unsaid).
 */
struct condition {
	const char *what;
	char said[sizeof(((struct cfs_err *)0)->msg)];
};

static void condition_failed(struct condition *c, int r, const struct cfs_err *err)
{
	const char *msg = err->msg[0] ? err->msg : strerror(-r);

	if (strcmp(c->said, msg) == 0)
		return;
	snprintf(c->said, sizeof(c->said), "%s", msg);
	log_msg(LOG_LEVEL_ERR, "%s: %s", c->what, msg);
}

static void condition_ok(struct condition *c)
{
	if (!c->said[0])
		return;
	c->said[0] = '\0';
	log_msg(LOG_LEVEL_NOTICE, "%s: working again", c->what);
}

/* Write the last use of the environments used since the last flush. */
static void flush_use(struct fsd *fs, struct store *st, struct condition *c)
{
	struct cfs_err err = {{0}};
	int64_t *ids = NULL;
	size_t n = 0;
	int r = use_take(fs->use, &ids, &n);

	if (!r && n)
		r = store_env_touch(st, ids, n, time(NULL), &err);
	if (r)
		condition_failed(c, r, &err);
	else
		condition_ok(c);
	free(ids);
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
	if (!gone && !added && t->n == old->n) {
		/* Another commit (say, a last-used time): nothing the mount shows changed. */
		envtab_put(t);
		goto out;
	}
	/* Publish first, so a lookup that follows a notification finds the new table. */
	envtab_publish(fs, t);
	/* Shared files seen through a removed environment now keep a live one (use.c U2). */
	use_rehome(fs->use, st, t);
	evict_removed(fs, st, t);
	diff(old, t, notify_removed, fs, &gone);
	diff(t, old, notify_added, fs, &added);
	meta_tables(fs, old, t);
	r = fuse_lowlevel_notify_inval_inode(fs->se, INO_ROOT, 0, 0);
	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_inval_inode root: %s", strerror(-r));
	r = 0;
out:
	envtab_put(old);
	return r;
}

/* Sleep until woken (a writer waiting, or asked to stop) or timeout_ms passed; true when
 * asked to stop. */
static bool watch_wait(struct fsd *fs, struct store_listener *l, int timeout_ms)
{
	struct pollfd p[2] = {
	        {.fd = fs->watch_wake, .events = POLLIN},
	        {.fd = l ? store_listener_fd(l) : -1, .events = POLLIN},
	};

	if (!atomic_load(&fs->watch_stopping))
		poll(p, 2, timeout_ms);
	return atomic_load(&fs->watch_stopping);
}

/* Writers waiting to hear that the mount shows their change (mounts.c). */
struct waiting {
	int conns[WATCH_MAX_WAITING];
	size_t n;
};

static void take_writers(struct store_listener *l, struct waiting *w)
{
	while (l && w->n < WATCH_MAX_WAITING) {
		int c = store_listener_accept(l);

		if (c < 0)
			break;
		w->conns[w->n++] = c;
	}
}

static void answer_writers(struct waiting *w)
{
	for (size_t i = 0; i < w->n; i++)
		store_listener_answer(w->conns[i]);
	w->n = 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *watch_main(void *arg)
{
	struct fsd *fs = arg;
	struct store_listener *l = fs->listener;
	struct waiting w = {.n = 0};
	struct cfs_err err = {{0}};
	struct store *st = NULL;
	struct condition watching = {.what = "watcher"},
	                 last_use = {.what = "cannot record last use"};
	int64_t flushed, tick;
	uint64_t seen = 0, v;
	bool logged = false;
	int r;

	for (;;) {
		/* Writable to record last use; a read-only store is still served. */
		r = store_open_notify(fs->store_dir, 0, log_notice, NULL, &st, &err);
		if (r == -EROFS || r == -EACCES) {
			log_msg(LOG_LEVEL_WARNING, "%s: last use is not recorded",
			        err.msg[0] ? err.msg : strerror(-r));
			r = store_open(fs->store_dir, STORE_READONLY, &st, &err);
		}
		if (!r)
			break;
		if (!logged)
			log_msg(LOG_LEVEL_ERR, "watcher: %s", err.msg[0] ? err.msg : strerror(-r));
		logged = true;
		if (watch_wait(fs, NULL, WATCH_INTERVAL_MS))
			return NULL;
	}
	/* The listener was bound before the table was loaded: a writer that committed since
	 * waits in its backlog, and is answered once this catches up. The table was loaded before
	 * the daemon forked: catch up with what came since. */
	if (store_changes(st, &seen, &err) == 0 && reload(fs, st) == 0)
		meta_refresh(fs, st, true);
	flushed = tick = now_ms();
	for (;;) {
		int64_t now = now_ms();

		if (now - tick < WATCH_INTERVAL_MS &&
		    watch_wait(fs, w.n < WATCH_MAX_WAITING ? l : NULL,
		               (int)(WATCH_INTERVAL_MS - (now - tick))))
			break;
		if (atomic_load(&fs->watch_stopping))
			break;
		take_writers(l, &w);
		worker_sweep_idle();
		now = now_ms();
		if (now - tick >= WATCH_INTERVAL_MS)
			tick = now;
		if (now - flushed >= USE_FLUSH_SECS * 1000) {
			flush_use(fs, st, &last_use);
			flushed = now;
		}
		r = store_changes(st, &v, &err);
		if (r) {
			condition_failed(&watching, r, &err);
			continue;
		}
		condition_ok(&watching);
		/* On failure the counter is not taken and the writers keep waiting: the next
		 * tick tries again. Any commit may change what .condafs says (a tag, a last
		 * use, a broken mark). */
		if (v != seen && reload(fs, st) == 0 && meta_refresh(fs, st, true) == 0)
			seen = v;
		if (v == seen)
			answer_writers(&w);
	}
	answer_writers(&w);
	flush_use(fs, st, &last_use);
	store_close(st);
	return NULL;
}

void watch_listen(struct fsd *fs)
{
	struct cfs_err err = {{0}};
	int r = store_listen(fs->store_dir, &fs->listener, &err);

	if (r)
		log_msg(LOG_LEVEL_WARNING,
		        "%s: writers cannot tell this mount of their changes, which it shows "
		        "within %d ms instead",
		        err.msg[0] ? err.msg : strerror(-r), WATCH_INTERVAL_MS);
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
	uint64_t one = 1;

	if (!fs->watch_running)
		return;
	atomic_store(&fs->watch_stopping, true);
	if (write(fs->watch_wake, &one, sizeof(one)) < 0)
		log_msg(LOG_LEVEL_DEBUG, "waking the watcher: %s", strerror(errno));
	pthread_join(fs->watch_thread, NULL);
	fs->watch_running = false;
}
