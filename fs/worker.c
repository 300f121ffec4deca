// SPDX-License-Identifier: MIT
/*
 * What each FUSE worker thread keeps for itself, so that requests take no lock: a store
 * handle (a store is for one thread at a time; it holds this thread's zstd context and
 * its last opened objects), a reference to the environment table, a reply buffer, the
 * last nodes it resolved and the link counts of groups. Made on a thread's first request,
 * closed when the thread exits.
 *
 * A worker reads one SQLite snapshot per second of requests (STORE_SNAPSHOT), and SQLite
 * cannot restart its write-ahead log while any snapshot is held: a worker idle in the
 * kernel with one would let the log grow with every ingest for as long as the mount sits
 * unused. So every worker is registered, holds its own lock from worker_get to worker_put
 * (uncontended: nothing else takes it but a sweep once a quarter second), and the watcher
 * lets go of the snapshots of workers idle for WORKER_IDLE_MS (worker_sweep_idle).
 */
#include "fsd.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Resolved nodeids, direct-mapped: what lookups and listings just returned is what the
 * kernel asks about next (a read after a lookup, the listing of a subdirectory). */
#define WORKER_NODES 256
/* Group link counts, direct-mapped. */
#define WORKER_NLINKS 1024
/* A worker with no request for this long lets go of its snapshot. */
#define WORKER_IDLE_MS 1000

struct worker {
	/* Held by the worker's thread from worker_get to worker_put, and by the sweep while
	 * it lets go of st's snapshot: it protects st and idle_since. */
	pthread_mutex_t lock;
	int64_t idle_since; /* ms, CLOCK_MONOTONIC_COARSE: when the last request ended */
	/* The registry's list, under registry_lock. */
	struct worker *next, **pprev;
	struct fsd *fs;
	struct store *st;
	struct envtab *tab; /* a reference; replaced when fs->envtab_version moves */
	uint64_t tab_version;
	void *buf;
	size_t bufsize;
	struct wnode nodes[WORKER_NODES];
	struct {
		int64_t group; /* 0: empty */
		uint32_t nlink;
	} nlinks[WORKER_NLINKS];
};

static pthread_key_t worker_key;
static pthread_once_t worker_once = PTHREAD_ONCE_INIT;
static int worker_key_err;

/* Every live worker, for the sweep. Taken before a worker's lock, never after. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct worker *registry;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void worker_free(void *p)
{
	struct worker *w = p;

	if (!w)
		return;
	pthread_mutex_lock(&registry_lock);
	*w->pprev = w->next;
	if (w->next)
		w->next->pprev = w->pprev;
	pthread_mutex_unlock(&registry_lock);
	pthread_mutex_destroy(&w->lock);
	store_close(w->st);
	envtab_put(w->tab);
	free(w->buf);
	free(w);
}

static void worker_key_init(void)
{
	worker_key_err = -pthread_key_create(&worker_key, worker_free);
}

int worker_store_open(struct fsd *fs, struct store **ret, struct cfs_err *err)
{
	int r = store_open(fs->store_dir, STORE_READONLY | STORE_SNAPSHOT, ret, err);

	if (!r && fs->frames)
		store_share_frames(*ret, fs->frames);
	return r;
}

/* Forget everything that came from the old table: nodes and link counts of removed or
 * replaced environments must not be served from here. The store handle is opened afresh
 * too: a handle can keep reading the catalog as it was (a statement left on its row pins
 * SQLite's snapshot), and must see the environments the new table names. */
static void worker_refresh(struct worker *w)
{
	if (w->tab) {
		struct cfs_err err = {{0}};
		struct store *st;
		int r = worker_store_open(w->fs, &st, &err);

		if (r) {
			log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
		} else {
			store_close(w->st);
			w->st = st;
		}
	}
	envtab_put(w->tab);
	w->tab = envtab_get(w->fs);
	w->tab_version = w->tab->version;
	memset(w->nodes, 0, sizeof(w->nodes));
	memset(w->nlinks, 0, sizeof(w->nlinks));
}

int worker_get(struct fsd *fs, struct worker **ret)
{
	struct cfs_err err = {{0}};
	struct worker *w;
	int r;

	mountpoint_raise_readahead(fs);
	pthread_once(&worker_once, worker_key_init);
	if (worker_key_err)
		return worker_key_err;
	w = pthread_getspecific(worker_key);
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -ENOMEM;
		w->fs = fs;
		r = worker_store_open(fs, &w->st, &err);
		if (r) {
			log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
			free(w);
			return r;
		}
		pthread_mutex_init(&w->lock, NULL);
		pthread_mutex_lock(&registry_lock);
		w->next = registry;
		w->pprev = &registry;
		if (registry)
			registry->pprev = &w->next;
		registry = w;
		pthread_mutex_unlock(&registry_lock);
		r = -pthread_setspecific(worker_key, w);
		if (r) {
			worker_free(w);
			return r;
		}
	}
	pthread_mutex_lock(&w->lock);
	if (!w->tab || atomic_load(&fs->envtab_version) != w->tab_version)
		worker_refresh(w);
	else if ((r = store_snapshot_refresh(w->st, &err)))
		log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
	*ret = w;
	return 0;
}

