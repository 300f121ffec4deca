// SPDX-License-Identifier: MIT
/*
 * Tree images (store/envimage.c, docs/tree-format.md): what the builder lays out reads
 * back, identical directories share one place and records are found by key; and every
 * byte of the head and tables damaged or cut is refused or leaves every location inside
 * the image (T6).
 */
#include "envimage.h"
#include "err.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t idx[] = "an index: envimage keeps its bytes as they are";

static uint8_t *build(size_t *len)
{
	static const uint8_t a[] = "directory A", b[] = "directory B, longer than A",
	                     r1[] = "record one", r2[] = "record two";
	struct envimage_piece dirs[3] = {{.data = a, .len = sizeof(a)},
	                                 {.data = b, .len = sizeof(b)},
	                                 {.data = a, .len = sizeof(a)}};
	struct envimage_piece recs[3] = {{.data = r2, .len = sizeof(r2)},
	                                 {.data = r1, .len = sizeof(r1)},
	                                 {.data = r2, .len = sizeof(r2)}};
	const uint32_t order[3] = {0, 2, 1};
	struct cfs_err err = {{0}};
	uint8_t *buf = NULL;

	memset(dirs[0].key.b, 'A', 16);
	memset(dirs[1].key.b, 'B', 16);
	memset(dirs[2].key.b, 'A', 16);
	memset(recs[0].key.b, 'S', 16);
	memset(recs[1].key.b, 'R', 16);
	memset(recs[2].key.b, 'S', 16);
	CHECK(envimage_build(idx, sizeof(idx), dirs, 3, order, recs, 3, &buf, len, &err) == 0);
	return buf;
}

static int open_image(const uint8_t *buf, size_t len, struct envimage *m, struct cfs_err *err)
{
	struct envimage_head h;
	int r = len < ENVIMAGE_HEAD ? err_set(err, -EUCLEAN, "img: short")
	                            : envimage_head(buf, len, "img", &h, err);

	return r ? r : envimage_open(&h, buf + ENVIMAGE_HEAD, len, "img", m, err);
}

static void reads_back(void)
{
	struct cfs_err err = {{0}};
	struct envimage m;
	struct objkey k;
	uint32_t off, n, off2, n2;
	size_t len = 0;
	uint8_t *buf = build(&len);

	CHECK(buf && open_image(buf, len, &m, &err) == 0);
	if (!buf)
		return;
	CHECK(m.ndirs == 3 && m.nrecs == 2 && m.index_len == sizeof(idx));
	CHECK(memcmp(m.index, idx, sizeof(idx)) == 0);
	envimage_dir(&m, 0, &off, &n);
	envimage_dir(&m, 2, &off2, &n2);
	CHECK(off == off2 && n == n2 && memcmp(buf + off, "directory A", n) == 0);
	envimage_dir(&m, 1, &off2, &n2);
	/* Laid out in the order given: A (once), then B, then the records. */
	CHECK(off2 == off + n && memcmp(buf + off2, "directory B", 11) == 0);
	memset(k.b, 'R', 16);
	CHECK(envimage_record(&m, &k, &off, &n) == 0 && memcmp(buf + off, "record one", n) == 0);
	CHECK(off > off2);
	memset(k.b, 'S', 16);
	CHECK(envimage_record(&m, &k, &off, &n) == 0 && memcmp(buf + off, "record two", n) == 0);
	CHECK(off + n == len);
	memset(k.b, 'T', 16);
	CHECK(envimage_record(&m, &k, &off, &n) == -ENOENT);
	free(buf);
}

/* T6 on damaged bytes: refused naming the image, or every location inside it. */
static void damaged(void)
{
	struct cfs_err err = {{0}};
	struct envimage m;
	size_t len = 0;
	uint8_t *buf = build(&len);
	size_t tables = ENVIMAGE_HEAD + sizeof(idx) + 3 * 8 + 2 * 24;

	if (!buf)
		return;
	for (size_t i = 0; i < tables; i++) {
		for (int bit = 0; bit < 8; bit++) {
			uint8_t *bad = malloc(len);
			int r;

			memcpy(bad, buf, len);
			bad[i] ^= (uint8_t)(1u << bit);
			r = open_image(bad, len, &m, &err);
			if (r) {
				CHECK(r == -EUCLEAN && strncmp(err.msg, "img", 3) == 0);
			} else {
				for (uint32_t d = 0; d < m.ndirs; d++) {
					uint32_t off, n;

					envimage_dir(&m, d, &off, &n);
					CHECK(n > 0 && (uint64_t)off + n <= len);
				}
			}
			free(bad);
		}
	}
	for (size_t cut = 0; cut < tables; cut++)
		CHECK(open_image(buf, cut, &m, &err) == -EUCLEAN);
	/* Cut among the objects: the tables still parse, a location past the end does not. */
	CHECK(open_image(buf, len - 1, &m, &err) == -EUCLEAN);
	free(buf);
}

static void builder_refuses(void)
{
	static const uint8_t a[] = "A";
	struct envimage_piece dirs[2] = {{.data = a, .len = 1}, {.data = a, .len = 1}};
	const uint32_t order[2] = {0, 0};
	struct cfs_err err = {{0}};
	uint8_t *buf = NULL;
	size_t len;

	memset(dirs[0].key.b, 'A', 16);
	memset(dirs[1].key.b, 'B', 16);
	/* An order that leaves a directory out. */
	CHECK(envimage_build(idx, sizeof(idx), dirs, 2, order, NULL, 0, &buf, &len, &err) ==
	      -EINVAL);
	CHECK(buf == NULL);
}

int main(void)
{
	reads_back();
	damaged();
	builder_refuses();
	return test_exit();
}
