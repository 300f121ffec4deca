// SPDX-License-Identifier: MIT
/*
 * condafsd's settings (fs/opts.c): the command line with its defaults, ranges and exit
 * codes; the config file under it ($CONDAFS_STORE between them for the store); and the
 * arguments the FUSE session is made with, which always mount read-only, nosuid and
 * nodev, and allow other users only when asked (root).
 */
#include "fsd.h"
#include "test.h"
#include "testfs.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* Parse argv (NULL-terminated) afresh into *o: 0, or -1 with *ret_exit. */
static int parse(struct opts *o, int *ret_exit, const char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	memset(o, 0, sizeof(*o));
	optind = 0; /* glibc: start again, from argv[1] */
	*ret_exit = -7;
	return opts_parse(argc, (char **)argv, o, ret_exit);
}

static void test_defaults(void)
{
	const char *argv[] = {"condafsd", NULL};
	struct opts o;
	int rc;

	CHECK(parse(&o, &rc, argv) == 0);
	CHECK(rc == -7);
	CHECK(o.store == NULL && o.mountpoint == NULL);
	CHECK_STR(o.config_path, CONFIG_PATH);
	CHECK(!o.foreground && !o.debug);
	CHECK(o.threads == 0 && o.cache_mb == 32 && o.readahead_kb == 2048);
	CHECK(o.fuse_opts == NULL);
	opts_release(&o);
}

static void test_everything(void)
{
	const char *argv[] = {"condafsd",    "--store", "/s",      "--config",  "/c.yml",
	                      "-f",          "-o",      "a",       "--threads", "64",
	                      "-o",          "b=1,c",   "--cache", "0",         "--prefetch",
	                      "--readahead", "1048576", "/mnt/x",  NULL};
	struct opts o;
	int rc;

	CHECK(parse(&o, &rc, argv) == 0);
	CHECK_STR(o.store, "/s");
	CHECK_STR(o.config_path, "/c.yml");
	CHECK_STR(o.mountpoint, "/mnt/x");
	CHECK(o.foreground && !o.debug);
	CHECK(o.threads == 64 && o.cache_mb == 0 && o.prefetch && o.readahead_kb == 1048576);
	CHECK_STR(o.fuse_opts, "a,b=1,c");
	opts_release(&o);
	CHECK(o.fuse_opts == NULL);

	{
		const char *d[] = {"condafsd", "--prefetch", "--no-prefetch", "-d", "--threads",
		                   "1",        NULL};

		CHECK(parse(&o, &rc, d) == 0);
		CHECK(o.debug && o.foreground && !o.prefetch && o.threads == 1);
		opts_release(&o);
	}
}

/* Bad usage is exit 2 (usage on stderr); --help exit 0; -o given before the mistake is the
 * caller's to release (the leak check says if not). */
static void test_refused(void)
{
	static const char *const bad[][4] = {
	        {"--threads", "0"},
	        {"--threads", "65"},
	        {"--threads", "4x"},
	        {"--threads", ""},
	        {"--threads", "-1"},
	        {"--cache", "65537"},
	        {"--readahead", "-1"},
	        {"--readahead", "1048577"},
	        {"/a", "/b"},
	        {"--bogus"},
	        {"-x"},
	};
	struct opts o;
	int rc;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[] = {"condafsd", "-o", "x", bad[i][0], bad[i][1], NULL};

		CHECK(parse(&o, &rc, argv) == -1);
		CHECK(rc == 2);
		opts_release(&o);
	}
	{
		const char *argv[] = {"condafsd", "-o", "x", "--help", NULL};

		CHECK(parse(&o, &rc, argv) == -1);
		CHECK(rc == 0);
		opts_release(&o);
	}
}

/* The session's arguments, as one string. */
static char *joined(const struct fuse_args *a)
{
	size_t len = 1, at = 0;
	char *s;

	for (int i = 0; i < a->argc; i++)
		len += strlen(a->argv[i]) + 1;
	s = calloc(1, len);
	for (int i = 0; s && i < a->argc; i++)
		at += (size_t)snprintf(s + at, len - at, "%s%s", i ? " " : "", a->argv[i]);
	return s;
}

