/* SPDX-License-Identifier: MIT */
/*
 * Python written out to run, not to serve (install.c's .pyc compiler): the interpreter,
 * its shared libraries, its extension modules and os.py (the landmark CPython finds its
 * prefix by) as files; the rest of its standard library's modules as the zip CPython puts
 * first on sys.path, lib/pythonXY.zip, with each module's shipped pyc beside it as
 * zipimport looks for one; the rest (headers, manuals, site-packages, data files) not at
 * all. One zip where the package has some 1,600 files: each file made costs a directory
 * entry and an inode, the zip one.
 */
#ifndef CONDAFS_PYZIP_H
#define CONDAFS_PYZIP_H

#include "condafs/nodetype.h"

#include <stddef.h>
#include <stdint.h>

enum pyzip_how {
	PYZIP_FILE, /* written as a file at its path */
	PYZIP_ZIP,  /* a member of the zip, under the name pyzip_how gives */
	PYZIP_SKIP, /* not needed to run */
};

struct pyzip;

/* The zip, lib/pythonXY.zip beneath dfd (lib/ made 0755), for python pyver ("3.11"):
 * -EINVAL for a version that is not MAJOR.MINOR, else 0 or -errno. */
int pyzip_open(int dfd, const char *pyver, struct pyzip **ret);
/* Where the package's path (of type) goes; for PYZIP_ZIP its name in the zip, in
 * name[size]. */
enum pyzip_how pyzip_how(const struct pyzip *z, const char *path, enum node_type type, char *name,
                         size_t size);
/* A member of size bytes (then given by pyzip_write) and mtime. -EIO with libarchive's
 * message in pyzip_error. */
int pyzip_add(struct pyzip *z, const char *name, uint64_t size, int64_t mtime_ns);
int pyzip_write(struct pyzip *z, const void *buf, size_t n);
const char *pyzip_error(const struct pyzip *z);
/* Finish the zip (its directory written, the file closed) and free z: 0 or -EIO. With
 * z NULL, 0. */
int pyzip_close(struct pyzip *z);
/* Free z after a failure: what was written stays with the install's directory (N3). */
void pyzip_abort(struct pyzip *z);

#endif
