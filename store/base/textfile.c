// SPDX-License-Identifier: MIT
/*
 * Whole-file reads for the small text inputs the store parses: lock files, conda-meta
 * records and dist-info METADATA. One read path, so every such file gets the same
 * open (no symbolic link followed under a prefix, never blocking: useropen.h),
 * regular-file check, size cap and EINTR handling.
 */
#include "textfile.h"

#include "err.h"
#include "useropen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int textfile_read(int dirfd, const char *path, const char *display, size_t max, char **ret,
                  size_t *ret_len, struct cfs_err *err)
{
	struct stat st;
	char *buf = NULL;
	size_t size, done = 0;
	int fd, r;

	/* O_NONBLOCK: a FIFO in place of a record opens at once, and is refused below. */
	fd = dirfd == AT_FDCWD ? open_named(path, O_RDONLY) : open_beneath(dirfd, path, O_RDONLY);
	if (fd < 0)
		return err_set(err, fd, "%s: %s", display,
		               dirfd == AT_FDCWD ? strerror(-fd) : beneath_strerror(fd));
	if (fstat(fd, &st) < 0) {
		r = err_set(err, neg_errno(), "%s: %s", display, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = err_set(err, -EINVAL, "%s: not a regular file (%s)", display,
		            S_ISDIR(st.st_mode)    ? "a directory"
		            : S_ISFIFO(st.st_mode) ? "a fifo"
		            : S_ISSOCK(st.st_mode) ? "a socket"
		                                   : "a device");
		goto out;
	}
	if ((uintmax_t)st.st_size > max) {
		r = err_set(err, -EFBIG, "%s: %jd bytes is more than the %zu a text input may have",
		            display, (intmax_t)st.st_size, max);
		goto out;
	}
	size = (size_t)st.st_size;
	buf = malloc(size + 1);
	if (!buf) {
		r = err_set(err, -ENOMEM, "%s: out of memory", display);
		goto out;
	}
	/* The size from fstat is only a hint: a file that grows while we read is cut at the
	 * size we saw, one that shrinks ends early. */
	while (done < size) {
		ssize_t n = read(fd, buf + done, size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(err, neg_errno(), "%s: %s", display, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	buf[done] = '\0';
	*ret = buf;
	*ret_len = done;
	buf = NULL;
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}
