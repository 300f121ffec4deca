// SPDX-License-Identifier: MIT
/*
 * MOUNTPOINT/.condafs: what users who may not open the store read instead (README,
 * "Security model"). Read-only files, 0444 root:root in 0555 directories:
 *
 *   envs.json               what `condafs ls --json` prints
 *   stats.json              what `condafs stats --json` prints
 *   packages/<hash>.json    what `condafs show --json <hash>` prints, per live environment
 *   mount.json              the store this daemon serves and where
 *
 * The watcher thread makes envs.json and stats.json again whenever the store's change
 * counter moves (watch.c), off every request's path; a new text is a new inode, and the
 * old name is dropped from the kernel's cache, so everything is cached for ever as the
 * rest of the mount is. A superseded text is kept as long as the kernel holds its inode
 * (its lookup count, given back by FORGET), so a reader who opened it reads it whole.
 * packages/<hash>.json never changes for a given environment: it is made when asked for,
 * and the last few are kept. Nothing here counts as use of an environment. The directory
 * is not listed in the root (the root lists environments and tags only).
 */
#include "fsd.h"

#include <condafs/report.h>

#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Nodeids: kind INO_META, id = x << 2 | sub:
 *   sub 0  x = 1 the .condafs directory, 2 packages/, 3 mount.json (x >= 4: served.c's)
 *   sub 1  envs.json of text serial x        sub 2  stats.json of text serial x
 *   sub 3  packages/<hash>.json of the environment with id x
 */
enum {
	SUB_FIXED = 0,
	SUB_ENVS = 1,
	SUB_STATS = 2,
	SUB_PACKAGES = 3,
};
enum {
	FIXED_DIR = 1,
	FIXED_PACKAGES = 2,
	FIXED_MOUNT = 3,
};

#define FOREVER       DBL_MAX
#define PKG_CACHE     8
#define PACKAGES_NAME "packages"
/* "<32 hex>.json" */
#define PKG_NAME_LEN 37

/* An environment's unique bytes. */
struct uniq {
	int64_t id;
	uint64_t bytes;
};

/* An environment's CUDA need (report_envs_cuda): its package set never changes. */
struct need {
	int64_t id;
	char cuda[16];
	char source[256];
};

/* One generation of envs.json and stats.json. */
struct meta_snap {
	uint64_t serial;
	char *envs, *stats;
	size_t envs_len, stats_len;
	uint64_t kernel_refs; /* lookups of its two files the kernel has not forgotten */
	struct timespec made;
	struct meta_snap *next; /* in meta.old */
};

struct meta {
	/* Set before the session starts: no lock. */
	char *mount_json;
	size_t mount_len;
	struct timespec started;

	/* Under lock: the texts requests read, and the packages texts made last. */
	pthread_mutex_t lock;
	struct meta_snap *cur; /* NULL until the first publication */
	struct meta_snap *old; /* superseded, still held by the kernel */
	struct {
		int64_t env; /* 0: empty */
		char *text;
		size_t len;
	} pkgs[PKG_CACHE];
	unsigned pkgs_next;

	/* The watcher's alone: unique bytes per environment id, computed for one set of
	 * environment ids (they change only when that set does). */
	uint64_t serial;
	int64_t *ids; /* sorted: every environment, live or removed, when computed */
	size_t nids;
	struct uniq *uniq; /* by id */
	size_t nuniq;
	/* ...and the CUDA need of each live environment, by id, read once per environment:
	 * 0.6 ms each for 300 packages, too much to read every one again at every change. */
	struct need *needs;
	size_t nneeds;
};

static fuse_ino_t meta_ino(int64_t x, unsigned sub)
{
	fuse_ino_t ino = 0;

	/* Serials and environment ids stay far below 2^59. */
	ino_make(INO_META, x << 2 | sub, &ino);
	return ino;
}

static void split(fuse_ino_t ino, int64_t *x, unsigned *sub)
{
	int64_t id = ino_id_of(ino);

	*x = id >> 2;
	*sub = (unsigned)(id & 3);
}

bool meta_owns(fuse_ino_t ino)
{
	return ino != INO_ROOT && ino_kind_of(ino) == INO_META && !served_owns(ino);
}

bool meta_is_root_name(const char *name)
{
	return !strcmp(name, META_DIR_NAME);
}

int meta_new(struct fsd *fs, struct meta **ret)
{
	struct meta *m = calloc(1, sizeof(*m));
	int r;

	if (!m)
		return -ENOMEM;
	r = -pthread_mutex_init(&m->lock, NULL);
	if (r) {
		free(m);
		return r;
	}
	clock_gettime(CLOCK_REALTIME, &m->started);
	r = report_mount_json(fs->store_dir, fs->mountpoint, &m->mount_json, &m->mount_len);
	if (r) {
		meta_free(m);
		return r;
	}
	*ret = m;
	return 0;
}

static void snap_free(struct meta_snap *s)
{
	if (!s)
		return;
	free(s->envs);
	free(s->stats);
	free(s);
}

void meta_free(struct meta *m)
{
	if (!m)
		return;
	snap_free(m->cur);
	while (m->old) {
		struct meta_snap *s = m->old;

		m->old = s->next;
		snap_free(s);
	}
	for (int i = 0; i < PKG_CACHE; i++)
		free(m->pkgs[i].text);
	free(m->ids);
	free(m->uniq);
	free(m->needs);
	free(m->mount_json);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* ---- the watcher: making the texts ---- */

static int cmp_uniq(const void *a, const void *b)
{
	int64_t x = ((const struct uniq *)a)->id, y = ((const struct uniq *)b)->id;

	return (x > y) - (x < y);
}

/* Unique bytes of v's environments: from the cache while the set of environments is the
 * one it was computed for (nothing else moves them), computed afresh otherwise. */
static int unique_bytes(struct meta *m, struct store *st, const struct envtab *t,
                        struct report_env *v, size_t n, struct cfs_err *err)
{
	int64_t *ids = malloc((t->n ? t->n : 1) * sizeof(*ids));
	struct uniq *u = malloc((n ? n : 1) * sizeof(*u));
	bool same;
	int r = 0;

	if (!ids || !u) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->n; i++)
		ids[i] = t->by_id[i]->id;
	same = m->ids && m->nids == t->n && !memcmp(ids, m->ids, t->n * sizeof(*ids));
	for (size_t i = 0; i < n && !r; i++) {
		struct uniq key = {v[i].env.id, 0};
		const struct uniq *hit =
		        same ? bsearch(&key, m->uniq, m->nuniq, sizeof(*m->uniq), cmp_uniq) : NULL;

		if (hit)
			v[i].unique_bytes = hit->bytes;
		else
			r = store_env_unique_bytes(st, &v[i].env, &v[i].unique_bytes, err);
		u[i] = (struct uniq){v[i].env.id, v[i].unique_bytes};
	}
	if (r)
		goto out;
	qsort(u, n, sizeof(*u), cmp_uniq);
	free(m->ids);
	free(m->uniq);
	m->ids = ids;
	m->nids = t->n;
	m->uniq = u;
	m->nuniq = n;
	return 0;
out:
	free(ids);
	free(u);
	return r;
}

static int cmp_need(const void *a, const void *b)
{
	int64_t x = ((const struct need *)a)->id, y = ((const struct need *)b)->id;

	return (x > y) - (x < y);
}

/* The CUDA need of v's environments: from the cache, read for those not in it. */
static int cuda_needs(struct meta *m, struct store *st, struct report_env *v, size_t n,
                      struct cfs_err *err)
{
	struct need *u = malloc((n ? n : 1) * sizeof(*u));
	int r = 0;

	if (!u)
		return -ENOMEM;
	for (size_t i = 0; i < n && !r; i++) {
		struct need key = {.id = v[i].env.id};
		const struct need *hit =
		        m->nneeds ? bsearch(&key, m->needs, m->nneeds, sizeof(*m->needs), cmp_need)
		                  : NULL;

		if (hit) {
			memcpy(v[i].cuda, hit->cuda, sizeof(v[i].cuda));
			memcpy(v[i].cuda_source, hit->source, sizeof(v[i].cuda_source));
		} else {
			r = report_envs_cuda(st, &v[i], 1, err);
		}
		u[i].id = v[i].env.id;
		memcpy(u[i].cuda, v[i].cuda, sizeof(u[i].cuda));
		memcpy(u[i].source, v[i].cuda_source, sizeof(u[i].source));
	}
	if (r) {
		free(u);
		return r;
	}
	qsort(u, n, sizeof(*u), cmp_need);
	free(m->needs);
	m->needs = u;
	m->nneeds = n;
	return 0;
}

static int make_snap(struct meta *m, struct store *st, const struct envtab *t,
                     struct meta_snap **ret, struct cfs_err *err)
{
	struct meta_snap *s = calloc(1, sizeof(*s));
	struct store_env *envs = NULL;
	struct store_tag *tags = NULL;
	struct report_env *v = NULL;
	struct store_stats stats;
	size_t n = 0, ntags = 0;
	int r;

	if (!s)
		return -ENOMEM;
	r = store_env_list(st, &envs, &n, err);
	if (!r)
		r = store_tag_list(st, NULL, &tags, &ntags, err);
	if (!r)
		r = store_stats(st, &stats, err);
	if (r)
		goto out;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		v[i].env = envs[i];
	r = unique_bytes(m, st, t, v, n, err);
	if (!r)
		r = cuda_needs(m, st, v, n, err);
	if (!r)
		r = report_envs_tag(v, n, tags, ntags);
	if (!r)
		r = report_envs_json(v, n, &s->envs, &s->envs_len);
	if (!r)
		r = report_stats_json(&stats, v, n, &s->stats, &s->stats_len);
	clock_gettime(CLOCK_REALTIME, &s->made);
out:
	report_envs_free(v, n);
	free(envs);
	free(tags);
	if (r) {
		snap_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

static bool same_text(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && !memcmp(a, b, alen);
}

static void notify_entry(struct fsd *fs, fuse_ino_t parent, const char *name)
{
	int r = fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));

	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_inval_entry .condafs/%s: %s", name, strerror(-r));
}

static void notify_inode(struct fsd *fs, fuse_ino_t ino)
{
	int r = fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);

	if (r && r != -ENOENT)
		log_msg(LOG_LEVEL_DEBUG, "notify_inval_inode .condafs: %s", strerror(-r));
}

