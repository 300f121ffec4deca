// SPDX-License-Identifier: MIT
/*
 * Verify: re-read every object the catalog names and check it hashes to its key, name the
 * environments and paths that use a missing or corrupt one, and list object files that no
 * catalog row names (left by an ingest killed before its commit: harmless, gc frees them).
 */
#include "store_impl.h"

#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct verify {
	struct store *st;
	void (*fn)(void *ctx, const struct verify_problem *p);
	void *ctx;
	struct verify_result res;
	char key[33];
	const char *problem;
	struct cfs_err *err;
};

static int report_user(void *ctx, const char *env, int64_t node)
{
	struct verify *v = ctx;
	char path[4096];
	struct verify_problem p = {v->key, v->problem, env, path};

	if (store_node_path(v->st, node, path, sizeof(path), NULL))
		snprintf(path, sizeof(path), "(node %lld)", (long long)node);
	v->fn(v->ctx, &p);
	return 0;
}

static int check_object(void *ctx, const struct catalog_object *co)
{
	struct verify *v = ctx;
	struct object *o = NULL;
	struct cfs_err e;
	int r;

	v->res.objects_checked++;
	objkey_hex(&co->key, v->key);
	r = object_open(v->st->fd, &co->key, co->blob, co->bloblen, &o, &e);
	if (r == 0)
		r = object_check(o, v->st->dctx, &e);
	if (r == 0 && object_size(o) != co->size)
		r = err_set(&e, -EBADMSG, "size %llu, catalog says %llu",
			    (unsigned long long)object_size(o), (unsigned long long)co->size);
	object_close(o);
	if (r == -EBADMSG) {
		v->res.corrupt++;
		v->problem = e.msg;
		if (co->refs == 0) {
			struct verify_problem p = {v->key, e.msg, NULL, NULL};

			v->fn(v->ctx, &p);
			return 0;
		}
		return catalog_object_users(v->st->cat, co->id, report_user, v, v->err);
	}
	if (r)
		return err_set(v->err, r, "%s", e.msg);
	if (co->refs == 0) {
		struct verify_problem p = {v->key, "unreferenced", NULL, NULL};

		v->res.unreferenced++;
		v->fn(v->ctx, &p);
	}
	return 0;
}

/* Object files with no catalog row. */
static int find_orphans(struct verify *v)
{
	for (int i = 0; i < 256; i++) {
		char dir[16];
		struct dirent *de;
		DIR *d;
		int fd;

		snprintf(dir, sizeof(dir), "objects/%02x", i);
		fd = openat(v->st->fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return err_set(v->err, -errno, "%s/%s: %s", v->st->dir, dir,
				       strerror(errno));
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return -ENOMEM;
		}
		while ((de = readdir(d))) {
			struct catalog_object co;
			struct objkey k;
			char hex[33];
			int r;

			if (strlen(de->d_name) != 30)
				continue;
			snprintf(hex, sizeof(hex), "%.2s%s", dir + 8, de->d_name);
			if (objkey_parse(hex, &k) < 0)
				continue;
			r = catalog_object_by_key(v->st->cat, &k, &co, v->err);
			if (r == -ENOENT) {
				struct verify_problem p = {hex, "unreferenced", NULL, NULL};

				v->res.unreferenced++;
				v->fn(v->ctx, &p);
			} else if (r) {
				closedir(d);
				return r;
			}
		}
		closedir(d);
	}
	return 0;
}

int store_verify(struct store *st, void (*fn)(void *ctx, const struct verify_problem *p),
		 void *ctx, struct verify_result *ret, struct cfs_err *err)
{
	struct verify v = {.st = st, .fn = fn, .ctx = ctx, .err = err};
	int r;

	/* One read transaction: a consistent view while ingests commit beside us. */
	r = catalog_begin(st->cat, false, err);
	if (r)
		return r;
	r = catalog_object_each(st->cat, check_object, &v, err);
	if (!r)
		r = find_orphans(&v);
	catalog_rollback(st->cat);
	if (!r)
		*ret = v.res;
	return r;
}
