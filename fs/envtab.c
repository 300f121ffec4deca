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
static int make_root(struct envtab *t, const struct store_tag *tags, size_t ntags)
{
	t->root = calloc(t->nlive + ntags + 1, sizeof(*t->root));
	if (!t->root)
		return -ENOMEM;
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
		e->name[sizeof(e->name) - 1] = '\0';
		e->len = (uint8_t)strlen(e->name);
		memcpy(e->target, tags[i].hash, sizeof(e->target));
		e->target[sizeof(e->target) - 1] = '\0';
		e->mtime.tv_sec = tags[i].set_at;
		t->nroot++;
	}
	qsort(t->root, t->nroot, sizeof(*t->root), cmp_root);
	return 0;
}

/* Environment v, whose top directory is top, as the table's next one. */
static int add_env(struct envtab *t, const char *mountpoint, const struct store_env *v,
                   const struct store_node *top)
{
	struct fsd_env *e = &t->envs[t->n];
	int r = ino_make(INO_NODE, v->root, &e->ino);

	if (r)
		return r;
	e->id = v->id;
	e->top = *top;
	memcpy(e->hash, v->hash, sizeof(e->hash));
	e->hash[sizeof(e->hash) - 1] = '\0';
	e->removed = v->removed != 0;
	e->generation = ino_generation(e->hash);
	if (asprintf(&e->prefix, "%s/%s", mountpoint, e->hash) < 0) {
		e->prefix = NULL;
		return -ENOMEM;
	}
	e->prefix_len = strlen(e->prefix);
	e->created = v->created;
	t->by_id[t->n] = e;
	t->n++;
	t->nlive += !e->removed;
	/* Made once per environment and table: a few hundred bytes each. */
	for (int f = 0; f < FROZEN_FILES && !r; f++)
		r = frozen_text((enum frozen_file)f, e->prefix, e->hash, &e->served[f],
		                &e->served_len[f]);
	return r;
}

int envtab_build(const char *mountpoint, uint64_t version, const struct store_env *v,
                 const struct store_node *tops, size_t n, const struct store_tag *tags,
                 size_t ntags, struct envtab **ret)
{
	struct envtab *t = calloc(1, sizeof(*t));
	int r = 0;

	if (!t)
		return -ENOMEM;
	atomic_init(&t->refs, 1);
	t->version = version;
	clock_gettime(CLOCK_REALTIME, &t->changed);
	/* by_id holds pointers into envs. */
	t->envs = calloc(n ? n : 1, sizeof(*t->envs));
	t->by_id = calloc(n ? n : 1, sizeof(struct fsd_env *));
	if (!t->envs || !t->by_id)
		r = -ENOMEM;
	for (size_t i = 0; !r && i < n; i++)
		r = add_env(t, mountpoint, &v[i], &tops[i]);
	if (!r) {
		qsort(t->by_id, t->n, sizeof(struct fsd_env *), cmp_id);
		r = make_root(t, tags, ntags);
	}
	if (r) {
		envtab_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

int envtab_load(struct fsd *fs, struct store *st, uint64_t version, struct envtab **ret,
                struct cfs_err *err)
{
	struct store_env *v = NULL;
	struct store_node *tops = NULL;
	struct store_tag *tags = NULL;
	size_t n = 0, kept = 0, ntags = 0;
	int r = store_env_list_all(st, &v, &n, err);

	if (r)
		return r;
	tops = calloc(n ? n : 1, sizeof(*tops));
	if (!tops) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		r = store_node_get(st, v[i].root, &tops[kept], err);
		/* Deleted between the two queries: the next change brings it up to date. */
		if (r == -ENOENT)
			continue;
		if (r)
			goto out;
		if (kept != i)
			v[kept] = v[i];
		kept++;
	}
	r = store_tag_list(st, NULL, &tags, &ntags, err);
	if (!r)
		r = envtab_build(fs->mountpoint, version, v, tops, kept, tags, ntags, ret);
out:
	free(tags);
	free(tops);
	free(v);
	return r;
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
		if (t->root[i].ino == ino && !t->root[i].env)
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
