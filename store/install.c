// SPDX-License-Identifier: MIT
/*
 * condafs install: a lock's environment built from its packages' archives, with no conda
 * and no prefix on disk. The packages are found (package caches on this machine, else the
 * lock's URLs through mirrors: fetch.c, pkgcache.c), checked against the lock's digests
 * and unpacked into the install's temporary directory (pkgarchive.c: each package one
 * data file and an index of its paths; only python, which the .pyc compiler runs, is
 * written out as files), linked as conda links them into a plan (link.c), and the plan's
 * tree goes through the ingest's own store and commit phases (ingest_plan.c, ingest.c),
 * so dedup, verify-before-share and crash safety are the ingest's.
 *
 * A package an earlier install stored is taken from the store: its record (pkgrec.h,
 * catalog.c C9) gives linking its info/ files and paths, and the store phase its contents
 * and compiled pycs, so it is neither fetched, checked nor unpacked again.
 *
 * Invariants:
 * N1: no byte of an archive is read before its digest matched the lock's, and the bytes
 *     unpacked are the bytes checked: an archive anyone but us could change is copied
 *     into the install's own directory (0700, root's) and checked there, and its data
 *     file, and what is written out of it, are there too, written only by us.
 * N2: an extracted package from a cache on this machine is trusted as conda trusts its own
 *     cache (its repodata_record.json names the lock's digest) only when the directory and
 *     every file the environment takes from it are ours and writable by no one else: a
 *     user's cache may say anything of itself.
 * N3: everything the install writes is in its temporary directory (object.h
 *     object_tmp_open), removed when it ends and by the next ingest, install or gc when it
 *     dies (also one that finds its environment stored); the catalog changes only in the
 *     ingest's one transaction (I2).
 * N4: a package is recorded (C9) only with every path of it in the environment's tree, and
 *     from what this install checked and stored: its archive's digests, its info/ files
 *     as read, its contents' keys as the store phase found or made them.
 */
#include "install_int.h"

#include "err.h"
#include "ingest.h"
#include "link.h"
#include "object.h"
#include "pkgrec.h"
#include "pkgset.h"
#include "pycompile.h"
#include "store_impl.h"
#include "textfile.h"
#include "useropen.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The largest noarch source handed to the .pyc compiler. */
#define SOURCE_MAX (64u << 20)

/* Where generated files (entry points' shebangs) hold the prefix: the relocation takes
 * it out as it takes a package's placeholder out. */
static const char prefix_token[] = "/opt/condafs-install/_placeholder_for_the_prefix_";

void install_warn(struct install *ins, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!ins->opts->ingest.warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&ins->warn_mu);
	ins->opts->ingest.warn(ins->opts->ingest.ctx, msg);
	pthread_mutex_unlock(&ins->warn_mu);
}

bool install_is_ours(const struct stat *sb)
{
	return sb->st_uid == geteuid() && !(sb->st_mode & 022);
}

/* Every package has an archive URL and a digest to check it by; none is a PyPI package
 * (their wheels are not installed: the whole lock is refused, never half of it). */
static int check_set(struct install *ins, struct cfs_err *err)
{
	char names[512] = "";
	size_t len = 0, npypi = 0, n = pkgset_count(ins->set);

	for (size_t i = 0; i < n; i++) {
		const struct pkg *p = pkgset_at(ins->set, i);

		if (p->kind != PKG_PYPI)
			continue;
		npypi++;
		if (len < sizeof(names))
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
			                        npypi > 1 ? ", " : "", p->name);
	}
	if (npypi)
		return err_set(
		        err, -ENOTSUP,
		        "%s: %zu PyPI package%s (%s): condafs install installs conda "
		        "packages only; make the environment with conda or pixi and ingest it",
		        ins->lock, npypi, npypi == 1 ? "" : "s", names);
	for (size_t i = 0; i < n; i++) {
		const struct pkg *p = pkgset_at(ins->set, i);

		if (!p->url)
			return err_set(err, -EINVAL,
			               "%s: %s: no archive URL (a lock names archives; an "
			               "environment.yml names only packages)",
			               ins->lock, p->name);
		if (!p->sha256 && !p->md5)
			return err_set(err, -EINVAL,
			               "%s: %s: no sha256 or md5 to check its archive against",
			               ins->lock, p->name);
	}
	return 0;
}

