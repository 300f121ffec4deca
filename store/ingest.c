// SPDX-License-Identifier: MIT
/*
 * Ingest: walk a solved conda prefix, store every file's prefix-neutral content once, and
 * commit the environment (tree, packages, object references) in one transaction.
 *
 * Invariants:
 * I1: no catalog row names an object that is not durable: objects are fsynced and linked
 *     (object.c O1), their directories fsynced, before the transaction that names them
 *     commits (publishing runs beside the commit's work, which waits for it to end).
 * I2: an environment is in the catalog whole or not at all (catalog.c C1): kill -9 at any
 *     moment leaves at most unreferenced objects, which verify reports and gc frees.
 * I3: what is stored is what was read, from the file the walk saw: a file that is not
 *     that inode (device, inode, type) when opened, whose size or mtime differs after
 *     reading, or (read in two passes, ingest_read.c) whose chunks differ between the pass
 *     that hashed them and the pass that stored them, fails the ingest.
 * I4: a stored key is shared only after its bytes are compared with the file's (object.c
 *     O2), or when the file is the very inode whose bytes were stored or compared as that
 *     content before (catalog.c C5), with the ctime it had then, and kept it while it was
 *     read. The kernel sets ctime on every change to an inode, and no caller can set it
 *     back, so such a file still holds the bytes that were verified.
 *
 * Phases: walk (one thread, breadth first, children sorted by name so that a directory's
 * children get consecutive ids; conda-meta is read meanwhile on another), store (one
 * worker per core: every file read, relocated, hashed, then compared or compressed; then
 * the stored packs compared and the new packs compressed frame by frame), publish (two
 * syncfs, or an fsync per image for a few, on a thread of its own), commit (one thread,
 * one transaction, committed once publishing is done).
 *
 * The prefix may be a user's, changing while root reads it (README, "Security model"): it
 * is opened once (open_named) and every path under it from that descriptor with no
 * symbolic link followed (open_beneath), with its owner's fs credentials: the walk and
 * conda-meta on their threads, the workers around each open.
 */
#include "ingest.h"

#include "activate_scan.h"
#include "err.h"
#include "pkgset.h"
#include "textfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void ingest_warn(struct ingest *in, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!in->opts->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	in->opts->warn(in->opts->ctx, msg);
}

static void inode_release(struct inode *n)
{
	free(n->rel);
	free(n->reloc);
	free(n->target);
}

/* ---- the whole ingest ---- */

/* The prefix's canonical path, from its descriptor: the path it was opened by, every link
 * on the way resolved, as realpath would say it but without a second lookup; and its
 * length, which readlink gave. */
static int fd_path(int fd, char **ret, size_t *ret_len)
{
	static const char deleted[] = " (deleted)";
	char link[64], buf[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, sizeof(buf));
	if (n < 0)
		return neg_errno();
	if ((size_t)n == sizeof(buf))
		return -ENAMETOOLONG;
	buf[n] = '\0';
	if (buf[0] != '/' || ((size_t)n >= sizeof(deleted) - 1 &&
	                      strcmp(buf + n - (sizeof(deleted) - 1), deleted) == 0))
		return -ENOENT;
	*ret = strdup(buf);
	if (!*ret)
		return -ENOMEM;
	*ret_len = (size_t)n;
	return 0;
}

static int creds_error(struct ingest *in, int r, bool entering, struct cfs_err *err)
{
	return err_set(err, r, "%s: cannot %s the credentials of its owner (uid %u): %s",
	               in->prefix, entering ? "take" : "give back", (unsigned)in->creds.uid,
	               strerror(-r));
}

/* fn(in, arg, err) on this thread with the credentials of the prefix's owner: what they
 * cannot read fails the ingest, and root reads nothing on their behalf. */
static int as_owner(struct ingest *in, int (*fn)(struct ingest *in, void *arg, struct cfs_err *err),
                    void *arg, struct cfs_err *err)
{
	int r = fscreds_enter(&in->creds), left;

	if (r)
		return creds_error(in, r, true, err);
	r = fn(in, arg, err);
	left = fscreds_leave(&in->creds);
	if (!r && left)
		r = creds_error(in, left, false, err);
	return r;
}

