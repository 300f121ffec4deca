// SPDX-License-Identifier: MIT
/*
 * Environments' trees in the catalog, made and counted: the nodes an ingest inserts become
 * directory objects and an index at catalog_env_ref (docs/tree-format.md), and what an
 * environment's files name is counted in at its commit and out when it is hidden or
 * reaped, one update per distinct object and group; verify --repair recounts from the
 * trees; a version 4 catalog's rows become trees.
 *
 * Invariant (with catalog.c's C1-C8 and catalog_tree.c's T5):
 * T4: trees.refs counts, for a directory object, the entries of environment indexes naming
 *     it; for an index, the environments naming it (envs.tree); for a relocation record
 *     kept apart, the stored directory objects naming it. A row goes in the transaction
 *     that brings its count to 0, and a directory object's records lose its references
 *     with it.
 */
#include "catalog_tree_int.h"

#include "err.h"
#include "memdup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Directory objects and indexes are compressed at this level (catalog_tree.c reads them). */
#define TREE_LEVEL 3

/* The stored form of tree bytes of kind k: malloc'd into *ret. */
static int pack_tree(const uint8_t *data, size_t len, enum tree_kind k, uint8_t **ret,
                     size_t *ret_len)
{
	size_t bound = k == TREE_RELOC ? len : ZSTD_compressBound(len), n;

	*ret = malloc(bound ? bound : 1);
	if (!*ret)
		return -ENOMEM;
	if (k == TREE_RELOC) {
		memcpy(*ret, data, len);
		*ret_len = len;
		return 0;
	}
	n = ZSTD_compress(*ret, bound, data, len, TREE_LEVEL);
	if (ZSTD_isError(n)) {
		free(*ret);
		*ret = NULL;
		return -ENOMEM;
	}
	*ret_len = n;
	return 0;
}

/* ---- counting (C2, C7, C8) ---- */

/* What one environment's files name: keys and groups, each sorted, with their counts. */
struct counts {
	struct objkey *keys;
	size_t nkeys, capkeys;
	int64_t *groups;
	size_t ngroups, capgroups;
};

static void counts_free(struct counts *k)
{
	free(k->keys);
	free(k->groups);
}

