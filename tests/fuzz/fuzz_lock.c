// SPDX-License-Identifier: MIT
/*
 * Lock files of every format (store/conda/lock.c: explicit, environment.yml, conda-lock.yml,
 * pixi.lock; the format is told by content) on any bytes, read from a file as condafs
 * reads them, for no platform, linux-64 and one pixi environment: an error is one line
 * naming the file; a set has a hash and packages with a name, version and build, its
 * virtual packages are named "__..." with a spec and a source, and its CUDA need
 * (condafs/cuda.h) is a release or none. linux-64-cuda: a pixi.lock v7 platform.
 */
#include "condafs/cuda.h"
#include "condafs/store.h"
#include "fuzz.h"

static void check_set(const struct pkgset *set)
{
	struct cuda_need need;
	char hash[33];

	pkgset_hash(set, hash);
	FUZZ_CHECK(strlen(hash) == 32 && strspn(hash, "0123456789abcdef") == 32);
	for (size_t i = 0; i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);

		FUZZ_CHECK(p && p->name && *p->name && p->version);
	}
	for (size_t i = 0; i < pkgset_virtual_count(set); i++) {
		const struct pkg_virtual *v = pkgset_virtual_at(set, i);

		FUZZ_CHECK(v && !strncmp(v->name, "__", 2) && v->name[2] && v->spec && v->from);
	}
	cuda_need_of(set, &need);
	FUZZ_CHECK(need.major ? need.release[0] && need.source[0]
	                      : !need.release[0] && !need.source[0] && !need.minor);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const platform[] = {NULL, "linux-64", "osx-arm64", "linux-64-cuda"};
	static const char *const environment[] = {NULL, NULL, "test", NULL};
	char *path = fuzz_write(fuzz_tmpdir(), "fuzz.lock", data, size);

	for (size_t i = 0; i < sizeof(platform) / sizeof(platform[0]); i++) {
		struct cfs_err err = {{0}};
		struct pkgset *set = NULL;

		if (pkgset_from_lock(path, platform[i], environment[i], &set, &err) < 0) {
			FUZZ_CHECK(set == NULL);
			/* Not checked for one plain line: messages quote the input's strings
			 * raw (a newline, an escape sequence), and escaping control bytes on output
			 * is another item of issue 11. */
			fuzz_check_message(err.msg, path);
			continue;
		}
		check_set(set);
		pkgset_free(set);
	}
	free(path);
	return 0;
}
