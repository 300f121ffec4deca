// SPDX-License-Identifier: MIT
/*
 * Environments' trees (docs/tree-format.md): each environment's whole tree one immutable
 * object of the store, its tree image, named by envs.tree: its index, then each directory
 * one directory object. A lookup reads the environment's image alone, by its key, so it
 * costs the same whatever else the store holds, and another reader needs no SQLite to
 * follow it.
 *
 * This file reads them (the nodes, contents and records of catalog.h, and walks for the
 * rest); catalog_tree_count.c makes them and counts what they name.
 *
 * Invariant (with catalog.c's C1-C9, dirtree.c's T1-T2, envindex.c's T3, envimage.c's T6,
 * catalog_tree_count.c's T4):
 * T5: node ids are envs.root plus an ordinal, ordinals in breadth-first name order (C3,
 *     C6): the index turns one into a directory object and an entry, and nothing that
 *     reads a tree trusts it before the image's frames matched their checksums, the
 *     object's key matched its bytes and the object and the index agreed on the
 *     directory's children (a damaged tree is an error, never a wrong file).
 */
#include "catalog_tree_int.h"

#include "dirtree.h"
#include "envindex.h"
#include "err.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define OBJ_DELTA(v) "(" v " + ?2 * ?3)"
#define REFS_NEW     "(refs + ?2)"
/* C7 from the sums: every name of the object is environment m's exactly when
 * esum = refs * m and esq = refs * m^2 (the squares' sum is then the least it can be). */
#define OWNER_NEW                                                                                  \
	"CASE WHEN " REFS_NEW " > 0 AND " OBJ_DELTA(                                               \
	        "esum") " % " REFS_NEW " = 0 AND (esq + ?2 * ?3"                                   \
	                " * ?3) = " OBJ_DELTA("esum") " / " REFS_NEW " * " OBJ_DELTA(              \
	                        "esum") " THEN " OBJ_DELTA("esum") " / " REFS_NEW " END"

static const char *const tsql[T_COUNT] = {
        [T_V6_DATA] = "SELECT data FROM trees WHERE key = ?1 AND kind = ?2",
        [T_ENV_AT] = "SELECT id, root, nodes, tree, hash, removed FROM envs WHERE root <= ?1"
                     " ORDER BY root DESC LIMIT 1",
        [T_ENV] = "SELECT id, root, nodes, tree, hash, removed FROM envs WHERE id = ?1",
        [T_ENV_SET] = "UPDATE envs SET nodes = ?2, tree = ?3 WHERE id = ?1",
        [T_ENVS] = "SELECT id, removed FROM envs ORDER BY hash, removed, id",
        /* ?1 key (or the ids ?1 to ?4), ?2 names gained by each (negative: lost), ?3 their
         * environment (C2, C7). */
        [T_OBJ_COUNT] = "UPDATE objects SET refs = " REFS_NEW ", esum = " OBJ_DELTA(
                "esum") ", esq = esq + ?2 * ?3 * ?3, owner = " OWNER_NEW " WHERE key = ?1",
        [T_OBJ_COUNT_ID] =
                "UPDATE objects SET refs = " REFS_NEW
                ", esum = " OBJ_DELTA("esum") ", esq = esq + ?2 * ?3 * ?3, owner = " OWNER_NEW
                                              " WHERE id BETWEEN ?1 AND ?4",
        [T_GRP_COUNT] = "UPDATE groups SET refs = refs + ?2, nlink = nlink + ?3"
                        " WHERE id BETWEEN ?1 AND ?4",
        [T_GRP_DROP] = "DELETE FROM groups WHERE id BETWEEN ?1 AND ?2 AND refs <= 0",
        [T_OBJ_BY_KEY] = "SELECT o.id, o.key, o.size, o.stored, o.refs, o.kind, o.pack,"
                         " o.pack_off, p.key FROM objects o LEFT JOIN objects p ON p.id = o.pack"
                         " WHERE o.key = ?1",
        [T_GRP_CONTENT] = "SELECT o.id, o.key, o.size, o.stored, o.refs, o.kind, o.pack,"
                          " o.pack_off, p.key FROM groups g JOIN objects o ON o.id = g.obj"
                          " LEFT JOIN objects p ON p.id = o.pack WHERE g.id = ?1",
        [T_OBJ_KEY] = "SELECT key FROM objects WHERE id = ?1",
        [T_GRP_OBJ] = "SELECT obj FROM groups WHERE id = ?1",
        /* C2 as the rows have it: what the walk's count is compared with. */
        [T_OBJ_REFS] = "SELECT o.id, o.key, o.refs, CASE o.kind WHEN 1 THEN (SELECT count(*)"
                       " FROM objects m WHERE m.pack = o.id) ELSE 0 END FROM objects o"
                       " ORDER BY o.key",
        [T_GRP_NLINKS] = "SELECT g.id, o.key, g.nlink FROM groups g JOIN objects o"
                         " ON o.id = g.obj ORDER BY g.id",
        [T_V4_ENVS] = "SELECT id, root FROM envs ORDER BY root",
        [T_V4_NODES] = "SELECT n.id, n.parent, n.name, n.type, n.mode, n.mtime_ns, n.size,"
                       " n.inserts, n.grp, n.hardlink, n.first_child, n.nchildren, n.target,"
                       " n.reloc, o.key FROM nodes n LEFT JOIN objects o ON o.id = n.obj"
                       " WHERE n.env = ?1 AND n.id >= ?2 ORDER BY n.id",
};

