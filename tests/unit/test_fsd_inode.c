// SPDX-License-Identifier: MIT
/*
 * condafsd's nodeid space (fs/inode.c, fs/served.c; docs/ARCHITECTURE.md, "Inode
 * numbers"): id << 2 | kind round-trips for every kind up to the largest id, ids that do
 * not fit and nodeids nothing can have made are refused (the root among them), distinct
 * (kind, id) and distinct (environment, served file) never share a nodeid, and kind 3 is
 * split between .condafs (meta.c) and the served files without overlap.
 */
#include "fsd.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#define ID_MAX ((int64_t)(UINT64_MAX >> 3)) /* 2^61 - 1 */

static const enum ino_kind kinds[] = {INO_NODE, INO_GROUP, INO_TAG, INO_META};

static int cmp_ino(const void *a, const void *b)
{
	fuse_ino_t x = *(const fuse_ino_t *)a, y = *(const fuse_ino_t *)b;

	return (x > y) - (x < y);
}

/* No two of the n nodeids are equal. */
static bool distinct(fuse_ino_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_ino);
	for (size_t i = 1; i < n; i++)
		if (v[i] == v[i - 1])
			return false;
	return true;
}

/* A deterministic spread of 64-bit values (splitmix64). */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void test_round_trip(void)
{
	static const int64_t ids[] = {1,          2,     3, 4, 0xffff, 1ll << 32, (1ll << 60) + 1,
	                              ID_MAX - 1, ID_MAX};

	for (size_t k = 0; k < 4; k++) {
		for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
			fuse_ino_t ino = 0;
			enum ino_kind kind = INO_NODE;
			int64_t id = 0;

			CHECK(ino_make(kinds[k], ids[i], &ino) == 0);
			CHECK(ino == ((uint64_t)ids[i] << 2 | (uint64_t)kinds[k]));
			CHECK(ino != 0 && ino != INO_ROOT);
			CHECK(ino_split(ino, &kind, &id) == 0);
			CHECK(kind == kinds[k]);
			CHECK(id == ids[i]);
		}
	}
	/* The largest nodeid is below 2^63: no sign trouble in an ino_t or an off_t. */
	{
		fuse_ino_t ino = 0;

		CHECK(ino_make(INO_META, ID_MAX, &ino) == 0);
		CHECK(ino == (UINT64_MAX >> 1));
	}
}

static void test_refused(void)
{
	static const int64_t bad_ids[] = {0, -1, INT64_MIN, ID_MAX + 1, INT64_MAX};
	/* id 0 of every kind (the root is kind 1's), and ids above the largest. */
	static const fuse_ino_t bad_inos[] = {0,
	                                      1,
	                                      2,
	                                      3,
	                                      (uint64_t)1 << 63,
	                                      ((uint64_t)ID_MAX + 1) << 2 | INO_GROUP,
	                                      UINT64_MAX,
	                                      UINT64_MAX - 3};

	for (size_t k = 0; k < 4; k++) {
		for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
			fuse_ino_t ino = 12345;

			CHECK(ino_make(kinds[k], bad_ids[i], &ino) == -EOVERFLOW);
			CHECK(ino == 12345); /* written only on success */
		}
	}
	CHECK(INO_ROOT == 1);
	for (size_t i = 0; i < sizeof(bad_inos) / sizeof(bad_inos[0]); i++) {
		enum ino_kind kind = INO_TAG;
		int64_t id = 777;

		CHECK(ino_split(bad_inos[i], &kind, &id) == -ESTALE);
		CHECK(kind == INO_TAG && id == 777);
	}
}

/* Every (kind, id) has its own nodeid, and every nodeid ino_split takes is one ino_make
 * made: the two are inverse bijections. */
static void test_no_collision(void)
{
	enum { N = 4096 };
	fuse_ino_t *v = malloc(4 * N * sizeof(*v));
	uint64_t seed = 42;
	size_t n = 0;

	for (size_t i = 0; i < N; i++) {
		/* Small ids (where real stores live), then anywhere up to the largest. */
		int64_t id = i < N / 2 ? (int64_t)i + 1
		                       : (int64_t)(next_random(&seed) % (uint64_t)ID_MAX) + 1;

		for (size_t k = 0; k < 4; k++)
			CHECK(ino_make(kinds[k], id, &v[n++]) == 0);
	}
	CHECK(distinct(v, n));
	for (size_t i = 0; i < N; i++) {
		fuse_ino_t x = next_random(&seed), back = 0;
		enum ino_kind kind;
		int64_t id;

		if (ino_split(x, &kind, &id) == 0) {
			CHECK(ino_make(kind, id, &back) == 0);
			CHECK(back == x);
		} else {
			CHECK(x >> 2 == 0 || x >> 2 > (uint64_t)ID_MAX);
		}
	}
	free(v);
}

