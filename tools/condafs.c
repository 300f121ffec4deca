// SPDX-License-Identifier: MIT
/*
 * condafs: the command line. Parses options, opens the store (--store, $CONDAFS_STORE,
 * else the config file's, else /var/lib/condafs) and runs one command through the store's
 * public API. Errors are one line on stderr, "condafs: <command>: <file>: <reason>", and a
 * non-zero exit.
 */
#include "export.h"
#include "out.h"

#include <condafs/store.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Exit codes: 0 fine, 1 the command failed, 2 bad usage. verify: 1 also when it found
 * missing or corrupt objects. verify --repair follows fsck(8), so that a timer can tell
 * "mended" from "needs a person" from "did not run": 0 nothing found, 1 problems found and
 * all repaired, 4 problems left (missing or corrupt objects still used), 8 could not run.
 */
enum {
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_REPAIRED = 1,
	EXIT_UNREPAIRED = 4,
	EXIT_OPERATIONAL = 8,
};

struct cli {
	const char *cmd;
	const char *store_dir;
	struct config config;
	bool json;
	const char *lock, *platform, *environment, *prefix, *unused_for;
	bool replace, skip_special, force, dry_run, repair;
	int argc;
	char **argv; /* positional arguments */
};

static const char usage[] =
        "usage: condafs [--store DIR] COMMAND [ARGS]\n"
        "\n"
        "  hash LOCK|PREFIX [--platform P] [--environment E]\n"
        "                      print the environment hash of a lock file or a conda prefix\n"
        "  ingest PREFIX [--lock LOCK] [--platform P] [--environment E] [--replace]\n"
        "         [--skip-special]\n"
        "                      store a solved conda prefix and print its hash\n"
        "  export ENV DIR [--prefix P]\n"
        "                      write an environment to DIR, its prefix served as P (default DIR)\n"
        "  ls                  list environments: tags, size, unique bytes, last use,\n"
        "                      broken (verify --repair found objects of it lost)\n"
        "  tag NAME ENV        point the name NAME at an environment (moves an existing one)\n"
        "  untag NAME          remove a name\n"
        "  rm ENV [--force]    remove an environment (refused while tagged, unless --force)\n"
        "  gc [--unused-for DURATION] [--dry-run]\n"
        "                      remove untagged environments unused for DURATION (config:\n"
        "                      gc.unused_for, 30d) and every object nothing uses\n"
        "  show ENV            list an environment's packages\n"
        "  cat ENV PATH [--prefix P]\n"
        "                      print a file (prefix default: the one it was built at)\n"
        "  stats               logical and stored bytes, dedup ratio, bytes unique to each env\n"
        "  verify [--repair]   re-hash every object; exit 1 if any is missing or corrupt\n"
        "                      (or verify could not run). --repair also removes object files\n"
        "                      no catalog row names and dead ingests' temporary directories,\n"
        "                      sets reference counts right and marks environments that use\n"
        "                      a missing or corrupt object broken; it exits 0 nothing found,\n"
        "                      1 problems found and all repaired, 4 missing or corrupt\n"
        "                      objects remain, 8 could not run\n"
        "\n"
        "  --json              machine-readable output (hash, ingest, ls, show, stats, verify, "
        "gc)\n"
        "  --store DIR         the store (default $CONDAFS_STORE, else the config's store)\n"
        "  --config FILE       settings (default " CONFIG_PATH ")\n"
        "\n"
        "ENV is a tag, an environment hash, or a unique prefix of one.\n";

/* "condafs: CMD: MSG" on stderr, escaped: MSG names users' files. */
static void say(const char *cmd, const char *msg)
{
	fputs("condafs: ", stderr);
	out_text(stderr, cmd);
	fputs(": ", stderr);
	out_text(stderr, msg);
	fputc('\n', stderr);
}

static int die(const struct cli *c, const struct cfs_err *err, int r)
{
	say(c->cmd, err && err->msg[0] ? err->msg : strerror(-r));
	return EXIT_FAILED;
}

/* What the store says while it works (a lock it waits for, and who holds it). */
static void print_notice(void *ctx, const char *msg)
{
	say(ctx, msg);
}