int cattree_new(struct cattree **ret)
{
	*ret = calloc(1, sizeof(**ret));
	if (*ret && !((*ret)->dctx = ZSTD_createDCtx())) {
		free(*ret);
		*ret = NULL;
	}
	return *ret ? 0 : -ENOMEM;
}

void ctree_pend_clear(struct cattree *t)
{
	for (size_t i = 0; i < t->npend; i++) {
		free((void *)t->pend[i].row.name);
		free((void *)t->pend[i].row.target);
		free((void *)t->pend[i].row.reloc);
	}
	t->npend = 0;
}

static void eslot_clear(struct eslot *s)
{
	object_close(s->img);
	free(s->tables);
	*s = (struct eslot){0};
}

void cattree_forget(struct cattree *t)
{
	for (size_t i = 0; i < ENV_SLOTS; i++)
		eslot_clear(&t->envs[i]);
}

void cattree_free(struct cattree *t)
{
	if (!t)
		return;
	for (int i = 0; i < T_COUNT; i++)
		sqlite3_finalize(t->st[i]);
	for (size_t i = 0; i < DIR_SLOTS; i++)
		free(t->dirs[i].data);
	cattree_forget(t);
	ctree_pend_clear(t);
	free(t->pend);
	ZSTD_freeDCtx(t->dctx);
	free(t);
}

int ctree_stmt(struct catalog *c, enum tstmt id, sqlite3_stmt **ret, struct cfs_err *err)
{
	return cat_prepare(c, &cat_tree(c)->st[id], tsql[id], ret, err);
}

void ctree_key(const uint8_t *p, size_t n, struct objkey *ret)
{
	struct object_src src = {.data = p, .len = n};

	object_hash(&src, ret);
}

bool ctree_column_key(sqlite3_stmt *s, int col, struct objkey *ret)
{
	const void *k = sqlite3_column_blob(s, col);

	if (!k || sqlite3_column_bytes(s, col) != 16)
		return false;
	memcpy(ret->b, k, 16);
	return true;
}

int ctree_damaged(struct catalog *c, const struct envref *e, const char *what, struct cfs_err *err)
{
	char hex[33];

	objkey_hex(&e->tree, hex);
	return err_set(err, -EUCLEAN,
	               "%s: environment %s: tree image %s: %s: the tree is damaged (see condafs "
	               "verify)",
	               cat_path(c), e->hash, hex, what);
}

