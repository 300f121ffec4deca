// SPDX-License-Identifier: MIT
/*
 * The lifecycle of environments: tags, removal, last use, and garbage collection.
 *
 * Invariants (with catalog.c's C1-C3):
 * G1: catalog rows go before files. An object file is unlinked only after the transaction
 *     that deleted its row has committed, so a crash leaves at worst files no row names,
 *     which verify reports as unreferenced and the next gc deletes.
 * G2: gc deletes objects only under the store lock held exclusively; every ingest holds
 *     it shared from its first look at the catalog to its commit, so an object an ingest
 *     found stored (and will name) cannot vanish under it.
 * G3: only objects with no references are deleted: an environment still in the catalog
 *     never loses a byte.
 */
#include "store_impl.h"

#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int store_lock(struct store *st, int how, int *ret_fd, struct cfs_err *err)
{
	int fd = openat(st->fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0 && errno == EROFS)
		fd = openat(st->fd, "lock", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, neg_errno(), "%s/lock: %s", st->dir, strerror(errno));
	while (flock(fd, how) < 0) {
		if (errno == EINTR)
			continue;
		close(fd);
		return err_set(err, neg_errno(), "%s/lock: %s", st->dir, strerror(errno));
	}
	*ret_fd = fd;
	return 0;
}

static int writable(struct store *st, struct cfs_err *err)
{
	if (st->flags & STORE_READONLY)
		return err_set(err, -EROFS, "%s: store opened read-only", st->dir);
	return 0;
}

int store_env_remove(struct store *st, const struct store_env *env, struct cfs_err *err)
{
	struct store_env now;
	int r = writable(st, err);

	if (!r)
		r = catalog_begin(st->cat, true, err);
	if (r)
		return r;
	r = catalog_env_by_hash(st->cat, env->hash, &now, err);
	if (r == -ENOENT)
		err_set(err, r, "%s: no such environment", env->hash);
	if (!r)
		r = catalog_env_delete(st->cat, now.id, err);
	if (!r)
		r = catalog_commit(st->cat, err);
	if (r)
		catalog_rollback(st->cat);
	return r;
}

/* ---- tags ---- */

static bool is_hash(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == 32;
}

bool store_tag_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 128 || name[0] == '.' || name[0] == '-' || is_hash(name))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '+' || c == '-'))
			return false;
	}
	return true;
}

static int bad_tag(const char *name, struct cfs_err *err)
{
	return err_set(err, -EINVAL,
	               "'%s': not a valid tag name (1-128 of A-Z a-z 0-9 . _ + -, not starting "
	               "with '.' or '-', and not a 32-digit hash)",
	               name);
}

int store_tag_set(struct store *st, const char *name, const struct store_env *env,
                  struct cfs_err *err)
{
	int r = writable(st, err);

	if (r)
		return r;
	if (!store_tag_valid(name))
		return bad_tag(name, err);
	return catalog_tag_set(st->cat, name, env->id, err);
}

int store_tag_remove(struct store *st, const char *name, struct cfs_err *err)
{
	int r = writable(st, err);

	if (!r)
		r = catalog_tag_remove(st->cat, name, err);
	if (r == -ENOENT)
		return err_set(err, r, "%s: no such tag", name);
	return r;
}

int store_tag_list(struct store *st, const char *env_hash, struct store_tag **ret, size_t *ret_n,
                   struct cfs_err *err)
{
	return catalog_tag_list(st->cat, env_hash, ret, ret_n, err);
}

/* ---- last use ---- */

int store_env_touch(struct store *st, const int64_t *env_ids, size_t n, int64_t t,
                    struct cfs_err *err)
{
	int r = writable(st, err);

	if (!r && n)
		r = catalog_begin(st->cat, true, err);
	if (r || !n)
		return r;
	for (size_t i = 0; !r && i < n; i++)
		r = catalog_env_touch(st->cat, env_ids[i], t, err);
	if (!r)
		r = catalog_commit(st->cat, err);
	if (r)
		catalog_rollback(st->cat);
	return r;
}

/* ---- garbage collection ---- */

struct doomed {
	struct objkey *keys;
	size_t n, cap;
};

static int doom(struct doomed *d, const struct objkey *k)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 256;
		void *v = realloc(d->keys, cap * sizeof(*d->keys));

		if (!v)
			return -ENOMEM;
		d->keys = v;
		d->cap = cap;
	}
	d->keys[d->n++] = *k;
	return 0;
}

