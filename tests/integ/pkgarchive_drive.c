// SPDX-License-Identifier: MIT
/*
 * pkgarchive_drive: store/conda/pkgarchive.c from the command line, for store_pkgarchive.py.
 *
 *     pkgarchive_drive verify ARCHIVE SHA256|- MD5|-
 *     pkgarchive_drive unpack ARCHIVE DATA
 *
 * DATA must not exist, and is made. unpack prints each entry, in path
 * order, as "TYPE MODE MTIME_NS SIZE OFF<tab>PATH<tab>TARGET" (TYPE f, l or d; MODE in
 * octal; OFF where a file's bytes are in DATA). Exit 0, or 1 with the module's error line
 * on stderr.
 */
#include "pkgarchive.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void list(const struct pkgarchive_entry *e)
{
	printf("%c %o %" PRId64 " %" PRIu64 " %" PRIu64 "\t%s\t%s\n",
	       e->type == NODE_FILE      ? 'f'
	       : e->type == NODE_SYMLINK ? 'l'
	                                 : 'd',
	       (unsigned)e->mode, e->mtime_ns, e->size, e->off, e->path,
	       e->target ? e->target : "");
}

/* Every entry, in path order: the paths come from the archive's own listing. */
static int unpack(int fd, const char *archive, const char *data, struct cfs_err *err)
{
	struct pkgarchive_files *f = NULL;
	int dfd = open(data, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int r;

	if (dfd < 0) {
		snprintf(err->msg, sizeof(err->msg), "%s: %s", data, strerror(errno));
		return -1;
	}
	r = pkgarchive_unpack(fd, archive, dfd, archive, &f, err);
	close(dfd);
	if (r < 0)
		return r;
	for (size_t i = 0; i < pkgarchive_files_count(f); i++)
		list(pkgarchive_files_entry(f, i));
	pkgarchive_files_free(f);
	return 0;
}

int main(int argc, char **argv)
{
	struct cfs_err err = {{0}};
	int fd, r;

	if (argc != 5 && !(argc == 4 && strcmp(argv[1], "unpack") == 0)) {
		fprintf(stderr, "usage: pkgarchive_drive verify ARCHIVE SHA256|- MD5|-\n"
		                "       pkgarchive_drive unpack ARCHIVE DATA\n");
		return 2;
	}
	fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (strcmp(argv[1], "verify") == 0) {
		r = pkgarchive_verify(fd, strcmp(argv[3], "-") ? argv[3] : NULL,
		                      strcmp(argv[4], "-") ? argv[4] : NULL, argv[2], NULL, &err);
	} else if (strcmp(argv[1], "unpack") == 0) {
		r = unpack(fd, argv[2], argv[3], &err);
	} else {
		fprintf(stderr, "pkgarchive_drive: unknown command %s\n", argv[1]);
		close(fd);
		return 2;
	}
	if (r < 0)
		fprintf(stderr, "pkgarchive_drive: %s\n", err.msg);
	close(fd);
	return r < 0 ? 1 : 0;
}
