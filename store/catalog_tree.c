// SPDX-License-Identifier: MIT
/*
 * Environments' trees in the catalog (docs/tree-format.md): each directory one immutable
 * directory object, keyed by the XXH3-128 of its bytes and shared by every environment
 * that holds the same directory, and each environment one index naming its directories in
 * node id order. An environment that shares 95% of its files with stored ones adds the
 * directories that differ and its index, not a row per path.
 *
 * This file reads them (the nodes, contents and records of catalog.h, and walks for the
 * rest); catalog_tree_count.c makes them and counts what they name.
 *
 * Invariant (with catalog.c's C1-C8, dirtree.c's T1-T2, envindex.c's T3,
 * catalog_tree_count.c's T4):
 * T5: node ids are envs.root plus an ordinal, ordinals in breadth-first name order (C3,
 *     C6): the index turns one into a directory object and an entry, and nothing that
 *     reads a tree trusts it before the object's key matched its bytes and the object and
 *     the index agreed on the directory's children (a damaged tree is an error, never a
 *     wrong file).
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
        [T_DATA] = "SELECT data FROM trees WHERE key = ?1 AND kind = ?2",
        [T_FIND] = "SELECT id FROM trees WHERE key = ?1 AND kind = ?2",
        [T_INSERT] = "INSERT INTO trees(key, kind, refs, data) VALUES (?1, ?2, ?3, ?4)",
        [T_REF] = "UPDATE trees SET refs = refs + ?2 WHERE key = ?1 AND kind = ?3 RETURNING refs",
        [T_DEL] = "DELETE FROM trees WHERE key = ?1 AND kind = ?2",
        [T_ENV_AT] = "SELECT id, root, nodes, tree, hash, removed FROM envs WHERE root <= ?1"
                     " ORDER BY root DESC LIMIT 1",
        [T_ENV] = "SELECT id, root, nodes, tree, hash, removed FROM envs WHERE id = ?1",
        [T_ENV_SET] = "UPDATE envs SET nodes = ?2, tree = ?3 WHERE id = ?1",
        [T_ENVS] = "SELECT id, removed FROM envs ORDER BY hash, removed, id",
        /* ?1 key, ?2 names gained (negative: lost), ?3 their environment (C2, C7). */
        [T_OBJ_COUNT] = "UPDATE objects SET refs = " REFS_NEW ", esum = " OBJ_DELTA(
                "esum") ", esq = esq + ?2 * ?3 * ?3, owner = " OWNER_NEW " WHERE key = ?1",
        [T_GRP_COUNT] = "UPDATE groups SET refs = refs + ?2, nlink = nlink + ?3 WHERE id = ?1",
        [T_GRP_DROP] = "DELETE FROM groups WHERE id = ?1 AND refs <= 0",
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
        /* T4 as the rows have it, and repaired. */
        [T_TREE_REFS] = "SELECT id, key, kind, refs FROM trees ORDER BY id",
        [T_TREE_SET] = "UPDATE trees SET refs = ?2 WHERE id = ?1",
        [T_TREE_DROP] = "DELETE FROM trees WHERE id = ?1",
        [T_V4_ENVS] = "SELECT id, root FROM envs ORDER BY root",
        [T_V4_NODES] = "SELECT n.id, n.parent, n.name, n.type, n.mode, n.mtime_ns, n.size,"
                       " n.inserts, n.grp, n.hardlink, n.first_child, n.nchildren, n.target,"
                       " n.reloc, o.key FROM nodes n LEFT JOIN objects o ON o.id = n.obj"
                       " WHERE n.env = ?1 AND n.id >= ?2 ORDER BY n.id",
};

/* Directory objects and indexes are stored as one zstd frame of their bytes: names, modes
 * and times repeat from entry to entry. Relocation records kept apart are stored as they
 * are, read piecewise in place. A frame that says it holds more than this is damage. */
#define TREE_MAX_BYTES (64u << 20)

