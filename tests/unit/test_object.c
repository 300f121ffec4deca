// SPDX-License-Identifier: MIT
/*
 * Object images: round trips of every frame kind (zstd, raw, zero, holes), range reads at
 * every frame boundary, also through decoded frames shared by threads, the
 * temporary-directory write protocol, byte-for-byte comparison, detection of a corrupt or
 * truncated image, the frame checksums of format 2 (a flipped byte in any frame, in the
 * frame table or in the header is -EBADMSG on every read, never wrong bytes), images of
 * format 1 (made here byte by byte as its writer laid them out) read and shared as before,
 * and the packer's layout.
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
#include <zstd.h>

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
	CHECK(object_publish(w, false, &err) == 0);
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
	CHECK(object_publish(w, false, &err) == 0);
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
	CHECK(object_publish(w, false, &err) == 0);
	data[5] ^= 1;
	CHECK(object_write(w, &key, &src, &stored, &err) == -EBADMSG);
	CHECK(unlinkat(store_fd, path, 0) == 0);
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	data[5] ^= 1;
	/* The same key written twice into one temporary directory: the second is skipped. */
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(w, false, &err) == 0);
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
	CHECK(object_publish(w, false, &err) == 0);
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

/* Flip one byte of the image at path. */
static void flip_at(const char *path, off_t at)
{
	int fd = openat(store_fd, path, O_RDWR);
	uint8_t b = 0;

	CHECK(fd >= 0);
	CHECK(pread(fd, &b, 1, at) == 1);
	b ^= 0x5a;
	CHECK(pwrite(fd, &b, 1, at) == 1);
	close(fd);
}

