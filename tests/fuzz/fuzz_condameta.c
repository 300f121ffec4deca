// SPDX-License-Identifier: MIT
/*
 * conda-meta records (store/conda/condameta.c) on any bytes: a prefix whose conda-meta holds
 * the input as its one record, read as ingest and hash read a prefix. An error is one line
 * naming the record; a read prefix answers placeholder lookups for any path.
 */
#include "condafs/store.h"
#include "condameta.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *prefix;
	struct cfs_err err = {{0}};
	struct condameta *m = NULL;
	bool binary;
	size_t len;

	if (!prefix) {
		if (asprintf(&prefix, "%s/record", fuzz_tmpdir()) < 0)
			abort();
		free(fuzz_write(prefix, "conda-meta/history", NULL, 0));
	}
	free(fuzz_write(prefix, "conda-meta/fuzz-1-0.json", data, size));
	if (condameta_read(prefix, &m, &err) < 0) {
		FUZZ_CHECK(m == NULL);
		/* Not checked for one plain line: messages quote the input's strings
		 * raw (a newline, an escape sequence), and escaping control bytes on output
		 * is another item of issue 11. */
		fuzz_check_message(err.msg, prefix);
		return 0;
	}
	FUZZ_CHECK(pkgset_count(condameta_pkgset(m)) == 1);
	for (const char *p = "bin/python\0lib/libz.so\0\0"; *p; p += strlen(p) + 1)
		if (condameta_placeholder(m, p, &binary, &len))
			FUZZ_CHECK(len > 0);
	condameta_free(m);
	return 0;
}
