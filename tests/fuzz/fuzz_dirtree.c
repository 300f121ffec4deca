// SPDX-License-Identifier: MIT
/*
 * Directory objects (store/dirtree.c) on any bytes: dirtree_open reads nothing outside
 * them and, when it accepts them, every entry reads back, every name is found at its own
 * index, and the builder writes the very same bytes from those entries (T1, T2: one
 * encoding per directory, so equal directories are one object).
 */
#include "dirtree.h"
#include "fuzz.h"

#include <errno.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfs_err err = {{0}};
	struct dirtree_builder *b;
	struct dirtree t;
	uint8_t *copy = malloc(size ? size : 1), *out = NULL;
	size_t olen = 0;
	int r;

	FUZZ_CHECK(copy);
	/* An exact-size copy, so ASan sees a read one byte past the end. */
	memcpy(copy, data, size);
	r = dirtree_open(copy, size, "fuzz", &t, &err);
	if (r) {
		FUZZ_CHECK(r == -EUCLEAN);
		fuzz_check_message(err.msg, "fuzz: ");
		free(copy);
		return 0;
	}
	FUZZ_CHECK(dirtree_builder_new(&b) == 0);
	for (uint32_t i = 0; i < t.n; i++) {
		struct dirtree_entry e;
		uint32_t at;

		dirtree_get(&t, i, &e);
		FUZZ_CHECK(dirtree_find(&t, e.name, e.namelen, &at) == 0 && at == i);
		FUZZ_CHECK(dirtree_add(b, &e, &err) == 0);
	}
	FUZZ_CHECK(dirtree_builder_finish(b, &out, &olen, &err) == 0);
	FUZZ_CHECK(olen == size && memcmp(out, copy, size) == 0);
	free(out);
	dirtree_builder_free(b);
	free(copy);
	return 0;
}
