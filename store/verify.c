// SPDX-License-Identifier: MIT
/*
 * Verify: re-read every object the catalog names and check it hashes to its key, name the
 * environments and paths that use a missing or corrupt one, list object files that no
 * catalog row names (left by an ingest killed before its commit: harmless, gc frees them),
 * and check every node's link to its object and the shape of every tree, and every record
 * of a package archive (catalog.c C9): it reads, and every content it names has a row.
 * Repair: the same, then mend what needs no lost bytes (see store_repair in store.h).
 *
 * Invariants of the repair (with gc.c's G1-G2 and catalog.c's C2):
 * V1: it runs under the store lock held exclusively, so no ingest is between publishing
 *     an object and committing its row, and no object or node row comes or goes: the
 *     rows the re-hash saw are the rows the repair changes, and a file no row names is
 *     an orphan.
 * V2: every catalog change is one transaction, committed before any file is removed; a
 *     file is removed only when no row names it (G1). A crash leaves the old catalog or
 *     the new one, plus at worst files no row names.
 * V3: broken is set from what the re-hash and the tree checks found, for every environment,
 *     every run: an environment whose objects were restored is cleared by the next repair.
 * V4: damage is never a reason to delete more. A catalog that names no object is not
 *     trusted to say which images are unreferenced (store.c S1), and when a node's link to
 *     its object or its place in its tree is wrong, the rows that would decide what is
 *     unused are themselves in doubt: then the repair only marks environments broken, and
 *     leaves reference counts, rows and object files as they are.
 */
#include "store_impl.h"

#include "condafs/verify.h"

#include "err.h"
#include "grow.h"
#include "pack.h"
#include "pkgrec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* A missing or corrupt object found by the re-hash, for the repair. */
struct bad_object {
	int64_t id;
	enum object_kind kind;
	struct objkey key;
	bool image;   /* it has a file of its own: a pack or a large content */
	bool dropped; /* its row was deleted: nothing used it */
};

struct verify {
	struct store *st;
	void (*fn)(void *ctx, const struct verify_problem *p);
	void *ctx;
	struct verify_result res;
	char key[33];
	struct cfs_err *err;
	/* Damaged contents still referenced: their users are named after the walk over
	 * objects, in one walk over the trees for all of them. */
	struct user_wanted {
		int64_t id;
		char key[33];
		char *problem; /* owned */
	} * wanted;
	size_t nwanted, capwanted;
	/* The pack being walked: objects come pack first, then its members. */
	int64_t pack_id;
	struct object *pack;
	int pack_rc;
	char pack_msg[sizeof(((struct cfs_err *)0)->msg)];
	uint8_t *buf;
	/* store_repair only: what the walks found, to mend afterwards. */
	bool collect;
	struct bad_object *bad;
	size_t nbad, capbad;
	struct objkey *orphans;
	size_t norphans, caporphans;
	int64_t *damaged; /* environments with a damaged node */
	size_t ndamaged, capdamaged;
	struct bad_record {
		int64_t row;
		char env[33];
		char dist[256];
	} * records; /* damaged package archive records */
	size_t nrecords, caprecords;
};

/* Make room for one more element of size in the array v of *n (capacity *cap): the array,
 * moved perhaps, with *n counting the new element; NULL when out of memory (v stays). */
static int report_user(void *ctx, size_t i, int64_t env, const char *hash, int64_t node)
{
	struct verify *v = ctx;
	char path[4096];
	struct verify_problem p = {v->wanted[i].key, v->wanted[i].problem, hash, path};

	(void)env;
	if (node == 0)
		snprintf(path, sizeof(path), "(its tree)");
	else if (store_node_path(v->st, node, path, sizeof(path), NULL))
		snprintf(path, sizeof(path), "(node %lld)", (long long)node);
	v->fn(v->ctx, &p);
	return 0;
}

/* Every user of the damaged contents the walk over objects found. */
static int report_users(struct verify *v)
{
	int64_t *ids = malloc((v->nwanted ? v->nwanted : 1) * sizeof(*ids));
	int r;

	if (!ids)
		return err_set(v->err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < v->nwanted; i++)
		ids[i] = v->wanted[i].id;
	r = catalog_objects_users(v->st->cat, ids, v->nwanted, report_user, v, v->err);
	free(ids);
	return r;
}