void worker_put(struct worker *w)
{
	if (!w)
		return;
	w->idle_since = now_ms();
	pthread_mutex_unlock(&w->lock);
}

void worker_sweep_idle(void)
{
	int64_t now = now_ms();

	pthread_mutex_lock(&registry_lock);
	for (struct worker *w = registry; w; w = w->next) {
		/* Busy: it is serving a request, so it is not idle. */
		if (pthread_mutex_trylock(&w->lock))
			continue;
		if (now - w->idle_since >= WORKER_IDLE_MS)
			store_snapshot_release(w->st);
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_unlock(&registry_lock);
}

void worker_release_self(void)
{
	struct worker *w;

	pthread_once(&worker_once, worker_key_init);
	if (worker_key_err)
		return;
	w = pthread_getspecific(worker_key);
	pthread_setspecific(worker_key, NULL);
	worker_free(w);
}

struct store *worker_store(struct worker *w)
{
	return w->st;
}

const struct envtab *worker_envtab(struct worker *w)
{
	return w->tab;
}

uint64_t worker_version(const struct worker *w)
{
	return w->tab_version;
}

int worker_buf(struct worker *w, size_t size, void **ret)
{
	if (size > w->bufsize) {
		void *p = realloc(w->buf, size);

		if (!p)
			return -ENOMEM;
		w->buf = p;
		w->bufsize = size;
	}
	*ret = w->buf;
	return 0;
}

int worker_group_nlink(struct worker *w, int64_t group, uint32_t *ret, struct cfs_err *err)
{
	unsigned slot = (unsigned)((uint64_t)group % WORKER_NLINKS);
	uint32_t nlink;
	int r;

	if (w->nlinks[slot].group == group) {
		*ret = w->nlinks[slot].nlink;
		return 0;
	}
	/* A lookup has its own node: the group's count alone, not another environment's row. */
	r = store_group_get(w->st, group, NULL, &nlink, err);
	if (r)
		return r;
	w->nlinks[slot].group = group;
	w->nlinks[slot].nlink = nlink;
	*ret = nlink;
	return 0;
}

static struct wnode *node_slot(struct worker *w, fuse_ino_t ino)
{
	return &w->nodes[(ino * 0x9e3779b97f4a7c15ull) >> 56 & (WORKER_NODES - 1)];
}

void worker_remember(struct worker *w, fuse_ino_t ino, const struct store_node *n,
                     const struct fsd_env *env, uint32_t nlink)
{
	struct wnode *wn = node_slot(w, ino);

	wn->ino = ino;
	wn->n = *n;
	wn->env = env;
	wn->nlink = nlink;
}

int worker_node(struct worker *w, fuse_ino_t ino, const struct wnode **ret, struct cfs_err *err)
{
	struct wnode *wn = node_slot(w, ino);
	enum ino_kind kind;
	int64_t id, node;
	int r;

	if (wn->ino == ino) {
		*ret = wn;
		return 0;
	}
	r = ino_split(ino, &kind, &id);
	if (r)
		return r;
	wn->ino = 0;
	switch (kind) {
	case INO_NODE:
		r = store_node_get(w->st, id, &wn->n, err);
		if (r)
			break;
		wn->nlink = 1;
		wn->env = envtab_by_id(w->tab, wn->n.env_id);
		/* A node of an environment we do not serve (removed, or not seen yet). */
		if (!wn->env)
			r = -ESTALE;
		break;
	case INO_GROUP:
		/* The node it was handed out as (use.c U2), for its path in messages and its
		 * environment's last use; else the group alone, identical in every
		 * environment: no prefix needed. */
		if (use_node(w->fs->use, ino, &node) == 0 &&
		    store_node_get(w->st, node, &wn->n, err) == 0 && wn->n.group == id)
			r = store_group_get(w->st, id, NULL, &wn->nlink, err);
		else
			r = store_group_get(w->st, id, &wn->n, &wn->nlink, err);
		wn->env = r ? NULL : envtab_by_id(w->tab, wn->n.env_id);
		break;
	default:
		r = -ESTALE;
		break;
	}
	if (r == -ENOENT)
		r = -ESTALE;
	if (r)
		return r;
	wn->ino = ino;
	*ret = wn;
	return 0;
}
