// SPDX-License-Identifier: MIT
/*
 * The commands that read the store (or, for a user who may not open it, the mount):
 * export, ls, show, check, cat and stats.
 */
#include "cli.h"
#include "export.h"
#include "out.h"
#include "viamount.h"

#include <condafs/cuda.h>
#include <condafs/report.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cmd_export(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct viamount *vm;
	struct store_env env;
	struct store *st;
	int r;

	if ((r = cli_need_args(c, 2)))
		return r;
	if ((r = cli_open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_find(vm, c->argv[0], &env, &err);
		if (!r)
			r = viamount_export(vm, &env, c->argv[1], c->prefix, c->frozen, &err);
		r = r ? cli_die(c, &err, r) : 0;
	} else if (!(r = cli_find_env(c, st, c->argv[0], &env))) {
		r = export_env(st, &env, c->argv[1], c->prefix, c->frozen, &err);
		r = r ? cli_die(c, &err, r) : 0;
	}
	cli_close_view(st, vm);
	return r;
}

static int print_ls(const struct cli *c, const struct report_env *v, size_t n)
{
	char *json = NULL;
	size_t len;

	if (c->json) {
		if (report_envs_json(v, n, &json, &len))
			return cli_die(c, NULL, -ENOMEM);
		fwrite(json, 1, len, stdout);
		free(json);
		return 0;
	}
	printf("%-32s  %-10s %8s %10s %10s  %-16s  %-16s  %-6s  %s\n", "HASH", "PLATFORM", "FILES",
	       "SIZE", "UNIQUE", "CREATED", "LAST USED", "STATE", "TAGS");
	for (size_t i = 0; i < n; i++) {
		const struct store_env *e = &v[i].env;
		char size[32], uniq[32], created[32], used[32], names[512] = "";
		char plat[OUT_ESC], enames[OUT_ESC];
		size_t at = 0;

		for (size_t t = 0; t < v[i].ntags && at < sizeof(names); t++)
			at += (size_t)snprintf(names + at, sizeof(names) - at, "%s%s", t ? "," : "",
			                       v[i].tags[t].name);
		printf("%-32s  %-10s %8llu %10s %10s  %-16s  %-16s  %-6s  %s\n", e->hash,
		       out_esc(e->platform, plat, sizeof(plat)), (unsigned long long)e->files,
		       out_size(e->logical_bytes, size), out_size(v[i].unique_bytes, uniq),
		       out_time(e->created, created), out_time(e->last_used, used),
		       e->broken ? "broken" : "ok",
		       v[i].ntags ? out_esc(names, enames, sizeof(enames)) : "-");
	}
	return 0;
}

int cmd_ls(const struct cli *c)
{
	struct cfs_err err = {{0}};
	const struct report_env *v = NULL;
	struct report_env *own = NULL;
	struct viamount *vm;
	struct store *st;
	size_t n = 0;
	int r;

	if ((r = cli_need_args(c, 0)))
		return r;
	if ((r = cli_open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_envs(vm, &v, &n, &err);
	} else {
		r = report_envs(st, &own, &n, &err);
		v = own;
	}
	r = r ? cli_die(c, &err, r) : print_ls(c, v, n);
	report_envs_free(own, n);
	cli_close_view(st, vm);
	return r;
}

static int print_show(const struct cli *c, const struct store_env *env, const struct pkgset *set)
{
	char plat[OUT_ESC], src[OUT_ESC];
	struct cuda_need need;
	char *json = NULL;
	size_t len;

	if (c->json) {
		if (report_packages_json(env, set, &json, &len))
			return cli_die(c, NULL, -ENOMEM);
		fwrite(json, 1, len, stdout);
		free(json);
		return 0;
	}
	printf("# %s  %s  %s\n", env->hash, out_esc(env->platform, plat, sizeof(plat)),
	       out_esc(env->source_prefix, src, sizeof(src)));
	cuda_need_of(set, &need);
	if (need.major)
		printf("# CUDA %s (%s)\n", need.release, out_esc(need.source, src, sizeof(src)));
	else
		printf("# CUDA: none needed\n");
	for (size_t i = 0; i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);
		char name[OUT_ESC], version[OUT_ESC], build[OUT_ESC], channel[OUT_ESC];

		printf("%-5s  %-32s %-20s %-24s %s\n", p->kind == PKG_CONDA ? "conda" : "pypi",
		       out_esc(p->name, name, sizeof(name)),
		       out_esc(p->version, version, sizeof(version)),
		       out_esc(p->build ? p->build : "", build, sizeof(build)),
		       out_esc(p->channel ? p->channel : "", channel, sizeof(channel)));
	}
	return 0;
}

int cmd_show(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct viamount *vm;
	struct store_env env;
	struct store *st;
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	if ((r = cli_open_view(c, &st, &vm)))
		return r;
	r = cli_view_env(st, vm, c->argv[0], &env, &set, &err);
	r = r ? cli_die(c, &err, r) : print_show(c, &env, set);
	pkgset_free(set);
	cli_close_view(st, vm);
	return r;
}

/* A lock file, not an environment's name: a path to a regular file. Names hold no '/', so
 * only a tag spelt like a file in the current directory is read as that file. */