/* A member's bytes, read from its pack, must hash to its key. */
static int check_member(struct verify *v, const struct catalog_object *co, struct cfs_err *e)
{
	struct object_src src = {0};
	struct objkey k;
	size_t got;
	int r;

	if (co->pack != v->pack_id)
		return err_set(e, -EBADMSG, "its pack is missing");
	if (v->pack_rc)
		return err_set(e, v->pack_rc, "in a bad pack: %s", v->pack_msg);
	if (co->size > PACK_MEMBER_MAX)
		return err_set(e, -EBADMSG, "member of %llu bytes", (unsigned long long)co->size);
	r = object_read(v->pack, v->st->dctx, co->pack_off, (size_t)co->size, v->buf, &got, e);
	if (r)
		return r;
	src.data = v->buf;
	src.len = got;
	object_hash(&src, &k);
	if (got != co->size || memcmp(k.b, co->key.b, 16) != 0)
		return err_set(e, -EBADMSG, "corrupt object: content does not match its key");
	return 0;
}

static int check_object(void *ctx, const struct catalog_object *co)
{
	struct verify *v = ctx;
	struct object *o = NULL;
	struct user_wanted *w;
	struct cfs_err e;
	int r;

	v->res.objects_checked++;
	objkey_hex(&co->key, v->key);
	if (co->pack) {
		r = check_member(v, co, &e);
	} else {
		r = object_open(v->st->fd, &co->key, &o, &e);
		if (r == 0)
			r = object_check(o, v->st->dctx, &e);
		if (r == 0 && object_size(o) != co->size)
			r = err_set(&e, -EBADMSG, "size %llu, catalog says %llu",
			            (unsigned long long)object_size(o),
			            (unsigned long long)co->size);
		if (co->kind == OBJECT_PACK) {
			/* Kept open for the members that follow. */
			object_close(v->pack);
			v->pack = o;
			o = NULL;
			v->pack_id = co->id;
			v->pack_rc = r;
			snprintf(v->pack_msg, sizeof(v->pack_msg), "%s", r ? e.msg : "");
		}
	}
	object_close(o);
	if (r == -EBADMSG && v->collect) {
		struct bad_object *b = grow_push(v->bad, &v->nbad, &v->capbad, sizeof(*v->bad));

		if (!b)
			return err_set(v->err, -ENOMEM, "out of memory");
		v->bad = b;
		v->bad[v->nbad - 1] =
		        (struct bad_object){co->id, co->kind, co->key, !co->pack, false};
	}
	if (r == -EBADMSG) {
		v->res.corrupt++;
		if (co->refs == 0 || co->kind == OBJECT_PACK) {
			struct verify_problem p = {v->key, e.msg, NULL, NULL};

			/* A bad pack is named here; its members name their users next. */
			v->fn(v->ctx, &p);
			return 0;
		}
		w = grow_push(v->wanted, &v->nwanted, &v->capwanted, sizeof(*v->wanted));
		if (!w)
			return err_set(v->err, -ENOMEM, "out of memory");
		v->wanted = w;
		w = &v->wanted[v->nwanted - 1];
		w->id = co->id;
		memcpy(w->key, v->key, sizeof(w->key));
		w->problem = strdup(e.msg);
		if (!w->problem) {
			v->nwanted--;
			return err_set(v->err, -ENOMEM, "out of memory");
		}
		return 0;
	}
	if (r)
		return err_set(v->err, r, "%s", e.msg);
	if (co->refs == 0) {
		struct verify_problem p = {v->key, "unreferenced", NULL, NULL};

		v->res.unreferenced++;
		v->fn(v->ctx, &p);
	}
	return 0;
}

static int orphan_one(void *ctx, int dfd, const char *name, const struct objkey *key)
{
	struct verify *v = ctx;
	struct verify_problem p = {NULL, "unreferenced", NULL, NULL};
	struct catalog_object co;
	char hex[33];
	int r = catalog_object_by_key(v->st->cat, key, &co, v->err);

	(void)dfd;
	(void)name;
	if (r != -ENOENT)
		return r;
	objkey_hex(key, hex);
	p.key = hex;
	v->res.unreferenced++;
	v->fn(v->ctx, &p);
	if (v->collect) {
		struct objkey *o = grow_push(v->orphans, &v->norphans, &v->caporphans, sizeof(*o));

		if (!o)
			return err_set(v->err, -ENOMEM, "out of memory");
		v->orphans = o;
		o[v->norphans - 1] = *key;
	}
	return 0;
}

