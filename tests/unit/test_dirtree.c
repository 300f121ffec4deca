// SPDX-License-Identifier: MIT
/*
 * Directory objects (store/dirtree.c, docs/tree-format.md): what the builder writes reads
 * back entry for entry, sorted; a lookup finds every name and no other; and every rule of
 * the format broken in the bytes is refused (T1), as the builder refuses to write it (T2).
 */
#include "dirtree.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct dirtree_entry ent(enum node_type type, const char *name)
{
	struct dirtree_entry e = {
	        .type = type,
	        .mode = type == NODE_SYMLINK ? 0777 : 0644,
	        .mtime_ns = 1700000000123456789,
	        .name = (const uint8_t *)name,
	        .namelen = strlen(name),
	};

	memset(e.key.b, name[0], 16);
	return e;
}

static uint8_t *build(const struct dirtree_entry *v, size_t n, size_t *len)
{
	struct dirtree_builder *b;
	struct cfs_err err = {{0}};
	uint8_t *buf = NULL;

	if (dirtree_builder_new(&b))
		return NULL;
	for (size_t i = 0; i < n; i++)
		CHECK(dirtree_add(b, &v[i], &err) == 0);
	CHECK(dirtree_builder_finish(b, &buf, len, &err) == 0);
	dirtree_builder_free(b);
	return buf;
}

static bool same(const struct dirtree_entry *a, const struct dirtree_entry *b)
{
	return a->type == b->type && a->mode == b->mode && a->mtime_ns == b->mtime_ns &&
	       a->namelen == b->namelen && memcmp(a->name, b->name, a->namelen) == 0 &&
	       memcmp(a->key.b, b->key.b, a->type == NODE_SYMLINK ? 0 : 16) == 0 &&
	       a->size == b->size && a->inserts == b->inserts && a->group == b->group &&
	       a->reloc_len == b->reloc_len && a->reloc_external == b->reloc_external &&
	       (a->reloc_external
	                ? memcmp(a->reloc_key.b, b->reloc_key.b, 16) == 0
	                : !a->reloc_len || memcmp(a->reloc, b->reloc, a->reloc_len) == 0) &&
	       a->target_len == b->target_len &&
	       (!a->target_len || memcmp(a->target, b->target, a->target_len) == 0);
}

/* Whether dirtree_open refuses buf with a message naming the object. */
static bool refused(const uint8_t *buf, size_t len)
{
	struct cfs_err err = {{0}};
	struct dirtree t;
	int r = dirtree_open(buf, len, "obj", &t, &err);

	return r == -EUCLEAN && strncmp(err.msg, "obj: ", 5) == 0;
}

static void round_trip(void)
{
	static const uint8_t rec[] = {1, 2, 3, 4, 5};
	struct dirtree_entry v[8] = {
	        ent(NODE_FILE, "zlib.h"),     ent(NODE_DIR, "site-packages"),
	        ent(NODE_SYMLINK, "python3"), ent(NODE_FILE, "python3.11"),
	        ent(NODE_FILE, "a"),          ent(NODE_DIR, "\xc3\xa9t\xc3\xa9"),
	        ent(NODE_FILE, "big.txt"),    ent(NODE_SYMLINK, "top"),
	};
	static const char *const sorted[] = {"a",          "big.txt",          "python3",
	                                     "python3.11", "site-packages",    "top",
	                                     "zlib.h",     "\xc3\xa9t\xc3\xa9"};
	struct cfs_err err = {{0}};
	struct dirtree t;
	uint8_t *buf;
	size_t len = 0;
	uint32_t idx;

	v[0].size = 123456789012;
	v[0].group = 77;
	v[2].target = (const uint8_t *)"python3.11";
	v[2].target_len = 10;
	v[3].size = 1;
	v[3].inserts = 3;
	v[3].reloc = rec;
	v[3].reloc_len = sizeof(rec);
	v[4].mtime_ns = -5;
	v[4].mode = 04755;
	/* A record too long to be inline, kept apart by its key. */
	v[6].inserts = 9;
	v[6].reloc_len = DIRTREE_RELOC_INLINE + 1;
	v[6].reloc_external = true;
	memset(v[6].reloc_key.b, 0xab, 16);
	/* A link to the prefix itself: no target bytes, a record. */
	v[7].inserts = 1;
	v[7].reloc = rec;
	v[7].reloc_len = sizeof(rec);
	buf = build(v, 8, &len);
	CHECK(buf && dirtree_open(buf, len, "obj", &t, &err) == 0 && t.n == 8);
	for (uint32_t i = 0; buf && i < t.n; i++) {
		struct dirtree_entry e;
		size_t want = 0;

		dirtree_get(&t, i, &e);
		CHECK(e.namelen == strlen(sorted[i]) && memcmp(e.name, sorted[i], e.namelen) == 0);
		while (strcmp(sorted[i], (const char *)v[want].name) != 0)
			want++;
		CHECK(same(&e, &v[want]));
		CHECK(dirtree_find(&t, sorted[i], strlen(sorted[i]), &idx) == 0 && idx == i);
	}
	CHECK(buf && dirtree_find(&t, "python", 6, &idx) == -ENOENT);
	CHECK(buf && dirtree_find(&t, "zz", 2, &idx) == -ENOENT);
	CHECK(buf && dirtree_find(&t, "", 0, &idx) == -ENOENT);

	/* Any order in, one object out. */
	for (size_t i = 0; i < 4; i++) {
		struct dirtree_entry x = v[i];

		v[i] = v[7 - i];
		v[7 - i] = x;
	}
	{
		size_t len2 = 0;
		uint8_t *again = build(v, 8, &len2);

		CHECK(again && len2 == len && memcmp(again, buf, len) == 0);
		free(again);
	}

	/* Every byte flipped is refused or reads as other entries the builder would write
	 * identically; none reads past the object (ASan watches). */
	for (size_t i = 0; buf && i < len; i++) {
		uint8_t *bad = malloc(len);

		memcpy(bad, buf, len);
		bad[i] ^= 0x5a;
		if (dirtree_open(bad, len, "obj", &t, &err) == 0) {
			struct dirtree_builder *b;
			uint8_t *out = NULL;
			size_t olen = 0;

			CHECK(dirtree_builder_new(&b) == 0);
			for (uint32_t k = 0; k < t.n; k++) {
				struct dirtree_entry e;

				dirtree_get(&t, k, &e);
				CHECK(dirtree_add(b, &e, &err) == 0);
			}
			CHECK(dirtree_builder_finish(b, &out, &olen, &err) == 0);
			CHECK(olen == len && memcmp(out, bad, len) == 0);
			free(out);
			dirtree_builder_free(b);
		}
		free(bad);
	}
	/* Cut short anywhere: refused. */
	for (size_t cut = 0; buf && cut < len; cut++)
		CHECK(refused(buf, cut));
	free(buf);
}