static uint64_t file_bytes(int dir_fd, const char *path)
{
	struct stat sb;

	return fstatat(dir_fd, path, &sb, 0) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
}

/* Delete the rows of every object nobody references, members before their packs; the
 * image files to unlink afterwards (G1) go to d. */
static int drop_unused(struct store *st, struct doomed *d, struct gc_result *res,
                       struct cfs_err *err)
{
	struct catalog_object o;
	int r;

	while ((r = catalog_unused_object(st->cat, &o, err)) == 0) {
		char path[48];

		if (!o.pack) {
			objkey_path(&o.key, path);
			res->bytes_freed += file_bytes(st->fd, path);
			r = doom(d, &o.key);
			if (r)
				return r;
		}
		if (o.kind == OBJECT_CONTENT)
			res->objects_freed++;
		r = catalog_object_delete(st->cat, &o, err);
		if (r)
			return r;
	}
	return r == -ENOENT ? catalog_groups_prune(st->cat, err) : r;
}

/* Object files no row names: left by an ingest or a gc killed between its steps. Only
 * under the exclusive lock (G2): no ingest is between linking and committing. */
static int sweep_orphans(struct store *st, bool dry_run, struct gc_result *res, struct cfs_err *err)
{
	for (int i = 0; i < 256; i++) {
		char dir[16];
		struct dirent *de;
		DIR *dp;
		int fd;

		snprintf(dir, sizeof(dir), "objects/%02x", i);
		fd = openat(st->fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		dp = fdopendir(fd);
		if (!dp) {
			close(fd);
			return -ENOMEM;
		}
		while ((de = readdir(dp))) {
			struct catalog_object o;
			struct objkey k;
			char hex[33];
			int r;

			if (strlen(de->d_name) != 30)
				continue;
			snprintf(hex, sizeof(hex), "%02x%s", i, de->d_name);
			if (objkey_parse(hex, &k) < 0)
				continue;
			r = catalog_object_by_key(st->cat, &k, &o, err);
			if (r == 0)
				continue;
			if (r != -ENOENT) {
				closedir(dp);
				return r;
			}
			res->objects_freed++;
			res->bytes_freed += file_bytes(fd, de->d_name);
			if (!dry_run)
				unlinkat(fd, de->d_name, 0);
		}
		closedir(dp);
	}
	return 0;
}

int store_gc(struct store *st, const struct gc_opts *opts,
             void (*fn)(void *ctx, const struct store_env *env), void *ctx, struct gc_result *ret,
             struct cfs_err *err)
{
	struct gc_result res = {0};
	struct store_env *envs = NULL;
	struct doomed d = {0};
	size_t n = 0;
	int lock = -1, r = writable(st, err);

	/* Objects only go while no ingest is running (G2); environments go with them. */
	if (!r)
		r = store_lock(st, LOCK_EX, &lock, err);
	if (!r)
		r = catalog_begin(st->cat, true, err);
	if (r)
		goto out;
	r = catalog_gc_envs(st->cat, opts->now - opts->unused_for, &envs, &n, err);
	for (size_t i = 0; !r && i < n; i++) {
		if (fn)
			fn(ctx, &envs[i]);
		r = catalog_env_delete(st->cat, envs[i].id, err);
		res.envs_removed++;
	}
	/* Orphans first: files that had no row before this transaction (G1 holds for them
	 * whatever becomes of it), not the ones whose rows it is about to delete. */
	if (!r)
		r = sweep_orphans(st, opts->dry_run, &res, err);
	if (!r)
		r = drop_unused(st, &d, &res, err);
	/* A dry run makes every change a real run would, then throws them away. */
	if (r || opts->dry_run)
		catalog_rollback(st->cat);
	else
		r = catalog_commit(st->cat, err);
	if (r || opts->dry_run)
		goto out;
	for (size_t i = 0; i < d.n; i++) {
		char path[48];

		objkey_path(&d.keys[i], path);
		if (unlinkat(st->fd, path, 0) < 0 && errno != ENOENT) {
			r = err_set(err, neg_errno(), "%s/%s: %s", st->dir, path, strerror(errno));
			goto out;
		}
	}
out:
	if (!r)
		*ret = res;
	free(envs);
	free(d.keys);
	if (lock >= 0)
		close(lock);
	return r;
}
