// SPDX-License-Identifier: MIT
/*
 * The config file: the example installed with condafs reads as documented, and every
 * way YAML could make a file mean something else than it reads is an error naming the
 * file and the line: an alias, a NUL inside a quoted value, a second document, a key set
 * twice (also once in the gc section and once as gc.<key>).
 */
#include "condafs/config.h"
#include "test.h"
#include "testfs.h"

static char *tmp;

static int load(const char *text, struct config *c, struct cfs_err *err)
{
	char *path = testfs_path(tmp, "condafs.yml");
	FILE *f = fopen(path, "we");
	size_t len = strlen(text);
	int r;

	if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
		testfs_die("write", path);
	r = config_load(path, c, err);
	free(path);
	return r;
}

static void check_refused(const char *text, size_t len, const char *want)
{
	struct cfs_err err = {{0}};
	struct config c;
	char *path = testfs_path(tmp, "condafs.yml"), *full;
	FILE *f = fopen(path, "we");

	if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
		testfs_die("write", path);
	CHECK(config_load(path, &c, &err) == -EINVAL);
	if (asprintf(&full, "%s:%s", path, want) < 0)
		testfs_die("asprintf", path);
	test_checks++;
	if (strcmp(err.msg, full) != 0) {
		test_failures++;
		fprintf(stderr, "error \"%s\" is not \"%s\"\n", err.msg, full);
	}
	free(full);
	free(path);
}

#define REFUSED(text, want) check_refused(text, sizeof(text) - 1, want)

static void test_example(void)
{
	struct cfs_err err = {{0}};
	struct config c;

	CHECK(config_load("../systemd/condafs.yml", &c, &err) == 0);
	CHECK_STR(c.store, "/var/lib/condafs");
	CHECK_STR(c.mountpoint, "/envs");
	CHECK(c.threads == 0 && c.log_level == 6);
	CHECK(c.gc_unused_for == 30 * 86400 && c.gc_grace == 3600);

	CHECK(load("store: /s\nmountpoint: /m\nthreads: 3\nlog_level: warning\n"
	           "gc: {unused_for: 2w, grace: 90m}\n",
	           &c, &err) == 0);
	CHECK_STR(c.store, "/s");
	CHECK_STR(c.mountpoint, "/m");
	CHECK(c.threads == 3 && c.log_level == 4);
	CHECK(c.gc_unused_for == 14 * 86400 && c.gc_grace == 5400);
	/* An anchor alone changes nothing; one explicit document is one document. */
	CHECK(load("---\nstore: &s /s\n...\n", &c, &err) == 0);
	CHECK_STR(c.store, "/s");
	CHECK(load("", &c, &err) == 0);
	CHECK_STR(c.store, "/var/lib/condafs");
	CHECK(c.npkgs_dirs == 0 && c.nmirrors == 0);
	/* install's package caches and mirrors, in the file's order. */
	CHECK(load("pkgs_dirs:\n  - /opt/conda/pkgs\n  - /srv/pkgs\n"
	           "mirrors:\n  https://conda.example/forge: http://10.0.0.1/forge\n"
	           "  https://conda.example/main: file:///srv/main\n",
	           &c, &err) == 0);
	CHECK(c.npkgs_dirs == 2 && c.nmirrors == 2);
	CHECK_STR(c.pkgs_dirs[0], "/opt/conda/pkgs");
	CHECK_STR(c.pkgs_dirs[1], "/srv/pkgs");
	CHECK_STR(c.mirrors[0], "https://conda.example/forge=http://10.0.0.1/forge");
	CHECK_STR(c.mirrors[1], "https://conda.example/main=file:///srv/main");
	CHECK(load("pkgs_dirs: /one\n", &c, &err) == 0);
	CHECK(c.npkgs_dirs == 1);
	CHECK_STR(c.pkgs_dirs[0], "/one");
}

static void test_refused(void)
{
	/* The alias was skipped, so "threads" became mountpoint's value and 3 a key. */
	REFUSED("store: &s /srv/condafs\nmountpoint: *s\nthreads: 3\n",
	        "2: mountpoint: an alias (*name) is not a value");
	REFUSED("store: /s\n*k : /m\n", "2: key: an alias (*name) is not a value");
	/* A quoted "\0" cut the value at it. */
	REFUSED("store: \"/srv/a\\0/etc\"\n", "1: store: a NUL character inside the value");
	REFUSED("\"st\\0ore\": /a\n", "1: a key: a NUL character inside it");
	/* The second document's settings silently replaced the first's. */
	REFUSED("store: /a\n---\nstore: /b\n", "2: a second YAML document; the settings are "
	                                       "one mapping");
	/* The last of a repeated key silently won. */
	REFUSED("store: /a\nthreads: 2\nstore: /b\n", "3: store: set twice (first at line 1)");
	REFUSED("gc:\n  grace: 1h\n  grace: 2h\n", "3: gc.grace: set twice (first at line 2)");
	REFUSED("gc:\n  grace: 1h\ngc.grace: 2h\n", "3: gc.grace: set twice (first at line 2)");
	REFUSED("gc: {grace: 1h}\ngc: {unused_for: 1d}\n", "2: gc: set twice (first at line 1)");
	/* What was refused before still is, naming the line. */
	REFUSED("store: /x\nmount_point: /y\n",
	        "2: mount_point: unknown key (known: store, mountpoint, threads, log_level, "
	        "gc.unused_for, gc.grace, pkgs_dirs, mirrors)");
	REFUSED("threads: [1]\n", "1: threads: a list is not a value here");
	/* A key is shown with its control bytes escaped: a message is one line. */
	REFUSED("\"a\\nb\\e[31m\": 1\n",
	        "1: a\\x0ab\\x1b[31m: unknown key (known: store, "
	        "mountpoint, threads, log_level, gc.unused_for, gc.grace, pkgs_dirs, mirrors)");
	REFUSED("store: relative\n", "1: store: must be an absolute path");
	REFUSED("pkgs_dirs:\n  - /a\n  - rel\n", "3: pkgs_dirs: each must be an absolute path");
	REFUSED("pkgs_dirs: [/a]\npkgs_dirs: [/b]\n", "2: pkgs_dirs: set twice (first at line 1)");
	REFUSED("pkgs_dirs: [[/a]]\n", "1: pkgs_dirs: a list is not a value here");
	REFUSED("mirrors:\n  https://a/x: nowhere\n",
	        "2: mirrors.https://a/x: a channel URL mapped to a mirror's URL (https://, "
	        "http:// or file://)");
	REFUSED("mirrors:\n  https://a/x: http://b\n  https://a/x: http://c\n",
	        "3: mirrors.https://a/x: set twice (first at line 2)");
}

int main(void)
{
	struct cfs_err err = {{0}};
	struct config c;

	tmp = testfs_mkdtemp();
	test_example();
	test_refused();
	CHECK(config_load("/nonexistent/condafs.yml", &c, &err) == -ENOENT);
	CHECK(strstr(err.msg, "/nonexistent/condafs.yml: No such file") != NULL);
	testfs_rmtree(tmp);
	free(tmp);
	return test_exit();
}
