// SPDX-License-Identifier: MIT
/*
 * Reports: what `condafs ls`, `stats` and `show` say about a store, as the JSON texts their
 * --json prints, and read back from that JSON. condafsd publishes the same texts under
 * MOUNTPOINT/.condafs/ for users who may not open the store (README, "Security model"), so
 * the CLI run by such a user reads exactly what root's --json would print, and prints it
 * with the same code. One file holds the format both ways, so the two cannot drift apart.
 */
#include "condafs/report.h"

#include "pkgset.h"
#include "yamldoc.h"

#include "condafs/cuda.h"
#include "condafs/escape.h"
#include "err.h"
#include "hex.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- collecting ---- */

void report_envs_free(struct report_env *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].tags);
	free(v);
}

int report_envs_tag(struct report_env *v, size_t n, const struct store_tag *tags, size_t ntags)
{
	/* Both sorted: tags by name, environments by hash; a tag finds its environment by
	 * bisection and keeps the name order within it. */
	for (size_t t = 0; t < ntags; t++) {
		size_t lo = 0, hi = n;
		struct store_tag *nt;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int c = strcmp(v[mid].env.hash, tags[t].hash);

			if (c == 0) {
				lo = mid;
				break;
			}
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo >= n || strcmp(v[lo].env.hash, tags[t].hash) != 0)
			continue;
		nt = realloc(v[lo].tags, (v[lo].ntags + 1) * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		v[lo].tags = nt;
		nt[v[lo].ntags++] = tags[t];
	}
	return 0;
}

int report_envs_cuda(struct store *st, struct report_env *v, size_t n, struct cfs_err *err)
{
	for (size_t i = 0; i < n; i++) {
		struct pkgset *set = NULL;
		struct cuda_need need;
		int r = store_env_packages(st, &v[i].env, &set, err);

		if (r)
			return r;
		cuda_need_of(set, &need);
		pkgset_free(set);
		memcpy(v[i].cuda, need.release, sizeof(v[i].cuda));
		memcpy(v[i].cuda_source, need.source, sizeof(v[i].cuda_source));
	}
	return 0;
}

int report_envs(struct store *st, struct report_env **ret, size_t *ret_n, struct cfs_err *err)
{
	struct store_env *envs = NULL;
	struct store_tag *tags = NULL;
	struct report_env *v = NULL;
	size_t n = 0, ntags = 0;
	int r;

	r = store_env_list(st, &envs, &n, err);
	if (!r)
		r = store_tag_list(st, NULL, &tags, &ntags, err);
	if (r)
		goto out;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n && !r; i++) {
		v[i].env = envs[i];
		r = store_env_unique_bytes(st, &envs[i], &v[i].unique_bytes, err);
	}
	if (!r)
		r = report_envs_cuda(st, v, n, err);
	if (!r)
		r = report_envs_tag(v, n, tags, ntags);
out:
	free(envs);
	free(tags);
	if (r) {
		report_envs_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* ---- writing: exactly what the CLI's --json prints ---- */

/* s as a JSON string (NULL: null); bytes that are not UTF-8 become U+FFFD, and control
 * characters (C0, DEL, C1) \uXXXX, as the CLI's out_json_str: valid JSON raw, but a
 * terminal showing the output may act on them. */
static void json_str(FILE *f, const char *s)
{
	if (s)
		escape_json(f, s, strlen(s));
	else
		fputs("null", f);
}

static void json_field(FILE *f, const char *name, const char *v, bool comma)
{
	fprintf(f, "%s\"%s\": ", comma ? ", " : "", name);
	json_str(f, v);
}

/* The text written to f, made by open_memstream: *ret and *ret_len on success. */
static int json_close(FILE *f, char **buf, size_t *len, char **ret, size_t *ret_len)
{
	bool bad = ferror(f);

	if (fclose(f) != 0 || bad || !*buf) {
		free(*buf);
		return -ENOMEM;
	}
	*ret = *buf;
	*ret_len = *len;
	return 0;
}

int report_envs_json(const struct report_env *v, size_t n, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		const struct store_env *e = &v[i].env;

		fprintf(f, "%s\n {\"hash\": ", i ? "," : "");
		json_str(f, e->hash);
		fputs(", \"tags\": [", f);
		for (size_t t = 0; t < v[i].ntags; t++) {
			fputs(t ? ", " : "", f);
			json_str(f, v[i].tags[t].name);
		}
		fputs("], \"platform\": ", f);
		json_str(f, e->platform);
		fprintf(f,
		        ", \"files\": %" PRIu64 ", \"logical_bytes\": %" PRIu64
		        ", \"unique_bytes\": %" PRIu64 ", \"created\": %" PRId64
		        ", \"last_used\": %" PRId64 ", \"source_prefix\": ",
		        e->files, e->logical_bytes, v[i].unique_bytes, e->created, e->last_used);
		json_str(f, e->source_prefix);
		fprintf(f, ", \"broken\": %s", e->broken ? "true" : "false");
		json_field(f, "cuda", v[i].cuda[0] ? v[i].cuda : NULL, true);
		json_field(f, "cuda_source", v[i].cuda[0] ? v[i].cuda_source : NULL, true);
		fputc('}', f);
	}
	fputs(n ? "\n]\n" : "]\n", f);
	return json_close(f, &buf, &len, ret, ret_len);
}