static int counts_add(struct counts *k, const struct objkey *key, int64_t group)
{
	if (k->nkeys == k->capkeys) {
		size_t cap = k->capkeys ? 2 * k->capkeys : 1024;
		struct objkey *v = realloc(k->keys, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		k->keys = v;
		k->capkeys = cap;
	}
	k->keys[k->nkeys++] = *key;
	if (!group)
		return 0;
	if (k->ngroups == k->capgroups) {
		size_t cap = k->capgroups ? 2 * k->capgroups : 1024;
		int64_t *v = realloc(k->groups, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		k->groups = v;
		k->capgroups = cap;
	}
	k->groups[k->ngroups++] = group;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static int id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void counts_sort(struct counts *k)
{
	if (k->nkeys)
		qsort(k->keys, k->nkeys, sizeof(*k->keys), key_cmp);
	if (k->ngroups)
		qsort(k->groups, k->ngroups, sizeof(*k->groups), id_cmp);
}

static int count_file(void *ctx, const struct envref *e, const struct store_node *n,
                      const struct dirtree_entry *ent)
{
	(void)e;
	return n->type == NODE_FILE ? counts_add(ctx, &ent->key, n->group) : 0;
}

/* The files of environment e counted, sorted. */
static int env_counts(struct catalog *c, const struct envref *e, struct counts *ret,
                      struct cfs_err *err)
{
	int r = ctree_walk(c, e, count_file, ret, err);

	if (r == -ENOMEM)
		return err_set(err, r, "out of memory");
	if (!r)
		counts_sort(ret);
	return r;
}

/* sign * the counts of environment env: objects' names (C2, C7), groups' names and, with
 * links, their live names (C8); groups left with no name go. */
static int apply_counts(struct catalog *c, const struct counts *k, int64_t env, int sign, bool refs,
                        bool links, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = 0;

	for (size_t i = 0; refs && !r && i < k->nkeys;) {
		size_t j = i + 1;

		while (j < k->nkeys && memcmp(k->keys[j].b, k->keys[i].b, 16) == 0)
			j++;
		r = ctree_stmt(c, T_OBJ_COUNT, &s, err);
		if (!r) {
			sqlite3_bind_blob(s, 1, k->keys[i].b, 16, SQLITE_STATIC);
			sqlite3_bind_int64(s, 2, sign * (int64_t)(j - i));
			sqlite3_bind_int64(s, 3, env);
			r = cat_step_done(c, s, err);
		}
		i = j;
	}
	for (size_t i = 0; !r && i < k->ngroups;) {
		size_t j = i + 1;
		int64_t n;

		while (j < k->ngroups && k->groups[j] == k->groups[i])
			j++;
		n = sign * (int64_t)(j - i);
		r = ctree_stmt(c, T_GRP_COUNT, &s, err);
		if (!r) {
			sqlite3_bind_int64(s, 1, k->groups[i]);
			sqlite3_bind_int64(s, 2, refs ? n : 0);
			sqlite3_bind_int64(s, 3, links ? n : 0);
			r = cat_step_done(c, s, err);
		}
		if (!r && refs && sign < 0 && (r = ctree_stmt(c, T_GRP_DROP, &s, err)) == 0) {
			sqlite3_bind_int64(s, 1, k->groups[i]);
			r = cat_step_done(c, s, err);
		}
		i = j;
	}
	return r;
}

/* Tree key of kind k gains delta references (T4); *ret_refs what it has now, -ENOENT for
 * no row. */
static int tree_ref(struct catalog *c, const struct objkey *key, enum tree_kind k, int64_t delta,
                    int64_t *ret_refs, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_REF, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, delta);
	sqlite3_bind_int(s, 3, k);
	r = cat_step_row(c, s, err);
	*ret_refs = r ? 0 : sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return r;
}

static int tree_delete(struct catalog *c, const struct objkey *key, enum tree_kind k,
                       struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_DEL, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, k);
	return cat_step_done(c, s, err);
}

/* Directory object t is gone: its records kept apart lose a reference (T4). */
static int dir_release(struct catalog *c, const struct dirtree *t, struct cfs_err *err)
{
	struct dirtree_entry ent;
	int64_t refs;
	int r = 0;

	for (uint32_t i = 0; !r && i < t->n; i++) {
		dirtree_get(t, i, &ent);
		if (ent.type != NODE_FILE || !ent.reloc_external)
			continue;
		r = tree_ref(c, &ent.reloc_key, TREE_RELOC, -1, &refs, err);
		if (r == -ENOENT)
			r = 0;
		else if (!r && refs <= 0)
			r = tree_delete(c, &ent.reloc_key, TREE_RELOC, err);
	}
	return r;
}

int cattree_env_unlink(struct catalog *c, int64_t id, struct cfs_err *err)
{
	struct counts k = {0};
	struct envref e;
	int r = ctree_env(c, id, &e, err);

	if (!r && !e.removed)
		r = env_counts(c, &e, &k, err);
	if (!r && !e.removed)
		r = apply_counts(c, &k, id, -1, false, true, err);
	counts_free(&k);
	return r == -ENOENT ? 0 : r;
}

int cattree_env_drop(struct catalog *c, int64_t id, struct cfs_err *err)
{
	const struct envindex *x = NULL;
	struct counts k = {0};
	struct envref e;
	int64_t refs = 0;
	int r = ctree_env(c, id, &e, err);

	if (r == -ENOENT)
		return 0;
	if (!r)
		r = env_counts(c, &e, &k, err);
	if (!r)
		r = apply_counts(c, &k, id, -1, true, !e.removed, err);
	counts_free(&k);
	/* Directory objects are cached apart from indexes: x stays valid meanwhile. */
	if (!r)
		r = ctree_index(c, &e, &x, err);
	for (uint32_t i = 0; !r && i < x->ndirs; i++) {
		struct envindex_dir d;
		const struct dirtree *t;
		uint32_t n;

		envindex_dir(x, i, &d, &n);
		r = tree_ref(c, &d.key, TREE_DIR, -1, &refs, err);
		if (r == -ENOENT) {
			r = 0;
			continue;
		}
		if (r || refs > 0)
			continue;
		r = ctree_dir(c, &e, &d.key, &t, err);
		if (!r)
			r = dir_release(c, t, err);
		if (!r)
			r = tree_delete(c, &d.key, TREE_DIR, err);
	}
	if (!r)
		r = tree_ref(c, &e.tree, TREE_INDEX, -1, &refs, err);
	if (!r && refs <= 0)
		r = tree_delete(c, &e.tree, TREE_INDEX, err);
	if (r == -ENOENT)
		r = 0;
	cattree_forget(cat_tree(c));
	return r;
}

/* ---- building (catalog_node_insert, then catalog_env_ref) ---- */

int catalog_node_insert(struct catalog *c, const struct catalog_node_row *row, struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct pend *p;
	bool fail = false;

	if (t->npend && row->id != t->pend[t->npend - 1].row.id + 1)
		return err_set(err, -EINVAL, "%s: node %lld inserted out of order", cat_path(c),
		               (long long)row->id);
	if (t->npend == t->cappend) {
		size_t cap = t->cappend ? 2 * t->cappend : 1024;

		p = realloc(t->pend, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->pend = p;
		t->cappend = cap;
	}
	p = &t->pend[t->npend];
	*p = (struct pend){.row = *row};
	p->row.name = memdup_or_null(row->name, row->namelen, &fail);
	p->row.target = memdup_or_null(row->target, row->target_len, &fail);
	p->row.reloc = memdup_or_null(row->reloc, row->reloc_len, &fail);
	if (fail) {
		free((void *)p->row.name);
		free((void *)p->row.target);
		free((void *)p->row.reloc);
		return -ENOMEM;
	}
	t->npend++;
	return 0;
}

/* Store tree bytes of kind k under their key, or count one more reference to the row
 * there (T4). *ret_new: this call inserted it. */
static int tree_put(struct catalog *c, const uint8_t *data, size_t len, enum tree_kind k,
                    struct objkey *ret_key, bool *ret_new, struct cfs_err *err)
{
	sqlite3_stmt *s;
	uint8_t *stored = NULL;
	size_t n = 0;
	int64_t refs;
	int r;

	ctree_key(data, len, ret_key);
	r = tree_ref(c, ret_key, k, 1, &refs, err);
	*ret_new = r == -ENOENT;
	if (r != -ENOENT)
		return r;
	r = pack_tree(data, len, k, &stored, &n);
	if (!r)
		r = ctree_stmt(c, T_INSERT, &s, err);
	if (!r) {
		sqlite3_bind_blob(s, 1, ret_key->b, 16, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, k);
		sqlite3_bind_int64(s, 3, 1);
		sqlite3_bind_blob(s, 4, stored, (int)n, SQLITE_STATIC);
		r = cat_step_done(c, s, err);
	}
	free(stored);
	return r;
}

/* The directory object of pending directory d, whose subdirectories have theirs. */
static int build_dir(struct catalog *c, struct dirtree_builder *b, struct pend *v, struct pend *d,
                     struct cfs_err *err)
{
	size_t first = (size_t)(d->row.first_child - v[0].row.id);
	uint8_t *data = NULL;
	size_t len;
	bool fresh;
	int r = 0;

	for (size_t j = first; !r && j < first + d->row.nchildren; j++) {
		const struct catalog_node_row *k = &v[j].row;
		struct dirtree_entry e = {.type = k->type,
		                          .mode = k->mode,
		                          .mtime_ns = k->mtime_ns,
		                          .name = k->name,
		                          .namelen = k->namelen};

		switch (k->type) {
		case NODE_DIR:
			e.key = v[j].key;
			break;
		case NODE_FILE:
			e.key = k->key;
			e.size = k->size;
			e.inserts = k->inserts;
			e.group = k->group;
			e.reloc_len = k->reloc_len;
			e.reloc = k->reloc;
			if (k->reloc_len > DIRTREE_RELOC_INLINE) {
				e.reloc_external = true;
				e.reloc = NULL;
				ctree_key(k->reloc, k->reloc_len, &e.reloc_key);
			}
			break;
		case NODE_SYMLINK:
			e.target = k->target;
			e.target_len = k->target_len;
			e.inserts = k->inserts;
			e.reloc = k->reloc;
			e.reloc_len = k->reloc_len;
			break;
		}
		r = dirtree_add(b, &e, err);
	}
	if (!r)
		r = dirtree_builder_finish(b, &data, &len, err);
	if (!r)
		r = tree_put(c, data, len, TREE_DIR, &d->key, &fresh, err);
	/* A new directory object holds a reference on each record it keeps apart. */
	for (size_t j = first; !r && fresh && j < first + d->row.nchildren; j++) {
		const struct catalog_node_row *k = &v[j].row;
		struct objkey rk;
		bool rnew;

		if (k->type == NODE_FILE && k->reloc_len > DIRTREE_RELOC_INLINE)
			r = tree_put(c, k->reloc, k->reloc_len, TREE_RELOC, &rk, &rnew, err);
	}
	free(data);
	return r;
}

/* The tree of environment env from nodes v[0..n), ids from v[0].row.id on, breadth first
 * (T5): its directory objects, its index, its row's nodes and tree. */
static int build_env(struct catalog *c, int64_t env, struct pend *v, size_t n, struct cfs_err *err)
{
	struct dirtree_builder *b = NULL;
	struct envindex_dir *dirs = NULL;
	struct envindex_link *links = NULL;
	uint32_t ndirs = 0, nlinks = 0;
	uint8_t *data = NULL;
	struct objkey key;
	sqlite3_stmt *s;
	size_t len;
	bool fresh;
	int64_t base = v[0].row.id;
	int r = dirtree_builder_new(&b);

	if (!r && (n > UINT32_MAX || v[0].row.type != NODE_DIR))
		r = err_set(err, -EINVAL, "%s: environment %lld: not a tree", cat_path(c),
		            (long long)env);
	if (!r && (!(dirs = calloc(n, sizeof(*dirs))) || !(links = calloc(n, sizeof(*links)))))
		r = -ENOMEM;
	/* Deepest first: a directory's object names its subdirectories' objects. */
	for (size_t i = n; !r && i-- > 0;) {
		if (v[i].row.type != NODE_DIR)
			continue;
		if (v[i].row.nchildren &&
		    (v[i].row.first_child <= v[i].row.id ||
		     (uint64_t)(v[i].row.first_child - base) + v[i].row.nchildren > n))
			r = err_set(err, -EINVAL, "%s: node %lld: children out of range",
			            cat_path(c), (long long)v[i].row.id);
		else
			r = build_dir(c, b, v, &v[i], err);
	}
	for (size_t i = 0; !r && i < n; i++) {
		const struct catalog_node_row *k = &v[i].row;

		if (k->type == NODE_DIR)
			dirs[ndirs++] = (struct envindex_dir){
			        .key = v[i].key,
			        .self = (uint32_t)i,
			        .first_child =
			                k->nchildren ? (uint32_t)(k->first_child - base) : 0};
		if (k->type == NODE_FILE && k->hardlink)
			links[nlinks++] =
			        (struct envindex_link){(uint32_t)i, (uint32_t)(k->hardlink - base)};
	}
	/* An empty directory's children start where the next directory's do (T3). */
	for (uint32_t i = ndirs; !r && i-- > 0;)
		if (!v[dirs[i].self].row.nchildren)
			dirs[i].first_child = i + 1 < ndirs ? dirs[i + 1].first_child : (uint32_t)n;
	if (!r)
		r = envindex_build((uint32_t)n, v[0].row.mode, v[0].row.mtime_ns, dirs, ndirs,
		                   links, nlinks, &data, &len, err);
	if (!r)
		r = tree_put(c, data, len, TREE_INDEX, &key, &fresh, err);
	if (!r)
		r = ctree_stmt(c, T_ENV_SET, &s, err);
	if (!r) {
		sqlite3_bind_int64(s, 1, env);
		sqlite3_bind_int64(s, 2, (int64_t)n);
		sqlite3_bind_blob(s, 3, key.b, 16, SQLITE_STATIC);
		r = cat_step_done(c, s, err);
	}
	free(data);
	free(dirs);
	free(links);
	dirtree_builder_free(b);
	return r;
}

int catalog_env_ref(struct catalog *c, int64_t id, struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct counts k = {0};
	int r = t->npend ? 0
	                 : err_set(err, -EINVAL, "%s: an environment without nodes", cat_path(c));

	if (!r)
		r = build_env(c, id, t->pend, t->npend, err);
	for (size_t i = 0; !r && i < t->npend; i++)
		if (t->pend[i].row.type == NODE_FILE)
			r = counts_add(&k, &t->pend[i].row.key, t->pend[i].row.group);
	if (!r) {
		counts_sort(&k);
		r = apply_counts(c, &k, id, +1, true, true, err);
	}
	counts_free(&k);
	ctree_pend_clear(t);
	return r;
}

/* ---- every environment ---- */

typedef int (*env_fn)(void *ctx, const struct envref *e);

static int each_env(struct catalog *c, env_fn fn, void *ctx, struct cfs_err *err)
{
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_ENVS, &s, err);

	while (!r && (r = cat_step_row(c, s, err)) == 0) {
		if (n == cap) {
			int64_t *v = realloc(ids, (cap = cap ? 2 * cap : 64) * sizeof(*v));

			if (!v) {
				r = -ENOMEM;
				break;
			}
			ids = v;
		}
		ids[n++] = sqlite3_column_int64(s, 0);
	}
	if (s)
		sqlite3_reset(s);
	if (r == -ENOENT)
		r = 0;
	for (size_t i = 0; !r && i < n; i++) {
		struct envref e;

		r = ctree_env(c, ids[i], &e, err);
		if (!r)
			r = fn(ctx, &e);
	}
	free(ids);
	return r;
}

/* The objects whose users are looked for, by key, with their index in the caller's ids. */
struct wanted {
	struct objkey key;
	size_t i;
};

struct users_ctx {
	struct catalog *c;
	struct wanted *w;
	size_t n;
	int (*fn)(void *ctx, size_t i, int64_t env, const char *hash, int64_t node);
	void *ctx;
	struct cfs_err *err;
};

static int cmp_wanted(const void *a, const void *b)
{
	return memcmp(((const struct wanted *)a)->key.b, ((const struct wanted *)b)->key.b, 16);
}

static int user_one(void *ctx, const struct envref *e, const struct store_node *n,
                    const struct dirtree_entry *ent)
{
	struct users_ctx *u = ctx;
	struct wanted k = {.key = ent->key}, *w;

	if (n->type != NODE_FILE)
		return 0;
	w = bsearch(&k, u->w, u->n, sizeof(*u->w), cmp_wanted);
	/* Keys are unique (objects.key), so one match at most. */
	return w ? u->fn(u->ctx, w->i, e->id, e->hash, n->id) : 0;
}

static int users_env(void *ctx, const struct envref *e)
{
	struct users_ctx *u = ctx;

	return ctree_walk(u->c, e, user_one, u, u->err);
}

static int object_key(struct catalog *c, int64_t id, struct objkey *ret, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_OBJ_KEY, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, id);
	r = cat_step_row(c, s, err);
	if (!r && !ctree_column_key(s, 0, ret))
		r = -ENOENT;
	sqlite3_reset(s);
	return r;
}

