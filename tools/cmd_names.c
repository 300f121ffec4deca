// SPDX-License-Identifier: MIT
/*
 * Names and removal: tag, untag, rm (--purge too) and gc by last use.
 */
#include "cli.h"
#include "out.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cmd_tag(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_env env;
	struct store *st;
	int r;

	if ((r = cli_need_args(c, 2)))
		return r;
	if ((r = cli_open_store(c, 0, &st)))
		return r;
	if (!(r = cli_find_env(c, st, c->argv[1], &env))) {
		r = store_tag_set(st, c->argv[0], &env, &err);
		r = r ? cli_die(c, &err, r) : 0;
	}
	store_close(st);
	if (!r)
		cli_tell_mounts(c);
	return r;
}

int cmd_untag(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store *st;
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	if ((r = cli_open_store(c, 0, &st)))
		return r;
	r = store_tag_remove(st, c->argv[0], &err);
	store_close(st);
	if (r)
		return cli_die(c, &err, r);
	cli_tell_mounts(c);
	return 0;
}

int cmd_rm(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_tag *tags = NULL;
	struct store_env env;
	struct store *st;
	size_t ntags = 0;
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	if ((r = cli_open_store(c, 0, &st)))
		return r;
	if ((r = cli_find_env(c, st, c->argv[0], &env)))
		goto out;
	r = store_tag_list(st, env.hash, &tags, &ntags, &err);
	if (!r && ntags && !c->force) {
		snprintf(err.msg, sizeof(err.msg), "%s: tagged %s%s; untag it first or use --force",
		         env.hash, tags[0].name, ntags > 1 ? " and more" : "");
		r = cli_die(c, &err, -EBUSY);
		goto out;
	}
	if (!r)
		r = store_env_remove(st, &env, &err);
	if (r)
		r = cli_die(c, &err, r);
	else
		printf("removed %s\n", env.hash);
out:
	free(tags);
	store_close(st);
	if (!r)
		cli_tell_mounts(c);
	return r;
}

struct gc_out {
	const struct cli *c;
	struct store *st;
	bool first;
	/* --json: the kept environments, printed after the removed ones */
	FILE *kept;
	char *kept_buf;
	size_t kept_len;
	bool kept_first;
};

static void gc_report(void *ctx, const struct store_env *env)
{
	struct gc_out *g = ctx;
	char used[32], src[OUT_ESC];

	if (g->c->json) {
		printf("%s\n {\"hash\": \"%s\", \"last_used\": %lld, \"source_prefix\": ",
		       g->first ? "" : ",", env->hash, (long long)env->last_used);
		out_json_str(stdout, env->source_prefix, strlen(env->source_prefix));
		printf("}");
		g->first = false;
	} else {
		printf("%s %s (last used %s, %s)\n", g->c->dry_run ? "would remove" : "removing",
		       env->hash, out_time(env->last_used, used),
		       out_esc(env->source_prefix, src, sizeof(src)));
	}
}

