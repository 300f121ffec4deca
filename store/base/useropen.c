// SPDX-License-Identifier: MIT
/*
 * Opening what users own, as root: fs credentials taken per thread, paths resolved under a
 * prefix with no symbolic link followed, and paths an administrator names looked up with
 * the credentials of whoever owns each directory on the way. See useropen.h.
 */
#include "useropen.h"

#include "err.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The group of a uid the user database does not know: the kernel's overflow group. */
#define UNKNOWN_GID ((gid_t)65534)

/* Our own groups, to put back after a user's. */
static int own_groups(struct fscreds *c)
{
	int n = getgroups(0, NULL);

	if (n < 0)
		return neg_errno();
	c->own = malloc(((size_t)n + 1) * sizeof(*c->own));
	if (!c->own)
		return -ENOMEM;
	n = getgroups(n, c->own);
	if (n < 0)
		return neg_errno();
	c->nown = (size_t)n;
	return 0;
}

/* uid's primary group and groups from the user database; -ENOENT if it has no entry. */
static int user_groups(struct fscreds *c, uid_t uid)
{
	struct passwd pw, *found = NULL;
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 16384;
	char *buf = NULL;
	int n = 32, r;

	for (;;) {
		char *b = realloc(buf, size);

		if (!b) {
			r = -ENOMEM;
			goto out;
		}
		buf = b;
		r = getpwuid_r(uid, &pw, buf, size, &found);
		if (r != ERANGE || size > (1u << 24))
			break;
		size *= 2;
	}
	if (r) {
		r = -r;
		goto out;
	}
	if (!found) {
		r = -ENOENT;
		goto out;
	}
	c->gid = pw.pw_gid;
	for (;;) {
		int got = n;
		gid_t *g = realloc(c->groups, (size_t)n * sizeof(*g));

		if (!g) {
			r = -ENOMEM;
			goto out;
		}
		c->groups = g;
		if (getgrouplist(pw.pw_name, pw.pw_gid, c->groups, &got) >= 0) {
			c->ngroups = (size_t)got;
			break;
		}
		if (got <= n || got > NGROUPS_MAX) {
			r = -E2BIG;
			goto out;
		}
		n = got;
	}
	r = 0;
out:
	free(buf);
	return r;
}

int fscreds_init(struct fscreds *c, uid_t uid)
{
	int r;

	memset(c, 0, sizeof(*c));
	c->uid = uid;
	c->gid = UNKNOWN_GID;
	if (geteuid() != 0 || uid == 0)
		return 0;
	c->active = true;
	r = own_groups(c);
	if (r)
		return r;
	r = user_groups(c, uid);
	if (r == -ENOENT) {
		c->gid = UNKNOWN_GID;
		c->ngroups = 0;
		r = 0;
	}
	return r;
}

void fscreds_release(struct fscreds *c)
{
	free(c->groups);
	free(c->own);
	c->groups = c->own = NULL;
}

/* setfsuid and setfsgid return the old value whether they worked or not; asking again with
 * an invalid id (which changes nothing) says what the thread has now. */
static bool fsuid_is(uid_t uid)
{
	return (uid_t)setfsuid((uid_t)-1) == uid;
}

static bool fsgid_is(gid_t gid)
{
	return (gid_t)setfsgid((gid_t)-1) == gid;
}

int fscreds_leave(const struct fscreds *c)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();

	if (!c->active)
		return 0;
	setfsuid(uid);
	setfsgid(gid);
	if (syscall(SYS_setgroups, c->nown, c->own) < 0)
		return neg_errno();
	return fsuid_is(uid) && fsgid_is(gid) ? 0 : -EPERM;
}

int fscreds_enter(const struct fscreds *c)
{
	int r = 0;

	if (!c->active)
		return 0;
	/* Groups and group first: changing fsuid away from 0 drops the capabilities that
	 * override file permissions, not the one setgroups needs, but this order does not
	 * depend on that. */
	if (syscall(SYS_setgroups, c->ngroups, c->groups) < 0)
		r = neg_errno();
	if (!r) {
		setfsgid(c->gid);
		r = fsgid_is(c->gid) ? 0 : -EPERM;
	}
	if (!r) {
		setfsuid(c->uid);
		r = fsuid_is(c->uid) ? 0 : -EPERM;
	}
	if (r)
		fscreds_leave(c);
	return r;
}

/* ---- under a prefix ---- */

static atomic_bool no_openat2;

static bool is_symlink(int dfd, const char *name)
{
	struct stat sb;

	return fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode);
}

/* open_beneath without openat2: each directory on the way opened O_NOFOLLOW. Names are
 * what readdir gave, so "." and ".." (which could climb out) are refused. */
