// SPDX-License-Identifier: MIT
/*
 * Export: the environment written out as a normal directory, byte for byte the source
 * prefix with its path replaced. Depth first on directory fds, so deep trees need no long
 * path strings; a directory gets its mode and mtime after its children are written.
 */
#include "export.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define BLOCK 4096

/* The first exported path of a hard-linked inode, by node id: an O_PATH fd, so that deep
 * trees need no path strings. */
struct link_seen {
	int64_t id;
	int fd;
};

struct export
{
	struct store *st;
	const char *dir;
	const char *prefix;
	int root_fd;
	uint8_t *buf;
	struct link_seen *links;
	size_t nlinks, caplinks;
	struct cfs_err *err;
};

static int fail(struct export *ex, int r, const char *path, const char *what)
{
	if (ex->err && !ex->err->msg[0])
		snprintf(ex->err->msg, sizeof(ex->err->msg), "%s/%s: %s: %s", ex->dir, path, what,
		         strerror(-r));
	return r;
}

static void set_times(struct timespec ts[2], int64_t mtime_ns)
{
	ts[0].tv_sec = ts[1].tv_sec = mtime_ns / 1000000000;
	ts[0].tv_nsec = ts[1].tv_nsec = mtime_ns % 1000000000;
	if (ts[1].tv_nsec < 0) {
		ts[0].tv_nsec = ts[1].tv_nsec += 1000000000;
		ts[0].tv_sec = ts[1].tv_sec -= 1;
	}
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Copy the file's content, leaving holes where whole blocks are zero. */
static int write_content(struct export *ex, const struct store_node *n, int fd, const char *path)
{
	uint64_t size = store_node_size(n, strlen(ex->prefix)), off = 0;

	while (off < size) {
		size_t want = size - off < CHUNK ? (size_t)(size - off) : CHUNK, got;
		int r = store_read(ex->st, n, ex->prefix, off, want, ex->buf, &got, ex->err);

		if (r)
			return r;
		if (got != want)
			return fail(ex, -EIO, path, "short read from the store");
		for (size_t i = 0; i < got; i += BLOCK) {
			size_t k = got - i < BLOCK ? got - i : BLOCK;

			if (all_zero(ex->buf + i, k))
				continue;
			if (pwrite(fd, ex->buf + i, k, (off_t)(off + i)) != (ssize_t)k)
				return fail(ex, errno ? -errno : -EIO, path, "write");
		}
		off += got;
	}
	if (ftruncate(fd, (off_t)size) < 0)
		return fail(ex, -errno, path, "truncate");
	return 0;
}

static int remember_link(struct export *ex, int64_t id, int dfd, const char *name)
{
	if (ex->nlinks == ex->caplinks) {
		size_t cap = ex->caplinks ? 2 * ex->caplinks : 64;
		void *v = realloc(ex->links, cap * sizeof(*ex->links));

		if (!v)
			return -ENOMEM;
		ex->links = v;
		ex->caplinks = cap;
	}
	ex->links[ex->nlinks].id = id;
	ex->links[ex->nlinks].fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (ex->links[ex->nlinks].fd < 0)
		return -errno;
	ex->nlinks++;
	return 0;
}

static int seen_link(struct export *ex, int64_t id)
{
	for (size_t i = 0; i < ex->nlinks; i++)
		if (ex->links[i].id == id)
			return ex->links[i].fd;
	return -1;
}

static int export_file(struct export *ex, int dfd, const struct store_node *n, const char *path)
{
	/* Paths of one source inode share one exported inode, whichever comes first. */
	int64_t inode = n->hardlink;
	int first = inode ? seen_link(ex, inode) : -1;
	struct timespec ts[2];
	int fd, r;

	if (first >= 0) {
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", first);
		if (linkat(AT_FDCWD, proc, dfd, n->name, AT_SYMLINK_FOLLOW) < 0)
			return fail(ex, -errno, path, "link");
		return 0;
	}
	fd = openat(dfd, n->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(ex, -errno, path, "create");
	r = write_content(ex, n, fd, path);
	if (!r && fchmod(fd, n->mode) < 0)
		r = fail(ex, -errno, path, "chmod");
	set_times(ts, n->mtime_ns);
	if (!r && futimens(fd, ts) < 0)
		r = fail(ex, -errno, path, "set mtime");
	close(fd);
	if (!r && n->hardlink)
		r = remember_link(ex, inode, dfd, n->name);
	return r;
}

static int export_dir(struct export *ex, int dfd, const struct store_node *dir, const char *path);

struct iter_ctx {
	struct export *ex;
	int dfd;
	const char *path;
};

static int export_child(void *ctx, const struct store_node *n)
{
	struct iter_ctx *c = ctx;
	struct export *ex = c->ex;
	char path[PATH_MAX];
	struct timespec ts[2];
	char *target = NULL;
	int r;

	snprintf(path, sizeof(path), "%s%s%.*s", c->path, *c->path ? "/" : "", (int)n->namelen,
	         n->name);
	switch (n->type) {
	case NODE_DIR:
		if (mkdirat(c->dfd, n->name, 0700) < 0)
			return fail(ex, -errno, path, "mkdir");
		return export_dir(ex, c->dfd, n, path);
	case NODE_SYMLINK:
		r = store_readlink(ex->st, n, ex->prefix, &target, ex->err);
		if (r)
			return r;
		if (symlinkat(target, c->dfd, n->name) < 0)
			r = fail(ex, -errno, path, "symlink");
		free(target);
		set_times(ts, n->mtime_ns);
		if (!r && utimensat(c->dfd, n->name, ts, AT_SYMLINK_NOFOLLOW) < 0)
			r = fail(ex, -errno, path, "set mtime");
		return r;
	case NODE_FILE:
		return export_file(ex, c->dfd, n, path);
	}
	return fail(ex, -EUCLEAN, path, "unknown node type");
}

/* Fill the directory dir (created, named in dfd) and then set its mode and mtime. */
static int export_dir(struct export *ex, int dfd, const struct store_node *dir, const char *path)
{
	int fd = *path ? openat(dfd, dir->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
	               : dup(dfd);
	struct iter_ctx c = {ex, fd, path};
	struct timespec ts[2];
	int r;

	if (fd < 0)
		return fail(ex, -errno, path, "open");
	r = store_dir_iter(ex->st, dir, 0, export_child, &c, ex->err);
	set_times(ts, dir->mtime_ns);
	if (!r && fchmod(fd, dir->mode) < 0)
		r = fail(ex, -errno, path, "chmod");
	if (!r && futimens(fd, ts) < 0)
		r = fail(ex, -errno, path, "set mtime");
	close(fd);
	return r;
}

int export_env(struct store *st, const struct store_env *env, const char *dir, const char *prefix,
               struct cfs_err *err)
{
	struct export ex = {.st = st, .dir = dir, .prefix = prefix, .root_fd = -1, .err = err};
	struct store_node top;
	int r;

	if (err)
		err->msg[0] = '\0';
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return fail(&ex, -errno, ".", "mkdir");
	ex.root_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ex.root_fd < 0)
		return fail(&ex, -errno, ".", "open");
	ex.buf = malloc(CHUNK);
	if (!ex.buf) {
		r = -ENOMEM;
		goto out;
	}
	r = store_node_get(st, env->root, &top, err);
	if (!r)
		r = export_dir(&ex, ex.root_fd, &top, "");
out:
	for (size_t i = 0; i < ex.nlinks; i++)
		close(ex.links[i].fd);
	free(ex.links);
	free(ex.buf);
	close(ex.root_fd);
	return r;
}
