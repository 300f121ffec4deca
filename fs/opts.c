// SPDX-License-Identifier: MIT
/*
 * condafsd's settings: the command line, then the config file under it (the store after
 * $CONDAFS_STORE, the mount point, threads and log level, as the CLI and the systemd unit
 * expect), and the arguments libfuse's session is made with. Nothing here touches the
 * store or a mount: main.c acts on what this decides.
 */
#include "fsd.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_THREADS  2
#define MAX_THREADS      64
#define DEFAULT_CACHE_MB 32
/* Two workers decompress a sequential reader's frames in parallel only when the kernel
 * asks for several at once: 2 MiB made a cold 120 MB read 1.7x faster
 * (docs/PERFORMANCE.md, "Benchmark"). */
#define DEFAULT_READAHEAD_KB 2048

/* Always: nothing is writable, nothing is a device or setuid. */
#define MOUNT_OPTS "ro,nosuid,nodev,default_permissions,fsname=condafs,subtype=condafs"

static const char usage[] =
        "usage: " FSD_NAME " [--store DIR] [--config FILE] [-f] [-d] [-o OPTIONS]\n"
        "                [--threads N] [--cache MB] [--[no-]prefetch] [--readahead KB]\n"
        "                [MOUNTPOINT]\n"
        "\n"
        "Serve every environment of the store read-only at MOUNTPOINT/<hash>.\n"
        "\n"
        "  MOUNTPOINT      default: the config's mountpoint (/envs)\n"
        "  --store DIR     the store (default $CONDAFS_STORE, else the config's store,\n"
        "                  else /var/lib/condafs)\n"
        "  --config FILE   settings: store, mountpoint, threads, log_level (default\n"
        "                  " CONFIG_PATH "; a missing default file is fine)\n"
        "  -f              stay in the foreground (for systemd); otherwise detach\n"
        "  -d              debug: foreground, and log every request\n"
        "  -o OPTIONS      more FUSE mount options (comma-separated)\n"
        "  --threads N     worker threads (default: the config's, else 2)\n"
        "  --cache MB      decompressed data kept for all threads (default 32; 0: none)\n"
        "  --[no-]prefetch a thread reading ahead of sequential readers (default: with\n"
        "                  3 cores or more)\n"
        "  --readahead KB  the mount's readahead (default 2048; 0: the kernel's 128)\n"
        "\n"
        "Run as root it mounts with allow_other: every user reads, nobody writes.\n";

static int add_fuse_opts(struct opts *o, const char *more)
{
	char *s;

	if (!o->fuse_opts) {
		o->fuse_opts = strdup(more);
		return o->fuse_opts ? 0 : -ENOMEM;
	}
	if (asprintf(&s, "%s,%s", o->fuse_opts, more) < 0)
		return -ENOMEM;
	free(o->fuse_opts);
	o->fuse_opts = s;
	return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

int opts_parse(int argc, char **argv, struct opts *o, int *ret_exit)
{
	enum {
		O_STORE = 256,
		O_CONFIG,
		O_THREADS,
		O_CACHE,
		O_PREFETCH,
		O_NO_PREFETCH,
		O_READAHEAD
	};
	static const struct option longopts[] = {
	        {"store", required_argument, NULL, O_STORE},
	        {"config", required_argument, NULL, O_CONFIG},
	        {"threads", required_argument, NULL, O_THREADS},
	        {"cache", required_argument, NULL, O_CACHE},
	        {"prefetch", no_argument, NULL, O_PREFETCH},
	        {"no-prefetch", no_argument, NULL, O_NO_PREFETCH},
	        {"readahead", required_argument, NULL, O_READAHEAD},
	        {"foreground", no_argument, NULL, 'f'},
	        {"debug", no_argument, NULL, 'd'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	o->config_path = CONFIG_PATH;
	o->cache_mb = DEFAULT_CACHE_MB;
	o->readahead_kb = DEFAULT_READAHEAD_KB;
	/* Reading ahead takes a core besides the reader's and the worker's: on two cores it
	 * only competes with them (measured: see docs/ARCHITECTURE.md, "Threads, caches and
	 * memory"). */
	o->prefetch = sysconf(_SC_NPROCESSORS_ONLN) >= 3;
	while ((c = getopt_long(argc, argv, "fdo:h", longopts, NULL)) != -1) {
		switch (c) {
		case O_STORE:
			o->store = optarg;
			break;
		case O_CONFIG:
			o->config_path = optarg;
			break;
		case O_THREADS:
			if (parse_uint(optarg, 1, MAX_THREADS, &o->threads)) {
				fprintf(stderr,
				        FSD_NAME ": --threads: expected 1 to %d, got '%s'\n",
				        MAX_THREADS, optarg);
				goto usage;
			}
			break;
		case O_CACHE:
			if (parse_uint(optarg, 0, 1u << 16, &o->cache_mb)) {
				fprintf(stderr, FSD_NAME ": --cache: expected MiB, got '%s'\n",
				        optarg);
				goto usage;
			}
			break;
		case O_PREFETCH:
			o->prefetch = true;
			break;
		case O_NO_PREFETCH:
			o->prefetch = false;
			break;
		case O_READAHEAD:
			if (parse_uint(optarg, 0, 1u << 20, &o->readahead_kb)) {
				fprintf(stderr, FSD_NAME ": --readahead: expected KiB, got '%s'\n",
				        optarg);
				goto usage;
			}
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->foreground = o->debug = true;
			break;
		case 'o':
			if (add_fuse_opts(o, optarg)) {
				fprintf(stderr, FSD_NAME ": out of memory\n");
				*ret_exit = 1;
				return -1;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			*ret_exit = 0;
			return -1;
		default:
			goto usage;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, FSD_NAME ": expected one MOUNTPOINT\n");
		goto usage;
	}
	o->mountpoint = argc > optind ? argv[optind] : NULL;
	return 0;
usage:
	fputs(usage, stderr);
	*ret_exit = 2;
	return -1;
}

int opts_apply_config(struct opts *o)
{
	struct cfs_err err = {{0}};
	int r = config_load(o->config_path, &o->config, &err);

	if (r) {
		log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
		return r;
	}
	if (!o->store) {
		o->store = getenv("CONDAFS_STORE");
		if (!o->store || !*o->store)
			o->store = o->config.store;
	}
	if (!o->mountpoint)
		o->mountpoint = o->config.mountpoint;
	if (!o->threads)
		o->threads = o->config.threads > 0 && o->config.threads <= MAX_THREADS
		                     ? (unsigned)o->config.threads
		                     : DEFAULT_THREADS;
	if (!o->debug) {
		int level = o->config.log_level;

		log_init(level < LOG_LEVEL_ERR     ? LOG_LEVEL_ERR
		         : level > LOG_LEVEL_DEBUG ? LOG_LEVEL_DEBUG
		                                   : (enum log_level)level);
	}
	return 0;
}

int opts_fuse_args(const struct opts *o, const char *argv0, bool allow_other, struct fuse_args *ret)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);

	if (fuse_opt_add_arg(&args, argv0) || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, MOUNT_OPTS) ||
	    (allow_other &&
	     (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, "allow_other"))) ||
	    (o->fuse_opts &&
	     (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, o->fuse_opts))) ||
	    (o->debug && fuse_opt_add_arg(&args, "-d"))) {
		fuse_opt_free_args(&args);
		return -ENOMEM;
	}
	*ret = args;
	return 0;
}

void opts_release(struct opts *o)
{
	free(o->fuse_opts);
	o->fuse_opts = NULL;
}