int ctree_said(struct catalog *c, const struct envref *e, struct cfs_err *err)
{
	char said[sizeof(err->msg)];

	if (!err)
		return -EUCLEAN;
	snprintf(said, sizeof(said), "%s", err->msg);
	return ctree_damaged(c, e, said, err);
}

/* ---- reading the images ---- */

/* len bytes at off of image s into buf: all of them, or damage. */
static int image_read(struct catalog *c, const struct envref *e, struct eslot *s, uint64_t off,
                      size_t len, void *buf, struct cfs_err *err)
{
	size_t got = 0;
	int r = object_read(s->img, cat_tree(c)->dctx, off, len, buf, &got, err);

	if (r == -ENOMEM)
		return r;
	if (r)
		return ctree_said(c, e, err);
	if (got != len)
		return ctree_damaged(c, e, "shorter than its tables say", err);
	return 0;
}

/* Open e's image into slot s: its head and tables read and checked (T6, T3, T5). */
static int image_open(struct catalog *c, const struct envref *e, struct eslot *s,
                      struct cfs_err *err)
{
	uint8_t head[ENVIMAGE_HEAD];
	struct envimage_head h;
	char what[160], hex[33];
	int r;

	objkey_hex(&e->tree, hex);
	snprintf(what, sizeof(what), "environment %s: tree image %s", e->hash, hex);
	*s = (struct eslot){.env = e->id, .key = e->tree};
	r = object_open(cat_store_fd(c), &e->tree, &s->img, err);
	if (r == -ENOMEM)
		return r;
	if (r)
		return ctree_said(c, e, err);
	r = image_read(c, e, s, 0, ENVIMAGE_HEAD, head, err);
	if (!r && envimage_head(head, object_size(s->img), what, &h, err))
		r = ctree_said(c, e, err);
	if (!r && !(s->tables = malloc(h.tables_len ? h.tables_len : 1)))
		r = -ENOMEM;
	if (!r)
		r = image_read(c, e, s, ENVIMAGE_HEAD, h.tables_len, s->tables, err);
	if (!r && (envimage_open(&h, s->tables, object_size(s->img), what, &s->m, err) ||
	           envindex_open(s->m.index, s->m.index_len, what, &s->x, err)))
		r = ctree_said(c, e, err);
	if (!r && s->x.ndirs != s->m.ndirs)
		r = ctree_damaged(c, e, "its index and its tables disagree on its directories",
		                  err);
	if (!r && s->x.nodes != e->nodes)
		r = ctree_damaged(c, e, "its index and its row disagree on its node count", err);
	if (r)
		eslot_clear(s);
	else
		s->used = ++cat_tree(c)->clock;
	return r;
}

/* Environment e's image, from the handle's cache. */
static int image_slot(struct catalog *c, const struct envref *e, struct eslot **ret,
                      struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct eslot *s = &t->envs[0];
	int r;

	for (size_t i = 0; i < ENV_SLOTS; i++) {
		struct eslot *x = &t->envs[i];

		if (x->used && x->env == e->id && memcmp(x->key.b, e->tree.b, 16) == 0) {
			x->used = ++t->clock;
			*ret = x;
			return 0;
		}
		if (x->used < s->used)
			s = x;
	}
	eslot_clear(s);
	r = image_open(c, e, s, err);
	if (!r)
		*ret = s;
	return r;
}

int ctree_index(struct catalog *c, const struct envref *e, const struct envindex **ret,
                struct cfs_err *err)
{
	struct eslot *s;
	int r = image_slot(c, e, &s, err);

	if (!r)
		*ret = &s->x;
	return r;
}

/* Directory i of e's image s, whose key is key, read and checked against it (T5): malloc'd
 * into *ret. */
static int dir_bytes(struct catalog *c, const struct envref *e, struct eslot *s, uint32_t i,
                     const struct objkey *key, uint8_t **ret, size_t *ret_len, struct cfs_err *err)
{
	struct objkey got;
	uint32_t off, len;
	int r;

	envimage_dir(&s->m, i, &off, &len);
	*ret = malloc(len);
	if (!*ret)
		return -ENOMEM;
	r = image_read(c, e, s, off, len, *ret, err);
	if (!r) {
		ctree_key(*ret, len, &got);
		if (memcmp(got.b, key->b, 16) != 0)
			r = ctree_damaged(c, e, "a directory object does not match its key", err);
	}
	if (r) {
		free(*ret);
		return r;
	}
	*ret_len = len;
	return 0;
}