static int truncate_at(const char *path, off_t len)
{
	int fd = openat(store_fd, path, O_RDWR), r;

	if (fd < 0)
		return -1;
	r = ftruncate(fd, len);
	close(fd);
	return r;
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Where frame i's stored bytes start, and its kind, from a format 2 image's table. */
static off_t frame_at(const char *path, uint32_t i, uint32_t *ret_kind)
{
	int fd = openat(store_fd, path, O_RDONLY);
	uint8_t hdr[48], e[12];
	uint32_t n;
	off_t off;

	CHECK(fd >= 0 && pread(fd, hdr, sizeof(hdr), 0) == sizeof(hdr));
	CHECK(memcmp(hdr, "CFSOBJ2\n", 8) == 0);
	n = le32_at(hdr + 12);
	off = 48 + 12 * (off_t)n;
	for (uint32_t k = 0; k <= i && k < n; k++) {
		CHECK(pread(fd, e, sizeof(e), 48 + 12 * (off_t)k) == sizeof(e));
		*ret_kind = le32_at(e) >> 30;
		if (k < i)
			off += le32_at(e) & ((1u << 30) - 1);
	}
	close(fd);
	return off;
}

/* Every read touching frame bad fails, every time, also through shared frames; frame good
 * reads right. */
static void reads_fail(const struct objkey *key, ZSTD_DCtx *dctx, uint32_t bad, uint32_t good,
                       const uint8_t *expect)
{
	struct cfs_err err = {{0}};
	struct cache *frames = NULL;
	uint8_t *buf = malloc(2 * OBJECT_FRAME_SIZE);
	uint64_t at = (uint64_t)bad * OBJECT_FRAME_SIZE,
	         ok = (uint64_t)good * OBJECT_FRAME_SIZE + 7;
	struct object *o = NULL;
	size_t got;

	CHECK(cache_new(4 * OBJECT_FRAME_SIZE, &frames) == 0);
	CHECK(object_open(store_fd, key, &o, &err) == 0);
	for (int shared = 0; o && shared < 2; shared++) {
		if (shared)
			object_share_frames(o, frames);
		for (int again = 0; again < 2; again++) {
			/* Part of the frame, the whole frame, and a range across its end. */
			CHECK(object_read(o, dctx, at + 10, 100, buf, &got, &err) == -EBADMSG);
			CHECK(strstr(err.msg, "fails its checksum") != NULL);
			CHECK(object_read(o, dctx, at, OBJECT_FRAME_SIZE, buf, &got, &err) ==
			      -EBADMSG);
			CHECK(object_read(o, dctx, at + OBJECT_FRAME_SIZE - 50, 100, buf, &got,
			                  &err) == -EBADMSG);
			CHECK(object_read(o, dctx, ok, 100, buf, &got, &err) == 0 &&
			      memcmp(buf, expect + ok, 100) == 0);
		}
	}
	CHECK(o && object_check(o, dctx, &err) == -EBADMSG);
	object_close(o);
	cache_free(frames);
	free(buf);
}

/* Format 2: every frame is checked when decoded, raw ones too; header and table when the
 * image is opened. */
static void test_checksums(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 4 * OBJECT_FRAME_SIZE + 5000;
	uint8_t *data = malloc(len), block[4096];
	struct object_src src = {.data = data, .len = len};
	struct cfs_err err = {{0}};
	struct object *o = NULL;
	uint32_t kind = 9;
	struct objkey key;
	uint64_t stored;
	char path[48];
	off_t at;

	/* Frames: zstd whose literals are stored raw (random 4 KiB, repeated: a flipped
	 * literal still decodes, to wrong bytes), raw, zero, zstd, short zero tail. */
	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = (uint8_t)next();
	for (size_t i = 0; i < OBJECT_FRAME_SIZE; i++)
		data[i] = block[i % sizeof(block)];
	for (size_t i = OBJECT_FRAME_SIZE; i < 2 * OBJECT_FRAME_SIZE; i++)
		data[i] = (uint8_t)next();
	memset(data + 2 * OBJECT_FRAME_SIZE, 0, OBJECT_FRAME_SIZE);
	for (size_t i = 3 * OBJECT_FRAME_SIZE; i < 4 * OBJECT_FRAME_SIZE; i++)
		data[i] = (uint8_t)("frames are checked\n"[i % 19]);
	memset(data + 4 * OBJECT_FRAME_SIZE, 0, 5000);
	object_hash(&src, &key);
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(w, false, &err) == 0);
	objkey_path(&key, path);
	CHECK(object_open(store_fd, &key, &o, &err) == 0);
	CHECK(o && object_format(o) == 2);
	object_close(o);

	/* A byte in the zstd frame's literals. */
	at = frame_at(path, 0, &kind);
	CHECK(kind == 0);
	flip_at(path, at + 200);
	reads_fail(&key, dctx, 0, 1, data);
	flip_at(path, at + 200);
	/* A byte in the raw frame. */
	at = frame_at(path, 1, &kind);
	CHECK(kind == 1);
	flip_at(path, at + 1000);
	reads_fail(&key, dctx, 1, 0, data);
	flip_at(path, at + 1000);
	at = frame_at(path, 2, &kind);
	CHECK(kind == 2);
	CHECK(object_open(store_fd, &key, &o, &err) == 0);
	CHECK(o && object_check(o, dctx, &err) == 0);
	object_close(o);

	/* The table: a frame's checksum, a zero frame made zstd of length 0 (a stored
	 * frame's length moved would not add up). The header: the content size cut within
	 * the zero tail, which keeps the frame count. Each is refused at open. */
	for (int k = 0; k < 3; k++) {
		static const off_t where[3] = {48 + 12 * 1 + 4 + 3, 48 + 12 * 2 + 3, 16};

		flip_at(path, where[k]);
		CHECK(object_open(store_fd, &key, &o, &err) == -EBADMSG);
		CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, "checksum") != NULL);
		flip_at(path, where[k]);
	}
	CHECK(object_open(store_fd, &key, &o, &err) == 0);
	CHECK(o && object_check(o, dctx, &err) == 0);
	object_close(o);
	/* A format this code does not know. */
	flip_at(path, 6);
	CHECK(object_open(store_fd, &key, &o, &err) == -EBADMSG);
	flip_at(path, 6);
	free(data);
}

/* An image of format 1 as its writer laid it out: 40-byte header, 4-byte table entries,
 * no checksums. kinds[i]: 'z' zstd, 'r' raw, '0' zero (nothing stored). */