int meta_refresh(struct fsd *fs, struct store *st, bool notify)
{
	struct meta *m = fs->meta;
	struct envtab *t = envtab_get(fs);
	struct meta_snap *s = NULL, *drop = NULL;
	struct cfs_err err = {{0}};
	int r = make_snap(m, st, t, &s, &err);

	envtab_put(t);
	if (r) {
		log_file_error(meta_ino(FIXED_DIR, SUB_FIXED), "cannot publish .condafs: %s",
		               err.msg[0] ? err.msg : strerror(-r));
		return r;
	}
	pthread_mutex_lock(&m->lock);
	if (m->cur && same_text(m->cur->envs, m->cur->envs_len, s->envs, s->envs_len) &&
	    same_text(m->cur->stats, m->cur->stats_len, s->stats, s->stats_len)) {
		/* A commit that changed nothing shown (another daemon's last use, say). */
		pthread_mutex_unlock(&m->lock);
		snap_free(s);
		return 0;
	}
	s->serial = ++m->serial;
	if (m->cur && m->cur->kernel_refs) {
		m->cur->next = m->old;
		m->old = m->cur;
	} else {
		drop = m->cur;
	}
	m->cur = s;
	pthread_mutex_unlock(&m->lock);
	snap_free(drop);
	/* Outside the lock: the kernel may be waiting on a request that needs it. */
	if (notify) {
		notify_entry(fs, meta_ino(FIXED_DIR, SUB_FIXED), "envs.json");
		notify_entry(fs, meta_ino(FIXED_DIR, SUB_FIXED), "stats.json");
		notify_inode(fs, meta_ino(FIXED_DIR, SUB_FIXED));
	}
	return 0;
}

