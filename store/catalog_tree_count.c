// SPDX-License-Identifier: MIT
/*
 * Environments' trees, made and counted: the nodes an ingest inserts become directory
 * objects, an index and the tree image holding them at catalog_env_ref
 * (docs/tree-format.md), and what an environment names is counted in at its commit and out
 * when it is hidden or reaped: one update per run of consecutive ids named as often (what
 * the commit knows, and groups), else per distinct key; verify --repair recounts from the
 * trees; a version 4 catalog's rows and a version 5 or 6 catalog's trees table become
 * tree images.
 *
 * Invariant (with catalog.c's C1-C9 and catalog_tree.c's T5):
 * T4: an environment's tree image is one of the names the environment holds (C2, C7): it
 *     is durable in objects/ before the transaction that names it commits (object.c O1),
 *     counted in with the environment's files and out with them, so gc frees it with the
 *     last environment naming it, and never before.
 */
#include "catalog_tree_int.h"

#include "err.h"
#include "grow.h"
#include "memdup.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* ---- counting (C2, C7, C8) ---- */

/* What one environment's files name: objects by key (a tree walked) or by id (an
 * environment being committed, whose rows know their objects), and groups; each sorted,
 * with their counts. */
struct counts {
	struct objkey *keys;
	size_t nkeys, capkeys;
	int64_t *ids;
	size_t nids, capids;
	int64_t *groups;
	size_t ngroups, capgroups;
};

static void counts_free(struct counts *k)
{
	free(k->keys);
	free(k->ids);
	free(k->groups);
}

