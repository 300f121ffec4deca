// SPDX-License-Identifier: MIT
/*
 * fetch_drive: store/fetch.c and store/conda/pkgcache.c from the command line, for
 * tests/integ/store_fetch.py.
 *
 *   fetch_drive fetch DIR PARALLEL[/K] URL=NAME[@SIZE|@~HINT]...
 *       every "progress: DONE/TOTAL BYTES/BYTES_TOTAL RATE" line on stderr, and "done: NAME
 *       SIZE" as each item is whole (SIZE: its file's, then), then "rc=0" on stdout; with /K,
 *       the stop hook asks to stop once K items are whole; on failure "rc=-ERRNO" on stdout,
 * "fetch_drive: MESSAGE" on stderr, exit 1. fetch_drive map RULE... -- URL the URL mapped through
 * the rules on stdout; a refused rule: its message, exit 1. fetch_drive find DIR... -- FN SHA256|-
 * MD5|- "archive: PATH|-" and "extracted: PATH|-" on stdout (default caches included).
 */
#include "fetch.h"
#include "pkgcache.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void on_progress(const struct fetch_progress *p, void *arg)
{
	(void)arg;
	fprintf(stderr, "progress: %zu/%zu %" PRIu64 "/%" PRIu64 " %.0f\n", p->done, p->total,
	        p->bytes, p->bytes_total, p->rate);
}

struct drive {
	const struct fetch_item *items;
	int dir_fd;
	unsigned long stop_after, ndone; /* stop_after 0: never */
};

static void on_done(size_t i, void *arg)
{
	struct drive *d = arg;
	struct stat sb;

	d->ndone++;
	if (fstatat(d->dir_fd, d->items[i].name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		sb.st_size = -1;
	fprintf(stderr, "done: %s %lld\n", d->items[i].name, (long long)sb.st_size);
}

static bool on_stop(void *arg)
{
	const struct drive *d = arg;

	return d->stop_after && d->ndone >= d->stop_after;
}

static int cmd_fetch(int argc, char **argv)
{
	struct cfs_err err = {{0}};
	struct fetch_hooks hooks;
	struct fetch_item *items;
	struct drive d;
	char *end;
	unsigned long parallel;
	int dir_fd, r, n = argc - 2;

	if (argc < 2)
		return 2;
	dir_fd = open(argv[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		perror(argv[0]);
		return 1;
	}
	items = calloc((size_t)n + 1, sizeof(*items));
	if (!items)
		return 1;
	for (int i = 0; i < n; i++) {
		char *arg = argv[2 + i], *eq = strrchr(arg, '='), *at;

		if (!eq) {
			fprintf(stderr, "fetch_drive: %s: not URL=NAME\n", arg);
			free(items);
			close(dir_fd);
			return 2;
		}
		*eq = '\0';
		items[i].url = arg;
		items[i].name = eq + 1;
		at = strrchr(eq + 1, '@');
		if (at) {
			*at = '\0';
			if (at[1] == '~')
				items[i].size_hint = strtoull(at + 2, NULL, 10);
			else
				items[i].size = strtoull(at + 1, NULL, 10);
		}
	}
	parallel = strtoul(argv[1], &end, 10);
	d = (struct drive){items, dir_fd, *end == '/' ? strtoul(end + 1, NULL, 10) : 0, 0};
	hooks = (struct fetch_hooks){
	        .progress = on_progress, .done = on_done, .stop = on_stop, .arg = &d};
	r = fetch_all(items, (size_t)n, dir_fd, (unsigned)parallel, &hooks, &err);
	printf("rc=%d\n", r);
	if (r < 0)
		fprintf(stderr, "fetch_drive: %s\n", err.msg);
	free(items);
	close(dir_fd);
	return r < 0;
}

static int cmd_map(int argc, char **argv)
{
	struct cfs_err err = {{0}};
	struct mirrors *m;
	char *out = NULL;
	int i, r;

	if (mirrors_new(&m) < 0)
		return 1;
	for (i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
		r = mirrors_add(m, argv[i], &err);
		if (r < 0) {
			fprintf(stderr, "fetch_drive: %s\n", err.msg);
			mirrors_free(m);
			return 1;
		}
	}
	if (i + 2 != argc) {
		mirrors_free(m);
		return 2;
	}
	r = mirrors_map(m, argv[i + 1], &out);
	if (!r)
		printf("%s\n", out);
	free(out);
	mirrors_free(m);
	return r < 0;
}

static int cmd_find(int argc, char **argv)
{
	struct cfs_err err = {{0}};
	struct pkgcache *c;
	char *archive = NULL, *extracted = NULL;
	int i, r;

	for (i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
		;
	if (i + 4 != argc)
		return 2;
	r = pkgcache_new((const char *const *)argv, (size_t)i, &c, &err);
	if (r < 0) {
		fprintf(stderr, "fetch_drive: %s\n", err.msg);
		return 1;
	}
	r = pkgcache_find(c, argv[i + 1], strcmp(argv[i + 2], "-") != 0 ? argv[i + 2] : NULL,
	                  strcmp(argv[i + 3], "-") != 0 ? argv[i + 3] : NULL, &archive, &extracted);
	if (!r)
		printf("archive: %s\nextracted: %s\n", archive ? archive : "-",
		       extracted ? extracted : "-");
	free(archive);
	free(extracted);
	pkgcache_free(c);
	return r < 0;
}

int main(int argc, char **argv)
{
	int rc = 2;

	if (argc >= 2 && strcmp(argv[1], "fetch") == 0)
		rc = cmd_fetch(argc - 2, argv + 2);
	else if (argc >= 2 && strcmp(argv[1], "map") == 0)
		rc = cmd_map(argc - 2, argv + 2);
	else if (argc >= 2 && strcmp(argv[1], "find") == 0)
		rc = cmd_find(argc - 2, argv + 2);
	if (rc == 2)
		fprintf(stderr, "usage: fetch_drive fetch DIR PARALLEL URL=NAME[@SIZE]... | "
		                "map RULE... -- URL | find DIR... -- FN SHA256|- MD5|-\n");
	return rc;
}
