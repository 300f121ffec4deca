// SPDX-License-Identifier: MIT
/*
 * Temporary files for the harnesses whose parser reads a path (lock files, conda-meta
 * records, METADATA): one directory per process, removed at exit.
 */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir;

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tmpdir(void)
{
	if (tmpdir)
		nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "fuzz: %s %s: %s\n", what, path, strerror(errno));
	abort();
}

const char *fuzz_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (tmpdir)
		return tmpdir;
	if (asprintf(&tmpdir, "%s/condafs-fuzz-XXXXXX", base && *base ? base : "/tmp") < 0)
		die("asprintf", "");
	if (!mkdtemp(tmpdir))
		die("mkdtemp", tmpdir);
	atexit(remove_tmpdir);
	return tmpdir;
}

char *fuzz_write(const char *dir, const char *rel, const uint8_t *data, size_t size)
{
	char *path;
	int fd;

	if (asprintf(&path, "%s/%s", dir, rel) < 0)
		die("asprintf", rel);
	for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			die("mkdir", path);
		*s = '/';
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("open", path);
	for (size_t done = 0; done < size;) {
		ssize_t n = write(fd, data + done, size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write", path);
		done += (size_t)n;
	}
	close(fd);
	return path;
}
