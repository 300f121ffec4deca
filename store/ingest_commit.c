// SPDX-License-Identifier: MIT
/*
 * The commit of an ingest: the environment's rows (tree, packages, object references)
 * in one transaction (ingest.c I1, I2), and the comparison of a prefix with the
 * environment stored under its hash.
 */
#include "ingest.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIFF_SHOWN 8

/* ---- commit ---- */

/* A member this commit finds stored by a concurrent ingest must hold our content. */
static int check_member_race(struct ingest *in, const struct inode *c, int64_t obj,
                             struct cfs_err *err)
{
	struct catalog_object mine, pack;
	struct object *o = NULL;
	struct object_src src = {0};
	size_t pi;
	uint64_t off, len;
	/* The image read may be ours (a pack of one member has its member's key): published
	 * first. */
	int r = ingest_publish_wait(in, err);

	if (!r)
		r = catalog_object_by_id(in->st->cat, obj, &mine, err);

	if (!r)
		r = packer_find(in->packer, &c->key, &pi, &off, &len);
	if (r)
		return r;
	src.data = packer_member_data(in->packer, pi, off);
	src.len = len;
	if (mine.pack) {
		r = catalog_object_by_id(in->st->cat, mine.pack, &pack, err);
		if (!r)
			r = object_open(in->st->fd, &pack.key, &o, err);
		if (!r)
			r = object_compare(o, in->st->dctx, mine.pack_off, &src, err);
	} else {
		r = object_open(in->st->fd, &mine.key, &o, err);
		if (!r)
			r = object_compare(o, in->st->dctx, 0, &src, err);
	}
	object_close(o);
	return ingest_collision(in, c->rel, r, err);
}

/* The catalog row for a file's content: its own image, or a member of one of our packs. */
static int ref_content(struct ingest *in, const struct inode *c, const int64_t *pack_ids,
                       int64_t *ret_obj, bool *ret_new, struct cfs_err *err)
{
	struct catalog_object o = {.key = c->key, .size = c->neutral_size, .stored = c->stored};
	size_t pi = 0;
	uint64_t len, plen;
	bool fresh;
	int r;

	if (c->packed) {
		r = packer_find(in->packer, &c->key, &pi, &o.pack_off, &len);
		if (r)
			return err_set(err, -EUCLEAN, "%s/%s: packed content lost", in->prefix,
			               c->rel);
		o.pack = pack_ids[pi];
		/* A member's share of its pack, for per-environment accounting. */
		plen = packer_pack_len(in->packer, pi);
		o.stored = plen ? len * in->pack_stored[pi] / plen : 0;
	}
	/* The references come with catalog_env_ref, once the nodes are in. */
	r = catalog_object_ref(in->st->cat, &o, 0, ret_obj, &fresh, err);
	if (!r)
		*ret_new = fresh;
	if (!r && c->packed && !fresh) {
		struct catalog_object now;

		/* Ours unless a concurrent ingest stored the same key first. */
		r = catalog_object_by_id(in->st->cat, *ret_obj, &now, err);
		if (!r && now.pack != o.pack)
			r = check_member_race(in, c, *ret_obj, err);
	}
	return r;
}

/* C5: file c's bytes are the content of obj. */
static int record_source(struct ingest *in, const struct inode *c, int64_t obj, struct cfs_err *err)
{
	struct catalog_file file = file_of(c);

	return catalog_source_set(in->st->cat, &file, obj, err);
}

static int insert_tree(struct ingest *in, int64_t env_id, int64_t base, const char *hash,
                       struct cfs_err *err)
{
	int64_t *pack_ids = calloc(in->npacks ? in->npacks : 1, sizeof(*pack_ids));
	int r = pack_ids ? 0 : -ENOMEM;

