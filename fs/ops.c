// SPDX-License-Identifier: MIT
/*
 * The FUSE low-level handlers. Everything served is immutable, so every reply tells the
 * kernel to keep it for ever (entries, attributes, misses, pages, listings, link targets)
 * and most requests are asked once per boot. Each handler computes one result and replies
 * exactly once: an error is turned into fuse_reply_err at the end, in one place.
 */
#include "fsd.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* Never expires: nothing served ever changes (additions and removals are notified). */
#define FOREVER DBL_MAX
/* The names at the top of an environment (bin, lib, ...) are looked up again after this
 * long: every path into an environment passes one of them, so a used environment sends
 * one lookup a minute, which records its last use (use.c), while a `stat` or `ls -l` of
 * the environment's own directory does not count as use. */
#define USE_RECHECK 60.0

static struct fsd *req_fsd(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The one place a failure becomes a reply. Store failures that are not the caller's doing
 * (corrupt or missing object -EBADMSG, prefix too long for a binary slot -ENOSPC, catalog
 * trouble, I/O errors) are logged, rate-limited and once per file, and reach the caller as
 * EIO. */
static void reply_err(fuse_req_t req, fuse_ino_t ino, const char *op, int r,
                      const struct cfs_err *err)
{
	switch (r) {
	case -ENOENT:
	case -ESTALE:
	case -ENOTDIR:
	case -EISDIR:
	case -EINVAL:
	case -ENOMEM:
		/* The caller's doing, or passing: nothing to log. */
		break;
	default:
		log_file_error(ino, "%s: %s", op, err && err->msg[0] ? err->msg : strerror(-r));
		r = -EIO;
		break;
	}
	fuse_reply_err(req, -r);
}

static void entry_init(struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = FOREVER;
	e->entry_timeout = FOREVER;
}

static void root_attr(const struct envtab *t, struct stat *ret)
{
	*ret = (struct stat){
	        .st_ino = INO_ROOT,
	        .st_mode = S_IFDIR | 0755,
	        .st_nlink = 2 + t->nlive,
	        .st_size = 4096,
	        .st_blocks = 8,
	        .st_blksize = 4096,
	        .st_mtim = t->changed,
	        .st_ctim = t->changed,
	        .st_atim = t->changed,
	};
}

static void env_entry(const struct fsd_env *env, struct fuse_entry_param *e)
{
	entry_init(e);
	e->ino = env->ino;
	e->generation = env->generation;
	ino_attr(&env->top, env->ino, env->prefix_len, 1, &e->attr);
}

/* The entry of child n (of environment env); with_nlink: also count a group's names. */
static int child_entry(struct worker *w, const struct fsd_env *env, const struct store_node *n,
                       bool with_nlink, struct fuse_entry_param *e, struct cfs_err *err)
{
	uint32_t nlink = 1;
	int r;

	entry_init(e);
	r = ino_of_node(n, &e->ino);
	if (r)
		return r;
	if (n->type == NODE_FILE && n->group > 0) {
		/* Shared by environments: the same generation whichever names it. */
		if (with_nlink && (r = worker_group_nlink(w, n->group, &nlink, err)))
			return r;
	} else {
		e->generation = env->generation;
	}
	if (n->parent == env->top.id)
		e->entry_timeout = USE_RECHECK;
	ino_attr(n, e->ino, env->prefix_len, nlink, &e->attr);
	/* Asked about next, most likely (a read, a listing); a group's only with its count. */
	if (with_nlink || !(n->type == NODE_FILE && n->group > 0))
		worker_remember(w, e->ino, n, env, nlink);
	return 0;
}

static void tag_attr(const struct fsd_root *tag, struct stat *ret)
{
	*ret = (struct stat){
	        .st_ino = tag->ino,
	        .st_mode = S_IFLNK | 0777,
	        .st_nlink = 1,
	        .st_size = 32,
	        .st_blocks = 0,
	        .st_blksize = 4096,
	        .st_mtim = tag->mtime,
	        .st_ctim = tag->mtime,
	        .st_atim = tag->mtime,
	};
}

/* The entry of a name in the root; *ret_env the environment it charges (0: none). */
static void root_entry(const struct fsd_root *re, struct fuse_entry_param *e, int64_t *ret_env)
{
	*ret_env = 0;
	if (re && re->env) {
		env_entry(re->env, e);
		*ret_env = re->env->id;
	} else if (re) {
		entry_init(e);
		e->ino = re->ino;
		tag_attr(re, &e->attr);
	} else {
		entry_init(e); /* ino 0: the kernel caches the miss */
	}
}

/* ---- lookups and attributes ---- */

/* A name the catalog does not have in directory parent, which may be a served file's. */
static int lookup_served(struct worker *w, fuse_ino_t parent, const char *name,
                         struct fuse_entry_param *e, int64_t *ret_env, struct cfs_err *err)
{
	const struct fsd_env *env;
	const struct wnode *wn;
	struct store_node dir;
	const char *served;
	int r;

	if (err)
		err->msg[0] = '\0';
	r = worker_node(w, parent, &wn, err);
	if (r)
		return r;
	dir = wn->n;
	env = wn->env;
	if (!env)
		return -ESTALE;
	*ret_env = env->id;
	r = served_dir_entry(w, env, &dir, &served, e, err);
	if (r < 0)
		return r;
	if (r == 0 || strcmp(served, name) != 0)
		entry_init(e); /* ino 0: the kernel caches the miss */
	return 0;
}

/* *ret_env: the environment the entry is charged to (use.c), 0 for none; *ret_node the
 * node it is. */
static int lookup_in(struct worker *w, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e, int64_t *ret_env, int64_t *ret_node,
                     struct cfs_err *err)
{
	const struct fsd_env *env;
	struct store_node n;
	enum ino_kind kind;
	int64_t id;
	int r;

	*ret_env = 0;
	if (parent == INO_ROOT) {
		root_entry(envtab_root_find(worker_envtab(w), name, strlen(name)), e, ret_env);
		return 0;
	}
	r = ino_split(parent, &kind, &id);
	if (r)
		return r;
	if (kind != INO_NODE)
		return -ENOTDIR;
	r = store_node_lookup(worker_store(w), id, name, strlen(name), &n, err);
	if (r == -ENOENT && (!strcmp(name, FROZEN_CONDA_NAME) || !strcmp(name, FROZEN_PYTHON_NAME)))
		return lookup_served(w, parent, name, e, ret_env, err);
	if (r == -ENOENT) {
		entry_init(e);
		return 0;
	}
	if (r)
		return r;
	env = envtab_by_id(worker_envtab(w), n.env_id);
	if (!env)
		return -ESTALE;
	*ret_env = env->id;
	*ret_node = n.id;
	return child_entry(w, env, &n, true, e, err);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct use *use = req_fsd(req)->use;
	struct cfs_err err = {{0}};
	struct fuse_entry_param e;
	struct worker *w = NULL;
	int64_t env = 0, node = 0;
	int r;

	/* .condafs: reports for users (meta.c), use of no environment. */
	if (meta_owns(parent) || (parent == INO_ROOT && meta_is_root_name(name))) {
		meta_lookup(req, parent, name);
		return;
	}
	r = worker_get(req_fsd(req), &w);
	if (!r)
		r = lookup_in(w, parent, name, &e, &env, &node, &err);
	/* A file's environment is held before the kernel has the file (use.c U1); -EBUSY:
	 * gc is reaping it, so it was removed: a miss, but not one to cache. */
	if (!r && env && parent != INO_ROOT)
		use_mark(use, env);
	if (!r && env && S_ISREG(e.attr.st_mode) && !served_owns(e.ino)) {
		r = use_entry(use, e.ino, env, node);
		if (r == -EBUSY)
			r = -ENOENT;
	}
	if (r)
		reply_err(req, parent, "lookup", r, &err);
	else if (fuse_reply_entry(req, &e) && env && S_ISREG(e.attr.st_mode) && !served_owns(e.ino))
		use_forget(use, e.ino, 1);
	worker_put(w);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_err err = {{0}};
	const struct wnode *wn;
	struct worker *w = NULL;
	struct stat st;
	int r;

	(void)fi;
	if (meta_owns(ino)) {
		meta_getattr(req, ino);
		return;
	}
	r = worker_get(req_fsd(req), &w);
	if (!r && ino == INO_ROOT) {
		root_attr(worker_envtab(w), &st);
	} else if (!r && served_owns(ino)) {
		r = served_attr(worker_envtab(w), ino, &st);
	} else if (!r && ino_kind_of(ino) == INO_TAG) {
		const struct fsd_root *tag = envtab_tag_by_ino(worker_envtab(w), ino);

		if (tag)
			tag_attr(tag, &st);
		else
			r = -ESTALE;
	} else if (!r) {
		r = worker_node(w, ino, &wn, &err);
		if (!r)
			ino_attr(&wn->n, ino, wn->env ? wn->env->prefix_len : 0, wn->nlink, &st);
	}
	if (r)
		reply_err(req, ino, "getattr", r, &err);
	else
		fuse_reply_attr(req, &st, FOREVER);
	worker_put(w);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct cfs_err err = {{0}};
	const struct wnode *wn;
	struct worker *w = NULL;
	char *target = NULL;
	int r;

	r = worker_get(req_fsd(req), &w);
	if (!r && ino_kind_of(ino) == INO_TAG) {
		const struct fsd_root *tag = envtab_tag_by_ino(worker_envtab(w), ino);

		if (tag)
			fuse_reply_readlink(req, tag->target);
		else
			reply_err(req, ino, "readlink", -ESTALE, NULL);
		worker_put(w);
		return;
	}
	if (!r)
		r = worker_node(w, ino, &wn, &err);
	if (!r && wn->n.type != NODE_SYMLINK)
		r = -EINVAL;
	if (!r && !wn->env)
		r = -ESTALE;
	if (!r)
		r = store_readlink(worker_store(w), &wn->n, wn->env->prefix, &target, &err);
	if (r)
		reply_err(req, ino, "readlink", r, &err);
	else
		fuse_reply_readlink(req, target);
	worker_put(w);
	free(target);
}

/* ---- opening: nothing to do, so ideally never asked ---- */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	/* ENOSYS is success that also tells the kernel to stop sending OPEN and RELEASE and
	 * to keep the page cache (a NULL handler would reply without keep_cache). */
	if (req_fsd(req)->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (req_fsd(req)->no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->keep_cache = 1;
	fi->cache_readdir = 1;
	fuse_reply_open(req, fi);
}

/* ---- reading ---- */

#define READ_MAX_BLOCKS 8

/*
 * Reply to a read from the block cache: the blocks it spans, each filled on first use,
 * go out as one iovec straight from the cache. 0 when replied; -ENOBUFS when the cache
 * cannot take it (the caller then reads around it); other errors for reply_err.
 */
static int read_cached(fuse_req_t req, struct worker *w, const struct wnode *wn, fuse_ino_t ino,
                       const char *prefix, uint64_t off, size_t size, struct cfs_err *err)
{
	struct fsd *fs = req_fsd(req); /* req is gone once replied to */
	struct cache *c = fs->cache;
	struct cache_block *b[READ_MAX_BLOCKS] = {0};
	struct iovec iov[READ_MAX_BLOCKS];
	uint64_t fsize = store_node_size(&wn->n, wn->n.relocated ? strlen(prefix) : 0), end;
	uint64_t first, n = 0;
	int r = 0;

	if (!c)
		return -ENOBUFS;
	if (off >= fsize || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return 0;
	}
	end = off + size < fsize ? off + size : fsize;
	first = off >> CACHE_BLOCK_SHIFT;
	if (((end - 1) >> CACHE_BLOCK_SHIFT) - first + 1 > READ_MAX_BLOCKS)
		return -ENOBUFS;
	for (uint64_t i = first; i <= (end - 1) >> CACHE_BLOCK_SHIFT; i++, n++) {
		uint64_t start = i << CACHE_BLOCK_SHIFT, from, to;
		size_t cap = fsize - start < CACHE_BLOCK_SIZE ? (size_t)(fsize - start)
		                                              : CACHE_BLOCK_SIZE;
		bool fill;

		r = cache_get(c, ino, worker_version(w), i, cap, &b[n], &fill);
		if (r)
			goto out;
		if (fill) {
			size_t got = 0;

			r = store_read(worker_store(w), &wn->n, prefix, start, cap,
			               cache_block_data(b[n]), &got, err);
			cache_filled(c, b[n], r, got);
			if (r)
				goto out;
		}
		/* A block shorter than the catalog said: the file ends there. */
		from = i == first ? off - start : 0;
		to = end - start < cache_block_len(b[n]) ? end - start : cache_block_len(b[n]);
		iov[n].iov_base = cache_block_data(b[n]) + from;
		iov[n].iov_len = to > from ? (size_t)(to - from) : 0;
		if (cache_block_len(b[n]) < cap) {
			n++;
			break;
		}
	}
	fuse_reply_iov(req, iov, (int)n);
	prefetch_note(fs->prefetch, ino, &wn->n, prefix, worker_version(w), off, end, fsize);
out:
	for (unsigned i = 0; i < READ_MAX_BLOCKS; i++)
		cache_put(c, b[i]);
	return r;
}

/* A served file's text (served.c): replied from the table the worker holds. */
static int read_served(fuse_req_t req, struct worker *w, fuse_ino_t ino, off_t off, size_t size)
{
	const char *text;
	size_t len;
	int r = served_text(worker_envtab(w), ino, &text, &len);

	if (r)
		return r;
	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= len)
		size = 0;
	else if (size > len - (size_t)off)
		size = len - (size_t)off;
	fuse_reply_buf(req, size ? text + off : NULL, size);
	return 0;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct cfs_err err = {{0}};
	const struct wnode *wn;
	const char *prefix;
	struct worker *w = NULL;
	size_t got = 0;
	void *buf = NULL;
	int r;

	(void)fi; /* fh is 0 with no-open: the nodeid says everything */
	if (meta_owns(ino)) {
		meta_read(req, ino, size, off);
		return;
	}
	r = worker_get(req_fsd(req), &w);
	if (!r && served_owns(ino)) {
		r = read_served(req, w, ino, off, size);
		goto out;
	}
	if (!r)
		r = worker_node(w, ino, &wn, &err);
	if (!r && wn->n.type != NODE_FILE)
		r = wn->n.type == NODE_DIR ? -EISDIR : -EINVAL;
	if (!r && wn->n.relocated && !wn->env)
		r = -ESTALE;
	if (!r && off < 0)
		r = -EINVAL;
	if (r)
		goto out;
	if (wn->env)
		use_mark(req_fsd(req)->use, wn->env->id);
	prefix = wn->env ? wn->env->prefix : "";
	r = read_cached(req, w, wn, ino, prefix, (uint64_t)off, size, &err);
	if (r != -ENOBUFS)
		goto out;
	r = worker_buf(w, size, &buf);
	if (!r)
		r = store_read(worker_store(w), &wn->n, prefix, (uint64_t)off, size, buf, &got,
		               &err);
	if (!r)
		fuse_reply_buf(req, buf, got);
out:
	if (r)
		reply_err(req, ino, "read", r, &err);
	worker_put(w);
}

/* ---- listing ---- */

struct dirfill {
	fuse_req_t req;
	struct worker *w;
	const struct fsd_env *env;
	bool plus;
	char *buf;
	size_t size, pos;
	off_t next; /* the offset of the entry being added: its index + 1 */
	struct cfs_err *err;
	int r;
	/* readdirplus entries count as lookups (use.c): what this reply charged, to undo
	 * if it is not sent. */
	fuse_ino_t *charged;
	size_t ncharged, capcharged;
};

static int dir_charge(struct dirfill *d, fuse_ino_t ino, int64_t env, int64_t node)
{
	int r;

	if (d->ncharged == d->capcharged) {
		size_t cap = d->capcharged ? 2 * d->capcharged : 64;
		void *v = realloc(d->charged, cap * sizeof(*d->charged));

		if (!v)
			return -ENOMEM;
		d->charged = v;
		d->capcharged = cap;
	}
	r = use_entry(req_fsd(d->req)->use, ino, env, node);
	if (r)
		return r == -EBUSY ? -ENOENT : r;
	d->charged[d->ncharged++] = ino;
	return 0;
}

static void dir_uncharge(struct dirfill *d, size_t keep)
{
	while (d->ncharged > keep)
		use_forget(req_fsd(d->req)->use, d->charged[--d->ncharged], 1);
}

/* Add one entry, node node charged to environment env (0: none); 1 when the buffer is full
 * (the entry is then left for the next call), a negative errno (also in d->r) on an
 * error. */
static int dir_add(struct dirfill *d, const char *name, const struct fuse_entry_param *e,
                   int64_t env, int64_t node)
{
	size_t room = d->size - d->pos, need, before = d->ncharged;

	if (d->plus && env && S_ISREG(e->attr.st_mode) && (d->r = dir_charge(d, e->ino, env, node)))
		return d->r;
	if (d->plus)
		need = fuse_add_direntry_plus(d->req, d->buf + d->pos, room, name, e, d->next);
	else
		need = fuse_add_direntry(d->req, d->buf + d->pos, room, name, &e->attr, d->next);
	if (need > room) {
		dir_uncharge(d, before);
		return 1;
	}
	d->pos += need;
	d->next++;
	return 0;
}

/* "." and "..": attributes for their type and number only, no lookup. */
static int dir_add_dot(struct dirfill *d, const char *name, fuse_ino_t ino)
{
	struct fuse_entry_param e;

	entry_init(&e);
	e.attr.st_ino = ino;
	e.attr.st_mode = S_IFDIR;
	return dir_add(d, name, &e, 0, 0);
}

static int dir_add_child(void *ctx, const struct store_node *n)
{
	struct dirfill *d = ctx;
	struct fuse_entry_param e;
	char name[sizeof(n->name) + 1];

	d->r = child_entry(d->w, d->env, n, d->plus, &e, d->err);
	if (d->r)
		return d->r;
	memcpy(name, n->name, n->namelen);
	name[n->namelen] = '\0';
	return dir_add(d, name, &e, d->env->id, n->id);
}

static int list_root(struct dirfill *d)
{
	const struct envtab *t = worker_envtab(d->w);

	if (d->next == 1 && dir_add_dot(d, ".", INO_ROOT))
		return 0;
	if (d->next == 2 && dir_add_dot(d, "..", INO_ROOT))
		return 0;
	for (size_t i = (size_t)d->next - 3; i < t->nroot; i++) {
		struct fuse_entry_param e;
		int64_t env;

		root_entry(&t->root[i], &e, &env);
		if (dir_add(d, t->root[i].name, &e, env, 0))
			break;
	}
	return d->r;
}

/* The smallest entry the kernel's protocol allows: a 24-byte header and a name padded to
 * 8 bytes; with attributes, a 128-byte entry before it. */
#define DIRENT_MIN     32
#define DIRENTPLUS_MIN 160

/* After the stored children of dir: the file made for it, if it gets one (served.c). It
 * is charged to nothing, as lookups of it are not. */
static int list_served(struct dirfill *d, const struct store_node *dir)
{
	struct fuse_entry_param e;
	const char *name;
	int r = served_dir_entry(d->w, d->env, dir, &name, &e, d->err);

	if (r <= 0)
		return r;
	r = dir_add(d, name, &e, 0, 0);
	return r < 0 ? r : 0;
}

static int list_dir(struct dirfill *d, fuse_ino_t ino)
{
	const struct wnode *wn;
	struct store_node dir;
	uint64_t start, fit;
	uint32_t all;
	fuse_ino_t parent = INO_ROOT;
	int r;

	r = worker_node(d->w, ino, &wn, d->err);
	if (r)
		return r;
	if (wn->n.type != NODE_DIR)
		return -ENOTDIR;
	dir = wn->n;
	d->env = wn->env;
	if (!d->env)
		return -ESTALE;
	use_mark(req_fsd(d->req)->use, d->env->id);
	if (dir.parent && (r = ino_make(INO_NODE, dir.parent, &parent)))
		return r;
	if (d->next == 1 && dir_add_dot(d, ".", ino))
		return 0;
	if (d->next == 2 && dir_add_dot(d, "..", parent))
		return 0;
	all = dir.nchildren;
	start = (uint64_t)d->next - 3;
	if (start > dir.nchildren)
		return 0;
	if (start == dir.nchildren)
		return list_served(d, &dir);
	/* Ask the store for no more children than can fit: store_dir_iter fetches its whole
	 * range first, and a large directory is listed in many calls. */
	fit = d->size / (d->plus ? DIRENTPLUS_MIN : DIRENT_MIN) + 1;
	if (dir.nchildren - start > fit)
		dir.nchildren = (uint32_t)(start + fit);
	r = store_dir_iter(worker_store(d->w), &dir, (uint32_t)start, dir_add_child, d, d->err);
	if (r == 1)
		r = 0;
	if (r < 0 || d->r)
		return r < 0 ? r : d->r;
	/* Every stored child is in: a served file comes last, at index nchildren. */
	if (d->next == (off_t)all + 3)
		return list_served(d, &dir);
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct cfs_err err = {{0}};
	struct dirfill d = {.req = req, .plus = plus, .size = size, .next = off + 1, .err = &err};
	void *buf = NULL;
	int r;

	if (meta_owns(ino)) {
		meta_readdir(req, ino, size, off, plus);
		return;
	}
	r = worker_get(req_fsd(req), &d.w);
	if (!r && off < 0)
		r = -EINVAL;
	if (!r)
		r = worker_buf(d.w, size, &buf);
	d.buf = buf;
	if (!r)
		r = ino == INO_ROOT ? list_root(&d) : list_dir(&d, ino);
	if (r) {
		dir_uncharge(&d, 0);
		reply_err(req, ino, plus ? "readdirplus" : "readdir", r, &err);
	} else if (fuse_reply_buf(req, d.buf, d.pos)) {
		dir_uncharge(&d, 0);
	}
	worker_put(d.w);
	free(d.charged);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

/* ---- forgetting: the kernel lets go of nodeids (use.c) ---- */

static void forget(struct fsd *fs, fuse_ino_t ino, uint64_t nlookup)
{
	if (meta_owns(ino))
		meta_forget(fs, ino, nlookup);
	else if (!served_owns(ino))
		use_forget(fs->use, ino, nlookup);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget(req_fsd(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget(req_fsd(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- the connection ---- */

static void want(struct fuse_conn_info *conn, unsigned cap)
{
	if (conn->capable & cap)
		conn->want |= cap;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fsd *fs = userdata;

	fs->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
	fs->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
	want(conn, FUSE_CAP_CACHE_SYMLINKS);
	want(conn, FUSE_CAP_ASYNC_READ);
	want(conn, FUSE_CAP_PARALLEL_DIROPS);
	want(conn, FUSE_CAP_READDIRPLUS);
	want(conn, FUSE_CAP_READDIRPLUS_AUTO);
	/* Pages are dropped only when we say so (never: contents do not change), not
	 * whenever an mtime seems to move. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	want(conn, FUSE_CAP_EXPLICIT_INVAL_DATA);
	/* Nothing here writes or locks remotely. */
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	/* Readahead and parallel page faults keep many reads in flight. */
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	log_msg(LOG_LEVEL_DEBUG,
	        "init: protocol 7.%u, no-open %s, no-opendir %s, max_readahead %u, want %#x",
	        conn->proto_minor, fs->no_open ? "yes" : "no", fs->no_opendir ? "yes" : "no",
	        conn->max_readahead, conn->want);
	/* Requests are served from this reply on: units ordered after condafsd may start. */
	notify_ready(fs);
}

/* ---- everything that would write: a read-only file system ---- */

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	(void)ino, (void)attr, (void)to_set, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
	(void)ino, (void)mode, (void)offset, (void)length, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                               struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in, (void)off_in, (void)fi_in, (void)ino_out, (void)off_out, (void)fi_out;
	(void)len, (void)flags;
	fuse_reply_err(req, EROFS);
}

/*
 * Left NULL on purpose: getxattr,
 * listxattr, flush and access (the kernel gets ENOSYS once and stops asking: one round
 * trip less per ls -l, exec and close; default_permissions checks modes in the kernel),
 * release/releasedir (never sent with no-open), statfs (libfuse's default), locks (local).
 */
const struct fuse_lowlevel_ops fsd_ops = {
        .init = op_init,
        .lookup = op_lookup,
        .forget = op_forget,
        .forget_multi = op_forget_multi,
        .getattr = op_getattr,
        .readlink = op_readlink,
        .open = op_open,
        .read = op_read,
        .opendir = op_opendir,
        .readdir = op_readdir,
        .readdirplus = op_readdirplus,
        .write = op_write,
        .create = op_create,
        .mknod = op_mknod,
        .mkdir = op_mkdir,
        .unlink = op_unlink,
        .rmdir = op_rmdir,
        .rename = op_rename,
        .link = op_link,
        .symlink = op_symlink,
        .setattr = op_setattr,
        .setxattr = op_setxattr,
        .removexattr = op_removexattr,
        .fallocate = op_fallocate,
        .copy_file_range = op_copy_file_range,
};
