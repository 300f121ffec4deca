// SPDX-License-Identifier: MIT
/*
 * The commands that name and make environments: hash (of a lock or a prefix) and ingest
 * (a prefix into the store); install is cmd_install.c's.
 */
#include "cli.h"
#include "out.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cmd_hash(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct stat sb;
	char hash[33];
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	if (stat(c->argv[0], &sb) == 0 && S_ISDIR(sb.st_mode))
		r = pkgset_from_prefix(c->argv[0], &set, &err);
	else
		r = pkgset_from_lock(c->argv[0], c->platform, c->environment, &set, &err);
	if (r)
		return cli_die(c, &err, r);
	cli_say_platform(c, c->argv[0], set);
	pkgset_hash(set, hash);
	if (c->json) {
		printf("{\"hash\": \"%s\", \"platform\": ", hash);
		out_json_str(stdout, pkgset_platform(set), strlen(pkgset_platform(set)));
		printf(", \"packages\": %zu}\n", pkgset_count(set));
	} else {
		printf("%s\n", hash);
	}
	pkgset_free(set);
	return 0;
}

static void print_warning(void *ctx, const char *msg)
{
	(void)ctx;
	fputs("condafs: ingest: warning: ", stderr);
	out_text(stderr, msg);
	fputc('\n', stderr);
}

int cmd_ingest(const struct cli *c)
{
	static const char *const what[] = {
	        [INGEST_NEW] = "stored",
	        [INGEST_PRESENT] = "already stored",
	        [INGEST_REPLACED] = "replaced",
	};
	struct cfs_err err = {{0}};
	struct progress prog;
	struct ingest_opts o = {
	        .lock_path = c->lock,
	        .lock_platform = c->platform,
	        .lock_env = c->environment,
	        .replace = c->replace,
	        .skip_special = c->skip_special,
	        .progress = progress_update,
	        .warn = print_warning,
	        .ctx = &prog,
	};
	enum ingest_result res;
	struct pkgset *lock = NULL;
	struct store *st;
	char hash[33];
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	/* Which platform of the lock is checked is said before anything is stored. */
	if (c->lock && !c->platform) {
		r = pkgset_from_lock(c->lock, NULL, c->environment, &lock, &err);
		if (r)
			return cli_die(c, &err, r);
		cli_say_platform(c, c->lock, lock);
		if (pkgset_platform_choices(lock))
			o.lock_platform = pkgset_platform(lock);
	}
	r = cli_open_store(c, STORE_CREATE, &st);
	if (!r) {
		progress_init(&prog);
		r = store_ingest(st, c->argv[0], &o, hash, &res, &err);
		progress_done(&prog);
		store_close(st);
		r = r ? cli_die(c, &err, r) : 0;
	}
	pkgset_free(lock);
	if (r)
		return r;
	if (res != INGEST_PRESENT)
		cli_tell_mounts(c);
	/* stdout is the hash alone, whatever happened: h=$(condafs ingest P) always works. */
	if (c->json)
		printf("{\"hash\": \"%s\", \"result\": \"%s\", \"already_stored\": %s}\n", hash,
		       what[res], res == INGEST_PRESENT ? "true" : "false");
	else
		printf("%s\n", hash);
	if (!c->json && res != INGEST_NEW)
		fprintf(stderr, "condafs: ingest: note: %s %s\n", hash,
		        res == INGEST_PRESENT ? "was already stored: nothing changed"
		                              : "replaced (its tags kept)");
	return 0;
}