/* Object files with no catalog row. */
static int find_orphans(struct verify *v)
{
	return object_each_image(v->st->fd, v->st->dir, orphan_one, v, v->err);
}

/* ---- the trees: every node's link to its object, and the shape of every tree ---- */

/* A node of the environment being checked, as far as the shape needs it. */
struct tnode {
	int64_t id, parent, first_child, nchildren, seen;
	int type;
	size_t name_off, namelen; /* in tree.names; at most NAME_MAX bytes kept */
};

/* Something wrong with node n (an index in tree.n), and the object it names if any. */
struct tproblem {
	size_t n;
	bool has_key;
	struct objkey key;
	char msg[400]; /* a damaged tree: what its reader said, with the catalog's path */
};

struct tree {
	struct verify *v;
	const struct store_env *env;
	struct tnode *n;
	size_t nn, capn;
	char *names;
	size_t nnames, capnames;
	struct tproblem *p;
	size_t np, capp;
};

static void tree_free(struct tree *t)
{
	free(t->n);
	free(t->names);
	free(t->p);
}

static int tree_problem(struct tree *t, size_t n, const struct objkey *key, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int tree_problem(struct tree *t, size_t n, const struct objkey *key, const char *fmt, ...)
{
	struct tproblem *p = grow_push(t->p, &t->np, &t->capp, sizeof(*t->p));
	va_list ap;

	if (!p)
		return -ENOMEM;
	t->p = p;
	p = &t->p[t->np - 1];
	p->n = n;
	p->has_key = key != NULL;
	if (key)
		p->key = *key;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
	return 0;
}

/* A name a tree may hold: what readdir and lookup can give back as one component. */
static const char *bad_name(const uint8_t *name, size_t len)
{
	if (len == 0)
		return "an empty name";
	if (len > NAME_MAX)
		return "a name longer than 255 bytes";
	if (memchr(name, '/', len))
		return "a name with a '/'";
	if (memchr(name, '\0', len))
		return "a name with a NUL byte";
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return "the name '.' or '..'";
	return NULL;
}

/* Names in SQLite's order of blobs: bytes, then length. */
static int name_cmp(const char *a, size_t an, const uint8_t *b, size_t bn)
{
	size_t n = an < bn ? an : bn;
	int c = n ? memcmp(a, b, n) : 0; /* SQLite gives an empty blob as NULL */

	return c ? c : (an > bn) - (an < bn);
}

/* One row: kept for the shape, and its own fields and links checked. */
static int tree_row(void *ctx, const struct catalog_link *l)
{
	struct tree *t = ctx;
	size_t k = t->nn, keep = l->namelen < NAME_MAX ? l->namelen : NAME_MAX;
	const struct tnode *prev;
	const struct objkey *key = l->obj_found ? &l->obj_key : NULL;
	struct tnode *n = grow_push(t->n, &t->nn, &t->capn, sizeof(*t->n));
	const char *why;
	int r = 0;

	if (!n)
		return -ENOMEM;
	t->n = n;
	if (t->nnames + keep > t->capnames) {
		size_t cap = t->capnames ? 2 * t->capnames : 65536;
		char *v;

		while (cap < t->nnames + keep)
			cap *= 2;
		v = realloc(t->names, cap);
		if (!v)
			return -ENOMEM;
		t->names = v;
		t->capnames = cap;
	}
	if (keep)
		memcpy(t->names + t->nnames, l->name, keep);
	t->n[k] = (struct tnode){.id = l->id,
	                         .parent = l->parent,
	                         .first_child = l->first_child,
	                         .nchildren = l->nchildren,
	                         .type = l->type,
	                         .name_off = t->nnames,
	                         .namelen = keep};
	t->nnames += keep;
	prev = k ? &t->n[k - 1] : NULL;
	if (l->parent && (why = bad_name(l->name, l->namelen)))
		r = tree_problem(t, k, NULL, "%s", why);
	/* Siblings are consecutive ids sorted by name (catalog.c C3): strictly, so no two
	 * share a name. */
	else if (l->parent && prev && prev->parent == l->parent &&
	         name_cmp(t->names + prev->name_off, prev->namelen, l->name, keep) >= 0)
		r = tree_problem(t, k, NULL, "name not after its previous sibling's");
	if (r)
		return r;
	switch (l->type) {
	case NODE_DIR:
		break;
	case NODE_SYMLINK:
		if (!l->has_target)
			r = tree_problem(t, k, NULL, "symbolic link without a target");
		break;
	case NODE_FILE:
		if (!l->obj)
			r = tree_problem(t, k, NULL, "file without an object");
		else if (!l->obj_found)
			r = tree_problem(t, k, &l->obj_key, "no object row");
		/* The object may be a pack row: a pack of one member has the member's bytes,
		 * so its key, and is that member's row. */
		else if (l->size != l->obj_size)
			r = tree_problem(t, k, key, "size %lld, its object holds %lld bytes",
			                 (long long)l->size, (long long)l->obj_size);
		else if (l->group && (!l->group_found || l->group_obj != l->obj))
			r = tree_problem(t, k, key, "in group %lld, which is not of its object",
			                 (long long)l->group);
		break;
	default:
		r = tree_problem(t, k, NULL, "unknown node type %d", l->type);
	}
	return r;
}

static int by_tnode_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = ((const struct tnode *)b)->id;

	return (x > y) - (x < y);
}

