// SPDX-License-Identifier: MIT
/*
 * The store phase of an ingest: one worker per core reads every file, relocates, hashes,
 * then compares it with the stored content of its key or compresses it; then the stored
 * packs are compared and the new packs compressed frame by frame; then the new images
 * are published (ingest.c I1, I3, I4).
 */
#include "ingest.h"

#include "err.h"
#include "pyc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- store: one file ---- */

/* A worker's read buffer, READ_MAX bytes. */
struct rbuf {
	uint8_t *p;
};

/*
 * Small contents held in memory for the second round at most (new ones until they are
 * packed, stored ones until they are compared): past it, a new one gets an image of its
 * own and a stored one is compared at once, so the prefix's size bounds nothing here.
 * Python-heavy trees hold about half their bytes in such files: only prefixes of more
 * than about 2 GiB pack less than all of theirs.
 */
#define HELD_MAX (1024ull << 20)

/* Up to this many new images are made durable by an fsync each (and one of each directory
 * they go to) rather than by a syncfs before and after publishing: on this ext4 an fsync
 * took 0.3-0.5 ms and a syncfs 2 ms with nothing else to write, and a syncfs also waits for
 * everything else written to the file system since. */
#define PUBLISH_FSYNC_MAX 8

static bool hold(struct ingest *in, uint64_t len)
{
	uint64_t was = atomic_fetch_add(&in->held, len);

	if (was + len <= HELD_MAX)
		return true;
	atomic_fetch_sub(&in->held, len);
	return false;
}

