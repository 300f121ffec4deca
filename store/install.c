// SPDX-License-Identifier: MIT
/*
 * condafs install: a lock's environment built from its packages' archives, with no conda
 * and no prefix on disk. The packages are found (package caches on this machine, else the
 * lock's URLs through mirrors: fetch.c, pkgcache.c), checked against the lock's digests
 * and extracted into the install's temporary directory (pkgarchive.c), linked as conda
 * links them into a plan (link.c), and the plan's tree goes through the ingest's own store
 * and commit phases (ingest_plan.c, ingest.c), so dedup, verify-before-share and crash
 * safety are the ingest's.
 *
 * A package an earlier install stored is taken from the store: its record (pkgrec.h,
 * catalog.c C9) gives linking its info/ files and paths, and the store phase its contents
 * and compiled pycs, so it is neither fetched, checked nor extracted again.
 *
 * Invariants:
 * N1: no byte of an archive is read before its digest matched the lock's, and the bytes
 *     extracted are the bytes checked: an archive anyone but us could change is copied
 *     into the install's own directory (0700, root's) and checked there.
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
#include "condafs/store.h"

#include "condameta.h"
#include "err.h"
#include "fetch.h"
#include "ingest.h"
#include "link.h"
#include "object.h"
#include "pkgarchive.h"
#include "pkgcache.h"
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
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Downloads at once: enough to fill a link from a mirror, few enough for its limits. */
#define FETCH_PARALLEL 4
/* Where generated files (entry points' shebangs) hold the prefix: the relocation takes
 * it out as it takes a package's placeholder out. */
static const char prefix_token[] = "/opt/condafs-install/_placeholder_for_the_prefix_";

/* One conda package of the lock and where its extracted files come from. */
struct source {
	const struct pkg *p;
	char *fn;      /* the archive's file name, from the URL */
	char *dist;    /* fn without its extension */
	char *dir;     /* the extracted package (absolute) */
	char *archive; /* an archive in a cache, to check and extract; NULL: none */
	bool fetch;    /* to download into dl/ */
	/* The archive's digests and size once checked (size 0: taken from a cache's
	 * extracted package, the lock's digests stand). */
	struct pkgarchive_digests dg;
	bool ours; /* dir was extracted here (else a cache's: N2) */
	/* The store's record of it (its blob, and read): then nothing else is looked for. */
	uint8_t *blob;
	size_t blob_len;
	struct pkgrec *rec;
	int64_t rec_root; /* the top of the environment the record came with (C9) */
	bool no_store;    /* its record lacks this python's pycs: taken from elsewhere */
};

struct install {
	struct store *st;
	const struct install_opts *opts;
	const char *lock;
	struct pkgset *set;
	struct source *src;
	size_t n;
	int work_fd;
	char work_name[64];
	char *work; /* absolute path of the temporary directory */
	int dl_fd, pkgs_fd, gen_fd;
	pthread_mutex_t warn_mu; /* warnings come from the unpacking threads too */
	/* What the commit records of each package (N4), and what they are made from. */
	const struct link_plan *plan;
	const int *pkg_fds;
	struct catalog_blob *records;
	uint8_t **made; /* records made here, owned */
};

static void warn(struct install *ins, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct install *ins, const char *fmt, ...)
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

/* ours: owned by us and writable by no one else (N1, N2). */
static bool is_ours(const struct stat *sb)
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

/* An extracted package in a cache, if it may be trusted (N2). */
static bool cache_dir_usable(const char *dir)
{
	struct stat sb;

	return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && is_ours(&sb);
}

/* A digest of the lock and one of a record agree, or one of them is unknown. */
static bool same_digest(const char *lock, const char *rec)
{
	return !lock || !*rec || strcasecmp(lock, rec) == 0;
}

/* The store's record of s, if an environment was installed from its archive (C9). A
 * record that does not read is a warning, and the package is looked for elsewhere. */