static bool env_name(const char *name, char hash[33])
{
	if (strlen(name) != PKG_NAME_LEN || strcmp(name + 32, ".json") != 0 ||
	    strspn(name, "0123456789abcdef") != 32)
		return false;
	memcpy(hash, name, 32);
	hash[32] = '\0';
	return true;
}

void meta_tables(struct fsd *fs, const struct envtab *old, const struct envtab *t)
{
	fuse_ino_t dir = meta_ino(FIXED_PACKAGES, SUB_FIXED);
	bool changed = false;

	/* A name that came or went, or now names another environment (--replace). */
	for (int pass = 0; pass < 2; pass++) {
		const struct envtab *a = pass ? t : old, *b = pass ? old : t;

		for (size_t i = 0; i < a->nroot; i++) {
			const struct fsd_root *x = &a->root[i], *y;
			char name[PKG_NAME_LEN + 1];

			if (!x->env)
				continue;
			y = envtab_root_find(b, x->name, x->len);
			if (y && y->env && y->env->id == x->env->id)
				continue;
			snprintf(name, sizeof(name), "%s.json", x->name);
			notify_entry(fs, dir, name);
			changed = true;
		}
	}
	if (changed)
		notify_inode(fs, dir);
}

/* ---- requests ---- */

static void dir_attr(fuse_ino_t ino, const struct timespec *mtime, struct stat *st)
{
	*st = (struct stat){
	        .st_ino = ino,
	        .st_mode = S_IFDIR | 0555,
	        .st_nlink = 2,
	        .st_size = 4096,
	        .st_blocks = 8,
	        .st_blksize = 4096,
	        .st_mtim = *mtime,
	        .st_ctim = *mtime,
	        .st_atim = *mtime,
	};
}

