// SPDX-License-Identifier: MIT
/*
 * Object images: round trips of every frame kind (zstd, raw, zero, holes), range reads at
 * every frame boundary, also through decoded frames shared by threads, the
 * temporary-directory write protocol, byte-for-byte comparison, detection of a corrupt or
 * truncated image, and the packer's layout.
 */
#include "object.h"
#include "pack.h"
#include "test.h"

#include <condafs/cache.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/condafs-test-object-XXXXXX";
static int store_fd, tmp_fd = -1;
static char tmp_name[64];

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
	CHECK(object_tmp_open(store_fd, &tmp_fd, tmp_name, NULL) == 0);
}

struct reader {
	const struct objkey *key;
	struct cache *frames;
	const uint8_t *expect;
	size_t len;
	uint64_t seed;
	int bad; /* reads that failed or gave other bytes */
};

/* Random reads, most of them inside one frame, on an object of its own sharing frames. */
static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	uint8_t *buf = malloc(2 * OBJECT_FRAME_SIZE);
	struct object *o = NULL;
	uint64_t x = rd->seed;

	if (!dctx || !buf || object_open(store_fd, rd->key, &o, NULL)) {
		rd->bad++;
		goto out;
	}
	object_share_frames(o, rd->frames);
	for (int i = 0; i < 300; i++) {
		uint64_t off;
		size_t len, got = 0;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		off = x % rd->len;
		len = (size_t)(x >> 40) % (i % 4 ? 6000 : 2 * OBJECT_FRAME_SIZE);
		if (object_read(o, dctx, off, len, buf, &got, NULL) ||
		    got != (len < rd->len - off ? len : rd->len - off) ||
		    memcmp(buf, rd->expect + off, got) != 0)
			rd->bad++;
	}
out:
	object_close(o);
	free(buf);
	ZSTD_freeDCtx(dctx);
	return NULL;
}

/* Four threads reading one object through a cache of two frames: frames are decoded,
 * shared, evicted and decoded again while others read them, and every byte is right. */
