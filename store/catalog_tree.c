// SPDX-License-Identifier: MIT
/*
 * Environments' trees in the catalog (docs/tree-format.md): each directory one immutable
 * directory object, keyed by the XXH3-128 of its bytes and shared by every environment
 * that holds the same directory, and each environment one index naming its directories in
 * node id order. An environment that shares 95% of its files with stored ones adds the
 * directories that differ and its index, not a row per path.
 *
 * Invariants (with catalog.c's C1-C8, dirtree.c's T1-T2, envindex.c's T3):
 * T4: trees.refs counts, for a directory object, the entries of environment indexes naming
 *     it; for an index, the environments naming it (envs.tree); for a relocation record
 *     kept apart, the stored directory objects naming it. A row goes in the transaction
 *     that brings its count to 0, and a directory object's records lose its references
 *     with it.
 * T5: node ids are envs.root plus an ordinal, ordinals in breadth-first name order (C3,
 *     C6): the index turns one into a directory object and an entry, and nothing that
 *     reads a tree trusts it before the object's key matched its bytes and the object and
 *     the index agreed on the directory's children (a damaged tree is an error, never a
 *     wrong file).
 */
#include "catalog_int.h"

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

enum tree_kind {
	TREE_DIR = 0,
	TREE_INDEX = 1,
	TREE_RELOC = 2,
};

enum tstmt {
	T_DATA,
	T_FIND,
	T_INSERT,
	T_REF,
	T_DEL,
	T_ENV_AT,
	T_ENV,
	T_ENV_SET,
	T_ENVS,
	T_OBJ_COUNT,
	T_GRP_COUNT,
	T_GRP_DROP,
	T_OBJ_BY_KEY,
	T_GRP_CONTENT,
	T_OBJ_KEY,
	T_GRP_OBJ,
	T_OBJ_REFS,
	T_GRP_NLINKS,
	T_V4_ENVS,
	T_V4_NODES,
	T_COUNT,
};

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
        [T_V4_ENVS] = "SELECT id, root FROM envs ORDER BY root",
        [T_V4_NODES] = "SELECT n.id, n.parent, n.name, n.type, n.mode, n.mtime_ns, n.size,"
                       " n.inserts, n.grp, n.hardlink, n.first_child, n.nchildren, n.target,"
                       " n.reloc, o.key FROM nodes n LEFT JOIN objects o ON o.id = n.obj"
                       " WHERE n.env = ?1 AND n.id >= ?2 ORDER BY n.id",
};

/* Directory objects and indexes are stored as one zstd frame of their bytes: names, modes
 * and times repeat from entry to entry. Relocation records kept apart are stored as they
 * are, read piecewise in place. A frame that says it holds more than this is damage. */
#define TREE_LEVEL     3
#define TREE_MAX_BYTES (64u << 20)

/* Decoded objects a handle keeps: directory objects by key, indexes by environment. */
#define DIR_SLOTS  64
#define DIR_BUDGET (4u << 20)
#define ENV_SLOTS  4

struct dslot {
	struct objkey key;
	uint8_t *data;
	size_t len;
	struct dirtree t;
	uint64_t used; /* 0: empty */
};

struct eslot {
	int64_t env;
	struct objkey key;
	uint8_t *data;
	struct envindex x;
	uint64_t used;
};

/* A node an ingest inserted, waiting for catalog_env_ref. */
struct pend {
	struct catalog_node_row row;
	struct objkey key; /* a directory's object, once built */
};

struct cattree {
	sqlite3_stmt *st[T_COUNT];
	struct dslot dirs[DIR_SLOTS];
	size_t dir_bytes;
	struct eslot envs[ENV_SLOTS];
	uint64_t clock;
	struct pend *pend;
	size_t npend, cappend;
	sqlite3_blob *reloc; /* catalog_reloc_read's open record kept apart, or NULL */
	int64_t reloc_row;
};

/* An environment's row, as the tree needs it. */
struct envref {
	int64_t id, root;
	uint32_t nodes;
	struct objkey tree;
	bool removed;
	char hash[33];
};

int cattree_new(struct cattree **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

static void pend_clear(struct cattree *t)
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
	pend_clear(t);
	free(t->pend);
	sqlite3_blob_close(t->reloc);
	free(t);
}

