// SPDX-License-Identifier: MIT
/*
 * condafs: the command line. Parses options, opens the store (--store, $CONDAFS_STORE,
 * else the config file's, else /var/lib/condafs) and runs one command through the store's
 * public API. Errors are one line on stderr, "condafs: <command>: <file>: <reason>", and a
 * non-zero exit. The store is root's: another user's read-only commands read the mount
 * instead (viamount.c), and their writing commands are refused in one line.
 */
#include "destfile.h"
#include "export.h"
#include "kernelspec.h"
#include "modulefile.h"
#include "out.h"
#include "run.h"
#include "viamount.h"

#include <condafs/activate.h>
#include <condafs/cuda.h>
#include <condafs/store.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
	char **argv; /* positional arguments */
};

static const char usage[] =
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
static void say(const char *cmd, const char *msg)
{
	fputs("condafs: ", stderr);
	out_text(stderr, cmd);
	fputs(": ", stderr);
	out_text(stderr, msg);
	fputc('\n', stderr);
}

static int die(const struct cli *c, const struct cfs_err *err, int r)
{
	say(c->cmd, err && err->msg[0] ? err->msg : strerror(-r));
	return EXIT_FAILED;
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
	say(ctx, msg);
}

static int open_store(const struct cli *c, unsigned flags, struct store **st)
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
		return die(c, &err, -EPERM);
	}
	r = store_open_notify(c->store_dir, flags, print_notice, (void *)c->cmd, st, &err);
	return r ? die(c, &err, r) : 0;
}

/* How long a writing command waits for the mounts of its store to show its change. */
#define TELL_TIMEOUT_MS 2000

/* After a commit that changes what a mount shows: once this returns, every condafsd
 * serving the store shows it (h=$(condafs ingest P) && /envs/$h/bin/python works). */