int ctree_dir(struct catalog *c, const struct envref *e, uint32_t i, const struct dirtree **ret,
              struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct dslot *s = NULL, *lru = &t->dirs[0];
	struct envindex_dir d;
	char what[160], hex[33];
	struct eslot *img;
	uint8_t *data;
	size_t len;
	uint32_t n;
	int r = image_slot(c, e, &img, err);

	if (r)
		return r;
	envindex_dir(&img->x, i, &d, &n);
	/* A directory object is its bytes, whichever image holds it. */
	for (size_t k = 0; k < DIR_SLOTS; k++) {
		struct dslot *q = &t->dirs[k];

		if (q->used && memcmp(q->key.b, d.key.b, 16) == 0) {
			q->used = ++t->clock;
			*ret = &q->t;
			return 0;
		}
		if (q->used < lru->used)
			lru = q;
	}
	r = dir_bytes(c, e, img, i, &d.key, &data, &len, err);
	if (r)
		return r;
	objkey_hex(&d.key, hex);
	snprintf(what, sizeof(what), "directory object %s", hex);
	s = lru;
	free(s->data);
	t->dir_bytes -= s->used ? s->len : 0;
	*s = (struct dslot){.key = d.key, .data = data, .len = len, .used = ++t->clock};
	r = dirtree_open(data, len, what, &s->t, err);
	if (r) {
		free(data);
		*s = (struct dslot){0};
		return ctree_said(c, e, err);
	}
	t->dir_bytes += len;
	/* The budget holds the others: the one just read stays, however large. */
	while (t->dir_bytes > DIR_BUDGET) {
		struct dslot *old = NULL;

		for (size_t k = 0; k < DIR_SLOTS; k++)
			if (t->dirs[k].used && &t->dirs[k] != s &&
			    (!old || t->dirs[k].used < old->used))
				old = &t->dirs[k];
		if (!old)
			break;
		t->dir_bytes -= old->len;
		free(old->data);
		*old = (struct dslot){0};
	}
	*ret = &s->t;
	return 0;
}

static void envref_row(sqlite3_stmt *s, struct envref *ret)
{
	const unsigned char *h = sqlite3_column_text(s, 4);

	ret->id = sqlite3_column_int64(s, 0);
	ret->root = sqlite3_column_int64(s, 1);
	ret->nodes = (uint32_t)sqlite3_column_int64(s, 2);
	if (!ctree_column_key(s, 3, &ret->tree))
		memset(ret->tree.b, 0, 16);
	snprintf(ret->hash, sizeof(ret->hash), "%s", h ? (const char *)h : "");
	ret->removed = sqlite3_column_int64(s, 5) != 0;
}

/* The environment row statement q finds for id. */
static int env_query(struct catalog *c, enum tstmt q, int64_t id, struct envref *ret,
                     struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = ctree_stmt(c, q, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, id);
	r = cat_step_row(c, s, err);
	if (!r)
		envref_row(s, ret);
	sqlite3_reset(s);
	return r;
}

/* The environment whose node ids hold id (C6): -ENOENT if none does. */
static int env_at(struct catalog *c, int64_t id, struct envref *ret, struct cfs_err *err)
{
	int r = env_query(c, T_ENV_AT, id, ret, err);

	if (!r && (id < ret->root || id - ret->root >= ret->nodes))
		r = -ENOENT;
	return r;
}

int ctree_env(struct catalog *c, int64_t id, struct envref *ret, struct cfs_err *err)
{
	return env_query(c, T_ENV, id, ret, err);
}