static bool is_lock_file(const char *arg)
{
	struct stat sb;

	return stat(arg, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int print_check(const struct cli *c, const char *hash, const char *name,
                       const struct cuda_need *need, const struct cuda_driver *drv,
                       const struct cuda_check *chk)
{
	char esc[OUT_ESC];

	if (c->json) {
		printf("{");
		cli_json_field("hash", hash, false);
		cli_json_field("cuda", need->major ? need->release : NULL, true);
		cli_json_field("cuda_source", need->major ? need->source : NULL, true);
		cli_json_field("driver", drv->present ? drv->version : NULL, true);
		cli_json_field("driver_source", drv->present ? drv->source : drv->absent, true);
		cli_json_field("verdict", cuda_verdict_name(chk->verdict), true);
		cli_json_field("required_driver", chk->required[0] ? chk->required : NULL, true);
		cli_json_field("compat_driver", chk->compat[0] ? chk->compat : NULL, true);
		cli_json_field("message", chk->text, true);
		printf("}\n");
		return cuda_verdict_ok(chk->verdict) ? 0 : EXIT_FAILED;
	}
	printf("environment  %s (%s)\n", hash, out_esc(name, esc, sizeof(esc)));
	if (need->major)
		printf("CUDA         %s, from %s\n", need->release,
		       out_esc(need->source, esc, sizeof(esc)));
	else
		printf("CUDA         none needed\n");
	if (drv->present)
		printf("driver       %s, from %s\n", drv->version, drv->source);
	else
		printf("driver       none (%s)\n", drv->absent);
	printf("verdict      %s\n", chk->text);
	return cuda_verdict_ok(chk->verdict) ? 0 : EXIT_FAILED;
}

int cmd_check(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct viamount *vm = NULL;
	struct store *st = NULL;
	struct cuda_driver drv;
	struct cuda_need need;
	struct cuda_check chk;
	struct store_env env;
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	/* A bad --driver is said before anything is opened. */
	if ((r = cuda_host_driver(c->driver, &drv, &err)))
		return cli_die(c, &err, r);
	if (is_lock_file(c->argv[0])) {
		r = pkgset_from_lock(c->argv[0], c->platform, c->environment, &set, &err);
		if (r)
			return cli_die(c, &err, r);
		cli_say_platform(c, c->argv[0], set);
		pkgset_hash(set, env.hash);
	} else {
		if ((r = cli_open_view(c, &st, &vm)))
			return r;
		r = cli_view_env(st, vm, c->argv[0], &env, &set, &err);
		cli_close_view(st, vm);
		if (r)
			return cli_die(c, &err, r);
	}
	cuda_need_of(set, &need);
	cuda_check(&need, &drv, &chk);
	r = print_check(c, env.hash, c->argv[0], &need, &drv, &chk);
	pkgset_free(set);
	return r;
}

int cmd_cat(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct viamount *vm;
	struct store_env env;
	struct store_node n;
	struct store *st;
	const char *prefix;
	char *path = NULL, *tok, *save = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0, size;
	int r;

	if ((r = cli_need_args(c, 2)))
		return r;
	if ((r = cli_open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_find(vm, c->argv[0], &env, &err);
		if (!r)
			r = viamount_cat(vm, &env, c->argv[1],
			                 c->prefix ? c->prefix : env.source_prefix, stdout, &err);
		r = r ? cli_die(c, &err, r) : 0;
		goto out;
	}
	if ((r = cli_find_env(c, st, c->argv[0], &env)))
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
		/* The file ends before its size: what was printed is not the file. */
		if (!r && got == 0) {
			snprintf(err.msg, sizeof(err.msg),
			         "%s/%s: ends after %llu of its %llu bytes", env.hash, c->argv[1],
			         (unsigned long long)off, (unsigned long long)size);
			r = -EIO;
		}
	}
	if (!r && fflush(stdout) != 0) {
		r = errno ? -errno : -EIO;
		snprintf(err.msg, sizeof(err.msg), "standard output: %s", strerror(-r));
	}
	if (r)
		r = cli_die(c, &err, r);
out:
	free(path);
	free(buf);
	cli_close_view(st, vm);
	return r;
}

static int print_stats(const struct cli *c, const struct store_stats *s, const struct report_env *v,
                       size_t n)
{
	double ratio = s->stored_bytes ? (double)s->logical_bytes / (double)s->stored_bytes : 0;
	char a[32], b[32], d[32], *json = NULL;
	size_t len;

	if (c->json) {
		if (report_stats_json(s, v, n, &json, &len))
			return cli_die(c, NULL, -ENOMEM);
		fwrite(json, 1, len, stdout);
		free(json);
		return 0;
	}
	printf("environments   %llu\nobjects        %llu\n", (unsigned long long)s->envs,
	       (unsigned long long)s->objects);
	printf("logical bytes  %s (what the environments hold)\n", out_size(s->logical_bytes, a));
	printf("content bytes  %s (distinct contents, uncompressed)\n",
	       out_size(s->content_bytes, b));
	printf("stored bytes   %s (compressed)\n", out_size(s->stored_bytes, d));
	printf("dedup ratio    %.2fx (logical / stored)\n", ratio);
	printf("unique to each environment:\n");
	for (size_t i = 0; i < n; i++)
		printf("  %s  %s\n", v[i].env.hash, out_size(v[i].unique_bytes, a));
	return 0;
}

int cmd_stats(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct report_env *v = NULL;
	struct store_stats s;
	struct viamount *vm;
	struct store *st;
	size_t n = 0;
	int r;

	if ((r = cli_need_args(c, 0)))
		return r;
	if ((r = cli_open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_stats(vm, &s, &v, &n, &err);
	} else {
		r = store_stats(st, &s, &err);
		if (!r)
			r = report_envs(st, &v, &n, &err);
	}
	r = r ? cli_die(c, &err, r) : print_stats(c, &s, v, n);
	report_envs_free(v, n);
	cli_close_view(st, vm);
	return r;
}
