// SPDX-License-Identifier: MIT
/*
 * condafs install: a lock's packages straight into the store. Linked into condafs-install
 * alone, the one program that needs libcurl and libarchive (and their forty-odd libraries):
 * condafs runs it for `condafs install` (install_exec.c), so no other command loads them.
 */
#include "cli.h"
#include "out.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