/* Directory i of index x, its object checked against the index (T5). */
static int index_dir(struct catalog *c, const struct envref *e, const struct envindex *x,
                     uint32_t i, struct envindex_dir *ret_d, const struct dirtree **ret,
                     struct cfs_err *err)
{
	uint32_t n;
	int r;

	envindex_dir(x, i, ret_d, &n);
	r = ctree_dir(c, e, i, ret, err);
	if (!r && (*ret)->n != n)
		return ctree_damaged(
		        c, e, "a directory object and the index disagree on its entries", err);
	return r;
}

/* A resolved node: where it is, and its entry (none for the top). */
struct where {
	struct envref e;
	const struct envindex *x;
	uint32_t ord;
	struct dirtree_entry ent;
	uint32_t dir; /* for a directory: its position in the index */
};

static int node_fill(struct catalog *c, struct where *w, struct store_node *ret,
                     struct cfs_err *err)
{
	const struct envindex *x = w->x;
	const struct dirtree *t;
	struct envindex_dir d, sub;
	uint32_t first;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->id = w->e.root + w->ord;
	ret->env_id = w->e.id;
	if (w->ord == 0) {
		w->dir = 0;
		envindex_dir(x, 0, &d, &ret->nchildren);
		ret->type = NODE_DIR;
		ret->mode = x->root_mode;
		ret->mtime_ns = x->root_mtime_ns;
		ret->first_child = w->e.root + 1;
		ret->namelen = (uint16_t)strlen(w->e.hash);
		memcpy(ret->name, w->e.hash, ret->namelen);
		memset(&w->ent, 0, sizeof(w->ent));
		w->ent.type = NODE_DIR;
		return 0;
	}
	r = index_dir(c, &w->e, x, envindex_parent_of(x, w->ord), &d, &t, err);
	if (r)
		return r;
	dirtree_get(t, w->ord - d.first_child, &w->ent);
	ret->parent = w->e.root + d.self;
	ret->type = w->ent.type;
	ret->mode = w->ent.mode;
	ret->mtime_ns = w->ent.mtime_ns;
	ret->namelen = (uint16_t)w->ent.namelen;
	memcpy(ret->name, w->ent.name, w->ent.namelen);
	r = envindex_dir_of(x, w->ord, &w->dir);
	if ((r == 0) != (w->ent.type == NODE_DIR))
		return ctree_damaged(c, &w->e,
		                     "a directory object and the index disagree on a type", err);
	switch (w->ent.type) {
	case NODE_DIR:
		envindex_dir(x, w->dir, &sub, &ret->nchildren);
		if (memcmp(sub.key.b, w->ent.key.b, 16) != 0)
			return ctree_damaged(c, &w->e,
			                     "a directory object and the index disagree on a key",
			                     err);
		ret->first_child = w->e.root + sub.first_child;
		break;
	case NODE_FILE:
		ret->size_neutral = w->ent.size;
		ret->text_inserts = w->ent.inserts;
		ret->relocated = w->ent.reloc_len > 0;
		ret->group = w->ent.group;
		if (envindex_link_of(x, w->ord, &first) == 0)
			ret->hardlink = w->e.root + first;
		break;
	case NODE_SYMLINK:
		ret->size_neutral = w->ent.target_len;
		ret->text_inserts = w->ent.inserts;
		ret->relocated = w->ent.reloc_len > 0;
		break;
	}
	return 0;
}

/* Node id resolved: -ENOENT when no environment has it. */
static int resolve(struct catalog *c, int64_t id, struct where *w, struct store_node *ret,
                   struct cfs_err *err)
{
	int r = env_at(c, id, &w->e, err);

	if (!r)
		r = ctree_index(c, &w->e, &w->x, err);
	if (r)
		return r;
	w->ord = (uint32_t)(id - w->e.root);
	return node_fill(c, w, ret, err);
}

int catalog_node_get(struct catalog *c, int64_t id, struct store_node *ret, struct cfs_err *err)
{
	struct where w;

	return resolve(c, id, &w, ret, err);
}