static int store_source(struct install *ins, struct source *s, struct cfs_err *err)
{
	struct cfs_err e2;
	char what[512];
	int r = -ENOENT;

	/* By the lock's sha256, else its md5: a record made from a lock that gave only one. */
	if (s->p->sha256)
		r = catalog_package_record(ins->st->cat, s->p->sha256, NULL, &s->blob, &s->blob_len,
		                           &s->rec_root, err);
	if (r == -ENOENT && s->p->md5)
		r = catalog_package_record(ins->st->cat, NULL, s->p->md5, &s->blob, &s->blob_len,
		                           &s->rec_root, err);
	if (r == -ENOENT)
		return 0;
	if (r)
		return r;
	snprintf(what, sizeof(what), "%s/catalog.db: the record of %s", ins->st->dir, s->fn);
	r = pkgrec_open(s->blob, s->blob_len, what, &s->rec, &e2);
	if (r == -ENOMEM)
		return err_set(err, r, "out of memory");
	if (r) {
		warn(ins, "%s; fetching it", e2.msg);
	} else if (!same_digest(s->p->sha256, pkgrec_sha256(s->rec)) ||
	           !same_digest(s->p->md5, pkgrec_md5(s->rec))) {
		/* Its archive was another than the lock's: it is not this package. */
		pkgrec_free(s->rec);
		s->rec = NULL;
	}
	if (!s->rec) {
		free(s->blob);
		s->blob = NULL;
	}
	return 0;
}

/* Where each package not placed yet comes from: the store, a cache's extracted package, a
 * cache's archive, or the channel. */
static int find_sources(struct install *ins, struct cfs_err *err)
{
	struct pkgcache *cache = NULL;
	int r = pkgcache_new(ins->opts->pkgs_dirs, ins->opts->npkgs_dirs, &cache, err);

	for (size_t i = 0; !r && i < ins->n; i++) {
		struct source *s = &ins->src[i];
		char *archive = NULL, *extracted = NULL;

		if (s->rec || s->dir || s->archive || s->fetch)
			continue;
		if (!s->no_store) {
			r = store_source(ins, s, err);
			if (r || s->rec)
				continue;
		}
		r = pkgcache_find(cache, s->fn, s->p->sha256, s->p->md5, &archive, &extracted);
		if (r) {
			r = err_set(err, r, "out of memory");
			break;
		}
		if (extracted && cache_dir_usable(extracted)) {
			s->dir = extracted;
			free(archive);
		} else {
			free(extracted);
			s->archive = archive;
			s->fetch = !archive;
		}
	}
	pkgcache_free(cache);
	return r;
}

static void on_fetch(const struct fetch_progress *p, void *arg)
{
	const struct install *ins = arg;
	struct install_fetch f = {p->done, p->total, p->bytes, p->bytes_total, p->rate};

	ins->opts->fetching(ins->opts->ingest.ctx, &f);
}

static int download(struct install *ins, struct cfs_err *err)
{
	struct mirrors *m = NULL;
	struct fetch_item *items = calloc(ins->n ? ins->n : 1, sizeof(*items));
	char **urls = calloc(ins->n ? ins->n : 1, sizeof(*urls));
	size_t k = 0;
	int r = items && urls ? mirrors_new(&m) : -ENOMEM;

	if (r) {
		r = err_set(err, r, "out of memory");
		goto out;
	}
	for (size_t i = 0; !r && i < ins->opts->nmirrors; i++)
		r = mirrors_add(m, ins->opts->mirrors[i], err);
	for (size_t i = 0; !r && i < ins->n; i++) {
		if (!ins->src[i].fetch || ins->src[i].dir)
			continue;
		r = mirrors_map(m, ins->src[i].p->url, &urls[k]);
		if (r) {
			r = err_set(err, r, "out of memory");
			break;
		}
		items[k] = (struct fetch_item){.url = urls[k], .name = ins->src[i].fn};
		k++;
	}
	if (!r && k)
		r = fetch_all(items, k, ins->dl_fd, FETCH_PARALLEL,
		              ins->opts->fetching ? on_fetch : NULL, ins, err);
out:
	for (size_t i = 0; urls && i < k; i++)
		free(urls[i]);
	free(urls);
	free(items);
	mirrors_free(m);
	return r;
}

/* Copy the archive at fd into dl/ (N1): the copy is ours, the original its owner's. */
static int copy_in(struct install *ins, struct source *s, int fd, struct cfs_err *err)
{
	char buf[1 << 16];
	int out = openat(ins->dl_fd, s->fn, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ssize_t n;
	int r = 0;

	if (out < 0)
		return err_set(err, neg_errno(), "%s: %s", s->archive, strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(out, buf + done, (size_t)(n - done));

			if (w < 0) {
				r = err_set(err, neg_errno(), "%s/dl/%s: %s", ins->work, s->fn,
				            strerror(errno));
				goto out;
			}
			done += w;
		}
	}
	if (n < 0)
		r = err_set(err, neg_errno(), "%s: %s", s->archive, strerror(errno));
out:
	close(out);
	return r;
}