	for (size_t i = 0; !r && i < in->npacks; i++) {
		struct catalog_object o = {.key = in->pack_keys[i],
		                           .kind = OBJECT_PACK,
		                           .stored = in->pack_stored[i],
		                           .size = packer_pack_len(in->packer, i)};
		bool fresh;

		r = catalog_object_ref(in->st->cat, &o, 0, &pack_ids[i], &fresh, err);
	}
	for (size_t i = 0; !r && i < in->n; i++) {
		const struct inode *n = &in->nodes[i];
		struct inode *c = &in->nodes[content_of(in, n) - in->nodes];
		struct catalog_node_row row = {
		        .id = base + (int64_t)i,
		        .env = env_id,
		        .parent = i ? base + n->parent : 0,
		        /* The top directory is named by the environment hash. */
		        .name = i ? n->name : hash,
		        .namelen = i ? n->namelen : strlen(hash),
		        .type = n->type,
		        .mode = n->mode,
		        .mtime_ns = n->mtime_ns,
		        .size = n->type == NODE_FILE ? c->neutral_size : n->target_len,
		        .inserts = c->inserts,
		        .hardlink = n->hardlink ? base + n->hardlink - 1 : 0,
		        .first_child = base + n->first_child,
		        .nchildren = n->nchildren,
		        .target = n->target,
		        .target_len = n->target_len,
		        .reloc = c->reloc,
		        .reloc_len = c->reloc_len,
		};

		if (n->type == NODE_FILE) {
			bool fresh = false;

			/* A content the store phase found has its object, and maybe its group. */
			if (!c->obj)
				r = ref_content(in, c, pack_ids, &c->obj, &fresh, err);
			row.obj = c->obj;
			row.key = c->key;
			if (!r && c == n && c->unchanged && !c->verified)
				r = record_source(in, c, row.obj, err);
			if (!r && !c->reloc && c == n && c->group)
				row.group = c->group;
			else if (!r && !c->reloc)
				r = catalog_group(in->st->cat, row.obj, fresh, n->mode, n->mtime_ns,
				                  &row.group, err);
		}
		if (!r)
			r = catalog_node_insert(in->st->cat, &row, err);
	}
	if (!r)
		r = catalog_env_ref(in->st->cat, env_id, err);
	free(pack_ids);
	return r;
}

/* ---- an environment that is stored already ---- */

/* What the store has of one path, for the comparison. */
struct old_node {
	char *path;
	struct store_node n;
	bool has_key;
	struct objkey key;
	char *target;
	size_t target_len;
};

struct old_tree {
	struct old_node *v;
	size_t n, cap;
	int64_t root;
};

static int old_add(void *ctx, const struct store_node *n, const struct objkey *key,
                   const void *target, size_t target_len)
{
	struct old_tree *t = ctx;
	struct old_node *o;
	const char *parent = "";
	size_t pi;

	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 1024;
		void *v = realloc(t->v, cap * sizeof(*t->v));

		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	if (t->n == 0)
		t->root = n->id;
	/* Parents come before their children in id order. */
	pi = (size_t)(n->parent - t->root);
	if (n->parent && pi < t->n)
		parent = t->v[pi].path;
	o = &t->v[t->n];
	memset(o, 0, sizeof(*o));
	o->n = *n;
	if (!n->parent)
		o->path = strdup("");
	else if (asprintf(&o->path, "%s%s%.*s", parent, *parent ? "/" : "", (int)n->namelen,
	                  n->name) < 0)
		o->path = NULL;
	if (!o->path)
		return -ENOMEM;
	if (key) {
		o->has_key = true;
		o->key = *key;
	}
	if (target_len) {
		o->target = malloc(target_len);
		if (!o->target) {
			free(o->path);
			return -ENOMEM;
		}
		memcpy(o->target, target, target_len);
		o->target_len = target_len;
	}
	t->n++;
	return 0;
}

static void old_tree_release(struct old_tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].path);
		free(t->v[i].target);
	}
	free(t->v);
}

static int old_cmp(const void *a, const void *b)
{
	return strcmp(((const struct old_node *)a)->path, ((const struct old_node *)b)->path);
}

static int new_cmp(const void *a, const void *b, void *ctx)
{
	const struct inode *nodes = ctx;

	return strcmp(nodes[*(const uint32_t *)a].rel, nodes[*(const uint32_t *)b].rel);
}

/* What differs between one path of the prefix and the store, or NULL. */
static const char *node_diff(const struct ingest *in, const struct inode *n,
                             const struct old_node *o)
{
	const struct inode *c = content_of(in, n);

	if (n->type != o->n.type)
		return "type";
	if (n->mode != o->n.mode)
		return "mode";
	if (n->mtime_ns != o->n.mtime_ns)
		return "mtime";
	if (n->type == NODE_FILE &&
	    (!o->has_key || memcmp(c->key.b, o->key.b, 16) != 0 ||
	     c->neutral_size != o->n.size_neutral || c->inserts != o->n.text_inserts ||
	     !!c->reloc != o->n.relocated))
		return "content";
	if (n->type == NODE_SYMLINK &&
	    (n->target_len != o->target_len || memcmp(n->target, o->target, n->target_len) != 0 ||
	     !!n->reloc != o->n.relocated))
		return "link target";
	return NULL;
}

struct diff_text {
	char buf[700];
	size_t len;
	unsigned count;
};