int catalog_node_lookup(struct catalog *c, int64_t dir, const void *name, size_t len,
                        struct store_node *ret, struct cfs_err *err)
{
	const struct dirtree *t;
	struct envindex_dir d;
	struct store_node n;
	struct where w;
	uint32_t i;
	int r = resolve(c, dir, &w, &n, err);

	if (r)
		return r;
	if (n.type != NODE_DIR)
		return -ENOENT;
	r = index_dir(c, &w.e, w.x, w.dir, &d, &t, err);
	if (!r)
		r = dirtree_find(t, name, len, &i);
	if (r)
		return r;
	w.ord = d.first_child + i;
	return node_fill(c, &w, ret, err);
}

int catalog_node_range(struct catalog *c, int64_t first, int64_t end,
                       int (*fn)(void *ctx, const struct store_node *n), void *ctx,
                       struct cfs_err *err)
{
	struct store_node n;
	struct where w;
	int r = first < end ? resolve(c, first, &w, &n, err) : 0;

	if (r == -ENOENT)
		return 0;
	/* One environment's ids: its row is read once, its index again from the cache (fn
	 * may have read others). */
	for (int64_t id = first; !r && id < end; id++) {
		if (id > first) {
			if (id - w.e.root >= w.e.nodes)
				return 0;
			w.ord = (uint32_t)(id - w.e.root);
			r = ctree_index(c, &w.e, &w.x, err);
			if (!r)
				r = node_fill(c, &w, &n, err);
		}
		if (!r)
			r = fn(ctx, &n);
	}
	return r;
}

/* The object row s has (T_OBJ_BY_KEY's columns) as content ret: -ENOENT for none. */
static int content_row(struct catalog *c, sqlite3_stmt *s, struct catalog_content *ret,
                       struct cfs_err *err)
{
	int r = cat_step_row(c, s, err);

	if (!r) {
		struct catalog_object *o = &ret->obj;

		o->id = sqlite3_column_int64(s, 0);
		ctree_column_key(s, 1, &o->key);
		o->size = (uint64_t)sqlite3_column_int64(s, 2);
		o->stored = (uint64_t)sqlite3_column_int64(s, 3);
		o->refs = sqlite3_column_int64(s, 4);
		o->kind = (enum object_kind)sqlite3_column_int(s, 5);
		o->pack = sqlite3_column_int64(s, 6);
		o->pack_off = (uint64_t)sqlite3_column_int64(s, 7);
		ret->image_key = o->key;
		ret->image_off = 0;
		if (o->pack && ctree_column_key(s, 8, &ret->image_key))
			ret->image_off = o->pack_off;
	}
	sqlite3_reset(s);
	return r;
}

int ctree_object(struct catalog *c, const struct objkey *key, struct catalog_content *ret,
                 struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_OBJ_BY_KEY, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	return content_row(c, s, ret, err);
}

int catalog_group_content(struct catalog *c, int64_t group, struct catalog_content *ret,
                          struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = ctree_stmt(c, T_GRP_CONTENT, &s, err);

	if (r)
		return r;
	memset(ret, 0, sizeof(*ret));
	sqlite3_bind_int64(s, 1, group);
	return content_row(c, s, ret, err);
}

int catalog_node_content(struct catalog *c, int64_t id, struct catalog_content *ret,
                         struct cfs_err *err)
{
	struct store_node n;
	struct where w;
	int r = resolve(c, id, &w, &n, err);

	if (r)
		return r;
	memset(ret, 0, sizeof(*ret));
	if (n.type == NODE_FILE) {
		r = ctree_object(c, &w.ent.key, ret, err);
		/* No row: the reader finds the object missing and says so. */
		if (r == -ENOENT) {
			memset(&ret->obj, 0, sizeof(ret->obj));
			r = 0;
		}
	}
	ret->reloc_len = w.ent.reloc_len;
	/* The cached directory object stays until the next call. */
	ret->target = w.ent.target;
	ret->target_len = w.ent.target_len;
	return r;
}

void catalog_content_done(struct catalog *c)
{
	(void)c;
}

