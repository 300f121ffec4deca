// SPDX-License-Identifier: MIT
/*
 * Export: the environment written out as a normal directory, byte for byte the source
 * prefix with its path replaced. Depth first on directory fds, so deep trees need no long
 * path strings; a directory gets its mode and mtime after its children are written.
 *
 * Root writes where a user asked, often into the user's own directories, so nothing here
 * follows a symlink: the destination is reached one component at a time with O_NOFOLLOW
 * and must be new or empty, and everything is made inside it relative to directory fds
 * with calls that create (mkdirat, symlinkat, O_CREAT|O_EXCL) and change only what they
 * hold open (fchmod, futimens). The tree read from the catalog is checked as it is walked
 * (names, parents, ids growing downwards), so a damaged catalog cannot make it recurse for
 * ever or name a path outside the destination. A failed export removes what it wrote.
 */
#include "export.h"

#include <dirent.h>
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
	const struct store_env *env;
	bool frozen; /* write the served files too */
	const char *dir;
	const char *prefix;
	uint8_t *buf;
	struct link_seen *links;
	size_t nlinks, caplinks;
	struct cfs_err *err;
};

/* ---- the destination ---- */

static int dup_fd(int fd)
{
	int r = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	return r < 0 ? -errno : r;
}

/* Why opening name in dfd as a directory failed: a symlink is said as one. */
static int not_dir(int dfd, const char *name, int r)
{
	struct stat sb;

	if ((r == -ENOTDIR || r == -ELOOP) && fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(sb.st_mode))
		return -ELOOP;
	return r;
}

int export_open_made(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;

	if (fd < 0)
		return not_dir(dfd, name, -errno);
	/* Another user who can write dfd may have put a directory of theirs in the place of
	 * the one just made. */
	if (fstat(fd, &sb) < 0 || sb.st_uid != geteuid()) {
		close(fd);
		return -EXDEV;
	}
	return fd;
}

static bool is_empty(int fd)
{
	int d = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = d >= 0 ? fdopendir(d) : NULL;
	struct dirent *de;
	bool empty = true;

	if (!dir) {
		if (d >= 0)
			close(d);
		return false;
	}
	while (empty && (de = readdir(dir)))
		empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
	closedir(dir);
	return empty;
}

static int dest_fail(struct cfs_err *err, int r, const char *dir, const char *what)
{
	if (err)
		snprintf(err->msg, sizeof(err->msg), "%s: %s", dir, what ? what : strerror(-r));
	return r;
}

