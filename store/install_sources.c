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

/*
 * Unpacking in parallel: checking and unpacking the archives is most of a cold install, and
 * each is independent of the others. A pool's workers take archives as they are queued:
 * the caches' all at once, downloads as each is whole, while the rest download (the
 * download's thread is the pool's too once it is done). Of those queued, the largest is
 * taken first: a large archive is one stream to decompress, on one thread, and taken last
 * (as a lock's order often has it: libtorch, then pytorch) it would end the unpacking with
 * the other threads idle.
 */
#define UNPACK_THREADS_MAX 8

struct unpack_pool {
	struct install *ins;
	size_t *queue; /* sources to unpack: [next, n) not taken yet */
	off_t *size;   /* of each queued source's archive (-1: cannot be looked at) */
	size_t n, next;
	bool closed; /* nothing more will be queued */
	pthread_mutex_t mu;
	pthread_cond_t more;
	size_t failed; /* the failed package's index, SIZE_MAX: none yet */
	int r;
	struct cfs_err *err;
};

static int pool_init(struct unpack_pool *p, struct install *ins, struct cfs_err *err)
{
	*p = (struct unpack_pool){.ins = ins, .failed = SIZE_MAX, .err = err};
	p->queue = malloc((ins->n ? ins->n : 1) * sizeof(*p->queue));
	p->size = malloc((ins->n ? ins->n : 1) * sizeof(*p->size));
	if (!p->queue || !p->size) {
		free(p->queue);
		free(p->size);
		return err_set(err, -ENOMEM, "out of memory");
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->more, NULL);
	return 0;
}

static void pool_release(struct unpack_pool *p)
{
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->more);
	free(p->queue);
	free(p->size);
}

/* Queue source i (its archive whole: a cache's, or downloaded into dl/). */
static void pool_add(struct unpack_pool *p, size_t i)
{
	const struct source *s = &p->ins->src[i];
	struct stat sb;
	int r = s->archive ? stat(s->archive, &sb)
	                   : fstatat(p->ins->dl_fd, s->fn, &sb, AT_SYMLINK_NOFOLLOW);

	pthread_mutex_lock(&p->mu);
	p->queue[p->n] = i;
	/* One that cannot be looked at goes last, for unpack to say why. */
	p->size[p->n++] = r == 0 ? sb.st_size : -1;
	pthread_cond_signal(&p->more);
	pthread_mutex_unlock(&p->mu);
}

static void pool_close(struct unpack_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->closed = true;
	pthread_cond_broadcast(&p->more);
	pthread_mutex_unlock(&p->mu);
}

/* The next source to unpack (the largest queued), SIZE_MAX when none will come; p->mu held. */
static size_t pool_take(struct unpack_pool *p)
{
	size_t best;

	while (p->next == p->n && !p->closed)
		pthread_cond_wait(&p->more, &p->mu);
	if (p->next == p->n)
		return SIZE_MAX;
	best = p->next;
	for (size_t k = p->next + 1; k < p->n; k++)
		if (p->size[k] > p->size[best] ||
		    (p->size[k] == p->size[best] && p->queue[k] < p->queue[best]))
			best = k;
	if (best != p->next) {
		size_t qi = p->queue[best];
		off_t sz = p->size[best];

		p->queue[best] = p->queue[p->next];
		p->size[best] = p->size[p->next];
		p->queue[p->next] = qi;
		p->size[p->next] = sz;
	}
	return p->queue[p->next++];
}

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
		i = pool_take(p);
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

/* Start the workers of a pool of one thread per core, the calling thread one of them (it
 * takes its turn in pool_finish), and no more than the `count` sources it will unpack;
 * *ret_started of them run. */
static void pool_start(struct unpack_pool *p, size_t count, pthread_t *th, size_t *ret_started)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus <= 1                   ? 0
	           : cpus > UNPACK_THREADS_MAX ? UNPACK_THREADS_MAX - 1
	                                       : (size_t)cpus - 1;

	if (n + 1 > count)
		n = count ? count - 1 : 0;
	for (*ret_started = 0; *ret_started < n; (*ret_started)++)
		if (pthread_create(&th[*ret_started], NULL, unpack_worker, p) != 0)
			break;
}

/* The calling thread's turn, then every worker's end. */
static void pool_finish(struct unpack_pool *p, const pthread_t *th, size_t started)
{
	pool_close(p);
	unpack_worker(p);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
}

int install_unpack_cached(struct install *ins, struct cfs_err *err)
{
	struct unpack_pool p;
	pthread_t th[UNPACK_THREADS_MAX];
	size_t started;
	int r = pool_init(&p, ins, err);

	if (r)
		return r;
	for (size_t i = 0; i < ins->n; i++)
		if (ins->src[i].archive && !ins->src[i].rec && !ins->src[i].dir &&
		    !ins->src[i].files)
			pool_add(&p, i);
	pool_start(&p, p.n, th, &started);
	pool_finish(&p, th, started);
	r = p.r;
	pool_release(&p);
	return r;
}

