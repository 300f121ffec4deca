// SPDX-License-Identifier: MIT
/*
 * conda-meta/frozen and EXTERNALLY-MANAGED, served in every environment and stored in
 * none (condafs/frozen.h says why and what they hold). Each is a 0444 file of root's whose
 * mtime is its environment's ingest time and whose text the environment table made with
 * the mount path in it (envtab.c); a directory that gets one lists it after its stored
 * children, and a lookup finds it when the catalog has no such name there. Which
 * directories get one is asked of the catalog only for those names and for listings of
 * directories named conda-meta or like a stdlib directory.
 *
 * Nodeids (kind INO_META, shared with meta.c): id = x << 2 | 0 with x = env id << 2 |
 * (file + 1), so x >= 5, where meta.c's fixed nodes have x 1 to 3. A served file is not
 * charged to its environment (use.c): it is made from the table, not read from the store,
 * and a removed environment's one goes when the table lets go of it, like its directories.
 */
#include "fsd.h"

#include <errno.h>
#include <float.h>
#include <string.h>

/* (x & 3) holds file + 1. */
_Static_assert(FROZEN_FILES <= 3, "a served file's number does not fit in two bits");

int served_ino(int64_t env_id, enum frozen_file f, fuse_ino_t *ret)
{
	if (env_id < 1 || env_id > (INT64_MAX >> 4))
		return -EOVERFLOW;
	return ino_make(INO_META, (env_id << 2 | (int64_t)(f + 1)) << 2, ret);
}

bool served_split(fuse_ino_t ino, int64_t *ret_env, enum frozen_file *ret_f)
{
	enum ino_kind kind;
	int64_t id, x;

	if (ino == INO_ROOT || ino_split(ino, &kind, &id) || kind != INO_META || (id & 3) != 0)
		return false;
	x = id >> 2;
	if (x < 4 || (x & 3) < 1 || (x & 3) > FROZEN_FILES)
		return false;
	*ret_env = x >> 2;
	*ret_f = (enum frozen_file)((x & 3) - 1);
	return true;
}

bool served_owns(fuse_ino_t ino)
{
	int64_t env;
	enum frozen_file f;

	return served_split(ino, &env, &f);
}

static void served_stat(const struct fsd_env *env, enum frozen_file f, fuse_ino_t ino,
                        struct stat *ret)
{
	*ret = (struct stat){
	        .st_ino = ino,
	        .st_mode = S_IFREG | FROZEN_MODE,
	        .st_nlink = 1,
	        .st_size = (off_t)env->served_len[f],
	        .st_blocks = (blkcnt_t)((env->served_len[f] + 511) / 512),
	        .st_blksize = 4096,
	};
	ret->st_mtim.tv_sec = ret->st_atim.tv_sec = ret->st_ctim.tv_sec = env->created;
}

int served_dir_entry(struct worker *w, const struct fsd_env *env, const struct store_node *dir,
                     const char **ret_name, struct fuse_entry_param *e, struct cfs_err *err)
{
	enum frozen_file f;
	int r = frozen_dir_gets(worker_store(w), env->top.id, dir, &f, err);

	if (r <= 0)
		return r;
	memset(e, 0, sizeof(*e));
	r = served_ino(env->id, f, &e->ino);
	if (r)
		return r;
	e->generation = env->generation;
	e->attr_timeout = e->entry_timeout = DBL_MAX;
	served_stat(env, f, e->ino, &e->attr);
	*ret_name = frozen_name(f);
	return 1;
}

/* The environment of a served nodeid in t, or NULL. */
static const struct fsd_env *served_env(const struct envtab *t, fuse_ino_t ino,
                                        enum frozen_file *ret_f)
{
	int64_t id;

	if (!served_split(ino, &id, ret_f))
		return NULL;
	return envtab_by_id(t, id);
}

int served_attr(const struct envtab *t, fuse_ino_t ino, struct stat *ret)
{
	enum frozen_file f;
	const struct fsd_env *env = served_env(t, ino, &f);

	if (!env)
		return -ESTALE;
	served_stat(env, f, ino, ret);
	return 0;
}

int served_text(const struct envtab *t, fuse_ino_t ino, const char **ret, size_t *ret_len)
{
	enum frozen_file f;
	const struct fsd_env *env = served_env(t, ino, &f);

	if (!env)
		return -ESTALE;
	*ret = env->served[f];
	*ret_len = env->served_len[f];
	return 0;
}