static void test_of_node(void)
{
	struct store_node n = {.id = 10, .type = NODE_FILE};
	fuse_ino_t ino = 0, want = 0;

	/* A file of one path: its own node. */
	CHECK(ino_of_node(&n, &ino) == 0);
	CHECK(ino_make(INO_NODE, 10, &want) == 0 && ino == want);
	/* A further path of one source inode: the first path's node. */
	n.hardlink = 7;
	CHECK(ino_of_node(&n, &ino) == 0);
	CHECK(ino_make(INO_NODE, 7, &want) == 0 && ino == want);
	/* In a group: the group's, whatever its hard links. */
	n.group = 99;
	CHECK(ino_of_node(&n, &ino) == 0);
	CHECK(ino_make(INO_GROUP, 99, &want) == 0 && ino == want);
	/* Directories and symlinks are themselves, whatever the other fields say. */
	n.type = NODE_DIR;
	CHECK(ino_of_node(&n, &ino) == 0);
	CHECK(ino_make(INO_NODE, 10, &want) == 0 && ino == want);
	n.type = NODE_SYMLINK;
	CHECK(ino_of_node(&n, &ino) == 0 && ino == want);
}

static void test_generation(void)
{
	CHECK(ino_generation("0123456789abcdef0123456789abcdef") == 0x0123456789abcdefull);
	CHECK(ino_generation("ffffffffffffffff0000000000000000") == UINT64_MAX);
	/* 0 is the root's and the groups': an environment never gets it. */
	CHECK(ino_generation("00000000000000001111111111111111") == 1);
	CHECK(ino_generation("0000000000000001ffffffffffffffff") == 1);
	CHECK(ino_generation("1000000000000000ffffffffffffffff") == 1ull << 60);
}

/* Kind 3: served files (env id << 2 | file + 1) << 2 and .condafs's x << 2 | sub, where x
 * 1 to 3 with sub 0 are .condafs's fixed nodes. */
static void test_served(void)
{
	static const int64_t envs[] = {1, 2, 3, 4, 5, 1000, 1ll << 40, (1ll << 57) - 1};
	enum { NE = sizeof(envs) / sizeof(envs[0]) };
	fuse_ino_t v[NE * FROZEN_FILES + 3 + 3 * 3], ino = 5;
	size_t n = 0;

	for (size_t i = 0; i < NE; i++) {
		for (int f = 0; f < FROZEN_FILES; f++) {
			enum frozen_file back_f = FROZEN_FILES;
			enum ino_kind kind;
			int64_t back_env = 0, id;

			CHECK(served_ino(envs[i], (enum frozen_file)f, &v[n]) == 0);
			CHECK(ino_split(v[n], &kind, &id) == 0 && kind == INO_META);
			CHECK(served_owns(v[n]));
			CHECK(!meta_owns(v[n]));
			CHECK(served_split(v[n], &back_env, &back_f));
			CHECK(back_env == envs[i]);
			CHECK(back_f == (enum frozen_file)f);
			n++;
		}
	}
	/* An id that makes no nodeid is refused, and *ret left alone. */
	CHECK(served_ino(0, FROZEN_CONDA, &ino) == -EOVERFLOW);
	CHECK(served_ino(-1, FROZEN_CONDA, &ino) == -EOVERFLOW);
	CHECK(served_ino(1ll << 57, FROZEN_PYTHON, &ino) == -EOVERFLOW);
	CHECK(served_ino(INT64_MAX, FROZEN_PYTHON, &ino) == -EOVERFLOW);
	CHECK(ino == 5);

	/* .condafs's nodeids, as meta.c makes them: not served files, and none equal to one. */
	for (int64_t x = 1; x <= 3; x++)
		CHECK(ino_make(INO_META, x << 2, &v[n++]) == 0);
	for (unsigned sub = 1; sub <= 3; sub++) {
		static const int64_t xs[] = {1, 5, 1000};

		for (size_t i = 0; i < 3; i++)
			CHECK(ino_make(INO_META, xs[i] << 2 | sub, &v[n++]) == 0);
	}
	for (size_t i = NE * FROZEN_FILES; i < n; i++) {
		int64_t env;
		enum frozen_file f;

		CHECK(!served_owns(v[i]));
		CHECK(!served_split(v[i], &env, &f));
		CHECK(meta_owns(v[i]));
	}
	CHECK(n == sizeof(v) / sizeof(v[0]));
	CHECK(distinct(v, n));

	/* Nodeids of the other kinds, and the root, are neither's. */
	for (size_t k = 0; k < 3; k++) {
		CHECK(ino_make(kinds[k], 5 << 2 | 1, &ino) == 0);
		CHECK(!served_owns(ino));
		CHECK(!meta_owns(ino));
	}
	CHECK(!served_owns(INO_ROOT));
	CHECK(!meta_owns(INO_ROOT));
}

int main(void)
{
	test_round_trip();
	test_refused();
	test_no_collision();
	test_of_node();
	test_generation();
	test_served();
	return test_exit();
}
