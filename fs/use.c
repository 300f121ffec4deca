// SPDX-License-Identifier: MIT
/*
 * What the kernel holds of each environment, and when each was last used.
 *
 * The kernel keeps a lookup count per nodeid: one for every entry we hand it (a lookup
 * reply, a readdirplus entry), until it forgets them. We keep the same counts, each
 * nodeid charged to one environment, and hold an environment in the store (store_hold_env)
 * while anything of it is charged: gc does not reap a removed environment we hold, so its
 * open files keep being served until the kernel lets go of them (gc.c G4).
 *
 * U1: an environment is held before the first entry charged to it reaches the kernel, and
 *     released only when nothing is charged to it any more.
 * U2: a nodeid is charged to an environment that has a row serving it: its own for a node,
 *     for a group one with a node in the group, the node remembered (moved to a live
 *     environment holding the same file at the same path when its environment is
 *     removed, so that a shared file cached through another environment does not keep a
 *     removed one from being reaped).
 *
 * Last use: requests mark their environment with the time (a mutex and a probe, no I/O);
 * the watcher writes the marks to the catalog once a minute (use_take).
 */
#include "fsd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An open-addressing table from a non-zero 64-bit key, linear probing, deletion by
 * backward shift (no tombstones). */
struct slot {
	uint64_t key; /* 0: empty */
	uint64_t count;
	int64_t a, b;
};

struct table {
	struct slot *slots;
	size_t cap, n; /* cap a power of two */
};

static size_t table_home(const struct table *t, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 17) & (t->cap - 1);
}

static struct slot *table_find(const struct table *t, uint64_t key)
{
	if (!t->cap)
		return NULL;
	for (size_t i = table_home(t, key);; i = (i + 1) & (t->cap - 1)) {
		if (t->slots[i].key == key)
			return &t->slots[i];
		if (!t->slots[i].key)
			return NULL;
	}
}

static int table_grow(struct table *t)
{
	struct table bigger = {.cap = t->cap ? 2 * t->cap : 64};

	bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		size_t j;

		if (!t->slots[i].key)
			continue;
		for (j = table_home(&bigger, t->slots[i].key); bigger.slots[j].key;
		     j = (j + 1) & (bigger.cap - 1))
			;
		bigger.slots[j] = t->slots[i];
	}
	bigger.n = t->n;
	free(t->slots);
	*t = bigger;
	return 0;
}

/* The slot of key, made (zeroed) when missing. */
static int table_get(struct table *t, uint64_t key, struct slot **ret)
{
	size_t i;
	int r;

	*ret = table_find(t, key);
	if (*ret)
		return 0;
	if ((t->n + 1) * 4 > t->cap * 3 && (r = table_grow(t)))
		return r;
	for (i = table_home(t, key); t->slots[i].key; i = (i + 1) & (t->cap - 1))
		;
	t->slots[i] = (struct slot){.key = key};
	t->n++;
	*ret = &t->slots[i];
	return 0;
}

static void table_del(struct table *t, struct slot *s)
{
	size_t i = (size_t)(s - t->slots), j = i;

	for (;;) {
		j = (j + 1) & (t->cap - 1);
		if (!t->slots[j].key)
			break;
		size_t h = table_home(t, t->slots[j].key);

		/* Move j into the hole at i unless its home lies cyclically in (i, j]. */
		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].key = 0;
	t->n--;
}

/*
 * inos: nodeid -> count = the kernel's lookup count, a = environment charged.
 * envs: environment id -> count = nodeids charged to it, a = last use marked (seconds),
 *       b = last use taken for the catalog.
 */
struct use {
	pthread_mutex_t lock;
	struct store_hold *hold;
	struct table inos, envs;
};

int use_new(const char *store_dir, struct use **ret, struct cfs_err *err)
{
	struct use *u = calloc(1, sizeof(*u));
	int r;

	if (!u)
		return -ENOMEM;
	r = store_hold_open(store_dir, &u->hold, err);
	/* A store nobody can write (a read-only file system, another owner) has no gc to
	 * hold environments against: serve it all the same. */
	if (r == -EROFS || r == -EACCES || r == -ENOENT) {
		log_msg(LOG_LEVEL_WARNING, "%s: removed environments are not held",
		        err && err->msg[0] ? err->msg : strerror(-r));
		r = 0;
	}
	if (r) {
		free(u);
		return r;
	}
	pthread_mutex_init(&u->lock, NULL);
	*ret = u;
	return 0;
}

