// SPDX-License-Identifier: MIT
/*
 * The one place that writes a user-facing error message.
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int err_set(struct cfs_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return rc;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}
