// SPDX-License-Identifier: MIT
/*
 * condafsd's entry point, and nothing else (as squashfuse's ll_main.c over ll.c): the
 * options (opts.c), the store and the mount point checked while errors can still reach
 * the terminal (storedir.c, mountpoint.c, state.c), then mount, detach (unless -f), and
 * run the session loop until unmounted or told to stop (SIGTERM, SIGINT, SIGHUP:
 * libfuse's handlers end the loop and we unmount cleanly). The rest of fs/ is the library
 * condafsd-core, which the unit tests link too.
 */
#include "fsd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

	if (opts_parse(argc, argv, &o, &rc)) {
		opts_release(&o); /* -o before the option that ended parsing */
		return rc;
	}
	log_init(o.debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	if (opts_apply_config(&o)) {
		opts_release(&o);
		return 1;
	}
	if (fsd_init(&fs)) {
		log_msg(LOG_LEVEL_ERR, "cannot initialise: out of resources");
		goto out;
	}
	if (storedir_prepare(o.store))
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
	if (fsd_load(&fs))
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

	if (opts_fuse_args(&o, argv[0], geteuid() == 0, &args)) {
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
	fsd_log_caches(&fs);
	if (rc == 0)
		log_msg(LOG_LEVEL_INFO, "unmounted %s", fs.mountpoint);
	fuse_opt_free_args(&args);
	fsd_release(&fs);
	opts_release(&o);
	return rc;
}