static int tstmt(struct catalog *c, enum tstmt id, sqlite3_stmt **ret, struct cfs_err *err)
{
	return cat_prepare(c, &cat_tree(c)->st[id], tsql[id], ret, err);
}

static void key_of(const uint8_t *p, size_t n, struct objkey *ret)
{
	struct object_src src = {.data = p, .len = n};

	object_hash(&src, ret);
}

static bool column_key(sqlite3_stmt *s, int col, struct objkey *ret)
{
	const void *k = sqlite3_column_blob(s, col);

	if (!k || sqlite3_column_bytes(s, col) != 16)
		return false;
	memcpy(ret->b, k, 16);
	return true;
}

static int damaged(struct catalog *c, const struct envref *e, const char *what, struct cfs_err *err)
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
		return -ENOMEM;
	}
	*ret_len = n;
	return 0;
}

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
	int r = tstmt(c, T_DATA, &s, err);

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
	key_of(*ret, n, &got);
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
static int dir_get(struct catalog *c, const struct envref *e, const struct objkey *key,
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
		return damaged(c, e, what, err);
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
	if (!column_key(s, 3, &ret->tree))
		memset(ret->tree.b, 0, 16);
	snprintf(ret->hash, sizeof(ret->hash), "%s", h ? (const char *)h : "");
	ret->removed = sqlite3_column_int64(s, 5) != 0;
}