static int open_store(const struct cli *c, unsigned flags, struct store **st)
{
	struct cfs_err err = {{0}};
	int r = store_open_notify(c->store_dir, flags, print_notice, (void *)c->cmd, st, &err);

	return r ? die(c, &err, r) : 0;
}

static int need_args(const struct cli *c, int n)
{
	if (c->argc == n)
		return 0;
	fprintf(stderr, "condafs: %s: expected %d argument%s, got %d\n%s", c->cmd, n,
	        n == 1 ? "" : "s", c->argc, usage);
	return EXIT_USAGE;
}

static int cmd_hash(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct stat sb;
	char hash[33];
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if (stat(c->argv[0], &sb) == 0 && S_ISDIR(sb.st_mode))
		r = pkgset_from_prefix(c->argv[0], &set, &err);
	else
		r = pkgset_from_lock(c->argv[0], c->platform, c->environment, &set, &err);
	if (r)
		return die(c, &err, r);
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

static int cmd_ingest(const struct cli *c)
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
	struct store *st;
	char hash[33];
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if ((r = open_store(c, STORE_CREATE, &st)))
		return r;
	progress_init(&prog);
	r = store_ingest(st, c->argv[0], &o, hash, &res, &err);
	progress_done(&prog);
	store_close(st);
	if (r)
		return die(c, &err, r);
	if (c->json)
		printf("{\"hash\": \"%s\", \"result\": \"%s\"}\n", hash, what[res]);
	else if (res == INGEST_NEW)
		printf("%s\n", hash);
	else
		printf("%s (%s)\n", hash, what[res]);
	return 0;
}

static int find_env(const struct cli *c, struct store *st, const char *name, struct store_env *env)
{
	struct cfs_err err = {{0}};
	int r = store_env_find(st, name, env, &err);

	return r ? die(c, &err, r) : 0;
}

static int cmd_export(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_env env;
	struct store *st;
	char *prefix = NULL;
	int r;

	if ((r = need_args(c, 2)))
		return r;
	if ((r = open_store(c, STORE_READONLY, &st)))
		return r;
	if ((r = find_env(c, st, c->argv[0], &env)))
		goto out;
	if (c->prefix) {
		prefix = strdup(c->prefix);
	} else {
		/* The default prefix is where the tree lands: it must be absolute. */
		if (mkdir(c->argv[1], 0700) < 0 && errno != EEXIST) {
			r = -errno;
			snprintf(err.msg, sizeof(err.msg), "%s: %s", c->argv[1], strerror(-r));
			r = die(c, &err, r);
			goto out;
		}
		prefix = realpath(c->argv[1], NULL);
	}
	if (!prefix) {
		r = -errno;
		snprintf(err.msg, sizeof(err.msg), "%s: %s", c->argv[1], strerror(-r));
		r = die(c, &err, r);
		goto out;
	}
	r = export_env(st, &env, c->argv[1], prefix, &err);
	if (r)
		r = die(c, &err, r);
out:
	free(prefix);
	store_close(st);
	return r;
}

