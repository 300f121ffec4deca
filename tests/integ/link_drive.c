// SPDX-License-Identifier: MIT
/*
 * link_drive TOKEN NOW_NS PKGDIR...: the link plan (store/conda/link.c) of the extracted packages
 * PKGDIR..., as JSON lines on stdout: one {"path", "type", ...} per entry, then
 * {"scripts": [...]}, {"python": ...} and {"order": [dist, ...]}. Each package's url, fn,
 * channel, md5, sha256 and size come from its info/repodata_record.json, as a package
 * cache holds them; without one, from made-up values on channel.example.invalid. Strings
 * are written byte by byte: every byte outside printable ASCII as \u00XX, so a reader gets
 * the bytes back with .encode("latin-1"). Warnings go to stderr as "link_drive: warning:
 * LINE"; an error is "link_drive: MESSAGE" and exit 1.
 */
#include "link.h"
#include "yamldoc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct info {
	struct yamldoc *doc;
	char *channel, *url, *fn;
};

static void jstr(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void jstrz(const char *s)
{
	if (s)
		jstr(s, strlen(s));
	else
		fputs("null", stdout);
}

static void on_warn(void *arg, const char *line)
{
	(void)arg;
	fprintf(stderr, "link_drive: warning: %s\n", line);
}

static const char *field(const struct info *in, const char *key)
{
	return ynode_str(ynode_get(yamldoc_root(in->doc), key));
}

static int load(const char *dir, struct info *in, struct link_pkg *p)
{
	struct cfs_err err = {{0}};
	const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
	const char *ch, *sub;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (dfd < 0) {
		perror(dir);
		return -1;
	}
	r = yamldoc_load(dfd, "info/repodata_record.json", dir, 1u << 20, &in->doc, &err);
	close(dfd);
	if (r < 0 && r != -ENOENT) {
		fprintf(stderr, "link_drive: %s\n", err.msg);
		return -1;
	}
	ch = field(in, "channel");
	sub = field(in, "subdir");
	if (ch && sub && strlen(ch) > strlen(sub) + 1 &&
	    strcmp(ch + strlen(ch) - strlen(sub), sub) == 0)
		in->channel = strndup(ch, strlen(ch) - strlen(sub) - 1);
	else
		in->channel = strdup(ch ? ch : "https://channel.example.invalid/t");
	if (asprintf(&in->fn, "%s.conda", base) < 0 ||
	    asprintf(&in->url, "%s/%s/%s", in->channel, sub ? sub : "noarch",
	             field(in, "fn") ? field(in, "fn") : in->fn) < 0)
		return -1;
	p->dir = dir;
	p->url = field(in, "url") ? field(in, "url") : in->url;
	p->fn = field(in, "fn") ? field(in, "fn") : in->fn;
	p->channel = in->channel;
	p->md5 = field(in, "md5");
	p->sha256 = field(in, "sha256");
	p->size = field(in, "size") ? strtoull(field(in, "size"), NULL, 10) : 0;
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const types[] = {"file", "symlink", "dir"};
	struct cfs_err err = {{0}};
	struct link_plan *plan = NULL;
	struct link_pkg *pkgs;
	struct info *infos;
	size_t n;
	int rc = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: link_drive TOKEN NOW_NS PKGDIR...\n");
		return 2;
	}
	n = (size_t)argc - 3;
	pkgs = calloc(n + 1, sizeof(*pkgs));
	infos = calloc(n + 1, sizeof(*infos));
	if (!pkgs || !infos)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (load(argv[3 + i], &infos[i], &pkgs[i]) < 0)
			goto out;
	if (link_plan_make(pkgs, n, argv[1], strtoll(argv[2], NULL, 10), on_warn, NULL, &plan,
	                   &err) < 0) {
		fprintf(stderr, "link_drive: %s\n", err.msg);
		goto out;
	}
	for (size_t i = 0; i < link_plan_count(plan); i++) {
		const struct link_entry *e = link_plan_entry(plan, i);

		fputs("{\"path\": ", stdout);
		jstrz(e->path);
		printf(", \"type\": \"%s\", \"mode\": %u, \"mtime_ns\": %lld, \"pkg\": ",
		       types[e->type], (unsigned)e->mode, (long long)e->mtime_ns);
		if (e->pkg == LINK_GENERATED)
			fputs("null", stdout);
		else
			jstrz(pkgs[e->pkg].dir);
		fputs(", \"src\": ", stdout);
		jstrz(e->src);
		fputs(", \"data\": ", stdout);
		if (e->data)
			jstr((const char *)e->data, e->len);
		else
			fputs("null", stdout);
		printf(", \"len\": %zu, \"target\": ", e->len);
		jstrz(e->target);
		fputs(", \"placeholder\": ", stdout);
		jstrz(e->placeholder);
		fputs(", \"pyc_of\": ", stdout);
		jstrz(e->pyc_of);
		printf(", \"binary\": %s}\n", e->binary ? "true" : "false");
	}
	fputs("{\"scripts\": [", stdout);
	for (size_t i = 0; i < link_plan_scripts(plan); i++) {
		fputs(i ? ", " : "", stdout);
		jstrz(link_plan_script_pkg(plan, i));
	}
	fputs("]}\n{\"python\": ", stdout);
	jstrz(link_plan_python(plan));
	fputs("}\n{\"order\": [", stdout);
	for (size_t i = 0; i < n; i++) {
		fputs(i ? ", " : "", stdout);
		jstrz(pkgs[link_plan_order(plan, i)].dir);
	}
	fputs("]}\n", stdout);
	rc = fflush(stdout) ? 1 : 0;
out:
	link_plan_free(plan);
	for (size_t i = 0; i < n; i++) {
		yamldoc_free(infos[i].doc);
		free(infos[i].channel);
		free(infos[i].url);
		free(infos[i].fn);
	}
	free(infos);
	free(pkgs);
	return rc;
}