static void tell_mounts(const struct cli *c)
{
	struct cfs_err err = {{0}};
	unsigned late = 0;
	int r = store_tell_mounts(c->store_dir, TELL_TIMEOUT_MS, &late, &err);
	char msg[sizeof(err.msg) + 64];

	if (r) {
		snprintf(msg, sizeof(msg), "warning: cannot tell the mounts: %s",
		         err.msg[0] ? err.msg : strerror(-r));
		say(c->cmd, msg);
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
static int open_view(const struct cli *c, struct store **st, struct viamount **vm)
{
	const char *mnt = c->mount ? c->mount : c->config.mountpoint;
	struct cfs_err err = {{0}};
	uid_t owner;
	int r;

	*st = NULL;
	*vm = NULL;
	if (!store_foreign(c, &owner))
		return open_store(c, STORE_READONLY, st);
	r = viamount_open(mnt, c->store_dir, vm, &err);
	if (r == -EXDEV)
		return die(c, &err, r);
	if (r) {
		char msg[sizeof(err.msg) + 2 * PATH_MAX + 96];

		snprintf(msg, sizeof(msg),
		         "%s: only %s opens the store, and no condafsd answers at %s (%s)",
		         c->store_dir, owner ? "its owner" : "root", mnt,
		         err.msg[0] ? err.msg : strerror(-r));
		say(c->cmd, msg);
		return EXIT_FAILED;
	}
	return 0;
}

static void close_view(struct store *st, struct viamount *vm)
{
	store_close(st);
	viamount_close(vm);
}

static int need_args(const struct cli *c, int n)
{
	if (c->argc == n)
		return 0;
	fprintf(stderr, "condafs: %s: expected %d argument%s, got %d\n%s", c->cmd, n,
	        n == 1 ? "" : "s", c->argc, usage);
	return EXIT_USAGE;
}

/* A lock for several platforms read without --platform took this machine's: say so. */
static void say_platform(const struct cli *c, const char *path, const struct pkgset *set)
{
	const char *choices = pkgset_platform_choices(set);

	char msg[PATH_MAX + 512];

	if (choices) {
		snprintf(msg, sizeof(msg),
		         "note: %s is for %s: took this machine's, %s (--platform to choose)", path,
		         choices, pkgset_platform(set));
		say(c->cmd, msg);
	}
}

static int cmd_hash(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct stat sb;
	char hash[33];
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if (stat(c->argv[0], &sb) == 0 && S_ISDIR(sb.st_mode))
		r = pkgset_from_prefix(c->argv[0], &set, &err);
	else
		r = pkgset_from_lock(c->argv[0], c->platform, c->environment, &set, &err);
	if (r)
		return die(c, &err, r);
	say_platform(c, c->argv[0], set);
	pkgset_hash(set, hash);
	if (c->json) {
		printf("{\"hash\": \"%s\", \"platform\": ", hash);
		out_json_str(stdout, pkgset_platform(set), strlen(pkgset_platform(set)));
		printf(", \"packages\": %zu}\n", pkgset_count(set));
	} else {
		printf("%s\n", hash);
	}
	pkgset_free(set);
	return 0;
}

static void print_warning(void *ctx, const char *msg)
{
	(void)ctx;
	fputs("condafs: ingest: warning: ", stderr);
	out_text(stderr, msg);
	fputc('\n', stderr);
}

static int cmd_ingest(const struct cli *c)
{
	static const char *const what[] = {
	        [INGEST_NEW] = "stored",
	        [INGEST_PRESENT] = "already stored",
	        [INGEST_REPLACED] = "replaced",
	};
	struct cfs_err err = {{0}};
	struct progress prog;
	struct ingest_opts o = {
	        .lock_path = c->lock,
	        .lock_platform = c->platform,
	        .lock_env = c->environment,
	        .replace = c->replace,
	        .skip_special = c->skip_special,
	        .progress = progress_update,
	        .warn = print_warning,
	        .ctx = &prog,
	};
	enum ingest_result res;
	struct pkgset *lock = NULL;
	struct store *st;
	char hash[33];
	int r;

	if ((r = need_args(c, 1)))
		return r;
	/* Which platform of the lock is checked is said before anything is stored. */
	if (c->lock && !c->platform) {
		r = pkgset_from_lock(c->lock, NULL, c->environment, &lock, &err);
		if (r)
			return die(c, &err, r);
		say_platform(c, c->lock, lock);
		if (pkgset_platform_choices(lock))
			o.lock_platform = pkgset_platform(lock);
	}
	r = open_store(c, STORE_CREATE, &st);
	if (!r) {
		progress_init(&prog);
		r = store_ingest(st, c->argv[0], &o, hash, &res, &err);
		progress_done(&prog);
		store_close(st);
		r = r ? die(c, &err, r) : 0;
	}
	pkgset_free(lock);
	if (r)
		return r;
	if (res != INGEST_PRESENT)
		tell_mounts(c);
	/* stdout is the hash alone, whatever happened: h=$(condafs ingest P) always works. */
	if (c->json)
		printf("{\"hash\": \"%s\", \"result\": \"%s\", \"already_stored\": %s}\n", hash,
		       what[res], res == INGEST_PRESENT ? "true" : "false");
	else
		printf("%s\n", hash);
	if (!c->json && res != INGEST_NEW)
		fprintf(stderr, "condafs: ingest: note: %s %s\n", hash,
		        res == INGEST_PRESENT ? "was already stored: nothing changed"
		                              : "replaced (its tags kept)");
	return 0;
}

static void print_install_warning(void *ctx, const char *msg)
{
	(void)ctx;
	fputs("condafs: install: warning: ", stderr);
	out_text(stderr, msg);
	fputc('\n', stderr);
}

/* The packages whose link scripts an install did not run, for --json. */
struct not_run {
	char *dist[256];
	size_t n;
};

static void note_not_run(void *arg, const char *dist)
{
	struct not_run *nr = arg;

	if (nr->n < sizeof(nr->dist) / sizeof(nr->dist[0]) && (nr->dist[nr->n] = strdup(dist)))
		nr->n++;
}

static int cmd_install(const struct cli *c)
{
	struct not_run nr = {.n = 0};
	struct cfs_err err = {{0}};
	struct progress prog;
	/* The command line's mirrors and caches, then the config file's. */
	const char *mirrors[64 + CONFIG_LIST_MAX], *pkgs_dirs[64 + CONFIG_LIST_MAX];
	size_t nm = c->nmirrors, np = c->npkgs_dirs;
	struct install_opts o = {
	        .platform = c->platform,
	        .environment = c->environment,
	        .mirrors = mirrors,
	        .pkgs_dirs = pkgs_dirs,
	        .fetching = progress_fetch,
	        .ingest = {.progress = progress_update,
	                   .warn = print_install_warning,
	                   .ctx = &prog},
	        .script_not_run = note_not_run,
	        .script_arg = &nr,
	};
	enum ingest_result res = INGEST_NEW;
	struct pkgset *lock = NULL;
	struct store_env env;
	struct store *st;
	char hash[33];
	int r;

	if ((r = need_args(c, 1)))
		return r;
	memcpy(mirrors, c->mirrors, nm * sizeof(*mirrors));
	memcpy(pkgs_dirs, c->pkgs_dirs, np * sizeof(*pkgs_dirs));
	for (int i = 0; i < c->config.nmirrors; i++)
		mirrors[nm++] = c->config.mirrors[i];
	for (int i = 0; i < c->config.npkgs_dirs; i++)
		pkgs_dirs[np++] = c->config.pkgs_dirs[i];
	o.nmirrors = nm;
	o.npkgs_dirs = np;
	if (!c->platform) {
		r = pkgset_from_lock(c->argv[0], NULL, c->environment, &lock, &err);
		if (r)
			return die(c, &err, r);
		say_platform(c, c->argv[0], lock);
		if (pkgset_platform_choices(lock))
			o.platform = pkgset_platform(lock);
	}
	r = open_store(c, STORE_CREATE, &st);
	if (!r) {
		progress_init(&prog);
		r = store_install(st, c->argv[0], &o, hash, &res, &err);
		progress_done(&prog);
		if (!r && c->tag && !(r = store_env_find(st, hash, &env, &err)))
			r = store_tag_set(st, c->tag, &env, &err);
		store_close(st);
		r = r ? die(c, &err, r) : 0;
	}
	pkgset_free(lock);
	if (r)
		goto out;
	if (res != INGEST_PRESENT || c->tag)
		tell_mounts(c);
	if (c->json) {
		printf("{\"hash\": \"%s\", \"already_stored\": %s, \"scripts_not_run\": [", hash,
		       res == INGEST_PRESENT ? "true" : "false");
		for (size_t i = 0; i < nr.n; i++) {
			fputs(i ? ", " : "", stdout);
			out_json_str(stdout, nr.dist[i], strlen(nr.dist[i]));
		}
		printf("]}\n");
	} else {
		printf("%s\n", hash);
	}
	if (!c->json && res == INGEST_PRESENT)
		fprintf(stderr, "condafs: install: note: %s was already stored: nothing changed\n",
		        hash);
out:
	for (size_t i = 0; i < nr.n; i++)
		free(nr.dist[i]);
	return r;
}

static int find_env(const struct cli *c, struct store *st, const char *name, struct store_env *env)
{
	struct cfs_err err = {{0}};
	int r = store_env_find(st, name, env, &err);

	return r ? die(c, &err, r) : 0;
}

static int cmd_export(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct viamount *vm;
	struct store_env env;
	struct store *st;
	int r;

	if ((r = need_args(c, 2)))
		return r;
	if ((r = open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_find(vm, c->argv[0], &env, &err);
		if (!r)
			r = viamount_export(vm, &env, c->argv[1], c->prefix, c->frozen, &err);
		r = r ? die(c, &err, r) : 0;
	} else if (!(r = find_env(c, st, c->argv[0], &env))) {
		r = export_env(st, &env, c->argv[1], c->prefix, c->frozen, &err);
		r = r ? die(c, &err, r) : 0;
	}
	close_view(st, vm);
	return r;
}

static int print_ls(const struct cli *c, const struct report_env *v, size_t n)
{
	char *json = NULL;
	size_t len;

	if (c->json) {
		if (report_envs_json(v, n, &json, &len))
			return die(c, NULL, -ENOMEM);
		fwrite(json, 1, len, stdout);
		free(json);
		return 0;
	}
	printf("%-32s  %-10s %8s %10s %10s  %-16s  %-16s  %-6s  %s\n", "HASH", "PLATFORM", "FILES",
	       "SIZE", "UNIQUE", "CREATED", "LAST USED", "STATE", "TAGS");
	for (size_t i = 0; i < n; i++) {
		const struct store_env *e = &v[i].env;
		char size[32], uniq[32], created[32], used[32], names[512] = "";
		char plat[OUT_ESC], enames[OUT_ESC];
		size_t at = 0;

		for (size_t t = 0; t < v[i].ntags && at < sizeof(names); t++)
			at += (size_t)snprintf(names + at, sizeof(names) - at, "%s%s", t ? "," : "",
			                       v[i].tags[t].name);
		printf("%-32s  %-10s %8llu %10s %10s  %-16s  %-16s  %-6s  %s\n", e->hash,
		       out_esc(e->platform, plat, sizeof(plat)), (unsigned long long)e->files,
		       out_size(e->logical_bytes, size), out_size(v[i].unique_bytes, uniq),
		       out_time(e->created, created), out_time(e->last_used, used),
		       e->broken ? "broken" : "ok",
		       v[i].ntags ? out_esc(names, enames, sizeof(enames)) : "-");
	}
	return 0;
}

static int cmd_ls(const struct cli *c)
{
	struct cfs_err err = {{0}};
	const struct report_env *v = NULL;
	struct report_env *own = NULL;
	struct viamount *vm;
	struct store *st;
	size_t n = 0;
	int r;

	if ((r = need_args(c, 0)))
		return r;
	if ((r = open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_envs(vm, &v, &n, &err);
	} else {
		r = report_envs(st, &own, &n, &err);
		v = own;
	}
	r = r ? die(c, &err, r) : print_ls(c, v, n);
	report_envs_free(own, n);
	close_view(st, vm);
	return r;
}

static void json_field(const char *name, const char *v, bool comma)
{
	printf("%s\"%s\": ", comma ? ", " : "", name);
	if (v)
		out_json_str(stdout, v, strlen(v));
	else
		printf("null");
}

static int print_show(const struct cli *c, const struct store_env *env, const struct pkgset *set)
{
	char plat[OUT_ESC], src[OUT_ESC];
	struct cuda_need need;
	char *json = NULL;
	size_t len;

	if (c->json) {
		if (report_packages_json(env, set, &json, &len))
			return die(c, NULL, -ENOMEM);
		fwrite(json, 1, len, stdout);
		free(json);
		return 0;
	}
	printf("# %s  %s  %s\n", env->hash, out_esc(env->platform, plat, sizeof(plat)),
	       out_esc(env->source_prefix, src, sizeof(src)));
	cuda_need_of(set, &need);
	if (need.major)
		printf("# CUDA %s (%s)\n", need.release, out_esc(need.source, src, sizeof(src)));
	else
		printf("# CUDA: none needed\n");
	for (size_t i = 0; i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);
		char name[OUT_ESC], version[OUT_ESC], build[OUT_ESC], channel[OUT_ESC];

		printf("%-5s  %-32s %-20s %-24s %s\n", p->kind == PKG_CONDA ? "conda" : "pypi",
		       out_esc(p->name, name, sizeof(name)),
		       out_esc(p->version, version, sizeof(version)),
		       out_esc(p->build ? p->build : "", build, sizeof(build)),
		       out_esc(p->channel ? p->channel : "", channel, sizeof(channel)));
	}
	return 0;
}

static int cmd_show(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct viamount *vm;
	struct store_env env;
	struct store *st;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if ((r = open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_find(vm, c->argv[0], &env, &err);
		if (!r)
			r = viamount_packages(vm, &env, &set, &err);
	} else if ((r = store_env_find(st, c->argv[0], &env, &err)) == 0) {
		r = store_env_packages(st, &env, &set, &err);
	}
	r = r ? die(c, &err, r) : print_show(c, &env, set);
	pkgset_free(set);
	close_view(st, vm);
	return r;
}

/* A lock file, not an environment's name: a path to a regular file. Names hold no '/', so
 * only a tag spelt like a file in the current directory is read as that file. */
static bool is_lock_file(const char *arg)
{
	struct stat sb;

	return stat(arg, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int print_check(const struct cli *c, const char *hash, const char *name,
                       const struct cuda_need *need, const struct cuda_driver *drv,
                       const struct cuda_check *chk)
{
	char esc[OUT_ESC];

	if (c->json) {
		printf("{");
		json_field("hash", hash, false);
		json_field("cuda", need->major ? need->release : NULL, true);
		json_field("cuda_source", need->major ? need->source : NULL, true);
		json_field("driver", drv->present ? drv->version : NULL, true);
		json_field("driver_source", drv->present ? drv->source : drv->absent, true);
		json_field("verdict", cuda_verdict_name(chk->verdict), true);
		json_field("required_driver", chk->required[0] ? chk->required : NULL, true);
		json_field("compat_driver", chk->compat[0] ? chk->compat : NULL, true);
		json_field("message", chk->text, true);
		printf("}\n");
		return cuda_verdict_ok(chk->verdict) ? 0 : EXIT_FAILED;
	}
	printf("environment  %s (%s)\n", hash, out_esc(name, esc, sizeof(esc)));
	if (need->major)
		printf("CUDA         %s, from %s\n", need->release,
		       out_esc(need->source, esc, sizeof(esc)));
	else
		printf("CUDA         none needed\n");
	if (drv->present)
		printf("driver       %s, from %s\n", drv->version, drv->source);
	else
		printf("driver       none (%s)\n", drv->absent);
	printf("verdict      %s\n", chk->text);
	return cuda_verdict_ok(chk->verdict) ? 0 : EXIT_FAILED;
}

static int cmd_check(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct viamount *vm = NULL;
	struct store *st = NULL;
	struct cuda_driver drv;
	struct cuda_need need;
	struct cuda_check chk;
	struct store_env env;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	/* A bad --driver is said before anything is opened. */
	if ((r = cuda_host_driver(c->driver, &drv, &err)))
		return die(c, &err, r);
	if (is_lock_file(c->argv[0])) {
		r = pkgset_from_lock(c->argv[0], c->platform, c->environment, &set, &err);
		if (r)
			return die(c, &err, r);
		say_platform(c, c->argv[0], set);
		pkgset_hash(set, env.hash);
	} else {
		if ((r = open_view(c, &st, &vm)))
			return r;
		if (vm) {
			r = viamount_find(vm, c->argv[0], &env, &err);
			if (!r)
				r = viamount_packages(vm, &env, &set, &err);
		} else if ((r = store_env_find(st, c->argv[0], &env, &err)) == 0) {
			r = store_env_packages(st, &env, &set, &err);
		}
		close_view(st, vm);
		if (r)
			return die(c, &err, r);
	}
	cuda_need_of(set, &need);
	cuda_check(&need, &drv, &chk);
	r = print_check(c, env.hash, c->argv[0], &need, &drv, &chk);
	pkgset_free(set);
	return r;
}

static int cmd_cat(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct viamount *vm;
	struct store_env env;
	struct store_node n;
	struct store *st;
	const char *prefix;
	char *path = NULL, *tok, *save = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0, size;
	int r;

	if ((r = need_args(c, 2)))
		return r;
	if ((r = open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_find(vm, c->argv[0], &env, &err);
		if (!r)
			r = viamount_cat(vm, &env, c->argv[1],
			                 c->prefix ? c->prefix : env.source_prefix, stdout, &err);
		r = r ? die(c, &err, r) : 0;
		goto out;
	}
	if ((r = find_env(c, st, c->argv[0], &env)))
		goto out;
	prefix = c->prefix ? c->prefix : env.source_prefix;
	r = store_node_get(st, env.root, &n, &err);
	path = strdup(c->argv[1]);
	buf = malloc(1 << 20);
	if (!path || !buf)
		r = -ENOMEM;
	for (tok = r ? NULL : strtok_r(path, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		r = store_node_lookup(st, n.id, tok, strlen(tok), &n, &err);
		if (r == -ENOENT)
			snprintf(err.msg, sizeof(err.msg), "%s/%s: no such file", env.hash,
			         c->argv[1]);
		if (r)
			break;
	}
	if (!r && n.type != NODE_FILE) {
		snprintf(err.msg, sizeof(err.msg), "%s/%s: not a regular file", env.hash,
		         c->argv[1]);
		r = -EISDIR;
	}
	size = r ? 0 : store_node_size(&n, strlen(prefix));
	while (!r && off < size) {
		size_t got;

		r = store_read(st, &n, prefix, off, 1 << 20, buf, &got, &err);
		if (!r && fwrite(buf, 1, got, stdout) != got)
			r = -EIO;
		off += got;
		/* The file ends before its size: what was printed is not the file. */
		if (!r && got == 0) {
			snprintf(err.msg, sizeof(err.msg),
			         "%s/%s: ends after %llu of its %llu bytes", env.hash, c->argv[1],
			         (unsigned long long)off, (unsigned long long)size);
			r = -EIO;
		}
	}
	if (!r && fflush(stdout) != 0) {
		r = errno ? -errno : -EIO;
		snprintf(err.msg, sizeof(err.msg), "standard output: %s", strerror(-r));
	}
	if (r)
		r = die(c, &err, r);
out:
	free(path);
	free(buf);
	close_view(st, vm);
	return r;
}

static int cmd_tag(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_env env;
	struct store *st;
	int r;

	if ((r = need_args(c, 2)))
		return r;
	if ((r = open_store(c, 0, &st)))
		return r;
	if (!(r = find_env(c, st, c->argv[1], &env))) {
		r = store_tag_set(st, c->argv[0], &env, &err);
		r = r ? die(c, &err, r) : 0;
	}
	store_close(st);
	if (!r)
		tell_mounts(c);
	return r;
}

static int cmd_untag(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store *st;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if ((r = open_store(c, 0, &st)))
		return r;
	r = store_tag_remove(st, c->argv[0], &err);
	store_close(st);
	if (r)
		return die(c, &err, r);
	tell_mounts(c);
	return 0;
}

static int cmd_rm(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct store_tag *tags = NULL;
	struct store_env env;
	struct store *st;
	size_t ntags = 0;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if ((r = open_store(c, 0, &st)))
		return r;
	if ((r = find_env(c, st, c->argv[0], &env)))
		goto out;
	r = store_tag_list(st, env.hash, &tags, &ntags, &err);
	if (!r && ntags && !c->force) {
		snprintf(err.msg, sizeof(err.msg), "%s: tagged %s%s; untag it first or use --force",
		         env.hash, tags[0].name, ntags > 1 ? " and more" : "");
		r = die(c, &err, -EBUSY);
		goto out;
	}
	if (!r)
		r = store_env_remove(st, &env, &err);
	if (r)
		r = die(c, &err, r);
	else
		printf("removed %s\n", env.hash);
out:
	free(tags);
	store_close(st);
	if (!r)
		tell_mounts(c);
	return r;
}

struct gc_out {
	const struct cli *c;
	struct store *st;
	bool first;
	/* --json: the kept environments, printed after the removed ones */
	FILE *kept;
	char *kept_buf;
	size_t kept_len;
	bool kept_first;
};

static void gc_report(void *ctx, const struct store_env *env)
{
	struct gc_out *g = ctx;
	char used[32], src[OUT_ESC];

	if (g->c->json) {
		printf("%s\n {\"hash\": \"%s\", \"last_used\": %lld, \"source_prefix\": ",
		       g->first ? "" : ",", env->hash, (long long)env->last_used);
		out_json_str(stdout, env->source_prefix, strlen(env->source_prefix));
		printf("}");
		g->first = false;
	} else {
		printf("%s %s (last used %s, %s)\n", g->c->dry_run ? "would remove" : "removing",
		       env->hash, out_time(env->last_used, used),
		       out_esc(env->source_prefix, src, sizeof(src)));
	}
}

/* "1h", "30d", "90s": a duration as it would be written in the config. */
static const char *duration(int64_t secs, char buf[32])
{
	static const struct {
		char unit;
		int64_t seconds;
	} units[] = {{'w', 604800}, {'d', 86400}, {'h', 3600}, {'m', 60}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (secs && secs % units[i].seconds == 0) {
			snprintf(buf, 32, "%lld%c", (long long)(secs / units[i].seconds),
			         units[i].unit);
			return buf;
		}
	snprintf(buf, 32, "%llds", (long long)secs);
	return buf;
}

/* An environment the policy would have removed, kept: say why (a short --unused-for must
 * not silently remove nothing). */
static void gc_kept(void *ctx, const struct store_env *env, enum gc_kept why)
{
	static const char *const reason[] = {
	        [GC_KEPT_TAGGED] = "tagged",
	        [GC_KEPT_GRACE] = "grace",
	        [GC_KEPT_HELD] = "held",
	};
	struct gc_out *g = ctx;
	struct store_tag *tags = NULL;
	struct cfs_err err = {{0}};
	char used[32], grace[32], src[OUT_ESC];
	size_t ntags = 0;

	if (why == GC_KEPT_TAGGED && store_tag_list(g->st, env->hash, &tags, &ntags, &err))
		ntags = 0;
	if (g->c->json && g->kept) {
		fprintf(g->kept, "%s\n {\"hash\": \"%s\", \"reason\": \"%s\", \"last_used\": %lld",
		        g->kept_first ? "" : ",", env->hash, reason[why],
		        (long long)env->last_used);
		if (why == GC_KEPT_TAGGED) {
			fprintf(g->kept, ", \"tags\": [");
			for (size_t i = 0; i < ntags; i++) {
				fprintf(g->kept, "%s", i ? ", " : "");
				out_json_str(g->kept, tags[i].name, strlen(tags[i].name));
			}
			fprintf(g->kept, "]");
		}
		fprintf(g->kept, ", \"source_prefix\": ");
		out_json_str(g->kept, env->source_prefix, strlen(env->source_prefix));
		fprintf(g->kept, "}");
		g->kept_first = false;
	} else if (!g->c->json) {
		printf("%s %s (last used %s, %s): ", g->c->dry_run ? "would keep" : "keeping",
		       env->hash, out_time(env->last_used, used),
		       out_esc(env->source_prefix, src, sizeof(src)));
		if (why == GC_KEPT_TAGGED) {
			printf("tagged");
			for (size_t i = 0; i < ntags; i++) {
				fputs(i ? ", " : " ", stdout);
				out_text(stdout, tags[i].name);
			}
			printf("\n");
		} else if (why == GC_KEPT_GRACE) {
			printf("used within the grace window (%s, gc.grace)\n",
			       duration(g->c->config.gc_grace, grace));
		} else {
			printf("removed, but a mount holds it (files still open): freed by a later "
			       "gc\n");
		}
	}
	free(tags);
}

static int cmd_gc(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct gc_out g = {.c = c, .first = true, .kept_first = true};
	struct gc_opts o = {
	        .now = time(NULL), .dry_run = c->dry_run, .kept = gc_kept, .purge = c->purge};
	struct gc_result res;
	struct store *st;
	char freed[32];
	int r;

	if ((r = need_args(c, 0)))
		return r;
	o.unused_for = c->config.gc_unused_for;
	if (c->unused_for && config_duration(c->unused_for, &o.unused_for)) {
		snprintf(err.msg, sizeof(err.msg),
		         "--unused-for %s: not a duration (30d, 12h, 90m, 45s)", c->unused_for);
		die(c, &err, -EINVAL);
		return EXIT_USAGE;
	}
	/* Whatever was used within the grace window stays (store_gc says which it kept). */
	o.grace = c->config.gc_grace;
	if ((r = open_store(c, 0, &st)))
		return r;
	g.st = st;
	if (c->json && !(g.kept = open_memstream(&g.kept_buf, &g.kept_len))) {
		store_close(st);
		fprintf(stderr, "condafs: gc: out of memory\n");
		return EXIT_FAILED;
	}
	if (c->json)
		printf("{\"dry_run\": %s, \"removed\": [", c->dry_run ? "true" : "false");
	r = store_gc(st, &o, gc_report, &g, &res, &err);
	store_close(st);
	if (g.kept)
		fclose(g.kept);
	if (r) {
		free(g.kept_buf);
		return die(c, &err, r);
	}
	if (res.envs_removed && !c->dry_run)
		tell_mounts(c);
	if (c->json)
		printf("%s], \"kept\": [%s%s], \"environments_removed\": %llu, "
		       "\"environments_held\": %llu, \"objects_freed\": %llu, \"bytes_freed\": "
		       "%llu, \"packs_repacked\": %llu}\n",
		       g.first ? "" : "\n", g.kept_buf ? g.kept_buf : "", g.kept_first ? "" : "\n",
		       (unsigned long long)res.envs_removed, (unsigned long long)res.envs_held,
		       (unsigned long long)res.objects_freed, (unsigned long long)res.bytes_freed,
		       (unsigned long long)res.packs_repacked);
	else
		printf("%s%llu environment%s removed, %llu objects and %s freed, %llu pack%s "
		       "rewritten\n",
		       c->dry_run ? "dry run: " : "", (unsigned long long)res.envs_removed,
		       res.envs_removed == 1 ? "" : "s", (unsigned long long)res.objects_freed,
		       out_size(res.bytes_freed, freed), (unsigned long long)res.packs_repacked,
		       res.packs_repacked == 1 ? "" : "s");
	free(g.kept_buf);
	/* Their rows and objects stay until the mount lets go of them. */
	if (!c->json && res.envs_held)
		printf("%llu removed environment%s still open through a mount: freed by a later "
		       "gc\n",
		       (unsigned long long)res.envs_held, res.envs_held == 1 ? " is" : "s are");
	return 0;
}

static int print_stats(const struct cli *c, const struct store_stats *s, const struct report_env *v,
                       size_t n)
{
	double ratio = s->stored_bytes ? (double)s->logical_bytes / (double)s->stored_bytes : 0;
	char a[32], b[32], d[32], *json = NULL;
	size_t len;

	if (c->json) {
		if (report_stats_json(s, v, n, &json, &len))
			return die(c, NULL, -ENOMEM);
		fwrite(json, 1, len, stdout);
		free(json);
		return 0;
	}
	printf("environments   %llu\nobjects        %llu\n", (unsigned long long)s->envs,
	       (unsigned long long)s->objects);
	printf("logical bytes  %s (what the environments hold)\n", out_size(s->logical_bytes, a));
	printf("content bytes  %s (distinct contents, uncompressed)\n",
	       out_size(s->content_bytes, b));
	printf("stored bytes   %s (compressed)\n", out_size(s->stored_bytes, d));
	printf("dedup ratio    %.2fx (logical / stored)\n", ratio);
	printf("unique to each environment:\n");
	for (size_t i = 0; i < n; i++)
		printf("  %s  %s\n", v[i].env.hash, out_size(v[i].unique_bytes, a));
	return 0;
}

static int cmd_stats(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct report_env *v = NULL;
	struct store_stats s;
	struct viamount *vm;
	struct store *st;
	size_t n = 0;
	int r;

	if ((r = need_args(c, 0)))
		return r;
	if ((r = open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = viamount_stats(vm, &s, &v, &n, &err);
	} else {
		r = store_stats(st, &s, &err);
		if (!r)
			r = report_envs(st, &v, &n, &err);
	}
	r = r ? die(c, &err, r) : print_stats(c, &s, v, n);
	report_envs_free(v, n);
	close_view(st, vm);
	return r;
}

struct verify_out {
	const struct cli *c;
	bool first;
	bool repairs; /* --json: the "repairs" list is open */
	uint64_t nrepairs;
};

static void verify_report(void *ctx, const struct verify_problem *p)
{
	struct verify_out *vo = ctx;
	char problem[OUT_ESC], env[OUT_ESC], path[OUT_ESC];

	if (vo->c->json) {
		printf("%s\n {", vo->first ? "" : ",");
		json_field("object", p->key, false);
		json_field("problem", p->problem, true);
		json_field("environment", p->env, true);
		json_field("path", p->path, true);
		printf("}");
		vo->first = false;
	} else if (!p->key) {
		/* A damaged node whose object has no row. */
		printf("%s/%s: %s\n", out_esc(p->env, env, sizeof(env)),
		       out_esc(p->path, path, sizeof(path)),
		       out_esc(p->problem, problem, sizeof(problem)));
	} else if (p->env) {
		printf("object %s: %s: used by %s/%s\n", p->key,
		       out_esc(p->problem, problem, sizeof(problem)),
		       out_esc(p->env, env, sizeof(env)), out_esc(p->path, path, sizeof(path)));
	} else {
		printf("object %s: %s\n", p->key, out_esc(p->problem, problem, sizeof(problem)));
	}
}

/* --json: store_repair reports every problem before its first change, so the list of
 * problems is closed once, when the first change (or the summary) comes. */
static void json_open_repairs(struct verify_out *vo)
{
	if (vo->repairs)
		return;
	printf("%s], \"repairs\": [", vo->first ? "" : "\n");
	vo->repairs = true;
}

static void repair_report(void *ctx, const struct repair_action *a)
{
	static const char *const what[] = {
	        [REPAIR_ORPHAN] = "orphan removed",
	        [REPAIR_TMP] = "temporary directory removed",
	        [REPAIR_REFS] = "reference count fixed",
	        [REPAIR_NLINK] = "link count fixed",
	        [REPAIR_DROPPED] = "unused row deleted",
	        [REPAIR_BROKEN] = "marked broken",
	        [REPAIR_UNBROKEN] = "no longer broken",
	        [REPAIR_RECORD] = "package record forgotten",
	};
	struct verify_out *vo = ctx;

	if (vo->c->json) {
		json_open_repairs(vo);
		printf("%s\n {", vo->nrepairs++ ? "," : "");
		json_field("action", what[a->kind], false);
		json_field("object", a->key, true);
		json_field("environment", a->env, true);
		json_field(a->kind == REPAIR_RECORD ? "package" : "tmp", a->name, true);
		if (a->kind == REPAIR_REFS || a->kind == REPAIR_NLINK)
			printf(", \"refs_had\": %lld, \"refs_now\": %lld", (long long)a->refs_had,
			       (long long)a->refs_now);
		printf("}");
	} else if (a->kind == REPAIR_REFS || a->kind == REPAIR_NLINK) {
		printf("object %s: %s: %lld, now %lld\n", a->key, what[a->kind],
		       (long long)a->refs_had, (long long)a->refs_now);
	} else if (a->key) {
		printf("object %s: %s\n", a->key, what[a->kind]);
	} else if (a->kind == REPAIR_RECORD) {
		char name[OUT_ESC];

		printf("environment %s: %s: %s\n", a->env, out_esc(a->name, name, sizeof(name)),
		       what[a->kind]);
	} else if (a->env) {
		printf("environment %s: %s\n", a->env, what[a->kind]);
	} else {
		char name[OUT_ESC];

		printf("tmp/%s: %s\n", out_esc(a->name, name, sizeof(name)), what[a->kind]);
	}
}

static int cmd_repair(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct repair_result res;
	const struct verify_result *f = &res.found;
	struct store *st;
	uint64_t fixed;
	int r;

	if (open_store(c, 0, &st))
		return EXIT_OPERATIONAL;
	if (c->json)
		printf("{\"problems\": [");
	r = store_repair(st, verify_report, repair_report, &vo, &res, &err);
	store_close(st);
	if (r) {
		die(c, &err, r);
		return EXIT_OPERATIONAL;
	}
	fixed = res.orphans_removed + res.tmp_removed + res.refs_fixed + res.dropped +
	        res.envs_marked + res.envs_cleared + res.records_forgotten;
	if (c->json)
		json_open_repairs(&vo);
	if (c->json)
		printf("%s], \"objects_checked\": %llu, \"corrupt\": %llu, \"unreferenced\": %llu,"
		       " \"damaged_nodes\": %llu, \"damaged_records\": %llu,"
		       " \"orphans_removed\": %llu, \"tmp_removed\": %llu,"
		       " \"refs_fixed\": %llu, \"dropped\": %llu, \"envs_marked\": %llu,"
		       " \"envs_cleared\": %llu, \"envs_broken\": %llu, \"corrupt_left\": %llu,"
		       " \"records_forgotten\": %llu}\n",
		       vo.nrepairs ? "\n" : "", (unsigned long long)f->objects_checked,
		       (unsigned long long)f->corrupt, (unsigned long long)f->unreferenced,
		       (unsigned long long)f->damaged_nodes, (unsigned long long)f->damaged_records,
		       (unsigned long long)res.orphans_removed, (unsigned long long)res.tmp_removed,
		       (unsigned long long)res.refs_fixed, (unsigned long long)res.dropped,
		       (unsigned long long)res.envs_marked, (unsigned long long)res.envs_cleared,
		       (unsigned long long)res.envs_broken, (unsigned long long)res.corrupt_left,
		       (unsigned long long)res.records_forgotten);
	else
		printf("%llu objects checked, %llu missing or corrupt, %llu unreferenced, %llu "
		       "damaged nodes; repaired: %llu orphans and %llu temporary directories "
		       "removed, %llu reference counts fixed, %llu unused rows deleted, %llu "
		       "environments marked broken, %llu no longer broken, %llu damaged package "
		       "records forgotten; left: %llu missing or corrupt objects, %llu broken "
		       "environments\n",
		       (unsigned long long)f->objects_checked, (unsigned long long)f->corrupt,
		       (unsigned long long)f->unreferenced, (unsigned long long)f->damaged_nodes,
		       (unsigned long long)res.orphans_removed, (unsigned long long)res.tmp_removed,
		       (unsigned long long)res.refs_fixed, (unsigned long long)res.dropped,
		       (unsigned long long)res.envs_marked, (unsigned long long)res.envs_cleared,
		       (unsigned long long)res.records_forgotten,
		       (unsigned long long)res.corrupt_left, (unsigned long long)res.envs_broken);
	/* Damaged nodes are never mended: their environments stay broken. */
	if (res.corrupt_left || f->damaged_nodes)
		return EXIT_UNREPAIRED;
	return fixed ? EXIT_REPAIRED : 0;
}

/* verify by a user: every file they may read, through the mount. */
static int verify_via_mount(const struct cli *c, struct viamount *vm)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct viamount_verify res;
	int r;

	if (c->json)
		printf("{\"problems\": [");
	r = viamount_verify(vm, verify_report, &vo, &res, &err);
	if (r)
		return die(c, &err, r);
	if (c->json)
		printf("%s], \"objects_checked\": null, \"corrupt\": %llu, \"unreferenced\": null,"
		       " \"files_checked\": %llu, \"files_skipped\": %llu}\n",
		       vo.first ? "" : "\n", (unsigned long long)res.failed,
		       (unsigned long long)res.files_checked,
		       (unsigned long long)res.files_skipped);
	else
		printf("%llu files checked through %s, %llu unreadable (damaged), %llu skipped "
		       "(this "
		       "user may not read them)\n",
		       (unsigned long long)res.files_checked, viamount_path(vm),
		       (unsigned long long)res.failed, (unsigned long long)res.files_skipped);
	return res.failed ? EXIT_FAILED : 0;
}

static int cmd_verify(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct verify_result res;
	struct viamount *vm;
	struct store *st;
	int r;

	if ((r = need_args(c, 0)))
		return r;
	if (c->repair)
		return cmd_repair(c);
	if ((r = open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = verify_via_mount(c, vm);
		viamount_close(vm);
		return r;
	}
	if (c->json)
		printf("{\"problems\": [");
	r = store_verify(st, verify_report, &vo, &res, &err);
	store_close(st);
	if (r)
		return die(c, &err, r);
	if (c->json)
		printf("%s], \"objects_checked\": %llu, \"corrupt\": %llu, \"unreferenced\": "
		       "%llu, \"damaged_nodes\": %llu, \"damaged_records\": %llu}\n",
		       vo.first ? "" : "\n", (unsigned long long)res.objects_checked,
		       (unsigned long long)res.corrupt, (unsigned long long)res.unreferenced,
		       (unsigned long long)res.damaged_nodes,
		       (unsigned long long)res.damaged_records);
	else
		printf("%llu objects checked, %llu missing or corrupt, %llu unreferenced, %llu "
		       "damaged nodes, %llu damaged package records\n",
		       (unsigned long long)res.objects_checked, (unsigned long long)res.corrupt,
		       (unsigned long long)res.unreferenced, (unsigned long long)res.damaged_nodes,
		       (unsigned long long)res.damaged_records);
	return res.corrupt || res.damaged_nodes || res.damaged_records ? EXIT_FAILED : 0;
}

/*
 * The directory ENV is served at (*ret_dir) and the name activation gives it (*ret_name;
 * a tag as given, else the hash): an environment's directory as such; a lock file's hash,
 * or a tag or hash the store (root) or the mount (a user) knows, at MOUNT/<hash>. ret_hash:
 * the environment's hash, "" for a directory. With ret_set, also its package set (the
 * caller's), from where ENV was found.
 */
static int served_env(const struct cli *c, const char *arg, char **ret_dir, char **ret_name,
                      char ret_hash[33], struct pkgset **ret_set)
{
	const char *mnt = c->mount ? c->mount : c->config.mountpoint;
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct viamount *vm;
	struct store_env env;
	struct store *st;
	struct stat sb;
	bool lock = false;
	char *path;
	int r;

	ret_hash[0] = '\0';
	if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		r = run_env_at(arg, ret_dir, ret_name, &err);
		if (!r && ret_set && (r = pkgset_from_prefix(*ret_dir, ret_set, &err))) {
			free(*ret_dir);
			free(*ret_name);
		}
		return r ? die(c, &err, r) : 0;
	}
	if (stat(arg, &sb) == 0) {
		if ((r = pkgset_from_lock(arg, c->platform, c->environment, &set, &err)))
			return die(c, &err, r);
		say_platform(c, arg, set);
		pkgset_hash(set, env.hash);
		lock = true;
	} else {
		if ((r = open_view(c, &st, &vm)))
			return r;
		r = vm ? viamount_find(vm, arg, &env, &err) : store_env_find(st, arg, &env, &err);
		if (!r && ret_set)
			r = vm ? viamount_packages(vm, &env, &set, &err)
			       : store_env_packages(st, &env, &set, &err);
		close_view(st, vm);
		if (r)
			return die(c, &err, r);
	}
	if (asprintf(&path, "%s/%s", mnt, env.hash) < 0)
		return die(c, NULL, -ENOMEM);
	r = run_env_at(path, ret_dir, ret_name, &err);
	if (r) {
		char msg[sizeof(err.msg) + 2 * PATH_MAX + 64];

		snprintf(msg, sizeof(msg), "%s: %s is not served (is condafsd running at %s?): %s",
		         arg, env.hash, mnt, err.msg);
		free(path);
		pkgset_free(set);
		say(c->cmd, msg);
		return EXIT_FAILED;
	}
	free(path);
	free(*ret_name);
	memcpy(ret_hash, env.hash, 33);
	/* A tag names the environment as given; a hash, a prefix of one or a lock by the hash. */
	*ret_name = strdup(!lock && strncmp(env.hash, arg, strlen(arg)) != 0 ? arg : env.hash);
	if (!*ret_name) {
		free(*ret_dir);
		pkgset_free(set);
		return die(c, NULL, -ENOMEM);
	}
	if (ret_set)
		*ret_set = set;
	else
		pkgset_free(set);
	return 0;
}

static int cmd_run(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct cuda_driver drv;
	char *dir, *name, hash[33], line[512];
	int r;

	if (c->argc < 2) {
		fprintf(stderr, "condafs: run: expected ENV and a command\n%s", usage);
		return EXIT_USAGE;
	}
	if ((r = cuda_host_driver(c->driver, &drv, &err)))
		return die(c, &err, r);
	/* The packages are read only where there is a driver to be too old. */
	if ((r = served_env(c, c->argv[0], &dir, &name, hash, drv.present ? &set : NULL)))
		return r;
	if (set && cuda_warn_line(set, c->driver, line, sizeof(line)) == 1)
		say(c->cmd, line);
	pkgset_free(set);
	r = run_exec(dir, name, c->argv + 1, &err);
	say(c->cmd, err.msg);
	free(dir);
	free(name);
	return r;
}

static int cmd_shell_hook(const struct cli *c)
{
	struct cfs_err err = {{0}};
	enum hook_shell shell = HOOK_BASH;
	char *dir, *name, hash[33];
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if (c->shell && hook_shell_parse(c->shell, &shell)) {
		fprintf(stderr, "condafs: shell-hook: --shell: '%s' is not bash, zsh or fish\n%s",
		        c->shell, usage);
		return EXIT_USAGE;
	}
	if ((r = served_env(c, c->argv[0], &dir, &name, hash, NULL)))
		return r;
	r = shell_hook_print(stdout, dir, name, shell, c->json, &err);
	free(dir);
	free(name);
	return r ? die(c, &err, r) : 0;
}

/*
 * How much of argv getopt may see: for run, not CMD's arguments (`condafs run ENV ls -l`).
 * Up to CMD, or up to and with the "--" before it; all of argv for other commands.
 */
static int options_end(int argc, char **argv, const struct option *opts)
{
	int positional = 0;
	bool run = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--"))
			return run ? i + 1 : argc;
		if (a[0] == '-' && a[1]) {
			/* "--store DIR": the value is not a positional argument. */
			for (const struct option *o = opts;
			     a[1] == '-' && !strchr(a, '=') && o->name; o++)
				if (o->has_arg == required_argument &&
				    strlen(a + 2) <= strlen(o->name) &&
				    memcmp(o->name, a + 2, strlen(a + 2)) == 0) {
					i++;
					break;
				}
			continue;
		}
		if (positional == 0)
			run = !strcmp(a, "run");
		else if (run && positional == 2)
			return i;
		positional++;
	}
	return argc;
}

/* The global options a later `condafs run` needs to find the same store and mount:
 * those that differ from what it would take by default (the config file), made absolute
 * in abs (a kernel runs from wherever Jupyter starts it). */
static size_t run_opts(const struct cli *c, const char *opts[6], char abs[3][PATH_MAX])
{
	const char *given[3] = {NULL, NULL, NULL};
	static const char *const flag[3] = {"--config", "--store", "--mount"};
	size_t n = 0;

	if (strcmp(c->config_path, CONFIG_PATH) != 0)
		given[0] = c->config_path;
	if (strcmp(c->store_dir, c->config.store) != 0)
		given[1] = c->store_dir;
	if (c->mount && strcmp(c->mount, c->config.mountpoint) != 0)
		given[2] = c->mount;
	for (size_t i = 0; i < 3; i++) {
		if (!given[i])
			continue;
		opts[n++] = flag[i];
		opts[n++] = realpath(given[i], abs[i]) ? abs[i] : given[i];
	}
	return n;
}

static void say_written(const char *what, const char *dir, const char *file,
                        enum destfile_result res)
{
	static const char *const how[] = {
	        [DESTFILE_NEW] = "written",
	        [DESTFILE_SAME] = "unchanged (it held this already)",
	        [DESTFILE_REPLACED] = "replaced (--force)",
	};

	printf("%s ", what);
	out_text(stdout, dir);
	printf("/");
	out_text(stdout, file);
	printf(": %s\n", how[res]);
}

/* What names the environment to people: a tag as given, the hash's first 12 digits, or
 * the directory's conda name. */
static void env_label(const char *name, const char *hash, char label[160])
{
	if (hash[0] && !strcmp(name, hash))
		snprintf(label, 160, "%.12s", hash);
	else
		snprintf(label, 160, "%s", name);
}

static int cmd_kernel(const struct cli *c)
{
	struct cfs_err err = {{0}};
	enum kernelspec_where where = KERNELSPEC_USER;
	enum destfile_result res;
	char label[160], name[256], exe[PATH_MAX], shown[256], hash[33], abs[3][PATH_MAX];
	char *env_dir = NULL, *env_name = NULL, *dir = NULL, *json = NULL;
	const char *opts[6];
	size_t n, len;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if (c->user + c->system + !!c->prefix > 1) {
		say(c->cmd, "--user, --system and --prefix DIR: choose one");
		return EXIT_USAGE;
	}
	if (c->system)
		where = KERNELSPEC_SYSTEM;
	else if (c->prefix)
		where = KERNELSPEC_PREFIX;
	if (c->name && !kernelspec_name_valid(c->name)) {
		snprintf(err.msg, sizeof(err.msg),
		         "--name %s: not a kernel name (letters, digits, '.', '_' and '-', as "
		         "jupyter_client accepts)",
		         c->name);
		die(c, &err, -EINVAL);
		return EXIT_USAGE;
	}
	if ((r = served_env(c, c->argv[0], &env_dir, &env_name, hash, NULL)))
		return r;
	env_label(env_name, hash, label);
	snprintf(name, sizeof(name), "%s%s", c->name ? "" : "condafs-", c->name ? c->name : label);
	/* jupyter_client lowercases kernel names; a tag may hold '+', a directory '/'. */
	for (char *p = name; *p; p++)
		*p = *p == '.' || kernelspec_name_valid((char[]){*p, 0})
		             ? (char)tolower((unsigned char)*p)
		             : '-';
	if ((r = kernelspec_find_ipykernel(env_dir, c->argv[0], &err)))
		goto out;
	if (!realpath("/proc/self/exe", exe)) {
		r = -errno;
		snprintf(err.msg, sizeof(err.msg), "/proc/self/exe: %s", strerror(errno));
		goto out;
	}
	n = run_opts(c, opts, abs);
	if (hash[0] && strcmp(env_name, hash) != 0)
		snprintf(shown, sizeof(shown), "%s %.12s", env_name, hash);
	else
		snprintf(shown, sizeof(shown), "%s", label);
	/* The hash pins the environment the notebook was made with, also when a tag moves; a
	 * directory (a container's bind mount) is run as the directory. */
	r = kernelspec_json(exe, (char *const *)opts, n, hash[0] ? hash : env_dir, shown, &json,
	                    &len);
	if (!r)
		r = kernelspec_dir(where, c->prefix, name, &dir, &err);
	if (!r)
		r = destfile_write(dir, "kernel.json", json, len, c->force, &res, &err);
	if (!r)
		say_written("kernelspec", dir, "kernel.json", res);
out:
	free(env_dir);
	free(env_name);
	free(dir);
	free(json);
	return r ? die(c, &err, r) : 0;
}

/* What a modulefile's activation starts from: no user's own variables go into a file
 * others load. Its PATH is where what the activation prepends ends. */
#define MODULE_BASE_PATH "/usr/local/bin:/usr/bin:/bin"

static int cmd_module(const struct cli *c)
{
	static char *const base_env[] = {"PATH=" MODULE_BASE_PATH, NULL};
	struct cfs_err err = {{0}};
	struct activation *a = NULL;
	enum destfile_result res;
	char label[160], name[256], title[512], hash[33];
	char *env_dir = NULL, *env_name = NULL, *text = NULL, *dir = NULL, *fname = NULL, *file;
	size_t len;
	int r;

	if ((r = need_args(c, 1)))
		return r;
	if (c->name && !modulefile_name_valid(c->name)) {
		snprintf(err.msg, sizeof(err.msg),
		         "--name %s: not a module name (letters, digits, '.', '_', '+' and '-', "
		         "parts joined by '/', none starting with '.')",
		         c->name);
		die(c, &err, -EINVAL);
		return EXIT_USAGE;
	}
	if ((r = served_env(c, c->argv[0], &env_dir, &env_name, hash, NULL)))
		return r;
	env_label(env_name, hash, label);
	snprintf(name, sizeof(name), "%s%s", c->name ? "" : "condafs/", c->name ? c->name : label);
	if (!modulefile_name_valid(name)) {
		snprintf(err.msg, sizeof(err.msg), "%s: not a module name (--name NAME gives one)",
		         name);
		r = -EINVAL;
		goto out;
	}
	if (hash[0] && strcmp(env_name, hash) != 0)
		snprintf(title, sizeof(title), "condafs environment %s (%s)", env_name, hash);
	else
		snprintf(title, sizeof(title), "condafs environment %s", env_name);
	/* Activated as `condafs run` activates it: CONDA_DEFAULT_ENV the tag or the hash. */
	r = activation_compute(env_dir, env_name, base_env, &a, &err);
	if (!r)
		r = modulefile_text(a, MODULE_BASE_PATH, c->tcl, title, &text, &len, &err);
	if (r)
		goto out;
	if (!c->prefix) {
		if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
			r = -EIO;
			snprintf(err.msg, sizeof(err.msg), "standard output: %s", strerror(errno));
		}
		goto out;
	}
	/* NAME's last part is the file (NAME.lua for Lmod), the rest directories. */
	file = strrchr(name, '/');
	if (file)
		*file++ = '\0';
	if (asprintf(&dir, "%s%s%s", c->prefix, file ? "/" : "", file ? name : "") < 0)
		dir = NULL;
	if (asprintf(&fname, "%s%s", file ? file : name, c->tcl ? "" : ".lua") < 0)
		fname = NULL;
	if (!dir || !fname) {
		r = -ENOMEM;
		goto out;
	}
	r = destfile_write(dir, fname, text, len, c->force, &res, &err);
	if (!r)
		say_written("modulefile", dir, fname, res);
out:
	activation_free(a);
	free(env_dir);
	free(env_name);
	free(text);
	free(dir);
	free(fname);
	return r ? die(c, &err, r) : 0;
}

static const struct command {
	const char *name;
	int (*run)(const struct cli *c);
} commands[] = {
        {"hash", cmd_hash},     {"ingest", cmd_ingest}, {"install", cmd_install},
        {"export", cmd_export}, {"ls", cmd_ls},         {"show", cmd_show},
        {"cat", cmd_cat},       {"stats", cmd_stats},   {"verify", cmd_verify},
        {"tag", cmd_tag},       {"untag", cmd_untag},   {"rm", cmd_rm},
        {"gc", cmd_gc},         {"run", cmd_run},       {"shell-hook", cmd_shell_hook},
        {"check", cmd_check},   {"kernel", cmd_kernel}, {"module", cmd_module},
};

int main(int argc, char **argv)
{
	enum {
		O_STORE = 256,
		O_JSON,
		O_LOCK,
		O_PLATFORM,
		O_ENV,
		O_PREFIX,
		O_REPLACE,
		O_SKIP,
		O_FORCE,
		O_DRY,
		O_UNUSED,
		O_CONFIG,
		O_REPAIR,
		O_MOUNT,
		O_PURGE,
		O_SHELL,
		O_DRIVER,
		O_NAME,
		O_USER,
		O_SYSTEM,
		O_TCL,
		O_FROZEN,
		O_MIRROR,
		O_PKGS_DIR,
		O_TAG,
	};
	static const struct option opts[] = {
	        {"store", required_argument, NULL, O_STORE},
	        {"json", no_argument, NULL, O_JSON},
	        {"lock", required_argument, NULL, O_LOCK},
	        {"platform", required_argument, NULL, O_PLATFORM},
	        {"environment", required_argument, NULL, O_ENV},
	        {"prefix", required_argument, NULL, O_PREFIX},
	        {"replace", no_argument, NULL, O_REPLACE},
	        {"skip-special", no_argument, NULL, O_SKIP},
	        {"force", no_argument, NULL, O_FORCE},
	        {"dry-run", no_argument, NULL, O_DRY},
	        {"unused-for", required_argument, NULL, O_UNUSED},
	        {"config", required_argument, NULL, O_CONFIG},
	        {"repair", no_argument, NULL, O_REPAIR},
	        {"mount", required_argument, NULL, O_MOUNT},
	        {"purge", no_argument, NULL, O_PURGE},
	        {"shell", required_argument, NULL, O_SHELL},
	        {"driver", required_argument, NULL, O_DRIVER},
	        {"name", required_argument, NULL, O_NAME},
	        {"user", no_argument, NULL, O_USER},
	        {"system", no_argument, NULL, O_SYSTEM},
	        {"tcl", no_argument, NULL, O_TCL},
	        {"frozen", no_argument, NULL, O_FROZEN},
	        {"channel-mirror", required_argument, NULL, O_MIRROR},
	        {"pkgs-dir", required_argument, NULL, O_PKGS_DIR},
	        {"tag", required_argument, NULL, O_TAG},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *config_path = CONFIG_PATH;
	struct cfs_err err = {{0}};
	struct cli c = {0};
	int o, end = options_end(argc, argv, opts);

	while ((o = getopt_long(end, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_STORE:
			c.store_dir = optarg;
			break;
		case O_JSON:
			c.json = true;
			break;
		case O_LOCK:
			c.lock = optarg;
			break;
		case O_PLATFORM:
			c.platform = optarg;
			break;
		case O_ENV:
			c.environment = optarg;
			break;
		case O_PREFIX:
			c.prefix = optarg;
			break;
		case O_REPLACE:
			c.replace = true;
			break;
		case O_SKIP:
			c.skip_special = true;
			break;
		case O_FORCE:
			c.force = true;
			break;
		case O_DRY:
			c.dry_run = true;
			break;
		case O_UNUSED:
			c.unused_for = optarg;
			break;
		case O_CONFIG:
			config_path = optarg;
			break;
		case O_REPAIR:
			c.repair = true;
			break;
		case O_MOUNT:
			c.mount = optarg;
			break;
		case O_PURGE:
			c.purge = true;
			break;
		case O_SHELL:
			c.shell = optarg;
			break;
		case O_DRIVER:
			c.driver = optarg;
			break;
		case O_NAME:
			c.name = optarg;
			break;
		case O_USER:
			c.user = true;
			break;
		case O_SYSTEM:
			c.system = true;
			break;
		case O_TCL:
			c.tcl = true;
			break;
		case O_FROZEN:
			c.frozen = true;
			break;
		case O_MIRROR:
		case O_PKGS_DIR: {
			const char **v = o == O_MIRROR ? c.mirrors : c.pkgs_dirs;
			size_t *n = o == O_MIRROR ? &c.nmirrors : &c.npkgs_dirs;

			if (*n == sizeof(c.mirrors) / sizeof(c.mirrors[0])) {
				fprintf(stderr, "condafs: at most %zu --%s options\n", *n,
				        o == O_MIRROR ? "channel-mirror" : "pkgs-dir");
				return EXIT_USAGE;
			}
			v[(*n)++] = optarg;
			break;
		}
		case O_TAG:
			c.tag = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	c.cmd = argv[optind];
	c.config_path = config_path;
	if (config_load(config_path, &c.config, &err)) {
		fputs("condafs: ", stderr);
		out_text(stderr, err.msg);
		fputc('\n', stderr);
		return c.repair && !strcmp(c.cmd, "verify") ? EXIT_OPERATIONAL : EXIT_FAILED;
	}
	if (!c.store_dir)
		c.store_dir = getenv("CONDAFS_STORE");
	if (!c.store_dir || !*c.store_dir)
		c.store_dir = c.config.store;
	c.argc = argc - optind - 1;
	c.argv = argv + optind + 1;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, c.cmd))
			return commands[i].run(&c);
	say(c.cmd, "unknown command");
	fputs(usage, stderr);
	return EXIT_USAGE;
}
