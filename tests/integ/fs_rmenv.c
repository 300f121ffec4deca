// SPDX-License-Identifier: MIT
/*
 * fs_rmenv STORE HASH: remove an environment from a store through a handle of its own
 * (store_env_remove, the public API), as another process would while condafsd serves the
 * store, so fs_live.py can check that the mount drops it.
 */
#include <condafs/store.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct cfs_err err = {{0}};
	struct store_env env;
	struct store *st = NULL;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: fs_rmenv STORE HASH\n");
		return 2;
	}
	r = store_open(argv[1], 0, &st, &err);
	if (!r)
		r = store_env_find(st, argv[2], &env, &err);
	if (!r)
		r = store_env_remove(st, &env, &err);
	if (r)
		fprintf(stderr, "fs_rmenv: %s\n", err.msg[0] ? err.msg : strerror(-r));
	store_close(st);
	return r ? 1 : 0;
}
