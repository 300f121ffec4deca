// SPDX-License-Identifier: MIT
/*
 * Reading environments back: finding environments, walking their trees, and serving a
 * file's bytes under any prefix. This is the daemon's hot path: a read reuses the opened
 * object and relocation record of the last few nodes read on this handle. A record is
 * read from the catalog piece by piece (reloc_open, catalog_reloc_read), so a file of a
 * million prefix copies costs a handle a window and a few marks, not the record.
 */
#include "store_impl.h"

#include "err.h"
#include "hex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int store_env_list(struct store *st, struct store_env **ret, size_t *ret_n, struct cfs_err *err)
{
	return catalog_env_list(st->cat, CATALOG_ENVS_LIVE, ret, ret_n, err);
}

int store_env_list_all(struct store *st, struct store_env **ret, size_t *ret_n, struct cfs_err *err)
{
	return catalog_env_list(st->cat, CATALOG_ENVS_ALL, ret, ret_n, err);
}

int store_env_find(struct store *st, const char *name, struct store_env *ret, struct cfs_err *err)
{
	size_t len = strlen(name);
	int r = -ENOENT;

	if (store_tag_valid(name)) {
		r = catalog_env_by_tag(st->cat, name, ret, err);
		if (r != -ENOENT)
			return r;
	}
	if (len < 4 || len > 32 || !hex_only(name, len, false))
		return err_set(err, -ENOENT, "%s: no such environment or tag", name);
	if (len == 32)
		r = catalog_env_by_hash(st->cat, name, ret, err);
	else
		r = catalog_env_by_prefix(st->cat, name, ret, err);
	if (r == -ENOENT)
		return err_set(err, r, "%s: no such environment", name);
	if (r == -EINVAL)
		return err_set(err, r, "%s: more than one environment starts with it", name);
	return r;
}

int store_env_packages(struct store *st, const struct store_env *env, struct pkgset **ret,
                       struct cfs_err *err)
{
	return catalog_env_packages(st->cat, env->id, env->platform, ret, err);
}

int store_env_unique_bytes(struct store *st, const struct store_env *env, uint64_t *ret,
                           struct cfs_err *err)
{
	return catalog_env_unique_bytes(st->cat, env->id, ret, err);
}

int store_stats(struct store *st, struct store_stats *ret, struct cfs_err *err)
{
	memset(ret, 0, sizeof(*ret));
	return catalog_stats(st->cat, ret, err);
}

int store_node_get(struct store *st, int64_t id, struct store_node *ret, struct cfs_err *err)
{
	int r = catalog_node_get(st->cat, id, ret, err);

	if (r == -ENOENT)
		return err_set(err, r, "node %lld: no such node", (long long)id);
	return r;
}

int store_group_get(struct store *st, int64_t group, struct store_node *ret, uint32_t *ret_nlink,
                    struct cfs_err *err)
{
	int r = catalog_group_get(st->cat, group, ret, ret_nlink, err);

	if (r == -ENOENT)
		return err_set(err, r, "group %lld: no such group", (long long)group);
	return r;
}

int store_changes(struct store *st, uint64_t *ret, struct cfs_err *err)
{
	return catalog_data_version(st->cat, ret, err);
}

int store_node_lookup(struct store *st, int64_t dir, const char *name, size_t len,
                      struct store_node *ret, struct cfs_err *err)
{
	return catalog_node_lookup(st->cat, dir, name, len, ret, err);
}

struct child_list {
	struct store_node *v;
	size_t n;
};

static int collect_child(void *ctx, const struct store_node *n)
{
	struct child_list *l = ctx;

	l->v[l->n++] = *n;
	return 0;
}

int store_dir_iter(struct store *st, const struct store_node *dir, uint32_t start,
                   int (*fn)(void *ctx, const struct store_node *child), void *ctx,
                   struct cfs_err *err)
{
	struct child_list l = {0};
	int r;

