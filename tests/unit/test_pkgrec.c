// SPDX-License-Identifier: MIT
/*
 * Package archive records (store/conda/pkgrec.c, docs/package-format.md): what the builder writes
 * reads back, entry for entry; lookups find every path, pyc and info file and nothing else;
 * the builder refuses what the format does not allow (K2); and every byte of a record
 * flipped, or the record cut short anywhere, is refused or read as a record that still
 * follows every rule (K1), never read past its end (ASan watches).
 */
#include "pkgrec.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const uint8_t reloc[] = {1, 2, 3, 4};
static struct pkgrec_meta meta = {.url = "https://ch.invalid/c/linux-64/z-1-h_0.conda",
                                  .fn = "z-1-h_0.conda",
                                  .channel = "https://ch.invalid/c/linux-64",
                                  .pyver = "",
                                  .size = 1234};

static uint8_t *build(size_t *len)
{
	struct pkgrec_builder *b = NULL;
	struct cfs_err err = {{0}};
	struct pkgrec_entry e = {.path = "lib/libz.so.1.2.13",
	                         .type = NODE_FILE,
	                         .mode = 0755,
	                         .mtime_ns = 1700000000000000000,
	                         .size = 100,
	                         .neutral_size = 100};
	uint8_t *buf = NULL;

	CHECK(pkgrec_builder_new("ab12", "cd34", 4096, "3.11", &b) == 0);
	CHECK(pkgrec_add_info(b, "info/paths.json", (const uint8_t *)"{}", 2) == 0);
	CHECK(pkgrec_add_info(b, "info/index.json", (const uint8_t *)"{\"name\":\"z\"}", 12) == 0);
	memset(e.key.b, 'k', 16);
	CHECK(pkgrec_add_path(b, &e) == 0);
	CHECK(pkgrec_add_path(b, &(struct pkgrec_entry){.path = "lib/libz.so",
	                                                .type = NODE_SYMLINK,
	                                                .target = "libz.so.1.2.13"}) == 0);
	CHECK(pkgrec_add_path(b, &(struct pkgrec_entry){.path = "share/empty", .type = NODE_DIR}) ==
	      0);
	CHECK(pkgrec_add_path(b, &(struct pkgrec_entry){.path = "bin/zcfg",
	                                                .type = NODE_FILE,
	                                                .mode = 0755,
	                                                .size = 90,
	                                                .neutral_size = 40,
	                                                .inserts = 2,
	                                                .reloc = reloc,
	                                                .reloc_len = sizeof(reloc)}) == 0);
	CHECK(pkgrec_add_pyc(b, &(struct pkgrec_entry){.path = "lib/python3.11/site-packages/"
	                                                       "__pycache__/z.cpython-311.pyc",
	                                               .type = NODE_FILE,
	                                               .mode = 0644,
	                                               .size = 7,
	                                               .neutral_size = 7}) == 0);
	meta.key.b[3] = 'm';
	CHECK(pkgrec_set_meta(b, &meta) == 0);
	CHECK(pkgrec_finish(b, &buf, len, &err) == 0);
	pkgrec_builder_free(b);
	return buf;
}

