/* SPDX-License-Identifier: MIT */
/*
 * Conda package archives: checking one against the digest its lock records, and unpacking
 * it (info/ and the payload, as conda's package cache holds a package) into one data file
 * and an index of its paths, whatever the archive holds.
 */
#ifndef CONDAFS_PKGARCHIVE_H
#define CONDAFS_PKGARCHIVE_H

#include "condafs/conda.h"
#include "condafs/nodetype.h"

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
 * The verified archive open at fd (read with pread from offset 0; its format from name:
 * "*.conda", a zip of metadata.json, info-*.tar.zst and pkg-*.tar.zst, or "*.tar.bz2"),
 * unpacked into one data file instead of a directory: the paths extraction would make,
 * each with what lstat and readlink would say of it there, and every regular file's
 * bytes at an offset in the data file. A file per package rather than one per path (and
 * none to remove after) is most of what unpacking saves over extracting.
 *
 * Regular files, directories and symbolic links only, and a tar hard link to an earlier
 * regular file of the same archive (it shares that file's bytes, mode and mtime);
 * permission bits (0777: set-id and sticky bits are dropped) and mtimes (to the ns when
 * the archive has them) as in the archive. Directories the archive does not list are
 * 0755; an entry without an mtime has the time of the call, as an extracted one would.
 * Every path is relative, has no "." or ".." component, is named once, and lies beneath
 * no symbolic link or regular file of the archive. Symbolic link targets are kept as
 * they are (at most 4095 bytes). A .conda whose zip holds other members, or lacks one, is
 * refused. data_fd is an empty file the caller made, written with pwrite; *ret owns a
 * duplicate of it.
 *
 * 0; -EINVAL "<what>: <path in archive>: <reason>" for what a package may not hold;
 * -EBADMSG "<what>: corrupt archive: <libarchive's message>" for a corrupt or truncated
 * archive; -errno when writing fails. Nothing is synced. Several threads may unpack at
 * once (each call has its own readers, and the locale it reads paths in is its thread's
 * alone).
 */
struct pkgarchive_files;

struct pkgarchive_entry {
	const char *path; /* as in the archive, no trailing '/' */
	enum node_type type;
	uint32_t mode; /* permission bits: 0777 at most (0777 for a symbolic link) */
	int64_t mtime_ns;
	uint64_t size; /* regular files: their size; symbolic links: the target's length */
	uint64_t off;  /* regular files: where their bytes start in the data file */
	const char *target;
};

int pkgarchive_unpack(int fd, const char *name, int data_fd, const char *what,
                      struct pkgarchive_files **ret, struct cfs_err *err);
/* Its entries, sorted by path bytes. */
size_t pkgarchive_files_count(const struct pkgarchive_files *f);
const struct pkgarchive_entry *pkgarchive_files_entry(const struct pkgarchive_files *f, size_t i);
/* The entry at path, or NULL. */
const struct pkgarchive_entry *pkgarchive_files_find(const struct pkgarchive_files *f,
                                                     const char *path);
/* The data file, which f owns. */
int pkgarchive_files_fd(const struct pkgarchive_files *f);
/* The regular file at path, read whole into *ret (NUL-terminated, *ret_len bytes without
 * the NUL), as textfile_read reads a file of an extracted package: -ENOENT when there is
 * none, -EINVAL when it is not a regular file, -EFBIG over max bytes, else -errno. */
int pkgarchive_files_read(const struct pkgarchive_files *f, const char *path, size_t max,
                          char **ret, size_t *ret_len);
void pkgarchive_files_free(struct pkgarchive_files *f);

#endif