static struct tnode *tree_find(struct tree *t, int64_t id)
{
	return bsearch(&id, t->n, t->nn, sizeof(*t->n), by_tnode_id);
}

/* The shape: one top directory first; every other node after its parent, a directory of
 * this environment whose children's range holds it; every directory's range after it and
 * holding exactly its children. Parents then come before children all the way up, so there
 * is no cycle, and a listing and a lookup see the same tree. */
static int tree_shape(struct tree *t)
{
	struct tnode *top = t->nn ? &t->n[0] : NULL;
	int r = 0;

	if (!top || top->id != t->env->root || top->parent != 0 || top->type != NODE_DIR)
		return tree_problem(t, 0, NULL,
		                    "the environment's top directory (node %lld) is "
		                    "not its first node",
		                    (long long)t->env->root);
	for (size_t k = 1; !r && k < t->nn; k++) {
		struct tnode *n = &t->n[k], *p = NULL;

		if (n->parent >= n->id || n->parent <= 0)
			r = tree_problem(t, k, NULL, "listed before its parent (node %lld)",
			                 (long long)n->parent);
		else if (!(p = tree_find(t, n->parent)) || p->type != NODE_DIR)
			r = tree_problem(
			        t, k, NULL,
			        "its parent (node %lld) is not a directory of this environment",
			        (long long)n->parent);
		else if (n->id < p->first_child || n->id - p->first_child >= p->nchildren)
			r = tree_problem(t, k, NULL, "not among its parent's children");
		else
			p->seen++;
	}
	for (size_t k = 0; !r && k < t->nn; k++) {
		struct tnode *d = &t->n[k];

		if (d->type != NODE_DIR)
			continue;
		if (d->nchildren < 0 || (d->nchildren > 0 && d->first_child <= d->id))
			r = tree_problem(
			        t, k, NULL,
			        "its children (from node %lld) are listed before it: a cycle",
			        (long long)d->first_child);
		else if (d->seen != d->nchildren)
			r = tree_problem(t, k, NULL, "%lld children listed, %lld found",
			                 (long long)d->nchildren, (long long)d->seen);
	}
	return r;
}

/* Append a name to buf (of size, holding len bytes), bytes a terminal or a path would
 * misread escaped. */
static size_t put_name(char *buf, size_t size, size_t len, const char *name, size_t n)
{
	for (size_t i = 0; i < n && len + 5 < size; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
			len += (size_t)snprintf(buf + len, size - len, "\\x%02x", c);
		else
			buf[len++] = (char)c;
	}
	buf[len] = '\0';
	return len;
}

/* The path of node k from the rows read, following parents only while they come first (a
 * damaged tree must not loop): "(node N)/..." where the chain breaks. */
static void tree_path(struct tree *t, size_t k, char *buf, size_t size)
{
	size_t chain[256] = {0}, depth = 0, len = 0;
	struct tnode *n = &t->n[k];

	while (depth < 256 && n->parent > 0) {
		struct tnode *p = n->parent < n->id ? tree_find(t, n->parent) : NULL;

		chain[depth++] = (size_t)(n - t->n);
		if (!p)
			break;
		n = p;
	}
	buf[0] = '\0';
	if (n->parent > 0 || depth == 256)
		len = (size_t)snprintf(buf, size, "(node %lld)/", (long long)n->parent);
	while (depth-- > 0 && len < size - 1) {
		const struct tnode *c = &t->n[chain[depth]];

		len = put_name(buf, size, len, t->names + c->name_off, c->namelen);
		if (depth && len < size - 1)
			buf[len++] = '/';
		buf[len] = '\0';
	}
}