static enum reloc_mode file_mode(struct ingest *in, const struct inode *n, const struct fileread *f,
                                 size_t *ret_placeholder)
{
	bool binary;
	size_t len;
	enum reloc_mode guess;

	*ret_placeholder = 0;
	if (f->len == 0)
		return RELOC_NONE;
	guess = reloc_mode_guess(n->rel, f->data, f->len);
	if (guess == RELOC_NONE)
		return RELOC_NONE;
	/* An install's file: its placeholder's mode is its package's paths.json's, which
	 * the environment's conda-meta record repeats. */
	if (n->plan) {
		*ret_placeholder = n->wplen;
		return n->wbinary ? RELOC_BINARY : RELOC_TEXT;
	}
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

/* O2 now for a stored member of a pack (deferred: compare_pack). */
static int compare_member(struct ingest *in, struct catalog *cat, ZSTD_DCtx *dctx,
                          const struct inode *n, const struct catalog_object *co,
                          const struct object_src *src, struct cfs_err *err)
{
	struct catalog_object pack;
	struct object *o = NULL;
	int r = catalog_object_by_id(cat, co->pack, &pack, err);

	if (r == -ENOENT)
		r = err_set(err, -EUCLEAN, "%s: a member names a missing pack", in->st->dir);
	if (!r)
		r = object_open(in->st->fd, &pack.key, &o, err);
	if (!r)
		r = ingest_collision(in, n->rel, object_compare(o, dctx, co->pack_off, src, err),
		                     err);
	object_close(o);
	return r;
}

static int child_cmp(const void *key, const void *elem)
{
	const char *name = key;
	const struct inode *y = elem;
	size_t len = strlen(name), n = len < y->namelen ? len : y->namelen;
	int c = memcmp(name, y->name, n);

	return c ? c : (len > y->namelen) - (len < y->namelen);
}

/* The source beside pyc n (__pycache__/NAME.TAG.pyc: NAME.py), or NULL. Children are
 * sorted by name (ingest_walk.c). */
static struct inode *pyc_source(struct ingest *in, const struct inode *n)
{
	char name[256];
	const struct inode *dir;

	if (!store_pyc_source(n->rel, name, sizeof(name)) || n->parent >= in->n)
		return NULL;
	dir = &in->nodes[in->nodes[n->parent].parent];
	return bsearch(name, in->nodes + dir->first_child, dir->nchildren, sizeof(*in->nodes),
	               child_cmp);
}

/*
 * Pyc n (read whole in f) rewritten for its source (store/pyc.c) when Python would use it
 * (its header matches the source) and the source holds the prefix in text mode: the source
 * is read here too, to know its neutral size and inserts, which its own store must find
 * again (ingest_check_pycs). Otherwise nothing: the pyc is stored as it is.
 */
static int pyc_rewrite(struct ingest *in, struct inode *n, const struct fileread *f,
                       uint8_t **ret_neutral, size_t *ret_nlen, struct reloc **ret_rl,
                       struct cfs_err *err)
{
	struct inode *s = pyc_source(in, n);
	struct fileread sf;
	struct reloc *srl = NULL;
	uint8_t *buf, *sneutral = NULL;
	size_t snlen = 0, placeholder, plen, splen;
	const char *prefix = node_prefix(in, n, &plen), *sprefix;
	int r;

	if (!s)
		return 0;
	sprefix = node_prefix(in, s, &splen);
	/* An install's pyc goes with its source's placeholder: paths.json names none for a
	 * pyc (conda never rewrites one), though it was compiled in the build prefix. */
	if (plen == 0 && n->plan) {
		prefix = sprefix;
		plen = splen;
	}
	/* The pyc and its source hold one prefix (an install's come from one package). */
	if (plen == 0 || splen != plen || memcmp(sprefix, prefix, plen) != 0)
		return 0;
	if (s->type != NODE_FILE || s->size == 0 || s->size > STORE_PYC_MAX ||
	    !pyc_header_matches(f->data, f->len, s->mtime_ns / 1000000000, s->size))
		return 0;
	buf = malloc(s->size);
	if (!buf)
		return err_set(err, -ENOMEM, "out of memory");
	r = fileread_open(in, s, buf, &sf, err);
	if (!r && sf.data && file_mode(in, s, &sf, &placeholder) == RELOC_TEXT)
		r = reloc_scan(sf.data, sf.len, prefix, plen, RELOC_TEXT, placeholder, &sneutral,
		               &snlen, &srl, err);
	if (!r && srl)
		r = pyc_scan(f->data, f->len, prefix, plen, snlen, reloc_text_inserts(srl),
		             ret_neutral, ret_nlen, ret_rl);
	if (r == -ENOMEM)
		err_set(err, r, "%s/%s: out of memory", in->prefix, n->rel);
	if (!r && *ret_rl) {
		n->pyc_src = (uint32_t)(s - in->nodes) + 1;
		n->pyc_src_inserts = reloc_text_inserts(srl);
		n->pyc_src_neutral = snlen;
	}
	fileread_close(&sf);
	free(buf);
	free(sneutral);
	reloc_free(srl);
	return r;
}

int ingest_check_pycs(struct ingest *in, struct cfs_err *err)
{
	for (size_t i = 0; i < in->n; i++) {
		const struct inode *n = &in->nodes[i], *s;

		if (!n->pyc_src)
			continue;
		s = content_of(in, &in->nodes[n->pyc_src - 1]);
		if (s->inserts != n->pyc_src_inserts || s->neutral_size != n->pyc_src_neutral)
			return ingest_changed(in, s, err);
	}
	return 0;
}

/* The content of node k in src (prefix-neutral), and its key. A file too large for the
 * worker's buffer, or with holes, is streamed: hashed now, its bytes given again to
 * whatever compares or compresses it (*ret_streamed). */
static int read_file(struct ingest *in, struct inode *n, struct fileread *f, struct rbuf *b,
                     struct object_src *src, struct reloc **ret_rl, uint8_t **ret_neutral,
                     bool *ret_streamed, struct cfs_err *err)
{
	bool relocatable = false;
	size_t nlen = 0, placeholder, plen;
	const char *prefix = node_prefix(in, n, &plen);
	enum reloc_mode mode;
	int r = fileread_open(in, n, b->p, f, err);

	if (!r && !f->data && f->len) {
		r = fileread_scan(f, &n->key, &relocatable, err);
		if (!r && relocatable)
			r = fileread_whole(f, err);
	}
	if (r)
		return r;
	*ret_streamed = !f->data && f->len;
	if (*ret_streamed) {
		*src = fileread_src(f);
		n->neutral_size = src->len;
		return 0;
	}
	mode = plen ? file_mode(in, n, f, &placeholder) : RELOC_NONE;
	if (mode != RELOC_NONE)
		r = reloc_scan(f->data, f->len, prefix, plen, mode, placeholder, ret_neutral, &nlen,
		               ret_rl, err);
	else
		r = pyc_rewrite(in, n, f, ret_neutral, &nlen, ret_rl, err);
	if (r)
		return r;
	if (*ret_rl) {
		*src = (struct object_src){.data = *ret_neutral, .len = nlen};
		n->inserts = reloc_text_inserts(*ret_rl);
		r = reloc_encode(*ret_rl, &n->reloc, &n->reloc_len);
		if (r)
			return r;
	} else {
		*src = (struct object_src){.data = f->data, .len = f->len};
	}
	n->neutral_size = src->len;
	object_hash(src, &n->key);
	return 0;
}

/* Store (or find) the content of node k. */
static int store_file(struct ingest *in, struct catalog *cat, struct object_writer *w,
                      ZSTD_DCtx *dctx, struct rbuf *b, uint32_t k, struct cfs_err *err)
{
	struct inode *n = &in->nodes[k];
	struct fileread f;
	struct object_src src;
	struct reloc *rl = NULL;
	struct catalog_found found;
	const struct catalog_object *co = &found.o;
	struct catalog_file file = file_of(n);
	uint8_t *neutral = NULL;
	bool streamed = false, again = false;
	struct stat sb;
	int r;

	r = read_file(in, n, &f, b, &src, &rl, &neutral, &streamed, err);
	if (r)
		goto out;
	/* I3 for what was read (or hashed) so far. */
	if (!fileread_unchanged(&f, &sb)) {
		r = ingest_changed(in, n, err);
		goto out;
	}
	/* An install's files are extracted for it and gone after it: no source to record. */
	n->unchanged = !rl && !n->plan && stat_ctime_ns(&sb) == n->ctime_ns;
	r = catalog_object_for_file(cat, &n->key, &file, &found, err);
	if (r == 0) {
		/* Still there at the commit (gc.c G2), which needs to look for neither. */
		n->obj = co->id;
		n->group = rl ? 0 : found.group;
	}
	n->verified = r == 0 && found.verified && n->unchanged;
	if (n->verified) {
		n->stored = co->stored;
	} else if (r == 0 && co->pack && !streamed && hold(in, src.len)) {
		r = defer_compare(in, k, co, &src);
	} else if (r == 0 && co->pack) {
		r = compare_member(in, cat, dctx, n, co, &src, err);
		again = streamed;
	} else if (r == 0) {
		struct object *o = NULL;

		r = object_open(in->st->fd, &co->key, &o, err);
		if (r == 0)
			r = ingest_collision(in, n->rel, object_compare(o, dctx, 0, &src, err),
			                     err);
		object_close(o);
		n->stored = co->stored;
		again = streamed;
	} else if (r == -ENOENT && in->dry) {
		r = 0;
	} else if (r == -ENOENT && !streamed && src.len <= PACK_MEMBER_MAX && hold(in, src.len)) {
		r = packer_add(in->packer, &n->key, src.data, src.len, n->rel);
		n->packed = true;
	} else if (r == -ENOENT) {
		r = ingest_collision(in, n->rel, object_write(w, &n->key, &src, &n->stored, err),
		                     err);
		again = streamed;
	}
	if (again)
		r = fileread_check(&f, r, err);
	if (r || !again)
		goto out;
	/* I3: the bytes we stored are the bytes the file had. */
	if (!fileread_unchanged(&f, &sb))
		r = ingest_changed(in, n, err);
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
		r = catalog_open(db, in->st->fd, false, NULL, &cat, &err);
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

/* Everything written so far durable, then published, then durable again (I1): a few
 * images (an install that adds a package) by an fsync each and of each directory they go
 * to, more by a syncfs before and after. On the publishing thread: no catalog. */
static void *publish_main(void *arg)
{
	struct ingest *in = arg;
	struct cfs_err *err = &in->publish_err;
	size_t pending = 0;
	bool few;
	int r = 0;

	for (int i = 0; i < in->nwriters; i++)
		pending += object_writer_pending(in->writers[i]);
	few = pending <= PUBLISH_FSYNC_MAX;
	for (int i = 0; few && !r && i < in->nwriters; i++)
		r = object_writer_sync(in->writers[i], err);
	if (!r && !few && syncfs(in->tmp_fd) < 0)
		r = err_set(err, neg_errno(), "%s: cannot sync the store: %s", in->st->dir,
		            strerror(errno));
	for (int i = 0; !r && i < in->nwriters; i++)
		r = object_publish(in->writers[i], few, err);
	if (!r && !few && syncfs(in->st->fd) < 0)
		r = err_set(err, neg_errno(), "%s: cannot sync the store: %s", in->st->dir,
		            strerror(errno));
	in->publish_r = r;
	return NULL;
}

/* The images published on a thread of their own, beside the commit's work until its
 * transaction commits (ingest_publish_wait): nothing names them before that. */
static int publish(struct ingest *in, int nthreads, struct cfs_err *err)
{
	/* A first ingest killed after this leaves images no row names in a catalog that
	 * names nothing: the mark tells them from a catalog put in place of the store's. */
	int r = catalog_mark_published(in->st->cat, err);

	if (r)
		return r;
	in->nwriters = nthreads;
	in->publishing = pthread_create(&in->publisher, NULL, publish_main, in) == 0;
	if (!in->publishing)
		publish_main(in);
	return in->publishing ? 0 : ingest_publish_wait(in, err);
}

int ingest_publish_wait(struct ingest *in, struct cfs_err *err)
{
	if (in->publishing)
		pthread_join(in->publisher, NULL);
	in->publishing = false;
	if (in->publish_r && err)
		*err = in->publish_err;
	return in->publish_r;
}

/* A content a package's record names: stored, and kept there until the commit (gc.c G2)
 * since the store lock is held from here on. Gone is an error, not a reason to fetch: a
 * gc reaped the last environment holding it since the install looked. */
static int find_known(struct ingest *in, struct inode *n, struct cfs_err *err)
{
	int r = catalog_object_id(in->st->cat, &n->key, &n->obj, err);

	if (r == -ENOENT)
		return err_set(err, -ESTALE,
		               "%s: its package's stored content is gone (a gc reaped it since "
		               "this install began); install again",
		               n->rel);
	return r;
}

/* Every known content, in one read transaction: an install from the store looks up
 * thousands, and each lookup on its own would take and drop SQLite's locks. */
static int find_known_all(struct ingest *in, struct cfs_err *err)
{
	bool any = false;
	int r = 0;

	for (size_t i = 0; !any && i < in->n; i++)
		any = in->nodes[i].known;
	if (!any)
		return 0;
	r = catalog_begin(in->st->cat, false, err);
	for (size_t i = 0; !r && i < in->n; i++)
		if (in->nodes[i].known && in->nodes[i].type == NODE_FILE)
			r = find_known(in, &in->nodes[i], err);
	catalog_rollback(in->st->cat);
	return r;
}

int ingest_store_files(struct ingest *in, struct cfs_err *err)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = ncpu < 1 ? 1 : ncpu > MAX_WORKERS ? MAX_WORKERS : (int)ncpu;
	int r;

	r = find_known_all(in, err);
	if (r)
		return r;
	in->work = malloc((in->n ? in->n : 1) * sizeof(*in->work));
	if (!in->work)
		return -ENOMEM;
	for (size_t i = 0; i < in->n; i++) {
		if (in->nodes[i].type != NODE_FILE || is_secondary(in, &in->nodes[i]))
			continue;
		if (in->nodes[i].known)
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
	r = in->after_store ? in->after_store(in, in->after_arg, err) : 0;
	return r ? r : publish(in, nthreads, err);
}