/* A record in an image as an object_src, read a window at a time. */
struct rec_src {
	struct catalog *c;
	struct object *img;
	uint64_t at;
	uint8_t *buf;
	int r;
	struct cfs_err *err;
};

#define REC_WINDOW (64u << 10)

static int rec_read(void *ctx, uint64_t off, uint64_t max, const uint8_t **ret_p, uint64_t *ret_n,
                    bool *ret_hole)
{
	struct rec_src *rs = ctx;
	size_t want = max < REC_WINDOW ? (size_t)max : REC_WINDOW, got = 0;
	int r = object_read(rs->img, cat_tree(rs->c)->dctx, rs->at + off, want, rs->buf, &got,
	                    rs->err);

	if (!r && got != want)
		r = -EBADMSG;
	if (r) {
		rs->r = r;
		return r;
	}
	*ret_p = rs->buf;
	*ret_n = got;
	*ret_hole = false;
	return 0;
}

/* Where e's image keeps the record with key, of len bytes, checked against its key (T5)
 * unless one of the last REC_OK checked was it: *ret_s the image, *ret_off the place. */
static int image_record(struct catalog *c, const struct envref *e, const struct objkey *key,
                        size_t len, struct eslot **ret_s, uint64_t *ret_off, struct cfs_err *err)
{
	struct rec_src rs = {.c = c, .err = err};
	struct object_src src = {.len = len, .read = rec_read, .ctx = &rs};
	struct objkey got;
	struct eslot *s;
	uint32_t at, rlen;
	int r = image_slot(c, e, &s, err);

	if (r)
		return r;
	if (envimage_record(&s->m, key, &at, &rlen) || rlen != len)
		return ctree_damaged(c, e, "a relocation record is missing", err);
	*ret_s = s;
	*ret_off = at;
	for (unsigned i = 0; i < s->nrec_ok; i++)
		if (memcmp(s->rec_ok[i].b, key->b, 16) == 0)
			return 0;
	/* Hashed a window at a time: a record is never held whole (reloc.c R6). */
	rs.img = s->img;
	rs.at = at;
	rs.buf = malloc(REC_WINDOW);
	if (!rs.buf)
		return -ENOMEM;
	object_hash(&src, &got);
	free(rs.buf);
	if (rs.r == -ENOMEM)
		return rs.r;
	if (rs.r)
		return ctree_said(c, e, err);
	if (memcmp(got.b, key->b, 16) != 0)
		return ctree_damaged(c, e, "a relocation record does not match its key", err);
	s->rec_ok[s->next_rec_ok] = *key;
	s->next_rec_ok = (s->next_rec_ok + 1) % REC_OK;
	if (s->nrec_ok < REC_OK)
		s->nrec_ok++;
	return 0;
}

int catalog_reloc_read(struct catalog *c, int64_t node, uint64_t off, size_t len, void *buf,
                       struct cfs_err *err)
{
	struct store_node n;
	struct where w;
	struct eslot *s;
	uint64_t at;
	int r = resolve(c, node, &w, &n, err);

	if (r)
		return r;
	if (n.type == NODE_DIR || off > w.ent.reloc_len || len > w.ent.reloc_len - off)
		return err_set(err, -EUCLEAN, "%s: node %lld: no relocation record of that length",
		               cat_path(c), (long long)node);
	if (!w.ent.reloc_external) {
		memcpy(buf, w.ent.reloc + off, len);
		return 0;
	}
	r = image_record(c, &w.e, &w.ent.reloc_key, w.ent.reloc_len, &s, &at, err);
	/* Read piecewise: the image decodes only the frames the range touches. */
	return r ? r : image_read(c, &w.e, s, at + off, len, buf, err);
}

/* ---- walking a tree ---- */

int ctree_walk(struct catalog *c, const struct envref *e, ctree_walk_fn fn, void *ctx,
               struct cfs_err *err)
{
	const struct envindex *x;
	struct store_node n;
	struct where w = {.e = *e};
	int r = ctree_index(c, e, &x, err);

