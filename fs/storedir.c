// SPDX-License-Identifier: MIT
/*
 * The store directory before the daemon opens it. On a fresh server the daemon starts
 * before anything was ingested: a store that does not exist yet, or an empty directory,
 * becomes an empty store (private to root, 0700, as every store: README, "Security
 * model"), served as an empty root that shows environments as they arrive. A directory
 * holding anything else is left alone: store_open says what is wrong with it.
 */
#include "fsd.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Whether dir holds nothing at all (1), something (0), or cannot be read (-errno). */
static int dir_empty(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int r = 1;

	if (!d)
		return -errno;
	while (r == 1 && (de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			r = 0;
	closedir(d);
	return r;
}

/* dir as 0700, its missing parents as 0755. */
static int mkdir_private(const char *dir)
{
	char *p = strdup(dir);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s && !r; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			r = -errno;
		*s = '/';
	}
	if (!r && mkdir(p, 0700) < 0 && errno != EEXIST)
		r = -errno;
	free(p);
	return r;
}

int storedir_prepare(const char *dir)
{
	struct cfs_err err = {{0}};
	struct store *st = NULL;
	struct stat sb;
	int r;

	if (stat(dir, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode) || dir_empty(dir) <= 0)
			return 0;
		if ((sb.st_mode & 077) && chmod(dir, 0700) < 0) {
			log_msg(LOG_LEVEL_ERR, "%s: cannot make it private: %s", dir,
			        strerror(errno));
			return -1;
		}
	} else if (errno != ENOENT) {
		return 0;
	} else if ((r = mkdir_private(dir))) {
		log_msg(LOG_LEVEL_ERR, "%s: cannot create the store: %s", dir, strerror(-r));
		return -1;
	}
	r = store_open(dir, STORE_CREATE, &st, &err);
	store_close(st);
	if (r) {
		log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
		return -1;
	}
	log_msg(LOG_LEVEL_NOTICE, "%s: created an empty store", dir);
	return 0;
}