static void file_attr(fuse_ino_t ino, size_t size, const struct timespec *mtime, struct stat *st)
{
	*st = (struct stat){
	        .st_ino = ino,
	        .st_mode = S_IFREG | 0444,
	        .st_nlink = 1,
	        .st_size = (off_t)size,
	        .st_blocks = (blkcnt_t)((size + 511) / 512),
	        .st_blksize = 4096,
	        .st_mtim = *mtime,
	        .st_ctim = *mtime,
	        .st_atim = *mtime,
	};
}

/* The snapshot of serial x, current or still held; NULL when gone. Under m->lock. */
static struct meta_snap *snap_find(struct meta *m, int64_t x)
{
	if (m->cur && m->cur->serial == (uint64_t)x)
		return m->cur;
	for (struct meta_snap *s = m->old; s; s = s->next)
		if (s->serial == (uint64_t)x)
			return s;
	return NULL;
}

/* packages/<hash>.json of the live environment env: a copy of its text in *ret. */
static int packages_text(struct fsd *fs, struct worker *w, const struct fsd_env *env, char **ret,
                         size_t *ret_len)
{
	struct meta *m = fs->meta;
	struct cfs_err err = {{0}};
	struct store_env se = {0};
	struct pkgset *set = NULL;
	char *text = NULL;
	size_t len = 0;
	int r;

	pthread_mutex_lock(&m->lock);
	for (int i = 0; i < PKG_CACHE; i++)
		if (m->pkgs[i].env == env->id) {
			text = malloc(m->pkgs[i].len + 1);
			if (text) {
				memcpy(text, m->pkgs[i].text, m->pkgs[i].len + 1);
				len = m->pkgs[i].len;
			}
			pthread_mutex_unlock(&m->lock);
			if (!text)
				return -ENOMEM;
			*ret = text;
			*ret_len = len;
			return 0;
		}
	pthread_mutex_unlock(&m->lock);
	r = store_env_find(worker_store(w), env->hash, &se, &err);
	if (!r && se.id != env->id)
		r = -ESTALE;
	if (!r)
		r = store_env_packages(worker_store(w), &se, &set, &err);
	if (!r)
		r = report_packages_json(&se, set, &text, &len);
	pkgset_free(set);
	if (r) {
		if (r != -ESTALE && r != -ENOENT)
			log_file_error(meta_ino(env->id, SUB_PACKAGES), "%s/%s/%s.json: %s",
			               META_DIR_NAME, PACKAGES_NAME, env->hash,
			               err.msg[0] ? err.msg : strerror(-r));
		return r == -ENOENT ? -ESTALE : r;
	}
	pthread_mutex_lock(&m->lock);
	{
		unsigned k = m->pkgs_next++ % PKG_CACHE;
		char *copy = malloc(len + 1);

		if (copy) {
			memcpy(copy, text, len + 1);
			free(m->pkgs[k].text);
			m->pkgs[k].env = env->id;
			m->pkgs[k].text = copy;
			m->pkgs[k].len = len;
		}
	}
	pthread_mutex_unlock(&m->lock);
	*ret = text;
	*ret_len = len;
	return 0;
}

