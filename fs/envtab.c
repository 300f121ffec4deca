// SPDX-License-Identifier: MIT
/*
 * The environment table: every environment being served, by hash (the root directory) and
 * by id (a node's environment, hence its prefix). A table is immutable once published and
 * reference-counted: the watcher builds a new one when the store changes and swaps it in,
 * while requests keep using the one they hold until they finish.
 */
#include "fsd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void envtab_free(struct envtab *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->by_hash[i].prefix);
	free(t->by_hash);
	free(t->by_id);
	free(t);
}

void envtab_put(struct envtab *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		envtab_free(t);
}

struct envtab *envtab_get(struct fsd *fs)
{
	struct envtab *t;

	pthread_mutex_lock(&fs->envtab_lock);
	t = fs->envtab;
	atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&fs->envtab_lock);
	return t;
}

void envtab_publish(struct fsd *fs, struct envtab *t)
{
	struct envtab *old;

	pthread_mutex_lock(&fs->envtab_lock);
	old = fs->envtab;
	fs->envtab = t;
	atomic_store(&fs->envtab_version, t->version);
	pthread_mutex_unlock(&fs->envtab_lock);
	envtab_put(old);
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = (*(struct fsd_env *const *)a)->id, y = (*(struct fsd_env *const *)b)->id;

	return (x > y) - (x < y);
}

int envtab_load(struct fsd *fs, struct store *st, uint64_t version, struct envtab **ret,
                struct cfs_err *err)
{
	struct store_env *v = NULL;
	struct envtab *t;
	size_t n = 0;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	atomic_init(&t->refs, 1);
	t->version = version;
	clock_gettime(CLOCK_REALTIME, &t->changed);
	r = store_env_list(st, &v, &n, err);
	if (r)
		goto out;
	t->by_hash = calloc(n ? n : 1, sizeof(*t->by_hash));
	t->by_id = calloc(n ? n : 1, sizeof(*t->by_id));
	if (!t->by_hash || !t->by_id) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct fsd_env *e = &t->by_hash[t->n];

		r = store_node_get(st, v[i].root, &e->top, err);
		if (r == -ENOENT) {
			/* Deleted between the two queries: the next change brings it up to date. */
			r = 0;
			continue;
		}
		if (r)
			goto out;
		r = ino_make(INO_NODE, v[i].root, &e->ino);
		if (r)
			goto out;
		e->id = v[i].id;
		memcpy(e->hash, v[i].hash, sizeof(e->hash));
		e->generation = ino_generation(e->hash);
		if (asprintf(&e->prefix, "%s/%s", fs->mountpoint, e->hash) < 0) {
			e->prefix = NULL;
			r = -ENOMEM;
			goto out;
		}
		e->prefix_len = strlen(e->prefix);
		t->by_id[t->n] = e;
		t->n++;
	}
	qsort(t->by_id, t->n, sizeof(*t->by_id), cmp_id);
out:
	free(v);
	if (r) {
		envtab_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

const struct fsd_env *envtab_by_hash(const struct envtab *t, const char *name, size_t len)
{
	size_t lo = 0, hi = t->n;

	if (len != 32)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(t->by_hash[mid].hash, name, 32);

		if (c == 0)
			return &t->by_hash[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct fsd_env *envtab_by_id(const struct envtab *t, int64_t id)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int64_t x = t->by_id[mid]->id;

		if (x == id)
			return t->by_id[mid];
		if (x < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}