static void diff_add(struct diff_text *d, const char *path, const char *what)
{
	if (d->count++ < DIFF_SHOWN) {
		int k = snprintf(d->buf + d->len, sizeof(d->buf) - d->len, "%s%s (%s)",
		                 d->len ? ", " : "", *path ? path : ".", what);

		if (k > 0)
			d->len += (size_t)k < sizeof(d->buf) - d->len ? (size_t)k
			                                              : sizeof(d->buf) - d->len - 1;
	}
}

/* 0 if the prefix's tree is the stored one; -EEXIST with the differences if not. */
int ingest_compare_tree(struct ingest *in, const struct store_env *env, struct cfs_err *err)
{
	struct old_tree t = {0};
	struct diff_text d = {0};
	uint32_t *order = NULL;
	size_t i = 0, j = 0;
	int r;

	r = catalog_env_tree(in->st->cat, env->id, old_add, &t, err);
	if (r)
		goto out;
	order = malloc((in->n ? in->n : 1) * sizeof(*order));
	if (!order) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < in->n; k++)
		order[k] = (uint32_t)k;
	qsort_r(order, in->n, sizeof(*order), new_cmp, in->nodes);
	if (t.n)
		qsort(t.v, t.n, sizeof(*t.v), old_cmp);
	while (i < in->n || j < t.n) {
		const struct inode *n = i < in->n ? &in->nodes[order[i]] : NULL;
		int c = !n ? 1 : j >= t.n ? -1 : strcmp(n->rel, t.v[j].path);

		if (c < 0) {
			diff_add(&d, n->rel, "only in the prefix");
			i++;
		} else if (c > 0) {
			diff_add(&d, t.v[j].path, "only in the store");
			j++;
		} else {
			const char *what = node_diff(in, n, &t.v[j]);

			if (what)
				diff_add(&d, n->rel, what);
			i++;
			j++;
		}
	}
	if (d.count)
		r = err_set(err, -EEXIST,
		            "%s: differs from the stored environment %s in %u path%s: %s%s; "
		            "--replace stores this tree instead",
		            in->prefix, env->hash, d.count, d.count == 1 ? "" : "s", d.buf,
		            d.count > DIFF_SHOWN ? ", ..." : "");
out:
	free(order);
	old_tree_release(&t);
	return r;
}

int ingest_commit(struct ingest *in, const char *hash, const struct pkgset *set,
                  enum ingest_result *ret_result, struct cfs_err *err)
{
	struct store_env env = {0}, old;
	int64_t base, env_id;
	bool replacing = false;
	int r;

	r = catalog_begin(in->st->cat, true, err);
	if (r)
		return r;
	r = catalog_env_by_hash(in->st->cat, hash, &old, err);
	if (r == 0) {
		/* Stored meanwhile by a concurrent ingest, or stored before and replaced now. */
		if (!in->opts->replace) {
			catalog_rollback(in->st->cat);
			r = ingest_compare_tree(in, &old, err);
			if (r == 0)
				*ret_result = INGEST_PRESENT;
			return r;
		}
		/* Hidden, not deleted: a mount may be serving its open files (gc.c G4). */
		r = catalog_env_hide(in->st->cat, old.id, time(NULL), err);
		replacing = true;
	} else if (r == -ENOENT) {
		r = 0;
	}
	if (!r)
		r = catalog_node_max_id(in->st->cat, &base, err);
	if (r)
		goto fail;
	base++;
	memcpy(env.hash, hash, 33);
	snprintf(env.platform, sizeof(env.platform), "%s", pkgset_platform(set));
	snprintf(env.source_prefix, sizeof(env.source_prefix), "%s", in->prefix);
	env.created = env.last_used = time(NULL);
	env.root = base;
	for (size_t i = 0; i < in->n; i++) {
		if (in->nodes[i].type != NODE_FILE)
			continue;
		env.files++;
		env.logical_bytes += in->nodes[i].size;
	}
	r = catalog_node_reserve(in->st->cat, base + (int64_t)in->n - 1, err);
	if (!r)
		r = catalog_env_insert(in->st->cat, &env, set, in->records, &env_id, err);
	if (!r)
		r = insert_tree(in, env_id, base, hash, err);
	if (!r && replacing)
		r = catalog_env_retag(in->st->cat, old.id, env_id, err);
	/* I1: the store phase's images published before anything names them. */
	if (!r)
		r = ingest_publish_wait(in, err);
	if (!r)
		r = catalog_commit(in->st->cat, err);
	if (r)
		goto fail;
	*ret_result = replacing ? INGEST_REPLACED : INGEST_NEW;
	return 0;
fail:
	catalog_rollback(in->st->cat);
	return r;
}
