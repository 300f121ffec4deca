/* SPDX-License-Identifier: MIT */
/*
 * The configuration file, /etc/condafs/condafs.yml (store/config.c): where the store and
 * the mount are, gc's policy, the daemon's threads and log level, and install's package
 * caches and mirrors. The CLI and the daemon read it; the store itself never does.
 */
#ifndef CONDAFS_CONFIG_H
#define CONDAFS_CONFIG_H

#include <condafs/err.h>

#include <stddef.h>
#include <stdint.h>

#define CONFIG_PATH "/etc/condafs/condafs.yml"

#define CONFIG_LIST_MAX 16

struct config {
	char store[4096];      /* default /var/lib/condafs */
	char mountpoint[4096]; /* default /envs */
	int64_t gc_unused_for; /* seconds, default 30 days */
	int64_t gc_grace;      /* seconds, default 1 hour: used this recently, never collected */
	int threads;           /* daemon worker threads, 0 = its own choice */
	int log_level;         /* syslog levels: 3 err ... 7 debug, default 6 */
	/* install: package caches searched first (pkgs_dirs:), and channel mirrors
	 * (mirrors:, "FROM=TO" as --channel-mirror takes them), in the file's order. */
	char pkgs_dirs[CONFIG_LIST_MAX][1024];
	int npkgs_dirs;
	char mirrors[CONFIG_LIST_MAX][2048];
	int nmirrors;
};

/* The defaults, then path's settings over them. A missing file at the default path is not
 * an error (defaults stand); any other problem, or an unknown key or bad value, is -EINVAL
 * naming the file and line. */
int config_load(const char *path, struct config *ret, struct cfs_err *err);
/* The same for the text of a config file (len bytes); name names it in messages. */
int config_parse(const char *name, const char *text, size_t len, struct config *ret,
                 struct cfs_err *err);
/* "30d", "12h", "90m", "45s", "2w" or plain seconds; -EINVAL otherwise. */
int config_duration(const char *s, int64_t *ret);

#endif
