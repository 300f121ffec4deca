// SPDX-License-Identifier: MIT
/*
 * What every command of the command line shares (cli.h): the usage text, one-line errors,
 * opening the store (or, for a user who may not, the mount) and telling the mounts of a
 * change.
 */
#include "cli.h"
#include "out.h"
#include "viamount.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char cli_usage[] =
        "usage: condafs [--store DIR] COMMAND [ARGS]\n"
        "\n"
        "  hash LOCK|PREFIX [--platform P] [--environment E]\n"
        "                      print the environment hash of a lock file or a conda prefix\n"
        "  ingest PREFIX [--lock LOCK] [--platform P] [--environment E] [--replace]\n"
        "         [--skip-special]\n"
        "                      store a solved conda prefix and print its hash\n"
        "  install LOCK [--platform P] [--environment E] [--channel-mirror FROM=TO]...\n"
        "          [--pkgs-dir DIR]... [--tag NAME]\n"
        "                      build the lock's environment from its packages (package\n"
        "                      caches, else downloaded from the lock's URLs, FROM\n"
        "                      rewritten to TO), each checked against the lock's digest,\n"
        "                      with no conda and no prefix; print its hash\n"
        "  export ENV DIR [--prefix P] [--frozen]\n"
        "                      write an environment to DIR, its prefix served as P (default DIR);\n"
        "                      --frozen: with conda-meta/frozen and EXTERNALLY-MANAGED as the\n"
        "                      mount serves them\n"
        "  ls                  list environments: tags, size, unique bytes, last use,\n"
        "                      broken (verify --repair found objects of it lost)\n"
        "  tag NAME ENV        point the name NAME at an environment (moves an existing one)\n"
        "  untag NAME          remove a name\n"
        "  rm ENV [--force]    remove an environment (refused while tagged, unless --force)\n"
        "  gc [--unused-for DURATION] [--dry-run] [--purge]\n"
        "                      remove untagged environments unused for DURATION (config:\n"
        "                      gc.unused_for, 30d) and every object nothing uses; rewrite\n"
        "                      packs at least half unused (--purge: every pack holding an\n"
        "                      unused byte, so nothing of a removed environment stays)\n"
        "  show ENV            list an environment's packages\n"
        "  cat ENV PATH [--prefix P]\n"
        "                      print a file (prefix default: the one it was built at)\n"
        "  kernel ENV [--name NAME] [--user|--system|--prefix DIR] [--force]\n"
        "                      write a Jupyter kernelspec running the environment's\n"
        "                      ipykernel with its activation (default --user; NAME\n"
        "                      default condafs-TAG, or condafs-HASH12)\n"
        "  stats               logical and stored bytes, dedup ratio, bytes unique to each env\n"
        "  run ENV [--] CMD [ARGS]...\n"
        "                      run CMD in the environment activated as conda activates it\n"
        "                      (PATH, CONDA_PREFIX, conda-meta/state's variables, its\n"
        "                      activate.d scripts); exit 127/126 when CMD cannot be run\n"
        "  shell-hook ENV [--shell bash|zsh|fish] [--json]\n"
        "                      print the activation as code to eval (default bash), or as\n"
        "                      pixi's shell-hook --json object\n"
        "  check ENV|LOCK [--driver X.Y[.Z]|none] [--platform P] [--environment E]\n"
        "                      the CUDA release an environment needs, the host's NVIDIA\n"
        "                      driver and whether it runs it: exit 0 when it does or no\n"
        "                      CUDA is needed, 1 when not (or there is no driver)\n"
        "  verify [--repair]   re-hash every object and check every tree's links and shape\n"
        "                      and every package record; exit 1 if an object is missing or\n"
        "                      corrupt, a node or record damaged (or verify could not run).\n"
        "                      --repair also removes object files no catalog row names and\n"
        "                      dead ingests' temporary directories, sets reference counts\n"
        "                      right, forgets damaged package records and marks environments\n"
        "                      that use a missing or corrupt object or a damaged node\n"
        "                      broken; it exits\n"
        "                      0 nothing found, 1 problems found and all repaired, 4 missing\n"
        "                      or corrupt objects or damaged nodes remain, 8 could not run\n"
        "\n"
        "  --json              machine-readable output (hash, ingest, ls, show, stats, verify, "
        "gc,\n"
        "                      check)\n"
        "  --driver X.Y[.Z]    the NVIDIA driver to check against (default\n"
        "                      $CONDAFS_DRIVER_VERSION, else the host's); none: no driver\n"
        "  --store DIR         the store (default $CONDAFS_STORE, else the config's store)\n"
        "  --config FILE       settings (default " CONFIG_PATH ")\n"
        "  --mount DIR         where condafsd serves the store (default: the config's\n"
        "                      mountpoint, /envs)\n"
        "\n"
        "ENV is a tag, an environment hash, or a unique prefix of one. For run, shell-hook\n"
        "and check it may also be a lock file (its hash is taken; check reads the need from\n"
        "the lock alone); run and shell-hook also take an environment's directory (where a\n"
        "container bind-mounts MOUNT/<hash>); an existing path is taken as such.\n"
        "Only root (or the store's owner) opens the store. Other users run ls, show, cat,\n"
        "stats, export, verify, run, shell-hook and check through the mount, reading what its\n"
        "modes let them read; hash, and check of a lock file, need no store.\n";

/* "condafs: CMD: MSG" on stderr, escaped: MSG names users' files. */
void cli_say(const char *cmd, const char *msg)
{
	fputs("condafs: ", stderr);
	out_text(stderr, cmd);
	fputs(": ", stderr);
	out_text(stderr, msg);
	fputc('\n', stderr);
}

