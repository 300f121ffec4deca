/* SPDX-License-Identifier: MIT */
/*
 * Reading a whole small file (a lock file, a conda-meta record, a METADATA file) into
 * memory in one go, with a size cap so a wrong path to a huge file fails cleanly.
 */
#ifndef CONDAFS_TEXTFILE_H
#define CONDAFS_TEXTFILE_H

#include "condafs/err.h"

#include <stddef.h>

/*
 * Read the regular file path into *ret, NUL-terminated, *ret_len bytes without the NUL;
 * the caller frees *ret. With dirfd AT_FDCWD, path is one someone named (open_named: each
 * directory on the way looked up as its owner); else path is under dirfd, a directory of
 * a prefix, and no symbolic link on the way is followed (open_beneath: -ELOOP). Opens
 * with the calling thread's fs credentials and never blocks. display names the file in
 * messages. -EFBIG when it is larger than max bytes, -EINVAL when it is not a regular
 * file, else the errno of open/read.
 */
int textfile_read(int dirfd, const char *path, const char *display, size_t max, char **ret,
                  size_t *ret_len, struct cfs_err *err);

#endif
