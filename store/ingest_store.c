// SPDX-License-Identifier: MIT
/*
 * The store phase of an ingest: one worker per core reads every file, relocates, hashes,
 * then compares it with the stored content of its key or compresses it; then the stored
 * packs are compared and the new packs compressed frame by frame; then the new images
 * are published (ingest.c I1, I3, I4).
 */
#include "ingest.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- store: one file ---- */

/* Files up to this size are read into a buffer: mapping them costs more in page faults
 * and TLB shootdowns than copying. */
#define READ_MAX (1u << 20)

struct fileread {
	int fd;
	const uint8_t *data;
	uint64_t len;
	bool mapped;
	uint64_t (*extents)[2];
	size_t nextents;
};

/* A worker's read buffer, READ_MAX bytes. */
struct rbuf {
	uint8_t *p;
};

static void fileread_close(struct fileread *f)
{
	if (f->mapped)
		munmap((void *)f->data, f->len);
	if (f->fd >= 0)
		close(f->fd);
	free(f->extents);
}

/* The data extents of a sparse file, so holes are never read. */
static int find_extents(struct fileread *f)
{
	size_t cap = 0;
	off_t pos = 0;

	for (;;) {
		off_t data = lseek(f->fd, pos, SEEK_DATA), hole;

		if (data < 0)
			return errno == ENXIO ? 0 : neg_errno();
		hole = lseek(f->fd, data, SEEK_HOLE);
		if (hole < 0)
			return neg_errno();
		if (f->nextents == cap) {
			void *v;

			cap = cap ? 2 * cap : 16;
			v = realloc(f->extents, cap * sizeof(*f->extents));
			if (!v)
				return -ENOMEM;
			f->extents = v;
		}
		f->extents[f->nextents][0] = (uint64_t)data;
		f->extents[f->nextents][1] = (uint64_t)hole;
		f->nextents++;
		pos = hole;
	}
}

