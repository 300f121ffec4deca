// SPDX-License-Identifier: MIT
/*
 * Opening and creating a store: the directory layout, its format version, the catalog.
 * The store is its owner's alone (root's, on a server): the directory is 0700, so no
 * other user can open anything in it, whatever the modes of the files below (README,
 * "Security model"). Users read environments through the mount instead.
 *
 *   FORMAT         "condafs-store 2": object images of format 1 or 2 (docs/object-format.md).
 *                  "condafs-store 1" (images of format 1 only) is read as it is and made 2
 *                  by the first command that writes; any other is refused.
 *   catalog.db     the SQLite catalog (with -wal and -shm beside it)
 *   objects/xx/    object images, by the first byte of their key (made on first use)
 *   tmp/           ingests' temporary directories (ingest.c, object.c)
 *
 * S1: the catalog is made only with a new store: before FORMAT, in a directory whose
 *     objects/ is empty. An existing store whose catalog is missing or empty is refused,
 *     never given a new one, and a catalog that names no object, or whose nodes name
 *     object rows it lacks, is never trusted to say that the images beside it are
 *     unreferenced (store_check_catalog): the objects of a store are never lost with its
 *     catalog.
 */
#include "store_impl.h"

#include "err.h"
#include "lockwait.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_LINE   "condafs-store 2\n"
#define FORMAT_LINE_1 "condafs-store 1\n"

/* The parents as any directory (0755), the store itself 0700. */
static int mkdir_p(const char *path)
{
	char *p = strdup(path);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			r = neg_errno();
		*s = '/';
		if (r)
			break;
	}
	if (!r && mkdir(p, 0700) < 0 && errno != EEXIST)
		r = neg_errno();
	free(p);
	return r;
}

/* The directory name in dfd to 0700 if it is open to others. */
static int tighten_at(int dfd, const char *name)
{
	struct stat sb;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), r = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : neg_errno();
	if (fstat(fd, &sb) < 0 || ((sb.st_mode & 077) && fchmod(fd, 0700) < 0))
		r = neg_errno();
	close(fd);
	return r;
}

/*
 * A store made before stores were private is 0755: a writing command makes it 0700.
 * objects/ and its subdirectories go first and the store's own directory last, so a
 * command killed half-way leaves the store open to others and the next one finishes.
 * They go at all because a process that entered one of them before (its working
 * directory) would keep reaching the files below it, which the top's mode cannot stop.
 * Files keep their modes: no new path reaches them, and fs.protected_hardlinks (the
 * default) stopped users from linking root's files that they cannot write.
 */
static int tighten(int fd, const char *dir, struct cfs_err *err)
{
	struct stat sb;
	struct dirent *de;
	DIR *d;
	int ofd, r = 0;

	if (fstat(fd, &sb) < 0)
		return err_set(err, neg_errno(), "%s: %s", dir, strerror(errno));
	if (!(sb.st_mode & 077))
		return 0;
	/* Only the owner (or root) may: someone else writing a store of another owner
	 * leaves its modes to that owner. */
	if (sb.st_uid != geteuid() && geteuid() != 0)
		return 0;
	ofd = openat(fd, "objects", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ofd < 0 && errno != ENOENT)
		return err_set(err, neg_errno(), "%s/objects: %s", dir, strerror(errno));
	d = ofd >= 0 ? fdopendir(ofd) : NULL;
	if (ofd >= 0 && !d) {
		close(ofd);
		return err_set(err, neg_errno(), "%s/objects: %s", dir, strerror(errno));
	}
	while (d && !r && (errno = 0, de = readdir(d)))
		if (de->d_name[0] != '.' && (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN))
			r = tighten_at(dirfd(d), de->d_name);
	if (!r && d && errno)
		r = neg_errno();
	if (d)
		closedir(d);
	if (r)
		return err_set(err, r, "%s/objects: cannot make it private: %s", dir, strerror(-r));
	if ((r = tighten_at(fd, "objects")) || (r = tighten_at(fd, "tmp")))
		return err_set(err, r, "%s: cannot make it private: %s", dir, strerror(-r));
	if (fchmod(fd, 0700) < 0)
		return err_set(err, neg_errno(), "%s: cannot make it private: %s", dir,
		               strerror(errno));
	return 0;
}

/* Write FORMAT, durably: linked in place for a new store (one that appeared meanwhile is
 * kept: every creator writes the same), or moved over the older one with replace. */
static int write_format(int fd, const char *dir, bool replace, struct cfs_err *err)
{
	char proc[64], name[64];
	int ffd, r;

	ffd = openat(fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0444);
	if (ffd < 0)
		return err_set(err, neg_errno(), "%s: cannot write FORMAT: %s", dir,
		               strerror(errno));
	r = write(ffd, FORMAT_LINE, strlen(FORMAT_LINE)) == (ssize_t)strlen(FORMAT_LINE) &&
	                    fsync(ffd) == 0
	            ? 0
	            : neg_errno();
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", ffd);
	if (!r && !replace) {
		if (linkat(AT_FDCWD, proc, fd, "FORMAT", AT_SYMLINK_FOLLOW) < 0 && errno != EEXIST)
			r = neg_errno();
	} else if (!r) {
		/* Under tmp/: a writer killed here leaves nothing in the store's top. */
		snprintf(name, sizeof(name), "tmp/format-%d", (int)getpid());
		unlinkat(fd, name, 0);
		if (linkat(AT_FDCWD, proc, fd, name, AT_SYMLINK_FOLLOW) < 0 ||
		    renameat(fd, name, fd, "FORMAT") < 0)
			r = neg_errno();
	}
	close(ffd);
	if (!r && fsync(fd) < 0)
		r = neg_errno();
	if (r)
		return err_set(err, r, "%s/FORMAT: %s", dir, strerror(-r));
	return 0;
}