/* Check source s's archive (a cache's, or downloaded into dl/) and extract it into
 * pkgs/<dist>/ (N1). A cache's archive that fails its digest is left to download
 * (s->fetch), with a warning. */
static int unpack(struct install *ins, struct source *s, struct cfs_err *err)
{
	int fd = -1, dfd = -1, r;
	struct stat sb;

	if (s->archive) {
		fd = open(s->archive, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return err_set(err, neg_errno(), "%s: %s", s->archive, strerror(errno));
		if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			r = err_set(err, -EINVAL, "%s: not a regular file", s->archive);
			goto out;
		}
		if (!is_ours(&sb)) {
			r = copy_in(ins, s, fd, err);
			close(fd);
			fd = -1;
			if (r)
				goto out;
		}
	}
	if (fd < 0) {
		fd = openat(ins->dl_fd, s->fn, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return err_set(err, neg_errno(), "%s: %s", s->fn, strerror(errno));
	}
	r = pkgarchive_verify(fd, s->p->sha256, s->p->md5, s->archive ? s->archive : s->fn, &s->dg,
	                      err);
	if (r == -EBADMSG && s->archive) {
		/* A cache's archive that is not the lock's (damaged, or another build under
		 * its name) is fetched instead, as conda fetches it again. */
		warn(ins, "%s; fetching it instead", err->msg);
		unlinkat(ins->dl_fd, s->fn, 0);
		free(s->archive);
		s->archive = NULL;
		s->fetch = true;
		r = 0;
		goto out;
	}
	if (r)
		goto out;
	if (mkdirat(ins->pkgs_fd, s->dist, 0700) < 0) {
		r = err_set(err, neg_errno(), "%s/pkgs/%s: %s", ins->work, s->dist,
		            strerror(errno));
		goto out;
	}
	dfd = openat(ins->pkgs_fd, s->dist, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		r = err_set(err, neg_errno(), "%s/pkgs/%s: %s", ins->work, s->dist,
		            strerror(errno));
		goto out;
	}
	r = pkgarchive_extract(fd, s->fn, dfd, s->fn, err);
	if (r)
		goto out;
	if (asprintf(&s->dir, "%s/pkgs/%s", ins->work, s->dist) < 0) {
		s->dir = NULL;
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	s->ours = true;
out:
	if (dfd >= 0)
		close(dfd);
	if (fd >= 0)
		close(fd);
	return r;
}

/* Unpacking in parallel: checking and extracting the archives is most of a cold install,
 * and each is independent of the others. */
#define UNPACK_THREADS_MAX 8

struct unpack_pool {
	struct install *ins;
	bool cached; /* this round: the caches' archives, else the downloaded ones */
	pthread_mutex_t mu;
	size_t next, failed; /* the failed package's index, SIZE_MAX: none yet */
	int r;
	struct cfs_err *err;
};

static void *unpack_worker(void *arg)
{
	struct unpack_pool *p = arg;
	struct cfs_err err = {{0}};

	for (;;) {
		struct source *s;
		size_t i;
		int r;

		pthread_mutex_lock(&p->mu);
		i = p->next++;
		r = p->r;
		pthread_mutex_unlock(&p->mu);
		if (r || i >= p->ins->n)
			return NULL;
		s = &p->ins->src[i];
		if (s->rec || s->dir || (p->cached && !s->archive))
			continue;
		r = unpack(p->ins, s, &err);
		if (r) {
			pthread_mutex_lock(&p->mu);
			/* Of the failures, the first in the lock's order is the one reported. */
			if (i < p->failed) {
				p->failed = i;
				p->r = r;
				*p->err = err;
			}
			pthread_mutex_unlock(&p->mu);
		}
	}
}

static int unpack_all(struct install *ins, bool cached, struct cfs_err *err)
{
	struct unpack_pool p = {.ins = ins, .cached = cached, .failed = SIZE_MAX, .err = err};
	pthread_t th[UNPACK_THREADS_MAX];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus < 1 ? 1 : cpus > UNPACK_THREADS_MAX ? UNPACK_THREADS_MAX : (size_t)cpus;
	size_t started = 0;

	if (n > ins->n)
		n = ins->n;
	pthread_mutex_init(&p.mu, NULL);
	for (; started + 1 < n; started++)
		if (pthread_create(&th[started], NULL, unpack_worker, &p) != 0)
			break;
	unpack_worker(&p);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.mu);
	return p.r;
}

/* mkdir -p of rel's parents beneath dfd, each made with mode. */
static int make_parents(int dfd, const char *rel, mode_t mode)
{
	char path[PATH_MAX];
	size_t len = strlen(rel);

	if (len >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, rel, len + 1);
	for (char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdirat(dfd, path, mode) < 0 && errno != EEXIST)
			return neg_errno();
		*p = '/';
	}
	return 0;
}