static int open_components(int dirfd, const char *rel, int flags)
{
	char *copy = strdup(rel), *save = NULL, *comp, *next;
	int dfd = dirfd, fd, r;

	if (!copy)
		return -ENOMEM;
	comp = strtok_r(copy, "/", &save);
	if (!comp) {
		fd = openat(dirfd, ".", flags | USEROPEN_FLAGS);
		r = fd < 0 ? neg_errno() : fd;
		goto out;
	}
	for (;;) {
		next = strtok_r(NULL, "/", &save);
		if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
			r = -EXDEV;
			break;
		}
		if (!next) {
			fd = openat(dfd, comp, flags | USEROPEN_FLAGS);
			r = fd < 0 ? neg_errno() : fd;
			if (r == -ENOTDIR && (flags & O_DIRECTORY) && is_symlink(dfd, comp))
				r = -ELOOP;
			break;
		}
		fd = openat(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = neg_errno();
			if (r == -ENOTDIR && is_symlink(dfd, comp))
				r = -ELOOP;
			break;
		}
		if (dfd != dirfd)
			close(dfd);
		dfd = fd;
		comp = next;
	}
	if (dfd != dirfd)
		close(dfd);
out:
	free(copy);
	return r;
}

static long openat2_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
	        .flags = (uint64_t)flags,
	        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};

	return syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
}

/* O_DIRECTORY | O_NOFOLLOW on a symbolic link says ENOTDIR; it is a link all the same. */
static bool final_is_symlink(int dirfd, const char *rel)
{
	long fd = openat2_beneath(dirfd, rel, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	bool link;

	if (fd < 0)
		return false;
	link = fstat((int)fd, &sb) == 0 && S_ISLNK(sb.st_mode);
	close((int)fd);
	return link;
}

int open_beneath(int dirfd, const char *rel, int flags)
{
	if (!*rel)
		rel = ".";
	if (strlen(rel) < PATH_MAX && !atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
		long fd = openat2_beneath(dirfd, rel, flags | USEROPEN_FLAGS);

		if (fd >= 0)
			return (int)fd;
		if (errno == ENOTDIR && (flags & O_DIRECTORY) && final_is_symlink(dirfd, rel))
			return -ELOOP;
		if (errno != ENOSYS)
			return neg_errno();
		atomic_store_explicit(&no_openat2, true, memory_order_relaxed);
	}
	return strcmp(rel, ".") == 0 ? open_components(dirfd, "", flags)
	                             : open_components(dirfd, rel, flags);
}

const char *beneath_strerror(int r)
{
	if (r == -ELOOP)
		return "it is or passes through a symbolic link, and none is followed inside a "
		       "prefix";
	return strerror(-r);
}

/* ---- paths someone named ---- */

/* openat(dfd, name, flags) with uid's credentials (*c keeps the last uid's, *have says
 * whether it holds any). */
static int openat_as(struct fscreds *c, bool *have, uid_t uid, int dfd, const char *name, int flags)
{
	int r, fd, left;

	if (!*have || c->uid != uid) {
		fscreds_release(c);
		*have = false;
		r = fscreds_init(c, uid);
		if (r)
			return r;
		*have = true;
	}
	r = fscreds_enter(c);
	if (r)
		return r;
	fd = openat(dfd, name, flags);
	r = fd < 0 ? neg_errno() : fd;
	left = fscreds_leave(c);
	if (r >= 0 && left) {
		close(fd);
		r = left;
	}
	return r;
}

/*
 * Component name of the directory dfd, opened with flags: the name is looked up with the
 * credentials of the directory's owner, and a symbolic link found there is followed with
 * those of the link's owner, who chose where it leads (in a directory others may write
 * to, such as /tmp, that is not the directory's owner).
 */
static int open_component(struct fscreds *c, bool *have, int dfd, const char *name, int flags)
{
	char target[PATH_MAX];
	struct stat sb;
	ssize_t n;
	int fd, first, r;

	if (fstat(dfd, &sb) < 0)
		return neg_errno();
	first = openat_as(c, have, sb.st_uid, dfd, name, flags | O_NOFOLLOW);
	if (first != -ELOOP && first != -ENOTDIR)
		return first;
	/* Perhaps a link: the link itself, then its target as its owner. The target is read
	 * from this very link, so the owner and the text go together. */
	fd = openat_as(c, have, sb.st_uid, dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return first;
	r = fstat(fd, &sb) < 0 ? neg_errno() : S_ISLNK(sb.st_mode) ? 0 : first;
	if (!r) {
		n = readlinkat(fd, "", target, sizeof(target) - 1);
		r = n < 0 ? neg_errno() : 0;
		if (!r)
			target[n] = '\0';
	}
	close(fd);
	return r ? r : openat_as(c, have, sb.st_uid, dfd, target, flags);
}

int open_named(const char *path, int flags)
{
	struct fscreds c = {0};
	bool have = false;
	char *copy, *save = NULL, *comp, *next;
	int dfd, fd, r;

	if (!*path)
		return -ENOENT;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	dfd = open(*path == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		r = neg_errno();
		goto out;
	}
	comp = strtok_r(copy, "/", &save);
	if (!comp)
		comp = ".";
	for (;;) {
		next = strtok_r(NULL, "/", &save);
		fd = open_component(&c, &have, dfd, comp,
		                    next ? O_PATH | O_DIRECTORY | O_CLOEXEC
		                         : flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		close(dfd);
		dfd = -1;
		if (fd < 0 || !next) {
			r = fd;
			break;
		}
		dfd = fd;
		comp = next;
	}
out:
	if (dfd >= 0)
		close(dfd);
	fscreds_release(&c);
	free(copy);
	return r;
}