static void empty(void)
{
	struct cfs_err err = {{0}};
	struct dirtree t;
	size_t len = 0;
	uint8_t *buf = build(NULL, 0, &len);
	uint32_t idx;

	CHECK(buf && len == 16 && dirtree_open(buf, len, "obj", &t, &err) == 0 && t.n == 0);
	CHECK(buf && dirtree_find(&t, "a", 1, &idx) == -ENOENT);
	free(buf);
}

static void builder_refuses(void)
{
	struct dirtree_entry bad[8];
	struct dirtree_builder *b;
	struct cfs_err err = {{0}};
	uint8_t *buf = NULL;
	size_t len;

	for (size_t i = 0; i < 8; i++)
		bad[i] = ent(NODE_FILE, "x");
	bad[0].name = (const uint8_t *)"a/b";
	bad[0].namelen = 3;
	bad[1].name = (const uint8_t *)"..";
	bad[1].namelen = 2;
	bad[2].namelen = 0;
	bad[3].mode = 010000;
	bad[4].group = 3;
	bad[4].reloc = (const uint8_t *)"r";
	bad[4].reloc_len = 1;
	bad[5].inserts = 1;
	bad[6] = ent(NODE_SYMLINK, "l");
	bad[7] = ent(NODE_SYMLINK, "l");
	bad[7].target = (const uint8_t *)"a\0b";
	bad[7].target_len = 3;
	CHECK(dirtree_builder_new(&b) == 0);
	for (size_t i = 0; i < 8; i++) {
		err.msg[0] = 0;
		CHECK(dirtree_add(b, &bad[i], &err) == -EINVAL && strstr(err.msg, "entry"));
	}
	/* A name twice. */
	bad[0] = ent(NODE_FILE, "same");
	CHECK(dirtree_add(b, &bad[0], &err) == 0 && dirtree_add(b, &bad[0], &err) == 0);
	CHECK(dirtree_builder_finish(b, &buf, &len, &err) == -EINVAL && strstr(err.msg, "twice"));
	CHECK(buf == NULL);
	dirtree_builder_free(b);
}

static void reader_refuses(void)
{
	struct dirtree_entry v[2] = {ent(NODE_FILE, "a"), ent(NODE_FILE, "b")};
	size_t len = 0;
	uint8_t *buf = build(v, 2, &len);
	uint8_t *bad;

	if (!buf)
		return;
	bad = malloc(len);
	/* Names out of order: swap the two one-letter names in place. */
	memcpy(bad, buf, len);
	for (size_t i = 24; i + 1 < len; i++)
		if (bad[i] == 1 && bad[i + 1] == 'a')
			bad[i + 1] = 'c';
	CHECK(refused(bad, len));
	/* Flags. */
	memcpy(bad, buf, len);
	bad[12] = 1;
	CHECK(refused(bad, len));
	/* More entries than the bytes hold. */
	memcpy(bad, buf, len);
	bad[8] = 0xff;
	bad[9] = 0xff;
	CHECK(refused(bad, len));
	/* Bytes after the last entry. */
	{
		uint8_t *longer = calloc(1, len + 1);

		memcpy(longer, buf, len);
		CHECK(refused(longer, len + 1));
		free(longer);
	}
	/* Another magic. */
	memcpy(bad, buf, len);
	bad[7] = '2';
	CHECK(refused(bad, len));
	free(bad);
	free(buf);
}

int main(void)
{
	round_trip();
	empty();
	builder_refuses();
	reader_refuses();
	return test_exit();
}