static int cmd_ls(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_env *v = NULL;
	struct store *st;
	size_t n = 0;
	int r;

	if ((r = need_args(c, 0)))
		return r;
	if ((r = open_store(c, STORE_READONLY, &st)))
		return r;
	r = store_env_list(st, &v, &n, &err);
	if (r) {
		r = die(c, &err, r);
		goto out;
	}
	if (c->json)
		printf("[");
	else
		printf("%-32s  %-10s %8s %10s %10s  %-16s  %-16s  %-6s  %s\n", "HASH", "PLATFORM",
		       "FILES", "SIZE", "UNIQUE", "CREATED", "LAST USED", "STATE", "TAGS");
	for (size_t i = 0; i < n; i++) {
		char size[32], uniq[32], created[32], used[32], names[512] = "";
		char plat[OUT_ESC], enames[OUT_ESC];
		struct store_tag *tags = NULL;
		size_t ntags = 0, len = 0;
		uint64_t unique = 0;

		r = store_env_unique_bytes(st, &v[i], &unique, &err);
		if (!r)
			r = store_tag_list(st, v[i].hash, &tags, &ntags, &err);
		if (r) {
			r = die(c, &err, r);
			goto out;
		}
		for (size_t t = 0; t < ntags && len < sizeof(names); t++)
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
			                        t ? "," : "", tags[t].name);
		if (c->json) {
			printf("%s\n {\"hash\": \"%s\", \"tags\": [", i ? "," : "", v[i].hash);
			for (size_t t = 0; t < ntags; t++) {
				printf("%s", t ? ", " : "");
				out_json_str(stdout, tags[t].name, strlen(tags[t].name));
			}
			printf("], \"platform\": ");
			out_json_str(stdout, v[i].platform, strlen(v[i].platform));
			printf(", \"files\": %llu, \"logical_bytes\": %llu, \"unique_bytes\": %llu,"
			       " \"created\": %lld, \"last_used\": %lld, \"source_prefix\": ",
			       (unsigned long long)v[i].files,
			       (unsigned long long)v[i].logical_bytes, (unsigned long long)unique,
			       (long long)v[i].created, (long long)v[i].last_used);
			out_json_str(stdout, v[i].source_prefix, strlen(v[i].source_prefix));
			printf(", \"broken\": %s}", v[i].broken ? "true" : "false");
		} else {
			printf("%-32s  %-10s %8llu %10s %10s  %-16s  %-16s  %-6s  %s\n", v[i].hash,
			       out_esc(v[i].platform, plat, sizeof(plat)),
			       (unsigned long long)v[i].files, out_size(v[i].logical_bytes, size),
			       out_size(unique, uniq), out_time(v[i].created, created),
			       out_time(v[i].last_used, used), v[i].broken ? "broken" : "ok",
			       ntags ? out_esc(names, enames, sizeof(enames)) : "-");
		}
		free(tags);
	}
	if (c->json)
		printf("%s]\n", n ? "\n" : "");
out:
	free(v);
	store_close(st);
	return r;
}

static void json_field(const char *name, const char *v, bool comma)
{
	printf("%s\"%s\": ", comma ? ", " : "", name);
	if (v)
		out_json_str(stdout, v, strlen(v));
	else
		printf("null");
}

static int cmd_show(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct store_env env;
	struct store *st;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if ((r = open_store(c, STORE_READONLY, &st)))
		return r;
	if ((r = find_env(c, st, c->argv[0], &env)))
		goto out;
	r = store_env_packages(st, &env, &set, &err);
	if (r) {
		r = die(c, &err, r);
		goto out;
	}
	if (c->json) {
		printf("{\"hash\": \"%s\", \"platform\": ", env.hash);
		out_json_str(stdout, env.platform, strlen(env.platform));
		printf(", \"packages\": [");
	} else {
		char plat[OUT_ESC], src[OUT_ESC];

		printf("# %s  %s  %s\n", env.hash, out_esc(env.platform, plat, sizeof(plat)),
		       out_esc(env.source_prefix, src, sizeof(src)));
	}
	for (size_t i = 0; i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);
		const char *kind = p->kind == PKG_CONDA ? "conda" : "pypi";

		if (c->json) {
			printf("%s\n {", i ? "," : "");
			json_field("kind", kind, false);
			json_field("name", p->name, true);
			json_field("version", p->version, true);
			json_field("build", p->build, true);
			json_field("channel", p->channel, true);
			json_field("subdir", p->subdir, true);
			json_field("md5", p->md5, true);
			json_field("sha256", p->sha256, true);
			printf("}");
		} else {
			char name[OUT_ESC], version[OUT_ESC], build[OUT_ESC], channel[OUT_ESC];

			printf("%-5s  %-32s %-20s %-24s %s\n", kind,
			       out_esc(p->name, name, sizeof(name)),
			       out_esc(p->version, version, sizeof(version)),
			       out_esc(p->build ? p->build : "", build, sizeof(build)),
			       out_esc(p->channel ? p->channel : "", channel, sizeof(channel)));
		}
	}
	if (c->json)
		printf("\n]}\n");
out:
	pkgset_free(set);
	store_close(st);
	return r;
}