/* Lay out a new store. Safe to race with another creator: every step is idempotent and
 * FORMAT appears last, atomically. */
static int store_create(int fd, const char *dir, struct cfs_err *err)
{
	if (mkdirat(fd, "tmp", 0700) < 0 && errno != EEXIST)
		return err_set(err, neg_errno(), "%s/tmp: %s", dir, strerror(errno));
	if (mkdirat(fd, "objects", 0755) < 0 && errno != EEXIST)
		return err_set(err, neg_errno(), "%s/objects: %s", dir, strerror(errno));
	return write_format(fd, dir, false, err);
}

/* S1: a directory whose objects/ holds anything is a store that lost its FORMAT, not a new
 * one (a creator killed before FORMAT left objects/ empty: images come after). */
static int objects_empty(int fd, const char *dir, struct cfs_err *err)
{
	int ofd = openat(fd, "objects", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	bool any = false;
	DIR *d;

	if (ofd < 0 && errno == ENOENT)
		return 0;
	if (ofd < 0)
		return err_set(err, neg_errno(), "%s/objects: %s", dir, strerror(errno));
	d = fdopendir(ofd);
	if (!d) {
		close(ofd);
		return -ENOMEM;
	}
	while (!any && (de = readdir(d)))
		any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	if (any)
		return err_set(err, -EEXIST,
		               "%s: objects/ is not empty but FORMAT is missing: not making a new "
		               "store over it (restore FORMAT and catalog.db from a backup)",
		               dir);
	return 0;
}

/* 0, or the FORMAT version (1 or 2) in *ret_version; -ENOENT without FORMAT. */
static int check_format(int fd, const char *dir, int *ret_version, struct cfs_err *err)
{
	char buf[64] = {0};
	ssize_t n;
	int ffd = openat(fd, "FORMAT", O_RDONLY | O_CLOEXEC);

	if (ffd < 0)
		return neg_errno();
	n = read(ffd, buf, sizeof(buf) - 1);
	close(ffd);
	if (n < 0)
		return err_set(err, neg_errno(), "%s/FORMAT: %s", dir, strerror(errno));
	if (strcmp(buf, FORMAT_LINE) == 0) {
		*ret_version = 2;
		return 0;
	}
	if (strcmp(buf, FORMAT_LINE_1) == 0) {
		*ret_version = 1;
		return 0;
	}
	buf[strcspn(buf, "\n")] = '\0';
	return err_set(err, -EPROTO,
	               "%s/FORMAT: store format '%s' is not one this condafs knows "
	               "(it reads '%.*s' and '%.*s')",
	               dir, buf, (int)strlen(FORMAT_LINE_1) - 1, FORMAT_LINE_1,
	               (int)strlen(FORMAT_LINE) - 1, FORMAT_LINE);
}

static int found_image(void *ctx, int dfd, const char *name, const struct objkey *key)
{
	(void)ctx;
	(void)dfd;
	(void)name;
	(void)key;
	return 1;
}

int store_check_catalog(struct store *st, bool links, struct cfs_err *err)
{
	struct objkey dir, obj, zero = {{0}};
	char env[33];
	bool nothing;
	int r = catalog_names_nothing(st->cat, &nothing, err);

	if (!r && nothing) {
		r = object_each_image(st->fd, st->dir, found_image, NULL, err);
		if (r < 0)
			return r;
		if (r > 0)
			return err_set(
			        err, -EUCLEAN,
			        "%s/catalog.db: the catalog names no object, but objects/ "
			        "holds images: not taking them for unreferenced (is this the "
			        "store's catalog? restore it from a backup)",
			        st->dir);
	}
	if (r || !links)
		return r;
	r = catalog_dangling(st->cat, &dir, &obj, env, err);
	if (r == -ENOENT)
		return 0;
	if (r == 0 && memcmp(dir.b, zero.b, 16) == 0) {
		char ohex[33];

		objkey_hex(&obj, ohex);
		r = err_set(
		        err, -EUCLEAN,
		        "%s/catalog.db: environment %s: its tree image %s has no row: the "
		        "catalog is damaged (see condafs verify); not deleting what it does not "
		        "name",
		        st->dir, env, ohex);
	} else if (r == 0) {
		char dhex[33], ohex[33];

		objkey_hex(&dir, dhex);
		objkey_hex(&obj, ohex);
		r = err_set(
		        err, -EUCLEAN,
		        "%s/catalog.db: directory object %s names content %s, which has no "
		        "row: the catalog is damaged (see condafs verify); not deleting what it "
		        "does not name",
		        st->dir, dhex, ohex);
	}
	return r;
}

/* Coarse, cheap: it is asked between every two requests of the daemon. */
static time_t monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec;
}