static void reads_back(void)
{
	struct cfs_err err = {{0}};
	struct pkgrec *rec = NULL;
	const struct pkgrec_entry *e;
	const uint8_t *data;
	size_t len, dlen;
	uint8_t *buf = build(&len);

	CHECK(buf && pkgrec_open(buf, len, "rec", &rec, &err) == 0);
	if (!rec) {
		free(buf);
		return;
	}
	CHECK_STR(pkgrec_sha256(rec), "ab12");
	CHECK_STR(pkgrec_md5(rec), "cd34");
	CHECK(pkgrec_size(rec) == 4096);
	CHECK_STR(pkgrec_pyver(rec), "3.11");
	CHECK(pkgrec_info(rec, "info/index.json", &data, &dlen) == 0 && dlen == 12 &&
	      memcmp(data, "{\"name\":\"z\"}", 12) == 0);
	CHECK(pkgrec_info(rec, "info/link.json", &data, &dlen) == -ENOENT);
	CHECK(pkgrec_npaths(rec) == 4 && pkgrec_npycs(rec) == 1);
	/* Sorted by path bytes. */
	CHECK_STR(pkgrec_path_at(rec, 0)->path, "bin/zcfg");
	CHECK_STR(pkgrec_path_at(rec, 3)->path, "share/empty");
	e = pkgrec_path(rec, "lib/libz.so.1.2.13");
	CHECK(e && e->type == NODE_FILE && e->mode == 0755 && e->size == 100 &&
	      e->mtime_ns == 1700000000000000000 && e->key.b[15] == 'k' && !e->reloc);
	e = pkgrec_path(rec, "bin/zcfg");
	CHECK(e && e->inserts == 2 && e->neutral_size == 40 && e->reloc_len == sizeof(reloc) &&
	      memcmp(e->reloc, reloc, sizeof(reloc)) == 0);
	e = pkgrec_path(rec, "lib/libz.so");
	CHECK(e && e->type == NODE_SYMLINK);
	CHECK_STR(e ? e->target : NULL, "libz.so.1.2.13");
	CHECK(pkgrec_path(rec, "lib") == NULL && pkgrec_path(rec, "zz") == NULL);
	CHECK(pkgrec_pyc(rec, "lib/python3.11/site-packages/__pycache__/z.cpython-311.pyc"));
	CHECK(pkgrec_pyc(rec, "bin/zcfg") == NULL);
	CHECK(pkgrec_meta(rec) && pkgrec_meta(rec)->size == 1234 &&
	      pkgrec_meta(rec)->key.b[3] == 'm');
	CHECK_STR(pkgrec_meta(rec) ? pkgrec_meta(rec)->url : NULL, meta.url);
	CHECK_STR(pkgrec_meta(rec) ? pkgrec_meta(rec)->fn : NULL, meta.fn);
	CHECK_STR(pkgrec_meta(rec) ? pkgrec_meta(rec)->channel : NULL, meta.channel);
	CHECK_STR(pkgrec_meta(rec) ? pkgrec_meta(rec)->pyver : NULL, "");
	pkgrec_free(rec);
	free(buf);
}

static void builder_refuses(void)
{
	struct cfs_err err = {{0}};
	struct pkgrec_builder *b = NULL;
	uint8_t *buf = NULL;
	size_t len;
	const struct pkgrec_entry bad[] = {
	        {.path = "", .type = NODE_DIR},
	        {.path = "a", .type = NODE_DIR, .mode = 010000},
	        {.path = "a", .type = NODE_SYMLINK, .target = ""},
	        {.path = "a", .type = NODE_FILE, .size = 3, .neutral_size = 3, .inserts = 1},
	        {.path = "a", .type = NODE_FILE, .size = 3, .neutral_size = 2},
	        {.path = "a", .type = (enum node_type)7},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		CHECK(pkgrec_builder_new(NULL, NULL, 0, NULL, &b) == 0);
		CHECK(pkgrec_add_path(b, &bad[i]) == 0);
		CHECK(pkgrec_finish(b, &buf, &len, &err) == -EINVAL);
		pkgrec_builder_free(b);
	}
	CHECK(pkgrec_builder_new(NULL, NULL, 0, NULL, &b) == 0);
	CHECK(pkgrec_add_path(b, &(struct pkgrec_entry){.path = "a", .type = NODE_DIR}) == 0);
	CHECK(pkgrec_add_path(b, &(struct pkgrec_entry){.path = "a", .type = NODE_DIR}) == 0);
	CHECK(pkgrec_finish(b, &buf, &len, &err) == -EINVAL && strstr(err.msg, "twice"));
	pkgrec_builder_free(b);
	CHECK(pkgrec_builder_new(NULL, NULL, 0, NULL, &b) == 0);
	CHECK(pkgrec_set_meta(
	              b, &(struct pkgrec_meta){.url = "", .fn = "a", .channel = "", .pyver = ""}) ==
	      -EINVAL);
	pkgrec_builder_free(b);
	CHECK(pkgrec_builder_new(NULL, NULL, 0, NULL, &b) == 0);
	CHECK(pkgrec_add_pyc(b, &(struct pkgrec_entry){.path = "a", .type = NODE_DIR}) == 0);
	CHECK(pkgrec_finish(b, &buf, &len, &err) == -EINVAL);
	pkgrec_builder_free(b);
	CHECK(buf == NULL);
}

/* A frame as pkgrec_finish writes one, with its checksum. */
static size_t compress(uint8_t *z, size_t cap, const uint8_t *raw, size_t len)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t n;

	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	n = ZSTD_compress2(c, z, cap, raw, len);
	ZSTD_freeCCtx(c);
	return n;
}

/* rec reads as the record build() wrote. */
static bool same_as_built(const struct pkgrec *rec)
{
	const struct pkgrec_entry *e = pkgrec_path(rec, "bin/zcfg");

	return strcmp(pkgrec_sha256(rec), "ab12") == 0 && strcmp(pkgrec_md5(rec), "cd34") == 0 &&
	       pkgrec_size(rec) == 4096 && pkgrec_npaths(rec) == 4 && pkgrec_npycs(rec) == 1 && e &&
	       e->inserts == 2 && e->reloc_len == sizeof(reloc) &&
	       memcmp(e->reloc, reloc, sizeof(reloc)) == 0 &&
	       pkgrec_path(rec, "lib/libz.so.1.2.13")->key.b[0] == 'k';
}

