// SPDX-License-Identifier: MIT
/*
 * store_objdump STORE: write the content of every object image under STORE/objects to
 * stdout, decoded by the store's own reader (object.c), so that a test can search what the
 * store holds whatever the images' compression. Exit 1 naming an image that does not
 * decode.
 */
#include "object.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define CHUNK (1u << 20)

static int dump(int dir_fd, const char *sub, const char *name, ZSTD_DCtx *dctx, uint8_t *buf)
{
	struct cfs_err err = {{0}};
	struct object *o = NULL;
	struct objkey key;
	char hex[33];
	size_t got;
	int fd, r;

	snprintf(hex, sizeof(hex), "%s%s", sub, name);
	if (objkey_parse(hex, &key) < 0)
		return 0;
	fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(name);
		return -1;
	}
	r = object_open_fd(fd, &key, &o, &err);
	for (uint64_t off = 0; !r && off < object_size(o); off += got) {
		r = object_read(o, dctx, off, CHUNK, buf, &got, &err);
		if (!r && fwrite(buf, 1, got, stdout) != got)
			r = -1;
	}
	if (r)
		fprintf(stderr, "store_objdump: %s: %s\n", hex, err.msg);
	object_close(o);
	return r;
}

int main(int argc, char **argv)
{
	ZSTD_DCtx *dctx;
	uint8_t *buf;
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: store_objdump STORE\n");
		return 2;
	}
	dctx = ZSTD_createDCtx();
	buf = malloc(CHUNK);
	if (!dctx || !buf) {
		ZSTD_freeDCtx(dctx);
		free(buf);
		return 1;
	}
	for (int i = 0; i < 256; i++) {
		char dir[4096], sub[3];
		struct dirent *de;
		DIR *d;

		snprintf(sub, sizeof(sub), "%02x", i);
		snprintf(dir, sizeof(dir), "%s/objects/%s", argv[1], sub);
		d = opendir(dir);
		if (!d)
			continue;
		while ((de = readdir(d)))
			if (strlen(de->d_name) == 30 && dump(dirfd(d), sub, de->d_name, dctx, buf))
				rc = 1;
		closedir(d);
	}
	ZSTD_freeDCtx(dctx);
	free(buf);
	return rc;
}