int catalog_objects_users(struct catalog *c, const int64_t *ids, size_t n,
                          int (*fn)(void *ctx, size_t i, int64_t env, const char *hash,
                                    int64_t node),
                          void *ctx, struct cfs_err *err)
{
	struct users_ctx u = {.c = c, .fn = fn, .ctx = ctx, .err = err};
	int r = 0;

	if (!n)
		return 0;
	u.w = malloc(n * sizeof(*u.w));
	if (!u.w)
		return err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; !r && i < n; i++) {
		r = object_key(c, ids[i], &u.w[u.n].key, err);
		if (r == 0)
			u.w[u.n++].i = i;
		else if (r == -ENOENT)
			r = 0; /* no such object: no users */
	}
	qsort(u.w, u.n, sizeof(*u.w), cmp_wanted);
	if (!r && u.n)
		r = each_env(c, users_env, &u, err);
	free(u.w);
	return r;
}

struct dangling {
	struct catalog *c;
	struct objkey *dirs;
	size_t n, cap;
	struct cfs_err *err;
};

static int dangling_env(void *ctx, const struct envref *e)
{
	struct dangling *d = ctx;
	const struct envindex *x;
	int r = ctree_index(d->c, e, &x, d->err);

	for (uint32_t i = 0; !r && i < x->ndirs; i++) {
		struct envindex_dir dir;
		uint32_t n;

		if (d->n == d->cap) {
			size_t cap = d->cap ? 2 * d->cap : 1024;
			struct objkey *v = realloc(d->dirs, cap * sizeof(*v));

			if (!v)
				return -ENOMEM;
			d->dirs = v;
			d->cap = cap;
		}
		envindex_dir(x, i, &dir, &n);
		d->dirs[d->n++] = dir.key;
	}
	return r;
}

