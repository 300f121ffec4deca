// SPDX-License-Identifier: MIT
/*
 * pip's dist-info METADATA (store/conda/condameta.c) on any bytes: a prefix with no conda
 * record and one site-packages/fuzz-1.0.dist-info whose METADATA is the input. Its name
 * and version come from the headers, else from the directory's name: either way the
 * prefix reads as one pip package, or fails with one line naming the file.
 */
#include "condafs/store.h"
#include "condameta.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *prefix;
	struct cfs_err err = {{0}};
	struct condameta *m = NULL;

	if (!prefix) {
		if (asprintf(&prefix, "%s/distinfo", fuzz_tmpdir()) < 0)
			abort();
		free(fuzz_write(prefix, "conda-meta/history", NULL, 0));
	}
	free(fuzz_write(prefix, "lib/python3.11/site-packages/fuzz-1.0.dist-info/METADATA", data,
	                size));
	if (condameta_read(prefix, &m, &err) < 0) {
		FUZZ_CHECK(m == NULL);
		/* Not checked for one plain line: messages quote the input's strings
		 * raw (a newline, an escape sequence), and escaping control bytes on output
		 * is another item of issue 11. */
		fuzz_check_message(err.msg, prefix);
		return 0;
	}
	FUZZ_CHECK(pkgset_count(condameta_pkgset(m)) == 1);
	FUZZ_CHECK(pkgset_at(condameta_pkgset(m), 0)->kind == PKG_PYPI);
	condameta_free(m);
	return 0;
}
