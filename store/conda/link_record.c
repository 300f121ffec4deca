// SPDX-License-Identifier: MIT
/*
 * The files conda writes besides the packages' (link.h): each package's
 * conda-meta/<dist>.json and conda-meta/history, byte for byte as conda writes them, with
 * the JSON writer they share.
 */
#include "link_int.h"

#include "grow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- JSON as Python's json.dumps(indent=2, sort_keys=True) writes it ---- */

void lk_jput(struct jbuf *b, const char *s, size_t n)
{
	char *p;

	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		p = grow_array(b->p, &b->cap, b->n + n + 1, 1);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

void lk_jputs(struct jbuf *b, const char *s)
{
	lk_jput(b, s, strlen(s));
}

/* A new line indented depth levels of two spaces (json.dump's indent=2), in one piece. */
static void jindent(struct jbuf *b, int depth)
{
	static const char line[] = "\n                ";
	const int most = (int)(sizeof(line) - 2) / 2;

	lk_jput(b, line, 1 + 2 * (size_t)(depth < most ? depth : most));
	for (depth -= most; depth > 0; depth -= most)
		lk_jput(b, line + 1, 2 * (size_t)(depth < most ? depth : most));
}

/* A string with ensure_ascii: everything past ASCII as \uXXXX (surrogate pairs past the
 * BMP), lowercase hex, as Python writes it. */
static void jstr(struct jbuf *b, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	char tmp[16];

	lk_jputs(b, "\"");
	while (*u) {
		unsigned cp = *u;
		size_t len = 1, run = 0;

		/* A run of what needs no escape, in one piece. */
		while (u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\')
			run++;
		if (run) {
			lk_jput(b, (const char *)u, run);
			u += run;
			continue;
		}
		if (cp >= 0xf0 && u[1] && u[2] && u[3]) {
			cp = ((cp & 7u) << 18) | ((u[1] & 63u) << 12) | ((u[2] & 63u) << 6) |
			     (u[3] & 63u);
			len = 4;
		} else if (cp >= 0xe0 && u[1] && u[2]) {
			cp = ((cp & 15u) << 12) | ((u[1] & 63u) << 6) | (u[2] & 63u);
			len = 3;
		} else if (cp >= 0xc0 && u[1]) {
			cp = ((cp & 31u) << 6) | (u[1] & 63u);
			len = 2;
		}
		u += len;
		if (cp == '"')
			lk_jputs(b, "\\\"");
		else if (cp == '\\')
			lk_jputs(b, "\\\\");
		else if (cp == '\n')
			lk_jputs(b, "\\n");
		else if (cp == '\r')
			lk_jputs(b, "\\r");
		else if (cp == '\t')
			lk_jputs(b, "\\t");
		else if (cp == '\b')
			lk_jputs(b, "\\b");
		else if (cp == '\f')
			lk_jputs(b, "\\f");
		else if (cp >= 0x20 && cp < 0x7f) {
			tmp[0] = (char)cp;
			lk_jput(b, tmp, 1);
		} else if (cp >= 0x10000) {
			cp -= 0x10000;
			snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x", 0xd800 + (cp >> 10),
			         0xdc00 + (cp & 0x3ff));
			lk_jputs(b, tmp);
		} else {
			snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
			lk_jputs(b, tmp);
		}
	}
	lk_jputs(b, "\"");
}

static bool is_json_word(const char *s)
{
	const char *p = s;

	if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
		return true;
	if (*p == '-')
		p++;
	if (!(*p >= '0' && *p <= '9'))
		return false;
	if (*p == '0' && p[1] >= '0' && p[1] <= '9')
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p == '.') {
		if (!(*++p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return !*p;
}

static const char *key_at(const struct ynode *map, size_t i)
{
	const char *k = ynode_str(ynode_key(map, i));

	return k ? k : "null";
}

/* Keys in code point order (UTF-8's byte order), a repeated key in its order. */
static int cmp_map_key(const void *a, const void *b, void *map)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(key_at(map, x), key_at(map, y));

	return c ? c : (x < y ? -1 : x > y);
}

static void jnode(struct jbuf *b, const struct ynode *n, int depth);

static void jmap(struct jbuf *b, const struct ynode *n, int depth)
{
	size_t cnt = ynode_count(n), *idx;

	if (!cnt) {
		lk_jputs(b, "{}");
		return;
	}
	idx = calloc(cnt, sizeof(*idx));
	if (!idx) {
		b->oom = true;
		return;
	}
	for (size_t i = 0; i < cnt; i++)
		idx[i] = i;
	qsort_r(idx, cnt, sizeof(*idx), cmp_map_key, (void *)n);
	lk_jputs(b, "{");
	for (size_t i = 0, out = 0; i < cnt; i++) {
		/* A repeated key: json.load keeps the last. */
		if (i + 1 < cnt && strcmp(key_at(n, idx[i]), key_at(n, idx[i + 1])) == 0)
			continue;
		lk_jputs(b, out++ ? "," : "");
		jindent(b, depth + 1);
		jstr(b, key_at(n, idx[i]));
		lk_jputs(b, ": ");
		jnode(b, ynode_value(n, idx[i]), depth + 1);
	}
	jindent(b, depth);
	lk_jputs(b, "}");
	free(idx);
}

static void jnode(struct jbuf *b, const struct ynode *n, int depth)
{
	const char *s = ynode_str(n);

	if (ynode_is_map(n)) {
		jmap(b, n, depth);
	} else if (ynode_is_seq(n)) {
		if (!ynode_count(n)) {
			lk_jputs(b, "[]");
			return;
		}
		lk_jputs(b, "[");
		for (size_t i = 0; i < ynode_count(n); i++) {
			jindent(b, depth + 1);
			jnode(b, ynode_item(n, i), depth + 1);
			lk_jputs(b, i + 1 < ynode_count(n) ? "," : "");
		}
		jindent(b, depth);
		lk_jputs(b, "]");
	} else if (!s) {
		lk_jputs(b, "null");
	} else if (!ynode_is_quoted(n) && is_json_word(s)) {
		lk_jputs(b, s);
	} else {
		jstr(b, s);
	}
}

/* ---- conda-meta records ---- */

static void jfield(struct jbuf *b, const char *key, bool *first)
{
	lk_jputs(b, *first ? "" : ",");
	*first = false;
	jindent(b, 1);
	jstr(b, key);
	lk_jputs(b, ": ");
}

/* What a record lists, in conda's order (core/link.py: the link actions, then the compile
 * actions, then the entry points): every path but directories, as linked; the pycs conda
 * compiles for a noarch python package's site-packages .py files (the caller compiles them);
 * the entry points. */
struct ritem {
	char *path;             /* as in the prefix; owned */
	const struct ppath *pp; /* a package path, or NULL */
	const char *type;       /* paths_data's path_type of a generated one */
};

static int record_items(const struct lpkg *k, const char **cmds, size_t ncmds, const char *pyver,
                        struct ritem **ret, size_t *ret_n)
{
	struct ritem *it = calloc(2 * k->npaths + ncmds + 1, sizeof(*it));
	size_t n = 0;

	if (!it)
		return -ENOMEM;
	for (size_t i = 0; i < k->npaths; i++)
		if (k->paths[i].type != PT_DIR) {
			it[n].pp = &k->paths[i];
			it[n++].path = strdup(k->paths[i].dst);
		}
	for (size_t i = 0; k->noarch_py && i < k->npaths; i++)
		if (k->paths[i].type != PT_DIR && lk_is_noarch_py_source(k->paths[i].src)) {
			it[n].type = "pyc_file";
			it[n++].path = lk_pyc_of(k->paths[i].dst, pyver);
		}
	for (size_t i = 0; i < ncmds; i++) {
		it[n].type = "unix_python_entry_point";
		if (asprintf(&it[n++].path, "bin/%s", cmds[i]) < 0)
			it[n - 1].path = NULL;
	}
	*ret = it;
	*ret_n = n;
	for (size_t i = 0; i < n; i++)
		if (!it[i].path)
			return -ENOMEM;
	return 0;
}

/* One paths_data entry: the package's (conda's PathDataV1 from paths.json, _path as the
 * package names it) or a generated one's. */
static void jpath_data(struct jbuf *b, const struct ritem *it)
{
	const struct ppath *pp = it->pp;
	char num[32];

	lk_jputs(b, "{");
	jindent(b, 4);
	lk_jputs(b, "\"_path\": ");
	jstr(b, pp ? pp->src : it->path);
	if (!pp) {
		lk_jputs(b, ",");
		jindent(b, 4);
		lk_jputs(b, "\"path_type\": ");
		jstr(b, it->type);
		jindent(b, 3);
		lk_jputs(b, "}");
		return;
	}
	if (pp->placeholder) {
		lk_jputs(b, ",");
		jindent(b, 4);
		lk_jputs(b, pp->binary ? "\"file_mode\": \"binary\"" : "\"file_mode\": \"text\"");
	}
	if (pp->no_link) {
		lk_jputs(b, ",");
		jindent(b, 4);
		lk_jputs(b, "\"no_link\": true");
	}
	lk_jputs(b, ",");
	jindent(b, 4);
	lk_jputs(b, pp->type == PT_LINK ? "\"path_type\": \"softlink\""
	                                : "\"path_type\": \"hardlink\"");
	if (pp->placeholder) {
		lk_jputs(b, ",");
		jindent(b, 4);
		lk_jputs(b, "\"prefix_placeholder\": ");
		jstr(b, pp->placeholder);
	}
	if (pp->sha256) {
		lk_jputs(b, ",");
		jindent(b, 4);
		lk_jputs(b, "\"sha256\": ");
		jstr(b, pp->sha256);
		/* A linked file is the package's bytes; one with a placeholder depends on the
		 * path it is served at, so no sha256_in_prefix. */
		if (!pp->placeholder && pp->type == PT_FILE) {
			lk_jputs(b, ",");
			jindent(b, 4);
			lk_jputs(b, "\"sha256_in_prefix\": ");
			jstr(b, pp->sha256);
		}
	}
	if (pp->has_size) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)pp->size);
		lk_jputs(b, ",");
		jindent(b, 4);
		lk_jputs(b, "\"size_in_bytes\": ");
		lk_jputs(b, num);
	}
	jindent(b, 3);
	lk_jputs(b, "}");
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys conda's record adds or replaces. */
static const char *const record_keys[] = {
        "channel",    "features",       "files",  "fn",   "link",           "md5", "package_type",
        "paths_data", "requested_spec", "sha256", "size", "track_features", "url"};