int catalog_dangling(struct catalog *c, struct objkey *ret_dir, struct objkey *ret_obj,
                     struct cfs_err *err)
{
	struct dangling d = {.c = c, .err = err};
	struct catalog_content o;
	int r = each_env(c, dangling_env, &d, err);

	if (!r && d.n)
		qsort(d.dirs, d.n, sizeof(*d.dirs), key_cmp);
	/* Each directory object the environments name, once, and each file in it. */
	for (size_t i = 0; !r && i < d.n; i++) {
		const struct dirtree *t;
		struct dirtree_entry ent;

		if (i && memcmp(d.dirs[i].b, d.dirs[i - 1].b, 16) == 0)
			continue;
		r = ctree_dir(c, NULL, &d.dirs[i], &t, err);
		for (uint32_t j = 0; !r && j < t->n; j++) {
			dirtree_get(t, j, &ent);
			if (ent.type != NODE_FILE)
				continue;
			r = ctree_object(c, &ent.key, &o, err);
			if (r == -ENOENT) {
				*ret_dir = d.dirs[i];
				*ret_obj = ent.key;
				free(d.dirs);
				return 0;
			}
		}
	}
	free(d.dirs);
	return r ? (r == -ENOMEM ? err_set(err, r, "out of memory") : r) : -ENOENT;
}