int report_stats_json(const struct store_stats *s, const struct report_env *v, size_t n, char **ret,
                      size_t *ret_len)
{
	double ratio = s->stored_bytes ? (double)s->logical_bytes / (double)s->stored_bytes : 0;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	fprintf(f,
	        "{\"environments\": %" PRIu64 ", \"objects\": %" PRIu64
	        ", \"logical_bytes\": %" PRIu64 ", \"content_bytes\": %" PRIu64
	        ", \"stored_bytes\": %" PRIu64 ", \"dedup_ratio\": %.3f, \"unique_bytes\": {",
	        s->envs, s->objects, s->logical_bytes, s->content_bytes, s->stored_bytes, ratio);
	for (size_t i = 0; i < n; i++) {
		fputs(i ? ", " : "", f);
		json_str(f, v[i].env.hash);
		fprintf(f, ": %" PRIu64, v[i].unique_bytes);
	}
	fputs("}}\n", f);
	return json_close(f, &buf, &len, ret, ret_len);
}

int report_packages_json(const struct store_env *env, const struct pkgset *set, char **ret,
                         size_t *ret_len)
{
	struct cuda_need need;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	fputc('{', f);
	json_field(f, "hash", env->hash, false);
	json_field(f, "platform", env->platform, true);
	cuda_need_of(set, &need);
	json_field(f, "cuda", need.release[0] ? need.release : NULL, true);
	json_field(f, "cuda_source", need.release[0] ? need.source : NULL, true);
	fputs(", \"packages\": [", f);
	for (size_t i = 0; i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);

		fprintf(f, "%s\n {", i ? "," : "");
		json_field(f, "kind", p->kind == PKG_CONDA ? "conda" : "pypi", false);
		json_field(f, "name", p->name, true);
		json_field(f, "version", p->version, true);
		json_field(f, "build", p->build, true);
		json_field(f, "channel", p->channel, true);
		json_field(f, "subdir", p->subdir, true);
		json_field(f, "md5", p->md5, true);
		json_field(f, "sha256", p->sha256, true);
		fputc('}', f);
	}
	fputs("\n]}\n", f);
	return json_close(f, &buf, &len, ret, ret_len);
}

int report_mount_json(const char *store, const char *mountpoint, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	fputc('{', f);
	json_field(f, "store", store, false);
	json_field(f, "mountpoint", mountpoint, true);
	fputs("}\n", f);
	return json_close(f, &buf, &len, ret, ret_len);
}

/* ---- reading back ---- */

static int bad(struct cfs_err *err, const char *name, const char *what, size_t i, const char *key)
{
	if (key)
		return err_set(err, -EBADMSG, "%s: %s %zu: no valid '%s'", name, what, i + 1, key);
	return err_set(err, -EBADMSG, "%s: not a condafs report (%s)", name, what);
}

static bool get_u64(const struct ynode *n, const char *key, uint64_t *ret)
{
	return ynode_u64(ynode_get(n, key), ret);
}

static bool get_i64(const struct ynode *n, const char *key, int64_t *ret)
{
	const char *s = ynode_str(ynode_get(n, key));
	char *end;

	if (!s || !*s)
		return false;
	errno = 0;
	*ret = strtoll(s, &end, 10);
	return !errno && !*end;
}

/* A string that fits size bytes with its NUL. */
static bool get_str(const struct ynode *n, const char *key, char *buf, size_t size)
{
	const char *s = ynode_str(ynode_get(n, key));

	if (!s || strlen(s) >= size)
		return false;
	memcpy(buf, s, strlen(s) + 1);
	return true;
}

/* The CUDA need: a string, or null or missing ("" then: a condafsd from before the
 * need was published writes none). */
static bool cuda_field(const struct ynode *n, const char *key, char *buf, size_t size)
{
	const struct ynode *v = ynode_get(n, key);

	if (!v || (!ynode_str(v) && !ynode_is_map(v) && !ynode_is_seq(v))) {
		buf[0] = '\0';
		return true;
	}
	return get_str(n, key, buf, size);
}