static void plan_warn(void *arg, const char *line)
{
	warn(arg, "%s", line);
}

/* A generated file into gen/, at its path, with its mode and mtime. */
static int write_gen(void *arg, const struct link_entry *e, const uint8_t *data, size_t len,
                     struct cfs_err *err)
{
	struct install *ins = arg;
	struct timespec ts[2];
	int fd, r = make_parents(ins->gen_fd, e->path, 0700);

	fd = r ? r
	       : openat(ins->gen_fd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	                0600);
	if (fd < 0)
		return err_set(err, fd == -1 ? neg_errno() : fd, "%s/gen/%s: %s", ins->work,
		               e->path, strerror(fd == -1 ? errno : -fd));
	for (size_t done = 0; !r && done < len;) {
		ssize_t w = write(fd, data + done, len - done);

		if (w < 0)
			r = neg_errno();
		else
			done += (size_t)w;
	}
	ts[0].tv_sec = ts[1].tv_sec = e->mtime_ns / 1000000000;
	ts[0].tv_nsec = ts[1].tv_nsec = e->mtime_ns % 1000000000;
	if (!r && futimens(fd, ts) < 0)
		r = neg_errno();
	close(fd);
	return r ? err_set(err, r, "%s/gen/%s: %s", ins->work, e->path, strerror(-r)) : 0;
}

/* The plan's generated files into gen/ but the pycs, which are compiled. */
static int write_generated(struct install *ins, const struct link_plan *plan, struct cfs_err *err)
{
	for (size_t i = 0; i < link_plan_count(plan); i++) {
		const struct link_entry *e = link_plan_entry(plan, i);
		int r;

		if (e->type != LINK_FILE || e->pkg != LINK_GENERATED || e->pyc_of)
			continue;
		r = write_gen(ins, e, e->data, e->len, err);
		if (r)
			return r;
	}
	return 0;
}

/* The noarch pycs into gen/, compiled by the environment's python (pycompile.c). Our
 * extracted packages are reached through the compiler's working directory, the install's
 * directory, which it may search but not list (P1): tmp/ keeps everyone else out. */
static int compile_pycs(struct install *ins, const struct link_plan *plan, const int *pkg_fds,
                        struct cfs_err *err)
{
	char **dirs = calloc(ins->n ? ins->n : 1, sizeof(*dirs));
	size_t wlen = strlen(ins->work);
	int r = dirs ? 0 : -ENOMEM;

	for (size_t i = 0; !r && i < ins->n; i++) {
		const struct source *s = &ins->src[i];

		if (!s->dir)
			continue;
		if (s->ours && asprintf(&dirs[i], "/proc/self/cwd%s", s->dir + wlen) < 0)
			dirs[i] = NULL;
		else if (!s->ours)
			dirs[i] = strdup(s->dir);
		if (!dirs[i])
			r = -ENOMEM;
		else if (s->ours && fchmod(pkg_fds[i], 0711) < 0)
			r = neg_errno();
	}
	if (r == -ENOMEM)
		r = err_set(err, r, "out of memory");
	else if (r)
		r = err_set(err, r, "%s/pkgs: %s", ins->work, strerror(-r));
	else if (fchmod(ins->work_fd, 0711) < 0 || fchmod(ins->pkgs_fd, 0711) < 0)
		r = err_set(err, neg_errno(), "%s: %s", ins->work, strerror(errno));
	if (!r)
		r = pycompile_plan(plan, (const char *const *)dirs, pkg_fds, ins->work_fd,
		                   write_gen, plan_warn, ins, err);
	for (size_t i = 0; dirs && i < ins->n; i++)
		free(dirs[i]);
	free(dirs);
	return r;
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
		if (!is_ours(&sb))
			return err_set(
			        err, -EPERM,
			        "%s/%s: in a package cache but not owned by uid %u alone: "
			        "not trusted (remove the extracted package, keep its archive)",
			        ins->src[e->pkg].dir, e->src, (unsigned)geteuid());
	}
	return 0;
}