/* ---- recounting (verify --repair) ---- */

struct recount {
	struct catalog *c;
	struct counts k;
	bool live_only;
	struct cfs_err *err;
};

static int recount_env(void *ctx, const struct envref *e)
{
	struct recount *rc = ctx;

	if (rc->live_only && e->removed)
		return 0;
	return ctree_walk(rc->c, e, count_file, &rc->k, rc->err);
}

static size_t run_of_key(const struct counts *k, const struct objkey *key)
{
	size_t lo = 0, hi = k->nkeys, first;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(k->keys[mid].b, key->b, 16) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	while (lo < k->nkeys && memcmp(k->keys[lo].b, key->b, 16) == 0)
		lo++;
	return lo - first;
}

static size_t run_of_group(const struct counts *k, int64_t g)
{
	size_t lo = 0, hi = k->ngroups, first;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (k->groups[mid] < g)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	while (lo < k->ngroups && k->groups[lo] == g)
		lo++;
	return lo - first;
}

/* The rows of s (id, key, then the count column had_col) whose count is not want(ctx, s,
 * row): *ret malloc'd, the caller frees it. s is reset in any case. */
static int
counts_differing(struct catalog *c, sqlite3_stmt *s, int had_col,
                 int64_t (*want)(void *ctx, sqlite3_stmt *s, const struct catalog_refs *x),
                 void *ctx, struct catalog_refs **ret, size_t *ret_n, struct cfs_err *err)
{
	struct catalog_refs *v = NULL;
	size_t n = 0, cap = 0;
	int r;

	while ((r = cat_step_row(c, s, err)) == 0) {
		struct catalog_refs x = {.id = sqlite3_column_int64(s, 0),
		                         .had = sqlite3_column_int64(s, had_col)};

		ctree_column_key(s, 1, &x.key);
		x.want = want(ctx, s, &x);
		if (x.want == x.had)
			continue;
		if (n == cap) {
			struct catalog_refs *nv =
			        realloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*nv));

			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n++] = x;
	}
	sqlite3_reset(s);
	if (r != -ENOENT) {
		free(v);
		return r == -ENOMEM ? err_set(err, r, "out of memory") : r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* T4 recounted: what names each tree row, from the environments (indexes and their
 * directories) and the directory objects they name (records kept apart). */
struct tree_count {
	struct objkey key;
	int kind;
};

struct trees_recount {
	struct catalog *c;
	struct tree_count *v;
	size_t n, cap;
	struct cfs_err *err;
};

static int tree_count_add(struct trees_recount *t, const struct objkey *key, int kind)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 1024;
		struct tree_count *v = realloc(t->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n++] = (struct tree_count){*key, kind};
	return 0;
}