/* The live environment a packages nodeid or name stands for. */
static const struct fsd_env *live_env(const struct envtab *t, int64_t id, const char *hash)
{
	const struct fsd_env *env = hash ? NULL : envtab_by_id(t, id);
	const struct fsd_root *re;

	if (hash) {
		re = envtab_root_find(t, hash, 32);
		env = re ? re->env : NULL;
	}
	return env && !env->removed ? env : NULL;
}

/* The attributes of ino, and for a file its text (malloc'd, when ret_text is not NULL). */
static int node_attr(struct fsd *fs, fuse_ino_t ino, struct stat *st, uint64_t *ret_gen,
                     char **ret_text, size_t *ret_len)
{
	struct meta *m = fs->meta;
	const struct fsd_env *env;
	struct meta_snap *s;
	struct worker *w;
	unsigned sub;
	int64_t x;
	size_t len = 0;
	char *text = NULL;
	int r = 0;

	split(ino, &x, &sub);
	*ret_gen = 0;
	switch (sub) {
	case SUB_FIXED:
		if (x == FIXED_DIR || x == FIXED_PACKAGES) {
			dir_attr(ino, &m->started, st);
			return 0;
		}
		if (x != FIXED_MOUNT)
			return -ESTALE;
		file_attr(ino, m->mount_len, &m->started, st);
		if (ret_text && !(text = strdup(m->mount_json)))
			return -ENOMEM;
		len = m->mount_len;
		break;
	case SUB_ENVS:
	case SUB_STATS:
		pthread_mutex_lock(&m->lock);
		s = snap_find(m, x);
		if (s) {
			const char *src = sub == SUB_ENVS ? s->envs : s->stats;

			len = sub == SUB_ENVS ? s->envs_len : s->stats_len;
			file_attr(ino, len, &s->made, st);
			if (ret_text && !(text = malloc(len + 1)))
				r = -ENOMEM;
			else if (text)
				memcpy(text, src, len + 1);
		}
		pthread_mutex_unlock(&m->lock);
		if (!s)
			return -ESTALE;
		break;
	case SUB_PACKAGES:
		r = worker_get(fs, &w);
		if (r)
			return r;
		env = live_env(worker_envtab(w), x, NULL);
		r = env ? packages_text(fs, w, env, &text, &len) : -ESTALE;
		if (!r) {
			file_attr(ino, len, &m->started, st);
			*ret_gen = env->generation;
		}
		worker_put(w);
		if (r)
			return r;
		break;
	default:
		/* sub is two bits, each with its case above: never here. */
		return -ESTALE;
	}
	if (r) {
		free(text);
		return r;
	}
	if (ret_text) {
		*ret_text = text;
		*ret_len = len;
	} else {
		free(text);
	}
	return 0;
}

