// SPDX-License-Identifier: MIT
/*
 * Where condafs install's packages come from (install.c N1, N2): the store's records, the
 * package caches on this machine, else the lock's URLs through mirrors (fetch.c,
 * pkgcache.c); each archive checked against the lock's digests before it is unpacked
 * into a data file in the install's temporary directory (pkgarchive.c), in parallel.
 */
#include "install_int.h"

#include "err.h"
#include "fetch.h"
#include "pkgcache.h"
#include "pkgrec.h"
#include "pkgset.h"
#include "store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Downloads at once: enough to fill a link from a mirror, few enough for its limits. */
#define FETCH_PARALLEL 4

/* An extracted package in a cache, if it may be trusted (N2). */
static bool cache_dir_usable(const char *dir)
{
	struct stat sb;

	return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && install_is_ours(&sb);
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
		install_warn(ins, "%s; fetching it", e2.msg);
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

/* Where each package comes from: the store, a cache's extracted package, a cache's
 * archive, or the channel. */
int install_find_sources(struct install *ins, struct cfs_err *err)
{
	struct pkgcache *cache = NULL;
	int r = pkgcache_new(ins->opts->pkgs_dirs, ins->opts->npkgs_dirs, &cache, err);

	/* Every record looked up in one read transaction, not one each. */
	if (!r)
		r = catalog_begin(ins->st->cat, false, err);
	for (size_t i = 0; !r && i < ins->n; i++) {
		struct source *s = &ins->src[i];
		char *archive = NULL, *extracted = NULL;

		r = store_source(ins, s, err);
		if (r || s->rec)
			continue;
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
	catalog_rollback(ins->st->cat);
	pkgcache_free(cache);
	return r;
}

static void on_fetch(const struct fetch_progress *p, void *arg)
{
	const struct install *ins = arg;
	struct install_fetch f = {p->done, p->total, p->bytes, p->bytes_total, p->rate};

	ins->opts->fetching(ins->opts->ingest.ctx, &f);
}

int install_download(struct install *ins, struct cfs_err *err)
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
		if (!ins->src[i].fetch || ins->src[i].dir || ins->src[i].files)
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

/* Whether s is what the .pyc compiler runs: python, when the lock has noarch packages to
 * compile. A guess made before linking, so that python is written out while the other
 * packages unpack; linking tells, and writes it out when the guess missed. */
static bool for_compiler(const struct install *ins, const struct source *s)
{
	bool noarch = false;

	if (!s->p->name || strcmp(s->p->name, "python") != 0)
		return false;
	for (size_t i = 0; i < ins->n && !noarch; i++)
		noarch = !ins->src[i].rec && ins->src[i].p->subdir &&
		         strcmp(ins->src[i].p->subdir, "noarch") == 0;
	return noarch;
}

/* Source s's checked archive, unpacked into the data file pkgs/<dist>.data (N1): one file
 * for the package, where extracting it would make, and later remove, one for each of its
 * paths. */
static int unpack_data(struct install *ins, struct source *s, int fd, struct cfs_err *err)
{
	char name[PATH_MAX];
	int dfd, r;

	install_data_name(s, name);
	dfd = openat(ins->pkgs_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (dfd < 0)
		return err_set(err, neg_errno(), "%s/pkgs/%s: %s", ins->work, name,
		               strerror(errno));
	r = pkgarchive_unpack(fd, s->fn, dfd, s->fn, &s->files, err);
	close(dfd);
	s->ours = r == 0;
	/* The compiler's python is written out now, beside the other packages' unpacking,
	 * not after linking with nothing beside it. */
	if (r == 0 && for_compiler(ins, s))
		r = install_write_out_unpacked(ins, s, err);
	return r;
}

/* Check source s's archive (a cache's, or downloaded into dl/) and unpack it (N1). A
 * cache's archive that fails its digest is left to download (s->fetch), with a warning. */
static int unpack(struct install *ins, struct source *s, struct cfs_err *err)
{
	bool in_dl = false;
	int fd = -1, r;
	struct stat sb;

	if (s->archive) {
		fd = open(s->archive, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return err_set(err, neg_errno(), "%s: %s", s->archive, strerror(errno));
		if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			r = err_set(err, -EINVAL, "%s: not a regular file", s->archive);
			goto out;
		}
		if (!install_is_ours(&sb)) {
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
		in_dl = true;
	}
	r = pkgarchive_verify(fd, s->p->sha256, s->p->md5, s->archive ? s->archive : s->fn, &s->dg,
	                      err);
	if (r == -EBADMSG && s->archive) {
		/* A cache's archive that is not the lock's (damaged, or another build under
		 * its name) is fetched instead, as conda fetches it again. */
		install_warn(ins, "%s; fetching it instead", err->msg);
		unlinkat(ins->dl_fd, s->fn, 0);
		free(s->archive);
		s->archive = NULL;
		s->fetch = true;
		r = 0;
		goto out;
	}
	if (r)
		goto out;
	r = unpack_data(ins, s, fd, err);
	/* A download (or a copy) is read no more once unpacked: removed now, beside the
	 * other unpacking, its pages are not all freed at the install's end (N3 would remove
	 * it then). */
	if (r == 0 && in_dl)
		unlinkat(ins->dl_fd, s->fn, 0);
out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* Unpacking in parallel: checking and unpacking the archives is most of a cold install,
 * and each is independent of the others. */
#define UNPACK_THREADS_MAX 8

struct unpack_pool {
	struct install *ins;
	bool cached;   /* this round: the caches' archives, else the downloaded ones */
	size_t *order; /* the sources to unpack, largest archive first */
	size_t n;
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
		bool skip;
		size_t i;
		int r;

		pthread_mutex_lock(&p->mu);
		i = p->next < p->n ? p->order[p->next++] : SIZE_MAX;
		/* After a failure, only what comes before it in the lock's order: whatever
		 * the order of unpacking, the failure reported is the first of the lock's. */
		skip = i != SIZE_MAX && i > p->failed;
		pthread_mutex_unlock(&p->mu);
		if (i == SIZE_MAX)
			return NULL;
		if (skip)
			continue;
		s = &p->ins->src[i];
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

struct sized {
	size_t i;
	off_t size;
};

static int size_desc(const void *a, const void *b)
{
	const struct sized *x = a, *y = b;

	if (x->size != y->size)
		return x->size < y->size ? 1 : -1;
	return (x->i > y->i) - (x->i < y->i);
}

/* The sources this round unpacks, largest archive first: a large archive is one stream to
 * decompress, on one thread, and taken last (as a lock's order often has it: libtorch,
 * then pytorch) it would end the round with the other threads idle. An archive that
 * cannot be looked at sorts last, for unpack to say why. */
static int unpack_order(struct unpack_pool *p)
{
	struct install *ins = p->ins;
	struct sized *v = malloc((ins->n ? ins->n : 1) * sizeof(*v));
	struct stat sb;

	p->order = malloc((ins->n ? ins->n : 1) * sizeof(*p->order));
	if (!v || !p->order) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ins->n; i++) {
		const struct source *s = &ins->src[i];
		int r;

		if (s->rec || s->dir || s->files || (p->cached && !s->archive))
			continue;
		r = s->archive ? stat(s->archive, &sb)
		               : fstatat(ins->dl_fd, s->fn, &sb, AT_SYMLINK_NOFOLLOW);
		v[p->n++] = (struct sized){i, r == 0 ? sb.st_size : -1};
	}
	if (p->n)
		qsort(v, p->n, sizeof(*v), size_desc);
	for (size_t k = 0; k < p->n; k++)
		p->order[k] = v[k].i;
	free(v);
	return 0;
}

int install_unpack_all(struct install *ins, bool cached, struct cfs_err *err)
{
	struct unpack_pool p = {.ins = ins, .cached = cached, .failed = SIZE_MAX, .err = err};
	pthread_t th[UNPACK_THREADS_MAX];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus < 1 ? 1 : cpus > UNPACK_THREADS_MAX ? UNPACK_THREADS_MAX : (size_t)cpus;
	size_t started = 0;

	if (unpack_order(&p) < 0) {
		free(p.order);
		return err_set(err, -ENOMEM, "out of memory");
	}
	if (n > p.n)
		n = p.n ? p.n : 1;
	pthread_mutex_init(&p.mu, NULL);
	for (; started + 1 < n; started++)
		if (pthread_create(&th[started], NULL, unpack_worker, &p) != 0)
			break;
	unpack_worker(&p);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.mu);
	free(p.order);
	return p.r;
}