/* A record of format 1 (a catalog of version 7's) reads, with no conda-meta record; one of
 * format 2 without its record's flag does not. */
static void format_1(void)
{
	struct cfs_err err = {{0}};
	struct pkgrec *rec = NULL;
	size_t len, raw_len;
	uint8_t *buf = build(&len), *raw, *z;
	size_t zcap, zn;

	raw_len = (size_t)ZSTD_getFrameContentSize(buf, len);
	raw = malloc(raw_len);
	zcap = ZSTD_compressBound(raw_len);
	z = malloc(zcap);
	CHECK(raw && z && ZSTD_decompress(raw, raw_len, buf, len) == raw_len);
	if (!raw || !z)
		goto out;
	/* Format 2's record: a flag byte, four strings, the key, the size's varint. */
	raw_len -= 1 + (strlen(meta.url) + 2) + (strlen(meta.fn) + 2) + (strlen(meta.channel) + 2) +
	           2 + 16 + 2;
	zn = compress(z, zcap, raw, raw_len);
	CHECK(pkgrec_open(z, zn, "rec", &rec, &err) == -EUCLEAN &&
	      strstr(err.msg, "conda-meta record's flag"));
	raw[6] = '1';
	zn = compress(z, zcap, raw, raw_len);
	CHECK(pkgrec_open(z, zn, "rec", &rec, &err) == 0 && rec && same_as_built(rec) &&
	      !pkgrec_meta(rec));
	pkgrec_free(rec);
out:
	free(raw);
	free(z);
	free(buf);
}

/* Each bit of the stored frame flipped: refused (its checksum, or its header), or, for a
 * bit that does not change what the frame holds (its window size), the same record. */
static void flipped_frame(void)
{
	struct cfs_err err = {{0}};
	size_t len, refused = 0;
	uint8_t *buf = build(&len);

	for (size_t i = 0; buf && i < len * 8; i++) {
		struct pkgrec *rec = NULL;
		int r;

		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
		r = pkgrec_open(buf, len, "rec", &rec, &err);
		CHECK(r == -EUCLEAN || (r == 0 && same_as_built(rec)));
		refused += r == -EUCLEAN;
		pkgrec_free(rec);
		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	CHECK(refused > len * 7);
	free(buf);
}

/* Each byte of the decompressed record flipped, and the record cut at each length. */
static void damage(void)
{
	struct cfs_err err = {{0}};
	size_t len, raw_len, refused = 0;
	uint8_t *buf = build(&len), *raw, *z;
	size_t zcap;

	raw_len = (size_t)ZSTD_getFrameContentSize(buf, len);
	raw = malloc(raw_len);
	zcap = ZSTD_compressBound(raw_len);
	z = malloc(zcap);
	CHECK(raw && z && ZSTD_decompress(raw, raw_len, buf, len) == raw_len);
	for (size_t cut = 0; raw && z && cut <= raw_len; cut++) {
		for (size_t i = 0; i <= cut && i < raw_len + 1; i++) {
			struct pkgrec *rec = NULL;
			size_t zn;
			int r;

			/* cut < raw_len: the record cut short; cut == raw_len: byte i flipped. */
			if (cut < raw_len && i > 0)
				break;
			if (cut == raw_len && i == raw_len)
				break;
			if (cut == raw_len)
				raw[i] ^= 0x5a;
			zn = compress(z, zcap, raw, cut);
			r = pkgrec_open(z, zn, "rec", &rec, &err);
			CHECK(r == 0 || r == -EUCLEAN);
			if (r == 0) {
				/* Accepted: every lookup stays within it. */
				for (size_t k = 0; k < pkgrec_npaths(rec); k++)
					CHECK(pkgrec_path(rec, pkgrec_path_at(rec, k)->path) ==
					      pkgrec_path_at(rec, k));
				pkgrec_free(rec);
			} else {
				refused++;
			}
			if (cut == raw_len)
				raw[i] ^= 0x5a;
		}
	}
	CHECK(refused > raw_len);
	CHECK(pkgrec_open(buf, len / 2, "rec", &(struct pkgrec *){NULL}, &err) == -EUCLEAN);
	free(raw);
	free(z);
	free(buf);
}

int main(void)
{
	reads_back();
	format_1();
	builder_refuses();
	damage();
	flipped_frame();
	return test_exit();
}