static void shared_reads(const struct objkey *key, size_t len, const uint8_t *expect)
{
	struct reader rd[4];
	pthread_t tid[4];
	struct cache *frames;
	uint64_t hits, misses, ahead;
	size_t bytes;

	if (len == 0)
		return;
	CHECK(cache_new(2 * OBJECT_FRAME_SIZE, &frames) == 0);
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct reader){key, frames, expect, len, next() | 1, 0};
		CHECK(pthread_create(&tid[i], NULL, reader_main, &rd[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		CHECK(rd[i].bad == 0);
	}
	cache_stats(frames, &hits, &misses, &ahead, &bytes);
	CHECK(hits > 0 && misses > 0 && bytes <= 2 * OBJECT_FRAME_SIZE);
	cache_free(frames);
}

/* Write src, publish it, read it back whole and in random ranges, and compare. */
static void round_trip(struct object_writer *w, ZSTD_DCtx *dctx, const struct object_src *src,
                       const uint8_t *expect)
{
	struct cfs_err err = {{0}};
	struct objkey key;
	struct object *o = NULL;
	uint8_t *buf = malloc(src->len + 1);
	uint64_t stored = 0, again = 0;
	size_t got = 0;
	int r;

	object_hash(src, &key);
	r = object_write(w, &key, src, &stored, &err);
	CHECK(r == 0);
	CHECK(object_publish(w, &err) == 0);
	if (r || object_open(store_fd, &key, &o, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		CHECK(0);
		free(buf);
		return;
	}
	CHECK(object_image_size(o) == stored);
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
	CHECK(object_compare(o, dctx, 0, src, &err) == 0);
	CHECK(object_check(o, dctx, &err) == 0);
	shared_reads(&key, src->len, expect);
	/* Writing the same key again finds the stored image and compares it. */
	CHECK(object_write(w, &key, src, &again, &err) == 0);
	CHECK(again == stored);
	object_close(o);
	free(buf);
}

static void test_kinds(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 5 * OBJECT_FRAME_SIZE + 1234;
	uint8_t *data = malloc(len);
	struct object_src src = {.data = data, .len = len};

	/* text-like frame, random (raw) frame, zero frame, text again, random tail */
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)("condafs stores conda environments\n"[i % 34]);
	for (size_t i = OBJECT_FRAME_SIZE; i < 2 * OBJECT_FRAME_SIZE; i++)
		data[i] = (uint8_t)next();
	memset(data + 2 * OBJECT_FRAME_SIZE, 0, OBJECT_FRAME_SIZE);
	for (size_t i = 4 * OBJECT_FRAME_SIZE; i < len; i++)
		data[i] = (uint8_t)next();
	round_trip(w, dctx, &src, data);
	src.len = 100;
	round_trip(w, dctx, &src, data);
	src.len = 0;
	round_trip(w, dctx, &src, data);
	src.data = data + OBJECT_FRAME_SIZE;
	src.len = 8000;
	round_trip(w, dctx, &src, data + OBJECT_FRAME_SIZE);
	free(data);
}

static void test_holes(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 9 * OBJECT_FRAME_SIZE + 77;
	uint8_t *data = calloc(1, len), *expect = calloc(1, len);
	const uint64_t ext[2][2] = {{100, 5000},
	                            {4 * OBJECT_FRAME_SIZE + 10, 6 * OBJECT_FRAME_SIZE}};
	struct object_src src = {.data = data, .len = len, .extents = ext, .nextents = 2};

	/* Bytes outside the extents must never be read: poison them. */
	memset(data, 0xAA, len);
	for (int e = 0; e < 2; e++)
		for (uint64_t i = ext[e][0]; i < ext[e][1]; i++)
			data[i] = expect[i] = (uint8_t)(i * 7);
	round_trip(w, dctx, &src, expect);
	free(data);
	free(expect);
}

static void test_corrupt(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 3 * OBJECT_FRAME_SIZE;
	uint8_t *data = malloc(len), b;
	struct object_src src = {.data = data, .len = len};
	struct cfs_err err = {{0}};
	struct object *o = NULL;
	struct objkey key;
	uint64_t stored;
	char path[48];
	struct stat sb;
	off_t at;
	int fd;

	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i % 251 < 100 ? 'a' : next());
	object_hash(&src, &key);
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(w, &err) == 0);
	objkey_path(&key, path);
	/* Flip one byte in the middle of the second frame's compressed data. */
	fd = openat(store_fd, path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(fstat(fd, &sb) == 0);
	at = sb.st_size / 2;
	CHECK(pread(fd, &b, 1, at) == 1);
	b ^= 0x55;
	CHECK(pwrite(fd, &b, 1, at) == 1);
	CHECK(object_open(store_fd, &key, &o, &err) == 0);
	CHECK(object_check(o, dctx, &err) == -EBADMSG);
	CHECK(strstr(err.msg, path) != NULL);
	object_close(o);
	/* Truncated: refused at open. */
	CHECK(ftruncate(fd, sb.st_size - 10) == 0);
	CHECK(object_open(store_fd, &key, &o, &err) == -EBADMSG);
	close(fd);
	/* Missing. */
	CHECK(unlinkat(store_fd, path, 0) == 0);
	CHECK(object_open(store_fd, &key, &o, &err) == -EBADMSG);
	CHECK(strstr(err.msg, "missing") != NULL);
	/* A different content under a stored key is refused, never merged: when it is
	 * written, and when it is published after the other appeared. */
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(w, &err) == 0);
	data[5] ^= 1;
	CHECK(object_write(w, &key, &src, &stored, &err) == -EBADMSG);
	CHECK(unlinkat(store_fd, path, 0) == 0);
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	data[5] ^= 1;
	/* The same key written twice into one temporary directory: the second is skipped. */
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(w, &err) == 0);
	free(data);
}

/* A frame that does not decode, read through shared frames: it fails every time (it is
 * never kept), and the frames around it are served. */
static void test_corrupt_shared(struct object_writer *w, ZSTD_DCtx *dctx)
{
	static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
	size_t len = 3 * OBJECT_FRAME_SIZE, got;
	uint8_t *data = malloc(len), *image, buf[100];
	struct object_src src = {.data = data, .len = len};
	struct cfs_err err = {{0}};
	struct cache *frames = NULL;
	struct object *o = NULL;
	int fd, seen = 0;
	struct objkey key;
	uint64_t stored;
	char path[48];
	struct stat sb;

	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i % 97 < 60 ? 'b' : next());
	object_hash(&src, &key);
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(w, &err) == 0);
	objkey_path(&key, path);
	/* Break the magic number of the second zstd frame. */
	fd = openat(store_fd, path, O_RDWR);
	CHECK(fd >= 0 && fstat(fd, &sb) == 0);
	image = malloc((size_t)sb.st_size);
	CHECK(pread(fd, image, (size_t)sb.st_size, 0) == sb.st_size);
	for (off_t at = 0; at + 4 <= sb.st_size; at++) {
		if (memcmp(image + at, magic, 4) == 0 && ++seen == 2) {
			uint8_t x = 0;

			CHECK(pwrite(fd, &x, 1, at) == 1);
			break;
		}
	}
	CHECK(seen == 2);
	close(fd);
	free(image);
	CHECK(cache_new(4 * OBJECT_FRAME_SIZE, &frames) == 0);
	CHECK(object_open(store_fd, &key, &o, &err) == 0);
	object_share_frames(o, frames);
	for (int i = 0; i < 2; i++) {
		CHECK(object_read(o, dctx, OBJECT_FRAME_SIZE + 10, sizeof(buf), buf, &got, &err) ==
		      -EBADMSG);
		CHECK(object_read(o, dctx, 10, sizeof(buf), buf, &got, &err) == 0 &&
		      memcmp(buf, data + 10, sizeof(buf)) == 0);
		CHECK(object_read(o, dctx, 2 * OBJECT_FRAME_SIZE + 10, sizeof(buf), buf, &got,
		                  &err) == 0 &&
		      memcmp(buf, data + 2 * OBJECT_FRAME_SIZE + 10, sizeof(buf)) == 0);
	}
	object_close(o);
	cache_free(frames);
	free(data);
}

