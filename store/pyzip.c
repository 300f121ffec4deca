// SPDX-License-Identifier: MIT
/*
 * Python written out to run (pyzip.h): which of the package's paths the interpreter needs
 * as files, which go into lib/pythonXY.zip, and the zip itself (libarchive's zip writer,
 * members stored, not compressed: zipimport reads them in place, and the compiler runs
 * once).
 */
#include "pyzip.h"

#include "err.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct pyzip {
	struct archive *a;
	int fd;
	char stdlib[32]; /* "lib/python3.11/" */
	size_t stdlib_len;
	char tag[16]; /* "cpython-311": the shipped pycs this interpreter reads */
	const char *error;
};

int pyzip_open(int dfd, const char *pyver, struct pyzip **ret)
{
	char zname[32], nodot[8];
	unsigned major, minor;
	struct pyzip *z;
	int n = 0, r = 0;

	if (sscanf(pyver, "%u.%u%n", &major, &minor, &n) != 2 || pyver[n] || major > 9 ||
	    minor > 99)
		return -EINVAL;
	snprintf(nodot, sizeof(nodot), "%u%u", major, minor);
	snprintf(zname, sizeof(zname), "lib/python%s.zip", nodot);
	z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	snprintf(z->stdlib, sizeof(z->stdlib), "lib/python%u.%u/", major, minor);
	z->stdlib_len = strlen(z->stdlib);
	snprintf(z->tag, sizeof(z->tag), "cpython-%s", nodot);
	z->fd = -1;
	if (mkdirat(dfd, "lib", 0755) < 0 && errno != EEXIST)
		r = neg_errno();
	if (!r && (z->fd = openat(dfd, zname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	                          0644)) < 0)
		r = neg_errno();
	if (!r && !(z->a = archive_write_new()))
		r = -ENOMEM;
	if (!r && (archive_write_set_format_zip(z->a) != ARCHIVE_OK ||
	           archive_write_zip_set_compression_store(z->a) != ARCHIVE_OK ||
	           archive_write_open_fd(z->a, z->fd) != ARCHIVE_OK))
		r = -EIO;
	if (r) {
		pyzip_abort(z);
		return r;
	}
	*ret = z;
	return 0;
}

/* name = rest with "__pycache__/M.<tag>.pyc" turned into "M.pyc" (where zipimport looks
 * for a module's pyc); false for any other pyc (another interpreter's, an optimised one). */
static bool pyc_name(const struct pyzip *z, const char *rest, char *name, size_t size)
{
	const char *cache = strstr(rest, "__pycache__/");
	const char *file, *dot;
	size_t dir_len, tag_len = strlen(z->tag);

	if (!cache || (cache != rest && cache[-1] != '/'))
		return false;
	dir_len = (size_t)(cache - rest);
	file = cache + strlen("__pycache__/");
	dot = strchr(file, '.');
	if (!dot || strchr(file, '/') || strncmp(dot + 1, z->tag, tag_len) != 0 ||
	    strcmp(dot + 1 + tag_len, ".pyc") != 0)
		return false;
	return (size_t)snprintf(name, size, "%.*s%.*s.pyc", (int)dir_len, rest, (int)(dot - file),
	                        file) < size;
}

enum pyzip_how pyzip_how(const struct pyzip *z, const char *path, enum node_type type, char *name,
                         size_t size)
{
	const char *rest;
	size_t len = strlen(path);

	if (strncmp(path, "bin/", 4) == 0)
		return PYZIP_FILE;
	/* The interpreter's shared libraries (libpythonX.Y.so, when it is built so). */
	if (strncmp(path, "lib/", 4) == 0 && !strchr(path + 4, '/') && strstr(path + 4, ".so"))
		return PYZIP_FILE;
	if (strncmp(path, z->stdlib, z->stdlib_len) != 0)
		return PYZIP_SKIP;
	rest = path + z->stdlib_len;
	if (strncmp(rest, "lib-dynload/", 12) == 0 || strcmp(rest, "os.py") == 0)
		return PYZIP_FILE;
	if (type != NODE_FILE || strncmp(rest, "site-packages/", 14) == 0)
		return PYZIP_SKIP;
	if (len > 3 && strcmp(path + len - 3, ".py") == 0)
		return (size_t)snprintf(name, size, "%s", rest) < size ? PYZIP_ZIP : PYZIP_SKIP;
	if (len > 4 && strcmp(path + len - 4, ".pyc") == 0 && pyc_name(z, rest, name, size))
		return PYZIP_ZIP;
	return PYZIP_SKIP;
}

int pyzip_add(struct pyzip *z, const char *name, uint64_t size, int64_t mtime_ns)
{
	struct archive_entry *e = archive_entry_new();
	int r = 0;

	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, mtime_ns / 1000000000, mtime_ns % 1000000000);
	if (archive_write_header(z->a, e) != ARCHIVE_OK) {
		z->error = archive_error_string(z->a);
		r = -EIO;
	}
	archive_entry_free(e);
	return r;
}

int pyzip_write(struct pyzip *z, const void *buf, size_t n)
{
	if (archive_write_data(z->a, buf, n) != (la_ssize_t)n) {
		z->error = archive_error_string(z->a);
		return -EIO;
	}
	return 0;
}

const char *pyzip_error(const struct pyzip *z)
{
	return z->error ? z->error : "cannot write the zip";
}

int pyzip_close(struct pyzip *z)
{
	int r = 0;

	if (!z)
		return 0;
	if (archive_write_close(z->a) != ARCHIVE_OK)
		r = -EIO;
	archive_write_free(z->a);
	z->a = NULL;
	if (close(z->fd) < 0 && !r)
		r = neg_errno();
	z->fd = -1;
	free(z);
	return r;
}

void pyzip_abort(struct pyzip *z)
{
	if (!z)
		return;
	if (z->a)
		archive_write_free(z->a);
	if (z->fd >= 0)
		close(z->fd);
	free(z);
}