int store_open(const char *dir, unsigned flags, struct store **ret, struct cfs_err *err)
{
	return store_open_notify(dir, flags, NULL, NULL, ret, err);
}

int store_open_notify(const char *dir, unsigned flags, void (*notify)(void *ctx, const char *msg),
                      void *ctx, struct store **ret, struct cfs_err *err)
{
	struct store *st = calloc(1, sizeof(*st));
	char *db = NULL;
	int r, version = 0;

	if (!st)
		return -ENOMEM;
	st->notify = (struct lockwait){notify, ctx};
	st->fd = -1;
	st->flags = flags;
	st->dir = strdup(dir);
	st->dctx = ZSTD_createDCtx();
	if (!st->dir || !st->dctx) {
		r = -ENOMEM;
		goto fail;
	}
	if ((flags & STORE_CREATE) && (r = mkdir_p(dir)) < 0) {
		r = err_set(err, r, "%s: cannot create the store: %s", dir, strerror(-r));
		goto fail;
	}
	st->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->fd < 0) {
		r = err_set(err, neg_errno(), "%s: cannot open the store: %s", dir,
		            strerror(errno));
		goto fail;
	}
	if (asprintf(&db, "%s/catalog.db", dir) < 0) {
		db = NULL;
		r = -ENOMEM;
		goto fail;
	}
	r = check_format(st->fd, dir, &version, err);
	if (r == -ENOENT && (flags & STORE_CREATE)) {
		/* The catalog before FORMAT: a store whose FORMAT exists has a catalog, even
		 * when its creator was killed in between (S1). */
		r = objects_empty(st->fd, dir, err);
		if (!r)
			r = catalog_create(db, st->fd, &st->notify, &st->cat, err);
		if (!r)
			r = store_create(st->fd, dir, err);
	} else if (r == -ENOENT) {
		r = err_set(err, -ENOENT, "%s: no condafs store here (FORMAT missing)", dir);
	} else if (!r) {
		r = catalog_open(db, st->fd, !(flags & STORE_READONLY), &st->notify, &st->cat, err);
		/* Before any image of format 2 is written, so that an older condafs refuses the
		 * store instead of taking those images for corrupt ones. */
		if (!r && version == 1 && !(flags & STORE_READONLY))
			r = write_format(st->fd, dir, true, err);
	}
	if (!r && !(flags & STORE_READONLY))
		r = tighten(st->fd, dir, err);
	if (!r && (flags & STORE_SNAPSHOT)) {
		r = catalog_begin(st->cat, false, err);
		st->snapshot_held = !r;
		st->snapshot_at = monotonic_s();
	}
	if (r)
		goto fail;
	free(db);
	*ret = st;
	return 0;
fail:
	free(db);
	store_close(st);
	return r;
}

int store_snapshot_refresh(struct store *st, struct cfs_err *err)
{
	time_t now = monotonic_s();
	int r = 0;

	if (!(st->flags & STORE_SNAPSHOT) || (st->snapshot_held && now == st->snapshot_at))
		return 0;
	if (st->snapshot_held)
		r = catalog_commit(st->cat, err);
	/* BEGIN takes no lock: the snapshot is taken by the first read after it. */
	if (!r)
		r = catalog_begin(st->cat, false, err);
	st->snapshot_held = !r;
	st->snapshot_at = now;
	return r;
}

void store_snapshot_release(struct store *st)
{
	if (!(st->flags & STORE_SNAPSHOT) || !st->snapshot_held)
		return;
	/* It only read: ending it either way is the same, and a rollback cannot fail. */
	catalog_rollback(st->cat);
	st->snapshot_held = false;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < READ_NODES; i++)
		reloc_free(st->nodes[i].reloc);
	for (int i = 0; i < READ_IMAGES; i++)
		object_close(st->images[i].obj);
	catalog_close(st->cat);
	ZSTD_freeDCtx(st->dctx);
	if (st->fd >= 0)
		close(st->fd);
	free(st->dir);
	free(st);
}

/* ---- the store lock (gc.c G2) ---- */

int store_lock(struct store *st, int how, int *ret_fd, struct cfs_err *err)
{
	int fd = openat(st->fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644), r;
	char what[4200];

	if (fd < 0 && errno == EROFS)
		fd = openat(st->fd, "lock", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, neg_errno(), "%s/lock: %s", st->dir, strerror(errno));
	snprintf(what, sizeof(what), "the store lock (%s/lock)", st->dir);
	r = lockwait_flock(fd, how, what, &st->notify);
	if (r) {
		close(fd);
		return err_set(err, r, "%s/lock: %s", st->dir, strerror(-r));
	}
	*ret_fd = fd;
	return 0;
}

int store_writable(struct store *st, struct cfs_err *err)
{
	if (st->flags & STORE_READONLY)
		return err_set(err, -EROFS, "%s: store opened read-only", st->dir);
	return 0;
}