static bool is_hash(const char *s)
{
	size_t i = 0;

	for (; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 32;
}

static int parse_env(const char *name, size_t i, const struct ynode *o, struct report_env *e,
                     struct cfs_err *err)
{
	const struct ynode *tags = ynode_get(o, "tags");
	const char *broken = ynode_str(ynode_get(o, "broken"));
	const char *key = NULL;

	if (!get_str(o, "hash", e->env.hash, sizeof(e->env.hash)) || !is_hash(e->env.hash))
		key = "hash";
	else if (!get_str(o, "platform", e->env.platform, sizeof(e->env.platform)))
		key = "platform";
	else if (!get_u64(o, "files", &e->env.files))
		key = "files";
	else if (!get_u64(o, "logical_bytes", &e->env.logical_bytes))
		key = "logical_bytes";
	else if (!get_u64(o, "unique_bytes", &e->unique_bytes))
		key = "unique_bytes";
	else if (!get_i64(o, "created", &e->env.created))
		key = "created";
	else if (!get_i64(o, "last_used", &e->env.last_used))
		key = "last_used";
	else if (!get_str(o, "source_prefix", e->env.source_prefix, sizeof(e->env.source_prefix)))
		key = "source_prefix";
	else if (!broken || (strcmp(broken, "true") != 0 && strcmp(broken, "false") != 0))
		key = "broken";
	else if (!ynode_is_seq(tags))
		key = "tags";
	else if (!cuda_field(o, "cuda", e->cuda, sizeof(e->cuda)))
		key = "cuda";
	else if (!cuda_field(o, "cuda_source", e->cuda_source, sizeof(e->cuda_source)))
		key = "cuda_source";
	if (key)
		return bad(err, name, "environment", i, key);
	e->env.broken = !strcmp(broken, "true");
	e->ntags = ynode_count(tags);
	e->tags = calloc(e->ntags ? e->ntags : 1, sizeof(*e->tags));
	if (!e->tags)
		return -ENOMEM;
	for (size_t t = 0; t < e->ntags; t++) {
		const char *tag = ynode_str(ynode_item(tags, t));

		if (!tag || !store_tag_valid(tag))
			return bad(err, name, "environment", i, "tags");
		memcpy(e->tags[t].name, tag, strlen(tag) + 1);
		memcpy(e->tags[t].hash, e->env.hash, sizeof(e->tags[t].hash));
	}
	return 0;
}

int report_envs_parse(const char *name, const char *text, size_t len, struct report_env **ret,
                      size_t *ret_n, struct cfs_err *err)
{
	struct yamldoc *doc = NULL;
	const struct ynode *root;
	struct report_env *v = NULL;
	size_t n = 0;
	int r = yamldoc_parse(name, text, len, &doc, err);

	if (r)
		return r;
	root = yamldoc_root(doc);
	if (!ynode_is_seq(root)) {
		r = bad(err, name, "not a list of environments", 0, NULL);
		goto out;
	}
	n = ynode_count(root);
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n && !r; i++)
		r = parse_env(name, i, ynode_item(root, i), &v[i], err);
out:
	yamldoc_free(doc);
	if (r) {
		report_envs_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int report_stats_parse(const char *name, const char *text, size_t len, struct store_stats *ret,
                       struct report_env **ret_envs, size_t *ret_n, struct cfs_err *err)
{
	static const char *const keys[] = {"environments", "objects", "logical_bytes",
	                                   "content_bytes", "stored_bytes"};
	struct store_stats s = {0};
	uint64_t *fields[] = {&s.envs, &s.objects, &s.logical_bytes, &s.content_bytes,
	                      &s.stored_bytes};
	struct yamldoc *doc = NULL;
	const struct ynode *root, *uniq;
	struct report_env *v = NULL;
	size_t n = 0;
	int r = yamldoc_parse(name, text, len, &doc, err);

	if (r)
		return r;
	root = yamldoc_root(doc);
	uniq = ynode_get(root, "unique_bytes");
	if (!ynode_is_map(root) || !ynode_is_map(uniq)) {
		r = bad(err, name, "not the store's statistics", 0, NULL);
		goto out;
	}
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]) && !r; k++)
		if (!get_u64(root, keys[k], fields[k]))
			r = err_set(err, -EBADMSG, "%s: no valid '%s'", name, keys[k]);
	n = ynode_count(uniq);
	v = r ? NULL : calloc(n ? n : 1, sizeof(*v));
	if (!r && !v)
		r = -ENOMEM;
	for (size_t i = 0; i < n && !r; i++) {
		const char *h = ynode_str(ynode_key(uniq, i)), *u = ynode_str(ynode_value(uniq, i));
		char *end;

		if (!h || !is_hash(h) || !u || *u < '0' || *u > '9') {
			r = bad(err, name, "unique_bytes entry", i, "hash");
			break;
		}
		memcpy(v[i].env.hash, h, 33);
		errno = 0;
		v[i].unique_bytes = strtoull(u, &end, 10);
		if (errno || *end)
			r = bad(err, name, "unique_bytes entry", i, "bytes");
	}
