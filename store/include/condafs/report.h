/* SPDX-License-Identifier: MIT */
/*
 * Reports (store/report.c): what `condafs ls`, `stats` and `show` print, as JSON, and read
 * back from it, for the CLI and for condafsd's MOUNTPOINT/.condafs.
 */
#ifndef CONDAFS_REPORT_H
#define CONDAFS_REPORT_H

#include <condafs/store.h>

#include <stddef.h>
#include <stdint.h>

/*
 * The texts are exactly what `condafs ls --json`, `stats --json` and `show --json` print;
 * condafsd publishes them under MOUNTPOINT/.condafs/ for the users who may not open the
 * store, and the CLI run by such a user reads them back.
 */

/* One environment as `condafs ls` shows it. */
struct report_env {
	struct store_env env; /* read back from JSON: id, root and removed are 0 */
	uint64_t unique_bytes;
	struct store_tag *tags; /* by name; read back: only name and hash are set */
	size_t ntags;
	char cuda[16];         /* the CUDA release it needs (condafs/cuda.h), "" for none */
	char cuda_source[256]; /* what in its packages says so, "" for none */
};

/* Every live environment with its tags and unique bytes, sorted by hash. *ret is freed
 * with report_envs_free. */
int report_envs(struct store *st, struct report_env **ret, size_t *ret_n, struct cfs_err *err);
void report_envs_free(struct report_env *v, size_t n);
/* Set each environment's CUDA need (cuda, cuda_source) from its packages. */
int report_envs_cuda(struct store *st, struct report_env *v, size_t n, struct cfs_err *err);
/* Add each tag (sorted by name) to the environment it names in v (sorted by hash); tags of
 * environments not in v are left out. -ENOMEM. */
int report_envs_tag(struct report_env *v, size_t n, const struct store_tag *tags, size_t ntags);

/* The JSON texts; *ret is malloc'd and NUL-terminated, *ret_len bytes long. -ENOMEM. */
int report_envs_json(const struct report_env *v, size_t n, char **ret, size_t *ret_len);
int report_stats_json(const struct store_stats *s, const struct report_env *v, size_t n, char **ret,
                      size_t *ret_len);
int report_packages_json(const struct store_env *env, const struct pkgset *set, char **ret,
                         size_t *ret_len);
/* Which store a mount serves: {"store": ..., "mountpoint": ...}. */
int report_mount_json(const char *store, const char *mountpoint, char **ret, size_t *ret_len);

/* Read them back; name is the file, for messages. Anything else is -EBADMSG naming the
 * file and what is wrong. report_stats_parse's environments carry only hash and unique
 * bytes. Strings given back are malloc'd, the caller frees them. */
int report_envs_parse(const char *name, const char *text, size_t len, struct report_env **ret,
                      size_t *ret_n, struct cfs_err *err);
int report_stats_parse(const char *name, const char *text, size_t len, struct store_stats *ret,
                       struct report_env **ret_envs, size_t *ret_n, struct cfs_err *err);
int report_packages_parse(const char *name, const char *text, size_t len, struct pkgset **ret,
                          struct cfs_err *err);
int report_mount_parse(const char *name, const char *text, size_t len, char **ret_store,
                       char **ret_mountpoint, struct cfs_err *err);
/* As store_env_find, among v: by tag, full hash, or a unique prefix of at least 4 hex
 * digits; *ret is the index. */
int report_env_find(const struct report_env *v, size_t n, const char *name, size_t *ret,
                    struct cfs_err *err);

#endif
