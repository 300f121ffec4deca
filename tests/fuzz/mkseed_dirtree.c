// SPDX-License-Identifier: MIT
/*
 * Seeds for fuzz_dirtree, made at build time by the store's own builder so they follow
 * docs/tree-format.md wherever it goes: an empty directory, and one with a file (a group),
 * a relocated file, a subdirectory and a symbolic link. Usage: mkseed-dirtree OUTDIR NAME
 * NAME (one object per name, in that order).
 */
#include "dirtree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int write_file(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
	char path[4096];
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		return -EIO;
	return 0;
}

static int seed(const char *dir, const char *name, const struct dirtree_entry *v, size_t n)
{
	struct cfs_err err = {{0}};
	struct dirtree_builder *b;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = dirtree_builder_new(&b);

	for (size_t i = 0; !r && i < n; i++)
		r = dirtree_add(b, &v[i], &err);
	if (!r)
		r = dirtree_builder_finish(b, &buf, &len, &err);
	dirtree_builder_free(b);
	if (!r)
		r = write_file(dir, name, buf, len);
	free(buf);
	if (r)
		fprintf(stderr, "mkseed-dirtree: %s: %s\n", name,
		        err.msg[0] ? err.msg : strerror(-r));
	return r;
}

int main(int argc, char **argv)
{
	static const uint8_t rec[] = {2, 0, 1, 9};
	struct dirtree_entry v[4] = {
	        {.type = NODE_FILE,
	         .mode = 0644,
	         .mtime_ns = 1700000000000000000,
	         .name = (const uint8_t *)"numpy.py",
	         .namelen = 8,
	         .size = 4096,
	         .group = 12},
	        {.type = NODE_FILE,
	         .mode = 0755,
	         .mtime_ns = 1700000000000000001,
	         .name = (const uint8_t *)"pip",
	         .namelen = 3,
	         .size = 230,
	         .inserts = 1,
	         .reloc = rec,
	         .reloc_len = sizeof(rec)},
	        {.type = NODE_DIR,
	         .mode = 0755,
	         .mtime_ns = 1,
	         .name = (const uint8_t *)"site-packages",
	         .namelen = 13},
	        {.type = NODE_SYMLINK,
	         .mode = 0777,
	         .mtime_ns = -1,
	         .name = (const uint8_t *)"python3",
	         .namelen = 7,
	         .target = (const uint8_t *)"python3.11",
	         .target_len = 10},
	};

	if (argc != 4) {
		fprintf(stderr, "usage: mkseed-dirtree OUTDIR EMPTY FULL\n");
		return 2;
	}
	for (size_t i = 0; i < 4; i++)
		memset(v[i].key.b, (int)(0x11 * (i + 1)), 16);
	return seed(argv[1], argv[2], NULL, 0) || seed(argv[1], argv[3], v, 4) ? 1 : 0;
}