static int read_meta(struct ingest *in, void *arg, struct cfs_err *err)
{
	return condameta_read_at(in->root_fd, in->prefix, arg, err);
}

/* The activate.d scripts looked at, and the bytes of each: a few of a few KB in practice. */
#define ACTIVATE_SCAN_FILES 256
#define ACTIVATE_SCAN_MAX   (1u << 20)

/* Warn of each activate.d script that writes into the prefix (activate_scan.h): served
 * read-only, it fails there on every activation. A script that cannot be read is the
 * walk's business, not this warning's. */
static int scan_activate(struct ingest *in, void *arg, struct cfs_err *err)
{
	static const char dir_rel[] = "etc/conda/activate.d";
	int fd = open_beneath(in->root_fd, dir_rel, O_RDONLY | O_DIRECTORY);
	struct dirent *de;
	DIR *d;

	(void)arg;
	(void)err;
	if (fd < 0)
		return 0;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return 0;
	}
	for (unsigned seen = 0; seen < ACTIVATE_SCAN_FILES && (de = readdir(d)); seen++) {
		size_t len = strlen(de->d_name), tlen;
		char rel[sizeof(dir_rel) + NAME_MAX + 1], *text;

		if (len < 3 || strcmp(de->d_name + len - 3, ".sh") != 0)
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", dir_rel, de->d_name);
		if (textfile_read(in->root_fd, rel, rel, ACTIVATE_SCAN_MAX, &text, &tlen, NULL))
			continue;
		if (activate_scan_writes(text, tlen))
			ingest_warn(in,
			            "%s/%s: writes into $CONDA_PREFIX, which is served read-only: "
			            "that write fails (EROFS) on every activation",
			            in->prefix, rel);
		free(text);
	}
	closedir(d);
	return 0;
}

static int walk(struct ingest *in, void *arg, struct cfs_err *err)
{
	(void)arg;
	return ingest_walk(in, err);
}

struct meta_job {
	struct ingest *in;
	struct condameta *meta;
	struct cfs_err *err;
	int r;
};

static void *meta_main(void *arg)
{
	struct meta_job *j = arg;

	j->r = as_owner(j->in, read_meta, &j->meta, j->err);
	return NULL;
}

/*
 * Read conda-meta (into in->meta: 0 or its error in err) on a thread of its own while this
 * one walks the tree (*ret_walked: 0 or the walk's error, in walk_err): neither needs the
 * other, and each takes tens of milliseconds. The caller reports conda-meta's error first,
 * then any lock file mismatch, then the walk's, as when they ran one after the other.
 */
static int read_prefix(struct ingest *in, int *ret_walked, struct cfs_err *walk_err,
                       struct cfs_err *err)
{
	struct meta_job j = {.in = in, .err = err};
	pthread_t tid;
	bool threaded = pthread_create(&tid, NULL, meta_main, &j) == 0;

	if (!threaded)
		meta_main(&j);
	*ret_walked = as_owner(in, walk, NULL, walk_err);
	if (threaded)
		pthread_join(tid, NULL);
	in->meta = j.meta;
	return j.r;
}

void ingest_init(struct ingest *in, struct store *st, const struct ingest_opts *opts)
{
	static const struct ingest_opts no_opts;

	*in = (struct ingest){
	        .st = st, .opts = opts ? opts : &no_opts, .root_fd = -1, .tmp_fd = -1};
	pthread_mutex_init(&in->lock, NULL);
	pthread_mutex_init(&in->reloc_lock, NULL);
	pthread_cond_init(&in->cond, NULL);
}

int ingest_phases(struct ingest *in, const char *hash, const struct pkgset *set,
                  enum ingest_result *ret_result, struct cfs_err *err)
{
	struct store_env old;
	bool exists;
	int held = -1, r, w;