	if (dir->type != NODE_DIR)
		return -ENOTDIR;
	if (start >= dir->nchildren)
		return 0;
	/* Collected first: fn may walk further down on this same handle. */
	l.v = malloc((dir->nchildren - start) * sizeof(*l.v));
	if (!l.v)
		return -ENOMEM;
	r = catalog_node_range(st->cat, dir->first_child + start, dir->first_child + dir->nchildren,
	                       collect_child, &l, err);
	if (!r && l.n != dir->nchildren - start)
		r = err_set(err, -EUCLEAN, "directory %lld: %u children listed, %zu found",
		            (long long)dir->id, dir->nchildren - start, l.n);
	for (size_t i = 0; !r && i < l.n; i++)
		r = fn(ctx, &l.v[i]);
	free(l.v);
	return r;
}

int store_path_lookup(struct store *st, int64_t top, const char *path, struct store_node *ret,
                      struct cfs_err *err)
{
	int r = catalog_node_get(st->cat, top, ret, err);

	while (!r && *path) {
		const char *slash = strchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : strlen(path);

		r = catalog_node_lookup(st->cat, ret->id, path, len, ret, err);
		path += len + (slash ? 1 : 0);
	}
	return r;
}

int store_node_path(struct store *st, int64_t id, char *buf, size_t size, struct cfs_err *err)
{
	struct store_node n;
	size_t len = 0;
	int r;

	if (size == 0)
		return -ENAMETOOLONG;
	buf[0] = '\0';
	for (;;) {
		r = catalog_node_get(st->cat, id, &n, err);
		if (r)
			return r;
		if (n.parent == 0)
			return 0;
		/* Parents come first (verify checks it): a damaged catalog must not loop here. */
		if (n.parent >= id)
			return err_set(err, -EUCLEAN, "node %lld: parent %lld listed after it",
			               (long long)id, (long long)n.parent);
		/* Prepend "name/" (or "name" for the first). */
		size_t add = n.namelen + (len ? 1 : 0);
		if (len + add + 1 > size)
			return -ENAMETOOLONG;
		memmove(buf + add, buf, len + 1);
		memcpy(buf, n.name, n.namelen);
		if (len)
			buf[n.namelen] = '/';
		len += add;
		id = n.parent;
	}
}

/* Prefix err's message with "<env>/<path>: " so the user learns which file failed. */
static int err_with_path(struct store *st, const struct store_node *n, int r, struct cfs_err *err)
{
	char path[4096], msg[sizeof(err->msg)];
	struct store_node top;
	int64_t id = n->id;

	if (!err)
		return r;
	memcpy(msg, err->msg, sizeof(msg));
	if (store_node_path(st, n->id, path, sizeof(path), NULL))
		memcpy(path, "?", 2);
	/* The top node's name is the environment hash. */
	while (catalog_node_get(st->cat, id, &top, NULL) == 0 && top.parent && top.parent < id)
		id = top.parent;
	return err_set(err, r, "%.*s/%s: %s", (int)top.namelen, top.name, path, msg);
}

/* A node's relocation record, read in place from its environment's tree image. */
static int reloc_blob_read(void *ctx, int64_t node, uint64_t off, size_t len, uint8_t *buf)
{
	struct store *st = ctx;

	return catalog_reloc_read(st->cat, node, off, len, buf, &st->reloc_err);
}

/* Node's record, opened: -EUCLEAN with what the reading said, else that it does not
 * decode. */
static int reloc_of(struct store *st, int64_t node, size_t len, struct reloc **ret,
                    struct cfs_err *err)
{
	struct reloc_blob b = {reloc_blob_read, NULL, st, node, len};

	st->reloc_err.msg[0] = '\0';
	if (reloc_open(&b, ret) == 0)
		return 0;
	if (st->reloc_err.msg[0])
		return err_set(err, -EUCLEAN, "%s", st->reloc_err.msg);
	return err_set(err, -EUCLEAN, "bad relocation record");
}