static int cmd_cat(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_env env;
	struct store_node n;
	struct store *st;
	const char *prefix;
	char *path = NULL, *tok, *save = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0, size;
	int r;

	if ((r = need_args(c, 2)))
		return r;
	if ((r = open_store(c, STORE_READONLY, &st)))
		return r;
	if ((r = find_env(c, st, c->argv[0], &env)))
		goto out;
	prefix = c->prefix ? c->prefix : env.source_prefix;
	r = store_node_get(st, env.root, &n, &err);
	path = strdup(c->argv[1]);
	buf = malloc(1 << 20);
	if (!path || !buf)
		r = -ENOMEM;
	for (tok = r ? NULL : strtok_r(path, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		r = store_node_lookup(st, n.id, tok, strlen(tok), &n, &err);
		if (r == -ENOENT)
			snprintf(err.msg, sizeof(err.msg), "%s/%s: no such file", env.hash,
			         c->argv[1]);
		if (r)
			break;
	}
	if (!r && n.type != NODE_FILE) {
		snprintf(err.msg, sizeof(err.msg), "%s/%s: not a regular file", env.hash,
		         c->argv[1]);
		r = -EISDIR;
	}
	size = r ? 0 : store_node_size(&n, strlen(prefix));
	while (!r && off < size) {
		size_t got;

		r = store_read(st, &n, prefix, off, 1 << 20, buf, &got, &err);
		if (!r && fwrite(buf, 1, got, stdout) != got)
			r = -EIO;
		off += got;
		if (!r && got == 0)
			break;
	}
	if (r)
		r = die(c, &err, r);
out:
	free(path);
	free(buf);
	store_close(st);
	return r;
}

static int cmd_tag(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_env env;
	struct store *st;
	int r;

	if ((r = need_args(c, 2)))
		return r;
	if ((r = open_store(c, 0, &st)))
		return r;
	if (!(r = find_env(c, st, c->argv[1], &env))) {
		r = store_tag_set(st, c->argv[0], &env, &err);
		r = r ? die(c, &err, r) : 0;
	}
	store_close(st);
	return r;
}

static int cmd_untag(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store *st;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if ((r = open_store(c, 0, &st)))
		return r;
	r = store_tag_remove(st, c->argv[0], &err);
	store_close(st);
	return r ? die(c, &err, r) : 0;
}

static int cmd_rm(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_tag *tags = NULL;
	struct store_env env;
	struct store *st;
	size_t ntags = 0;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if ((r = open_store(c, 0, &st)))
		return r;
	if ((r = find_env(c, st, c->argv[0], &env)))
		goto out;
	r = store_tag_list(st, env.hash, &tags, &ntags, &err);
	if (!r && ntags && !c->force) {
		snprintf(err.msg, sizeof(err.msg), "%s: tagged %s%s; untag it first or use --force",
		         env.hash, tags[0].name, ntags > 1 ? " and more" : "");
		r = die(c, &err, -EBUSY);
		goto out;
	}
	if (!r)
		r = store_env_remove(st, &env, &err);
	if (r)
		r = die(c, &err, r);
	else
		printf("removed %s\n", env.hash);
out:
	free(tags);
	store_close(st);
	return r;
}

struct gc_out {
	const struct cli *c;
	bool first;
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

static int cmd_gc(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct gc_out g = {c, true};
	struct gc_opts o = {.now = time(NULL), .dry_run = c->dry_run};
	struct gc_result res;
	struct store *st;
	char freed[32];
	int r;

	if ((r = need_args(c, 0)))
		return r;
	o.unused_for = c->config.gc_unused_for;
	if (c->unused_for && config_duration(c->unused_for, &o.unused_for)) {
		snprintf(err.msg, sizeof(err.msg),
		         "--unused-for %s: not a duration (30d, 12h, 90m, 45s)", c->unused_for);
		die(c, &err, -EINVAL);
		return EXIT_USAGE;
	}
	/* Whatever was used within the grace window stays. */
	if (o.unused_for < c->config.gc_grace)
		o.unused_for = c->config.gc_grace;
	if ((r = open_store(c, 0, &st)))
		return r;
	if (c->json)
		printf("{\"dry_run\": %s, \"removed\": [", c->dry_run ? "true" : "false");
	r = store_gc(st, &o, gc_report, &g, &res, &err);
	store_close(st);
	if (r)
		return die(c, &err, r);
	if (c->json)
		printf("%s], \"environments_removed\": %llu, \"environments_held\": %llu,"
		       " \"objects_freed\": %llu, \"bytes_freed\": %llu}\n",
		       g.first ? "" : "\n", (unsigned long long)res.envs_removed,
		       (unsigned long long)res.envs_held, (unsigned long long)res.objects_freed,
		       (unsigned long long)res.bytes_freed);
	else
		printf("%s%llu environment%s removed, %llu objects and %s freed\n",
		       c->dry_run ? "dry run: " : "", (unsigned long long)res.envs_removed,
		       res.envs_removed == 1 ? "" : "s", (unsigned long long)res.objects_freed,
		       out_size(res.bytes_freed, freed));
	/* Their rows and objects stay until the mount lets go of them. */
	if (!c->json && res.envs_held)
		printf("%llu removed environment%s still open through a mount: freed by a later "
		       "gc\n",
		       (unsigned long long)res.envs_held, res.envs_held == 1 ? " is" : "s are");
	return 0;
}

static int cmd_stats(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_stats s;
	struct store_env *v = NULL;
	struct store *st;
	size_t n = 0;
	double ratio;
	int r;

	if ((r = need_args(c, 0)))
		return r;
	if ((r = open_store(c, STORE_READONLY, &st)))
		return r;
	r = store_stats(st, &s, &err);
	if (!r)
		r = store_env_list(st, &v, &n, &err);
	if (r) {
		r = die(c, &err, r);
		goto out;
	}
	ratio = s.stored_bytes ? (double)s.logical_bytes / (double)s.stored_bytes : 0;
	if (c->json) {
		printf("{\"environments\": %llu, \"objects\": %llu, \"logical_bytes\": %llu,"
		       " \"content_bytes\": %llu, \"stored_bytes\": %llu, \"dedup_ratio\": %.3f,"
		       " \"unique_bytes\": {",
		       (unsigned long long)s.envs, (unsigned long long)s.objects,
		       (unsigned long long)s.logical_bytes, (unsigned long long)s.content_bytes,
		       (unsigned long long)s.stored_bytes, ratio);
	} else {
		char a[32], b[32], d[32];

		printf("environments   %llu\nobjects        %llu\n", (unsigned long long)s.envs,
		       (unsigned long long)s.objects);
		printf("logical bytes  %s (what the environments hold)\n",
		       out_size(s.logical_bytes, a));
		printf("content bytes  %s (distinct contents, uncompressed)\n",
		       out_size(s.content_bytes, b));
		printf("stored bytes   %s (compressed)\n", out_size(s.stored_bytes, d));
		printf("dedup ratio    %.2fx (logical / stored)\n", ratio);
		printf("unique to each environment:\n");
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t u = 0;
		char sz[32];

		r = store_env_unique_bytes(st, &v[i], &u, &err);
		if (r) {
			r = die(c, &err, r);
			goto out;
		}
		if (c->json)
			printf("%s\"%s\": %llu", i ? ", " : "", v[i].hash, (unsigned long long)u);
		else
			printf("  %s  %s\n", v[i].hash, out_size(u, sz));
	}
	if (c->json)
		printf("}}\n");
out:
	free(v);
	store_close(st);
	return r;
}

struct verify_out {
	const struct cli *c;
	bool first;
	bool repairs; /* --json: the "repairs" list is open */
	uint64_t nrepairs;
};

static void verify_report(void *ctx, const struct verify_problem *p)
{
	struct verify_out *vo = ctx;
	char problem[OUT_ESC], env[OUT_ESC], path[OUT_ESC];

	if (vo->c->json) {
		printf("%s\n {", vo->first ? "" : ",");
		json_field("object", p->key, false);
		json_field("problem", p->problem, true);
		json_field("environment", p->env, true);
		json_field("path", p->path, true);
		printf("}");
		vo->first = false;
	} else if (p->env) {
		printf("object %s: %s: used by %s/%s\n", p->key,
		       out_esc(p->problem, problem, sizeof(problem)),
		       out_esc(p->env, env, sizeof(env)), out_esc(p->path, path, sizeof(path)));
	} else {
		printf("object %s: %s\n", p->key, out_esc(p->problem, problem, sizeof(problem)));
	}
}

/* --json: store_repair reports every problem before its first change, so the list of
 * problems is closed once, when the first change (or the summary) comes. */
static void json_open_repairs(struct verify_out *vo)
{
	if (vo->repairs)
		return;
	printf("%s], \"repairs\": [", vo->first ? "" : "\n");
	vo->repairs = true;
}

static void repair_report(void *ctx, const struct repair_action *a)
{
	static const char *const what[] = {
	        [REPAIR_ORPHAN] = "orphan removed",
	        [REPAIR_TMP] = "temporary directory removed",
	        [REPAIR_REFS] = "reference count fixed",
	        [REPAIR_DROPPED] = "unused row deleted",
	        [REPAIR_BROKEN] = "marked broken",
	        [REPAIR_UNBROKEN] = "no longer broken",
	};
	struct verify_out *vo = ctx;

	if (vo->c->json) {
		json_open_repairs(vo);
		printf("%s\n {", vo->nrepairs++ ? "," : "");
		json_field("action", what[a->kind], false);
		json_field("object", a->key, true);
		json_field("environment", a->env, true);
		json_field("tmp", a->name, true);
		if (a->kind == REPAIR_REFS)
			printf(", \"refs_had\": %lld, \"refs_now\": %lld", (long long)a->refs_had,
			       (long long)a->refs_now);
		printf("}");
	} else if (a->kind == REPAIR_REFS) {
		printf("object %s: %s: %lld, now %lld\n", a->key, what[a->kind],
		       (long long)a->refs_had, (long long)a->refs_now);
	} else if (a->key) {
		printf("object %s: %s\n", a->key, what[a->kind]);
	} else if (a->env) {
		printf("environment %s: %s\n", a->env, what[a->kind]);
	} else {
		char name[OUT_ESC];

		printf("tmp/%s: %s\n", out_esc(a->name, name, sizeof(name)), what[a->kind]);
	}
}

static int cmd_repair(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct repair_result res;
	const struct verify_result *f = &res.found;
	struct store *st;
	uint64_t fixed;
	int r;

	if (open_store(c, 0, &st))
		return EXIT_OPERATIONAL;
	if (c->json)
		printf("{\"problems\": [");
	r = store_repair(st, verify_report, repair_report, &vo, &res, &err);
	store_close(st);
	if (r) {
		die(c, &err, r);
		return EXIT_OPERATIONAL;
	}
	fixed = res.orphans_removed + res.tmp_removed + res.refs_fixed + res.dropped +
	        res.envs_marked + res.envs_cleared;
	if (c->json)
		json_open_repairs(&vo);
	if (c->json)
		printf("%s], \"objects_checked\": %llu, \"corrupt\": %llu, \"unreferenced\": %llu,"
		       " \"orphans_removed\": %llu, \"tmp_removed\": %llu, \"refs_fixed\": %llu,"
		       " \"dropped\": %llu, \"envs_marked\": %llu, \"envs_cleared\": %llu,"
		       " \"envs_broken\": %llu, \"corrupt_left\": %llu}\n",
		       vo.nrepairs ? "\n" : "", (unsigned long long)f->objects_checked,
		       (unsigned long long)f->corrupt, (unsigned long long)f->unreferenced,
		       (unsigned long long)res.orphans_removed, (unsigned long long)res.tmp_removed,
		       (unsigned long long)res.refs_fixed, (unsigned long long)res.dropped,
		       (unsigned long long)res.envs_marked, (unsigned long long)res.envs_cleared,
		       (unsigned long long)res.envs_broken, (unsigned long long)res.corrupt_left);
	else
		printf("%llu objects checked, %llu missing or corrupt, %llu unreferenced; "
		       "repaired: %llu orphans and %llu temporary directories removed, "
		       "%llu reference counts fixed, %llu unused rows deleted, %llu environments "
		       "marked broken, %llu no longer broken; left: %llu missing or corrupt "
		       "objects, %llu broken environments\n",
		       (unsigned long long)f->objects_checked, (unsigned long long)f->corrupt,
		       (unsigned long long)f->unreferenced, (unsigned long long)res.orphans_removed,
		       (unsigned long long)res.tmp_removed, (unsigned long long)res.refs_fixed,
		       (unsigned long long)res.dropped, (unsigned long long)res.envs_marked,
		       (unsigned long long)res.envs_cleared, (unsigned long long)res.corrupt_left,
		       (unsigned long long)res.envs_broken);
	if (res.corrupt_left)
		return EXIT_UNREPAIRED;
	return fixed ? EXIT_REPAIRED : 0;
}

static int cmd_verify(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct verify_result res;
	struct store *st;
	int r;

	if ((r = need_args(c, 0)))
		return r;
	if (c->repair)
		return cmd_repair(c);
	if ((r = open_store(c, STORE_READONLY, &st)))
		return r;
	if (c->json)
		printf("{\"problems\": [");
	r = store_verify(st, verify_report, &vo, &res, &err);
	store_close(st);
	if (r)
		return die(c, &err, r);
	if (c->json)
		printf("%s], \"objects_checked\": %llu, \"corrupt\": %llu, \"unreferenced\": "
		       "%llu}\n",
		       vo.first ? "" : "\n", (unsigned long long)res.objects_checked,
		       (unsigned long long)res.corrupt, (unsigned long long)res.unreferenced);
	else
		printf("%llu objects checked, %llu missing or corrupt, %llu unreferenced\n",
		       (unsigned long long)res.objects_checked, (unsigned long long)res.corrupt,
		       (unsigned long long)res.unreferenced);
	return res.corrupt ? EXIT_FAILED : 0;
}

static const struct command {
	const char *name;
	int (*run)(const struct cli *c);
} commands[] = {
        {"hash", cmd_hash}, {"ingest", cmd_ingest}, {"export", cmd_export}, {"ls", cmd_ls},
        {"show", cmd_show}, {"cat", cmd_cat},       {"stats", cmd_stats},   {"verify", cmd_verify},
        {"tag", cmd_tag},   {"untag", cmd_untag},   {"rm", cmd_rm},         {"gc", cmd_gc},
};

int main(int argc, char **argv)
{
	enum {
		O_STORE = 256,
		O_JSON,
		O_LOCK,
		O_PLATFORM,
		O_ENV,
		O_PREFIX,
		O_REPLACE,
		O_SKIP,
		O_FORCE,
		O_DRY,
		O_UNUSED,
		O_CONFIG,
		O_REPAIR,
	};
	static const struct option opts[] = {
	        {"store", required_argument, NULL, O_STORE},
	        {"json", no_argument, NULL, O_JSON},
	        {"lock", required_argument, NULL, O_LOCK},
	        {"platform", required_argument, NULL, O_PLATFORM},
	        {"environment", required_argument, NULL, O_ENV},
	        {"prefix", required_argument, NULL, O_PREFIX},
	        {"replace", no_argument, NULL, O_REPLACE},
	        {"skip-special", no_argument, NULL, O_SKIP},
	        {"force", no_argument, NULL, O_FORCE},
	        {"dry-run", no_argument, NULL, O_DRY},
	        {"unused-for", required_argument, NULL, O_UNUSED},
	        {"config", required_argument, NULL, O_CONFIG},
	        {"repair", no_argument, NULL, O_REPAIR},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *config_path = CONFIG_PATH;
	struct cfs_err err = {{0}};
	struct cli c = {0};
	int o;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_STORE:
			c.store_dir = optarg;
			break;
		case O_JSON:
			c.json = true;
			break;
		case O_LOCK:
			c.lock = optarg;
			break;
		case O_PLATFORM:
			c.platform = optarg;
			break;
		case O_ENV:
			c.environment = optarg;
			break;
		case O_PREFIX:
			c.prefix = optarg;
			break;
		case O_REPLACE:
			c.replace = true;
			break;
		case O_SKIP:
			c.skip_special = true;
			break;
		case O_FORCE:
			c.force = true;
			break;
		case O_DRY:
			c.dry_run = true;
			break;
		case O_UNUSED:
			c.unused_for = optarg;
			break;
		case O_CONFIG:
			config_path = optarg;
			break;
		case O_REPAIR:
			c.repair = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	c.cmd = argv[optind];
	if (config_load(config_path, &c.config, &err)) {
		fputs("condafs: ", stderr);
		out_text(stderr, err.msg);
		fputc('\n', stderr);
		return c.repair && !strcmp(c.cmd, "verify") ? EXIT_OPERATIONAL : EXIT_FAILED;
	}
	if (!c.store_dir)
		c.store_dir = getenv("CONDAFS_STORE");
	if (!c.store_dir || !*c.store_dir)
		c.store_dir = c.config.store;
	c.argc = argc - optind - 1;
	c.argv = argv + optind + 1;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, c.cmd))
			return commands[i].run(&c);
	say(c.cmd, "unknown command");
	fputs(usage, stderr);
	return EXIT_USAGE;
}
