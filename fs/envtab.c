// SPDX-License-Identifier: MIT
/*
 * The environment table: every environment being served, by id (a node's environment,
 * hence its prefix), and the root directory's names: live environments by hash and tags.
 * Removed environments whose rows gc has not reaped are served by id only, for the files
 * the kernel still has open. A table is immutable once published and reference-counted:
 * the watcher builds a new one when the store changes and swaps it in, while requests
 * keep using the one they hold until they finish.
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
	for (size_t i = 0; i < t->n; i++) {
		free(t->envs[i].prefix);
		for (int f = 0; f < FROZEN_FILES; f++)
			free(t->envs[i].served[f]);
	}
	free(t->envs);
	free(t->by_id);
	free(t->root);
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

static int cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

static int cmp_root(const void *a, const void *b)
{
	const struct fsd_root *x = a, *y = b;

	return cmp_name(x->name, x->len, y->name, y->len);
}

/* The root's names: the live environments, then the tags, sorted together. */
static int load_root(struct store *st, struct envtab *t, struct cfs_err *err)
{
	struct store_tag *tags = NULL;
	size_t ntags = 0;
	int r = store_tag_list(st, NULL, &tags, &ntags, err);

	if (r)
		return r;
	t->root = calloc(t->nlive + ntags + 1, sizeof(*t->root));
	if (!t->root) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->n; i++) {
		struct fsd_root *e = &t->root[t->nroot];

		if (t->envs[i].removed)
			continue;
		memcpy(e->name, t->envs[i].hash, 33);
		e->len = 32;
		e->ino = t->envs[i].ino;
		e->env = &t->envs[i];
		t->nroot++;
	}
	for (size_t i = 0; i < ntags; i++) {
		struct fsd_root *e = &t->root[t->nroot];

		if (ino_make(INO_TAG, tags[i].id, &e->ino))
			continue;
		memcpy(e->name, tags[i].name, sizeof(e->name));
		e->len = (uint8_t)strlen(e->name);
		memcpy(e->target, tags[i].hash, sizeof(e->target));
		e->mtime.tv_sec = tags[i].set_at;
		t->nroot++;
	}
	qsort(t->root, t->nroot, sizeof(*t->root), cmp_root);
out:
	free(tags);
	return r;
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
	r = store_env_list_all(st, &v, &n, err);
	if (r)
		goto out;
	t->envs = calloc(n ? n : 1, sizeof(*t->envs));
	t->by_id = calloc(n ? n : 1, sizeof(*t->by_id));
	if (!t->envs || !t->by_id) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct fsd_env *e = &t->envs[t->n];

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
		e->removed = v[i].removed != 0;
		t->nlive += !e->removed;
		e->generation = ino_generation(e->hash);
		if (asprintf(&e->prefix, "%s/%s", fs->mountpoint, e->hash) < 0) {
			e->prefix = NULL;
			r = -ENOMEM;
			goto out;
		}
		e->prefix_len = strlen(e->prefix);
		e->created = v[i].created;
		t->by_id[t->n] = e;
		t->n++;
		/* Made once per environment and table: a few hundred bytes each. */
		for (int f = 0; f < FROZEN_FILES && !r; f++)
			r = frozen_text((enum frozen_file)f, e->prefix, e->hash, &e->served[f],
			                &e->served_len[f]);
		if (r)
			goto out;
	}
	qsort(t->by_id, t->n, sizeof(*t->by_id), cmp_id);
	r = load_root(st, t, err);
out:
	free(v);
	if (r) {
		envtab_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

const struct fsd_root *envtab_root_find(const struct envtab *t, const char *name, size_t len)
{
	size_t lo = 0, hi = t->nroot;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_name(t->root[mid].name, t->root[mid].len, name, len);

		if (c == 0)
			return &t->root[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct fsd_root *envtab_tag_by_ino(const struct envtab *t, fuse_ino_t ino)
{
	/* Tags are few, and the kernel asks for each once (it caches link targets). */
	for (size_t i = 0; i < t->nroot; i++)
		if (t->root[i].ino == ino)
			return &t->root[i];
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
