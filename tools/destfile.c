// SPDX-License-Identifier: MIT
/*
 * One small file written where a user asked. Root runs this into users' directories
 * (--prefix, a home), so, as export does, nothing is followed: every component of the
 * directory is opened from the one before with O_NOFOLLOW, a directory made here must be
 * ours when reopened, and the file is made new (O_EXCL) beside its name and renamed over
 * it, which replaces a symlink there rather than writing through it. Directories and the
 * file get fixed modes (0755, 0644): a kernelspec or modulefile is read by every user who
 * runs it, whatever umask the one who wrote it had.
 */
#include "destfile.h"
#include "export.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(struct cfs_err *err, int r, const char *path, const char *name, const char *why)
{
	snprintf(err->msg, sizeof(err->msg), "%s%s%s: %s", path, name ? "/" : "", name ? name : "",
	         why ? why : strerror(-r));
	return r;
}

/* dir opened (O_RDONLY), made where missing, no symlink followed: the fd or -errno. */
static int open_dir(const char *dir, struct cfs_err *err)
{
	char *copy = strdup(dir), *comp, *save = NULL;
	int fd, r = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dir[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = fail(err, -errno, dir, NULL, NULL);
		goto out;
	}
	for (comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		int next;

		if (!strcmp(comp, "."))
			continue;
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
				r = fail(err, -errno, dir, NULL, NULL);
				goto out;
			}
			next = export_open_made(fd, comp);
			if (next >= 0 && fchmod(next, 0755) < 0) {
				r = fail(err, -errno, dir, NULL, NULL);
				close(next);
				goto out;
			}
		} else if (next < 0) {
			struct stat sb;

			next = -errno;
			if ((next == -ELOOP || next == -ENOTDIR) &&
			    fstatat(fd, comp, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode))
				next = -ELOOP;
		}
		if (next < 0) {
			char why[NAME_MAX + 64];

			if (next == -ELOOP)
				snprintf(why, sizeof(why),
				         "%s is a symbolic link; condafs follows none here", comp);
			else
				snprintf(why, sizeof(why), "%s: %s", comp,
				         next == -EXDEV ? "not the directory made here (replaced)"
				                        : strerror(-next));
			r = fail(err, next, dir, NULL, why);
			goto out;
		}
		close(fd);
		fd = next;
	}
out:
	free(copy);
	if (r && fd >= 0)
		close(fd);
	return r ? r : fd;
}

/* Whether name in dfd is a regular file holding exactly data: 1, 0 (other bytes, another
 * kind of file), -ENOENT when there is none, another -errno when it cannot be read. */
static int holds(int dfd, const char *name, const char *data, size_t len)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	char *buf = NULL;
	struct stat sb;
	size_t got = 0;
	int r;

	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		/* A symlink (ELOOP) or something that cannot be opened is not these bytes. */
		return fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
	}
	if (fstat(fd, &sb) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != len) {
		r = 0;
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	r = got == len && memcmp(buf, data, len) == 0;
out:
	free(buf);
	close(fd);
	return r;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int destfile_write(const char *dir, const char *name, const char *data, size_t len, bool force,
                   enum destfile_result *ret, struct cfs_err *err)
{
	char tmp[NAME_MAX + 1];
	int dfd, fd = -1, r, had;

	dfd = open_dir(dir, err);
	if (dfd < 0)
		return dfd;
	had = holds(dfd, name, data, len);
	if (had == 1) {
		*ret = DESTFILE_SAME;
		r = 0;
		goto out;
	}
	if (had < 0 && had != -ENOENT) {
		r = fail(err, had, dir, name, NULL);
		goto out;
	}
	if (had == 0 && !force) {
		r = fail(err, -EEXIST, dir, name, "exists and differs (--force replaces it)");
		goto out;
	}
	for (unsigned i = 0;; i++) {
		snprintf(tmp, sizeof(tmp), ".%.200s.%ld.%u", name, (long)getpid(), i);
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd >= 0 || errno != EEXIST || i == 100)
			break;
	}
	if (fd < 0) {
		r = fail(err, -errno, dir, name, NULL);
		goto out;
	}
	r = fchmod(fd, 0644) < 0 ? -errno : write_all(fd, data, len);
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	if (!r && renameat(dfd, tmp, dfd, name) < 0)
		r = -errno;
	if (r) {
		unlinkat(dfd, tmp, 0);
		fail(err, r, dir, name, r == -EISDIR ? "is a directory" : NULL);
		goto out;
	}
	/* The rename is what makes the file appear: it lasts once the directory is synced. */
	if (fsync(dfd) < 0) {
		r = fail(err, -errno, dir, NULL, NULL);
		goto out;
	}
	*ret = had == 0 ? DESTFILE_REPLACED : DESTFILE_NEW;
out:
	close(dfd);
	return r;
}