	/* gc.c G2: nothing this ingest finds stored may vanish before it commits. */
	r = store_lock(in->st, LOCK_SH, &held, err);
	if (r)
		return r;
	r = catalog_env_by_hash(in->st->cat, hash, &old, err);
	if (r && r != -ENOENT)
		goto out;
	exists = r == 0;
	in->dry = exists && !in->opts->replace;
	r = ingest_store_files(in, err);
	if (!r)
		r = ingest_check_pycs(in, err);
	if (r)
		goto out;
	if (exists) {
		r = ingest_compare_tree(in, &old, err);
		if (r == 0) {
			*ret_result = INGEST_PRESENT;
			goto out;
		}
		if (r != -EEXIST || !in->opts->replace)
			goto out;
	}
	r = ingest_commit(in, hash, set, ret_result, err);
out:
	/* Done publishing before the store lock goes (gc.c G2); its error only when nothing
	 * failed first. */
	w = ingest_publish_wait(in, r ? NULL : err);
	if (!r)
		r = w;
	close(held);
	return r;
}

void ingest_release(struct ingest *in)
{
	ingest_publish_wait(in, NULL);
	for (int i = 0; i < MAX_WORKERS; i++)
		object_writer_free(in->writers[i]);
	object_tmp_close(in->st->fd, in->tmp_fd, in->tmp_name);
	for (size_t i = 0; i < in->ndeferred; i++)
		free(in->deferred[i].data);
	free(in->deferred);
	free(in->compare_starts);
	free(in->pack_keys);
	free(in->pack_stored);
	for (size_t i = 0; in->pack_frames && i < in->npacks; i++)
		object_frames_free(in->pack_frames[i]);
	free(in->pack_frames);
	free(in->frame_starts);
	packer_free(in->packer);
	for (size_t i = 0; i < in->n; i++)
		inode_release(&in->nodes[i]);
	free(in->nodes);
	free(in->work);
	condameta_free(in->meta);
	if (in->root_fd >= 0)
		close(in->root_fd);
	fscreds_release(&in->creds);
	pthread_cond_destroy(&in->cond);
	pthread_mutex_destroy(&in->reloc_lock);
	pthread_mutex_destroy(&in->lock);
}

int store_ingest(struct store *st, const char *prefix, const struct ingest_opts *opts,
                 char ret_hash[33], enum ingest_result *ret_result, struct cfs_err *err)
{
	struct ingest in;
	struct pkgset *lock = NULL;
	struct cfs_err walk_err;
	struct stat sb;
	char *real = NULL, hash[33];
	int walked, r;

	ingest_init(&in, st, opts);
	r = store_writable(st, err);
	if (r)
		goto out;
	/* Resolved once: from here on the prefix is its descriptor. */
	r = open_named(prefix, O_RDONLY | O_DIRECTORY);
	if (r < 0) {
		r = err_set(err, r, "%s: %s", prefix, strerror(-r));
		goto out;
	}
	in.root_fd = r;
	if (fstat(in.root_fd, &sb) < 0) {
		r = err_set(err, neg_errno(), "%s: %s", prefix, strerror(errno));
		goto out;
	}
	r = fd_path(in.root_fd, &real, &in.plen);
	if (r) {
		r = err_set(err, r, "%s: cannot tell its path: %s", prefix, strerror(-r));
		goto out;
	}
	in.prefix = real;
	r = fscreds_init(&in.creds, sb.st_uid);
	if (r) {
		r = creds_error(&in, r, true, err);
		goto out;
	}
	r = read_prefix(&in, &walked, err ? &walk_err : NULL, err);
	if (r)
		goto out;
	if (in.opts->lock_path) {
		r = pkgset_from_lock(in.opts->lock_path, in.opts->lock_platform, in.opts->lock_env,
		                     &lock, err);
		if (!r) {
			r = pkgset_match(condameta_pkgset(in.meta), lock, err);
			if (r && err) {
				char msg[sizeof(err->msg)];

				memcpy(msg, err->msg, sizeof(msg));
				err_set(err, r, "%s: %s", in.opts->lock_path, msg);
			}
		}
		if (r)
			goto out;
	}
	if (walked) {
		r = walked;
		if (err)
			*err = walk_err;
		goto out;
	}
	/* Warnings only: a prefix the scan cannot read is stored all the same. */
	(void)as_owner(&in, scan_activate, NULL, NULL);
	pkgset_hash(condameta_pkgset(in.meta), hash);
	r = ingest_phases(&in, hash, condameta_pkgset(in.meta), ret_result, err);
	if (!r)
		memcpy(ret_hash, hash, 33);
out:
	ingest_release(&in);
	pkgset_free(lock);
	free(real);
	return r;
}
