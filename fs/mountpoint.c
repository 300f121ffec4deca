// SPDX-License-Identifier: MIT
/*
 * The mount point before and after mounting: a dead condafs mount left by a killed daemon
 * (statfs gives ENOTCONN) is cleared when we may (root: a lazy unmount) or named with the
 * command that clears it; and the mount's readahead can be raised through sysfs, which
 * FUSE does not let the daemon negotiate above 128 KiB.
 */
#include "fsd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* The last mount at path: its file system type and device (major:minor) numbers. */
static int find_mount(const char *path, char *ret_type, size_t type_size, unsigned *ret_major,
                      unsigned *ret_minor)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		/* id parent major:minor root mountpoint options [optional...] - type source */
		char *save = NULL, *tok, *mnt = NULL, *dash;
		unsigned maj = 0, min = 0;
		int field = 0;

		dash = strstr(line, " - ");
		if (!dash)
			continue;
		*dash = '\0';
		for (tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			if (field == 2 && sscanf(tok, "%u:%u", &maj, &min) != 2)
				break;
			if (field == 4)
				mnt = tok;
			field++;
		}
		if (!mnt)
			continue;
		unescape(mnt);
		if (strcmp(mnt, path) != 0)
			continue;
		tok = strtok_r(dash + 3, " ", &save);
		if (!tok)
			continue;
		snprintf(ret_type, type_size, "%s", tok);
		*ret_major = maj;
		*ret_minor = min;
		r = 0; /* keep going: the last one is on top */
	}
	free(line);
	fclose(f);
	return r;
}

/* path made absolute without touching it (realpath would stat the dead mount). */
static int absolute(const char *path, char *ret, size_t size)
{
	char cwd[PATH_MAX];
	size_t len;

	if (path[0] == '/') {
		snprintf(ret, size, "%s", path);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		snprintf(ret, size, "%s/%s", cwd, path);
	}
	len = strlen(ret);
	while (len > 1 && ret[len - 1] == '/')
		ret[--len] = '\0';
	return 0;
}

int mountpoint_check(const char *path)
{
	char abs[PATH_MAX], type[64];
	unsigned maj, min;
	struct statfs fs;
	struct stat sb;

	/* statfs, not stat: the kernel answers stat on a FUSE root from its cache (our
	 * attributes never expire) even when the daemon is gone; statfs always asks it. */
	if (statfs(path, &fs) == 0 && stat(path, &sb) == 0) {
		if (S_ISDIR(sb.st_mode))
			return 0;
		log_msg(LOG_LEVEL_ERR, "%s: not a directory", path);
		return -ENOTDIR;
	}
	if (errno != ENOTCONN) {
		int r = -errno;

		log_msg(LOG_LEVEL_ERR, "%s: %s", path, strerror(-r));
		return r;
	}
	if (absolute(path, abs, sizeof(abs)) || find_mount(abs, type, sizeof(type), &maj, &min) ||
	    strcmp(type, "fuse.condafs") != 0) {
		log_msg(LOG_LEVEL_ERR,
		        "%s: a dead FUSE mount is in the way (its daemon is gone); clear it with "
		        "`fusermount3 -u %s` (or `umount -l %s` as root)",
		        path, path, path);
		return -ENOTCONN;
	}
	/* Ours: a condafsd was killed. Detach it; processes still inside keep ENOTCONN. */
	if (geteuid() != 0 || umount2(abs, MNT_DETACH) < 0) {
		log_msg(LOG_LEVEL_ERR,
		        "%s: the mount of a killed condafsd is still there and cannot be cleared "
		        "(%s); run `fusermount3 -u %s` (or `umount -l %s` as root)",
		        path, geteuid() ? "not root" : strerror(errno), path, path);
		return -ENOTCONN;
	}
	log_msg(LOG_LEVEL_NOTICE, "%s: cleared the dead mount of a killed condafsd", path);
	if (statfs(path, &fs) < 0 || stat(path, &sb) < 0) {
		int r = -errno;

		log_msg(LOG_LEVEL_ERR, "%s: %s", path, strerror(-r));
		return r;
	}
	return S_ISDIR(sb.st_mode) ? 0 : -ENOTDIR;
}

void mountpoint_raise_readahead(struct fsd *fs)
{
	char type[64], sys[96], val[32];
	unsigned maj = 0, min = 0;
	int fd, r;

	if (!fs->readahead_kb ||
	    atomic_load_explicit(&fs->readahead_raised, memory_order_relaxed) ||
	    atomic_exchange(&fs->readahead_raised, true))
		return;
	/* From mountinfo, not stat: stat of the mount point would ask this very daemon. */
	r = find_mount(fs->mountpoint, type, sizeof(type), &maj, &min);
	if (!r) {
		snprintf(sys, sizeof(sys), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
		snprintf(val, sizeof(val), "%u\n", fs->readahead_kb);
		fd = open(sys, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
		} else {
			errno = 0;
			if (write(fd, val, strlen(val)) != (ssize_t)strlen(val))
				r = errno ? -errno : -EIO;
			close(fd);
		}
	}
	if (r)
		log_msg(LOG_LEVEL_WARNING, "%s: cannot set readahead to %u KiB: %s", fs->mountpoint,
		        fs->readahead_kb, strerror(-r));
}
