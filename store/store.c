// SPDX-License-Identifier: MIT
/*
 * Opening and creating a store: the directory layout, its format version, the catalog.
 *
 *   FORMAT         "condafs-store 1": a store of another format is refused
 *   catalog.db     the SQLite catalog (with -wal and -shm beside it)
 *   objects/xx/    object images, by the first byte of their key (made on first use)
 *   tmp/           ingests' temporary directories (ingest.c, object.c)
 */
#include "store_impl.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_LINE "condafs-store 1\n"

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
	if (!r && mkdir(p, 0755) < 0 && errno != EEXIST)
		r = neg_errno();
	free(p);
	return r;
}

/* Lay out a new store. Safe to race with another creator: every step is idempotent and
 * FORMAT appears last, atomically. */
static int store_create(int fd, const char *dir, struct cfs_err *err)
{
	int r, ffd;

	if (mkdirat(fd, "tmp", 0700) < 0 && errno != EEXIST)
		return err_set(err, neg_errno(), "%s/tmp: %s", dir, strerror(errno));
	if (mkdirat(fd, "objects", 0755) < 0 && errno != EEXIST)
		return err_set(err, neg_errno(), "%s/objects: %s", dir, strerror(errno));
	ffd = openat(fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0444);
	if (ffd < 0)
		return err_set(err, neg_errno(), "%s: cannot write FORMAT: %s", dir,
		               strerror(errno));
	r = write(ffd, FORMAT_LINE, strlen(FORMAT_LINE)) == (ssize_t)strlen(FORMAT_LINE) &&
	                    fsync(ffd) == 0
	            ? 0
	            : neg_errno();
	if (!r) {
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", ffd);
		if (linkat(AT_FDCWD, proc, fd, "FORMAT", AT_SYMLINK_FOLLOW) < 0 && errno != EEXIST)
			r = neg_errno();
	}
	close(ffd);
	if (!r && fsync(fd) < 0)
		r = neg_errno();
	if (r)
		return err_set(err, r, "%s/FORMAT: %s", dir, strerror(-r));
	return 0;
}

static int check_format(int fd, const char *dir, struct cfs_err *err)
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
	if (strcmp(buf, FORMAT_LINE) != 0) {
		buf[strcspn(buf, "\n")] = '\0';
		return err_set(err, -EPROTO,
		               "%s/FORMAT: store format '%s' is not one this condafs knows "
		               "(it reads '%.*s')",
		               dir, buf, (int)strlen(FORMAT_LINE) - 1, FORMAT_LINE);
	}
	return 0;
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
	int r;

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
	r = check_format(st->fd, dir, err);
	if (r == -ENOENT && (flags & STORE_CREATE)) {
		/* The catalog before FORMAT: a store whose FORMAT exists has a catalog, even
		 * when its creator was killed in between. */
		r = catalog_open(db, true, &st->notify, &st->cat, err);
		if (!r)
			r = store_create(st->fd, dir, err);
	} else if (r == -ENOENT) {
		r = err_set(err, -ENOENT, "%s: no condafs store here (FORMAT missing)", dir);
	} else if (!r) {
		r = catalog_open(db, !(flags & STORE_READONLY), &st->notify, &st->cat, err);
	}
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
