/* SPDX-License-Identifier: MIT */
/*
 * Writing an environment out as a plain directory tree: from the store (root), or from a
 * mount (viamount.c, a user). Both write into a destination opened the same way.
 */
#ifndef CONDAFS_EXPORT_H
#define CONDAFS_EXPORT_H

#include <condafs/frozen.h>
#include <condafs/store.h>

#include <stdbool.h>
#include <stdint.h>

/* The directory an export writes into. */
struct export_dest {
	int fd;        /* the directory */
	int parent_fd; /* its parent (O_PATH), to remove it again */
	char *name;    /* its name in the parent */
	char *path;    /* where it is, absolute: the default prefix */
	bool created;  /* made by export_dest_open, not an empty one that was there */
};

/*
 * Open dir to write an environment into: made (0700) when missing, else an existing empty
 * directory. No symlink is followed, at dir or at any component of its path: a symlink is
 * -ELOOP, a non-empty directory -ENOTEMPTY, each with one line in err naming dir.
 */
int export_dest_open(const char *dir, struct export_dest *ret, struct cfs_err *err);
/* After a failure: remove what was written into it, and the directory if it was made by
 * export_dest_open. Follows no symlink, removes nothing outside it. */
void export_dest_undo(struct export_dest *d);
void export_dest_close(struct export_dest *d);
/* Open the directory name that this process just made in dfd: the fd, or -ELOOP for a
 * symlink, -EXDEV when it is not ours any more (replaced), another -errno otherwise. */
int export_open_made(int dfd, const char *name);

/* Write env into dir (export_dest_open) with its prefix served as prefix (NULL: where dir
 * is): bytes, modes, mtimes, symlinks, hard links and holes as ingested; with frozen, also
 * the files condafsd serves in it (condafs/frozen.h), as the mount serves them at prefix.
 * The tree is checked as it is read (-EUCLEAN for a damaged one). On failure nothing is
 * left. */
int export_env(struct store *st, const struct store_env *env, const char *dir, const char *prefix,
               bool frozen, struct cfs_err *err);
/* Write served file f of environment hash, served at prefix, into the directory dfd, as
 * condafsd serves it: its text, mode FROZEN_MODE, mtime the environment's ingest time
 * (created). rel names it in messages (err: "<dir>/<rel>: ..."). */
int export_served(int dfd, enum frozen_file f, const char *prefix, const char *hash,
                  int64_t created, const char *dir, const char *rel, struct cfs_err *err);

#endif