struct mem_src {
	const uint8_t *p;
	size_t len;
};

static int mem_read(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	struct mem_src *m = ctx;

	if (off > m->len || len > m->len - off)
		return -EBADMSG;
	memcpy(buf, m->p + off, len);
	return 0;
}

int store_readlink(struct store *st, const struct store_node *n, const char *prefix, char **ret,
                   struct cfs_err *err)
{
	struct catalog_content c;
	struct reloc *rl = NULL;
	size_t plen = strlen(prefix), out_len, got;
	char *out = NULL;
	int r;

	if (n->type != NODE_SYMLINK)
		return -EINVAL;
	r = catalog_node_content(st->cat, n->id, &c, err);
	if (r)
		return r;
	if (c.reloc_len && (r = reloc_of(st, n->id, c.reloc_len, &rl, err))) {
		catalog_content_done(st->cat);
		return err_with_path(st, n, r, err);
	}
	out_len = c.target_len + (rl ? reloc_text_inserts(rl) * plen : 0);
	out = malloc(out_len + 1);
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	if (rl) {
		struct mem_src m = {c.target, c.target_len};

		r = reloc_read(rl, c.target_len, prefix, plen, 0, out_len, (uint8_t *)out, &got,
		               mem_read, &m);
		if (r)
			goto out;
	} else if (c.target_len) {
		memcpy(out, c.target, c.target_len);
	}
	out[out_len] = '\0';
	*ret = out;
	out = NULL;
out:
	catalog_content_done(st->cat);
	free(out);
	reloc_free(rl);
	return r;
}

void store_share_frames(struct store *st, struct cache *frames)
{
	st->frames = frames;
	for (int i = 0; i < READ_IMAGES; i++)
		if (st->images[i].obj)
			object_share_frames(st->images[i].obj, frames);
}

/* The opened image of key, from the cache or the store. */
static int image_get(struct store *st, const struct objkey *key, struct object **ret,
                     struct cfs_err *err)
{
	struct read_image *s = &st->images[0];
	int r;

	for (int i = 0; i < READ_IMAGES; i++) {
		if (st->images[i].obj && !memcmp(st->images[i].key.b, key->b, 16)) {
			s = &st->images[i];
			goto hit;
		}
		if (st->images[i].used < s->used)
			s = &st->images[i];
	}
	object_close(s->obj);
	s->obj = NULL;
	r = object_open(st->fd, key, &s->obj, err);
	if (r)
		return r;
	if (st->frames)
		object_share_frames(s->obj, st->frames);
	s->key = *key;
hit:
	s->used = ++st->clock;
	*ret = s->obj;
	return 0;
}

/* Where the content of node n is, from the cache or the catalog. */
static int node_get(struct store *st, const struct store_node *n, struct read_node **ret,
                    struct cfs_err *err)
{
	struct read_node *s = &st->nodes[0];
	struct catalog_content c;
	/* A group's node has no id (store_group_get): it is cached by its group's, negated. */
	int64_t id = n->id ? n->id : -n->group;
	int r;

	for (int i = 0; i < READ_NODES; i++) {
		if (st->nodes[i].node == id) {
			s = &st->nodes[i];
			goto hit;
		}
		if (st->nodes[i].used < s->used)
			s = &st->nodes[i];
	}
	reloc_free(s->reloc);
	memset(s, 0, sizeof(*s));
	r = n->id ? catalog_node_content(st->cat, n->id, &c, err)
	          : catalog_group_content(st->cat, n->group, &c, err);
	if (r)
		return r;
	s->image = c.image_key;
	s->base = c.image_off;
	s->len = c.obj.size;
	catalog_content_done(st->cat);
	if (!c.obj.id)
		r = err_set(err, -EUCLEAN, "file has no object in the catalog");
	/* A file longer than its object would end early: the kernel would take it as shorter. */
	else if (c.obj.size != n->size_neutral)
		r = err_set(err, -EUCLEAN, "catalog: file of %llu bytes, its object holds %llu",
		            (unsigned long long)n->size_neutral, (unsigned long long)c.obj.size);
	else if (c.reloc_len)
		r = reloc_of(st, n->id, c.reloc_len, &s->reloc, err);
	if (r)
		return r;
	s->node = id;
hit:
	s->used = ++st->clock;
	*ret = s;
	return 0;
}

