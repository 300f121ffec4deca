/* SPDX-License-Identifier: MIT */
/*
 * Filling a struct cfs_err: one line for the user, and the errno to return.
 */
#ifndef CONDAFS_ERR_H
#define CONDAFS_ERR_H

#include "condafs/store.h"

/* Formats the message into err (if not NULL) and returns rc, so callers can write
 * `return err_set(err, -EINVAL, "%s: not a lock", path);`. */
int err_set(struct cfs_err *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
