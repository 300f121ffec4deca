// SPDX-License-Identifier: MIT
/*
 * Package archive records (store/conda/pkgrec.c) on any bytes: the input is a record's
 * decompressed bytes, framed here as the catalog stores one (zstd, with its checksum), so
 * the fuzzer reaches the parser rather than the checksum. pkgrec_open reads nothing outside
 * them and, when it accepts them, every path and pyc is found at its own index, and the
 * builder writes the very same bytes from what it read (K1, K2: one encoding per record).
 */
#include "fuzz.h"
#include "pkgrec.h"

#include <errno.h>
#include <zstd.h>

static size_t frame(const uint8_t *data, size_t size, uint8_t **ret)
{
	size_t cap = ZSTD_compressBound(size), n;
	ZSTD_CCtx *c = ZSTD_createCCtx();

	*ret = malloc(cap);
	FUZZ_CHECK(c && *ret);
	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	n = ZSTD_compress2(c, *ret, cap, data, size);
	FUZZ_CHECK(!ZSTD_isError(n));
	ZSTD_freeCCtx(c);
	return n;
}

/* The record's bytes as the builder writes them from rec. */
static void rebuild(const struct pkgrec *rec, const uint8_t *data, size_t size)
{
	struct cfs_err err = {{0}};
	struct pkgrec_builder *b = NULL;
	static const char *const names[] = {"info/files",     "info/has_prefix", "info/index.json",
	                                    "info/link.json", "info/no_link",    "info/paths.json"};
	uint8_t *out = NULL, *raw;
	size_t olen = 0;
	unsigned long long rlen;
	bool v1;

	FUZZ_CHECK(pkgrec_builder_new(pkgrec_sha256(rec), pkgrec_md5(rec), pkgrec_size(rec),
	                              pkgrec_pyver(rec), &b) == 0);
	for (size_t i = 0; i < pkgrec_npaths(rec); i++)
		FUZZ_CHECK(pkgrec_add_path(b, pkgrec_path_at(rec, i)) == 0);
	for (size_t i = 0; i < pkgrec_npycs(rec); i++)
		FUZZ_CHECK(pkgrec_add_pyc(b, pkgrec_pyc_at(rec, i)) == 0);
	/* Info files can only be listed by name: a record with others is not rebuilt. */
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		const uint8_t *d;
		size_t len;

		if (pkgrec_info(rec, names[i], &d, &len) == 0)
			FUZZ_CHECK(pkgrec_add_info(b, names[i], d, len) == 0);
	}
	if (pkgrec_meta(rec))
		FUZZ_CHECK(pkgrec_set_meta(b, pkgrec_meta(rec)) == 0);
	FUZZ_CHECK(pkgrec_finish(b, &out, &olen, &err) == 0);
	rlen = ZSTD_getFrameContentSize(out, olen);
	raw = malloc(rlen ? rlen : 1);
	FUZZ_CHECK(raw && ZSTD_decompress(raw, rlen ? rlen : 1, out, olen) == rlen);
	/* Format 1 is written again as format 2: its magic's digit, and no conda-meta
	 * record's flag at its end. */
	v1 = size >= 8 && data[6] == '1';
	if (rlen == size + v1)
		FUZZ_CHECK(memcmp(raw + 7, data + 7, size - 7) == 0 && raw[6] == '2' &&
		           (!v1 || raw[size] == 0));
	else
		FUZZ_CHECK(rlen < size + v1); /* info files of other names were left out */
	free(raw);
	free(out);
	pkgrec_builder_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfs_err err = {{0}};
	struct pkgrec *rec = NULL;
	uint8_t *z = NULL;
	size_t zlen = frame(data, size, &z);
	int r = pkgrec_open(z, zlen, "fuzz", &rec, &err);

	if (r) {
		FUZZ_CHECK(r == -EUCLEAN);
		fuzz_check_message(err.msg, "fuzz: ");
		free(z);
		return 0;
	}
	for (size_t i = 0; i < pkgrec_npaths(rec); i++)
		FUZZ_CHECK(pkgrec_path(rec, pkgrec_path_at(rec, i)->path) ==
		           pkgrec_path_at(rec, i));
	for (size_t i = 0; i < pkgrec_npycs(rec); i++)
		FUZZ_CHECK(pkgrec_pyc(rec, pkgrec_pyc_at(rec, i)->path) == pkgrec_pyc_at(rec, i));
	rebuild(rec, data, size);
	pkgrec_free(rec);
	free(z);
	return 0;
}
