// SPDX-License-Identifier: MIT
/*
 * Removing environments. Catalog rows go first, in one transaction; the objects they
 * named lose their references and stay on disk until garbage collection, so a reader
 * that still holds a node of the environment keeps reading it until it lets go.
 */
#include "store_impl.h"

#include "err.h"

#include <errno.h>

int store_env_remove(struct store *st, const struct store_env *env, struct cfs_err *err)
{
	struct store_env now;
	int r;

	if (st->flags & STORE_READONLY)
		return err_set(err, -EROFS, "%s: store opened read-only", st->dir);
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