static int name_sources(struct install *ins, struct cfs_err *err)
{
	size_t n = pkgset_count(ins->set);

	ins->src = calloc(n ? n : 1, sizeof(*ins->src));
	ins->records = calloc(n ? n : 1, sizeof(*ins->records));
	ins->made = calloc(n ? n : 1, sizeof(*ins->made));
	if (!ins->src || !ins->records || !ins->made)
		return err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct source *s = &ins->src[ins->n++];
		const char *slash;
		size_t len;

		s->p = pkgset_at(ins->set, i);
		slash = strrchr(s->p->url, '/');
		s->fn = strdup(slash ? slash + 1 : s->p->url);
		if (!s->fn)
			return err_set(err, -ENOMEM, "out of memory");
		len = strlen(s->fn);
		if (len > 6 && strcmp(s->fn + len - 6, ".conda") == 0)
			len -= 6;
		else if (len > 8 && strcmp(s->fn + len - 8, ".tar.bz2") == 0)
			len -= 8;
		else
			return err_set(err, -EINVAL,
			               "%s: %s: '%s' is neither a .conda nor a .tar.bz2", ins->lock,
			               s->p->name, s->p->url);
		s->dist = strndup(s->fn, len);
		if (!s->dist)
			return err_set(err, -ENOMEM, "out of memory");
		if (strchr(s->dist, '/') || s->dist[0] == '.')
			return err_set(err, -EINVAL, "%s: %s: '%s' is no archive name", ins->lock,
			               s->p->name, s->fn);
	}
	return 0;
}

void install_data_name(const struct source *s, char buf[PATH_MAX])
{
	snprintf(buf, PATH_MAX, "%s.data", s->dist);
}

/* mkdir -p of path beneath dfd: the deepest first, since it or its parent exists already
 * for most paths of a tree written in order (one call, not one per component). */
static int make_dirs(int dfd, char *path, mode_t mode)
{
	char *slash;
	int r;

	if (mkdirat(dfd, path, mode) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT || !(slash = strrchr(path, '/')))
		return neg_errno();
	*slash = '\0';
	r = make_dirs(dfd, path, mode);
	*slash = '/';
	if (r)
		return r;
	return mkdirat(dfd, path, mode) == 0 || errno == EEXIST ? 0 : neg_errno();
}

int install_make_parents(int dfd, const char *rel, mode_t mode)
{
	char path[PATH_MAX];
	size_t len = strlen(rel);
	char *slash;

	if (len >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, rel, len + 1);
	slash = strrchr(path, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	return make_dirs(dfd, path, mode);
}

static void plan_warn(void *arg, const char *line)
{
	install_warn(arg, "%s", line);
}

/* A generated file (entry point, conda-meta record, history, compiled pyc) into gen.data
 * (ingest_gen), at the plan entry's range: one file for all of them, where a file each
 * would cost an inode, a directory entry and their removal apiece. The compiler's threads
 * put at once (pycompile.h): each takes its own range. */
static int write_gen(void *arg, const struct link_entry *e, const uint8_t *data, size_t len,
                     struct cfs_err *err)
{
	struct install *ins = arg;
	size_t j = (size_t)(e - link_plan_entry(ins->plan, 0));
	uint64_t at = __atomic_fetch_add(&ins->gen_end, len, __ATOMIC_RELAXED);

	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(ins->gen_data_fd, data + done, len - done, (off_t)(at + done));

		if (w < 0)
			return err_set(err, neg_errno(), "%s/gen.data: %s", ins->work,
			               strerror(errno));
		done += (size_t)w;
	}
	ins->gen_off[j] = at;
	ins->gen_len[j] = len;
	return 0;
}

/* The plan's generated files into gen.data but the pycs, which are compiled, and the
 * records stored already. */