static int check_tree(struct verify *v, const struct store_env *env)
{
	struct tree t = {.v = v, .env = env};
	struct objkey image;
	bool row;
	int r = catalog_env_image(v->st->cat, env->id, &image, &row, v->err);

	/* C2: the image is read here, but gc would take it for unreferenced. */
	if (!r && !row)
		r = tree_problem(&t, SIZE_MAX, &image, "no object row");
	if (!r)
		r = catalog_env_links(v->st->cat, env->id, tree_row, &t, v->err);

	/* A tree that does not read (a directory object or the index damaged or missing):
	 * one problem for the environment, with what the reader said. */
	if (r == -EUCLEAN) {
		tree_free(&t);
		t = (struct tree){.v = v, .env = env};
		r = tree_problem(&t, 0, NULL, "%s", v->err->msg);
		v->err->msg[0] = '\0';
	} else if (!r) {
		r = tree_shape(&t);
	}
	for (size_t i = 0; !r && i < t.np; i++) {
		char path[4096], key[33];
		struct verify_problem p = {NULL, t.p[i].msg, env->hash, path};

		path[0] = '\0';
		if (t.p[i].n < t.nn)
			tree_path(&t, t.p[i].n, path, sizeof(path));
		if (t.p[i].has_key) {
			objkey_hex(&t.p[i].key, key);
			p.key = key;
		}
		v->res.damaged_nodes++;
		v->fn(v->ctx, &p);
	}
	if (!r && t.np && v->collect) {
		int64_t *d = grow_push(v->damaged, &v->ndamaged, &v->capdamaged, sizeof(*d));

		if (!d)
			r = -ENOMEM;
		else
			(v->damaged = d)[v->ndamaged - 1] = env->id;
	}
	tree_free(&t);
	return r == -ENOMEM ? err_set(v->err, r, "out of memory") : r;
}

static int check_trees(struct verify *v)
{
	struct store_env *envs = NULL;
	size_t n = 0;
	int r = catalog_env_list(v->st->cat, CATALOG_ENVS_ALL, &envs, &n, v->err);

	for (size_t i = 0; !r && i < n; i++)
		r = check_tree(v, &envs[i]);
	free(envs);
	return r;
}

/* 1 with why (and key) when a package archive record is no good: it does not read, or
 * names a content with no row (it was made with its environment's tree, which names all
 * of them: C9); 0 when it is; -ENOMEM. */
static int record_problem(struct verify *v, const uint8_t *data, size_t len, char *why, size_t size,
                          char key[33])
{
	struct cfs_err e2;
	struct pkgrec *rec = NULL;
	struct catalog_object o;
	int r = pkgrec_open(data, len, "record", &rec, &e2);

	key[0] = '\0';
	if (r == -ENOMEM)
		return r;
	if (r) {
		snprintf(why, size, "package %s", e2.msg);
		return 1;
	}
	for (size_t i = 0; !key[0] && i < pkgrec_npaths(rec) + pkgrec_npycs(rec); i++) {
		const struct pkgrec_entry *e = i < pkgrec_npaths(rec)
		                                       ? pkgrec_path_at(rec, i)
		                                       : pkgrec_pyc_at(rec, i - pkgrec_npaths(rec));

		if (e->type == NODE_FILE &&
		    catalog_object_by_key(v->st->cat, &e->key, &o, &e2) == -ENOENT) {
			objkey_hex(&e->key, key);
			snprintf(why, size, "package record: %s has no object row", e->path);
		}
	}
	if (!key[0] && pkgrec_meta(rec) &&
	    catalog_object_by_key(v->st->cat, &pkgrec_meta(rec)->key, &o, &e2) == -ENOENT) {
		objkey_hex(&pkgrec_meta(rec)->key, key);
		snprintf(why, size, "package record: its conda-meta record has no object row");
	}
	pkgrec_free(rec);
	return key[0] ? 1 : 0;
}

