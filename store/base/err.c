// SPDX-License-Identifier: MIT
/*
 * The one place that writes a user-facing error message.
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

void err_format(struct cfs_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}