/* Whether the record has key of ours: the ones we have a value for. */
static bool record_has(const struct lpkg *k, const char *key)
{
	if (strcmp(key, "package_type") == 0)
		return k->noarch_py || k->noarch_generic;
	if (strcmp(key, "md5") == 0)
		return k->in->md5;
	if (strcmp(key, "sha256") == 0)
		return k->in->sha256;
	if (strcmp(key, "size") == 0)
		return k->in->size;
	return true;
}

/*
 * conda-meta/<dist>.json as conda's CreatePrefixRecordAction writes it (json.dump,
 * indent 2, sorted keys, no final newline): index.json's fields, then what the install
 * adds; "files" and "paths_data" list record_items. "paths_data" keeps each package path
 * as paths.json names it (noarch python paths stay site-packages/..., as conda leaves
 * them). features and track_features are index.json's, "" when it has none.
 *
 * The machine paths conda records name its package cache, which a store has not:
 * extracted_package_dir and package_tarball_full_path are left out (conda and rattler
 * read both as optional), and link.source is "" with type 1 (hardlink: the files are the
 * package's bytes). sha256_in_prefix is left out for files with a placeholder.
 * requested_spec is "None", as conda writes it for a package no spec asked for: a lock
 * names no specs.
 */
int lk_make_record(struct lpkg *k, const char **cmds, size_t ncmds, const char *pyver,
                   struct jbuf *b)
{
	const size_t nmine = sizeof(record_keys) / sizeof(*record_keys);
	const struct ynode *root = yamldoc_root(k->index);
	size_t cnt = ynode_count(root), nkeys = 0, nit = 0;
	const char **keys = calloc(cnt + nmine + 1, sizeof(*keys));
	struct ritem *it = NULL;
	bool first = true;
	char num[32];
	int r = -ENOMEM;