static void test_fuse_args(void)
{
	static const char *const fixed =
	        "-o ro,nosuid,nodev,default_permissions,fsname=condafs,subtype=condafs";
	struct opts o = {0};
	struct fuse_args a = FUSE_ARGS_INIT(0, NULL);
	char *s, want[256];

	CHECK(opts_fuse_args(&o, "condafsd", false, &a) == 0);
	s = joined(&a);
	snprintf(want, sizeof(want), "condafsd %s", fixed);
	CHECK_STR(s, want);
	free(s);
	fuse_opt_free_args(&a);

	/* Root: every user reads. Then the user's -o, and -d. */
	o.fuse_opts = "max_read=131072";
	o.debug = true;
	CHECK(opts_fuse_args(&o, "/sbin/condafsd", true, &a) == 0);
	s = joined(&a);
	snprintf(want, sizeof(want), "/sbin/condafsd %s -o allow_other -o max_read=131072 -d",
	         fixed);
	CHECK_STR(s, want);
	free(s);
	fuse_opt_free_args(&a);
}

static void test_config(void)
{
	char *dir = testfs_mkdtemp(), *path = testfs_path(dir, "condafs.yml");
	const char *argv[] = {"condafsd", "--config", path, NULL};
	struct opts o;
	int rc;

	testfs_write(dir, "store: /from/config\nmountpoint: /cfg/envs\nthreads: 3\n",
	             "condafs.yml");
	unsetenv("CONDAFS_STORE");
	CHECK(parse(&o, &rc, argv) == 0);
	CHECK(opts_apply_config(&o) == 0);
	CHECK_STR(o.store, "/from/config");
	CHECK_STR(o.mountpoint, "/cfg/envs");
	CHECK(o.threads == 3);
	opts_release(&o);

	/* $CONDAFS_STORE over the config, the command line over both; an empty variable is
	 * no variable. */
	setenv("CONDAFS_STORE", "/from/env", 1);
	CHECK(parse(&o, &rc, argv) == 0 && opts_apply_config(&o) == 0);
	CHECK_STR(o.store, "/from/env");
	opts_release(&o);
	setenv("CONDAFS_STORE", "", 1);
	CHECK(parse(&o, &rc, argv) == 0 && opts_apply_config(&o) == 0);
	CHECK_STR(o.store, "/from/config");
	opts_release(&o);
	{
		const char *cl[] = {"condafsd",  "--config", path,        "--store", "/from/cli",
		                    "--threads", "5",        "/cli/envs", NULL};

		setenv("CONDAFS_STORE", "/from/env", 1);
		CHECK(parse(&o, &rc, cl) == 0 && opts_apply_config(&o) == 0);
		CHECK_STR(o.store, "/from/cli");
		CHECK_STR(o.mountpoint, "/cli/envs");
		CHECK(o.threads == 5);
		opts_release(&o);
	}
	unsetenv("CONDAFS_STORE");

	/* threads: 0 in the config (or out of range) is the daemon's own choice, 2. */
	testfs_write(dir, "threads: 0\n", "condafs.yml");
	CHECK(parse(&o, &rc, argv) == 0 && opts_apply_config(&o) == 0);
	CHECK(o.threads == 2);
	opts_release(&o);

	/* A config that is wrong stops the daemon (the reason is logged). */
	testfs_write(dir, "threads: many\n", "condafs.yml");
	CHECK(parse(&o, &rc, argv) == 0);
	CHECK(opts_apply_config(&o) < 0);
	opts_release(&o);
	testfs_rmtree(dir);
	free(path);
	free(dir);
}

int main(void)
{
	test_defaults();
	test_everything();
	test_refused();
	test_fuse_args();
	test_config();
	return test_exit();
}
