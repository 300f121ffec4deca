/* SPDX-License-Identifier: MIT */
/*
 * What the command line's modules share (cli.c): the parsed command line, the exit codes,
 * one-line errors, opening the store or the mount, and each command's entry point.
 */
#ifndef CONDAFS_CLI_H
#define CONDAFS_CLI_H

#include "viamount.h"

#include <condafs/config.h>
#include <condafs/store.h>

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * Exit codes: 0 fine, 1 the command failed, 2 bad usage. verify: 1 also when it found
 * missing or corrupt objects or damaged nodes. verify --repair follows fsck(8), so that a
 * timer can tell "mended" from "needs a person" from "did not run": 0 nothing found, 1
 * problems found and all repaired, 4 problems left (missing or corrupt objects still used,
 * damaged nodes), 8 could not run.
 */
enum {
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_REPAIRED = 1,
	EXIT_UNREPAIRED = 4,
	EXIT_OPERATIONAL = 8,
};

struct cli {
	const char *cmd;
	const char *store_dir;
	const char *mount; /* --mount, else the config's mount point */
	const char *config_path;
	struct config config;
	bool json;
	const char *lock, *platform, *environment, *prefix, *unused_for, *shell, *driver;
	const char *name, *tag;
	const char *mirrors[64], *pkgs_dirs[64];
	size_t nmirrors, npkgs_dirs;
	bool replace, skip_special, force, dry_run, repair, purge, frozen, user, system, tcl;
	int argc;
	char **argv;    /* positional arguments */
	char **cmdline; /* the whole command line, as main got it (install_exec.c) */
};

extern const char cli_usage[];

/* "condafs: CMD: MSG" on stderr, escaped: MSG names users' files. */
void cli_say(const char *cmd, const char *msg);
/* err's line (else strerror(-r)) as cli_say says it: EXIT_FAILED. Inline, so that static
 * analysis of a caller sees it never returns 0. */
static inline int cli_die(const struct cli *c, const struct cfs_err *err, int r)
{
	cli_say(c->cmd, err && err->msg[0] ? err->msg : strerror(-r));
	return EXIT_FAILED;
}
/* The store, or for a writing command (flags without STORE_READONLY) a refusal in one
 * line when this user may not change it: 0 or an exit code. */
int cli_open_store(const struct cli *c, unsigned flags, struct store **st);
/* After a commit that changes what a mount shows: every condafsd serving the store shows it
 * once this returns (or a warning says which did not confirm). */
void cli_tell_mounts(const struct cli *c);
/* What a read-only command reads: the store (*st), or for a user who may not open it the
 * mount (*vm). One of the two is set on success; 0 or an exit code. */
int cli_open_view(const struct cli *c, struct store **st, struct viamount **vm);
void cli_close_view(struct store *st, struct viamount *vm);
/* 0 when the command has n positional arguments, else the usage and EXIT_USAGE. */
int cli_need_args(const struct cli *c, int n);
/* A lock for several platforms read without --platform took this machine's: say so. */
void cli_say_platform(const struct cli *c, const char *path, const struct pkgset *set);
/* The environment name names (a tag, a hash or a unique prefix): 0 or an exit code. */
int cli_find_env(const struct cli *c, struct store *st, const char *name, struct store_env *env);
/* ENV (name) in what cli_open_view opened, the mount (vm) or the store (st), and with
 * ret_set its package set (the caller's): 0, or -errno with err set. */
int cli_view_env(struct store *st, struct viamount *vm, const char *name, struct store_env *env,
                 struct pkgset **ret_set, struct cfs_err *err);
/* "name": v (a JSON string, or null), then a comma unless last. */
void cli_json_field(const char *name, const char *v, bool comma);

/* The commands (cmd_*.c): each returns the process's exit code. */
int cmd_hash(const struct cli *c);
int cmd_ingest(const struct cli *c);
int cmd_install(const struct cli *c);
int cmd_export(const struct cli *c);
int cmd_ls(const struct cli *c);
int cmd_show(const struct cli *c);
int cmd_check(const struct cli *c);
int cmd_cat(const struct cli *c);
int cmd_stats(const struct cli *c);
int cmd_tag(const struct cli *c);
int cmd_untag(const struct cli *c);
int cmd_rm(const struct cli *c);
int cmd_gc(const struct cli *c);
int cmd_verify(const struct cli *c);
int cmd_run(const struct cli *c);
int cmd_shell_hook(const struct cli *c);
int cmd_kernel(const struct cli *c);
int cmd_module(const struct cli *c);

#endif