int cattree_new(struct cattree **ret)
{
	*ret = calloc(1, sizeof(**ret));
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

void cattree_forget(struct cattree *t)
{
	for (size_t i = 0; i < ENV_SLOTS; i++) {
		free(t->envs[i].data);
		t->envs[i] = (struct eslot){0};
	}
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
	sqlite3_blob_close(t->reloc);
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
	return err_set(err, -EUCLEAN,
	               "%s: environment %s: %s: the catalog is damaged (see condafs "
	               "verify)",
	               cat_path(c), e ? e->hash : "?", what);
}

/* What dirtree_open or envindex_open said (naming the object), as damage. */
static int reader_said(const struct envref *e, struct cfs_err *err)
{
	char said[sizeof(err->msg)];

	snprintf(said, sizeof(said), "%s", err->msg);
	return err_set(err, -EUCLEAN,
	               "environment %s: %s: the catalog is damaged (see condafs "
	               "verify)",
	               e ? e->hash : "?", said);
}

/* ---- reading the objects ---- */

/* The bytes of tree key of kind k from their stored form p, n: malloc'd into *ret. */
static int unpack(struct catalog *c, const struct objkey *key, enum tree_kind k, const void *p,
                  size_t n, uint8_t **ret, size_t *ret_len, struct cfs_err *err)
{
	unsigned long long size = k == TREE_RELOC ? n : ZSTD_getFrameContentSize(p, n);
	char hex[33];
	size_t got;

	if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
	    size > TREE_MAX_BYTES) {
		objkey_hex(key, hex);
		return err_set(err, -EUCLEAN,
		               "%s: tree object %s: not a zstd frame of at most %u bytes: the "
		               "catalog is damaged (see condafs verify)",
		               cat_path(c), hex, TREE_MAX_BYTES);
	}
	*ret = malloc(size ? size : 1);
	if (!*ret)
		return -ENOMEM;
	if (k == TREE_RELOC) {
		if (n)
			memcpy(*ret, p, n);
		*ret_len = n;
		return 0;
	}
	got = ZSTD_decompress(*ret, size ? size : 1, p, n);
	if (ZSTD_isError(got) || got != size) {
		free(*ret);
		objkey_hex(key, hex);
		return err_set(err, -EUCLEAN,
		               "%s: tree object %s: its frame does not decode: the catalog is "
		               "damaged (see condafs verify)",
		               cat_path(c), hex);
	}
	*ret_len = got;
	return 0;
}

/* The bytes of tree key of kind k, malloc'd, their key checked (T5). -ENOENT: no row. */
static int tree_bytes(struct catalog *c, const struct objkey *key, enum tree_kind k, uint8_t **ret,
                      size_t *ret_len, struct cfs_err *err)
{
	struct objkey got;
	sqlite3_stmt *s;
	const void *p;
	size_t n;
	int r = ctree_stmt(c, T_DATA, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, k);
	r = cat_step_row(c, s, err);
	if (r) {
		sqlite3_reset(s);
		return r;
	}
	p = sqlite3_column_blob(s, 0);
	n = (size_t)sqlite3_column_bytes(s, 0);
	r = unpack(c, key, k, p, n, ret, &n, err);
	sqlite3_reset(s);
	if (r)
		return r;
	ctree_key(*ret, n, &got);
	if (memcmp(got.b, key->b, 16) != 0) {
		char hex[33];

		free(*ret);
		objkey_hex(key, hex);
		return err_set(err, -EUCLEAN,
		               "%s: tree object %s: its bytes do not match its key: "
		               "the catalog is damaged (see condafs verify)",
		               cat_path(c), hex);
	}
	*ret_len = n;
	return 0;
}