/* "1h", "30d", "90s": a duration as it would be written in the config. */
static const char *duration(int64_t secs, char buf[32])
{
	static const struct {
		char unit;
		int64_t seconds;
	} units[] = {{'w', 604800}, {'d', 86400}, {'h', 3600}, {'m', 60}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (secs && secs % units[i].seconds == 0) {
			snprintf(buf, 32, "%lld%c", (long long)(secs / units[i].seconds),
			         units[i].unit);
			return buf;
		}
	snprintf(buf, 32, "%llds", (long long)secs);
	return buf;
}

/* An environment the policy would have removed, kept: say why (a short --unused-for must
 * not silently remove nothing). */
static void gc_kept(void *ctx, const struct store_env *env, enum gc_kept why)
{
	static const char *const reason[] = {
	        [GC_KEPT_TAGGED] = "tagged",
	        [GC_KEPT_GRACE] = "grace",
	        [GC_KEPT_HELD] = "held",
	};
	struct gc_out *g = ctx;
	struct store_tag *tags = NULL;
	struct cfs_err err = {{0}};
	char used[32], grace[32], src[OUT_ESC];
	size_t ntags = 0;

	if (why == GC_KEPT_TAGGED && store_tag_list(g->st, env->hash, &tags, &ntags, &err))
		ntags = 0;
	if (g->c->json && g->kept) {
		fprintf(g->kept, "%s\n {\"hash\": \"%s\", \"reason\": \"%s\", \"last_used\": %lld",
		        g->kept_first ? "" : ",", env->hash, reason[why],
		        (long long)env->last_used);
		if (why == GC_KEPT_TAGGED) {
			fprintf(g->kept, ", \"tags\": [");
			for (size_t i = 0; i < ntags; i++) {
				fprintf(g->kept, "%s", i ? ", " : "");
				out_json_str(g->kept, tags[i].name, strlen(tags[i].name));
			}
			fprintf(g->kept, "]");
		}
		fprintf(g->kept, ", \"source_prefix\": ");
		out_json_str(g->kept, env->source_prefix, strlen(env->source_prefix));
		fprintf(g->kept, "}");
		g->kept_first = false;
	} else if (!g->c->json) {
		printf("%s %s (last used %s, %s): ", g->c->dry_run ? "would keep" : "keeping",
		       env->hash, out_time(env->last_used, used),
		       out_esc(env->source_prefix, src, sizeof(src)));
		if (why == GC_KEPT_TAGGED) {
			printf("tagged");
			for (size_t i = 0; i < ntags; i++) {
				fputs(i ? ", " : " ", stdout);
				out_text(stdout, tags[i].name);
			}
			printf("\n");
		} else if (why == GC_KEPT_GRACE) {
			printf("used within the grace window (%s, gc.grace)\n",
			       duration(g->c->config.gc_grace, grace));
		} else {
			printf("removed, but a mount holds it (files still open): freed by a later "
			       "gc\n");
		}
	}
	free(tags);
}

int cmd_gc(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct gc_out g = {.c = c, .first = true, .kept_first = true};
	struct gc_opts o = {
	        .now = time(NULL), .dry_run = c->dry_run, .kept = gc_kept, .purge = c->purge};
	struct gc_result res;
	struct store *st;
	char freed[32];
	int r;

	if ((r = cli_need_args(c, 0)))
		return r;
	o.unused_for = c->config.gc_unused_for;
	if (c->unused_for && config_duration(c->unused_for, &o.unused_for)) {
		snprintf(err.msg, sizeof(err.msg),
		         "--unused-for %s: not a duration (30d, 12h, 90m, 45s)", c->unused_for);
		cli_die(c, &err, -EINVAL);
		return EXIT_USAGE;
	}
	/* Whatever was used within the grace window stays (store_gc says which it kept). */
	o.grace = c->config.gc_grace;
	if ((r = cli_open_store(c, 0, &st)))
		return r;
	g.st = st;
	if (c->json && !(g.kept = open_memstream(&g.kept_buf, &g.kept_len))) {
		store_close(st);
		fprintf(stderr, "condafs: gc: out of memory\n");
		return EXIT_FAILED;
	}
	if (c->json)
		printf("{\"dry_run\": %s, \"removed\": [", c->dry_run ? "true" : "false");
	r = store_gc(st, &o, gc_report, &g, &res, &err);
	store_close(st);
	if (g.kept)
		fclose(g.kept);
	if (r) {
		free(g.kept_buf);
		return cli_die(c, &err, r);
	}
	if (res.envs_removed && !c->dry_run)
		cli_tell_mounts(c);
	if (c->json)
		printf("%s], \"kept\": [%s%s], \"environments_removed\": %llu, "
		       "\"environments_held\": %llu, \"objects_freed\": %llu, \"bytes_freed\": "
		       "%llu, \"packs_repacked\": %llu}\n",
		       g.first ? "" : "\n", g.kept_buf ? g.kept_buf : "", g.kept_first ? "" : "\n",
		       (unsigned long long)res.envs_removed, (unsigned long long)res.envs_held,
		       (unsigned long long)res.objects_freed, (unsigned long long)res.bytes_freed,
		       (unsigned long long)res.packs_repacked);
	else
		printf("%s%llu environment%s removed, %llu objects and %s freed, %llu pack%s "
		       "rewritten\n",
		       c->dry_run ? "dry run: " : "", (unsigned long long)res.envs_removed,
		       res.envs_removed == 1 ? "" : "s", (unsigned long long)res.objects_freed,
		       out_size(res.bytes_freed, freed), (unsigned long long)res.packs_repacked,
		       res.packs_repacked == 1 ? "" : "s");
	free(g.kept_buf);
	/* Their rows and objects stay until the mount lets go of them. */
	if (!c->json && res.envs_held)
		printf("%llu removed environment%s still open through a mount: freed by a later "
		       "gc\n",
		       (unsigned long long)res.envs_held, res.envs_held == 1 ? " is" : "s are");
	return 0;
}