int export_dest_open(const char *dir, struct export_dest *ret, struct cfs_err *err)
{
	struct export_dest d = {.fd = -1, .parent_fd = -1};
	char *copy = strdup(dir), *last, *comp, *save = NULL;
	char proc[64], buf[PATH_MAX];
	ssize_t n;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	/* The parent: every component opened from the one before, none followed. */
	while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
		copy[strlen(copy) - 1] = '\0';
	last = strrchr(copy, '/');
	d.parent_fd = open(copy[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (d.parent_fd < 0) {
		r = dest_fail(err, -errno, dir, NULL);
		goto out;
	}
	if (last)
		*last = '\0';
	for (comp = last ? strtok_r(copy, "/", &save) : NULL; comp;
	     comp = strtok_r(NULL, "/", &save)) {
		int fd;

		if (!strcmp(comp, "."))
			continue;
		fd = openat(d.parent_fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = not_dir(d.parent_fd, comp, -errno);
			snprintf(buf, sizeof(buf), "%s is %s; export follows no symlink", comp,
			         r == -ELOOP ? "a symbolic link" : strerror(-r));
			r = dest_fail(err, r, dir, r == -ELOOP ? buf : NULL);
			goto out;
		}
		close(d.parent_fd);
		d.parent_fd = fd;
	}
	d.name = strdup(last ? last + 1 : copy);
	if (!d.name) {
		r = -ENOMEM;
		goto out;
	}
	if (!*d.name || !strcmp(d.name, ".") || !strcmp(d.name, "..")) {
		/* "/", "." or "..": an existing directory, reached without a symlink. */
		d.fd = openat(d.parent_fd, *d.name ? d.name : ".",
		              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	} else if (mkdirat(d.parent_fd, d.name, 0700) == 0) {
		d.created = true;
		d.fd = export_open_made(d.parent_fd, d.name);
		if (d.fd == -EXDEV) {
			r = dest_fail(err, -EXDEV, dir, "was replaced while it was being made");
			goto out;
		}
	} else if (errno == EEXIST) {
		d.fd = openat(d.parent_fd, d.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	} else {
		r = dest_fail(err, -errno, dir, NULL);
		goto out;
	}
	if (d.fd < 0) {
		r = not_dir(d.parent_fd, d.name, d.fd == -1 ? -errno : d.fd);
		r = dest_fail(err, r, dir,
		              r == -ELOOP ? "is a symbolic link; export follows no symlink" : NULL);
		goto out;
	}
	if (!d.created && !is_empty(d.fd)) {
		r = dest_fail(err, -ENOTEMPTY, dir,
		              "exists and is not empty; export writes only into a new or empty "
		              "directory");
		goto out;
	}
	/* Where it is, as the kernel names the directory itself: the default prefix. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", d.fd);
	n = readlink(proc, buf, sizeof(buf) - 1);
	if (n <= 0) {
		r = dest_fail(err, n < 0 ? -errno : -ENOENT, dir, NULL);
		goto out;
	}
	buf[n] = '\0';
	d.path = strdup(buf);
	if (!d.path)
		r = -ENOMEM;
out:
	free(copy);
	if (r) {
		/* Nothing was written into it: at most the directory made here goes. */
		if (d.created)
			unlinkat(d.parent_fd, d.name, AT_REMOVEDIR);
		export_dest_close(&d);
		return r;
	}
	*ret = d;
	return 0;
}

/*
 * Remove what this process wrote into the directory fd, following nothing: only entries
 * it owns (another user who can write there may have added theirs, or swapped ours for
 * theirs). Removing while reading may hide entries from readdir, so it reads until a pass
 * removes nothing.
 */
static void remove_ours(int fd)
{
	bool again = true;
	struct stat top;

	/* Ours, so ours to open up (a user's export gave it its final mode already). */
	if (fstat(fd, &top) == 0 && top.st_uid == geteuid())
		fchmod(fd, 0700);
	while (again) {
		int d = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *dir = d >= 0 ? fdopendir(d) : NULL;
		struct dirent *de;

		if (!dir) {
			if (d >= 0)
				close(d);
			return;
		}
		again = false;
		while ((de = readdir(dir))) {
			struct stat sb;
			int sub;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
			    fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
			    sb.st_uid != geteuid())
				continue;
			if (!S_ISDIR(sb.st_mode)) {
				again |= unlinkat(fd, de->d_name, 0) == 0;
				continue;
			}
			sub = export_open_made(fd, de->d_name);
			if (sub < 0)
				continue;
			remove_ours(sub);
			close(sub);
			again |= unlinkat(fd, de->d_name, AT_REMOVEDIR) == 0;
		}
		closedir(dir);
	}
}

void export_dest_undo(struct export_dest *d)
{
	if (d->fd < 0)
		return;
	remove_ours(d->fd);
	/* Only if still empty: rmdir removes nothing else that may have its name now. */
	if (d->created)
		unlinkat(d->parent_fd, d->name, AT_REMOVEDIR);
}

void export_dest_close(struct export_dest *d)
{
	if (d->fd >= 0)
		close(d->fd);
	if (d->parent_fd >= 0)
		close(d->parent_fd);
	free(d->name);
	free(d->path);
	d->fd = d->parent_fd = -1;
	d->name = d->path = NULL;
}

/* ---- writing the environment ---- */

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

/* Remembers the inode fd is open on: the next path of it is linked to that inode, not to
 * whatever has its name by then. */
static int remember_link(struct export *ex, int64_t id, int fd)
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
	ex->links[ex->nlinks].fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
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
	fd = openat(dfd, n->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(ex, -errno, path, "create");
	r = write_content(ex, n, fd, path);
	if (!r && fchmod(fd, n->mode) < 0)
		r = fail(ex, -errno, path, "chmod");
	set_times(ts, n->mtime_ns);
	if (!r && futimens(fd, ts) < 0)
		r = fail(ex, -errno, path, "set mtime");
	if (!r && n->hardlink)
		r = remember_link(ex, inode, fd);
	close(fd);
	return r;
}

static int export_dir(struct export *ex, int dfd, const struct store_node *dir, const char *path);

struct iter_ctx {
	struct export *ex;
	const struct store_node *dir;
	int dfd;
	const char *path;
};

/* A name a directory entry can have: not empty, ".", "..", nor with '/' or NUL. */
static bool name_ok(const struct store_node *n)
{
	return n->namelen > 0 && n->namelen < sizeof(n->name) &&
	       !memchr(n->name, '/', n->namelen) && !memchr(n->name, '\0', n->namelen) &&
	       !(n->namelen == 1 && n->name[0] == '.') &&
	       !(n->namelen == 2 && n->name[0] == '.' && n->name[1] == '.');
}

/* The catalog's tree as export relies on it: children of their directory, in its
 * environment, with ids above its own (so every path ends), and names that stay inside. */
static int check_child(struct export *ex, const struct store_node *dir, const struct store_node *n,
                       const char *dirpath)
{
	const char *why = NULL;

	if (n->parent != dir->id || n->env_id != dir->env_id)
		why = "is listed in a directory that is not its parent";
	else if (n->id <= dir->id)
		why = "comes before its parent (a cycle)";
	else if (!name_ok(n))
		why = "has a name no file can have";
	else if (n->type != NODE_DIR && n->type != NODE_FILE && n->type != NODE_SYMLINK)
		why = "has an unknown type";
	if (!why)
		return 0;
	if (ex->err && !ex->err->msg[0])
		snprintf(
		        ex->err->msg, sizeof(ex->err->msg),
		        "%s%s%s: catalog node %lld %s: the catalog is damaged (run condafs verify)",
		        ex->dir, *dirpath ? "/" : "", dirpath, (long long)n->id, why);
	return -EUCLEAN;
}

static int export_child(void *ctx, const struct store_node *n)
{
	struct iter_ctx *c = ctx;
	struct export *ex = c->ex;
	char path[PATH_MAX];
	struct timespec ts[2];
	char *target = NULL;
	int r;

	r = check_child(ex, c->dir, n, c->path);
	if (r)
		return r;
	/* For messages only: everything is reached from directory fds, at any depth. */
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

int export_served(int dfd, enum frozen_file f, const char *prefix, const char *hash,
                  int64_t created, const char *dir, const char *rel, struct cfs_err *err)
{
	struct timespec ts[2] = {{.tv_sec = created}, {.tv_sec = created}};
	const char *what = "create";
	char *text = NULL;
	size_t len = 0;
	int fd, r = frozen_text(f, prefix, hash, &text, &len);

	if (r)
		return r;
	fd = openat(dfd, frozen_name(f), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	            0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if (write(fd, text, len) != (ssize_t)len) {
		r = errno ? -errno : -EIO;
		what = "write";
	} else if (fchmod(fd, FROZEN_MODE) < 0) {
		r = -errno;
		what = "chmod";
	} else if (futimens(fd, ts) < 0) {
		r = -errno;
		what = "set mtime";
	}
	close(fd);
out:
	if (r && err && !err->msg[0])
		snprintf(err->msg, sizeof(err->msg), "%s/%s: %s: %s", dir, rel, what, strerror(-r));
	free(text);
	return r;
}

/* The file condafsd serves in dir, if it serves one there (export --frozen). */
static int export_dir_served(struct export *ex, int fd, const struct store_node *dir,
                             const char *path)
{
	char rel[PATH_MAX];
	enum frozen_file f;
	int r = frozen_dir_gets(ex->st, ex->env->root, dir, &f, ex->err);

	if (r <= 0)
		return r;
	snprintf(rel, sizeof(rel), "%s/%s", path, frozen_name(f));
	return export_served(fd, f, ex->prefix, ex->env->hash, ex->env->created, ex->dir, rel,
	                     ex->err);
}

/* Fill the directory dir (made by us, named in dfd; "" is the destination itself) and then
 * set its mode and mtime. */
static int export_dir(struct export *ex, int dfd, const struct store_node *dir, const char *path)
{
	int fd = *path ? export_open_made(dfd, dir->name) : dup_fd(dfd);
	struct iter_ctx c = {ex, dir, fd, path};
	struct timespec ts[2];
	int r;

	if (fd < 0)
		return fail(ex, fd, path, "open");
	r = store_dir_iter(ex->st, dir, 0, export_child, &c, ex->err);
	if (!r && ex->frozen)
		r = export_dir_served(ex, fd, dir, path);
	set_times(ts, dir->mtime_ns);
	if (!r && fchmod(fd, dir->mode) < 0)
		r = fail(ex, -errno, path, "chmod");
	if (!r && futimens(fd, ts) < 0)
		r = fail(ex, -errno, path, "set mtime");
	close(fd);
	return r;
}

int export_env(struct store *st, const struct store_env *env, const char *dir, const char *prefix,
               bool frozen, struct cfs_err *err)
{
	struct export ex = {.st = st, .env = env, .frozen = frozen, .dir = dir, .err = err};
	struct export_dest dest;
	struct store_node top;
	int r;

	if (err)
		err->msg[0] = '\0';
	r = export_dest_open(dir, &dest, err);
	if (r)
		return r;
	ex.prefix = prefix ? prefix : dest.path;
	ex.buf = malloc(CHUNK);
	if (!ex.buf) {
		r = -ENOMEM;
		goto out;
	}
	r = store_node_get(st, env->root, &top, err);
	if (!r && (top.env_id != env->id || top.type != NODE_DIR || top.parent != 0))
		r = fail(&ex, -EUCLEAN, "", "the environment's top node is not its top directory");
	if (!r)
		r = export_dir(&ex, dest.fd, &top, "");
	/* The store's own errors (a damaged tree) name the destination too, as export's do. */
	if (r && err && err->msg[0] && strncmp(err->msg, dir, strlen(dir)) != 0) {
		char said[sizeof(err->msg)];

		snprintf(said, sizeof(said), "%s", err->msg);
		snprintf(err->msg, sizeof(err->msg), "%s: %s", dir, said);
	}
out:
	for (size_t i = 0; i < ex.nlinks; i++)
		close(ex.links[i].fd);
	free(ex.links);
	free(ex.buf);
	if (r)
		export_dest_undo(&dest);
	export_dest_close(&dest);
	return r;
}