/* The environment hash names is in the catalog. */
static bool stored(struct store *st, const char *hash)
{
	struct cfs_err ignored;
	struct store_env env;

	return catalog_env_by_hash(st->cat, hash, &env, &ignored) == 0;
}

static size_t unstore(struct source *s)
{
	pkgrec_free(s->rec);
	s->rec = NULL;
	free(s->blob);
	s->blob = NULL;
	s->no_store = true;
	return 1;
}

/* Packages from the store whose record holds no pycs compiled by the plan's python: set
 * back to be taken from a cache or the channel, their sources to be compiled. How many;
 * *ret_compile: any pyc of the plan is to be compiled. */
static size_t unstore_for_compiling(struct install *ins, const struct link_plan *plan,
                                    bool *ret_compile)
{
	const char *pyver = link_plan_python(plan);
	bool compile = false;
	size_t n = 0;

	for (size_t i = 0; i < link_plan_count(plan); i++) {
		const struct link_entry *e = link_plan_entry(plan, i), *s;
		struct source *src;

		if (!e->pyc_of)
			continue;
		s = link_plan_find(plan, e->pyc_of);
		if (!s || s->type != LINK_FILE || s->pkg == LINK_GENERATED)
			continue;
		src = &ins->src[s->pkg];
		if (src->rec && strcmp(pkgrec_pyver(src->rec), pyver) != 0)
			n += unstore(src);
		compile |= !src->rec;
	}
	*ret_compile = compile;
	return n;
}

/* One file of package i into dfd at rel, its bytes read from the environment its record
 * came with at the file's path there, with prefix where the prefix goes: the archive's
 * bytes when prefix is the package's placeholder. */
static int materialize_file(struct install *ins, size_t i, const struct link_entry *e,
                            const char *rel, const char *prefix, int dfd, uint8_t *buf,
                            struct cfs_err *err)
{
	struct store_node node;
	struct timespec ts[2];
	uint64_t off = 0;
	size_t got = 1;
	int fd, r = store_path_lookup(ins->st, ins->src[i].rec_root, e->path, &node, err);

	if (r)
		return r == -ENOENT ? err_set(err, r,
		                              "%s: %s: not in the environment its record "
		                              "came with",
		                              ins->src[i].fn, e->path)
		                    : r;
	fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, neg_errno(), "%s/pkgs/%s/%s: %s", ins->work, ins->src[i].dist,
		               rel, strerror(errno));
	while (!r && got) {
		r = store_read(ins->st, &node, prefix, off, 1u << 20, buf, &got, err);
		for (size_t done = 0; !r && done < got;) {
			ssize_t w = write(fd, buf + done, got - done);

			if (w < 0)
				r = err_set(err, neg_errno(), "%s/pkgs/%s/%s: %s", ins->work,
				            ins->src[i].dist, rel, strerror(errno));
			else
				done += (size_t)w;
		}
		off += got;
	}
	ts[0].tv_sec = ts[1].tv_sec = e->mtime_ns / 1000000000;
	ts[0].tv_nsec = ts[1].tv_nsec = e->mtime_ns % 1000000000;
	if (!r && (fchmod(fd, e->mode & 0777) < 0 || futimens(fd, ts) < 0))
		r = err_set(err, neg_errno(), "%s/pkgs/%s/%s: %s", ins->work, ins->src[i].dist, rel,
		            strerror(errno));
	close(fd);
	return r;
}

/* Package i, taken from the store, written out into pkgs/<dist>/ as its archive would
 * extract, for the .pyc compiler to run it (the environment's python): fetching it again
 * would cost its download and extraction both. Its record stays what the environment is
 * made from. */
static int materialize(struct install *ins, const struct link_plan *plan, size_t i,
                       struct cfs_err *err)
{
	struct source *s = &ins->src[i];
	const char *placeholder = "/";
	uint8_t *buf = malloc(1u << 20);
	int dfd = -1, r = buf ? 0 : err_set(err, -ENOMEM, "out of memory");

