/* SPDX-License-Identifier: MIT */
/*
 * Finding a package already on the machine, in conda's, mamba's and pixi's (rattler's)
 * package caches: its archive, or the directory it was extracted to.
 */
#ifndef CONDAFS_PKGCACHE_H
#define CONDAFS_PKGCACHE_H

#include "condafs/conda.h"

#include <stddef.h>

struct pkgcache;

/*
 * The package cache directories to search: dirs in order, then the defaults:
 * /opt/conda/pkgs, $HOME/.conda/pkgs, and pixi's and rattler's caches ($PIXI_CACHE_DIR/pkgs,
 * $RATTLER_CACHE_DIR/pkgs, and ${XDG_CACHE_HOME:-$HOME/.cache}/rattler/cache/pkgs). A
 * missing or unreadable directory is skipped, and one reached twice is searched once. Each
 * is opened as open_named does (useropen.h). 0, -ENOMEM.
 */
int pkgcache_new(const char *const *dirs, size_t ndirs, struct pkgcache **ret, struct cfs_err *err);
void pkgcache_free(struct pkgcache *c);

/*
 * For the archive file name fn ("numpy-1.24.2-py311h_0.conda") with the lock's digests
 * (lowercase or uppercase hex; NULL when the lock has none):
 *  - *ret_archive: the path "<dir>/<fn>" of the first regular file of that name, or NULL;
 *    the caller verifies its digest before use;
 *  - *ret_extracted: the path of the first extracted package directory, with
 *    info/index.json and info/paths.json, whose recorded digest is the lock's: conda's and
 *    mamba's "<dir>/<dist>" with an info/repodata_record.json naming the same sha256 (or md5
 *    when the lock has only md5), or rattler's "<dir>/<dist>" or "<dir>/<dist>-<origin
 *    hash>" whose "<that>.lock" records the same sha256; or NULL.
 * Both malloc'd. 0 or -ENOMEM; an unreadable directory or record is skipped, and nothing
 * beneath a cache directory is reached through a symbolic link.
 */
int pkgcache_find(const struct pkgcache *c, const char *fn, const char *sha256, const char *md5,
                  char **ret_archive, char **ret_extracted);

#endif
