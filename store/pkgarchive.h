/* SPDX-License-Identifier: MIT */
/*
 * Conda package archives: checking one against the digest its lock records, and extracting
 * it as conda's package cache holds a package (info/ and the payload side by side), with
 * nothing written outside the target directory whatever the archive holds.
 */
#ifndef CONDAFS_PKGARCHIVE_H
#define CONDAFS_PKGARCHIVE_H

#include "condafs/store.h"

#include <stdint.h>

/*
 * The digest of the archive open at fd (read with pread from offset 0 to EOF) checked
 * against the lock's: sha256 when given (64 hex digits, either case), else md5 (32); NULL
 * or "" is not given. what names the archive in messages. 0; -EBADMSG on a mismatch ("<what>:
 * sha256 mismatch: the lock says X, the archive is Y", md5 likewise); -EINVAL when neither
 * is given or one is not hex of its length; -errno when the archive cannot be read. On
 * success *ret (may be NULL) holds both digests and the size, as conda's records name them.
 */
struct pkgarchive_digests {
	char sha256[65], md5[33]; /* lowercase hex */
	uint64_t size;
};

int pkgarchive_verify(int fd, const char *sha256, const char *md5, const char *what,
                      struct pkgarchive_digests *ret, struct cfs_err *err);

/*
 * Extract the verified archive open at fd (read with pread from offset 0; its format from
 * name: "*.conda", a zip of metadata.json, info-*.tar.zst and pkg-*.tar.zst, or "*.tar.bz2")
 * into the empty directory open at dir_fd.
 *
 * Regular files, directories and symbolic links only, and a tar hard link to an earlier
 * regular file of the same archive; permission bits (0777: set-id and sticky bits are
 * dropped) and mtimes (to the ns when the archive has them) as in the archive. Directories
 * the archive does not list are made 0755. Every path is relative, has no "." or ".."
 * component, is named once, and is reached from dir_fd through directories only (each
 * component opened O_NOFOLLOW). Symbolic link targets are written as they are. A .conda
 * whose zip holds other members, or lacks one, is refused.
 *
 * 0; -EINVAL "<what>: <path in archive>: <reason>" for what a package may not hold;
 * -EBADMSG "<what>: corrupt archive: <libarchive's message>" for a corrupt or truncated
 * archive; -errno when writing fails. Nothing is removed on failure: the caller removes
 * what dir_fd holds. Nothing is synced. Several threads may extract at once (each call has
 * its own readers, and the locale it reads paths in is its thread's alone).
 */
int pkgarchive_extract(int fd, const char *name, int dir_fd, const char *what, struct cfs_err *err);

#endif
