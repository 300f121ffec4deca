// SPDX-License-Identifier: MIT
/*
 * Tags: names for environments (condafs/store.h). A tag moves from one environment to
 * another in one transaction; a removed environment loses its tags (gc.c); gc never
 * collects a tagged environment.
 */
#include "store_impl.h"

#include "err.h"
#include "hex.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

bool store_tag_valid(const char *name)
{
	size_t n = strlen(name);

	/* 32 hex digits in any case read as a hash (or as a prefix of one): never a tag. */
	if (n == 0 || n > 128 || name[0] == '.' || name[0] == '-' ||
	    (n == 32 && hex_only(name, 32, true)))
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
	int r = store_writable(st, err);

	if (r)
		return r;
	if (!store_tag_valid(name))
		return bad_tag(name, err);
	r = catalog_begin(st->cat, true, err);
	if (r)
		return r;
	r = catalog_tag_set(st->cat, name, env->id, time(NULL), err);
	if (!r)
		r = catalog_commit(st->cat, err);
	if (r)
		catalog_rollback(st->cat);
	return r;
}

int store_tag_remove(struct store *st, const char *name, struct cfs_err *err)
{
	int r = store_writable(st, err);

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