	if (r)
		return r;
	w.x = x;
	for (uint32_t ord = 0; !r && ord < x->nodes; ord++) {
		w.ord = ord;
		r = ctree_index(c, e, &w.x, err);
		if (!r)
			r = node_fill(c, &w, &n, err);
		if (!r)
			r = fn(ctx, e, &n, &w.ent);
	}
	return r;
}

int catalog_env_image(struct catalog *c, int64_t env, struct objkey *ret, bool *ret_row,
                      struct cfs_err *err)
{
	struct catalog_content o;
	struct envref e;
	int r = ctree_env(c, env, &e, err);

	if (!r)
		r = ctree_object(c, &e.tree, &o, err);
	if (r && r != -ENOENT)
		return r;
	*ret = e.tree;
	*ret_row = r == 0;
	return 0;
}

struct tree_ctx {
	int (*fn)(void *ctx, const struct store_node *n, const struct objkey *key,
	          const void *target, size_t target_len);
	void *ctx;
};

static int tree_one(void *ctx, const struct envref *e, const struct store_node *n,
                    const struct dirtree_entry *ent)
{
	struct tree_ctx *t = ctx;

	(void)e;
	return t->fn(t->ctx, n, n->type == NODE_FILE ? &ent->key : NULL, ent->target,
	             ent->target_len);
}

int catalog_env_tree(struct catalog *c, int64_t env,
                     int (*fn)(void *ctx, const struct store_node *n, const struct objkey *key,
                               const void *target, size_t target_len),
                     void *ctx, struct cfs_err *err)
{
	struct tree_ctx t = {fn, ctx};
	struct envref e;
	int r = ctree_env(c, env, &e, err);

	return r ? r : ctree_walk(c, &e, tree_one, &t, err);
}

struct links_ctx {
	struct catalog *c;
	int (*fn)(void *ctx, const struct catalog_link *l);
	void *ctx;
	struct cfs_err *err;
};

static int link_one(void *ctx, const struct envref *e, const struct store_node *n,
                    const struct dirtree_entry *ent)
{
	struct links_ctx *k = ctx;
	struct catalog_link l = {.id = n->id,
	                         .parent = n->parent,
	                         .name = ent->name,
	                         .namelen = ent->namelen,
	                         .type = n->type,
	                         .size = (int64_t)n->size_neutral,
	                         .group = n->group,
	                         .first_child = n->first_child,
	                         .nchildren = n->nchildren,
	                         .has_target = n->type == NODE_SYMLINK};
	struct catalog_content o = {0};
	int r;

	if (n->type == NODE_FILE && ent->reloc_external) {
		struct eslot *s;
		uint64_t at;

		/* A damaged record is the tree's damage: the walk stops with it. */
		r = image_record(k->c, e, &ent->reloc_key, ent->reloc_len, &s, &at, k->err);
		if (r)
			return r;
	}
	if (n->type == NODE_FILE) {
		l.obj_key = ent->key;
		r = ctree_object(k->c, &ent->key, &o, k->err);
		if (r && r != -ENOENT)
			return r;
		l.obj_found = r == 0;
		l.obj = r == 0 ? o.obj.id : -1;
		l.obj_size = (int64_t)o.obj.size;
	}
	if (l.group) {
		int64_t obj;
		sqlite3_stmt *s;

		r = ctree_stmt(k->c, T_GRP_OBJ, &s, k->err);
		if (r)
			return r;
		sqlite3_bind_int64(s, 1, l.group);
		r = cat_step_row(k->c, s, k->err);
		obj = r ? 0 : sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		if (r && r != -ENOENT)
			return r;
		l.group_found = r == 0;
		l.group_obj = obj;
	}
	return k->fn(k->ctx, &l);
}

int catalog_env_links(struct catalog *c, int64_t env,
                      int (*fn)(void *ctx, const struct catalog_link *l), void *ctx,
                      struct cfs_err *err)
{
	struct links_ctx k = {c, fn, ctx, err};
	struct envref e;
	int r = ctree_env(c, env, &e, err);

	return r ? r : ctree_walk(c, &e, link_one, &k, err);
}