static void forget_one(struct meta *m, fuse_ino_t ino, uint64_t nlookup)
{
	struct meta_snap *drop = NULL, **pp;
	unsigned sub;
	int64_t x;

	split(ino, &x, &sub);
	if (sub != SUB_ENVS && sub != SUB_STATS)
		return;
	pthread_mutex_lock(&m->lock);
	for (pp = &m->old; *pp; pp = &(*pp)->next)
		if ((*pp)->serial == (uint64_t)x)
			break;
	if (m->cur && m->cur->serial == (uint64_t)x)
		m->cur->kernel_refs -=
		        nlookup < m->cur->kernel_refs ? nlookup : m->cur->kernel_refs;
	else if (*pp) {
		struct meta_snap *s = *pp;

		s->kernel_refs -= nlookup < s->kernel_refs ? nlookup : s->kernel_refs;
		if (!s->kernel_refs) {
			*pp = s->next;
			drop = s;
		}
	}
	pthread_mutex_unlock(&m->lock);
	snap_free(drop);
}

void meta_forget(struct fsd *fs, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(fs->meta, ino, nlookup);
}

static void entry_of(fuse_ino_t ino, const struct stat *st, uint64_t gen,
                     struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->generation = gen;
	e->attr = *st;
	e->attr_timeout = FOREVER;
	e->entry_timeout = FOREVER;
}

/* The nodeid of name in the directory parent; 0 when there is none. */
static fuse_ino_t child_ino(struct fsd *fs, fuse_ino_t parent, const char *name, int *ret_err)
{
	struct meta *m = fs->meta;
	char hash[33];
	int64_t x;
	unsigned sub;
	fuse_ino_t ino = 0;

	*ret_err = 0;
	if (parent == INO_ROOT)
		return meta_ino(FIXED_DIR, SUB_FIXED);
	split(parent, &x, &sub);
	if (sub != SUB_FIXED || (x != FIXED_DIR && x != FIXED_PACKAGES)) {
		*ret_err = -ENOTDIR;
		return 0;
	}
	if (x == FIXED_PACKAGES) {
		struct worker *w;
		const struct fsd_env *env;

		*ret_err = worker_get(fs, &w);
		if (*ret_err)
			return 0;
		env = env_name(name, hash) ? live_env(worker_envtab(w), 0, hash) : NULL;
		ino = env ? meta_ino(env->id, SUB_PACKAGES) : 0;
		worker_put(w);
		return ino;
	}
	if (!strcmp(name, PACKAGES_NAME))
		return meta_ino(FIXED_PACKAGES, SUB_FIXED);
	if (!strcmp(name, "mount.json"))
		return meta_ino(FIXED_MOUNT, SUB_FIXED);
	if (strcmp(name, "envs.json") != 0 && strcmp(name, "stats.json") != 0)
		return 0;
	/* The reference the reply gives the kernel is taken with the choice, so a new text
	 * published in between cannot free this one first. */
	pthread_mutex_lock(&m->lock);
	if (m->cur) {
		ino = meta_ino((int64_t)m->cur->serial, name[0] == 'e' ? SUB_ENVS : SUB_STATS);
		m->cur->kernel_refs++;
	}
	pthread_mutex_unlock(&m->lock);
	/* Not published yet (the first texts failed): a miss the kernel does not keep. */
	if (!ino)
		*ret_err = -ENOENT;
	return ino;
}

void meta_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fsd *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	struct stat st;
	uint64_t gen;
	int r;
	fuse_ino_t ino = child_ino(fs, parent, name, &r);

	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	if (!ino) {
		/* No such name, for ever (a packages name is dropped when it comes). */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = FOREVER;
		fuse_reply_entry(req, &e);
		return;
	}
	r = node_attr(fs, ino, &st, &gen, NULL, NULL);
	/* A packages file whose environment went in between: not a miss to keep. */
	if (r) {
		forget_one(fs->meta, ino, 1);
		fuse_reply_err(req, r == -ESTALE ? ENOENT : -r);
		return;
	}
	entry_of(ino, &st, gen, &e);
	if (fuse_reply_entry(req, &e))
		forget_one(fs->meta, ino, 1);
}

void meta_getattr(fuse_req_t req, fuse_ino_t ino)
{
	struct stat st;
	uint64_t gen;
	int r = node_attr(fuse_req_userdata(req), ino, &st, &gen, NULL, NULL);

	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, FOREVER);
}