void use_free(struct use *u)
{
	if (!u)
		return;
	store_hold_close(u->hold);
	free(u->inos.slots);
	free(u->envs.slots);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

/* An environment gains (+1) or loses (-1) a charged nodeid; under u->lock. */
static int charge(struct use *u, int64_t env_id, int delta)
{
	struct slot *e;
	int r = table_get(&u->envs, (uint64_t)env_id, &e);

	if (r)
		return r;
	if (delta > 0 && e->count == 0 && u->hold && (r = store_hold_env(u->hold, env_id))) {
		if (!e->a)
			table_del(&u->envs, e);
		return r;
	}
	e->count += (uint64_t)(int64_t)delta;
	if (e->count == 0) {
		if (u->hold)
			store_hold_release(u->hold, env_id);
		/* Kept while it has a use to write. */
		if (e->a <= e->b)
			table_del(&u->envs, e);
	}
	return 0;
}

int use_entry(struct use *u, fuse_ino_t ino, int64_t env_id, int64_t node)
{
	struct slot *s;
	int r;

	pthread_mutex_lock(&u->lock);
	r = table_get(&u->inos, ino, &s);
	if (!r && s->count == 0) {
		r = charge(u, env_id, +1);
		if (r) {
			table_del(&u->inos, s);
		} else {
			s->a = env_id;
			s->b = node;
		}
	}
	if (!r)
		s->count++;
	pthread_mutex_unlock(&u->lock);
	return r;
}

int use_node(struct use *u, fuse_ino_t ino, int64_t *ret)
{
	const struct slot *s;

	pthread_mutex_lock(&u->lock);
	s = table_find(&u->inos, ino);
	*ret = s ? s->b : 0;
	pthread_mutex_unlock(&u->lock);
	return *ret ? 0 : -ENOENT;
}

void use_forget(struct use *u, fuse_ino_t ino, uint64_t nlookup)
{
	struct slot *s;

	pthread_mutex_lock(&u->lock);
	s = table_find(&u->inos, ino);
	if (s) {
		s->count = nlookup < s->count ? s->count - nlookup : 0;
		if (s->count == 0) {
			charge(u, s->a, -1);
			table_del(&u->inos, s);
		}
	}
	pthread_mutex_unlock(&u->lock);
}

void use_mark(struct use *u, int64_t env_id)
{
	time_t now = time(NULL);
	struct slot *e;

	pthread_mutex_lock(&u->lock);
	if (table_get(&u->envs, (uint64_t)env_id, &e) == 0 && e->a < now)
		e->a = now;
	pthread_mutex_unlock(&u->lock);
}

int use_take(struct use *u, int64_t **ret, size_t *ret_n)
{
	int64_t *ids;
	size_t n = 0;
	int r = 0;

	pthread_mutex_lock(&u->lock);
	ids = malloc((u->envs.n ? u->envs.n : 1) * sizeof(*ids));
	if (!ids) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < u->envs.cap; i++) {
		struct slot *e = &u->envs.slots[i];

		if (!e->key || e->a <= e->b)
			continue;
		ids[n++] = (int64_t)e->key;
		e->b = e->a;
	}
	/* Deleting shifts slots back: a second pass over what is left is simplest. */
	for (size_t i = 0; i < u->envs.cap;) {
		struct slot *e = &u->envs.slots[i];

		if (e->key && e->count == 0)
			table_del(&u->envs, e);
		else
			i++;
	}
	*ret = ids;
	*ret_n = n;
out:
	pthread_mutex_unlock(&u->lock);
	return r;
}

int use_list_removed(struct use *u, const struct envtab *t, enum ino_kind kind, fuse_ino_t **ret,
                     size_t *ret_n)
{
	fuse_ino_t *inos = NULL;
	size_t n = 0;
	int r = 0;

	pthread_mutex_lock(&u->lock);
	for (size_t i = 0; i < u->inos.cap; i++) {
		const struct slot *s = &u->inos.slots[i];
		const struct fsd_env *env;

		if (!s->key || ino_kind_of(s->key) != kind)
			continue;
		env = envtab_by_id(t, s->a);
		if (env && !env->removed)
			continue;
		if (!(n & (n + 1))) {
			void *v = realloc(inos, (2 * n + 1) * sizeof(*inos));

			if (!v) {
				r = -ENOMEM;
				break;
			}
			inos = v;
		}
		inos[n++] = s->key;
	}
	pthread_mutex_unlock(&u->lock);
	if (r) {
		free(inos);
		return r;
	}
	*ret = inos;
	*ret_n = n;
	return 0;
}

void use_rehome(struct use *u, struct store *st, const struct envtab *t)
{
	struct cfs_err err = {{0}};
	fuse_ino_t *inos = NULL;
	size_t n = 0;

	if (use_list_removed(u, t, INO_GROUP, &inos, &n))
		return;

	for (size_t i = 0; i < n; i++) {
		struct store_node node;
		const struct fsd_env *env = NULL;
		struct slot *s;
		char path[4096];
		int64_t was;

		/* The removed environment is held, so its tree still reads: the file's path in
		 * it, then the first live environment with the same file there. */
		if (use_node(u, inos[i], &was) ||
		    store_node_path(st, was, path, sizeof(path), &err))
			continue;
		for (size_t k = 0; !env && k < t->nroot; k++) {
			const struct fsd_env *e = t->root[k].env;

			if (e && !e->removed &&
			    store_path_lookup(st, e->top.id, path, &node, &err) == 0 &&
			    node.type == NODE_FILE && node.group == ino_id_of(inos[i]))
				env = e;
		}
		if (!env)
			continue;
		pthread_mutex_lock(&u->lock);
		s = table_find(&u->inos, inos[i]);
		if (s && s->a != env->id && charge(u, env->id, +1) == 0) {
			charge(u, s->a, -1);
			s->a = env->id;
			s->b = node.id;
		}
		pthread_mutex_unlock(&u->lock);
	}
	free(inos);
}