	if (!keys || record_items(k, cmds, ncmds, pyver, &it, &nit) < 0)
		goto out;
	for (size_t i = 0; i < cnt; i++) {
		const char *key = ynode_str(ynode_key(root, i));
		bool ours = false;

		for (size_t m = 0; key && m < nmine; m++)
			ours |= strcmp(key, record_keys[m]) == 0;
		if (key && !ours && strcmp(key, "extracted_package_dir") != 0 &&
		    strcmp(key, "package_tarball_full_path") != 0)
			keys[nkeys++] = key;
	}
	for (size_t m = 0; m < nmine; m++)
		if (record_has(k, record_keys[m]))
			keys[nkeys++] = record_keys[m];
	qsort(keys, nkeys, sizeof(*keys), cmp_strp);
	lk_jputs(b, "{");
	for (size_t i = 0; i < nkeys; i++) {
		const char *key = keys[i];

		if (i && strcmp(key, keys[i - 1]) == 0)
			continue;
		jfield(b, key, &first);
		if (strcmp(key, "channel") == 0) {
			jstr(b, k->channel);
		} else if (strcmp(key, "features") == 0 || strcmp(key, "track_features") == 0) {
			if (ynode_get(root, key))
				jnode(b, ynode_get(root, key), 1);
			else
				lk_jputs(b, "\"\"");
		} else if (strcmp(key, "fn") == 0) {
			jstr(b, k->in->fn);
		} else if (strcmp(key, "url") == 0) {
			jstr(b, k->in->url);
		} else if (strcmp(key, "md5") == 0) {
			jstr(b, k->in->md5);
		} else if (strcmp(key, "sha256") == 0) {
			jstr(b, k->in->sha256);
		} else if (strcmp(key, "size") == 0) {
			snprintf(num, sizeof(num), "%llu", (unsigned long long)k->in->size);
			lk_jputs(b, num);
		} else if (strcmp(key, "package_type") == 0) {
			jstr(b, k->noarch_py ? "noarch_python" : "noarch_generic");
		} else if (strcmp(key, "requested_spec") == 0) {
			jstr(b, "None");
		} else if (strcmp(key, "link") == 0) {
			lk_jputs(b, "{");
			jindent(b, 2);
			lk_jputs(b, "\"source\": \"\",");
			jindent(b, 2);
			lk_jputs(b, "\"type\": 1");
			jindent(b, 1);
			lk_jputs(b, "}");
		} else if (strcmp(key, "files") == 0) {
			lk_jputs(b, nit ? "[" : "[]");
			for (size_t j = 0; j < nit; j++) {
				jindent(b, 2);
				jstr(b, it[j].path);
				lk_jputs(b, j + 1 < nit ? "," : "");
			}
			if (nit) {
				jindent(b, 1);
				lk_jputs(b, "]");
			}
		} else if (strcmp(key, "paths_data") == 0) {
			lk_jputs(b, "{");
			jindent(b, 2);
			lk_jputs(b, nit ? "\"paths\": [" : "\"paths\": [],");
			for (size_t j = 0; j < nit; j++) {
				jindent(b, 3);
				jpath_data(b, &it[j]);
				lk_jputs(b, j + 1 < nit ? "," : "");
			}
			if (nit) {
				jindent(b, 2);
				lk_jputs(b, "],");
			}
			jindent(b, 2);
			lk_jputs(b, "\"paths_version\": 1");
			jindent(b, 1);
			lk_jputs(b, "}");
		} else {
			jnode(b, ynode_get(root, key), 1);
		}
	}
	jindent(b, 0);
	lk_jputs(b, "}"); /* json.dump ends with the brace, no newline */
	r = b->oom ? -ENOMEM : 0;
out:
	for (size_t i = 0; it && i < nit; i++)
		free(it[i].path);
	free(it);
	free(keys);
	return r;
}