void meta_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off)
{
	struct stat st;
	uint64_t gen;
	size_t len = 0;
	char *text = NULL;
	int r = node_attr(fuse_req_userdata(req), ino, &st, &gen, &text, &len);

	if (!r && !S_ISREG(st.st_mode))
		r = -EISDIR;
	if (!r && off < 0)
		r = -EINVAL;
	if (r)
		fuse_reply_err(req, -r);
	else if ((uint64_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, text + off,
		               len - (size_t)off < size ? len - (size_t)off : size);
	free(text);
}

/* Listing: entries carry attributes for their type, never a lookup (nodeid 0 in a
 * readdirplus entry makes the kernel keep no inode of it), so nothing here needs
 * forgetting. */
struct listing {
	fuse_req_t req;
	bool plus;
	char *buf;
	size_t size, pos;
	off_t next; /* the offset of the entry being added: its index + 1 */
	off_t off;  /* the first entry wanted */
};

/* false when the buffer is full. */
static bool list_add(struct listing *l, const char *name, fuse_ino_t ino, mode_t mode)
{
	struct fuse_entry_param e;
	size_t room = l->size - l->pos, need;

	if (l->next++ <= l->off)
		return true;
	memset(&e, 0, sizeof(e));
	e.attr.st_ino = ino;
	e.attr.st_mode = mode;
	if (l->plus)
		need = fuse_add_direntry_plus(l->req, l->buf + l->pos, room, name, &e, l->next - 1);
	else
		need = fuse_add_direntry(l->req, l->buf + l->pos, room, name, &e.attr, l->next - 1);
	if (need > room)
		return false;
	l->pos += need;
	return true;
}

void meta_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct fsd *fs = fuse_req_userdata(req);
	struct listing l = {req, plus, NULL, size, 0, 1, off};
	struct worker *w = NULL;
	unsigned sub;
	int64_t x;
	void *buf;
	int r;

	split(ino, &x, &sub);
	if (sub != SUB_FIXED || (x != FIXED_DIR && x != FIXED_PACKAGES)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	r = worker_get(fs, &w);
	if (!r)
		r = worker_buf(w, size, &buf);
	if (r) {
		worker_put(w);
		fuse_reply_err(req, -r);
		return;
	}
	l.buf = buf;
	if (!list_add(&l, ".", ino, S_IFDIR) ||
	    !list_add(&l, "..", x == FIXED_DIR ? INO_ROOT : meta_ino(FIXED_DIR, SUB_FIXED),
	              S_IFDIR))
		goto reply;
	if (x == FIXED_DIR) {
		struct meta *m = fs->meta;
		fuse_ino_t envs = 0, stats = 0;

		pthread_mutex_lock(&m->lock);
		if (m->cur) {
			envs = meta_ino((int64_t)m->cur->serial, SUB_ENVS);
			stats = meta_ino((int64_t)m->cur->serial, SUB_STATS);
		}
		pthread_mutex_unlock(&m->lock);
		if ((envs && !list_add(&l, "envs.json", envs, S_IFREG)) ||
		    !list_add(&l, "mount.json", meta_ino(FIXED_MOUNT, SUB_FIXED), S_IFREG) ||
		    !list_add(&l, PACKAGES_NAME, meta_ino(FIXED_PACKAGES, SUB_FIXED), S_IFDIR) ||
		    (stats && !list_add(&l, "stats.json", stats, S_IFREG)))
			goto reply;
	} else {
		const struct envtab *t = worker_envtab(w);

		for (size_t i = 0; i < t->nroot; i++) {
			char name[PKG_NAME_LEN + 1];

			if (!t->root[i].env)
				continue;
			snprintf(name, sizeof(name), "%s.json", t->root[i].name);
			if (!list_add(&l, name, meta_ino(t->root[i].env->id, SUB_PACKAGES),
			              S_IFREG))
				break;
		}
	}
reply:
	fuse_reply_buf(req, l.buf, l.pos);
	worker_put(w);
}