/* The environment row statement q finds for id. */
static int env_query(struct catalog *c, enum tstmt q, int64_t id, struct envref *ret,
                     struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = tstmt(c, q, &s, err);

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

static int env_get(struct catalog *c, int64_t id, struct envref *ret, struct cfs_err *err)
{
	return env_query(c, T_ENV, id, ret, err);
}

/* Environment e's index, checked, from the handle's cache; valid until the next call. */
static int index_get(struct catalog *c, const struct envref *e, const struct envindex **ret,
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
		return damaged(c, e, "its index is missing", err);
	if (r)
		return r;
	snprintf(what, sizeof(what), "%s: environment %s", cat_path(c), e->hash);
	free(s->data);
	*s = (struct eslot){.env = e->id, .key = e->tree, .data = data, .used = ++t->clock};
	r = envindex_open(data, len, what, &s->x, err);
	if (r)
		r = reader_said(e, err);
	else if (s->x.nodes != e->nodes)
		r = damaged(c, e, "its index and its row disagree on its node count", err);
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
	r = dir_get(c, e, &ret_d->key, ret, err);
	if (!r && (*ret)->n != n)
		return damaged(c, e, "a directory object and the index disagree on its entries",
		               err);
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
		return damaged(c, &w->e, "a directory object and the index disagree on a type",
		               err);
	switch (w->ent.type) {
	case NODE_DIR:
		envindex_dir(x, w->dir, &sub, &ret->nchildren);
		if (memcmp(sub.key.b, w->ent.key.b, 16) != 0)
			return damaged(c, &w->e,
			               "a directory object and the index disagree on a key", err);
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
		r = index_get(c, &w->e, &w->x, err);
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
			r = index_get(c, &w.e, &w.x, err);
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
		column_key(s, 1, &o->key);
		o->size = (uint64_t)sqlite3_column_int64(s, 2);
		o->stored = (uint64_t)sqlite3_column_int64(s, 3);
		o->refs = sqlite3_column_int64(s, 4);
		o->kind = (enum object_kind)sqlite3_column_int(s, 5);
		o->pack = sqlite3_column_int64(s, 6);
		o->pack_off = (uint64_t)sqlite3_column_int64(s, 7);
		ret->image_key = o->key;
		ret->image_off = 0;
		if (o->pack && column_key(s, 8, &ret->image_key))
			ret->image_off = o->pack_off;
	}
	sqlite3_reset(s);
	return r;
}

static int object_by_key(struct catalog *c, const struct objkey *key, struct catalog_content *ret,
                         struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = tstmt(c, T_OBJ_BY_KEY, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	return content_row(c, s, ret, err);
}

int catalog_group_content(struct catalog *c, int64_t group, struct catalog_content *ret,
                          struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = tstmt(c, T_GRP_CONTENT, &s, err);

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
		r = object_by_key(c, &w.ent.key, ret, err);
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
	r = tstmt(c, T_FIND, &s, err);
	if (r)
		return r;
	sqlite3_bind_blob(s, 1, w.ent.reloc_key.b, 16, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, TREE_RELOC);
	r = cat_step_row(c, s, err);
	row = r ? 0 : sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r == -ENOENT)
		return damaged(c, &w.e, "a relocation record is missing", err);
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

/* Calls fn for every node of environment e in id order, with its entry (type NODE_DIR and
 * nothing else for the top). */
typedef int (*walk_fn)(void *ctx, const struct envref *e, const struct store_node *n,
                       const struct dirtree_entry *ent);

static int walk(struct catalog *c, const struct envref *e, walk_fn fn, void *ctx,
                struct cfs_err *err)
{
	const struct envindex *x;
	struct store_node n;
	struct where w = {.e = *e};
	int r = index_get(c, e, &x, err);

	if (r)
		return r;
	w.x = x;
	for (uint32_t ord = 0; !r && ord < x->nodes; ord++) {
		w.ord = ord;
		r = index_get(c, e, &w.x, err);
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
	int r = env_get(c, env, &e, err);

	return r ? r : walk(c, &e, tree_one, &t, err);
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
		r = object_by_key(k->c, &ent->key, &o, k->err);
		if (r && r != -ENOENT)
			return r;
		l.obj_found = r == 0;
		l.obj = r == 0 ? o.obj.id : -1;
		l.obj_size = (int64_t)o.obj.size;
	}
	if (l.group) {
		int64_t obj;
		sqlite3_stmt *s;

		r = tstmt(k->c, T_GRP_OBJ, &s, k->err);
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
	int r = env_get(c, env, &e, err);

	return r ? r : walk(c, &e, link_one, &k, err);
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
	int r = walk(c, e, count_file, ret, err);

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
		r = tstmt(c, T_OBJ_COUNT, &s, err);
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
		r = tstmt(c, T_GRP_COUNT, &s, err);
		if (!r) {
			sqlite3_bind_int64(s, 1, k->groups[i]);
			sqlite3_bind_int64(s, 2, refs ? n : 0);
			sqlite3_bind_int64(s, 3, links ? n : 0);
			r = cat_step_done(c, s, err);
		}
		if (!r && refs && sign < 0 && (r = tstmt(c, T_GRP_DROP, &s, err)) == 0) {
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
	int r = tstmt(c, T_REF, &s, err);

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
	int r = tstmt(c, T_DEL, &s, err);

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
	int r = env_get(c, id, &e, err);

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
	int r = env_get(c, id, &e, err);

	if (r == -ENOENT)
		return 0;
	if (!r)
		r = env_counts(c, &e, &k, err);
	if (!r)
		r = apply_counts(c, &k, id, -1, true, !e.removed, err);
	counts_free(&k);
	/* Directory objects are cached apart from indexes: x stays valid meanwhile. */
	if (!r)
		r = index_get(c, &e, &x, err);
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
		r = dir_get(c, &e, &d.key, &t, err);
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

static void *dup_or_null(const void *p, size_t n, bool *fail)
{
	void *d;

	if (!p || !n)
		return NULL;
	d = malloc(n);
	if (!d)
		*fail = true;
	else
		memcpy(d, p, n);
	return d;
}

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
	p->row.name = dup_or_null(row->name, row->namelen, &fail);
	p->row.target = dup_or_null(row->target, row->target_len, &fail);
	p->row.reloc = dup_or_null(row->reloc, row->reloc_len, &fail);
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

	key_of(data, len, ret_key);
	r = tree_ref(c, ret_key, k, 1, &refs, err);
	*ret_new = r == -ENOENT;
	if (r != -ENOENT)
		return r;
	r = pack_tree(data, len, k, &stored, &n);
	if (!r)
		r = tstmt(c, T_INSERT, &s, err);
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
				key_of(k->reloc, k->reloc_len, &e.reloc_key);
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
		r = tstmt(c, T_ENV_SET, &s, err);
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
	pend_clear(t);
	return r;
}

/* ---- every environment ---- */

typedef int (*env_fn)(void *ctx, const struct envref *e);

static int each_env(struct catalog *c, env_fn fn, void *ctx, struct cfs_err *err)
{
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s;
	int r = tstmt(c, T_ENVS, &s, err);

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

		r = env_get(c, ids[i], &e, err);
		if (!r)
			r = fn(ctx, &e);
	}
	free(ids);
	return r;
}

struct users_ctx {
	struct catalog *c;
	struct objkey key;
	int (*fn)(void *ctx, const char *env, int64_t node);
	int (*env_fn)(void *ctx, int64_t env);
	void *ctx;
	bool env_said;
	struct cfs_err *err;
};

static int user_one(void *ctx, const struct envref *e, const struct store_node *n,
                    const struct dirtree_entry *ent)
{
	struct users_ctx *u = ctx;

	if (n->type != NODE_FILE || memcmp(ent->key.b, u->key.b, 16) != 0)
		return 0;
	if (u->fn)
		return u->fn(u->ctx, e->hash, n->id);
	if (u->env_said)
		return 0;
	u->env_said = true;
	return u->env_fn(u->ctx, e->id);
}

static int users_env(void *ctx, const struct envref *e)
{
	struct users_ctx *u = ctx;

	u->env_said = false;
	return walk(u->c, e, user_one, u, u->err);
}

static int object_key(struct catalog *c, int64_t id, struct objkey *ret, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = tstmt(c, T_OBJ_KEY, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, id);
	r = cat_step_row(c, s, err);
	if (!r && !column_key(s, 0, ret))
		r = -ENOENT;
	sqlite3_reset(s);
	return r;
}

int catalog_object_users(struct catalog *c, int64_t id,
                         int (*fn)(void *ctx, const char *env, int64_t node), void *ctx,
                         struct cfs_err *err)
{
	struct users_ctx u = {.c = c, .fn = fn, .ctx = ctx, .err = err};
	int r = object_key(c, id, &u.key, err);

	if (r == -ENOENT)
		return 0;
	return r ? r : each_env(c, users_env, &u, err);
}

int catalog_object_envs(struct catalog *c, int64_t id, int (*fn)(void *ctx, int64_t env), void *ctx,
                        struct cfs_err *err)
{
	struct users_ctx u = {.c = c, .env_fn = fn, .ctx = ctx, .err = err};
	int r = object_key(c, id, &u.key, err);

	if (r == -ENOENT)
		return 0;
	return r ? r : each_env(c, users_env, &u, err);
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
	int r = index_get(d->c, e, &x, d->err);

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
		r = dir_get(c, NULL, &d.dirs[i], &t, err);
		for (uint32_t j = 0; !r && j < t->n; j++) {
			dirtree_get(t, j, &ent);
			if (ent.type != NODE_FILE)
				continue;
			r = object_by_key(c, &ent.key, &o, err);
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
	return walk(rc->c, e, count_file, &rc->k, rc->err);
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

int catalog_counts_wrong(struct catalog *c, enum catalog_count which, struct catalog_refs **ret,
                         size_t *ret_n, struct cfs_err *err)
{
	struct recount rc = {.c = c, .live_only = which == CATALOG_NLINK, .err = err};
	struct catalog_refs *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int r = each_env(c, recount_env, &rc, err);

	if (!r) {
		counts_sort(&rc.k);
		r = tstmt(c, which == CATALOG_REFS ? T_OBJ_REFS : T_GRP_NLINKS, &s, err);
	}
	while (!r && (r = cat_step_row(c, s, err)) == 0) {
		struct catalog_refs x = {.id = sqlite3_column_int64(s, 0),
		                         .had = sqlite3_column_int64(s, 2)};

		column_key(s, 1, &x.key);
		x.want = which == CATALOG_REFS
		                 ? (int64_t)run_of_key(&rc.k, &x.key) + sqlite3_column_int64(s, 3)
		                 : (int64_t)run_of_group(&rc.k, x.id);
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
	if (s)
		sqlite3_reset(s);
	counts_free(&rc.k);
	if (r != -ENOENT) {
		free(v);
		return r == -ENOMEM ? err_set(err, r, "out of memory") : r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* ---- version 4 to 5 ---- */

static int v4_env(struct catalog *c, int64_t env, int64_t root, struct cfs_err *err)
{
	struct cattree *t = cat_tree(c);
	sqlite3_stmt *s;
	int r = tstmt(c, T_V4_NODES, &s, err);

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

		if (!column_key(s, 14, &row.key))
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
		pend_clear(t);
		return r;
	}
	r = t->npend ? build_env(c, env, t->pend, t->npend, err) : 0;
	pend_clear(t);
	return r;
}

int cattree_upgrade(struct catalog *c, struct cfs_err *err)
{
	int64_t *envs = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s;
	int r = tstmt(c, T_V4_ENVS, &s, err);

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
