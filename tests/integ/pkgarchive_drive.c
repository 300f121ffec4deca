// SPDX-License-Identifier: MIT
/*
 * pkgarchive_drive: store/pkgarchive.c from the command line, for store_pkgarchive.py.
 *
 *     pkgarchive_drive verify ARCHIVE SHA256|- MD5|-
 *     pkgarchive_drive extract ARCHIVE DIR
 *
 * DIR must exist (empty). Exit 0, or 1 with the module's error line on stderr.
 */
#include "pkgarchive.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct cfs_err err = {{0}};
	int fd, dfd = -1, r;

	if (argc != 5 && !(argc == 4 && strcmp(argv[1], "extract") == 0)) {
		fprintf(stderr, "usage: pkgarchive_drive verify ARCHIVE SHA256|- MD5|-\n"
		                "       pkgarchive_drive extract ARCHIVE DIR\n");
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
	} else if (strcmp(argv[1], "extract") == 0) {
		dfd = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			perror(argv[3]);
			close(fd);
			return 1;
		}
		r = pkgarchive_extract(fd, argv[2], dfd, argv[2], &err);
	} else {
		fprintf(stderr, "pkgarchive_drive: unknown command %s\n", argv[1]);
		close(fd);
		return 2;
	}
	if (r < 0)
		fprintf(stderr, "pkgarchive_drive: %s\n", err.msg);
	if (dfd >= 0)
		close(dfd);
	close(fd);
	return r < 0 ? 1 : 0;
}