static int trees_env(void *ctx, const struct envref *e)
{
	struct trees_recount *t = ctx;
	const struct envindex *x;
	int r = tree_count_add(t, &e->tree, TREE_INDEX);

	if (!r)
		r = ctree_index(t->c, e, &x, t->err);
	for (uint32_t i = 0; !r && i < x->ndirs; i++) {
		struct envindex_dir d;
		uint32_t n;

		envindex_dir(x, i, &d, &n);
		r = tree_count_add(t, &d.key, TREE_DIR);
	}
	return r;
}

static int tree_count_cmp(const void *a, const void *b)
{
	const struct tree_count *x = a, *y = b;
	int c = memcmp(x->key.b, y->key.b, 16);

	return c ? c : (x->kind > y->kind) - (x->kind < y->kind);
}

static int64_t tree_count_of(const struct trees_recount *t, const struct objkey *key, int kind)
{
	struct tree_count want = {*key, kind};
	size_t lo = 0, hi = t->n, first;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (tree_count_cmp(&t->v[mid], &want) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	while (lo < t->n && tree_count_cmp(&t->v[lo], &want) == 0)
		lo++;
	return (int64_t)(lo - first);
}

static int64_t tree_want(void *ctx, sqlite3_stmt *s, const struct catalog_refs *x)
{
	return tree_count_of(ctx, &x->key, sqlite3_column_int(s, 2));
}

static int trees_wrong(struct catalog *c, struct catalog_refs **ret, size_t *ret_n,
                       struct cfs_err *err)
{
	struct trees_recount t = {.c = c, .err = err};
	sqlite3_stmt *s = NULL;
	size_t dirs;
	int r = each_env(c, trees_env, &t, err);

	/* Each directory object named, once: its records kept apart. */
	if (!r && t.n)
		qsort(t.v, t.n, sizeof(*t.v), tree_count_cmp);
	dirs = t.n;
	for (size_t i = 0; !r && i < dirs; i++) {
		const struct dirtree *d;
		struct dirtree_entry ent;

		if (t.v[i].kind != TREE_DIR || (i && tree_count_cmp(&t.v[i], &t.v[i - 1]) == 0))
			continue;
		r = ctree_dir(c, NULL, &t.v[i].key, &d, err);
		for (uint32_t j = 0; !r && j < d->n; j++) {
			dirtree_get(d, j, &ent);
			if (ent.type == NODE_FILE && ent.reloc_external)
				r = tree_count_add(&t, &ent.reloc_key, TREE_RELOC);
		}
	}
	if (!r && t.n)
		qsort(t.v, t.n, sizeof(*t.v), tree_count_cmp);
	if (!r)
		r = ctree_stmt(c, T_TREE_REFS, &s, err);
	if (!r)
		r = counts_differing(c, s, 3, tree_want, &t, ret, ret_n, err);
	free(t.v);
	return r == -ENOMEM ? err_set(err, r, "out of memory") : r;
}

int cattree_set_refs(struct catalog *c, int64_t id, int64_t refs, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = ctree_stmt(c, refs > 0 ? T_TREE_SET : T_TREE_DROP, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, id);
	if (refs > 0)
		sqlite3_bind_int64(s, 2, refs);
	return cat_step_done(c, s, err);
}

static int64_t refs_want(void *ctx, sqlite3_stmt *s, const struct catalog_refs *x)
{
	return (int64_t)run_of_key(ctx, &x->key) + sqlite3_column_int64(s, 3);
}

static int64_t nlink_want(void *ctx, sqlite3_stmt *s, const struct catalog_refs *x)
{
	(void)s;
	return (int64_t)run_of_group(ctx, x->id);
}

int catalog_counts_wrong(struct catalog *c, enum catalog_count which, struct catalog_refs **ret,
                         size_t *ret_n, struct cfs_err *err)
{
	struct recount rc = {.c = c, .live_only = which == CATALOG_NLINK, .err = err};
	sqlite3_stmt *s = NULL;
	int r;

	if (which == CATALOG_TREES)
		return trees_wrong(c, ret, ret_n, err);
	r = each_env(c, recount_env, &rc, err);
	if (!r) {
		counts_sort(&rc.k);
		r = ctree_stmt(c, which == CATALOG_REFS ? T_OBJ_REFS : T_GRP_NLINKS, &s, err);
	}
	if (!r)
		r = counts_differing(c, s, 2, which == CATALOG_REFS ? refs_want : nlink_want, &rc.k,
		                     ret, ret_n, err);
	counts_free(&rc.k);
	return r == -ENOMEM ? err_set(err, r, "out of memory") : r;
}

/* ---- version 4 to 5 ---- */

static int v4_env(struct catalog *c, int64_t env, int64_t root, struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_V4_NODES, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, env);
	sqlite3_bind_int64(s, 2, root);
	while ((r = cat_step_row(c, s, err)) == 0) {
		struct catalog_node_row row = {
		        .id = sqlite3_column_int64(s, 0),
		        .env = env,
		        .parent = sqlite3_column_int64(s, 1),
		        .name = sqlite3_column_blob(s, 2),
		        .namelen = (size_t)sqlite3_column_bytes(s, 2),
		        .type = (enum node_type)sqlite3_column_int(s, 3),
		        .mode = (uint32_t)sqlite3_column_int64(s, 4),
		        .mtime_ns = sqlite3_column_int64(s, 5),
		        .size = (uint64_t)sqlite3_column_int64(s, 6),
		        .inserts = (uint32_t)sqlite3_column_int64(s, 7),
		        .group = sqlite3_column_int64(s, 8),
		        .hardlink = sqlite3_column_int64(s, 9),
		        .first_child = sqlite3_column_int64(s, 10),
		        .nchildren = (uint32_t)sqlite3_column_int64(s, 11),
		        .target = sqlite3_column_blob(s, 12),
		        .target_len = (size_t)sqlite3_column_bytes(s, 12),
		        .reloc = sqlite3_column_blob(s, 13),
		        .reloc_len = (size_t)sqlite3_column_bytes(s, 13),
		};

		if (!ctree_column_key(s, 14, &row.key))
			memset(row.key.b, 0, 16);
		/* Ids are breadth first from the root (C3, C6): a gap ends the environment. */
		if (t->npend && row.id != t->pend[t->npend - 1].row.id + 1)
			break;
		r = catalog_node_insert(c, &row, err);
		if (r)
			break;
	}
	sqlite3_reset(s);
	if (r && r != -ENOENT) {
		ctree_pend_clear(t);
		return r;
	}
	r = t->npend ? build_env(c, env, t->pend, t->npend, err) : 0;
	ctree_pend_clear(t);
	return r;
}

int cattree_upgrade(struct catalog *c, struct cfs_err *err)
{
	int64_t *envs = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_V4_ENVS, &s, err);

	while (!r && (r = cat_step_row(c, s, err)) == 0) {
		if (n == cap) {
			int64_t *v = realloc(envs, (cap = cap ? 2 * cap : 64) * 2 * sizeof(*v));

			if (!v) {
				r = -ENOMEM;
				break;
			}
			envs = v;
		}
		envs[2 * n] = sqlite3_column_int64(s, 0);
		envs[2 * n + 1] = sqlite3_column_int64(s, 1);
		n++;
	}
	sqlite3_reset(s);
	if (r == -ENOENT)
		r = 0;
	for (size_t i = 0; !r && i < n; i++)
		r = v4_env(c, envs[2 * i], envs[2 * i + 1], err);
	free(envs);
	return r;
}