static bool same_stat(const struct inode *n, const struct stat *sb)
{
	return (uint64_t)sb->st_size == n->size &&
	       (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec == n->mtime_ns;
}

static int read_small(struct fileread *f, struct rbuf *b)
{
	size_t done = 0;

	while (done < f->len) {
		ssize_t r = pread(f->fd, b->p + done, f->len - done, (off_t)done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return neg_errno();
		if (r == 0)
			return -EAGAIN; /* shorter than it was: it changed */
		done += (size_t)r;
	}
	f->data = b->p;
	return 0;
}

static int open_file(struct ingest *in, struct inode *n, struct fileread *f, struct rbuf *b,
                     struct cfs_err *err)
{
	struct stat sb;
	void *map;
	int r;

	f->fd = ingest_open_rel(in->root_fd, n->rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (f->fd < 0)
		return err_set(err, neg_errno(), "%s/%s: cannot read: %s", in->prefix, n->rel,
		               strerror(errno));
	/* A small file is read for the size the walk saw; store_file's check after reading
	 * (I3) is what tells whether it changed. */
	f->len = n->size;
	if (f->len == 0)
		return 0;
	if (f->len <= READ_MAX) {
		r = read_small(f, b);
		if (r == -EAGAIN)
			return err_set(err, r, "%s/%s: file changed while it was read", in->prefix,
			               n->rel);
		if (r)
			return err_set(err, r, "%s/%s: cannot read: %s", in->prefix, n->rel,
			               strerror(-r));
		return 0;
	}
	if (fstat(f->fd, &sb) < 0)
		return err_set(err, neg_errno(), "%s/%s: %s", in->prefix, n->rel, strerror(errno));
	if (!same_stat(n, &sb))
		return err_set(err, -EAGAIN, "%s/%s: file changed while the prefix was read",
		               in->prefix, n->rel);
	if ((uint64_t)sb.st_blocks * 512 < f->len) {
		r = find_extents(f);
		if (r)
			return err_set(err, r, "%s/%s: cannot find holes: %s", in->prefix, n->rel,
			               strerror(-r));
	}
	/* Populated in one call: faulting page by page costs more than the hash. */
	map = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, f->fd, 0);
	if (map == MAP_FAILED)
		return err_set(err, neg_errno(), "%s/%s: cannot map: %s", in->prefix, n->rel,
		               strerror(errno));
	f->data = map;
	f->mapped = true;
	madvise(map, f->len, MADV_SEQUENTIAL);
	return 0;
}

static enum reloc_mode file_mode(struct ingest *in, const struct inode *n, const struct fileread *f,
                                 size_t *ret_placeholder)
{
	bool binary;
	size_t len;
	enum reloc_mode guess;

	*ret_placeholder = 0;
	/* A sparse file's holes are never read, so neither is it searched for the prefix. */
	if (f->nextents || f->len == 0)
		return RELOC_NONE;
	guess = reloc_mode_guess(n->rel, f->data, f->len);
	if (guess == RELOC_NONE)
		return RELOC_NONE;
	if (condameta_placeholder(in->meta, n->rel, &binary, &len)) {
		*ret_placeholder = len;
		return binary ? RELOC_BINARY : RELOC_TEXT;
	}
	return guess;
}

int ingest_collision(struct ingest *in, const char *rel, int r, struct cfs_err *err)
{
	if (r != -EBADMSG)
		return r;
	return err_set(err, r,
	               "%s/%s: a stored object has the same key but other content "
	               "(a hash collision or a corrupt store: run condafs verify)",
	               in->prefix, rel);
}

static int defer_compare(struct ingest *in, uint32_t node, const struct catalog_object *co,
                         const struct object_src *src)
{
	struct deferred d = {node, co->pack, co->pack_off, malloc(src->len ? src->len : 1),
	                     src->len};
	int r = 0;

	if (!d.data)
		return -ENOMEM;
	if (src->len)
		memcpy(d.data, src->data, src->len);
	pthread_mutex_lock(&in->lock);
	if (in->ndeferred == in->capdeferred) {
		size_t cap = in->capdeferred ? 2 * in->capdeferred : 1024;
		void *v = realloc(in->deferred, cap * sizeof(*in->deferred));

		if (v) {
			in->deferred = v;
			in->capdeferred = cap;
		} else {
			r = -ENOMEM;
		}
	}
	if (!r)
		in->deferred[in->ndeferred++] = d;
	pthread_mutex_unlock(&in->lock);
	if (r)
		free(d.data);
	return r;
}

/* Store (or find) the content of node k. */
static int store_file(struct ingest *in, struct catalog *cat, struct object_writer *w,
                      ZSTD_DCtx *dctx, struct rbuf *b, uint32_t k, struct cfs_err *err)
{
	struct inode *n = &in->nodes[k];
	struct fileread f = {.fd = -1};
	struct object_src src;
	struct reloc *rl = NULL;
	struct catalog_found found;
	const struct catalog_object *co = &found.o;
	struct catalog_file file = file_of(n);
	uint8_t *neutral = NULL;
	size_t nlen = 0, placeholder;
	enum reloc_mode mode;
	struct stat sb;
	int r;

	r = open_file(in, n, &f, b, err);
	if (r)
		goto out;
	mode = file_mode(in, n, &f, &placeholder);
	if (mode != RELOC_NONE) {
		r = reloc_scan(f.data, f.len, in->prefix, in->plen, mode, placeholder, &neutral,
		               &nlen, &rl, err);
		if (r)
			goto out;
	}
	if (rl) {
		src = (struct object_src){.data = neutral, .len = nlen};
		n->inserts = reloc_text_inserts(rl);
		r = reloc_encode(rl, &n->reloc, &n->reloc_len);
		if (r)
			goto out;
	} else {
		src = (struct object_src){.data = f.data,
		                          .len = f.len,
		                          .extents = (const uint64_t(*)[2])f.extents,
		                          .nextents = f.nextents};
	}
	n->neutral_size = src.len;
	object_hash(&src, &n->key);
	/* I3 for what was read into memory; a mapped file is read again below. */
	if (fstat(f.fd, &sb) < 0 || !same_stat(n, &sb)) {
		r = err_set(err, -EAGAIN, "%s/%s: file changed while it was read", in->prefix,
		            n->rel);
		goto out;
	}
	n->unchanged = !rl && stat_ctime_ns(&sb) == n->ctime_ns;
	r = catalog_object_for_file(cat, &n->key, &file, &found, err);
	if (r == 0) {
		/* Still there at the commit (gc.c G2), which needs to look for neither. */
		n->obj = co->id;
		n->group = rl ? 0 : found.group;
	}
	n->verified = r == 0 && found.verified && n->unchanged;
	if (n->verified) {
		n->stored = co->stored;
	} else if (r == 0 && co->pack) {
		r = defer_compare(in, k, co, &src);
	} else if (r == 0) {
		struct object *o = NULL;

		r = object_open(in->st->fd, &co->key, &o, err);
		if (r == 0)
			r = ingest_collision(in, n->rel, object_compare(o, dctx, 0, &src, err),
			                     err);
		object_close(o);
		n->stored = co->stored;
	} else if (r == -ENOENT && in->dry) {
		r = 0;
	} else if (r == -ENOENT && src.len <= PACK_MEMBER_MAX && !src.nextents) {
		r = packer_add(in->packer, &n->key, src.data, src.len, n->rel);
		n->packed = true;
	} else if (r == -ENOENT) {
		r = ingest_collision(in, n->rel, object_write(w, &n->key, &src, &n->stored, err),
		                     err);
	}
	if (r || !f.mapped)
		goto out;
	/* I3: the bytes we stored are the bytes the file had. */
	if (fstat(f.fd, &sb) < 0 || !same_stat(n, &sb))
		r = err_set(err, -EAGAIN, "%s/%s: file changed while it was read", in->prefix,
		            n->rel);
	else if (stat_ctime_ns(&sb) != n->ctime_ns)
		n->unchanged = false;
out:
	reloc_free(rl);
	free(neutral);
	fileread_close(&f);
	return r;
}

/* ---- store: all files, then the packs ---- */

/*
 * One pool of workers, two rounds of tasks. First every file, largest first (so the last
 * to finish are small ones). The worker that finishes the last file lays out what the
 * second round needs: the stored members to compare, grouped by pack, and the new packs.
 * Then the late tasks: compare one stored pack's members (each of its frames decoded
 * once), or compress one frame of a new pack; whoever compresses a pack's last frame
 * writes the pack. Frames are small tasks, so the workers run out of work together.
 */

struct worker {
	struct ingest *in;
	int index;
};

static void record_error(struct ingest *in, int r, const struct cfs_err *err)
{
	pthread_mutex_lock(&in->lock);
	if (!in->err_rc) {
		in->err_rc = r;
		if (in->err)
			*in->err = *err;
	}
	atomic_store(&in->failed, true);
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
}

static int by_pack(const void *a, const void *b)
{
	const struct deferred *x = a, *y = b;

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return (x->off > y->off) - (x->off < y->off);
}

/* O2 for the stored members of one pack: deferred[first, end), in pack order, so each
 * frame is decoded once. */
static int compare_pack(struct ingest *in, struct catalog *cat, ZSTD_DCtx *dctx, size_t first,
                        size_t end, struct cfs_err *err)
{
	struct catalog_object pack;
	struct object *o = NULL;
	int r = catalog_object_by_id(cat, in->deferred[first].pack, &pack, err);

	if (r == -ENOENT)
		r = err_set(err, -EUCLEAN, "%s: a member names a missing pack", in->st->dir);
	if (!r)
		r = object_open(in->st->fd, &pack.key, &o, err);
	for (size_t i = first; !r && i < end; i++) {
		const struct deferred *d = &in->deferred[i];
		struct object_src src = {.data = d->data, .len = d->len};

		r = ingest_collision(in, in->nodes[d->node].rel,
		                     object_compare(o, dctx, d->off, &src, err), err);
	}
	object_close(o);
	return r;
}

/* Group the deferred comparisons by pack: compare_starts[k] is where pack k's begin. */
static int group_deferred(struct ingest *in)
{
	if (in->ndeferred)
		qsort(in->deferred, in->ndeferred, sizeof(*in->deferred), by_pack);
	in->compare_starts = malloc((in->ndeferred + 1) * sizeof(*in->compare_starts));
	if (!in->compare_starts)
		return -ENOMEM;
	in->ncompare = 0;
	for (size_t i = 0; i < in->ndeferred; i++)
		if (i == 0 || in->deferred[i].pack != in->deferred[i - 1].pack)
			in->compare_starts[in->ncompare++] = i;
	in->compare_starts[in->ncompare] = in->ndeferred;
	return 0;
}

/* Cut the new contents into packs, each a set of frame tasks. */
static int layout_packs(struct ingest *in, struct cfs_err *err)
{
	int r = packer_layout(in->packer, &in->npacks);

	if (r == -EBADMSG)
		return err_set(err, r,
		               "%s: two files have the same key but other content (a hash "
		               "collision)",
		               in->prefix);
	if (r)
		return r;
	in->pack_keys = calloc(in->npacks ? in->npacks : 1, sizeof(*in->pack_keys));
	in->pack_stored = calloc(in->npacks ? in->npacks : 1, sizeof(*in->pack_stored));
	in->pack_frames = calloc(in->npacks ? in->npacks : 1, sizeof(struct object_frames *));
	in->frame_starts = malloc((in->npacks + 1) * sizeof(*in->frame_starts));
	if (!in->pack_keys || !in->pack_stored || !in->pack_frames || !in->frame_starts)
		return -ENOMEM;
	in->frame_starts[0] = 0;
	for (size_t i = 0; i < in->npacks; i++) {
		r = object_frames_new(packer_pack_len(in->packer, i), &in->pack_frames[i]);
		if (r)
			return r;
		in->frame_starts[i + 1] =
		        in->frame_starts[i] + object_frames_tasks(in->pack_frames[i]);
	}
	return 0;
}

/* What the late tasks need, once every file is done; then the late tasks may start. */
static int prepare_late(struct ingest *in, struct cfs_err *err)
{
	int r = group_deferred(in);

	if (!r && !in->dry)
		r = layout_packs(in, err);
	if (r)
		return r;
	pthread_mutex_lock(&in->lock);
	in->late_ready = true;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
	return 0;
}

/* Compress frame task k of the packs; the last frame of a pack writes it. */
static int pack_frame(struct ingest *in, struct object_writer *w, struct rbuf *b, size_t k,
                      struct cfs_err *err)
{
	size_t lo = 0, hi = in->npacks, p;
	uint64_t off, len;
	uint32_t i;
	bool last;
	int r;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (in->frame_starts[mid] <= k)
			lo = mid;
		else
			hi = mid;
	}
	p = lo;
	i = (uint32_t)(k - in->frame_starts[p]);
	off = (uint64_t)i << OBJECT_FRAME_SHIFT;
	len = packer_pack_len(in->packer, p);
	len = off < len ? len - off : 0;
	if (len > OBJECT_FRAME_SIZE)
		len = OBJECT_FRAME_SIZE;
	packer_gather(in->packer, p, off, (size_t)len, b->p);
	r = object_frames_compress(w, in->pack_frames[p], i, b->p, &last);
	if (r || !last)
		return r;
	r = packer_pack_key(in->packer, p, &in->pack_keys[p]);
	if (!r)
		r = object_frames_write(w, in->pack_frames[p], &in->pack_keys[p],
		                        &in->pack_stored[p], err);
	object_frames_free(in->pack_frames[p]);
	in->pack_frames[p] = NULL;
	return r;
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct ingest *in = wk->in;
	struct object_writer *w = in->writers[wk->index];
	struct catalog *cat = NULL;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	struct rbuf b = {malloc(READ_MAX)};
	struct cfs_err err;
	char db[PATH_MAX];
	size_t nlate;
	int r = 0;

	err.msg[0] = '\0';
	snprintf(db, sizeof(db), "%s/catalog.db", in->st->dir);
	if (!dctx || !b.p)
		r = -ENOMEM;
	if (!r)
		r = catalog_open(db, false, &cat, &err);
	/* One read transaction per round: one snapshot, and no lock taken per query. A key
	 * stored meanwhile by a concurrent ingest is found when its image is published or its
	 * row inserted (object.c O2, check_member_race). */
	if (!r)
		r = catalog_begin(cat, false, &err);
	while (!r && !atomic_load(&in->failed)) {
		size_t k = atomic_fetch_add(&in->next, 1);

		if (k >= in->nwork)
			break;
		r = store_file(in, cat, w, dctx, &b, in->work[k], &err);
		atomic_fetch_add(&in->files_done, 1);
		atomic_fetch_add(&in->bytes_done, in->nodes[in->work[k]].size);
		if (!r && atomic_fetch_add(&in->files_finished, 1) + 1 == in->nwork)
			r = prepare_late(in, &err);
	}
	pthread_mutex_lock(&in->lock);
	while (!r && !in->late_ready && !atomic_load(&in->failed))
		pthread_cond_wait(&in->cond, &in->lock);
	/* Not ready: another worker failed, maybe half way through laying them out. */
	nlate = !in->late_ready ? 0
	                        : in->ncompare + (in->npacks ? in->frame_starts[in->npacks] : 0);
	pthread_mutex_unlock(&in->lock);
	/* A stored member another worker found may be newer than this worker's snapshot:
	 * the late round reads one taken after every lookup of the first, which holds the
	 * member's pack too (gc.c G2 keeps it there). */
	if (cat)
		catalog_rollback(cat);
	if (!r && nlate)
		r = catalog_begin(cat, false, &err);
	while (!r && !atomic_load(&in->failed)) {
		size_t k = atomic_fetch_add(&in->next_late, 1);

		if (k >= nlate)
			break;
		if (k < in->ncompare)
			r = compare_pack(in, cat, dctx, in->compare_starts[k],
			                 in->compare_starts[k + 1], &err);
		else
			r = pack_frame(in, w, &b, k - in->ncompare, &err);
	}
	if (r)
		record_error(in, r, &err);
	if (cat)
		catalog_rollback(cat);
	free(b.p);
	catalog_close(cat);
	ZSTD_freeDCtx(dctx);
	pthread_mutex_lock(&in->lock);
	in->running--;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
	return NULL;
}

static int size_desc(const void *a, const void *b, void *ctx)
{
	const struct inode *nodes = ctx;
	uint64_t x = nodes[*(const uint32_t *)a].size, y = nodes[*(const uint32_t *)b].size;

	return (x < y) - (x > y);
}

static void report_progress(struct ingest *in)
{
	struct ingest_progress p = {
	        .files_done = atomic_load(&in->files_done),
	        .files_total = in->nwork,
	        .bytes_done = atomic_load(&in->bytes_done),
	        .bytes_total = in->bytes_total,
	};

	if (in->opts->progress)
		in->opts->progress(in->opts->ctx, &p);
}

/* Run nthreads workers through both rounds, reporting progress every 100 ms meanwhile. */
static int run_workers(struct ingest *in, int nthreads, struct cfs_err *err)
{
	struct worker wk[MAX_WORKERS];
	pthread_t tid[MAX_WORKERS];
	int started = 0, r = 0;

	if (!in->nwork)
		r = prepare_late(in, err);
	pthread_mutex_lock(&in->lock);
	for (int i = 0; !r && i < nthreads; i++) {
		wk[i] = (struct worker){in, i};
		if (pthread_create(&tid[i], NULL, worker_main, &wk[i])) {
			r = -EAGAIN;
			atomic_store(&in->failed, true);
			pthread_cond_broadcast(&in->cond);
			break;
		}
		started++;
		in->running++;
	}
	while (in->running) {
		struct timespec ts;

		pthread_mutex_unlock(&in->lock);
		report_progress(in);
		pthread_mutex_lock(&in->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (in->running)
			pthread_cond_timedwait(&in->cond, &in->lock, &ts);
	}
	pthread_mutex_unlock(&in->lock);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return r ? r : in->err_rc;
}

/* Everything written so far durable, then published, then durable again (I1). */
static int publish(struct ingest *in, int nthreads, struct cfs_err *err)
{
	int r = 0;

	if (syncfs(in->tmp_fd) < 0)
		return err_set(err, neg_errno(), "%s: cannot sync the store: %s", in->st->dir,
		               strerror(errno));
	for (int i = 0; !r && i < nthreads; i++)
		r = object_publish(in->writers[i], err);
	if (!r && syncfs(in->st->fd) < 0)
		r = err_set(err, neg_errno(), "%s: cannot sync the store: %s", in->st->dir,
		            strerror(errno));
	return r;
}

int ingest_store_files(struct ingest *in, struct cfs_err *err)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = ncpu < 1 ? 1 : ncpu > MAX_WORKERS ? MAX_WORKERS : (int)ncpu;
	int r;

	in->work = malloc((in->n ? in->n : 1) * sizeof(*in->work));
	if (!in->work)
		return -ENOMEM;
	for (size_t i = 0; i < in->n; i++) {
		if (in->nodes[i].type != NODE_FILE || is_secondary(in, &in->nodes[i]))
			continue;
		in->work[in->nwork++] = (uint32_t)i;
		in->bytes_total += in->nodes[i].size;
	}
	/* Largest first, so the last file to finish is a small one. */
	if (in->nwork)
		qsort_r(in->work, in->nwork, sizeof(*in->work), size_desc, in->nodes);
	in->err = err;
	r = packer_new(&in->packer);
	if (!in->dry && !r)
		r = object_tmp_open(in->st->fd, &in->tmp_fd, in->tmp_name, err);
	/* Storing nothing, it still clears what dead ingests left, as opening a directory
	 * of its own would; failing to is no reason to fail. */
	else if (!r)
		object_tmp_clean(in->st->fd, false, NULL, NULL, NULL);
	for (int i = 0; !r && i < nthreads; i++)
		r = object_writer_new(in->st->fd, in->tmp_fd, &in->writers[i]);
	if (!r)
		r = run_workers(in, nthreads, err);
	report_progress(in);
	if (r || in->dry)
		return r;
	return publish(in, nthreads, err);
}
