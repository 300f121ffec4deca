/* SPDX-License-Identifier: MIT */
/*
 * Writing one small file (a Jupyter kernelspec, a modulefile) where a user asked, as root
 * too: into their home, a shared prefix, /usr/local/share.
 */
#ifndef CONDAFS_DESTFILE_H
#define CONDAFS_DESTFILE_H

#include <condafs/store.h>

#include <stdbool.h>
#include <stddef.h>

enum destfile_result {
	DESTFILE_NEW,      /* there was no such file */
	DESTFILE_SAME,     /* the file held these bytes already: left alone */
	DESTFILE_REPLACED, /* a different file was there (force) */
};

/*
 * Write data as dir/name, mode 0644, atomically (a temporary file renamed over it).
 * dir is made when missing, each directory made 0755 whatever the umask (what it holds
 * is for every user). No symlink is followed at any component of dir, and name itself is
 * replaced, never written through. An existing name holding other bytes is replaced only
 * with force (-EEXIST otherwise); one holding these bytes is left alone.
 */
int destfile_write(const char *dir, const char *name, const char *data, size_t len, bool force,
                   enum destfile_result *ret, struct cfs_err *err);

#endif