/*
 * A node's image may be gone because gc moved its content to another image (repack.c M5)
 * after this handle found where it was (in the node cache, or through a read snapshot
 * older than gc's commit). Resolve the node again from a fresh view; if its image is
 * another one now, open that. Otherwise the image is missing or damaged: failed, as it was.
 */
static int node_moved(struct store *st, const struct store_node *n, struct read_node **rn,
                      struct object **ret, int failed, struct cfs_err *err)
{
	struct objkey was = (*rn)->image;
	uint64_t base = (*rn)->base;
	struct cfs_err e;
	int r;

	reloc_free((*rn)->reloc);
	memset(*rn, 0, sizeof(**rn));
	*rn = NULL;
	r = catalog_snapshot_renew(st->cat, &e);
	if (!r)
		r = node_get(st, n, rn, &e);
	if (r || (!memcmp((*rn)->image.b, was.b, 16) && (*rn)->base == base))
		return failed;
	return image_get(st, &(*rn)->image, ret, err);
}

struct content_src {
	struct store *st;
	struct object *obj;
	uint64_t base, len;
	struct cfs_err *err;
};

/* Bytes of a content within its image, clipped to the content's end. */
static int content_read(struct content_src *c, uint64_t off, size_t len, uint8_t *buf,
                        size_t *ret_n)
{
	if (off >= c->len) {
		*ret_n = 0;
		return 0;
	}
	if (len > c->len - off)
		len = (size_t)(c->len - off);
	return object_read(c->obj, c->st->dctx, c->base + off, len, buf, ret_n, c->err);
}

static int reloc_source(void *ctx, uint64_t off, size_t len, uint8_t *buf)
{
	size_t got;
	int r = content_read(ctx, off, len, buf, &got);

	return r ? r : got == len ? 0 : -EBADMSG;
}

int store_read(struct store *st, const struct store_node *n, const char *prefix, uint64_t off,
               size_t len, void *buf, size_t *ret_n, struct cfs_err *err)
{
	struct read_node *rn = NULL;
	struct content_src c = {.st = st, .err = err};
	int r;

	if (n->type != NODE_FILE)
		return -EISDIR;
	r = node_get(st, n, &rn, err);
	if (!r)
		r = image_get(st, &rn->image, &c.obj, err);
	if (r && rn)
		r = node_moved(st, n, &rn, &c.obj, r, err);
	if (!r) {
		c.base = rn->base;
		c.len = rn->len;
		if (rn->reloc) {
			r = reloc_read(rn->reloc, c.len, prefix, strlen(prefix), off, len, buf,
			               ret_n, reloc_source, &c);
			if (r == -ENOSPC)
				err_set(err, r,
				        "prefix %s (%zu bytes) does not fit a binary slot of this "
				        "file",
				        prefix, strlen(prefix));
		} else {
			r = content_read(&c, off, len, buf, ret_n);
		}
	}
	if (r) {
		/* Whatever failed is dropped so the next read tries afresh. */
		if (rn) {
			reloc_free(rn->reloc);
			memset(rn, 0, sizeof(*rn));
		}
		for (int i = 0; i < READ_IMAGES; i++)
			if (st->images[i].obj && c.obj == st->images[i].obj) {
				object_close(st->images[i].obj);
				st->images[i].obj = NULL;
			}
		return err_with_path(st, n, r, err);
	}
	return 0;
}