out:
	yamldoc_free(doc);
	if (r) {
		report_envs_free(v, n);
		return r;
	}
	*ret = s;
	*ret_envs = v;
	*ret_n = n;
	return 0;
}

int report_packages_parse(const char *name, const char *text, size_t len, struct pkgset **ret,
                          struct cfs_err *err)
{
	struct yamldoc *doc = NULL;
	const struct ynode *root, *pkgs;
	struct pkgset *set = NULL;
	const char *platform;
	int r = yamldoc_parse(name, text, len, &doc, err);

	if (r)
		return r;
	root = yamldoc_root(doc);
	pkgs = ynode_get(root, "packages");
	platform = ynode_str(ynode_get(root, "platform"));
	if (!ynode_is_map(root) || !ynode_is_seq(pkgs) || !platform) {
		r = bad(err, name, "not an environment's packages", 0, NULL);
		goto out;
	}
	r = pkgset_new(&set);
	for (size_t i = 0; !r && i < ynode_count(pkgs); i++) {
		const struct ynode *o = ynode_item(pkgs, i);
		const char *kind = ynode_str(ynode_get(o, "kind"));
		struct pkg p = {
		        .kind = kind && !strcmp(kind, "pypi") ? PKG_PYPI : PKG_CONDA,
		        .name = ynode_str(ynode_get(o, "name")),
		        .version = ynode_str(ynode_get(o, "version")),
		        .build = ynode_str(ynode_get(o, "build")),
		        .channel = ynode_str(ynode_get(o, "channel")),
		        .subdir = ynode_str(ynode_get(o, "subdir")),
		        .md5 = ynode_str(ynode_get(o, "md5")),
		        .sha256 = ynode_str(ynode_get(o, "sha256")),
		};

		if (!kind || (strcmp(kind, "conda") != 0 && strcmp(kind, "pypi") != 0))
			r = bad(err, name, "package", i, "kind");
		else
			r = pkgset_add(set, &p, name, err);
	}
	if (!r)
		r = pkgset_finish(set, platform, name, err);
out:
	yamldoc_free(doc);
	if (r) {
		pkgset_free(set);
		return r;
	}
	*ret = set;
	return 0;
}

int report_mount_parse(const char *name, const char *text, size_t len, char **ret_store,
                       char **ret_mountpoint, struct cfs_err *err)
{
	struct yamldoc *doc = NULL;
	const char *store, *mnt;
	char *a = NULL, *b = NULL;
	int r = yamldoc_parse(name, text, len, &doc, err);

	if (r)
		return r;
	store = ynode_str(ynode_get(yamldoc_root(doc), "store"));
	mnt = ynode_str(ynode_get(yamldoc_root(doc), "mountpoint"));
	if (!store || !mnt || *store != '/' || *mnt != '/') {
		r = bad(err, name, "no store and mount point", 0, NULL);
		goto out;
	}
	a = strdup(store);
	b = strdup(mnt);
	if (!a || !b) {
		r = -ENOMEM;
		goto out;
	}
	*ret_store = a;
	*ret_mountpoint = b;
	a = b = NULL;
out:
	free(a);
	free(b);
	yamldoc_free(doc);
	return r;
}

/* ---- finding an environment, as store_env_find does ---- */

int report_env_find(const struct report_env *v, size_t n, const char *name, size_t *ret,
                    struct cfs_err *err)
{
	size_t len = strlen(name), found = n;

	if (store_tag_valid(name))
		for (size_t i = 0; i < n; i++)
			for (size_t t = 0; t < v[i].ntags; t++)
				if (!strcmp(v[i].tags[t].name, name)) {
					*ret = i;
					return 0;
				}
	if (len < 4 || len > 32 || !hex_only(name, len, false))
		return err_set(err, -ENOENT, "%s: no such environment or tag", name);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(v[i].env.hash, name, len) != 0)
			continue;
		if (found < n)
			return err_set(err, -EINVAL, "%s: more than one environment starts with it",
			               name);
		found = i;
	}
	if (found == n)
		return err_set(err, -ENOENT, "%s: no such environment", name);
	*ret = found;
	return 0;
}
