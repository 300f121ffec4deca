// SPDX-License-Identifier: MIT
/*
 * Tree images (store/envimage.c) on any bytes: the head and tables are read without
 * leaving them and, when accepted, every directory and record lies inside the image and
 * each record is found by its own key (T6).
 */
#include "envimage.h"
#include "fuzz.h"

#include <errno.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfs_err err = {{0}};
	struct envimage_head h;
	struct envimage m;
	uint8_t *copy = malloc(size ? size : 1);
	int r;

	FUZZ_CHECK(copy);
	/* An exact-size copy, so ASan sees a read one byte past the end. */
	memcpy(copy, data, size);
	if (size < ENVIMAGE_HEAD) {
		free(copy);
		return 0;
	}
	r = envimage_head(copy, size, "fuzz", &h, &err);
	if (!r)
		r = envimage_open(&h, copy + ENVIMAGE_HEAD, size, "fuzz", &m, &err);
	if (r) {
		FUZZ_CHECK(r == -EUCLEAN);
		fuzz_check_message(err.msg, "fuzz: ");
		free(copy);
		return 0;
	}
	for (uint32_t i = 0; i < m.ndirs; i++) {
		uint32_t off, len;

		envimage_dir(&m, i, &off, &len);
		FUZZ_CHECK(len > 0 && off >= ENVIMAGE_HEAD + h.tables_len &&
		           off + (uint64_t)len <= size);
	}
	for (uint32_t i = 0; i < m.nrecs; i++) {
		struct objkey k;
		uint32_t off, len;

		memcpy(k.b, m.recs + 24 * (size_t)i, 16);
		FUZZ_CHECK(envimage_record(&m, &k, &off, &len) == 0);
		FUZZ_CHECK(off + (uint64_t)len <= size);
	}
	free(copy);
	return 0;
}