static int check_record(void *ctx, int64_t row, const char *env, const char *dist,
                        const uint8_t *data, size_t len)
{
	struct verify *v = ctx;
	char why[sizeof(v->err->msg)], key[33];
	struct verify_problem p = {NULL, why, env, dist};
	struct bad_record *b;
	int r = record_problem(v, data, len, why, sizeof(why), key);

	if (r <= 0)
		return r == -ENOMEM ? err_set(v->err, r, "out of memory") : r;
	if (key[0])
		p.key = key;
	v->res.damaged_records++;
	v->fn(v->ctx, &p);
	if (!v->collect)
		return 0;
	b = grow_push(v->records, &v->nrecords, &v->caprecords, sizeof(*b));
	if (!b)
		return err_set(v->err, -ENOMEM, "out of memory");
	v->records = b;
	b = &b[v->nrecords - 1];
	b->row = row;
	snprintf(b->env, sizeof(b->env), "%s", env);
	snprintf(b->dist, sizeof(b->dist), "%s", dist);
	return 0;
}

/* The walks over objects and object files, in one read transaction: a consistent view
 * while ingests commit beside us. */
static int verify_walk(struct verify *v)
{
	int r;

	v->buf = malloc(PACK_MEMBER_MAX);
	if (!v->buf)
		return -ENOMEM;
	r = catalog_begin(v->st->cat, false, v->err);
	/* V4: before any image is taken for unreferenced. */
	if (!r)
		r = store_check_catalog(v->st, false, v->err);
	if (!r)
		r = catalog_object_each(v->st->cat, check_object, v, v->err);
	if (!r)
		r = report_users(v);
	if (!r)
		r = find_orphans(v);
	if (!r)
		r = check_trees(v);
	if (!r)
		r = catalog_package_records(v->st->cat, check_record, v, v->err);
	catalog_rollback(v->st->cat);
	object_close(v->pack);
	v->pack = NULL;
	free(v->buf);
	v->buf = NULL;
	for (size_t i = 0; i < v->nwanted; i++)
		free(v->wanted[i].problem);
	free(v->wanted);
	v->wanted = NULL;
	v->nwanted = v->capwanted = 0;
	return r;
}

int store_verify(struct store *st, void (*fn)(void *ctx, const struct verify_problem *p), void *ctx,
                 struct verify_result *ret, struct cfs_err *err)
{
	struct verify v = {.st = st, .fn = fn, .ctx = ctx, .err = err};
	int lock = -1;
	/* Shared, as an ingest holds it: gc deletes and moves objects (repack.c) only while it
	 * holds it exclusively, so no image the walk's snapshot names goes away under it. */
	int r = store_lock(st, LOCK_SH, &lock, err);

	if (!r)
		r = verify_walk(&v);
	if (lock >= 0)
		close(lock);
	if (!r)
		*ret = v.res;
	return r;
}

/* ---- repair ---- */

struct repair {
	struct store *st;
	void (*done)(void *ctx, const struct repair_action *a);
	void *ctx;
	struct repair_result res;
	int64_t *broken; /* environments using a missing or corrupt object */
	size_t nbroken, capbroken;
};

static void repair_done(struct repair *rp, enum repair_kind kind, const struct objkey *key,
                        const char *name, const char *env, int64_t had, int64_t now)
{
	struct repair_action a = {kind, NULL, name, env, had, now};
	char hex[33];

	if (!rp->done)
		return;
	if (key) {
		objkey_hex(key, hex);
		a.key = hex;
	}
	rp->done(rp->ctx, &a);
}

static void ignore_problem(void *ctx, const struct verify_problem *p)
{
	(void)ctx;
	(void)p;
}

static int add_broken(struct repair *rp, int64_t env)
{
	int64_t *b;

	/* A tree is walked whole before the next: its users come one after another. */
	if (rp->nbroken && rp->broken[rp->nbroken - 1] == env)
		return 0;
	b = grow_push(rp->broken, &rp->nbroken, &rp->capbroken, sizeof(*b));
	if (!b)
		return -ENOMEM;
	rp->broken = b;
	b[rp->nbroken - 1] = env;
	return 0;
}