static void write_format1(const struct objkey *key, const uint8_t *data, size_t len,
                          const char *kinds)
{
	uint32_t n = (uint32_t)((len + OBJECT_FRAME_SIZE - 1) / OBJECT_FRAME_SIZE);
	size_t cap = 40 + 4 * (size_t)n + n * ZSTD_compressBound(OBJECT_FRAME_SIZE), off;
	uint8_t *img = calloc(1, cap);
	uint64_t size = len;
	uint32_t v;
	char path[48];
	int fd;

	memcpy(img, "CFSOBJ1\n", 8);
	v = OBJECT_FRAME_SHIFT;
	memcpy(img + 8, &v, 4);
	memcpy(img + 12, &n, 4);
	memcpy(img + 16, &size, 8);
	memcpy(img + 24, key->b, 16);
	off = 40 + 4 * (size_t)n;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = data + (size_t)i * OBJECT_FRAME_SIZE;
		size_t fl = len - (size_t)i * OBJECT_FRAME_SIZE, c = 0;

		if (fl > OBJECT_FRAME_SIZE)
			fl = OBJECT_FRAME_SIZE;
		if (kinds[i] == 'z') {
			c = ZSTD_compress(img + off, cap - off, p, fl, 3);
			CHECK(!ZSTD_isError(c));
			v = (uint32_t)c;
		} else if (kinds[i] == 'r') {
			memcpy(img + off, p, fl);
			c = fl;
			v = 1u << 30 | (uint32_t)fl;
		} else {
			v = 2u << 30;
		}
		memcpy(img + 40 + 4 * (size_t)i, &v, 4);
		off += c;
	}
	objkey_path(key, path);
	fd = openat(store_fd, path, O_WRONLY | O_CREAT | O_EXCL, 0444);
	CHECK(fd >= 0 && write(fd, img, off) == (ssize_t)off);
	close(fd);
	free(img);
}

/* Images written before frames had checksums are read, compared and shared as before, and
 * object_check (verify) finds a flipped byte in them by the key. */
static void test_format1(struct object_writer *w, ZSTD_DCtx *dctx)
{
	size_t len = 3 * OBJECT_FRAME_SIZE + 777, got;
	uint8_t *data = malloc(len), *buf = malloc(len);
	struct object_src src = {.data = data, .len = len};
	struct cfs_err err = {{0}};
	struct object *o = NULL;
	struct objkey key;
	uint64_t stored = 0;
	char path[48];

	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)("an old image\n"[i % 13]);
	for (size_t i = OBJECT_FRAME_SIZE; i < 2 * OBJECT_FRAME_SIZE; i++)
		data[i] = (uint8_t)next();
	memset(data + 2 * OBJECT_FRAME_SIZE, 0, OBJECT_FRAME_SIZE);
	object_hash(&src, &key);
	write_format1(&key, data, len, "zr0z");
	objkey_path(&key, path);
	CHECK(object_open(store_fd, &key, &o, &err) == 0);
	if (!o) {
		fprintf(stderr, "%s\n", err.msg);
		goto out;
	}
	CHECK(object_format(o) == 1);
	CHECK(object_size(o) == len);
	CHECK(object_read(o, dctx, 0, len, buf, &got, &err) == 0 && got == len &&
	      memcmp(buf, data, len) == 0);
	for (int i = 0; i < 100; i++) {
		uint64_t off = next() % len;
		size_t n = (size_t)(next() % (2 * OBJECT_FRAME_SIZE));

		CHECK(object_read(o, dctx, off, n, buf, &got, &err) == 0);
		CHECK(got == (n < len - off ? n : len - off) && memcmp(buf, data + off, got) == 0);
	}
	CHECK(object_compare(o, dctx, 0, &src, &err) == 0);
	CHECK(object_check(o, dctx, &err) == 0);
	object_close(o);
	o = NULL;
	shared_reads(&key, len, data);
	/* A new ingest of the same content shares the old image (compared, O2). */
	CHECK(object_write(w, &key, &src, &stored, &err) == 0);
	CHECK(object_publish(w, false, &err) == 0);
	CHECK(stored > 0);
	CHECK(object_open(store_fd, &key, &o, &err) == 0 && object_format(o) == 1);
	object_close(o);
	/* A flipped byte in its raw frame, after the zstd frame 0: verify's whole-content check
	 * finds it. */
	{
		uint8_t e[4];
		int fd = openat(store_fd, path, O_RDONLY);

		CHECK(fd >= 0 && pread(fd, e, 4, 40) == 4);
		close(fd);
		flip_at(path, 40 + 4 * 4 + (le32_at(e) & ((1u << 30) - 1)) + 5000);
	}
	CHECK(object_open(store_fd, &key, &o, &err) == 0);
	CHECK(o && object_check(o, dctx, &err) == -EBADMSG);
	CHECK(strstr(err.msg, "does not match its key") != NULL);
	object_close(o);
	/* Truncated: refused at open, as ever. */
	CHECK(truncate_at(path, 100) == 0);
	CHECK(object_open(store_fd, &key, &o, &err) == -EBADMSG);
	CHECK(unlinkat(store_fd, path, 0) == 0);
out:
	free(data);
	free(buf);
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
	CHECK(object_publish(a, false, &err) == 0);
	CHECK(object_publish(b, false, &err) == 0);
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
	test_checksums(w, dctx);
	test_format1(w, dctx);
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