static void test_publish_race(void)
{
	uint8_t data[5000];
	struct object_src src = {.data = data, .len = sizeof(data)};
	struct object_writer *a = NULL, *b = NULL;
	char name_b[64];
	int tmp_b = -1;
	struct objkey key;
	uint64_t stored;
	struct cfs_err err;
	char hex[33];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	object_hash(&src, &key);
	/* Two ingests write the same content; the second to publish compares, keeps one. */
	CHECK(object_tmp_open(store_fd, &tmp_b, name_b, NULL) == 0);
	CHECK(object_writer_new(store_fd, tmp_fd, &a) == 0);
	CHECK(object_writer_new(store_fd, tmp_b, &b) == 0);
	CHECK(object_write(a, &key, &src, &stored, &err) == 0);
	CHECK(object_write(b, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(a, &err) == 0);
	CHECK(object_publish(b, &err) == 0);
	objkey_hex(&key, hex);
	CHECK(faccessat(tmp_b, hex, F_OK, 0) != 0); /* b's copy compared, then dropped */
	object_writer_free(a);
	object_writer_free(b);
	object_tmp_close(store_fd, tmp_b, name_b);
	CHECK(faccessat(store_fd, "tmp", F_OK, 0) == 0);
}

static void test_packer(void)
{
	struct packer *p = NULL;
	struct objkey k[4];
	const char *names[4] = {"lib/a.py", "bin/x", "lib/b.py", "lib/c.txt"};
	uint8_t content[4][100];
	size_t npacks, pack;
	uint64_t off, len;

	CHECK(packer_new(&p) == 0);
	for (int i = 0; i < 4; i++) {
		struct object_src s = {.data = content[i], .len = 50 + (size_t)i};

		memset(content[i], 'a' + i, sizeof(content[i]));
		object_hash(&s, &k[i]);
		CHECK(packer_add(p, &k[i], content[i], s.len, names[i]) == 0);
	}
	CHECK(packer_add(p, &k[2], content[2], 52, "other/name.py") == 0); /* duplicate */
	CHECK(packer_layout(p, &npacks) == 0);
	CHECK(npacks == 1);
	CHECK(packer_pack_len(p, 0) == 50 + 51 + 52 + 53);
	for (int i = 0; i < 4; i++) {
		CHECK(packer_find(p, &k[i], &pack, &off, &len) == 0);
		CHECK(len == 50 + (size_t)i);
		CHECK(memcmp(packer_member_data(p, pack, off), content[i], len) == 0);
	}
	/* Ordered by extension then path: bin/x (no extension), a.py, b.py, c.txt. */
	CHECK(packer_find(p, &k[1], &pack, &off, &len) == 0 && off == 0);
	CHECK(packer_find(p, &k[0], &pack, &off, &len) == 0 && off == 51);
	packer_free(p);

	/* One key, two contents (a forged collision): refused, and all freed once. */
	CHECK(packer_new(&p) == 0);
	CHECK(packer_add(p, &k[0], content[0], 50, "a") == 0);
	CHECK(packer_add(p, &k[0], content[1], 50, "b") == 0);
	CHECK(packer_add(p, &k[1], content[1], 51, "c") == 0);
	CHECK(packer_layout(p, &npacks) == -EBADMSG);
	packer_free(p);
}

int main(void)
{
	struct object_writer *w = NULL;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	char cmd[128];

	make_store();
	CHECK(object_writer_new(store_fd, tmp_fd, &w) == 0);
	test_kinds(w, dctx);
	test_holes(w, dctx);
	test_corrupt(w, dctx);
	test_corrupt_shared(w, dctx);
	test_publish_race();
	test_packer();
	object_writer_free(w);
	object_tmp_close(store_fd, tmp_fd, tmp_name);
	ZSTD_freeDCtx(dctx);
	close(store_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return test_exit();
}