/* conda-meta/history as conda's History.write_changes writes it for a new environment:
 * the header with the local time (conda's time.strftime), the command, and one
 * "+channel/subdir::dist" line per package, sorted. conda also writes "# conda version:",
 * which would claim a conda that never ran, and "# update specs:", which a lock does not
 * have: both are left out (conda's history parser takes both as optional). */
int lk_make_history(struct lpkg *k, size_t n, int64_t now_ns, struct jbuf *b)
{
	char **lines = calloc(n ? n : 1, sizeof(*lines));
	time_t t = (time_t)(now_ns / 1000000000);
	struct tm tm;
	char when[64];
	int r = 0;

	if (!lines)
		return -ENOMEM;
	if (!localtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(when, sizeof(when), "1970-01-01 00:00:00");
	for (size_t i = 0; i < n; i++)
		if (asprintf(&lines[i], "+%s::%s\n", k[i].channel, k[i].dist) < 0) {
			lines[i] = NULL;
			r = -ENOMEM;
			goto out;
		}
	qsort(lines, n, sizeof(*lines), cmp_strp);
	lk_jputs(b, "==> ");
	lk_jputs(b, when);
	lk_jputs(b, " <==\n# cmd: condafs install\n");
	for (size_t i = 0; i < n; i++)
		lk_jputs(b, lines[i]);
	r = b->oom ? -ENOMEM : 0;
out:
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	return r;
}