static int write_generated(struct install *ins, const struct link_plan *plan, struct cfs_err *err)
{
	for (size_t i = 0; i < link_plan_count(plan); i++) {
		const struct link_entry *e = link_plan_entry(plan, i);
		int r;

		if (e->type != LINK_FILE || e->pkg != LINK_GENERATED || e->pyc_of || e->key)
			continue;
		r = write_gen(ins, e, e->data, e->len, err);
		if (r)
			return r;
	}
	return 0;
}

/* The bytes of a noarch package's source, for the compiler: from its data file, its
 * cache's directory (checked, N2) or the store; 1 for a package from the store whose
 * record brings the pycs of this python. */
static int read_source(void *arg, const struct link_entry *src, uint8_t **ret, size_t *ret_len,
                       struct cfs_err *err)
{
	struct install *ins = arg;
	const struct ingest_pkg *k = &ins->pkgs[src->pkg];
	char *text = NULL;
	int r;

	if (install_rec_compiled(&ins->src[src->pkg], ins->plan))
		return 1;
	if (k->rec) {
		r = install_read_stored_source(ins, src->pkg, src->src, SOURCE_MAX, &text, ret_len,
		                               err);
		if (r)
			return r;
	} else if (k->files) {
		r = pkgarchive_files_read(k->files, src->src, SOURCE_MAX, &text, ret_len);
		if (r)
			return err_set(err, r, "%s/pkgs/%s.data: %s: %s", ins->work,
			               ins->src[src->pkg].dist, src->src, strerror(-r));
	} else {
		r = textfile_read(k->dir_fd, src->src, src->src, SOURCE_MAX, &text, ret_len, err);
		if (r)
			return r;
	}
	*ret = (uint8_t *)text;
	return 0;
}

/* The noarch pycs into gen.data, compiled by the environment's python (pycompile.c), its
 * sources handed to it. Python, when we wrote it out, is reached through the compiler's
 * working directory, the install's directory, which it may search but not list
 * (pycompile.c Y3): tmp/ keeps everyone else out. */
static int compile_pycs(struct install *ins, const struct link_plan *plan, const int *pkg_fds,
                        struct cfs_err *err)
{
	const struct link_entry *py = link_plan_python_file(plan);
	const struct source *s = py && py->pkg != LINK_GENERATED ? &ins->src[py->pkg] : NULL;
	char *python_dir = NULL;
	int r = 0;

	if (s && s->dir && s->ours) {
		if (asprintf(&python_dir, "/proc/self/cwd%s", s->dir + strlen(ins->work)) < 0)
			python_dir = NULL;
		if (fchmod(pkg_fds[py->pkg], 0711) < 0 || fchmod(ins->work_fd, 0711) < 0 ||
		    fchmod(ins->pkgs_fd, 0711) < 0)
			r = err_set(err, neg_errno(), "%s: %s", ins->work, strerror(errno));
	} else if (s && s->dir) {
		python_dir = strdup(s->dir);
	}
	if (!r && s && s->dir && !python_dir)
		r = err_set(err, -ENOMEM, "out of memory");
	if (!r)
		r = pycompile_plan(plan, python_dir, ins->work_fd, read_source, write_gen,
		                   plan_warn, ins, err);
	free(python_dir);
	return r;
}

/* Python, for the .pyc compiler to run, written out of its data file or the store into
 * pkgs/<dist>/ when the unpacking has not already. */
static int write_out_python(struct install *ins, const struct link_plan *plan, struct cfs_err *err)
{
	const struct link_entry *py = link_plan_python_file(plan);
	struct source *s;

	if (!py || py->pkg == LINK_GENERATED || ins->src[py->pkg].dir)
		return 0;
	s = &ins->src[py->pkg];
	return s->files ? install_write_out_unpacked(ins, s, err)
	       : s->rec ? install_write_out_stored(ins, plan, py->pkg, err)
	                : 0;
}

