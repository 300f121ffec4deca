// SPDX-License-Identifier: MIT
/*
 * Seeds for fuzz_pkgrec, made at build time by the store's own builder so they follow
 * docs/package-format.md wherever it goes: the decompressed bytes of an empty record and of
 * one with info files, a file, a relocated file, a directory, a symbolic link, a pyc and a
 * conda-meta record.
 * Usage: mkseed-pkgrec OUTDIR EMPTY FULL.
 */
#include "pkgrec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static int seed(const char *dir, const char *name, bool full)
{
	static const uint8_t rec[] = {2, 0, 1, 9};
	struct cfs_err err = {{0}};
	struct pkgrec_builder *b = NULL;
	uint8_t *z = NULL, *raw = NULL;
	size_t zlen = 0;
	unsigned long long len = 0;
	char path[4096];
	FILE *f;
	int r = pkgrec_builder_new(full ? "5f1c" : NULL, full ? "9e0d" : NULL, full ? 4096 : 0,
	                           full ? "3.11" : NULL, &b);
	struct pkgrec_entry file = {.path = "lib/libz.so.1",
	                            .type = NODE_FILE,
	                            .mode = 0755,
	                            .mtime_ns = 1700000000000000000,
	                            .size = 100,
	                            .neutral_size = 100};

	memset(file.key.b, 0x11, 16);
	if (!r && full) {
		r = pkgrec_add_info(b, "info/index.json", (const uint8_t *)"{\"name\": \"z\"}", 13);
		r = r ? r : pkgrec_add_info(b, "info/paths.json", (const uint8_t *)"{}", 2);
		r = r ? r : pkgrec_add_path(b, &file);
		r = r ? r
		      : pkgrec_add_path(b, &(struct pkgrec_entry){.path = "bin/zcfg",
		                                                  .type = NODE_FILE,
		                                                  .mode = 0755,
		                                                  .size = 90,
		                                                  .neutral_size = 40,
		                                                  .inserts = 2,
		                                                  .reloc = rec,
		                                                  .reloc_len = sizeof(rec)});
		r = r ? r
		      : pkgrec_add_path(b,
		                        &(struct pkgrec_entry){.path = "share", .type = NODE_DIR});
		r = r ? r
		      : pkgrec_add_path(b, &(struct pkgrec_entry){.path = "lib/libz.so",
		                                                  .type = NODE_SYMLINK,
		                                                  .mode = 0777,
		                                                  .target = "libz.so.1"});
		file.path = "lib/python3.11/site-packages/__pycache__/z.cpython-311.pyc";
		r = r ? r : pkgrec_add_pyc(b, &file);
		r = r ? r
		      : pkgrec_set_meta(b, &(struct pkgrec_meta){.url = "https://c.invalid/z.conda",
		                                                 .fn = "z.conda",
		                                                 .channel = "https://c.invalid",
		                                                 .pyver = "3.11",
		                                                 .key = file.key,
		                                                 .size = 77});
	}
	if (!r)
		r = pkgrec_finish(b, &z, &zlen, &err);
	pkgrec_builder_free(b);
	if (!r) {
		len = ZSTD_getFrameContentSize(z, zlen);
		raw = malloc(len ? len : 1);
		if (!raw || ZSTD_decompress(raw, len ? len : 1, z, zlen) != len)
			r = -EIO;
	}
	if (!r && (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		r = -ENAMETOOLONG;
	if (!r) {
		f = fopen(path, "wb");
		if (!f || fwrite(raw, 1, len, f) != len || fclose(f) != 0)
			r = -EIO;
	}
	free(z);
	free(raw);
	if (r)
		fprintf(stderr, "mkseed-pkgrec: %s: %s\n", name,
		        err.msg[0] ? err.msg : strerror(-r));
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: mkseed-pkgrec OUTDIR EMPTY FULL\n");
		return 2;
	}
	return seed(argv[1], argv[2], false) || seed(argv[1], argv[3], true) ? 1 : 0;
}
