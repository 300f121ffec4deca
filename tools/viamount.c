// SPDX-License-Identifier: MIT
/*
 * The read-only commands for a user who may not open the store (README, "Security
 * model"). ls, stats and show read the reports condafsd publishes under
 * MOUNTPOINT/.condafs/, which are what root's --json prints. cat, export and verify open
 * the environment's files under MOUNTPOINT/<hash>/ as the user, so the kernel's
 * default_permissions decides what they read, as it does for every other program. Served
 * bytes hold MOUNTPOINT/<hash> where the build prefix was: cat and export relocate them
 * to the prefix asked for with the store's own rule (store_relocate; store_relocate_pyc for
 * a pyc rewritten for its source, which is read beside it). Nothing here opens
 * the store.
 */
#include "viamount.h"

#include "export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define META       ".condafs"
#define CHUNK      (1u << 20)
#define BLOCK      4096
#define REPORT_MAX (1ull << 30)
/* Files up to this size are read whole in one pass; larger ones are first searched for
 * the prefix in pieces, so one without it is copied in pieces too. */
#define WHOLE_MAX (64u << 20)

struct viamount {
	int fd;       /* MOUNTPOINT */
	char *shown;  /* MOUNTPOINT as the user named it, for messages */
	char *served; /* the mount point condafsd serves (realpath): prefixes are <it>/<hash> */
	struct report_env *envs;
	size_t nenvs;
	bool have_envs;
};

static int err_errno(struct cfs_err *err, int r, const char *a, const char *b, const char *c)
{
	if (err)
		snprintf(err->msg, sizeof(err->msg), "%s%s%s%s%s: %s", a, b ? "/" : "", b ? b : "",
		         c && *c ? "/" : "", c ? c : "", strerror(-r));
	return r;
}

