// SPDX-License-Identifier: MIT
/*
 * Object images: round trips of every frame kind (zstd, raw, zero, holes), range reads at
 * every frame boundary, inline versus file images, byte-for-byte comparison, and detection
 * of a corrupt or truncated image.
 */
#include "object.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/condafs-test-object-XXXXXX";
static int store_fd;

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void make_store(void)
{
	char name[16];

	CHECK(mkdtemp(dir) != NULL);
	store_fd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(mkdirat(store_fd, "objects", 0755) == 0);
	for (int i = 0; i < 256; i++) {
		snprintf(name, sizeof(name), "objects/%02x", i);
		CHECK(mkdirat(store_fd, name, 0755) == 0);
	}
}

/* Store src, read it back whole and in random ranges, and compare. */
static void round_trip(struct object_writer *w, ZSTD_DCtx *dctx, const struct object_src *src,
		       const uint8_t *expect, bool want_inline)
{
	struct cfs_err err = {{0}};
	struct objkey key;
	struct object *o = NULL;
	uint8_t *blob = NULL, *buf = malloc(src->len + 1);
	uint64_t stored = 0;
	size_t got = 0;
	int r;

	object_hash(src, &key);
	r = object_write(w, store_fd, &key, src, &blob, &stored, &err);
	CHECK(r == 0);
	if (r) {
		fprintf(stderr, "%s\n", err.msg);
		free(buf);
		return;
	}
	CHECK((blob != NULL) == want_inline);
	CHECK(object_open(store_fd, &key, blob, blob ? stored : 0, &o, &err) == 0);
	CHECK(object_size(o) == src->len);
	CHECK(object_read(o, dctx, 0, src->len, buf, &got, &err) == 0);
	CHECK(got == src->len);
	CHECK(memcmp(buf, expect, src->len) == 0);
	for (int i = 0; i < 200 && src->len; i++) {
		uint64_t off = next() % src->len;
		size_t len = (size_t)(next() % (3 * OBJECT_FRAME_SIZE));

		CHECK(object_read(o, dctx, off, len, buf, &got, &err) == 0);
		CHECK(got == (len < src->len - off ? len : src->len - off));
		CHECK(memcmp(buf, expect + off, got) == 0);
	}
	CHECK(object_compare(o, dctx, src, &err) == 0);
	CHECK(object_check(o, dctx, &err) == 0);
	/* Writing the same key again finds the file and compares it. */
	if (!blob) {
		uint8_t *blob2 = NULL;

		CHECK(object_write(w, store_fd, &key, src, &blob2, &stored, &err) == 0);
		CHECK(blob2 == NULL);
	}
	object_close(o);
	free(blob);
	free(buf);
}

static void test_kinds(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 5 * OBJECT_FRAME_SIZE + 1234;
	uint8_t *data = malloc(len);
	struct object_src src = {data, len, NULL, 0};

	/* text-like frame, random (raw) frame, zero frame, text again, random tail */
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)("condafs stores conda environments\n"[i % 34]);
	for (size_t i = OBJECT_FRAME_SIZE; i < 2 * OBJECT_FRAME_SIZE; i++)
		data[i] = (uint8_t)next();
	memset(data + 2 * OBJECT_FRAME_SIZE, 0, OBJECT_FRAME_SIZE);
	for (size_t i = 4 * OBJECT_FRAME_SIZE; i < len; i++)
		data[i] = (uint8_t)next();
	round_trip(w, dctx, &src, data, false);

	/* small contents are inline, empty too */
	src.len = 100;
	round_trip(w, dctx, &src, data, true);
	src.len = 0;
	round_trip(w, dctx, &src, data, true);
	/* a small incompressible content is too big to inline */
	src.data = data + OBJECT_FRAME_SIZE;
	src.len = 8000;
	round_trip(w, dctx, &src, data + OBJECT_FRAME_SIZE, false);
	free(data);
}

static void test_holes(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 9 * OBJECT_FRAME_SIZE + 77;
	uint8_t *data = calloc(1, len), *expect = calloc(1, len);
	const uint64_t ext[2][2] = {{100, 5000}, {4 * OBJECT_FRAME_SIZE + 10, 6 * OBJECT_FRAME_SIZE}};
	struct object_src src = {data, len, ext, 2};

	/* Bytes outside the extents must never be read: poison them. */
	memset(data, 0xAA, len);
	for (int e = 0; e < 2; e++)
		for (uint64_t i = ext[e][0]; i < ext[e][1]; i++)
			data[i] = expect[i] = (uint8_t)(i * 7);
	round_trip(w, dctx, &src, expect, false);
	free(data);
	free(expect);
}

static void test_corrupt(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 3 * OBJECT_FRAME_SIZE;
	uint8_t *data = malloc(len), *blob = NULL;
	struct object_src src = {data, len, NULL, 0};
	struct cfs_err err = {{0}};
	struct object *o = NULL;
	struct objkey key;
	uint64_t stored;
	char path[48];
	struct stat sb;
	int fd;

	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i % 251 < 100 ? 'a' : next());
	object_hash(&src, &key);
	CHECK(object_write(w, store_fd, &key, &src, &blob, &stored, &err) == 0);
	objkey_path(&key, path);
	/* Flip one byte in the middle of the second frame's compressed data. */
	CHECK(fchmodat(store_fd, path, 0644, 0) == 0);
	fd = openat(store_fd, path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(fstat(fd, &sb) == 0);
	uint8_t b;
	off_t at = sb.st_size / 2;
	CHECK(pread(fd, &b, 1, at) == 1);
	b ^= 0x55;
	CHECK(pwrite(fd, &b, 1, at) == 1);
	CHECK(object_open(store_fd, &key, NULL, 0, &o, &err) == 0);
	CHECK(object_check(o, dctx, &err) == -EBADMSG);
	CHECK(strstr(err.msg, path) != NULL);
	object_close(o);
	/* Truncated: refused at open. */
	CHECK(ftruncate(fd, sb.st_size - 10) == 0);
	CHECK(object_open(store_fd, &key, NULL, 0, &o, &err) == -EBADMSG);
	close(fd);
	/* Missing. */
	CHECK(unlinkat(store_fd, path, 0) == 0);
	CHECK(object_open(store_fd, &key, NULL, 0, &o, &err) == -EBADMSG);
	CHECK(strstr(err.msg, "missing") != NULL);
	/* A different content under an existing key is refused, never merged. */
	CHECK(object_write(w, store_fd, &key, &src, &blob, &stored, &err) == 0);
	data[5] ^= 1;
	CHECK(object_write(w, store_fd, &key, &src, &blob, &stored, &err) == -EBADMSG);
	free(data);
}

int main(void)
{
	struct object_writer *w = NULL;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	char cmd[128];

	make_store();
	CHECK(object_writer_new(&w) == 0);
	test_kinds(w, dctx);
	test_holes(w, dctx);
	test_corrupt(w, dctx);
	object_writer_free(w);
	ZSTD_freeDCtx(dctx);
	close(store_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return test_exit();
}
