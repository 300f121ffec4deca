/* SPDX-License-Identifier: MIT */
/*
 * The read-only commands for a user who may not open the store, served from the mount:
 * the reports condafsd publishes under MOUNTPOINT/.condafs/ (ls, stats, show), and the
 * environments' files under MOUNTPOINT/<hash>/ (cat, export, verify), which the kernel
 * lets the user open exactly as the modes allow.
 */
#ifndef CONDAFS_VIAMOUNT_H
#define CONDAFS_VIAMOUNT_H

#include <condafs/report.h>
#include <condafs/store.h>
#include <condafs/verify.h>

#include <stdbool.h>
#include <stdio.h>

struct viamount;

/* The mount at mountpoint; it must serve store (as its .condafs/mount.json says, -EXDEV
 * otherwise). Fails with one line in err when no condafsd answers there. */
int viamount_open(const char *mountpoint, const char *store, struct viamount **ret,
                  struct cfs_err *err);
void viamount_close(struct viamount *vm); /* NULL is fine */
/* What the user named it, for messages. */
const char *viamount_path(const struct viamount *vm);

/* ls: the environments. Valid until viamount_close. */
int viamount_envs(struct viamount *vm, const struct report_env **ret, size_t *ret_n,
                  struct cfs_err *err);
/* stats: the totals and each environment's unique bytes (*ret_envs: report_envs_free). */
int viamount_stats(struct viamount *vm, struct store_stats *ret, struct report_env **ret_envs,
                   size_t *ret_n, struct cfs_err *err);
/* An environment by tag, hash or a unique prefix of one (report_env_find). */
int viamount_find(struct viamount *vm, const char *name, struct store_env *ret,
                  struct cfs_err *err);
/* show: its packages; *ret is the caller's (pkgset_free). */
int viamount_packages(struct viamount *vm, const struct store_env *env, struct pkgset **ret,
                      struct cfs_err *err);
/* cat: the file path of env, relocated from where the mount serves it to prefix, to out. */
int viamount_cat(struct viamount *vm, const struct store_env *env, const char *path,
                 const char *prefix, FILE *out, struct cfs_err *err);
/* export: env written into dir (export_dest_open), its prefix served as prefix (NULL:
 * where dir is), without the files the mount serves in it and stores in none
 * (condafs/frozen.h) unless frozen, which writes them as served at prefix. Every file is
 * opened by the user through the mount: one they may not read fails the export, which
 * then removes what it wrote. */
int viamount_export(struct viamount *vm, const struct store_env *env, const char *dir,
                    const char *prefix, bool frozen, struct cfs_err *err);

struct viamount_verify {
	uint64_t files_checked; /* regular files read to the end, each inode once */
	uint64_t files_skipped; /* files and directories the user may not read */
	uint64_t failed;        /* paths that could not be read (a damaged store: EIO) */
};
/* verify: read every file of every environment that the user may, and call fn for each
 * that fails (key NULL: the object is not known from here). */
int viamount_verify(struct viamount *vm, void (*fn)(void *ctx, const struct verify_problem *p),
                    void *ctx, struct viamount_verify *ret, struct cfs_err *err);

#endif
