/* SPDX-License-Identifier: MIT */
/*
 * File helpers for unit tests that build their inputs on disk: a private temp directory,
 * writing a file (parents created), and removing the tree again. A failure here is a
 * broken test machine, so it ends the test at once.
 */
#ifndef CONDAFS_TESTFS_H
#define CONDAFS_TESTFS_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void testfs_die(const char *what, const char *path)
{
	fprintf(stderr, "test setup: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

/* A new directory under $TMPDIR (or /tmp); the caller frees the string. */
static inline char *testfs_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char *dir;

	if (asprintf(&dir, "%s/condafs-test-XXXXXX", base && *base ? base : "/tmp") < 0)
		testfs_die("asprintf", "");
	if (!mkdtemp(dir))
		testfs_die("mkdtemp", dir);
	return dir;
}

/* mkdir -p of every parent of path. */
static inline void testfs_parents(const char *path)
{
	char *p = strdup(path);

	if (!p)
		testfs_die("strdup", path);
	for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			testfs_die("mkdir", p);
		*s = '/';
	}
	free(p);
}

/* Write text to dir/name (printf-style name), creating parent directories. */
__attribute__((format(printf, 3, 4))) static inline void
testfs_write(const char *dir, const char *text, const char *fmt, ...)
{
	char *name, *path;
	va_list ap;
	size_t len = strlen(text);
	int fd;

	va_start(ap, fmt);
	if (vasprintf(&name, fmt, ap) < 0)
		testfs_die("vasprintf", fmt);
	va_end(ap);
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		testfs_die("asprintf", name);
	testfs_parents(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		testfs_die("open", path);
	if (write(fd, text, len) != (ssize_t)len)
		testfs_die("write", path);
	close(fd);
	free(path);
	free(name);
}

/* "<dir>/<name>", malloc'd. */
__attribute__((format(printf, 2, 3))) static inline char *testfs_path(const char *dir,
                                                                      const char *fmt, ...)
{
	char *name, *path;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&name, fmt, ap) < 0)
		testfs_die("vasprintf", fmt);
	va_end(ap);
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		testfs_die("asprintf", name);
	free(name);
	return path;
}

static inline int testfs_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void testfs_rmtree(const char *dir)
{
	nftw(dir, testfs_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* $FIXTURES/<rel>; tests/meson.build sets FIXTURES. */
static inline char *testfs_fixture(const char *rel)
{
	const char *root = getenv("FIXTURES");
	char *path;

	if (!root) {
		fprintf(stderr, "FIXTURES is not set (meson test sets it)\n");
		exit(1);
	}
	if (asprintf(&path, "%s/%s", root, rel) < 0)
		testfs_die("asprintf", rel);
	return path;
}

#endif
