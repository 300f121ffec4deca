// SPDX-License-Identifier: MIT
/*
 * The commands that name and make environments: hash (of a lock or a prefix), ingest (a
 * prefix into the store) and install (a lock's packages straight into the store).
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

static void print_install_warning(void *ctx, const char *msg)
{
	(void)ctx;
	fputs("condafs: install: warning: ", stderr);
	out_text(stderr, msg);
	fputc('\n', stderr);
}

/* The packages whose link scripts an install did not run, for --json. */
struct not_run {
	char *dist[256];
	size_t n;
};

static void note_not_run(void *arg, const char *dist)
{
	struct not_run *nr = arg;

	if (nr->n < sizeof(nr->dist) / sizeof(nr->dist[0]) && (nr->dist[nr->n] = strdup(dist)))
		nr->n++;
}

int cmd_install(const struct cli *c)
{
	struct not_run nr = {.n = 0};
	struct cfs_err err = {{0}};
	struct progress prog;
	/* The command line's mirrors and caches, then the config file's. */
	const char *mirrors[64 + CONFIG_LIST_MAX], *pkgs_dirs[64 + CONFIG_LIST_MAX];
	size_t nm = c->nmirrors, np = c->npkgs_dirs;
	struct install_opts o = {
	        .platform = c->platform,
	        .environment = c->environment,
	        .mirrors = mirrors,
	        .pkgs_dirs = pkgs_dirs,
	        .fetching = progress_fetch,
	        .ingest = {.progress = progress_update,
	                   .warn = print_install_warning,
	                   .ctx = &prog},
	        .script_not_run = note_not_run,
	        .script_arg = &nr,
	};
	enum ingest_result res = INGEST_NEW;
	struct pkgset *lock = NULL;
	struct store_env env;
	struct store *st;
	char hash[33];
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	memcpy(mirrors, c->mirrors, nm * sizeof(*mirrors));
	memcpy(pkgs_dirs, c->pkgs_dirs, np * sizeof(*pkgs_dirs));
	for (int i = 0; i < c->config.nmirrors; i++)
		mirrors[nm++] = c->config.mirrors[i];
	for (int i = 0; i < c->config.npkgs_dirs; i++)
		pkgs_dirs[np++] = c->config.pkgs_dirs[i];
	o.nmirrors = nm;
	o.npkgs_dirs = np;
	if (!c->platform) {
		r = pkgset_from_lock(c->argv[0], NULL, c->environment, &lock, &err);
		if (r)
			return cli_die(c, &err, r);
		cli_say_platform(c, c->argv[0], lock);
		if (pkgset_platform_choices(lock))
			o.platform = pkgset_platform(lock);
	}
	r = cli_open_store(c, STORE_CREATE, &st);
	if (!r) {
		progress_init(&prog);
		r = store_install(st, c->argv[0], &o, hash, &res, &err);
		progress_done(&prog);
		if (!r && c->tag && !(r = store_env_find(st, hash, &env, &err)))
			r = store_tag_set(st, c->tag, &env, &err);
		store_close(st);
		r = r ? cli_die(c, &err, r) : 0;
	}
	pkgset_free(lock);
	if (r)
		goto out;
	if (res != INGEST_PRESENT || c->tag)
		cli_tell_mounts(c);
	if (c->json) {
		printf("{\"hash\": \"%s\", \"already_stored\": %s, \"scripts_not_run\": [", hash,
		       res == INGEST_PRESENT ? "true" : "false");
		for (size_t i = 0; i < nr.n; i++) {
			fputs(i ? ", " : "", stdout);
			out_json_str(stdout, nr.dist[i], strlen(nr.dist[i]));
		}
		printf("]}\n");
	} else {
		printf("%s\n", hash);
	}
	if (!c->json && res == INGEST_PRESENT)
		fprintf(stderr, "condafs: install: note: %s was already stored: nothing changed\n",
		        hash);
out:
	for (size_t i = 0; i < nr.n; i++)
		free(nr.dist[i]);
	return r;
}
