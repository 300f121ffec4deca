/* SPDX-License-Identifier: MIT */
/*
 * Reading a solved prefix's conda-meta: its package set (with pip packages found by
 * their dist-info that no conda record owns) and what each record says of each file.
 */
#ifndef CONDAFS_CONDAMETA_H
#define CONDAFS_CONDAMETA_H

#include "condafs/conda.h"

#include <stdbool.h>
#include <stddef.h>

struct condameta;

/* -EINVAL when prefix is not a conda prefix (no conda-meta/history) or a record is
 * malformed, naming the file and the reason. The prefix is opened as open_named does,
 * and read with the fs credentials of its owner (useropen.h). */
int condameta_read(const char *prefix, struct condameta **ret, struct cfs_err *err);
/* The same for the prefix open at pfd (named prefix in messages), with the calling
 * thread's credentials: nothing under pfd is reached through a symbolic link. */
int condameta_read_at(int pfd, const char *prefix, struct condameta **ret, struct cfs_err *err);
void condameta_free(struct condameta *m);

/* The package set; valid while m lives. */
const struct pkgset *condameta_pkgset(const struct condameta *m);
/* Takes the set out of m: the caller owns it, and m no longer has one. */
struct pkgset *condameta_take_pkgset(struct condameta *m);

/* What the records say of relpath (relative to the prefix): true with the placeholder's
 * length and mode when a record lists a prefix_placeholder for it. */
bool condameta_placeholder(const struct condameta *m, const char *relpath, bool *ret_binary,
                           size_t *ret_len);

#endif
