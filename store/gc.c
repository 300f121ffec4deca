// SPDX-License-Identifier: MIT
/*
 * The lifecycle of environments: removal, last use, and garbage collection (tags are
 * tags.c's; the holds of G4 holds.c's; the store lock store.c's).
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
 * G4: removing an environment hides it (catalog.c C4); gc reaps its rows only while it
 *     holds the write lock on the environment's byte of the holds file. A mount takes a
 *     read lock on that byte before it hands the kernel anything of the environment and
 *     keeps it while the kernel may still ask, so an open file of a removed environment is
 *     served until it is closed. The locks are open file description locks: a process
 *     that dies lets go of them, and they do not touch the store lock (flock).
 */
#include "store_impl.h"

#include "err.h"
#include "holds.h"
#include "repack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int store_env_remove(struct store *st, const struct store_env *env, struct cfs_err *err)
{
	struct store_env now;
	int r = store_writable(st, err);

	if (!r)
		r = catalog_begin(st->cat, true, err);
	if (r)
		return r;
	r = catalog_env_by_hash(st->cat, env->hash, &now, err);
	if (r == -ENOENT)
		err_set(err, r, "%s: no such environment", env->hash);
	if (!r)
		r = catalog_env_hide(st->cat, now.id, time(NULL), err);
	if (!r)
		r = catalog_env_retag(st->cat, now.id, 0, err);
	if (!r)
		r = catalog_commit(st->cat, err);
	if (r)
		catalog_rollback(st->cat);
	return r;
}

/* ---- last use ---- */

int store_env_touch(struct store *st, const int64_t *env_ids, size_t n, int64_t t,
                    struct cfs_err *err)
{
	int r = store_writable(st, err);

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
	return r == -ENOENT ? catalog_prune(st->cat, err) : r;
}

struct sweep {
	struct store *st;
	bool dry_run, checked;
	struct gc_result *res;
	struct cfs_err *err;
};

static int sweep_one(void *ctx, int dfd, const char *name, const struct objkey *key)
{
	struct sweep *w = ctx;
	struct catalog_object o;
	int r = catalog_object_by_key(w->st->cat, key, &o, w->err);

	/* A member's bytes are in its pack: a file of its own is one a repack killed before
	 * its commit wrote (repack.c M2, M4). */
	if (r == 0 && !o.pack)
		return 0;
	/* Not from a catalog whose trees name contents it lost the rows of (S1): that check
	 * reads every tree, so only once something looks unreferenced. */
	if ((!r || r == -ENOENT) && !w->checked) {
		r = store_check_catalog(w->st, true, w->err);
		w->checked = true;
	}
	if (r && r != -ENOENT)
		return r;
	w->res->objects_freed++;
	w->res->bytes_freed += file_bytes(dfd, name);
	if (!w->dry_run)
		unlinkat(dfd, name, 0);
	return 0;
}

/* Object files no row names: left by an ingest or a gc killed between its steps. Only
 * under the exclusive lock (G2): no ingest is between linking and committing. */
static int sweep_orphans(struct store *st, bool dry_run, struct gc_result *res, struct cfs_err *err)
{
	struct sweep w = {.st = st, .dry_run = dry_run, .res = res, .err = err};

	return object_each_image(st->fd, st->dir, sweep_one, &w, err);
}

/* Delete the rows of every removed environment that no mount holds, keeping its byte
 * write-locked in *ret_holds until the caller has committed (G4); opts->kept hears of the
 * held ones. A dry run only asks. */
static int reap(struct store *st, const struct gc_opts *opts, void *ctx, int *ret_holds,
                struct gc_result *res, struct cfs_err *err)
{
	bool dry_run = opts->dry_run;
	struct store_env *v = NULL;
	size_t n = 0;
	int r = holds_open(st->fd, true);

