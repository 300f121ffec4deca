// SPDX-License-Identifier: MIT
/*
 * Environment indexes (store/envindex.c, docs/tree-format.md): what the builder writes
 * reads back; the searches find every node's directory, every directory and every link;
 * and every rule of the format broken in the bytes is refused (T3), which the builder
 * shares, since it writes only what the reader accepts.
 */
#include "envindex.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* top (0): a (1), b (2), f (3); a: c (4), g (5); b: none; c: h (6). */
static const struct envindex_dir dirs[] = {
        {.self = 0, .first_child = 1},
        {.self = 1, .first_child = 4},
        {.self = 2, .first_child = 6},
        {.self = 4, .first_child = 6},
};
static const struct envindex_link links[] = {{3, 3}, {5, 3}};

static uint8_t *build(size_t *len)
{
	struct envindex_dir d[4];
	struct cfs_err err = {{0}};
	uint8_t *buf = NULL;

	memcpy(d, dirs, sizeof(d));
	for (int i = 0; i < 4; i++)
		memset(d[i].key.b, 'A' + i, 16);
	CHECK(envindex_build(7, 0755, -42, d, 4, links, 2, &buf, len, &err) == 0);
	return buf;
}

static void searches(void)
{
	static const uint32_t parent_dir[7] = {0, 0, 0, 0, 1, 1, 3};
	struct cfs_err err = {{0}};
	struct envindex x;
	struct envindex_dir d;
	size_t len = 0;
	uint8_t *buf = build(&len);
	uint32_t i, n, first;

	CHECK(buf && envindex_open(buf, len, "idx", &x, &err) == 0);
	if (!buf)
		return;
	CHECK(x.nodes == 7 && x.ndirs == 4 && x.nlinks == 2 && x.root_mode == 0755 &&
	      x.root_mtime_ns == -42);
	envindex_dir(&x, 2, &d, &n);
	CHECK(d.self == 2 && n == 0 && d.key.b[0] == 'C');
	envindex_dir(&x, 3, &d, &n);
	CHECK(d.self == 4 && n == 1);
	for (uint32_t o = 1; o < 7; o++) {
		i = envindex_parent_of(&x, o);
		envindex_dir(&x, i, &d, &n);
		CHECK(i == parent_dir[o] && o >= d.first_child && o < d.first_child + n);
	}
	CHECK(envindex_dir_of(&x, 4, &i) == 0 && i == 3);
	CHECK(envindex_dir_of(&x, 3, &i) == -ENOENT && envindex_dir_of(&x, 6, &i) == -ENOENT);
	CHECK(envindex_link_of(&x, 5, &first) == 0 && first == 3);
	CHECK(envindex_link_of(&x, 4, &first) == -ENOENT);

	/* Every byte flipped is refused, or reads as an index whose searches stay inside
	 * it (ASan watches); cut short anywhere: refused. */
	for (size_t k = 0; k < len; k++) {
		uint8_t *bad = malloc(len);

		memcpy(bad, buf, len);
		bad[k] ^= 0x5a;
		/* A flipped node count may be in the billions: the first ordinals suffice. */
		if (envindex_open(bad, len, "idx", &x, &err) == 0)
			for (uint32_t o = 1; o < x.nodes && o < 64; o++) {
				i = envindex_parent_of(&x, o);
				envindex_dir(&x, i, &d, &n);
				CHECK(o >= d.first_child && o < d.first_child + n);
			}
		else
			CHECK(strncmp(err.msg, "idx: ", 5) == 0);
		free(bad);
	}
	for (size_t cut = 0; cut < len; cut++)
		CHECK(envindex_open(buf, cut, "idx", &x, &err) == -EUCLEAN);
	free(buf);
}

static void builder_refuses(void)
{
	struct envindex_dir d[2] = {{.self = 0, .first_child = 1}, {.self = 1, .first_child = 1}};
	struct envindex_link l[2] = {{2, 2}, {1, 1}};
	struct cfs_err err = {{0}};
	uint8_t *buf = NULL;
	size_t len;

	/* A directory whose children come before it, links out of order, a top that is not
	 * first: each refused, nothing written. */
	CHECK(envindex_build(3, 0755, 0, d, 2, NULL, 0, &buf, &len, &err) == -EINVAL);
	d[1].first_child = 2;
	CHECK(envindex_build(3, 0755, 0, d, 2, l, 2, &buf, &len, &err) == -EINVAL);
	CHECK(envindex_build(3, 0755, 0, d + 1, 1, NULL, 0, &buf, &len, &err) == -EINVAL);
	CHECK(envindex_build(3, 010000, 0, d, 2, NULL, 0, &buf, &len, &err) == -EINVAL);
	CHECK(buf == NULL);
	CHECK(envindex_build(3, 0755, 0, d, 2, l + 1, 1, &buf, &len, &err) == 0 && buf);
	free(buf);
}

int main(void)
{
	searches();
	builder_refuses();
	return test_exit();
}