static int counts_add_group(struct counts *k, int64_t group)
{
	int64_t *v;

	if (!group)
		return 0;
	v = grow_array(k->groups, &k->capgroups, k->ngroups + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	k->groups = v;
	k->groups[k->ngroups++] = group;
	return 0;
}

/* Object id: the same count as its key, one probe of the table where a key takes the
 * key index's too. */
static int counts_add_id(struct counts *k, int64_t id, int64_t group)
{
	int64_t *v = grow_array(k->ids, &k->capids, k->nids + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	k->ids = v;
	k->ids[k->nids++] = id;
	return counts_add_group(k, group);
}

static int counts_add(struct counts *k, const struct objkey *key, int64_t group)
{
	struct objkey *v = grow_array(k->keys, &k->capkeys, k->nkeys + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	k->keys = v;
	k->keys[k->nkeys++] = *key;
	return counts_add_group(k, group);
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
	if (k->nids)
		qsort(k->ids, k->nids, sizeof(*k->ids), id_cmp);
	if (k->ngroups)
		qsort(k->groups, k->ngroups, sizeof(*k->groups), id_cmp);
}

static int count_file(void *ctx, const struct envref *e, const struct store_node *n,
                      const struct dirtree_entry *ent)
{
	(void)e;
	return n->type == NODE_FILE ? counts_add(ctx, &ent->key, n->group) : 0;
}

/* What environment e names counted, sorted: its files and its tree image (T4). */
static int env_counts(struct catalog *c, const struct envref *e, struct counts *ret,
                      struct cfs_err *err)
{
	int r = counts_add(ret, &e->tree, 0);

	if (!r)
		r = ctree_walk(c, e, count_file, ret, err);

	if (r == -ENOMEM)
		return err_set(err, r, "out of memory");
	if (!r)
		counts_sort(ret);
	return r;
}

/*
 * The run of ids v[i..] (sorted) that one statement counts: first, first + 1, ..., last,
 * each there the same number of times (*ret_times); returns the index past it. The ids an
 * environment names come mostly in such runs, as the commit that made them gave them out,
 * and a row updated in a range costs well under half one found by its own statement (4,000
 * objects and groups: 4.4 against 10.9 ms, through Python's sqlite3).
 */
static size_t id_run(const int64_t *v, size_t n, size_t i, size_t *ret_times)
{
	size_t t = 1, j;

	while (i + t < n && v[i + t] == v[i])
		t++;
	j = i + t;
	/* The next id is one more and there exactly t times (v is sorted). */
	while (j + t <= n && v[j] == v[j - 1] + 1 && v[j + t - 1] == v[j] &&
	       (j + t == n || v[j + t] != v[j]))
		j += t;
	*ret_times = t;
	return j;
}

/* sign * the counts of environment env: objects' names (C2, C7), groups' names and, with
 * links, their live names (C8); groups left with no name go. */
static int apply_counts(struct catalog *c, const struct counts *k, int64_t env, int sign, bool refs,
                        bool links, struct cfs_err *err)
{
	sqlite3_stmt *s;
	size_t times;
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
	for (size_t i = 0; refs && !r && i < k->nids;) {
		size_t j = id_run(k->ids, k->nids, i, &times);

		r = ctree_stmt(c, T_OBJ_COUNT_ID, &s, err);
		if (!r) {
			sqlite3_bind_int64(s, 1, k->ids[i]);
			sqlite3_bind_int64(s, 2, sign * (int64_t)times);
			sqlite3_bind_int64(s, 3, env);
			sqlite3_bind_int64(s, 4, k->ids[j - 1]);
			r = cat_step_done(c, s, err);
		}
		i = j;
	}
	for (size_t i = 0; !r && i < k->ngroups;) {
		size_t j = id_run(k->groups, k->ngroups, i, &times);
		int64_t n = sign * (int64_t)times;

		r = ctree_stmt(c, T_GRP_COUNT, &s, err);
		if (!r) {
			sqlite3_bind_int64(s, 1, k->groups[i]);
			sqlite3_bind_int64(s, 2, refs ? n : 0);
			sqlite3_bind_int64(s, 3, links ? n : 0);
			sqlite3_bind_int64(s, 4, k->groups[j - 1]);
			r = cat_step_done(c, s, err);
		}
		if (!r && refs && sign < 0 && (r = ctree_stmt(c, T_GRP_DROP, &s, err)) == 0) {
			sqlite3_bind_int64(s, 1, k->groups[i]);
			sqlite3_bind_int64(s, 2, k->groups[j - 1]);
			r = cat_step_done(c, s, err);
		}
		i = j;
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
	struct counts k = {0};
	struct envref e;
	int r = ctree_env(c, id, &e, err);

	if (r == -ENOENT)
		return 0;
	if (!r)
		r = env_counts(c, &e, &k, err);
	if (!r)
		r = apply_counts(c, &k, id, -1, true, !e.removed, err);
	counts_free(&k);
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

/* A tree image being made: each directory's object in the index's order and the records
 * kept apart, all owned. */
struct parts {
	struct envimage_piece *dirs;
	uint32_t ndirs;
	struct envimage_piece *recs;
	size_t nrecs, caprecs;
};

static void parts_free(struct parts *p)
{
	for (uint32_t i = 0; p->dirs && i < p->ndirs; i++)
		free((void *)p->dirs[i].data);
	for (size_t i = 0; i < p->nrecs; i++)
		free((void *)p->recs[i].data);
	free(p->dirs);
	free(p->recs);
}

/* A copy of the record of len bytes at data with key, into p. */
static int parts_rec(struct parts *p, const struct objkey *key, const void *data, size_t len)
{
	if (!data)
		return -EINVAL;
	if (p->nrecs == p->caprecs) {
		size_t cap = p->caprecs ? 2 * p->caprecs : 16;
		struct envimage_piece *v = realloc(p->recs, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->recs = v;
		p->caprecs = cap;
	}
	p->recs[p->nrecs].data = malloc(len ? len : 1);
	if (!p->recs[p->nrecs].data)
		return -ENOMEM;
	memcpy((void *)p->recs[p->nrecs].data, data, len);
	p->recs[p->nrecs].key = *key;
	p->recs[p->nrecs++].len = len;
	return 0;
}

/* The order the image lays index x's directories out in: depth first, each directory
 * before its subdirectories, so that a walk in the kernel's order (find, ls -R) reads the
 * image forwards. A directory's subdirectories are the index's directories whose ordinals
 * lie in its children's range, consecutive in the index (T3). */
static int depth_first(const struct envindex *x, uint32_t *order)
{
	uint32_t *sub = malloc(2 * (size_t)x->ndirs * sizeof(*sub)), *stack, n = 0, top = 0;
	uint32_t j = 1;

	if (!sub)
		return -ENOMEM;
	for (uint32_t i = 0; i < x->ndirs; i++) {
		struct envindex_dir d, c;
		uint32_t nc;

		envindex_dir(x, i, &d, &nc);
		/* Ranges follow each other: the subdirectories start where the last ones ended. */
		sub[2 * i] = j;
		while (j < x->ndirs) {
			uint32_t cn;

			envindex_dir(x, j, &c, &cn);
			if (c.self >= d.first_child + nc)
				break;
			j++;
		}
		sub[2 * i + 1] = j;
	}
	/* Each directory is pushed once. */
	stack = malloc((size_t)x->ndirs * sizeof(*stack));
	if (!stack) {
		free(sub);
		return -ENOMEM;
	}
	stack[top++] = 0;
	while (top) {
		uint32_t i = stack[--top];

		order[n++] = i;
		for (uint32_t k = sub[2 * i + 1]; k-- > sub[2 * i];)
			stack[top++] = k;
	}
	free(stack);
	free(sub);
	return n == x->ndirs ? 0 : -EINVAL;
}

/* A tree image being written and made durable (compression, a write, an fsync) on a thread
 * of its own, beside the commit's counting of the environment's files: neither waits for
 * the other, and it is published, and the transaction commits, only after both (T4). */
struct image_job {
	struct object_one *one;
	struct catalog_object o;
	uint8_t *data;
	pthread_t tid;
	bool threaded;
	int r;
	struct cfs_err err;
};

static void *image_main(void *arg)
{
	struct image_job *j = arg;
	struct object_src src = {.data = j->data, .len = j->o.size};

	j->r = object_one_write(j->one, &j->o.key, &src, ENVIMAGE_SHIFT, &j->o.stored, &j->err);
	return NULL;
}

/* Build the tree image of index idx and parts p, and start storing it: on 0, image_finish
 * ends it. */
static int image_start(struct catalog *c, int64_t env, const uint8_t *idx, size_t idx_len,
                       struct parts *p, struct image_job *j, struct cfs_err *err)
{
	struct catalog_object had;
	struct object_src src = {0};
	struct envindex x;
	uint32_t *order = malloc((size_t)p->ndirs * sizeof(*order));
	size_t len = 0;
	int r = order ? envindex_open(idx, idx_len, cat_path(c), &x, err) : -ENOMEM;

	*j = (struct image_job){.o = {.kind = OBJECT_TREE}};
	if (!r && (r = depth_first(&x, order)) == -EINVAL)
		err_set(err, r, "%s: environment %lld: an index whose directories are not one tree",
		        cat_path(c), (long long)env);
	if (!r)
		r = envimage_build(idx, idx_len, p->dirs, p->ndirs, order, p->recs, p->nrecs,
		                   &j->data, &len, err);
	free(order);
	if (r)
		goto fail;
	src = (struct object_src){.data = j->data, .len = len};
	object_hash(&src, &j->o.key);
	j->o.size = len;
	/* A content with the same bytes, stored as a pack member, has no image of its own to
	 * read the tree from: refused rather than shared. */
	r = catalog_object_by_key(c, &j->o.key, &had, err);
	if (!r && had.pack) {
		char hex[33];

		objkey_hex(&j->o.key, hex);
		r = err_set(err, -EEXIST, "%s: tree image %s: a packed content has its key",
		            cat_path(c), hex);
		goto fail;
	}
	if (r != -ENOENT && r)
		goto fail;
	r = object_one_open(cat_store_fd(c), &j->one, err);
	if (r)
		goto fail;
	j->threaded = pthread_create(&j->tid, NULL, image_main, j) == 0;
	if (!j->threaded)
		image_main(j);
	return 0;
fail:
	free(j->data);
	j->data = NULL;
	return r;
}

/* Wait for the image, then give it its objects row and name it environment env's tree
 * (T4: counted by the caller): 0 and its key in *ret_key, or the first error. */
static int image_finish(struct catalog *c, int64_t env, uint32_t nodes, struct image_job *j,
                        struct objkey *ret_key, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int64_t id;
	bool fresh;
	int r = 0;

	if (j->threaded)
		pthread_join(j->tid, NULL);
	if (j->r) {
		r = j->r;
		*err = j->err;
	}
	free(j->data);
	j->data = NULL;
	if (!r)
		r = object_one_publish(j->one, err);
	object_one_close(j->one);
	j->one = NULL;
	if (!r)
		r = catalog_object_ref(c, &j->o, 0, &id, &fresh, err);
	if (!r)
		r = ctree_stmt(c, T_ENV_SET, &s, err);
	if (!r) {
		sqlite3_bind_int64(s, 1, env);
		sqlite3_bind_int64(s, 2, nodes);
		sqlite3_bind_blob(s, 3, j->o.key.b, 16, SQLITE_STATIC);
		r = cat_step_done(c, s, err);
	}
	if (!r)
		*ret_key = j->o.key;
	return r;
}

/* Store the tree image of index idx and parts p durably (object.c O1) with its objects
 * row, and name it environment env's tree (T4: counted by the caller). */
static int store_image(struct catalog *c, int64_t env, uint32_t nodes, const uint8_t *idx,
                       size_t idx_len, struct parts *p, struct objkey *ret_key, struct cfs_err *err)
{
	struct image_job j;
	int r = image_start(c, env, idx, idx_len, p, &j, err);

	if (!r)
		r = image_finish(c, env, nodes, &j, ret_key, err);
	return r;
}

/* The directory object of pending directory d, whose subdirectories have theirs, into p. */
static int build_dir(struct dirtree_builder *b, struct pend *v, struct pend *d, struct parts *p,
                     struct cfs_err *err)
{
	size_t first = (size_t)(d->row.first_child - v[0].row.id);
	uint8_t *data = NULL;
	size_t len;
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
				r = parts_rec(p, &e.reloc_key, k->reloc, k->reloc_len);
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
		if (!r)
			r = dirtree_add(b, &e, err);
	}
	if (!r)
		r = dirtree_builder_finish(b, &data, &len, err);
	if (r)
		return r;
	ctree_key(data, len, &d->key);
	p->dirs[d->dir] = (struct envimage_piece){d->key, data, len};
	return 0;
}

/* The tree of environment env from nodes v[0..n), ids from v[0].row.id on, breadth first
 * (T5): its directory objects, its index and the image of them, on its way to the store
 * (on 0, image_finish gives it its row and the environment's). */
static int build_env(struct catalog *c, int64_t env, struct pend *v, size_t n, struct image_job *j,
                     struct cfs_err *err)
{
	struct dirtree_builder *b = NULL;
	struct envindex_dir *dirs = NULL;
	struct envindex_link *links = NULL;
	struct parts p = {0};
	uint32_t ndirs = 0, nlinks = 0;
	uint8_t *data = NULL;
	size_t len;
	int64_t base = v[0].row.id;
	int r = dirtree_builder_new(&b);

	if (!r && (n > UINT32_MAX || v[0].row.type != NODE_DIR))
		r = err_set(err, -EINVAL, "%s: environment %lld: not a tree", cat_path(c),
		            (long long)env);
	if (!r && (!(dirs = calloc(n, sizeof(*dirs))) || !(links = calloc(n, sizeof(*links)))))
		r = -ENOMEM;
	for (size_t i = 0; !r && i < n; i++)
		if (v[i].row.type == NODE_DIR)
			v[i].dir = p.ndirs++;
	if (!r && !(p.dirs = calloc(p.ndirs, sizeof(*p.dirs))))
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
			r = build_dir(b, v, &v[i], &p, err);
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
		r = image_start(c, env, data, len, &p, j, err);
	free(data);
	free(dirs);
	free(links);
	parts_free(&p);
	dirtree_builder_free(b);
	return r;
}

/* The tree image key counted in as one more name environment env holds (T4). */
static int count_image(struct catalog *c, const struct objkey *key, int64_t env,
                       struct cfs_err *err)
{
	struct counts k = {0};
	int r = counts_add(&k, key, 0);

	if (!r)
		r = apply_counts(c, &k, env, +1, true, true, err);
	counts_free(&k);
	return r;
}

int catalog_env_ref(struct catalog *c, int64_t id, struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct counts k = {0};
	struct image_job j;
	struct objkey image;
	struct cfs_err ignored;
	int r = t->npend ? 0
	                 : err_set(err, -EINVAL, "%s: an environment without nodes", cat_path(c));
	int f;

	if (!r)
		r = build_env(c, id, t->pend, t->npend, &j, err);
	if (r) {
		ctree_pend_clear(t);
		return r;
	}
	/* The files counted while the image is stored. */
	for (size_t i = 0; !r && i < t->npend; i++)
		if (t->pend[i].row.type == NODE_FILE)
			r = t->pend[i].row.obj > 0
			            ? counts_add_id(&k, t->pend[i].row.obj, t->pend[i].row.group)
			            : counts_add(&k, &t->pend[i].row.key, t->pend[i].row.group);
	if (!r) {
		counts_sort(&k);
		r = apply_counts(c, &k, id, +1, true, true, err);
	}
	/* Finished (joined, freed) whatever r is; its error only when nothing failed first. */
	f = image_finish(c, id, (uint32_t)t->npend, &j, &image, r ? &ignored : err);
	if (!r)
		r = f;
	if (!r)
		r = count_image(c, &image, id, err);
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
	struct wanted k = {.key = e->tree}, *w;
	int r;

	/* A damaged tree image: its environment is its user (T4). */
	w = bsearch(&k, u->w, u->n, sizeof(*u->w), cmp_wanted);
	if (w && (r = u->fn(u->ctx, w->i, e->id, e->hash, 0)))
		return r;
	r = ctree_walk(u->c, e, user_one, u, u->err);
	/* A tree that does not read has no users to name: verify reports it whole. */
	return r == -EUCLEAN ? 0 : r;
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
	struct objkey *ret_dir, *ret_obj;
	char *ret_env;
	struct cfs_err *err;
};

/* Each directory of e and each file in it: -EEXIST at the first content without a row. */
static int dangling_env(void *ctx, const struct envref *e)
{
	struct dangling *d = ctx;
	const struct envindex *x;
	struct catalog_content o;
	int r = ctree_object(d->c, &e->tree, &o, d->err);

	if (r == -ENOENT) {
		memset(d->ret_dir->b, 0, 16);
		*d->ret_obj = e->tree;
		snprintf(d->ret_env, 33, "%s", e->hash);
		return -EEXIST;
	}
	if (!r)
		r = ctree_index(d->c, e, &x, d->err);
	for (uint32_t i = 0; !r && i < x->ndirs; i++) {
		const struct dirtree *t;
		struct dirtree_entry ent;
		struct envindex_dir dir;
		uint32_t n;

		r = ctree_dir(d->c, e, i, &t, d->err);
		for (uint32_t j = 0; !r && j < t->n; j++) {
			dirtree_get(t, j, &ent);
			if (ent.type != NODE_FILE)
				continue;
			r = ctree_object(d->c, &ent.key, &o, d->err);
			if (r == -ENOENT) {
				/* x stays valid: the directory cache is apart from the images'. */
				envindex_dir(x, i, &dir, &n);
				*d->ret_dir = dir.key;
				*d->ret_obj = ent.key;
				snprintf(d->ret_env, 33, "%s", e->hash);
				return -EEXIST;
			}
		}
	}
	return r;
}

int catalog_dangling(struct catalog *c, struct objkey *ret_dir, struct objkey *ret_obj,
                     char ret_env[33], struct cfs_err *err)
{
	struct dangling d = {c, ret_dir, ret_obj, ret_env, err};
	int r = each_env(c, dangling_env, &d, err);

	return r == -EEXIST ? 0 : r ? r : -ENOENT;
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

	int r;

	if (rc->live_only && e->removed)
		return 0;
	/* C2 counts the tree image (T4); C8 counts files alone. */
	r = rc->live_only ? 0 : counts_add(&rc->k, &e->tree, 0);
	return r ? r : ctree_walk(rc->c, e, count_file, &rc->k, rc->err);
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
	int r = each_env(c, recount_env, &rc, err);
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

/* ---- version 4 to 7: nodes rows ---- */

static int v4_env(struct catalog *c, int64_t env, int64_t root, struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct image_job j;
	struct objkey image;
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
	if (t->npend)
		r = build_env(c, env, t->pend, t->npend, &j, err);
	else
		r = 0;
	if (t->npend && !r)
		r = image_finish(c, env, (uint32_t)t->npend, &j, &image, err);
	/* The files' counts came from the rows (catalog.c's upgrade): the image's now. */
	if (t->npend && !r)
		r = count_image(c, &image, env, err);
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

/* ---- versions 5 and 6 to 7: the trees table ---- */

/* The bytes of tree row key of kind k: a zstd frame of them (a record: as they are),
 * malloc'd. */
static int v6_bytes(struct catalog *c, const struct envref *e, const struct objkey *key,
                    enum tree_kind k, uint8_t **ret, size_t *ret_len, struct cfs_err *err)
{
	unsigned long long size;
	struct objkey got;
	const void *p;
	sqlite3_stmt *s;
	size_t n;
	int r = ctree_stmt(c, T_V6_DATA, &s, err);

	*ret = NULL;
	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, k);
	r = cat_step_row(c, s, err);
	if (r == -ENOENT)
		r = ctree_damaged(c, e, "a tree object is missing from the trees table", err);
	if (r)
		goto out;
	p = sqlite3_column_blob(s, 0);
	n = (size_t)sqlite3_column_bytes(s, 0);
	size = k == TREE_RELOC ? n : ZSTD_getFrameContentSize(p, n);
	if (size > ENVIMAGE_OBJECT_MAX) {
		r = ctree_damaged(c, e, "a tree object is not a frame of at most 64 MiB", err);
		goto out;
	}
	*ret = malloc(size ? size : 1);
	if (!*ret) {
		r = -ENOMEM;
		goto out;
	}
	if (k == TREE_RELOC)
		memcpy(*ret, p, n);
	else if (ZSTD_decompress(*ret, size ? size : 1, p, n) != size)
		r = ctree_damaged(c, e, "a tree object's frame does not decode", err);
	if (r) {
		free(*ret);
		*ret = NULL;
		goto out;
	}
	*ret_len = (size_t)size;
	ctree_key(*ret, *ret_len, &got);
	if (memcmp(got.b, key->b, 16) != 0) {
		free(*ret);
		*ret = NULL;
		r = ctree_damaged(c, e, "a tree object does not match its key", err);
	}
out:
	sqlite3_reset(s);
	return r;
}

struct v6 {
	struct catalog *c;
	struct cfs_err *err;
};

/* Environment e's tree moved from the trees table into its image (T4), counted. */
static int v6_env(void *ctx, const struct envref *e)
{
	struct catalog *c = ((struct v6 *)ctx)->c;
	struct cfs_err *err = ((struct v6 *)ctx)->err;
	struct parts p = {0};
	struct envindex x = {0};
	struct objkey image;
	uint8_t *idx = NULL;
	size_t idx_len = 0;
	int r = v6_bytes(c, e, &e->tree, TREE_INDEX, &idx, &idx_len, err);

	if (!r && envindex_open(idx, idx_len, e->hash, &x, err))
		r = ctree_said(c, e, err);
	if (!r && !(p.dirs = calloc(x.ndirs, sizeof(*p.dirs))))
		r = -ENOMEM;
	for (uint32_t i = 0; !r && i < x.ndirs; i++) {
		struct envindex_dir d;
		struct dirtree t;
		uint8_t *data = NULL;
		size_t len = 0;
		uint32_t n;

		envindex_dir(&x, i, &d, &n);
		r = v6_bytes(c, e, &d.key, TREE_DIR, &data, &len, err);
		if (r)
			break;
		p.dirs[p.ndirs++] = (struct envimage_piece){d.key, data, len};
		if (dirtree_open(data, len, e->hash, &t, err)) {
			r = ctree_said(c, e, err);
			break;
		}
		for (uint32_t j = 0; !r && j < t.n; j++) {
			struct dirtree_entry ent;
			uint8_t *rec = NULL;
			size_t rlen = 0;

			dirtree_get(&t, j, &ent);
			if (ent.type != NODE_FILE || !ent.reloc_external)
				continue;
			r = v6_bytes(c, e, &ent.reloc_key, TREE_RELOC, &rec, &rlen, err);
			if (!r) {
				r = parts_rec(&p, &ent.reloc_key, rec, rlen);
				free(rec);
			}
		}
	}
	if (!r)
		r = store_image(c, e->id, e->nodes, idx, idx_len, &p, &image, err);
	if (!r)
		r = count_image(c, &image, e->id, err);
	parts_free(&p);
	free(idx);
	return r;
}

int cattree_upgrade_v6(struct catalog *c, struct cfs_err *err)
{
	struct v6 v = {c, err};
	int r = each_env(c, v6_env, &v, err);

	cattree_forget(cat_tree(c));
	return r;
}