	if (r < 0)
		return err_set(err, r, "%s/holds: %s", st->dir, strerror(-r));
	*ret_holds = r;
	r = catalog_env_list(st->cat, CATALOG_ENVS_REMOVED, &v, &n, err);
	for (size_t i = 0; !r && i < n; i++) {
		r = holds_lock(*ret_holds, v[i].id, F_WRLCK, dry_run);
		if (r == -EBUSY) {
			res->envs_held++;
			if (opts->kept)
				opts->kept(ctx, &v[i], GC_KEPT_HELD);
			r = 0;
			continue;
		}
		if (!r)
			r = catalog_env_delete(st->cat, v[i].id, err);
		else
			err_set(err, r, "%s/holds: %s", st->dir, strerror(-r));
	}
	if (!r && res->envs_held)
		holds_say(st, *ret_holds, res->envs_held);
	free(v);
	return r;
}

static bool has_tag(const struct store_tag *tags, size_t n, const char *hash)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(tags[i].hash, hash) == 0)
			return true;
	return false;
}

/* Tell opts->kept of each live environment unused for opts->unused_for that a tag or the
 * grace window keeps, so that a short --unused-for never silently removes nothing. */
static int report_kept(struct store *st, const struct gc_opts *opts, void *ctx, struct cfs_err *err)
{
	struct store_env *v = NULL;
	struct store_tag *tags = NULL;
	size_t n = 0, ntags = 0;
	int r;

	if (!opts->kept)
		return 0;
	r = catalog_env_list(st->cat, CATALOG_ENVS_LIVE, &v, &n, err);
	if (!r)
		r = catalog_tag_list(st->cat, NULL, &tags, &ntags, err);
	for (size_t i = 0; !r && i < n; i++) {
		if (v[i].last_used >= opts->now - opts->unused_for)
			continue;
		if (has_tag(tags, ntags, v[i].hash))
			opts->kept(ctx, &v[i], GC_KEPT_TAGGED);
		else if (v[i].last_used >= opts->now - opts->grace)
			opts->kept(ctx, &v[i], GC_KEPT_GRACE);
	}
	free(tags);
	free(v);
	return r;
}

int store_gc(struct store *st, const struct gc_opts *opts,
             void (*fn)(void *ctx, const struct store_env *env), void *ctx, struct gc_result *ret,
             struct cfs_err *err)
{
	struct gc_result res = {0};
	struct store_env *envs = NULL;
	struct repack_plan *plan = NULL;
	struct doomed d = {0};
	size_t n = 0;
	int lock = -1, holds = -1, r = store_writable(st, err);

	/* Objects only go while no ingest is running (G2); environments go with them. */
	if (!r)
		r = store_lock(st, LOCK_EX, &lock, err);
	/* Never from a catalog that names nothing: objects would look unused (S1). Lost rows
	 * are looked for once an image looks unreferenced (sweep_orphans). */
	if (!r)
		r = store_check_catalog(st, false, err);
	if (!r)
		r = catalog_begin(st->cat, true, err);
	if (r)
		goto out;
	r = report_kept(st, opts, ctx, err);
	/* Whatever was used within the grace window stays, whatever unused_for says. */
	if (!r)
		r = catalog_gc_envs(st->cat,
		                    opts->now - (opts->unused_for > opts->grace ? opts->unused_for
		                                                                : opts->grace),
		                    &envs, &n, err);
	for (size_t i = 0; !r && i < n; i++) {
		if (fn)
			fn(ctx, &envs[i]);
		r = catalog_env_hide(st->cat, envs[i].id, opts->now, err);
		res.envs_removed++;
	}
	if (!r)
		r = reap(st, opts, ctx, &holds, &res, err);
	/* Orphans first: files that had no row before this transaction (G1 holds for them
	 * whatever becomes of it), not the ones whose rows it is about to delete. */
	if (!r)
		r = sweep_orphans(st, opts->dry_run, &res, err);
	if (!r)
		r = drop_unused(st, &d, &res, err);
	/* The packs left holding unused bytes once those rows are gone. */
	if (!r)
		r = repack_plan_make(st, opts->purge, &plan, err);
	if (!r && opts->dry_run)
		repack_plan_estimate(plan, st->fd, &res);
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
	/* Still under the store lock (repack.c M1). */
	r = repack_run(st, plan, &res, err);
out:
	if (!r)
		*ret = res;
	repack_plan_free(plan);
	free(envs);
	free(d.keys);
	/* The reaped environments' write locks end here, after the commit (G4). */
	if (holds >= 0)
		close(holds);
	if (lock >= 0)
		close(lock);
	return r;
}