	/* One placeholder for the whole package: the pycs it ships for its relocated
	 * sources were rewritten for them (ingest.h pyc_src), read back with the same. */
	for (size_t j = 0; j < link_plan_count(plan); j++)
		if (link_plan_entry(plan, j)->pkg == i && link_plan_entry(plan, j)->placeholder) {
			placeholder = link_plan_entry(plan, j)->placeholder;
			break;
		}
	if (!r && (mkdirat(ins->pkgs_fd, s->dist, 0700) < 0 ||
	           (dfd = openat(ins->pkgs_fd, s->dist,
	                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0))
		r = err_set(err, neg_errno(), "%s/pkgs/%s: %s", ins->work, s->dist,
		            strerror(errno));
	for (size_t j = 0; !r && j < link_plan_count(plan); j++) {
		const struct link_entry *e = link_plan_entry(plan, j);
		const char *rel = e->src ? e->src : e->path;

		if (e->pkg != i)
			continue;
		/* As an archive's: the compiler, nobody, must reach its files. */
		r = make_parents(dfd, rel, 0755);
		if (r)
			r = err_set(err, r, "%s/pkgs/%s/%s: %s", ins->work, s->dist, rel,
			            strerror(-r));
		else if (e->type == LINK_DIR && mkdirat(dfd, rel, 0755) < 0 && errno != EEXIST)
			r = err_set(err, neg_errno(), "%s/pkgs/%s/%s: %s", ins->work, s->dist, rel,
			            strerror(errno));
		else if (e->type == LINK_SYMLINK && symlinkat(e->target, dfd, rel) < 0)
			r = err_set(err, neg_errno(), "%s/pkgs/%s/%s: %s", ins->work, s->dist, rel,
			            strerror(errno));
		else if (e->type == LINK_FILE)
			r = materialize_file(ins, i, e, rel, placeholder, dfd, buf, err);
	}
	if (!r && asprintf(&s->dir, "%s/pkgs/%s", ins->work, s->dist) < 0) {
		s->dir = NULL;
		r = err_set(err, -ENOMEM, "out of memory");
	}
	s->ours = !r;
	if (dfd >= 0)
		close(dfd);
	free(buf);
	return r;
}

/* What the store phase made of node k's content, into a record's entry. */
static void take_content(struct pkgrec_entry *pe, const struct inode *k)
{
	pe->key = k->key;
	pe->neutral_size = k->neutral_size;
	pe->inserts = k->inserts;
	pe->reloc = k->reloc;
	pe->reloc_len = k->reloc_len;
}

/* The info/ files linking reads: what a record keeps of them. */
static const char *const info_files[] = {"info/index.json", "info/link.json",  "info/paths.json",
                                         "info/files",      "info/has_prefix", "info/no_link"};

/* Package i as a record (N4) into ins->made[i], from its directory and the nodes the
 * store phase filled (node_of: by plan entry, the node's index + 1); none when a path of
 * it is not in the tree (another package's won) or an info/ file cannot be read. */
static int record_package(struct install *ins, struct ingest *in, size_t i, const uint32_t *node_of,
                          struct cfs_err *err)
{
	const struct link_plan *plan = ins->plan;
	const struct source *s = &ins->src[i];
	struct pkgrec_builder *b = NULL;
	const char *pyver = link_plan_python(plan);
	int r = 0;

	for (size_t j = 0; j < link_plan_pkg_srcs(plan, i); j++) {
		const struct link_src *ls = link_plan_pkg_src(plan, i, j);
		const struct link_entry *e = link_plan_find(plan, ls->dst);

		if (!e || e->type != ls->type ||
		    (e->type != LINK_DIR &&
		     (e->pkg != i || !node_of[e - link_plan_entry(plan, 0)])))
			return 0;
	}
	if (s->rec) {
		ins->records[i] = (struct catalog_blob){s->blob, s->blob_len};
		return 0;
	}
	if (pkgrec_builder_new(s->dg.size ? s->dg.sha256 : s->p->sha256,
	                       s->dg.size ? s->dg.md5 : s->p->md5, s->dg.size, pyver ? pyver : "",
	                       &b) < 0)
		return err_set(err, -ENOMEM, "out of memory");
	for (size_t j = 0; !r && j < sizeof(info_files) / sizeof(*info_files); j++) {
		struct cfs_err e2;
		char *text = NULL;
		size_t len;

		r = textfile_read(ins->pkg_fds[i], info_files[j], info_files[j], 64u << 20, &text,
		                  &len, &e2);
		if (r == 0)
			r = pkgrec_add_info(b, info_files[j], (const uint8_t *)text, len);
		free(text);
		if (r == -ENOENT)
			r = 0;
	}
	for (size_t j = 0; !r && j < link_plan_pkg_srcs(plan, i); j++) {
		const struct link_src *ls = link_plan_pkg_src(plan, i, j);
		const struct link_entry *e = link_plan_find(plan, ls->dst);
		struct pkgrec_entry pe = {
		        .path = ls->src, .mode = ls->mode, .mtime_ns = ls->mtime_ns};

		pe.type = ls->type == LINK_FILE      ? NODE_FILE
		          : ls->type == LINK_SYMLINK ? NODE_SYMLINK
		                                     : NODE_DIR;
		if (pe.type == NODE_FILE) {
			const struct inode *k =
			        &in->nodes[node_of[e - link_plan_entry(plan, 0)] - 1];

			take_content(&pe, k);
			pe.size = ls->len;
		}
		pe.target = ls->target;
		r = pkgrec_add_path(b, &pe);
	}
	for (size_t j = 0; !r && j < link_plan_count(plan); j++) {
		const struct link_entry *e = link_plan_entry(plan, j), *src;
		struct pkgrec_entry pe;
		const struct inode *k;

		if (!e->pyc_of || !node_of[j])
			continue;
		src = link_plan_find(plan, e->pyc_of);
		if (!src || src->type != LINK_FILE || src->pkg != i)
			continue;
		k = &in->nodes[node_of[j] - 1];
		pe = (struct pkgrec_entry){.path = e->path,
		                           .type = NODE_FILE,
		                           .mode = k->mode,
		                           .mtime_ns = k->mtime_ns,
		                           .size = k->size};
		take_content(&pe, k);
		r = pkgrec_add_pyc(b, &pe);
	}
	if (r) {
		r = err_set(err, r, "out of memory");
	} else {
		struct cfs_err e2;

		/* A record is a saving, not the environment: one that cannot be made is a
		 * warning, and the package is fetched again next time. */
		r = pkgrec_finish(b, &ins->made[i], &ins->records[i].len, &e2);
		if (r == -ENOMEM)
			r = err_set(err, r, "out of memory");
		else if (r)
			warn(ins, "%s: not recorded for later installs: %s", s->fn, e2.msg);
		else
			ins->records[i].data = ins->made[i];
		if (r != -ENOMEM)
			r = 0;
	}
	pkgrec_builder_free(b);
	return r;
}

/* ingest.h's before_commit: every package's record (N4), inserted by the commit. */
static int record_packages(struct ingest *in, void *arg, struct cfs_err *err)
{
	struct install *ins = arg;
	size_t n = link_plan_count(ins->plan);
	uint32_t *node_of = calloc(n ? n : 1, sizeof(*node_of));
	int r = node_of ? 0 : err_set(err, -ENOMEM, "out of memory");

	for (size_t k = 0; !r && k < in->n; k++)
		if (in->nodes[k].plan)
			node_of[in->nodes[k].plan - 1] = (uint32_t)k + 1;
	for (size_t i = 0; !r && i < ins->n; i++)
		r = record_package(ins, in, i, node_of, err);
	free(node_of);
	return r;
}

/* Link, then the ingest's phases over the plan. *ret_again: packages from the store were
 * set back to be taken from elsewhere, for their pycs to be compiled; nothing was done. */
static int link_and_store(struct install *ins, const char *hash, enum ingest_result *ret_result,
                          bool *ret_again, struct cfs_err *err)
{
	struct link_pkg *lp = calloc(ins->n ? ins->n : 1, sizeof(*lp));
	int *pkg_fds = malloc((ins->n ? ins->n : 1) * sizeof(*pkg_fds));
	const struct pkgrec **recs = calloc(ins->n ? ins->n : 1, sizeof(*recs));
	const struct link_entry *py;
	struct link_plan *plan = NULL;
	bool compile = false;
	struct timespec now;
	struct ingest in;
	char source[64];
	int r = 0;

	ingest_init(&in, ins->st, &ins->opts->ingest);
	*ret_again = false;
	for (size_t i = 0; pkg_fds && i < ins->n; i++)
		pkg_fds[i] = -1;
	if (!lp || !pkg_fds || !recs) {
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
		                          .rec = s->rec};
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
	*ret_again = unstore_for_compiling(ins, plan, &compile) > 0;
	if (*ret_again)
		goto out;
	/* The compiler runs the environment's python: from the store when it is there. */
	py = link_plan_python_file(plan);
	if (compile && py && ins->src[py->pkg].rec && !ins->src[py->pkg].dir) {
		r = materialize(ins, plan, py->pkg, err);
		if (r)
			goto out;
	}
	for (size_t i = 0; i < link_plan_scripts(plan); i++) {
		warn(ins, "%s: has a pre- or post-link script, which condafs install does not run",
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
	r = check_trusted(ins, plan, pkg_fds, err);
	if (!r)
		r = write_generated(ins, plan, err);
	if (!r)
		r = compile_pycs(ins, plan, pkg_fds, err);
	/* The top, like every directory the install makes, has the install's time. */
	if (!r && futimens(ins->gen_fd, (struct timespec[2]){now, now}) < 0)
		r = err_set(err, neg_errno(), "%s/gen: %s", ins->work, strerror(errno));
	if (r)
		goto out;
	/* The environment's own records, read back as an ingest reads a prefix's: the set
	 * they name must be the lock's. */
	snprintf(source, sizeof(source), "/envs/%s", hash);
	in.prefix = source;
	in.plen = strlen(source);
	in.root_fd = dup(ins->gen_fd);
	if (in.root_fd < 0 || fscreds_init(&in.creds, geteuid()) < 0) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	r = condameta_read_at(in.root_fd, ins->lock, &in.meta, err);
	if (!r)
		r = pkgset_match(condameta_pkgset(in.meta), ins->set, err);
	for (size_t i = 0; !r && i < ins->n; i++)
		recs[i] = ins->src[i].rec;
	if (!r)
		r = ingest_plan_nodes(&in, plan, pkg_fds, recs, err);
	ins->plan = plan;
	ins->pkg_fds = pkg_fds;
	in.before_commit = record_packages;
	in.before_arg = ins;
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
	for (size_t i = 0; pkg_fds && i < ins->n; i++)
		if (pkg_fds[i] >= 0)
			close(pkg_fds[i]);
	free(pkg_fds);
	free(recs);
	free(lp);
	ins->plan = NULL;
	link_plan_free(plan);
	return r;
}

static int open_work(struct install *ins, struct cfs_err *err)
{
	static const char *const sub[] = {"dl", "pkgs", "gen"};
	int *fds[] = {&ins->dl_fd, &ins->pkgs_fd, &ins->gen_fd};
	int r = object_tmp_open(ins->st->fd, &ins->work_fd, ins->work_name, err);

	if (r)
		return r;
	if (asprintf(&ins->work, "%s/tmp/%s", ins->st->dir, ins->work_name) < 0) {
		ins->work = NULL;
		return err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < 3; i++) {
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
	                      .gen_fd = -1,
	                      .warn_mu = PTHREAD_MUTEX_INITIALIZER};
	struct store_env env;
	char hash[33];
	int r;

	if (st->flags & STORE_READONLY)
		return err_set(err, -EROFS, "%s: store opened read-only", st->dir);
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
	/* Twice at most: the second round takes what the first set back from the store
	 * (link_and_store's again) from the caches or the channel. */
	for (bool again = true; !r && again;) {
		r = find_sources(&ins, err);
		/* The caches' archives first: one that fails its digest is downloaded. */
		if (!r)
			r = unpack_all(&ins, true, err);
		if (!r)
			r = download(&ins, err);
		if (!r)
			r = unpack_all(&ins, false, err);
		if (!r)
			r = link_and_store(&ins, hash, ret_result, &again, err);
	}
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
		free(ins.src[i].archive);
		free(ins.src[i].blob);
		pkgrec_free(ins.src[i].rec);
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
	if (ins.gen_fd >= 0)
		close(ins.gen_fd);
	object_tmp_close(st->fd, ins.work_fd, ins.work_name);
	free(ins.work);
	pkgset_free(ins.set);
	return r;
}