/* Directory object key, checked, from the handle's cache; valid until the next call. */
int ctree_dir(struct catalog *c, const struct envref *e, const struct objkey *key,
              const struct dirtree **ret, struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct dslot *s = NULL, *lru = &t->dirs[0];
	char what[128], hex[33];
	uint8_t *data;
	size_t len;
	int r;

	for (size_t i = 0; i < DIR_SLOTS; i++) {
		struct dslot *d = &t->dirs[i];

		if (d->used && memcmp(d->key.b, key->b, 16) == 0) {
			d->used = ++t->clock;
			*ret = &d->t;
			return 0;
		}
		if (d->used < lru->used)
			lru = d;
	}
	r = tree_bytes(c, key, TREE_DIR, &data, &len, err);
	if (r == -ENOENT) {
		objkey_hex(key, hex);
		snprintf(what, sizeof(what), "directory object %s is missing", hex);
		return ctree_damaged(c, e, what, err);
	}
	if (r)
		return r;
	objkey_hex(key, hex);
	snprintf(what, sizeof(what), "%s: directory object %s", cat_path(c), hex);
	s = lru;
	free(s->data);
	t->dir_bytes -= s->used ? s->len : 0;
	*s = (struct dslot){.key = *key, .data = data, .len = len, .used = ++t->clock};
	r = dirtree_open(data, len, what, &s->t, err);
	if (r) {
		free(data);
		*s = (struct dslot){0};
		return reader_said(e, err);
	}
	t->dir_bytes += len;
	/* The budget holds the others: the one just read stays, however large. */
	while (t->dir_bytes > DIR_BUDGET) {
		struct dslot *old = NULL;

		for (size_t i = 0; i < DIR_SLOTS; i++)
			if (t->dirs[i].used && &t->dirs[i] != s &&
			    (!old || t->dirs[i].used < old->used))
				old = &t->dirs[i];
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

/* Environment e's index, checked, from the handle's cache; valid until the next call. */
int ctree_index(struct catalog *c, const struct envref *e, const struct envindex **ret,
                struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct eslot *s = &t->envs[0];
	char what[256];
	uint8_t *data;
	size_t len;
	int r;

	for (size_t i = 0; i < ENV_SLOTS; i++) {
		struct eslot *x = &t->envs[i];

		if (x->used && x->env == e->id && memcmp(x->key.b, e->tree.b, 16) == 0) {
			x->used = ++t->clock;
			*ret = &x->x;
			return 0;
		}
		if (x->used < s->used)
			s = x;
	}
	r = tree_bytes(c, &e->tree, TREE_INDEX, &data, &len, err);
	if (r == -ENOENT)
		return ctree_damaged(c, e, "its index is missing", err);
	if (r)
		return r;
	snprintf(what, sizeof(what), "%s: environment %s", cat_path(c), e->hash);
	free(s->data);
	*s = (struct eslot){.env = e->id, .key = e->tree, .data = data, .used = ++t->clock};
	r = envindex_open(data, len, what, &s->x, err);
	if (r)
		r = reader_said(e, err);
	else if (s->x.nodes != e->nodes)
		r = ctree_damaged(c, e, "its index and its row disagree on its node count", err);
	if (r) {
		free(data);
		*s = (struct eslot){0};
		return r;
	}
	*ret = &s->x;
	return 0;
}

/* Directory i of index x, its object checked against the index (T5). */
static int index_dir(struct catalog *c, const struct envref *e, const struct envindex *x,
                     uint32_t i, struct envindex_dir *ret_d, const struct dirtree **ret,
                     struct cfs_err *err)
{
	uint32_t n;
	int r;

	envindex_dir(x, i, ret_d, &n);
	r = ctree_dir(c, e, &ret_d->key, ret, err);
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

int catalog_reloc_read(struct catalog *c, int64_t node, uint64_t off, size_t len, void *buf,
                       struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	struct store_node n;
	struct where w;
	sqlite3_stmt *s;
	int64_t row;
	int rc, r = resolve(c, node, &w, &n, err);

	if (r)
		return r;
	if (n.type == NODE_DIR || off > w.ent.reloc_len || len > w.ent.reloc_len - off)
		return err_set(err, -EUCLEAN, "%s: node %lld: no relocation record of that length",
		               cat_path(c), (long long)node);
	if (!w.ent.reloc_external) {
		memcpy(buf, w.ent.reloc + off, len);
		return 0;
	}
	if (off > INT_MAX || len > (size_t)INT_MAX - off)
		return err_set(err, -EUCLEAN, "%s: node %lld: relocation record past 2 GiB",
		               cat_path(c), (long long)node);
	r = ctree_stmt(c, T_FIND, &s, err);
	if (r)
		return r;
	sqlite3_bind_blob(s, 1, w.ent.reloc_key.b, 16, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, TREE_RELOC);
	r = cat_step_row(c, s, err);
	row = r ? 0 : sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r == -ENOENT)
		return ctree_damaged(c, &w.e, "a relocation record is missing", err);
	if (r)
		return r;
	if (t->reloc && t->reloc_row != row)
		rc = sqlite3_blob_reopen(t->reloc, row);
	else if (!t->reloc)
		rc = sqlite3_blob_open(cat_db(c), "main", "trees", "data", row, 0, &t->reloc);
	else
		rc = SQLITE_OK;
	if (rc == SQLITE_OK) {
		t->reloc_row = row;
		rc = sqlite3_blob_read(t->reloc, buf, (int)len, (int)off);
	}
	if (rc == SQLITE_OK)
		return 0;
	rc = cat_db_err(c, rc, "relocation record", err);
	catalog_reloc_done(c);
	return rc == -EIO ? -EUCLEAN : rc;
}

void catalog_reloc_done(struct catalog *c)
{
	struct cattree *t = cat_tree(c);

	sqlite3_blob_close(t->reloc);
	t->reloc = NULL;
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

	(void)e;
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
