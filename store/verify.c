// SPDX-License-Identifier: MIT
/*
 * Verify: re-read every object the catalog names and check it hashes to its key, name the
 * environments and paths that use a missing or corrupt one, and list object files that no
 * catalog row names (left by an ingest killed before its commit: harmless, gc frees them).
 */
#include "store_impl.h"

#include "err.h"
#include "pack.h"

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
	/* The pack being walked: objects come pack first, then its members. */
	int64_t pack_id;
	struct object *pack;
	int pack_rc;
	char pack_msg[sizeof(((struct cfs_err *)0)->msg)];
	uint8_t *buf;
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

/* A member's bytes, read from its pack, must hash to its key. */
static int check_member(struct verify *v, const struct catalog_object *co, struct cfs_err *e)
{
	struct object_src src = {0};
	struct objkey k;
	size_t got;
	int r;

	if (co->pack != v->pack_id)
		return err_set(e, -EBADMSG, "its pack is missing");
	if (v->pack_rc)
		return err_set(e, v->pack_rc, "in a bad pack: %s", v->pack_msg);
	if (co->size > PACK_MEMBER_MAX)
		return err_set(e, -EBADMSG, "member of %llu bytes", (unsigned long long)co->size);
	r = object_read(v->pack, v->st->dctx, co->pack_off, (size_t)co->size, v->buf, &got, e);
	if (r)
		return r;
	src.data = v->buf;
	src.len = got;
	object_hash(&src, &k);
	if (got != co->size || memcmp(k.b, co->key.b, 16) != 0)
		return err_set(e, -EBADMSG, "corrupt object: content does not match its key");
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
	if (co->pack) {
		r = check_member(v, co, &e);
	} else {
		r = object_open(v->st->fd, &co->key, &o, &e);
		if (r == 0)
			r = object_check(o, v->st->dctx, &e);
		if (r == 0 && object_size(o) != co->size)
			r = err_set(&e, -EBADMSG, "size %llu, catalog says %llu",
			            (unsigned long long)object_size(o),
			            (unsigned long long)co->size);
		if (co->kind == OBJECT_PACK) {
			/* Kept open for the members that follow. */
			object_close(v->pack);
			v->pack = o;
			o = NULL;
			v->pack_id = co->id;
			v->pack_rc = r;
			snprintf(v->pack_msg, sizeof(v->pack_msg), "%s", r ? e.msg : "");
		}
	}
	object_close(o);
	if (r == -EBADMSG) {
		v->res.corrupt++;
		v->problem = e.msg;
		if (co->refs == 0 || co->kind == OBJECT_PACK) {
			struct verify_problem p = {v->key, e.msg, NULL, NULL};

			/* A bad pack is named here; its members name their users next. */
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
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0)
			return err_set(v->err, neg_errno(), "%s/%s: %s", v->st->dir, dir,
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

int store_verify(struct store *st, void (*fn)(void *ctx, const struct verify_problem *p), void *ctx,
                 struct verify_result *ret, struct cfs_err *err)
{
	struct verify v = {.st = st, .fn = fn, .ctx = ctx, .err = err};
	int r;

	v.buf = malloc(PACK_MEMBER_MAX);
	if (!v.buf)
		return -ENOMEM;
	/* One read transaction: a consistent view while ingests commit beside us. */
	r = catalog_begin(st->cat, false, err);
	if (!r)
		r = catalog_object_each(st->cat, check_object, &v, err);
	if (!r)
		r = find_orphans(&v);
	catalog_rollback(st->cat);
	object_close(v.pack);
	free(v.buf);
	if (!r)
		*ret = v.res;
	return r;
}
