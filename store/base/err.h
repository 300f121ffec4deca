/* SPDX-License-Identifier: MIT */
/*
 * Filling a struct cfs_err: one line for the user, and the errno to return.
 */
#ifndef CONDAFS_ERR_H
#define CONDAFS_ERR_H

#include "condafs/err.h"

#include <errno.h>
#include <stdarg.h>

/* Formats the message into err (if not NULL). */
void err_format(struct cfs_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Formats the message and yields rc, so callers can write
 * `return err_set(err, -EINVAL, "%s: not a lock", path);`. rc is evaluated first, before
 * formatting can change errno; a macro so that static analysis sees the value is rc.
 */
#define err_set(err, rc, ...)                                                                      \
	__extension__({                                                                            \
		int err_set_rc_ = (rc);                                                            \
		err_format((err), __VA_ARGS__);                                                    \
		err_set_rc_;                                                                       \
	})

/* -errno after a failed call, never 0: what every error path returns. */
static inline int neg_errno(void)
{
	/* Tested as the value returned, so that static analysis sees it is never 0. */
	int r = -errno;

	return r < 0 && r > -4096 ? r : -EIO;
}

#endif