/* N2 for what the plan takes from a cache's extracted package. */
static int check_trusted(struct install *ins, const struct link_plan *plan, const int *pkg_fds,
                         struct cfs_err *err)
{
	for (size_t i = 0; i < link_plan_count(plan); i++) {
		const struct link_entry *e = link_plan_entry(plan, i);
		struct stat sb;

		if (e->type != LINK_FILE || e->pkg == LINK_GENERATED || ins->src[e->pkg].ours ||
		    ins->src[e->pkg].rec)
			continue;
		if (fstatat(pkg_fds[e->pkg], e->src, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			return err_set(err, neg_errno(), "%s/%s: %s", ins->src[e->pkg].dir, e->src,
			               strerror(errno));
		if (!install_is_ours(&sb))
			return err_set(
			        err, -EPERM,
			        "%s/%s: in a package cache but not owned by uid %u alone: "
			        "not trusted (remove the extracted package, keep its archive)",
			        ins->src[e->pkg].dir, e->src, (unsigned)geteuid());
	}
	return 0;
}

/* gen.data and the tables of what it holds, for the plan's generated files (none written yet). */
static int open_gen_data(struct install *ins, const struct link_plan *plan, struct cfs_err *err)
{
	size_t n = link_plan_count(plan);

	ins->gen_off = calloc(n ? n : 1, sizeof(*ins->gen_off));
	ins->gen_len = malloc((n ? n : 1) * sizeof(*ins->gen_len));
	if (!ins->gen_off || !ins->gen_len)
		return err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		ins->gen_len[i] = INGEST_GEN_NONE;
	ins->gen_end = 0;
	ins->gen_data_fd = openat(ins->work_fd, "gen.data",
	                          O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (ins->gen_data_fd < 0)
		return err_set(err, neg_errno(), "%s/gen.data: %s", ins->work, strerror(errno));
	ins->gen = (struct ingest_gen){ins->gen_data_fd, ins->gen_off, ins->gen_len};
	return 0;
}

static void close_gen_data(struct install *ins)
{
	if (ins->gen_data_fd >= 0) {
		close(ins->gen_data_fd);
		unlinkat(ins->work_fd, "gen.data", 0);
	}
	ins->gen_data_fd = -1;
	free(ins->gen_off);
	free(ins->gen_len);
	ins->gen_off = ins->gen_len = NULL;
}

/* ingest.h's after_store: the records made (N4), then the data files dropped, before the
 * store phase makes its images durable: nothing reads them after, and its syncfs would
 * otherwise write every byte of them out (the environment's size again) for nothing. A
 * file that cannot be removed now is removed with the install's directory (N3). */
static int after_store(struct ingest *in, void *arg, struct cfs_err *err)
{
	struct install *ins = arg;
	char name[PATH_MAX];
	int r = install_record_packages(in, arg, err);

	for (size_t i = 0; !r && i < ins->n; i++) {
		struct source *s = &ins->src[i];

		if (!s->files)
			continue;
		pkgarchive_files_free(s->files);
		s->files = NULL;
		ins->pkgs[i].files = NULL;
		install_data_name(s, name);
		unlinkat(ins->pkgs_fd, name, 0);
	}
	if (ins->gen_data_fd >= 0)
		unlinkat(ins->work_fd, "gen.data", 0);
	return r;
}

/* The environment hash names is in the catalog. */
static bool stored(struct store *st, const char *hash)
{
	struct cfs_err ignored;
	struct store_env env;

	return catalog_env_by_hash(st->cat, hash, &env, &ignored) == 0;
}

/* Link, then the ingest's phases over the plan. */
static int link_and_store(struct install *ins, const char *hash, enum ingest_result *ret_result,
                          struct cfs_err *err)
{
	/* The packages' count, fixed for this call: the cleanup closes what the start set. */
	const size_t npkg = ins->n;
	struct link_pkg *lp = calloc(npkg ? npkg : 1, sizeof(*lp));
	int *pkg_fds = malloc((npkg ? npkg : 1) * sizeof(*pkg_fds));
	struct ingest_pkg *pkgs = calloc(ins->n ? ins->n : 1, sizeof(*pkgs));
	struct link_plan *plan = NULL;
	struct timespec now;
	struct ingest in;
	char source[64];
	int r = 0;

	ingest_init(&in, ins->st, &ins->opts->ingest);
	for (size_t i = 0; pkg_fds && i < npkg; i++)
		pkg_fds[i] = -1;
	if (!lp || !pkg_fds || !pkgs) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ins->n; i++) {
		const struct source *s = &ins->src[i];

		lp[i] = (struct link_pkg){.dir = s->dir,
		                          .url = s->p->url,
		                          .fn = s->fn,
		                          .channel = s->p->channel,
		                          .md5 = s->dg.size ? s->dg.md5 : s->p->md5,
		                          .sha256 = s->dg.size ? s->dg.sha256 : s->p->sha256,
		                          .size = s->dg.size,
		                          .platform = pkgset_platform(ins->set),
		                          .rec = s->rec,
		                          .files = s->files,
		                          .name = s->p->name,
		                          .version = s->p->version,
		                          .build = s->p->build};
		if (s->files)
			lp[i].dir = s->fn;
		if (s->rec) {
			lp[i].dir = s->fn;
			lp[i].md5 = *pkgrec_md5(s->rec) ? pkgrec_md5(s->rec) : NULL;
			lp[i].sha256 = *pkgrec_sha256(s->rec) ? pkgrec_sha256(s->rec) : NULL;
			lp[i].size = pkgrec_size(s->rec);
		}
	}
	clock_gettime(CLOCK_REALTIME, &now);
	r = link_plan_make(lp, ins->n, prefix_token, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec,
	                   plan_warn, ins, &plan, err);
	if (r)
		goto out;
	if (install_compiles(ins, plan)) {
		r = write_out_python(ins, plan, err);
		if (r)
			goto out;
	}
	for (size_t i = 0; i < link_plan_scripts(plan); i++) {
		install_warn(
		        ins,
		        "%s: has a pre- or post-link script, which condafs install does not run",
		        link_plan_script_pkg(plan, i));
		if (ins->opts->script_not_run)
			ins->opts->script_not_run(ins->opts->script_arg,
			                          link_plan_script_pkg(plan, i));
	}
	for (size_t i = 0; i < ins->n; i++) {
		if (!ins->src[i].dir)
			continue;
		pkg_fds[i] = open(ins->src[i].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pkg_fds[i] < 0) {
			r = err_set(err, neg_errno(), "%s: %s", ins->src[i].dir, strerror(errno));
			goto out;
		}
	}
	for (size_t i = 0; i < ins->n; i++)
		pkgs[i] = (struct ingest_pkg){
		        .rec = ins->src[i].rec, .files = ins->src[i].files, .dir_fd = pkg_fds[i]};
	ins->plan = plan;
	ins->pkgs = pkgs;
	r = check_trusted(ins, plan, pkg_fds, err);
	if (!r)
		r = open_gen_data(ins, plan, err);
	if (!r)
		r = write_generated(ins, plan, err);
	if (!r)
		r = compile_pycs(ins, plan, pkg_fds, err);
	if (r)
		goto out;
	snprintf(source, sizeof(source), "/envs/%s", hash);
	in.prefix = source;
	in.plen = strlen(source);
	if (fscreds_init(&in.creds, geteuid()) < 0) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	in.gen = &ins->gen;
	/* The top, like every directory the install makes, has the install's time. */
	r = ingest_plan_nodes(&in, plan, pkgs, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec, err);
	in.after_store = after_store;
	in.after_arg = ins;
	in.records = ins->records;
	if (!r)
		r = ingest_phases(&in, hash, ins->set, ret_result, err);
	if (r == -EEXIST && stored(ins->st, hash)) {
		/* Stored meanwhile, by another install of this lock or an ingest of a prefix
		 * of its set. Its tree differs from this one, as any two installs' trees do by
		 * the time each stamps; but the hash names the environment, and an install
		 * that finds it stored as it begins takes it as it is (store_install): so
		 * does one that finds it stored at the end. */
		err->msg[0] = '\0';
		*ret_result = INGEST_PRESENT;
		r = 0;
	}
out:
	ingest_release(&in);
	close_gen_data(ins);
	for (size_t i = 0; pkg_fds && i < npkg; i++)
		if (pkg_fds[i] >= 0)
			close(pkg_fds[i]);
	free(pkg_fds);
	free(pkgs);
	free(lp);
	ins->plan = NULL;
	ins->pkgs = NULL;
	link_plan_free(plan);
	return r;
}

static int open_work(struct install *ins, struct cfs_err *err)
{
	static const char *const sub[] = {"dl", "pkgs"};
	int *fds[] = {&ins->dl_fd, &ins->pkgs_fd};
	int r = object_tmp_open(ins->st->fd, &ins->work_fd, ins->work_name, err);

	if (r)
		return r;
	if (asprintf(&ins->work, "%s/tmp/%s", ins->st->dir, ins->work_name) < 0) {
		ins->work = NULL;
		return err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < 2; i++) {
		if (mkdirat(ins->work_fd, sub[i], 0700) < 0)
			return err_set(err, neg_errno(), "%s/%s: %s", ins->work, sub[i],
			               strerror(errno));
		*fds[i] = openat(ins->work_fd, sub[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (*fds[i] < 0)
			return err_set(err, neg_errno(), "%s/%s: %s", ins->work, sub[i],
			               strerror(errno));
	}
	return 0;
}

int store_install(struct store *st, const char *lock, const struct install_opts *opts,
                  char ret_hash[33], enum ingest_result *ret_result, struct cfs_err *err)
{
	struct install ins = {.st = st,
	                      .opts = opts,
	                      .lock = lock,
	                      .work_fd = -1,
	                      .dl_fd = -1,
	                      .pkgs_fd = -1,
	                      .gen_data_fd = -1,
	                      .warn_mu = PTHREAD_MUTEX_INITIALIZER};
	struct store_env env;
	char hash[33];
	int r;

	r = store_writable(st, err);
	if (r)
		return r;
	r = pkgset_from_lock(lock, opts->platform, opts->environment, &ins.set, err);
	if (r)
		return r;
	pkgset_hash(ins.set, hash);
	r = catalog_env_by_hash(st->cat, hash, &env, err);
	if (r == 0) {
		/* Storing nothing, it still clears what dead ingests and installs left, as an
		 * ingest of a stored prefix does (N3); failing to is no reason to fail. */
		object_tmp_clean(st->fd, false, NULL, NULL, NULL);
		*ret_result = INGEST_PRESENT;
		goto done;
	}
	if (r != -ENOENT)
		goto out;
	r = check_set(&ins, err);
	if (!r)
		r = name_sources(&ins, err);
	if (!r)
		r = open_work(&ins, err);
	if (!r)
		r = install_find_sources(&ins, err);
	/* The caches' archives first: one that fails its digest is downloaded. */
	if (!r)
		r = install_unpack_cached(&ins, err);
	if (!r)
		r = install_fetch_unpack(&ins, err);
	if (!r)
		r = link_and_store(&ins, hash, ret_result, err);
	if (r)
		goto out;
done:
	memcpy(ret_hash, hash, 33);
	r = 0;
out:
	for (size_t i = 0; i < ins.n; i++) {
		free(ins.src[i].fn);
		free(ins.src[i].dist);
		free(ins.src[i].dir);
		pkgarchive_files_free(ins.src[i].files);
		free(ins.src[i].archive);
		free(ins.src[i].blob);
		pkgrec_free(ins.src[i].rec);
		free(ins.src[i].rec_placeholder);
		if (ins.made)
			free(ins.made[i]);
	}
	free(ins.src);
	free(ins.made);
	free(ins.records);
	if (ins.dl_fd >= 0)
		close(ins.dl_fd);
	if (ins.pkgs_fd >= 0)
		close(ins.pkgs_fd);
	object_tmp_close(st->fd, ins.work_fd, ins.work_name);
	free(ins.work);
	pkgset_free(ins.set);
	return r;
}
