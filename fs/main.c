// SPDX-License-Identifier: MIT
/*
 * condafsd: serves the store read-only over FUSE, every environment at MOUNTPOINT/<hash>.
 * This file parses the options, checks the store and the mount point while errors can
 * still reach the terminal, mounts, detaches (unless -f), and runs the session loop until
 * unmounted or told to stop (SIGTERM, SIGINT, SIGHUP: libfuse's handlers end the loop and
 * we unmount cleanly).
 */
#include "fsd.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

struct opts {
	const char *store;      /* NULL: $CONDAFS_STORE, else the config's */
	const char *mountpoint; /* NULL: the config's */
	const char *config_path;
	bool foreground, debug;
	unsigned threads; /* 0: the config's, else DEFAULT_THREADS */
	unsigned cache_mb;
	bool prefetch;
	unsigned readahead_kb;
	char *fuse_opts; /* the -o options, comma-joined; malloc'd */
	struct config config;
};

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

/* 0, or the exit code: 0 for --help, 2 for bad usage. */
static int parse_args(int argc, char **argv, struct opts *o, int *ret_exit)
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

/* The config file under the command line: store (after $CONDAFS_STORE), mount point,
 * threads and log level, as the CLI and the systemd unit expect. */
static int apply_config(struct opts *o)
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

/* Whether dir holds nothing at all (1), something (0), or cannot be read (-errno). */
static int dir_empty(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int r = 1;

	if (!d)
		return -errno;
	while (r == 1 && (de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			r = 0;
	closedir(d);
	return r;
}

/* dir as 0700, its missing parents as 0755. */
static int mkdir_private(const char *dir)
{
	char *p = strdup(dir);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s && !r; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			r = -errno;
		*s = '/';
	}
	if (!r && mkdir(p, 0700) < 0 && errno != EEXIST)
		r = -errno;
	free(p);
	return r;
}

/*
 * On a fresh server the daemon starts before anything was ingested: a store that does not
 * exist yet, or an empty directory, becomes an empty store (private to root, 0700, as
 * every store: README, "Security model"), served as an empty root that shows environments
 * as they arrive. A directory holding anything else is left alone: store_open says what
 * is wrong with it.
 */
static int make_store(const char *dir)
{
	struct cfs_err err = {{0}};
	struct store *st = NULL;
	struct stat sb;
	int r;

	if (stat(dir, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode) || dir_empty(dir) <= 0)
			return 0;
		if ((sb.st_mode & 077) && chmod(dir, 0700) < 0) {
			log_msg(LOG_LEVEL_ERR, "%s: cannot make it private: %s", dir,
			        strerror(errno));
			return -1;
		}
	} else if (errno != ENOENT) {
		return 0;
	} else if ((r = mkdir_private(dir))) {
		log_msg(LOG_LEVEL_ERR, "%s: cannot create the store: %s", dir, strerror(-r));
		return -1;
	}
	r = store_open(dir, STORE_CREATE, &st, &err);
	store_close(st);
	if (r) {
		log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
		return -1;
	}
	log_msg(LOG_LEVEL_NOTICE, "%s: created an empty store", dir);
	return 0;
}

/* Open the store once, here, so that a wrong --store is said on the terminal, and load
 * the first environment table. The handle is closed again: SQLite connections must not
 * cross the fork of fuse_daemonize; every thread opens its own afterwards. */
static int load_store(struct fsd *fs)
{
	struct cfs_err err = {{0}};
	struct envtab *t = NULL;
	struct store *st = NULL;
	int r;

	r = store_open(fs->store_dir, STORE_READONLY, &st, &err);
	/* A catalog of an older version (readers read the current one alone) is upgraded
	 * here, before anything is served, waiting for a writer that holds the lock. */
	if (r == -EPROTO) {
		store_close(st);
		st = NULL;
		r = store_open_notify(fs->store_dir, 0, log_notice, NULL, &st, &err);
		store_close(st);
		st = NULL;
		if (!r)
			r = store_open(fs->store_dir, STORE_READONLY, &st, &err);
	}
	/* Once it is known to be a store, and before the table is loaded and the mount made:
	 * a writer that commits after either is heard (the watcher catches up with what came
	 * in between before it answers). */
	if (!r)
		watch_listen(fs);
	if (!r)
		r = envtab_load(fs, st, 1, &t, &err);
	if (!r) {
		fs->envtab = t;
		atomic_store(&fs->envtab_version, t->version);
		r = meta_new(fs, &fs->meta);
	}
	/* The first reports before the mount answers; on failure it is logged, and the
	 * watcher tries again at the next change. */
	if (!r)
		meta_refresh(fs, st, false);
	store_close(st);
	if (r) {
		log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
		return r;
	}
	log_msg(LOG_LEVEL_INFO, "%s: %zu environment%s", fs->store_dir, t->n, t->n == 1 ? "" : "s");
	return 0;
}

static int fsd_init(struct fsd *fs)
{
	int r;

	memset(fs, 0, sizeof(*fs));
	fs->watch_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fs->watch_wake < 0)
		return -errno;
	if ((r = pthread_mutex_init(&fs->envtab_lock, NULL)))
		return -r;
	return 0;
}

static void log_cache(const char *what, struct cache *c)
{
	uint64_t hits, misses, prefetched;
	size_t bytes;

	if (!c)
		return;
	cache_stats(c, &hits, &misses, &prefetched, &bytes);
	log_msg(LOG_LEVEL_DEBUG, "%s: %llu hits, %llu misses, %llu read ahead, %zu bytes", what,
	        (unsigned long long)hits, (unsigned long long)misses,
	        (unsigned long long)prefetched, bytes);
}

