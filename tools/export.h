/* SPDX-License-Identifier: MIT */
/*
 * Writing an environment out of the store as a plain directory tree.
 */
#ifndef CONDAFS_EXPORT_H
#define CONDAFS_EXPORT_H

#include <condafs/store.h>

/* Write env into dir (created; must not exist or be empty) with its prefix served as
 * prefix: bytes, modes, mtimes, symlinks, hard links and holes as ingested. */
int export_env(struct store *st, const struct store_env *env, const char *dir, const char *prefix,
               struct cfs_err *err);

#endif