/* A whole file under dfd, opened as the user, NUL-terminated. */
static int read_all(int dfd, const char *path, char **ret, size_t *ret_len)
{
	int fd = openat(dfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	size_t len = 0, cap = 0;
	char *buf = NULL;
	struct stat sb;
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			size_t ncap = cap ? 2 * cap : (size_t)sb.st_size + 4096;
			char *nb;

			if (ncap > REPORT_MAX) {
				r = -EFBIG;
				goto out;
			}
			nb = realloc(buf, ncap);
			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

/* A report under .condafs/, with its full path in messages. */
static int read_report(struct viamount *vm, const char *rel, char **ret, size_t *ret_len,
                       char *name, size_t namesize, struct cfs_err *err)
{
	int r;

	snprintf(name, namesize, "%s/" META "/%s", vm->shown, rel);
	r = read_all(vm->fd, strchr(name + strlen(vm->shown), '/') + 1, ret, ret_len);
	if (r && err)
		snprintf(err->msg, sizeof(err->msg), "%s: %s", name, strerror(-r));
	return r;
}

int viamount_open(const char *mountpoint, const char *store, struct viamount **ret,
                  struct cfs_err *err)
{
	struct viamount *vm = calloc(1, sizeof(*vm));
	char name[PATH_MAX + 64], *text = NULL, *served_store = NULL, *real = NULL;
	size_t len;
	int r;

	if (!vm)
		return -ENOMEM;
	vm->shown = strdup(mountpoint);
	vm->fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!vm->shown) {
		r = -ENOMEM;
		goto out;
	}
	if (vm->fd < 0) {
		r = err_errno(err, -errno, mountpoint, NULL, NULL);
		goto out;
	}
	r = read_report(vm, "mount.json", &text, &len, name, sizeof(name), err);
	if (!r)
		r = report_mount_parse(name, text, len, &served_store, &vm->served, err);
	if (r)
		goto out;
	/* Another daemon's mount would show another store's environments. */
	real = realpath(store, NULL);
	if (strcmp(real ? real : store, served_store) != 0) {
		r = -EXDEV;
		if (err)
			snprintf(err->msg, sizeof(err->msg), "%s serves the store %s, not %s",
			         mountpoint, served_store, store);
		goto out;
	}
	*ret = vm;
	vm = NULL;
out:
	free(text);
	free(served_store);
	free(real);
	viamount_close(vm);
	return r;
}

void viamount_close(struct viamount *vm)
{
	if (!vm)
		return;
	if (vm->fd >= 0)
		close(vm->fd);
	report_envs_free(vm->envs, vm->nenvs);
	free(vm->shown);
	free(vm->served);
	free(vm);
}

const char *viamount_path(const struct viamount *vm)
{
	return vm->shown;
}

/* ---- the reports: ls, stats, show ---- */

int viamount_envs(struct viamount *vm, const struct report_env **ret, size_t *ret_n,
                  struct cfs_err *err)
{
	char name[PATH_MAX + 64], *text = NULL;
	size_t len = 0;
	int r = 0;

	if (!vm->have_envs) {
		r = read_report(vm, "envs.json", &text, &len, name, sizeof(name), err);
		if (!r)
			r = report_envs_parse(name, text, len, &vm->envs, &vm->nenvs, err);
		free(text);
		vm->have_envs = !r;
	}
	if (!r) {
		*ret = vm->envs;
		*ret_n = vm->nenvs;
	}
	return r;
}

int viamount_stats(struct viamount *vm, struct store_stats *ret, struct report_env **ret_envs,
                   size_t *ret_n, struct cfs_err *err)
{
	char name[PATH_MAX + 64], *text = NULL;
	size_t len;
	int r = read_report(vm, "stats.json", &text, &len, name, sizeof(name), err);

	if (!r)
		r = report_stats_parse(name, text, len, ret, ret_envs, ret_n, err);
	free(text);
	return r;
}

int viamount_find(struct viamount *vm, const char *name, struct store_env *ret, struct cfs_err *err)
{
	const struct report_env *v;
	size_t n, i;
	int r = viamount_envs(vm, &v, &n, err);

	if (!r)
		r = report_env_find(v, n, name, &i, err);
	if (!r)
		*ret = v[i].env;
	return r;
}

int viamount_packages(struct viamount *vm, const struct store_env *env, struct pkgset **ret,
                      struct cfs_err *err)
{
	char rel[64], name[PATH_MAX + 64], *text = NULL;
	size_t len;
	int r;

	snprintf(rel, sizeof(rel), "packages/%s.json", env->hash);
	r = read_report(vm, rel, &text, &len, name, sizeof(name), err);
	if (!r)
		r = report_packages_parse(name, text, len, ret, err);
	free(text);
	return r;
}

/* ---- files of an environment, relocated ---- */

/* The environment's directory in the mount. */
static int env_dir(struct viamount *vm, const struct store_env *env, struct cfs_err *err)
{
	int fd = openat(vm->fd, env->hash, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return err_errno(err, -errno, vm->shown, env->hash, NULL);
	return fd;
}

static int read_full(int fd, uint64_t off, size_t len, uint8_t *buf, size_t *ret)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*ret = got;
	return 0;
}

/* Whether the file (size bytes) holds s anywhere: read in pieces that overlap by |s| - 1. */
static int file_holds(int fd, uint64_t size, const char *s, uint8_t *buf, bool *ret)
{
	size_t slen = strlen(s), keep = 0;
	uint64_t off = 0;

	*ret = false;
	while (slen && off < size && !*ret) {
		size_t got, have;
		int r = read_full(fd, off, CHUNK - keep, buf + keep, &got);

		if (r)
			return r;
		if (got == 0)
			return -EIO;
		have = keep + got;
		*ret = memmem(buf, have, s, slen) != NULL;
		off += got;
		keep = have < slen - 1 ? have : slen - 1;
		memmove(buf, buf + have - keep, keep);
	}
	return 0;
}

/*
 * The file fd (size bytes, at relpath in the environment) as it would be under prefix
 * to instead of from, given to out in pieces. A file shorter than its size is -EIO: the
 * mount said it was that long.
 */
static int copy_relocated(int fd, uint64_t size, const char *relpath, const char *from,
                          const char *to, int (*out)(void *ctx, const void *buf, size_t n),
                          void *ctx, struct cfs_err *err)
{
	uint8_t *buf = NULL;
	bool holds = true;
	size_t got;
	int r = 0;

	if (size > WHOLE_MAX) {
		buf = malloc(CHUNK);
		if (!buf)
			return -ENOMEM;
		r = file_holds(fd, size, from, buf, &holds);
		for (uint64_t off = 0; !r && !holds && off < size; off += got) {
			r = read_full(fd, off, CHUNK, buf, &got);
			if (!r && got == 0)
				r = -EIO;
			if (!r)
				r = out(ctx, buf, got);
		}
		free(buf);
		buf = NULL;
		if (r || !holds)
			return r;
	}
	if (size > SIZE_MAX - 1)
		return -EFBIG;
	buf = malloc(size ? (size_t)size : 1);
	if (!buf)
		return -ENOMEM;
	r = read_full(fd, 0, (size_t)size, buf, &got);
	if (!r && got != size)
		r = -EIO;
	if (!r)
		r = store_relocate(relpath, buf, got, from, to, out, ctx, err);
	free(buf);
	return r;
}

/*
 * A pyc (src, at rel in directory sdir) whose source holds the mount path: written for its
 * source at to, as root's export writes it (store_relocate_pyc). The source is read from
 * the mount, beside the pyc's directory; a pyc or source too large, or a source that
 * cannot be read, leaves the caller to copy the pyc as served. 1 when the pyc was
 * written, 0 when it was not, or -errno.
 */
static int copy_pyc(int src, int sdir, const struct stat *sb, const char *rel, const char *shown,
                    const char *from, const char *to,
                    int (*out)(void *ctx, const void *buf, size_t n), void *ctx,
                    struct cfs_err *err)
{
	char name[NAME_MAX + 1];
	uint8_t *py = NULL, *pyc = NULL;
	size_t got = 0, pygot = 0;
	struct stat ps;
	int64_t mtime;
	int up = -1, fd = -1, r = 0;

	if (!store_pyc_source(rel, name, sizeof(name)) || (uint64_t)sb->st_size > STORE_PYC_MAX)
		return 0;
	up = openat(sdir, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (up >= 0)
		fd = openat(up, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &ps) < 0 || !S_ISREG(ps.st_mode) ||
	    (uint64_t)ps.st_size > STORE_PYC_MAX)
		goto out;
	py = malloc(ps.st_size ? (size_t)ps.st_size : 1);
	pyc = malloc(sb->st_size ? (size_t)sb->st_size : 1);
	if (!py || !pyc) {
		r = -ENOMEM;
		goto out;
	}
	if (read_full(fd, 0, (size_t)ps.st_size, py, &pygot) || pygot != (size_t)ps.st_size)
		goto out;
	r = read_full(src, 0, (size_t)sb->st_size, pyc, &got);
	if (!r && got != (size_t)sb->st_size)
		r = -EIO;
	/* Python's int(st_mtime): toward zero. */
	mtime = ps.st_mtim.tv_sec + (ps.st_mtim.tv_sec < 0 && ps.st_mtim.tv_nsec > 0);
	if (!r)
		r = store_relocate_pyc(shown, pyc, got, py, pygot, mtime, from, to, out, ctx, err);
	if (!r)
		r = 1;
out:
	if (fd >= 0)
		close(fd);
	if (up >= 0)
		close(up);
	free(py);
	free(pyc);
	return r;
}

/* The prefix the mount serves env under. */
static int served_prefix(const struct viamount *vm, const struct store_env *env, char *buf,
                         size_t size)
{
	if ((size_t)snprintf(buf, size, "%s/%s", vm->served, env->hash) >= size)
		return -ENAMETOOLONG;
	return 0;
}

static int to_file(void *ctx, const void *buf, size_t n)
{
	return fwrite(buf, 1, n, ctx) == n ? 0 : -EIO;
}

static bool is_dots(const char *s)
{
	return !strcmp(s, ".") || !strcmp(s, "..");
}

int viamount_cat(struct viamount *vm, const struct store_env *env, const char *path,
                 const char *prefix, FILE *out, struct cfs_err *err)
{
	char from[PATH_MAX], shown[PATH_MAX], *copy = strdup(path), *tok, *next, *save = NULL;
	int dfd = -1, fd = -1, pdir = -1, r;
	struct stat sb;

	if (!copy)
		return -ENOMEM;
	r = served_prefix(vm, env, from, sizeof(from));
	if (!r && (dfd = env_dir(vm, env, err)) < 0)
		r = dfd;
	/* As root's cat: every component a directory, none followed as a symlink. */
	for (tok = r ? NULL : strtok_r(copy, "/", &save); tok; tok = next) {
		next = strtok_r(NULL, "/", &save);
		if (!strcmp(tok, ".") && next)
			continue;
		if (!strcmp(tok, "..")) {
			r = -ENOENT;
			break;
		}
		if (next)
			fd = openat(dfd, tok, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		else
			fd = openat(dfd, tok,
			            O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			break;
		}
		/* The file's directory stays open: a pyc's source is read from it. */
		if (next)
			close(dfd);
		else
			pdir = dfd;
		dfd = fd;
	}
	if (!r && (fstat(dfd, &sb) < 0 || !S_ISREG(sb.st_mode)))
		r = -EISDIR;
	if (r == -ENOENT || r == -ENOTDIR || r == -ELOOP)
		snprintf(err->msg, sizeof(err->msg), "%s/%s: no such file", env->hash, path);
	else if (r == -EISDIR)
		snprintf(err->msg, sizeof(err->msg), "%s/%s: not a regular file", env->hash, path);
	else if (r && !err->msg[0])
		err_errno(err, r, vm->shown, env->hash, path);
	if (!r) {
		snprintf(shown, sizeof(shown), "%s/%s", env->hash, path);
		r = copy_pyc(dfd, pdir, &sb, path, shown, from, prefix, to_file, out, err);
		if (r == 0)
			r = copy_relocated(dfd, (uint64_t)sb.st_size, shown, from, prefix, to_file,
			                   out, err);
		else if (r == 1)
			r = 0;
		if (r && !err->msg[0])
			err_errno(err, r, vm->shown, env->hash, path);
	}
	if (dfd >= 0)
		close(dfd);
	if (pdir >= 0)
		close(pdir);
	free(copy);
	return r;
}

/* ---- export ---- */

/*
 * The first exported path of an ingested hard link, by inode number (never 0 in a mount):
 * a later path of it is linked to that one. The mount serves the paths of one source
 * inode as one inode of kind 0 (a store node, docs/ARCHITECTURE.md, "Inode numbers");
 * files that are merely identical share an inode of kind 1 there, and are written as
 * separate files, as root's export writes them, so that changing one copy does not
 * change the others.
 */
struct inoslot {
	ino_t ino; /* 0: empty */
	int fd;    /* the file written for it, kept open: linked by fd, at any depth */
};

struct inomap {
	struct inoslot *v;
	size_t cap, n;
};

/* The slot of ino: its entry, or the empty one it would take. */
static size_t inomap_slot(const struct inomap *m, ino_t ino)
{
	size_t k = (size_t)(ino * 0x9e3779b97f4a7c15ull) & (m->cap - 1);

	while (m->v[k].ino && m->v[k].ino != ino)
		k = (k + 1) & (m->cap - 1);
	return k;
}

/* The fd of the file written for ino, or -1. */
static int inomap_get(const struct inomap *m, ino_t ino)
{
	const struct inoslot *e = m->cap ? &m->v[inomap_slot(m, ino)] : NULL;

	return e && e->ino ? e->fd : -1;
}

#define INO_KIND_NODE 0
/* In an environment's tree, only the files served and stored in none (condafs/frozen.h)
 * are of kind 3. */
#define INO_KIND_SERVED 3

/* Remember a duplicate of fd as the file written for ino. */
static int inomap_put(struct inomap *m, ino_t ino, int fd)
{
	struct inoslot *e;

	if (2 * (m->n + 1) > m->cap) {
		struct inomap g = {NULL, m->cap ? 2 * m->cap : 1024, m->n};

		g.v = calloc(g.cap, sizeof(*g.v));
		if (!g.v)
			return -ENOMEM;
		for (size_t i = 0; i < m->cap; i++)
			if (m->v[i].ino)
				g.v[inomap_slot(&g, m->v[i].ino)] = m->v[i];
		free(m->v);
		*m = g;
	}
	e = &m->v[inomap_slot(m, ino)];
	e->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (e->fd < 0)
		return -errno;
	e->ino = ino;
	m->n++;
	return 0;
}

static void inomap_free(struct inomap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->v[i].ino)
			close(m->v[i].fd);
	free(m->v);
}

struct vexport {
	struct viamount *vm;
	const struct store_env *env;
	bool frozen; /* write the served files (as served at to), else leave them out */
	const char *dir;
	const char *from, *to;
	struct inomap links;
	struct cfs_err *err;
};

/* Writes pieces at their offsets, leaving holes where whole blocks are zero. */
struct sparse_out {
	int fd;
	uint64_t off;
};

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int to_sparse(void *ctx, const void *buf, size_t n)
{
	struct sparse_out *o = ctx;
	const uint8_t *p = buf;

	for (size_t i = 0; i < n; i += BLOCK) {
		size_t k = n - i < BLOCK ? n - i : BLOCK;

		if (!all_zero(p + i, k) &&
		    pwrite(o->fd, p + i, k, (off_t)(o->off + i)) != (ssize_t)k)
			return errno ? -errno : -EIO;
	}
	o->off += n;
	return 0;
}

static int vfail(struct vexport *ex, int r, const char *rel, const char *what)
{
	if (ex->err && !ex->err->msg[0]) {
		if (what)
			snprintf(ex->err->msg, sizeof(ex->err->msg), "%s/%s: %s: %s", ex->dir, rel,
			         what, strerror(-r));
		else
			snprintf(ex->err->msg, sizeof(ex->err->msg), "%s/%s/%s: %s", ex->vm->shown,
			         ex->from + strlen(ex->vm->served) + 1, rel, strerror(-r));
	}
	return r;
}

static void times_of(const struct stat *sb, struct timespec ts[2])
{
	ts[0] = ts[1] = sb->st_mtim;
}

static int vexport_file(struct vexport *ex, int sdir, int ddir, const char *name,
                        const struct stat *sb, const char *rel)
{
	struct sparse_out o = {-1, 0};
	struct timespec ts[2];
	char shown[PATH_MAX];
	int src, r = 0;

	bool linked = (sb->st_ino & 3) == INO_KIND_NODE;
	int first = linked ? inomap_get(&ex->links, sb->st_ino) : -1;

	/* The inode written for the first path, whatever has its name by now. */
	if (first >= 0) {
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", first);
		if (linkat(AT_FDCWD, proc, ddir, name, AT_SYMLINK_FOLLOW) < 0)
			return vfail(ex, -errno, rel, "link");
		return 0;
	}
	src = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (src < 0)
		return vfail(ex, -errno, rel, NULL);
	o.fd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (o.fd < 0) {
		r = vfail(ex, -errno, rel, "create");
		goto out;
	}
	/* Named as root's export names it: <hash>/<path>. */
	if ((size_t)snprintf(shown, sizeof(shown), "%s/%s", ex->from + strlen(ex->vm->served) + 1,
	                     rel) >= sizeof(shown))
		snprintf(shown, sizeof(shown), "%s",
		         name); /* the relocation mode goes by its end */
	r = copy_pyc(src, sdir, sb, rel, shown, ex->from, ex->to, to_sparse, &o, ex->err);
	if (r == 0)
		r = copy_relocated(src, (uint64_t)sb->st_size, shown, ex->from, ex->to, to_sparse,
		                   &o, ex->err);
	else if (r == 1)
		r = 0;
	if (r)
		r = vfail(ex, r, rel, NULL);
	if (!r && ftruncate(o.fd, (off_t)o.off) < 0)
		r = vfail(ex, -errno, rel, "truncate");
	if (!r && fchmod(o.fd, sb->st_mode & 07777) < 0)
		r = vfail(ex, -errno, rel, "chmod");
	times_of(sb, ts);
	if (!r && futimens(o.fd, ts) < 0)
		r = vfail(ex, -errno, rel, "set mtime");
	if (!r && linked && (r = inomap_put(&ex->links, sb->st_ino, o.fd)))
		r = vfail(ex, r, rel, "dup");
out:
	if (o.fd >= 0)
		close(o.fd);
	close(src);
	return r;
}

static int vexport_link(struct vexport *ex, int sdir, int ddir, const char *name,
                        const struct stat *sb, const char *rel)
{
	char target[PATH_MAX], out[PATH_MAX];
	size_t flen = strlen(ex->from);
	struct timespec ts[2];
	ssize_t n = readlinkat(sdir, name, target, sizeof(target));

	if (n < 0)
		return vfail(ex, -errno, rel, NULL);
	if ((size_t)n == sizeof(target))
		return vfail(ex, -ENAMETOOLONG, rel, NULL);
	target[n] = '\0';
	/* An absolute link into the environment follows it, as root's export writes it. */
	if ((size_t)n >= flen && !memcmp(target, ex->from, flen) &&
	    (target[flen] == '/' || !target[flen])) {
		if ((size_t)snprintf(out, sizeof(out), "%s%s", ex->to, target + flen) >=
		    sizeof(out))
			return vfail(ex, -ENAMETOOLONG, rel, "symlink");
	} else {
		memcpy(out, target, (size_t)n + 1);
	}
	if (symlinkat(out, ddir, name) < 0)
		return vfail(ex, -errno, rel, "symlink");
	times_of(sb, ts);
	if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return vfail(ex, -errno, rel, "set mtime");
	return 0;
}

/* Copy the directory sdir into ddir (both open), then give ddir sdir's mode and mtime. */
static int vexport_dir(struct vexport *ex, int sdir, int ddir, const struct stat *dsb,
                       const char *rel)
{
	int d = openat(sdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;
	DIR *dir = d >= 0 ? fdopendir(d) : NULL;
	struct timespec ts[2];
	struct dirent *de;

	if (!dir) {
		r = vfail(ex, -errno, rel, NULL);
		if (d >= 0)
			close(d);
		return r;
	}
	while (!r && (errno = 0, de = readdir(dir))) {
		char path[PATH_MAX];
		struct stat sb;

		if (is_dots(de->d_name))
			continue;
		/* For messages only: everything is reached from directory fds, at any depth. */
		snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		if (fstatat(sdir, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			r = vfail(ex, -errno, path, NULL);
		} else if (S_ISDIR(sb.st_mode)) {
			int s = openat(sdir, de->d_name,
			               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC),
			    t = -1;

			if (s < 0)
				r = vfail(ex, -errno, path, NULL);
			else if (mkdirat(ddir, de->d_name, 0700) < 0)
				r = vfail(ex, -errno, path, "mkdir");
			else if ((t = export_open_made(ddir, de->d_name)) < 0)
				r = vfail(ex, t, path, "open");
			if (!r)
				r = vexport_dir(ex, s, t, &sb, path);
			if (s >= 0)
				close(s);
			if (t >= 0)
				close(t);
		} else if (S_ISREG(sb.st_mode) && (sb.st_ino & 3) == INO_KIND_SERVED) {
			/* Made for where it is served: written anew for where it goes. */
			if (ex->frozen)
				r = export_served(ddir,
				                  strcmp(de->d_name, FROZEN_CONDA_NAME)
				                          ? FROZEN_PYTHON
				                          : FROZEN_CONDA,
				                  ex->to, ex->env->hash, ex->env->created, ex->dir,
				                  path, ex->err);
		} else if (S_ISREG(sb.st_mode)) {
			r = vexport_file(ex, sdir, ddir, de->d_name, &sb, path);
		} else if (S_ISLNK(sb.st_mode)) {
			r = vexport_link(ex, sdir, ddir, de->d_name, &sb, path);
		} else {
			r = vfail(ex, -EINVAL, path, "not a file, directory or symlink");
		}
	}
	if (!r && errno)
		r = vfail(ex, -errno, rel, NULL);
	closedir(dir);
	times_of(dsb, ts);
	if (!r && fchmod(ddir, dsb->st_mode & 07777) < 0)
		r = vfail(ex, -errno, rel, "chmod");
	if (!r && futimens(ddir, ts) < 0)
		r = vfail(ex, -errno, rel, "set mtime");
	return r;
}

int viamount_export(struct viamount *vm, const struct store_env *env, const char *dir,
                    const char *prefix, bool frozen, struct cfs_err *err)
{
	struct vexport ex = {.vm = vm, .env = env, .frozen = frozen, .dir = dir, .err = err};
	char from[PATH_MAX];
	struct export_dest dest;
	struct stat sb;
	int src, r;

	if (err)
		err->msg[0] = '\0';
	r = served_prefix(vm, env, from, sizeof(from));
	if (r)
		return r;
	src = env_dir(vm, env, err);
	if (src < 0)
		return src;
	r = export_dest_open(dir, &dest, err);
	if (r) {
		close(src);
		return r;
	}
	ex.from = from;
	ex.to = prefix ? prefix : dest.path;
	if (fstat(src, &sb) < 0)
		r = vfail(&ex, -errno, "", NULL);
	else
		r = vexport_dir(&ex, src, dest.fd, &sb, "");
	inomap_free(&ex.links);
	if (r)
		export_dest_undo(&dest);
	export_dest_close(&dest);
	close(src);
	return r;
}

/* ---- verify ---- */

/* Inodes read already: open addressing on the inode number (never 0 in a mount). */
struct inoset {
	ino_t *v;
	size_t cap, n;
};

/* 1 when ino was there, 0 when added, -ENOMEM. */
static int inoset_add(struct inoset *s, ino_t ino)
{
	if (2 * (s->n + 1) > s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		ino_t *v = calloc(cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			size_t k = (size_t)(s->v[i] * 0x9e3779b97f4a7c15ull) & (cap - 1);

			if (!s->v[i])
				continue;
			while (v[k])
				k = (k + 1) & (cap - 1);
			v[k] = s->v[i];
		}
		free(s->v);
		s->v = v;
		s->cap = cap;
	}
	for (size_t k = (size_t)(ino * 0x9e3779b97f4a7c15ull) & (s->cap - 1);;
	     k = (k + 1) & (s->cap - 1)) {
		if (s->v[k] == ino)
			return 1;
		if (!s->v[k]) {
			s->v[k] = ino;
			s->n++;
			return 0;
		}
	}
}

struct vverify {
	struct viamount_verify *res;
	struct inoset seen;
	const char *env;
	void (*fn)(void *ctx, const struct verify_problem *p);
	void *ctx;
	uint8_t *buf;
};

static void problem(struct vverify *v, const char *rel, int r, const char *what)
{
	char msg[256];
	struct verify_problem p = {NULL, msg, v->env, rel};

	if (what)
		snprintf(msg, sizeof(msg), "%s", what);
	else
		snprintf(msg, sizeof(msg), "%s", strerror(-r));
	v->res->failed++;
	if (v->fn)
		v->fn(v->ctx, &p);
}

static int verify_file(struct vverify *v, int dfd, const char *name, const struct stat *sb,
                       const char *rel)
{
	uint64_t off = 0;
	int fd, r;

	r = inoset_add(&v->seen, sb->st_ino);
	if (r)
		return r < 0 ? r : 0;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == EACCES || errno == EPERM)
			v->res->files_skipped++;
		else
			problem(v, rel, -errno, NULL);
		return 0;
	}
	for (;;) {
		size_t got = 0;

		r = read_full(fd, off, CHUNK, v->buf, &got);
		if (r || got == 0)
			break;
		off += got;
	}
	close(fd);
	if (r) {
		problem(v, rel, r, NULL);
	} else if (off != (uint64_t)sb->st_size) {
		char msg[128];

		snprintf(msg, sizeof(msg), "short read: %llu of %llu bytes",
		         (unsigned long long)off, (unsigned long long)sb->st_size);
		problem(v, rel, -EIO, msg);
	} else {
		v->res->files_checked++;
	}
	return 0;
}

static int verify_dir(struct vverify *v, int fd, const char *rel)
{
	int d = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;
	DIR *dir = d >= 0 ? fdopendir(d) : NULL;
	struct dirent *de;

	if (!dir) {
		if (d >= 0)
			close(d);
		problem(v, rel, -errno, NULL);
		return 0;
	}
	while (!r && (errno = 0, de = readdir(dir))) {
		char path[PATH_MAX], target[PATH_MAX];
		struct stat sb;
		int sub;

		if (is_dots(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			problem(v, path, -errno, NULL);
		} else if (S_ISREG(sb.st_mode) && (sb.st_ino & 3) == INO_KIND_SERVED) {
			/* Not stored: nothing of the store to check. */
		} else if (S_ISREG(sb.st_mode)) {
			r = verify_file(v, fd, de->d_name, &sb, path);
		} else if (S_ISLNK(sb.st_mode)) {
			if (readlinkat(fd, de->d_name, target, sizeof(target)) < 0)
				problem(v, path, -errno, NULL);
		} else if (S_ISDIR(sb.st_mode)) {
			sub = openat(fd, de->d_name,
			             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0 && (errno == EACCES || errno == EPERM)) {
				v->res->files_skipped++;
			} else if (sub < 0) {
				problem(v, path, -errno, NULL);
			} else {
				r = verify_dir(v, sub, path);
				close(sub);
			}
		}
	}
	if (!r && errno)
		problem(v, rel, -errno, NULL);
	closedir(dir);
	return r;
}

int viamount_verify(struct viamount *vm, void (*fn)(void *ctx, const struct verify_problem *p),
                    void *ctx, struct viamount_verify *ret, struct cfs_err *err)
{
	struct vverify v = {.res = ret, .fn = fn, .ctx = ctx};
	const struct report_env *envs;
	size_t n;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = viamount_envs(vm, &envs, &n, err);
	if (r)
		return r;
	v.buf = malloc(CHUNK);
	if (!v.buf)
		return -ENOMEM;
	for (size_t i = 0; i < n && !r; i++) {
		int fd = openat(vm->fd, envs[i].env.hash,
		                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		v.env = envs[i].env.hash;
		if (fd < 0 && errno == ENOENT)
			continue; /* removed since envs.json was made */
		if (fd < 0 && (errno == EACCES || errno == EPERM)) {
			ret->files_skipped++;
			continue;
		}
		if (fd < 0) {
			problem(&v, "", -errno, NULL);
			continue;
		}
		r = verify_dir(&v, fd, "");
		close(fd);
	}
	free(v.buf);
	free(v.seen.v);
	if (r && err)
		snprintf(err->msg, sizeof(err->msg), "%s: %s", vm->shown, strerror(-r));
	return r;
}