static int broken_user(void *ctx, size_t i, int64_t env, const char *hash, int64_t node)
{
	(void)i;
	(void)hash;
	(void)node;
	return add_broken(ctx, env);
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* C2 again: every reference count recounted from the rows, and C8's link counts. */
static int fix_refs(struct repair *rp, struct cfs_err *err)
{
	static const struct {
		enum catalog_count which;
		enum repair_kind kind;
	} counts[] = {{CATALOG_REFS, REPAIR_REFS}, {CATALOG_NLINK, REPAIR_NLINK}};
	int r = 0;

	for (size_t k = 0; !r && k < sizeof(counts) / sizeof(counts[0]); k++) {
		struct catalog_refs *v = NULL;
		size_t n = 0;

		r = catalog_counts_wrong(rp->st->cat, counts[k].which, &v, &n, err);
		for (size_t i = 0; !r && i < n; i++) {
			r = catalog_count_set(rp->st->cat, counts[k].which, v[i].id, v[i].want,
			                      err);
			if (r)
				break;
			rp->res.refs_fixed++;
			repair_done(rp, counts[k].kind, &v[i].key, NULL, NULL, v[i].had, v[i].want);
		}
		free(v);
	}
	return r;
}

/* Delete the rows of missing or corrupt objects nothing uses, as gc would: contents
 * first, since deleting a member releases its pack. Their files go after the commit. */
static int drop_unused(struct repair *rp, struct verify *v, struct cfs_err *err)
{
	static const enum object_kind order[] = {OBJECT_CONTENT, OBJECT_TREE, OBJECT_PACK};
	int r = 0;

	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		for (size_t i = 0; !r && i < v->nbad; i++) {
			struct bad_object *b = &v->bad[i];
			struct catalog_object o;

			if (b->kind != order[k])
				continue;
			r = catalog_object_by_id(rp->st->cat, b->id, &o, err);
			if (r == -ENOENT)
				r = err_set(err, -EUCLEAN, "%s: object %lld vanished during repair",
				            rp->st->dir, (long long)b->id);
			if (r || o.refs != 0)
				continue;
			r = catalog_object_delete(rp->st->cat, &o, err);
			if (r)
				break;
			b->dropped = true;
			rp->res.dropped++;
			repair_done(rp, REPAIR_DROPPED, &b->key, NULL, NULL, 0, 0);
		}
	}
	return r ? r : catalog_prune(rp->st->cat, err);
}

/* V3: broken is whether an environment uses an object that is still missing or corrupt. */
static int mark_envs(struct repair *rp, struct verify *v, struct cfs_err *err)
{
	struct store_env *envs = NULL;
	int64_t *ids = malloc((v->nbad ? v->nbad : 1) * sizeof(*ids));
	size_t n = 0, nids = 0;
	int r = ids ? 0 : err_set(err, -ENOMEM, "out of memory");

	for (size_t i = 0; !r && i < v->nbad; i++) {
		if (v->bad[i].dropped)
			continue;
		rp->res.corrupt_left++;
		/* A pack has no users of its own: its members are in the list too. A tree
		 * image's user is its environment. */
		if (v->bad[i].kind != OBJECT_PACK)
			ids[nids++] = v->bad[i].id;
	}
	if (!r)
		r = catalog_objects_users(rp->st->cat, ids, nids, broken_user, rp, err);
	free(ids);
	for (size_t i = 0; !r && i < v->ndamaged; i++)
		r = add_broken(rp, v->damaged[i]);
	if (rp->nbroken)
		qsort(rp->broken, rp->nbroken, sizeof(*rp->broken), cmp_id);
	if (!r)
		r = catalog_env_list(rp->st->cat, CATALOG_ENVS_ALL, &envs, &n, err);
	for (size_t i = 0; !r && i < n; i++) {
		bool want = rp->nbroken && bsearch(&envs[i].id, rp->broken, rp->nbroken,
		                                   sizeof(*rp->broken), cmp_id);

		if (want && !envs[i].removed)
			rp->res.envs_broken++;
		if (want == envs[i].broken)
			continue;
		r = catalog_env_set_broken(rp->st->cat, envs[i].id, want, err);
		if (r)
			break;
		if (want)
			rp->res.envs_marked++;
		else
			rp->res.envs_cleared++;
		repair_done(rp, want ? REPAIR_BROKEN : REPAIR_UNBROKEN, NULL, NULL, envs[i].hash, 0,
		            0);
	}
	free(envs);
	return r;
}

/* C5: a file recorded as holding a missing or corrupt content is compared again by the
 * next ingest, which then says the store is corrupt rather than share what is lost. */
