// SPDX-License-Identifier: MIT
/*
 * Seeds for fuzz_object, made at build time by the store's own writer so they follow the
 * image format wherever it goes: an empty content, a small text, three frames of text, a
 * sparse content with a hole frame, and incompressible bytes (a raw frame). Usage:
 * mkseed-object OUTDIR NAME... (one image per name, in the order above).
 */
#include "object.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "mkseed-object: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void copy_image(int store_fd, const struct objkey *key, const char *to)
{
	char path[48], buf[65536];
	int in, out;
	ssize_t n;

	objkey_path(key, path);
	in = openat(store_fd, path, O_RDONLY | O_CLOEXEC);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (in < 0 || out < 0)
		die(to);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			die(to);
	if (n < 0)
		die(to);
	close(in);
	close(out);
}

int main(int argc, char **argv)
{
	static const uint64_t hole[][2] = {{0, 4096},
	                                   {3 * OBJECT_FRAME_SIZE, 3 * OBJECT_FRAME_SIZE + 100}};
	char dir[] = "/tmp/condafs-mkseed-XXXXXX", tmp_name[64], name[16];
	struct object_writer *w = NULL;
	struct cfs_err err = {{0}};
	/* The sparse content reads its data extents from text too: text covers all of it. */
	size_t big = 3 * OBJECT_FRAME_SIZE + 4096;
	uint8_t *text = malloc(big), *noise = malloc(65536);
	uint64_t x = 0x9e3779b97f4a7c15u, stored;
	int store_fd, tmp_fd;

	if (argc != 7 || !text || !noise || !mkdtemp(dir))
		die("usage: mkseed-object OUTDIR EMPTY TEXT FRAMES HOLE RAW");
	for (size_t i = 0; i < big; i++)
		text[i] = (uint8_t) "condafs stores each file once.\n"[i % 31];
	for (size_t i = 0; i < 65536; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		noise[i] = (uint8_t)x;
	}
	const struct object_src src[] = {
	        {.data = text, .len = 0},
	        {.data = text, .len = 200},
	        {.data = text, .len = 3 * OBJECT_FRAME_SIZE - 1000},
	        {.data = text, .len = 3 * OBJECT_FRAME_SIZE + 100, .extents = hole, .nextents = 2},
	        {.data = noise, .len = 65536},
	};
	store_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (store_fd < 0 || mkdirat(store_fd, "objects", 0700) < 0)
		die(dir);
	for (int i = 0; i < 256; i++) {
		snprintf(name, sizeof(name), "objects/%02x", i);
		if (mkdirat(store_fd, name, 0700) < 0)
			die(name);
	}
	if (object_tmp_open(store_fd, &tmp_fd, tmp_name, &err) ||
	    object_writer_new(store_fd, tmp_fd, &w))
		die(err.msg);
	for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++) {
		struct objkey key;
		char *to;

		object_hash(&src[i], &key);
		if (object_write(w, &key, &src[i], &stored, &err) || object_publish(w, false, &err))
			die(err.msg);
		if (asprintf(&to, "%s/%s", argv[1], argv[2 + i]) < 0)
			die("asprintf");
		copy_image(store_fd, &key, to);
		free(to);
	}
	object_writer_free(w);
	object_tmp_close(store_fd, tmp_fd, tmp_name);
	close(store_fd);
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	free(text);
	free(noise);
	return 0;
}