struct fetching {
	const struct install *ins;
	struct unpack_pool *pool;
	const size_t *src; /* the source of each fetch item */
};

static void on_fetch(const struct fetch_progress *p, void *arg)
{
	const struct fetching *f = arg;
	struct install_fetch ip = {p->done, p->total, p->bytes, p->bytes_total, p->rate};

	f->ins->opts->fetching(f->ins->opts->ingest.ctx, &ip);
}

static void on_fetched(size_t item, void *arg)
{
	const struct fetching *f = arg;

	pool_add(f->pool, f->src[item]);
}

/* An archive failed (its digest, its unpacking): the downloads are for nothing. */
static bool on_fetch_stop(void *arg)
{
	const struct fetching *f = arg;
	bool failed;

	pthread_mutex_lock(&f->pool->mu);
	failed = f->pool->failed != SIZE_MAX;
	pthread_mutex_unlock(&f->pool->mu);
	return failed;
}

/* Sources by their archives' sizes in the lock, largest first, then in the lock's order. */
static int by_size_desc(const void *a, const void *b, void *arg)
{
	const struct install *ins = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	uint64_t sx = ins->src[x].p->size, sy = ins->src[y].p->size;

	if (sx != sy)
		return sx < sy ? 1 : -1;
	return (x > y) - (x < y);
}

/*
 * The k sources of src to download, largest first when the lock gives every size (pixi's
 * does), else in the set's order (by name). From a server that limits each connection, a
 * large archive begun late (libtorch, 25th of torch's 50) would arrive well after the
 * rest, and its unpacking, which waits for its last byte (N1), end the install; over a
 * link the connections share, the order changes nothing.
 */
static void fetch_order(struct install *ins, size_t *src, size_t k)
{
	for (size_t j = 0; j < k; j++)
		if (!ins->src[src[j]].p->size)
			return;
	qsort_r(src, k, sizeof(*src), by_size_desc, ins);
}

int install_fetch_unpack(struct install *ins, struct cfs_err *err)
{
	struct mirrors *m = NULL;
	struct fetch_item *items = calloc(ins->n ? ins->n : 1, sizeof(*items));
	size_t *src = calloc(ins->n ? ins->n : 1, sizeof(*src));
	char **urls = calloc(ins->n ? ins->n : 1, sizeof(*urls));
	pthread_t th[UNPACK_THREADS_MAX];
	struct unpack_pool p;
	struct fetching f = {ins, &p, src};
	struct fetch_hooks hooks = {.done = on_fetched, .stop = on_fetch_stop, .arg = &f};
	struct cfs_err ferr = {{0}};
	size_t k = 0, started;
	bool pool = false;
	int r = items && src && urls ? mirrors_new(&m) : -ENOMEM;

	if (r) {
		r = err_set(err, r, "out of memory");
		goto out;
	}
	for (size_t i = 0; !r && i < ins->opts->nmirrors; i++)
		r = mirrors_add(m, ins->opts->mirrors[i], err);
	for (size_t i = 0; !r && i < ins->n; i++)
		if (ins->src[i].fetch && !ins->src[i].dir && !ins->src[i].files)
			src[k++] = i;
	fetch_order(ins, src, k);
	for (size_t j = 0; !r && j < k; j++) {
		r = mirrors_map(m, ins->src[src[j]].p->url, &urls[j]);
		if (r)
			r = err_set(err, r, "out of memory");
		/* The lock's size, for the progress's total only: the digest says whether an
		 * archive is the lock's, and a lock whose size is off fails nothing for it. */
		items[j] = (struct fetch_item){.url = urls[j],
		                               .name = ins->src[src[j]].fn,
		                               .size_hint = ins->src[src[j]].p->size};
	}
	if (r || !k)
		goto out;
	r = pool_init(&p, ins, err);
	if (r)
		goto out;
	pool = true;
	if (ins->opts->fetching)
		hooks.progress = on_fetch;
	/* The calling thread downloads first: on a fast link that is most of a core. */
	pool_start(&p, k, th, &started);
	r = fetch_all(items, k, ins->dl_fd, FETCH_PARALLEL, &hooks, &ferr);
	if (r && r != -ECANCELED) {
		/* The install fails: what is queued is unpacked for nothing. */
		pthread_mutex_lock(&p.mu);
		p.next = p.n;
		pthread_mutex_unlock(&p.mu);
	}
	pool_finish(&p, th, started);
	/* A failed archive stopped the downloads (-ECANCELED): its failure is the one to
	 * report. Any other failure of the download is, as none of the rest can be had. */
	if (r && r != -ECANCELED)
		*err = ferr;
	else
		r = p.r;
out:
	if (pool)
		pool_release(&p);
	for (size_t i = 0; urls && i < k; i++)
		free(urls[i]);
	free(urls);
	free(src);
	free(items);
	mirrors_free(m);
	return r;
}