static int forget_sources(struct repair *rp, struct verify *v, struct cfs_err *err)
{
	int64_t *ids = malloc((v->nbad ? v->nbad : 1) * sizeof(*ids));
	size_t n = 0;
	int r;

	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < v->nbad; i++)
		if (v->bad[i].kind == OBJECT_CONTENT)
			ids[n++] = v->bad[i].id;
	r = n ? catalog_sources_forget(rp->st->cat, ids, n, err) : 0;
	free(ids);
	return r;
}

/* V2: every row change in one transaction. */
static int mend_catalog(struct repair *rp, struct verify *v, struct cfs_err *err)
{
	int r = catalog_begin(rp->st->cat, true, err);

	if (r)
		return r;
	/* V4: with damaged nodes, the counts the rows give are not to be believed. */
	if (!v->ndamaged)
		r = fix_refs(rp, err);
	if (!r)
		r = forget_sources(rp, v, err);
	if (!r && !v->ndamaged)
		r = drop_unused(rp, v, err);
	if (!r)
		r = mark_envs(rp, v, err);
	/* A damaged record is forgotten: the install it would mislead fetches instead. */
	for (size_t i = 0; !r && i < v->nrecords; i++) {
		r = catalog_package_forget(rp->st->cat, v->records[i].row, err);
		if (!r) {
			rp->res.records_forgotten++;
			repair_done(rp, REPAIR_RECORD, NULL, v->records[i].dist, v->records[i].env,
			            0, 0);
		}
	}
	if (!r)
		r = catalog_commit(rp->st->cat, err);
	if (r)
		catalog_rollback(rp->st->cat);
	return r;
}

/* After the commit (V2): the files no row names, which V1 keeps that way. */
static int unlink_object(struct repair *rp, const struct objkey *key, bool orphan,
                         struct cfs_err *err)
{
	char path[48];

	objkey_path(key, path);
	if (unlinkat(rp->st->fd, path, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, neg_errno(), "%s/%s: %s", rp->st->dir, path, strerror(errno));
	}
	if (orphan) {
		rp->res.orphans_removed++;
		repair_done(rp, REPAIR_ORPHAN, key, NULL, NULL, 0, 0);
	}
	return 0;
}

static void tmp_removed(void *ctx, const char *name)
{
	struct repair *rp = ctx;

	rp->res.tmp_removed++;
	repair_done(rp, REPAIR_TMP, NULL, name, NULL, 0, 0);
}

int store_repair(struct store *st, void (*fn)(void *ctx, const struct verify_problem *p),
                 void (*done)(void *ctx, const struct repair_action *a), void *ctx,
                 struct repair_result *ret, struct cfs_err *err)
{
	struct verify v = {
	        .st = st, .fn = fn ? fn : ignore_problem, .ctx = ctx, .err = err, .collect = true};
	struct repair rp = {.st = st, .done = done, .ctx = ctx};
	int lock = -1, r;

	r = store_writable(st, err);
	if (r)
		return r;
	/* V1: held to the end, over the file removals too. */
	r = store_lock(st, LOCK_EX, &lock, err);
	if (r)
		return r;
	/* The re-hash takes long, so it reads without the write lock: the daemon's last-use
	 * updates and tag changes are not held up, and V1 keeps what it sees current. */
	r = verify_walk(&v);
	if (r)
		goto out;
	rp.res.found = v.res;
	r = mend_catalog(&rp, &v, err);
	/* V4: a file no row names may be the one a damaged row should name. */
	for (size_t i = 0; !r && !v.ndamaged && i < v.norphans; i++)
		r = unlink_object(&rp, &v.orphans[i], true, err);
	/* A dropped pack or large content leaves its image; members have none. */
	for (size_t i = 0; !r && i < v.nbad; i++)
		if (v.bad[i].dropped && v.bad[i].image)
			r = unlink_object(&rp, &v.bad[i].key, false, err);
	if (!r) {
		r = object_tmp_clean(st->fd, true, tmp_removed, &rp, err);
		if (r && err) {
			char msg[sizeof(err->msg)];

			memcpy(msg, err->msg, sizeof(msg));
			err_set(err, r, "%s/%s", st->dir, msg);
		}
	}
out:
	if (!r)
		*ret = rp.res;
	free(v.bad);
	free(v.orphans);
	free(v.damaged);
	free(v.records);
	free(rp.broken);
	close(lock);
	return r;
}
