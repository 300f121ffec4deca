/* SPDX-License-Identifier: MIT */
/*
 * libcorpushello: the shared library of the corpus-hello package. It holds its
 * data directory as a C string in a NUL-padded slot, like the compiled-in
 * paths conda-build leaves in real libraries; conda rewrites it in binary mode.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "corpus_hello.h"

#ifndef CORPUS_PREFIX
#error "build with -DCORPUS_PREFIX='\"<build prefix>\"'"
#endif

/* Larger than the 255-byte placeholder plus the suffix: the slot keeps its size when rewritten. */
static char datadir[512] = CORPUS_PREFIX "/share/corpus-hello";

const char *corpus_hello_datadir(void)
{
	return datadir;
}

int corpus_hello_print(const char *path)
{
	char buf[4096];
	size_t n;
	int err = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		err = errno;
		goto out_err;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (fwrite(buf, 1, n, stdout) != n) {
			err = errno ? errno : EIO;
			break;
		}
	}
	if (!err && ferror(f))
		err = EIO;
	fclose(f);
	if (!err && fflush(stdout) != 0)
		err = errno ? errno : EIO;
	if (!err)
		return 0;
out_err:
	fprintf(stderr, "corpus-hello-bin: %s: %s\n", path, strerror(err));
	return -err;
}