static void fsd_release(struct fsd *fs)
{
	envtab_put(fs->envtab);
	use_free(fs->use);
	meta_free(fs->meta);
	cache_free(fs->cache);
	cache_free(fs->frames);
	store_listener_close(fs->listener);
	if (fs->watch_wake >= 0)
		close(fs->watch_wake);
	pthread_mutex_destroy(&fs->envtab_lock);
	free(fs->mountpoint);
	free(fs->store_dir);
}

static int run_loop(struct fsd *fs, unsigned threads)
{
	struct fuse_loop_config *cfg;
	int r;

	if (threads == 1)
		return fuse_session_loop(fs->se);
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	/* As many idle threads as threads: workers (and their store handles) live as long as
	 * the mount instead of being made and torn down with the load. */
	fuse_loop_cfg_set_max_threads(cfg, threads);
	fuse_loop_cfg_set_idle_threads(cfg, threads);
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	r = fuse_session_loop_mt(fs->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return r;
}

int main(int argc, char **argv)
{
	struct cfs_err err = {{0}};
	struct opts o = {0};
	struct fsd fs;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	bool mounted = false, handlers = false;
	int r, rc = 1;

	if (parse_args(argc, argv, &o, &rc)) {
		free(o.fuse_opts); /* -o before the option that ended parsing */
		return rc;
	}
	log_init(o.debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	if (apply_config(&o)) {
		free(o.fuse_opts);
		return 1;
	}
	if (fsd_init(&fs)) {
		log_msg(LOG_LEVEL_ERR, "cannot initialise: out of resources");
		goto out;
	}
	if (make_store(o.store))
		goto out;
	/* Both absolute: the daemon changes to / when it detaches. */
	fs.store_dir = realpath(o.store, NULL);
	if (!fs.store_dir) {
		log_msg(LOG_LEVEL_ERR, "%s: cannot open the store: %s", o.store, strerror(errno));
		goto out;
	}
	if (mountpoint_check(o.mountpoint))
		goto out;
	fs.mountpoint = realpath(o.mountpoint, NULL);
	if (!fs.mountpoint) {
		log_msg(LOG_LEVEL_ERR, "%s: %s", o.mountpoint, strerror(errno));
		goto out;
	}
	if (load_store(&fs))
		goto out;
	fs.readahead_kb = o.readahead_kb;
	/* A MiB of decoded frames saves more decompression than a MiB of served blocks
	 * (docs/ARCHITECTURE.md, "Threads, caches and memory"), so they get three
	 * quarters. */
	if (o.cache_mb && (cache_new((size_t)o.cache_mb << 18, &fs.cache) ||
	                   cache_new((size_t)o.cache_mb * 3 << 18, &fs.frames))) {
		log_msg(LOG_LEVEL_ERR, "out of memory");
		goto out;
	}

	if (fuse_opt_add_arg(&args, argv[0]) || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, MOUNT_OPTS) ||
	    (geteuid() == 0 &&
	     (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, "allow_other"))) ||
	    (o.fuse_opts &&
	     (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, o.fuse_opts))) ||
	    (o.debug && fuse_opt_add_arg(&args, "-d"))) {
		log_msg(LOG_LEVEL_ERR, "out of memory");
		goto out;
	}
	fs.se = fuse_session_new(&args, &fsd_ops, sizeof(fsd_ops), &fs);
	if (!fs.se)
		goto out; /* libfuse said why */
	if (fuse_set_signal_handlers(fs.se)) {
		log_msg(LOG_LEVEL_ERR, "cannot set signal handlers");
		goto out;
	}
	handlers = true;
	if (fuse_session_mount(fs.se, fs.mountpoint)) {
		log_msg(LOG_LEVEL_ERR, "%s: cannot mount", fs.mountpoint);
		goto out;
	}
	mounted = true;
	if (fuse_daemonize(o.foreground)) {
		log_msg(LOG_LEVEL_ERR, "cannot detach");
		goto out;
	}
	if (!o.foreground)
		log_to_syslog();
	r = use_new(fs.store_dir, &fs.use, &err);
	if (r) {
		log_msg(LOG_LEVEL_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}
	/* After the fork: threads do not survive it. */
	r = watch_start(&fs);
	if (r) {
		log_msg(LOG_LEVEL_ERR, "cannot start the watcher thread: %s", strerror(-r));
		goto out;
	}
	/* Reading ahead needs the block cache, and a core to spare. */
	if (fs.cache && o.prefetch && (r = prefetch_start(&fs, &fs.prefetch)))
		log_msg(LOG_LEVEL_WARNING, "no reading ahead: %s", strerror(-r));
	log_msg(LOG_LEVEL_INFO, "serving %s at %s (%u thread%s)", fs.store_dir, fs.mountpoint,
	        o.threads, o.threads == 1 ? "" : "s");
	r = run_loop(&fs, o.threads);
	/* A signal ends the loop with its number: a clean stop. */
	if (r < 0)
		log_msg(LOG_LEVEL_ERR, "session loop: %s", strerror(-r));
	else
		rc = 0;
out:
	prefetch_stop(fs.prefetch);
	watch_stop(&fs);
	worker_release_self();
	if (mounted)
		fuse_session_unmount(fs.se);
	if (handlers)
		fuse_remove_signal_handlers(fs.se);
	if (fs.se)
		fuse_session_destroy(fs.se);
	log_cache("served blocks", fs.cache);
	log_cache("decoded frames", fs.frames);
	if (rc == 0)
		log_msg(LOG_LEVEL_INFO, "unmounted %s", fs.mountpoint);
	fuse_opt_free_args(&args);
	fsd_release(&fs);
	free(o.fuse_opts);
	return rc;
}