/*
 * Whether this user must not open the store: anyone but root and the store's owner
 * (*ret_owner; 0 when it cannot even be looked at). Also when an older store's modes
 * would let them in: what a user reads is what the mount's permissions give them.
 */
static bool store_foreign(const struct cli *c, uid_t *ret_owner)
{
	struct stat sb;

	*ret_owner = 0;
	if (geteuid() == 0)
		return false;
	if (stat(c->store_dir, &sb) < 0)
		return errno == EACCES;
	*ret_owner = sb.st_uid;
	return sb.st_uid != geteuid();
}

/* What the store says while it works (a lock it waits for, and who holds it). */
static void print_notice(void *ctx, const char *msg)
{
	cli_say(ctx, msg);
}

int cli_open_store(const struct cli *c, unsigned flags, struct store **st)
{
	struct cfs_err err = {{0}};
	uid_t owner;
	int r;

	if (!(flags & STORE_READONLY) && store_foreign(c, &owner)) {
		if (owner == 0)
			snprintf(err.msg, sizeof(err.msg),
			         "%s: changing the store needs root (other users read it "
			         "through the mount)",
			         c->store_dir);
		else
			snprintf(err.msg, sizeof(err.msg),
			         "%s: changing the store needs its owner (uid %u) or root",
			         c->store_dir, (unsigned)owner);
		return cli_die(c, &err, -EPERM);
	}
	r = store_open_notify(c->store_dir, flags, print_notice, (void *)c->cmd, st, &err);
	return r ? cli_die(c, &err, r) : 0;
}

/* How long a writing command waits for the mounts of its store to show its change. */
#define TELL_TIMEOUT_MS 2000

/* After a commit that changes what a mount shows: once this returns, every condafsd
 * serving the store shows it (h=$(condafs ingest P) && /envs/$h/bin/python works). */
void cli_tell_mounts(const struct cli *c)
{
	struct cfs_err err = {{0}};
	unsigned late = 0;
	int r = store_tell_mounts(c->store_dir, TELL_TIMEOUT_MS, &late, &err);
	char msg[sizeof(err.msg) + 64];

	if (r) {
		snprintf(msg, sizeof(msg), "warning: cannot tell the mounts: %s",
		         err.msg[0] ? err.msg : strerror(-r));
		cli_say(c->cmd, msg);
	} else if (late) {
		fprintf(stderr,
		        "condafs: %s: warning: %u mount%s of the store did not confirm within %d "
		        "ms; %s the change within a quarter second\n",
		        c->cmd, late, late == 1 ? "" : "s", TELL_TIMEOUT_MS,
		        late == 1 ? "it shows" : "they show");
	}
}

/* What a read-only command reads: the store (*st), or for a user who may not open it the
 * mount (*vm). One of the two is set on success. */
int cli_open_view(const struct cli *c, struct store **st, struct viamount **vm)
{
	const char *mnt = c->mount ? c->mount : c->config.mountpoint;
	struct cfs_err err = {{0}};
	uid_t owner;
	int r;

	*st = NULL;
	*vm = NULL;
	if (!store_foreign(c, &owner))
		return cli_open_store(c, STORE_READONLY, st);
	r = viamount_open(mnt, c->store_dir, vm, &err);
	if (r == -EXDEV)
		return cli_die(c, &err, r);
	if (r) {
		char msg[sizeof(err.msg) + 2 * PATH_MAX + 96];

		snprintf(msg, sizeof(msg),
		         "%s: only %s opens the store, and no condafsd answers at %s (%s)",
		         c->store_dir, owner ? "its owner" : "root", mnt,
		         err.msg[0] ? err.msg : strerror(-r));
		cli_say(c->cmd, msg);
		return EXIT_FAILED;
	}
	return 0;
}

void cli_close_view(struct store *st, struct viamount *vm)
{
	store_close(st);
	viamount_close(vm);
}

int cli_need_args(const struct cli *c, int n)
{
	if (c->argc == n)
		return 0;
	fprintf(stderr, "condafs: %s: expected %d argument%s, got %d\n%s", c->cmd, n,
	        n == 1 ? "" : "s", c->argc, cli_usage);
	return EXIT_USAGE;
}

/* A lock for several platforms read without --platform took this machine's: say so. */
void cli_say_platform(const struct cli *c, const char *path, const struct pkgset *set)
{
	const char *choices = pkgset_platform_choices(set);

	char msg[PATH_MAX + 512];

	if (choices) {
		snprintf(msg, sizeof(msg),
		         "note: %s is for %s: took this machine's, %s (--platform to choose)", path,
		         choices, pkgset_platform(set));
		cli_say(c->cmd, msg);
	}
}

int cli_find_env(const struct cli *c, struct store *st, const char *name, struct store_env *env)
{
	struct cfs_err err = {{0}};
	int r = store_env_find(st, name, env, &err);

	return r ? cli_die(c, &err, r) : 0;
}

int cli_view_env(struct store *st, struct viamount *vm, const char *name, struct store_env *env,
                 struct pkgset **ret_set, struct cfs_err *err)
{
	int r = vm ? viamount_find(vm, name, env, err) : store_env_find(st, name, env, err);

	if (!r && ret_set)
		r = vm ? viamount_packages(vm, env, ret_set, err)
		       : store_env_packages(st, env, ret_set, err);
	return r;
}

void cli_json_field(const char *name, const char *v, bool comma)
{
	printf("%s\"%s\": ", comma ? ", " : "", name);
	if (v)
		out_json_str(stdout, v, strlen(v));
	else
		printf("null");
}
