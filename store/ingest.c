// SPDX-License-Identifier: MIT
/*
 * Ingest: walk a solved conda prefix, store every file's prefix-neutral content once, and
 * commit the environment (tree, packages, object references) in one transaction.
 *
 * Invariants:
 * I1: no catalog row names an object that is not durable: objects are fsynced and linked
 *     (object.c O1), their directories fsynced, before the transaction that names them.
 * I2: an environment is in the catalog whole or not at all (catalog.c C1): kill -9 at any
 *     moment leaves at most unreferenced objects, which verify reports and gc frees.
 * I3: what is stored is what was read: a file whose size or mtime differs after reading
 *     fails the ingest.
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
 * syncfs), commit (one thread, one transaction).
 */
#include "store_impl.h"

#include "condameta.h"
#include "err.h"
#include "pack.h"
#include "pkgset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 8
#define DIFF_SHOWN  8

/* One path of the prefix, by its index in the walk. */
struct inode {
	char *rel; /* relative to the prefix, "" for the top; owned */
	const char *name;
	size_t namelen;
	uint32_t parent;
	enum node_type type;
	uint32_t mode;
	int64_t mtime_ns, ctime_ns;
	uint64_t size; /* as on disk */
	dev_t dev;
	ino_t ino;
	nlink_t nlink;
	uint32_t first_child, nchildren;
	uint32_t hardlink; /* index + 1 of the first path of the same inode (its own for the
	                    * first), 0 when the inode has one path */
	/* Filled by the store phase (files) or the walk (symlinks). */
	struct objkey key;
	uint64_t neutral_size;
	uint32_t inserts;
	uint8_t *reloc; /* encoded relocation record, owned */
	size_t reloc_len;
	bool packed;     /* a new content that went to the packer */
	bool unchanged;  /* kept its ctime while read, and was not relocated: a source (C5) */
	bool verified;   /* a source recorded before as holding this content (I4) */
	int64_t obj;     /* its content's object: found by the store phase, or made by commit */
	int64_t group;   /* its group, when the store phase found one */
	uint64_t stored; /* image bytes of a content with an image of its own */
	char *target;    /* symlinks: neutral target, owned */
	size_t target_len;
};

struct ingest {
	struct store *st;
	const struct ingest_opts *opts;
	const char *prefix; /* as the environment knows itself: realpath */
	size_t plen;
	int root_fd;
	struct condameta *meta;
	struct inode *nodes;
	size_t n, cap;
	bool dry; /* hash only: the environment exists and may not be replaced */
	/* The store phase. */
	int tmp_fd; /* this ingest's temporary directory */
	char tmp_name[64];
	struct packer *packer;
	struct deferred *deferred; /* stored members to compare, guarded by lock */
	size_t ndeferred, capdeferred;
	size_t *compare_starts; /* deferred grouped by pack: ncompare + 1 bounds */
	size_t ncompare;
	size_t npacks;
	struct objkey *pack_keys;
	uint64_t *pack_stored;
	struct object_frames **pack_frames;
	size_t *frame_starts; /* the packs' frame tasks: npacks + 1 bounds */
	uint32_t *work;
	size_t nwork;
	atomic_size_t next, next_late;
	atomic_bool failed;
	atomic_size_t files_finished;
	atomic_uint_fast64_t files_done, bytes_done;
	uint64_t bytes_total;
	pthread_mutex_t lock; /* guards err_rc, err, deferred, late_ready, running */
	pthread_cond_t cond;  /* late_ready or failed set, or a worker done */
	bool late_ready;      /* the late tasks are laid out */
	int running;
	int err_rc;
	struct cfs_err *err;
	struct object_writer *writers[MAX_WORKERS];
};

static void warn(struct ingest *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct ingest *in, const char *fmt, ...)
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

/* ---- walk ---- */

static int add_node(struct ingest *in, struct inode **ret)
{
	if (in->n == in->cap) {
		size_t cap = in->cap ? 2 * in->cap : 1024;
		struct inode *v = realloc(in->nodes, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		in->nodes = v;
		in->cap = cap;
	}
	*ret = &in->nodes[in->n++];
	memset(*ret, 0, sizeof(**ret));
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	const struct inode *x = a, *y = b;
	size_t n = x->namelen < y->namelen ? x->namelen : y->namelen;
	int c = memcmp(x->name, y->name, n);

	return c ? c : (x->namelen > y->namelen) - (x->namelen < y->namelen);
}

static const char *special_kind(mode_t m)
{
	return S_ISFIFO(m)   ? "fifo"
	       : S_ISSOCK(m) ? "socket"
	       : S_ISCHR(m)  ? "character device"
	       : S_ISBLK(m)  ? "block device"
	                     : "special file";
}

static int64_t ctime_ns(const struct stat *sb)
{
	return (int64_t)sb->st_ctim.tv_sec * 1000000000 + sb->st_ctim.tv_nsec;
}

/* Fill the attributes of n from st; -EINVAL for special files the caller must skip. */
static int set_attrs(struct ingest *in, struct inode *n, const struct stat *sb)
{
	uint32_t mode = sb->st_mode & 07777;

	if (S_ISDIR(sb->st_mode))
		n->type = NODE_DIR;
	else if (S_ISREG(sb->st_mode))
		n->type = NODE_FILE;
	else if (S_ISLNK(sb->st_mode))
		n->type = NODE_SYMLINK;
	else
		return -EINVAL;
	if (mode & 07000) {
		warn(in, "%s/%s: setuid, setgid and sticky bits are not kept", in->prefix, n->rel);
		mode &= 0777;
	}
	n->mode = mode;
	n->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
	n->ctime_ns = ctime_ns(sb);
	n->size = S_ISREG(sb->st_mode) ? (uint64_t)sb->st_size : 0;
	n->dev = sb->st_dev;
	n->ino = sb->st_ino;
	n->nlink = sb->st_nlink;
	return 0;
}

static int read_symlink(struct ingest *in, int dfd, struct inode *n, struct cfs_err *err)
{
	char buf[PATH_MAX];
	uint8_t *neutral = NULL;
	size_t nlen = 0;
	struct reloc *rl = NULL;
	ssize_t len = readlinkat(dfd, n->name, buf, sizeof(buf));
	int r;

	if (len < 0)
		return err_set(err, neg_errno(), "%s/%s: %s", in->prefix, n->rel, strerror(errno));
	if ((size_t)len == sizeof(buf))
		return err_set(err, -ENAMETOOLONG, "%s/%s: link target too long", in->prefix,
		               n->rel);
	/* Absolute targets into the prefix follow the environment to wherever it is served;
	 * anything else (a sibling of the prefix, a system path) is kept as it is. */
	if ((size_t)len >= in->plen && memcmp(buf, in->prefix, in->plen) == 0 &&
	    ((size_t)len == in->plen || buf[in->plen] == '/')) {
		r = reloc_scan((const uint8_t *)buf, in->plen, in->prefix, in->plen, RELOC_TEXT, 0,
		               &neutral, &nlen, &rl, err);
		if (r)
			return r;
		if (rl) {
			/* The prefix, then the rest of the target unchanged. */
			uint8_t *t = realloc(neutral, nlen + (size_t)len - in->plen + 1);

			if (!t) {
				free(neutral);
				reloc_free(rl);
				return -ENOMEM;
			}
			neutral = t;
			memcpy(neutral + nlen, buf + in->plen, (size_t)len - in->plen);
			nlen += (size_t)len - in->plen;
		}
	}
	if (rl) {
		r = reloc_encode(rl, &n->reloc, &n->reloc_len);
		n->inserts = reloc_text_inserts(rl);
		reloc_free(rl);
		n->target = (char *)neutral;
		n->target_len = nlen;
		return r;
	}
	n->target = malloc((size_t)len + 1);
	if (!n->target)
		return -ENOMEM;
	memcpy(n->target, buf, (size_t)len);
	n->target_len = (size_t)len;
	return 0;
}

/* openat for a path relative to the prefix; one component at a time when the path is
 * longer than the kernel takes in one call (deep trees are kept too). */
static int open_rel(int root_fd, const char *rel, int flags)
{
	char *copy, *save = NULL, *comp, *next;
	int dfd, fd = -1, e;

	if (strlen(rel) < PATH_MAX)
		return openat(root_fd, rel, flags);
	copy = strdup(rel);
	dfd = copy ? dup(root_fd) : -1;
	if (dfd < 0) {
		free(copy);
		errno = ENOMEM;
		return -1;
	}
	comp = strtok_r(copy, "/", &save);
	while (comp) {
		next = strtok_r(NULL, "/", &save);
		if (!next) {
			fd = openat(dfd, comp, flags);
			break;
		}
		fd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		e = errno;
		close(dfd);
		errno = e;
		if (fd < 0)
			break;
		dfd = fd;
		fd = -1;
		comp = next;
	}
	e = errno;
	if (fd >= 0 || comp)
		close(dfd);
	free(copy);
	errno = e;
	return fd;
}

/* List directory i, append its children sorted by name. */
static int walk_dir(struct ingest *in, uint32_t i, struct cfs_err *err)
{
	const char *rel = in->nodes[i].rel;
	int dfd = open_rel(in->root_fd, *rel ? rel : ".",
	                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	size_t first = in->n;
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (dfd < 0)
		return err_set(err, neg_errno(), "%s/%s: %s", in->prefix, rel, strerror(errno));
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -ENOMEM;
	}
	while ((errno = 0, de = readdir(d))) {
		struct inode *n;
		struct stat sb;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			r = err_set(err, neg_errno(), "%s/%s%s%s: %s", in->prefix, rel,
			            *rel ? "/" : "", de->d_name, strerror(errno));
			goto out;
		}
		r = add_node(in, &n);
		if (r)
			goto out;
		if (asprintf(&n->rel, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
			n->rel = NULL;
			in->n--;
			r = -ENOMEM;
			goto out;
		}
		n->name = n->rel + strlen(n->rel) - strlen(de->d_name);
		n->namelen = strlen(de->d_name);
		n->parent = i;
		if (set_attrs(in, n, &sb)) {
			if (!in->opts->skip_special) {
				r = err_set(err, -EINVAL,
				            "%s/%s: special file (%s) cannot be stored", in->prefix,
				            n->rel, special_kind(sb.st_mode));
				goto out;
			}
			warn(in, "%s/%s: special file (%s) skipped", in->prefix, n->rel,
			     special_kind(sb.st_mode));
			free(n->rel);
			in->n--;
			continue;
		}
		if (n->type == NODE_SYMLINK) {
			r = read_symlink(in, dfd, n, err);
			if (r)
				goto out;
		}
	}
	if (errno) {
		r = err_set(err, neg_errno(), "%s/%s: %s", in->prefix, rel, strerror(errno));
		goto out;
	}
	/* name pointers point into rel, which does not move with the array */
	qsort(in->nodes + first, in->n - first, sizeof(*in->nodes), name_cmp);
	in->nodes[i].first_child = (uint32_t)first;
	in->nodes[i].nchildren = (uint32_t)(in->n - first);
out:
	closedir(d);
	return r;
}

static int ino_cmp(const void *a, const void *b, void *ctx)
{
	const struct inode *nodes = ctx;
	const struct inode *x = &nodes[*(const uint32_t *)a], *y = &nodes[*(const uint32_t *)b];

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return (*(const uint32_t *)a > *(const uint32_t *)b) -
	       (*(const uint32_t *)a < *(const uint32_t *)b);
}

/* Hard links are one object: every path of an inode but the first points at the first. */
static int find_hardlinks(struct ingest *in)
{
	uint32_t *v = malloc((in->n ? in->n : 1) * sizeof(*v));
	size_t k = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < in->n; i++)
		if (in->nodes[i].type == NODE_FILE && in->nodes[i].nlink > 1)
			v[k++] = (uint32_t)i;
	if (k)
		qsort_r(v, k, sizeof(*v), ino_cmp, in->nodes);
	for (size_t j = 1; j < k; j++) {
		struct inode *a = &in->nodes[v[j - 1]], *b = &in->nodes[v[j]];

		if (a->dev == b->dev && a->ino == b->ino) {
			if (!a->hardlink)
				a->hardlink = v[j - 1] + 1;
			b->hardlink = a->hardlink;
		}
	}
	free(v);
	return 0;
}

static int walk(struct ingest *in, struct cfs_err *err)
{
	struct inode *top;
	struct stat sb;
	int r;

	if (fstat(in->root_fd, &sb) < 0)
		return err_set(err, neg_errno(), "%s: %s", in->prefix, strerror(errno));
	r = add_node(in, &top);
	if (r)
		return r;
	top->rel = strdup("");
	if (!top->rel)
		return -ENOMEM;
	top->name = top->rel;
	set_attrs(in, top, &sb);
	/* The array grows behind us: breadth first, by index. */
	for (uint32_t i = 0; i < in->n; i++) {
		if (in->nodes[i].type != NODE_DIR)
			continue;
		r = walk_dir(in, i, err);
		if (r)
			return r;
		if (in->n > UINT32_MAX / 2)
			return err_set(err, -EFBIG, "%s: too many files", in->prefix);
	}
	return find_hardlinks(in);
}

/* A later path of a hard-linked inode: its content is the first path's. */
static bool is_secondary(const struct ingest *in, const struct inode *n)
{
	return n->hardlink && &in->nodes[n->hardlink - 1] != n;
}

static const struct inode *content_of(const struct ingest *in, const struct inode *n)
{
	return n->hardlink ? &in->nodes[n->hardlink - 1] : n;
}

/* ---- store: one file ---- */

/* A small content whose key is stored already, as a member of a pack: compared after the
 * store phase, in pack order, so each frame of a pack is decoded once. */
struct deferred {
	uint32_t node;
	int64_t pack;
	uint64_t off;
	uint8_t *data; /* owned copy of the content */
	size_t len;
};

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

	f->fd = open_rel(in->root_fd, n->rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
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

static int collision(struct ingest *in, const char *rel, int r, struct cfs_err *err)
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

/* The file as the walk saw it. */
static struct catalog_file file_of(const struct inode *n)
{
	return (struct catalog_file){(int64_t)n->dev, (int64_t)n->ino, n->ctime_ns, n->mode,
	                             n->mtime_ns};
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
	n->unchanged = !rl && ctime_ns(&sb) == n->ctime_ns;
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
			r = collision(in, n->rel, object_compare(o, dctx, 0, &src, err), err);
		object_close(o);
		n->stored = co->stored;
	} else if (r == -ENOENT && in->dry) {
		r = 0;
	} else if (r == -ENOENT && src.len <= PACK_MEMBER_MAX && !src.nextents) {
		r = packer_add(in->packer, &n->key, src.data, src.len, n->rel);
		n->packed = true;
	} else if (r == -ENOENT) {
		r = collision(in, n->rel, object_write(w, &n->key, &src, &n->stored, err), err);
	}
	if (r || !f.mapped)
		goto out;
	/* I3: the bytes we stored are the bytes the file had. */
	if (fstat(f.fd, &sb) < 0 || !same_stat(n, &sb))
		r = err_set(err, -EAGAIN, "%s/%s: file changed while it was read", in->prefix,
		            n->rel);
	else if (ctime_ns(&sb) != n->ctime_ns)
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

		r = collision(in, in->nodes[d->node].rel,
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
		r = catalog_open(db, false, NULL, &cat, &err);
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

static int store_files(struct ingest *in, struct cfs_err *err)
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

/* ---- commit ---- */

/* A member this commit finds stored by a concurrent ingest must hold our content. */
static int check_member_race(struct ingest *in, const struct inode *c, int64_t obj,
                             struct cfs_err *err)
{
	struct catalog_object mine, pack;
	struct object *o = NULL;
	struct object_src src = {0};
	size_t pi;
	uint64_t off, len;
	int r = catalog_object_by_id(in->st->cat, obj, &mine, err);

	if (!r)
		r = packer_find(in->packer, &c->key, &pi, &off, &len);
	if (r)
		return r;
	src.data = packer_member_data(in->packer, pi, off);
	src.len = len;
	if (mine.pack) {
		r = catalog_object_by_id(in->st->cat, mine.pack, &pack, err);
		if (!r)
			r = object_open(in->st->fd, &pack.key, &o, err);
		if (!r)
			r = object_compare(o, in->st->dctx, mine.pack_off, &src, err);
	} else {
		r = object_open(in->st->fd, &mine.key, &o, err);
		if (!r)
			r = object_compare(o, in->st->dctx, 0, &src, err);
	}
	object_close(o);
	return collision(in, c->rel, r, err);
}

/* The catalog row for a file's content: its own image, or a member of one of our packs. */
static int ref_content(struct ingest *in, const struct inode *c, const int64_t *pack_ids,
                       int64_t *ret_obj, bool *ret_new, struct cfs_err *err)
{
	struct catalog_object o = {.key = c->key, .size = c->neutral_size, .stored = c->stored};
	size_t pi = 0;
	uint64_t len, plen;
	bool fresh;
	int r;

	if (c->packed) {
		r = packer_find(in->packer, &c->key, &pi, &o.pack_off, &len);
		if (r)
			return err_set(err, -EUCLEAN, "%s/%s: packed content lost", in->prefix,
			               c->rel);
		o.pack = pack_ids[pi];
		/* A member's share of its pack, for per-environment accounting. */
		plen = packer_pack_len(in->packer, pi);
		o.stored = plen ? len * in->pack_stored[pi] / plen : 0;
	}
	/* The references come with catalog_env_ref, once the nodes are in. */
	r = catalog_object_ref(in->st->cat, &o, 0, ret_obj, &fresh, err);
	if (!r)
		*ret_new = fresh;
	if (!r && c->packed && !fresh) {
		struct catalog_object now;

		/* Ours unless a concurrent ingest stored the same key first. */
		r = catalog_object_by_id(in->st->cat, *ret_obj, &now, err);
		if (!r && now.pack != o.pack)
			r = check_member_race(in, c, *ret_obj, err);
	}
	return r;
}

/* C5: file c's bytes are the content of obj. */
static int record_source(struct ingest *in, const struct inode *c, int64_t obj, struct cfs_err *err)
{
	struct catalog_file file = file_of(c);

	return catalog_source_set(in->st->cat, &file, obj, err);
}

static int insert_tree(struct ingest *in, int64_t env_id, int64_t base, const char *hash,
                       struct cfs_err *err)
{
	int64_t *pack_ids = calloc(in->npacks ? in->npacks : 1, sizeof(*pack_ids));
	int r = pack_ids ? 0 : -ENOMEM;

	for (size_t i = 0; !r && i < in->npacks; i++) {
		struct catalog_object o = {.key = in->pack_keys[i],
		                           .kind = OBJECT_PACK,
		                           .stored = in->pack_stored[i],
		                           .size = packer_pack_len(in->packer, i)};
		bool fresh;

		r = catalog_object_ref(in->st->cat, &o, 0, &pack_ids[i], &fresh, err);
	}
	for (size_t i = 0; !r && i < in->n; i++) {
		const struct inode *n = &in->nodes[i];
		struct inode *c = &in->nodes[content_of(in, n) - in->nodes];
		struct catalog_node_row row = {
		        .id = base + (int64_t)i,
		        .env = env_id,
		        .parent = i ? base + n->parent : 0,
		        /* The top directory is named by the environment hash. */
		        .name = i ? n->name : hash,
		        .namelen = i ? n->namelen : strlen(hash),
		        .type = n->type,
		        .mode = n->mode,
		        .mtime_ns = n->mtime_ns,
		        .size = n->type == NODE_FILE ? c->neutral_size : n->target_len,
		        .inserts = c->inserts,
		        .hardlink = n->hardlink ? base + n->hardlink - 1 : 0,
		        .first_child = base + n->first_child,
		        .nchildren = n->nchildren,
		        .target = n->target,
		        .target_len = n->target_len,
		        .reloc = c->reloc,
		        .reloc_len = c->reloc_len,
		};

		if (n->type == NODE_FILE) {
			bool fresh = false;

			/* A content the store phase found has its object, and maybe its group. */
			if (!c->obj)
				r = ref_content(in, c, pack_ids, &c->obj, &fresh, err);
			row.obj = c->obj;
			if (!r && c == n && c->unchanged && !c->verified)
				r = record_source(in, c, row.obj, err);
			if (!r && !c->reloc && c == n && c->group)
				row.group = c->group;
			else if (!r && !c->reloc)
				r = catalog_group(in->st->cat, row.obj, fresh, n->mode, n->mtime_ns,
				                  &row.group, err);
		}
		if (!r)
			r = catalog_node_insert(in->st->cat, &row, err);
	}
	if (!r)
		r = catalog_env_ref(in->st->cat, env_id, err);
	free(pack_ids);
	return r;
}

/* ---- an environment that is stored already ---- */

/* What the store has of one path, for the comparison. */
struct old_node {
	char *path;
	struct store_node n;
	bool has_key;
	struct objkey key;
	char *target;
	size_t target_len;
};

struct old_tree {
	struct old_node *v;
	size_t n, cap;
	int64_t root;
};

static int old_add(void *ctx, const struct store_node *n, const struct objkey *key,
                   const void *target, size_t target_len)
{
	struct old_tree *t = ctx;
	struct old_node *o;
	const char *parent = "";
	size_t pi;

	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 1024;
		void *v = realloc(t->v, cap * sizeof(*t->v));

		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	if (t->n == 0)
		t->root = n->id;
	/* Parents come before their children in id order. */
	pi = (size_t)(n->parent - t->root);
	if (n->parent && pi < t->n)
		parent = t->v[pi].path;
	o = &t->v[t->n];
	memset(o, 0, sizeof(*o));
	o->n = *n;
	if (!n->parent)
		o->path = strdup("");
	else if (asprintf(&o->path, "%s%s%.*s", parent, *parent ? "/" : "", (int)n->namelen,
	                  n->name) < 0)
		o->path = NULL;
	if (!o->path)
		return -ENOMEM;
	if (key) {
		o->has_key = true;
		o->key = *key;
	}
	if (target_len) {
		o->target = malloc(target_len);
		if (!o->target) {
			free(o->path);
			return -ENOMEM;
		}
		memcpy(o->target, target, target_len);
		o->target_len = target_len;
	}
	t->n++;
	return 0;
}

static void old_tree_release(struct old_tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].path);
		free(t->v[i].target);
	}
	free(t->v);
}

static int old_cmp(const void *a, const void *b)
{
	return strcmp(((const struct old_node *)a)->path, ((const struct old_node *)b)->path);
}

static int new_cmp(const void *a, const void *b, void *ctx)
{
	const struct inode *nodes = ctx;

	return strcmp(nodes[*(const uint32_t *)a].rel, nodes[*(const uint32_t *)b].rel);
}

/* What differs between one path of the prefix and the store, or NULL. */
static const char *node_diff(const struct ingest *in, const struct inode *n,
                             const struct old_node *o)
{
	const struct inode *c = content_of(in, n);

	if (n->type != o->n.type)
		return "type";
	if (n->mode != o->n.mode)
		return "mode";
	if (n->mtime_ns != o->n.mtime_ns)
		return "mtime";
	if (n->type == NODE_FILE &&
	    (!o->has_key || memcmp(c->key.b, o->key.b, 16) != 0 ||
	     c->neutral_size != o->n.size_neutral || c->inserts != o->n.text_inserts ||
	     !!c->reloc != o->n.relocated))
		return "content";
	if (n->type == NODE_SYMLINK &&
	    (n->target_len != o->target_len || memcmp(n->target, o->target, n->target_len) != 0 ||
	     !!n->reloc != o->n.relocated))
		return "link target";
	return NULL;
}

struct diff_text {
	char buf[700];
	size_t len;
	unsigned count;
};

static void diff_add(struct diff_text *d, const char *path, const char *what)
{
	if (d->count++ < DIFF_SHOWN) {
		int k = snprintf(d->buf + d->len, sizeof(d->buf) - d->len, "%s%s (%s)",
		                 d->len ? ", " : "", *path ? path : ".", what);

		if (k > 0)
			d->len += (size_t)k < sizeof(d->buf) - d->len ? (size_t)k
			                                              : sizeof(d->buf) - d->len - 1;
	}
}

/* 0 if the prefix's tree is the stored one; -EEXIST with the differences if not. */
static int compare_tree(struct ingest *in, const struct store_env *env, struct cfs_err *err)
{
	struct old_tree t = {0};
	struct diff_text d = {0};
	uint32_t *order = NULL;
	size_t i = 0, j = 0;
	int r;

	r = catalog_env_tree(in->st->cat, env->id, old_add, &t, err);
	if (r)
		goto out;
	order = malloc((in->n ? in->n : 1) * sizeof(*order));
	if (!order) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < in->n; k++)
		order[k] = (uint32_t)k;
	qsort_r(order, in->n, sizeof(*order), new_cmp, in->nodes);
	if (t.n)
		qsort(t.v, t.n, sizeof(*t.v), old_cmp);
	while (i < in->n || j < t.n) {
		const struct inode *n = i < in->n ? &in->nodes[order[i]] : NULL;
		int c = !n ? 1 : j >= t.n ? -1 : strcmp(n->rel, t.v[j].path);

		if (c < 0) {
			diff_add(&d, n->rel, "only in the prefix");
			i++;
		} else if (c > 0) {
			diff_add(&d, t.v[j].path, "only in the store");
			j++;
		} else {
			const char *what = node_diff(in, n, &t.v[j]);

			if (what)
				diff_add(&d, n->rel, what);
			i++;
			j++;
		}
	}
	if (d.count)
		r = err_set(err, -EEXIST,
		            "%s: differs from the stored environment %s in %u path%s: %s%s; "
		            "--replace stores this tree instead",
		            in->prefix, env->hash, d.count, d.count == 1 ? "" : "s", d.buf,
		            d.count > DIFF_SHOWN ? ", ..." : "");
out:
	free(order);
	old_tree_release(&t);
	return r;
}

/* ---- the whole ingest ---- */

struct meta_job {
	const char *prefix;
	struct condameta *meta;
	struct cfs_err *err;
	int r;
};

static void *meta_main(void *arg)
{
	struct meta_job *j = arg;

	j->r = condameta_read(j->prefix, &j->meta, j->err);
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
	struct meta_job j = {.prefix = in->prefix, .err = err};
	pthread_t tid;
	bool threaded = pthread_create(&tid, NULL, meta_main, &j) == 0;

	if (!threaded)
		meta_main(&j);
	*ret_walked = walk(in, walk_err);
	if (threaded)
		pthread_join(tid, NULL);
	in->meta = j.meta;
	return j.r;
}

static int commit(struct ingest *in, const char *hash, const struct pkgset *set,
                  enum ingest_result *ret_result, struct cfs_err *err)
{
	struct store_env env = {0}, old;
	int64_t base, env_id;
	bool replacing = false;
	int r;

	r = catalog_begin(in->st->cat, true, err);
	if (r)
		return r;
	r = catalog_env_by_hash(in->st->cat, hash, &old, err);
	if (r == 0) {
		/* Stored meanwhile by a concurrent ingest, or stored before and replaced now. */
		if (!in->opts->replace) {
			catalog_rollback(in->st->cat);
			r = compare_tree(in, &old, err);
			if (r == 0)
				*ret_result = INGEST_PRESENT;
			return r;
		}
		/* Hidden, not deleted: a mount may be serving its open files (gc.c G4). */
		r = catalog_env_hide(in->st->cat, old.id, time(NULL), err);
		replacing = true;
	} else if (r == -ENOENT) {
		r = 0;
	}
	if (!r)
		r = catalog_node_max_id(in->st->cat, &base, err);
	if (r)
		goto fail;
	base++;
	memcpy(env.hash, hash, 33);
	snprintf(env.platform, sizeof(env.platform), "%s", pkgset_platform(set));
	snprintf(env.source_prefix, sizeof(env.source_prefix), "%s", in->prefix);
	env.created = env.last_used = time(NULL);
	env.root = base;
	for (size_t i = 0; i < in->n; i++) {
		if (in->nodes[i].type != NODE_FILE)
			continue;
		env.files++;
		env.logical_bytes += in->nodes[i].size;
	}
	r = catalog_node_reserve(in->st->cat, base + (int64_t)in->n - 1, err);
	if (!r)
		r = catalog_env_insert(in->st->cat, &env, set, &env_id, err);
	if (!r)
		r = insert_tree(in, env_id, base, hash, err);
	if (!r && replacing)
		r = catalog_env_retag(in->st->cat, old.id, env_id, err);
	if (!r)
		r = catalog_commit(in->st->cat, err);
	if (r)
		goto fail;
	*ret_result = replacing ? INGEST_REPLACED : INGEST_NEW;
	return 0;
fail:
	catalog_rollback(in->st->cat);
	return r;
}

int store_ingest(struct store *st, const char *prefix, const struct ingest_opts *opts,
                 char ret_hash[33], enum ingest_result *ret_result, struct cfs_err *err)
{
	static const struct ingest_opts no_opts;
	struct ingest in = {.st = st, .opts = opts ? opts : &no_opts, .root_fd = -1, .tmp_fd = -1};
	struct pkgset *lock = NULL;
	struct store_env old;
	struct cfs_err walk_err;
	char *real = NULL, hash[33];
	bool exists;
	int held = -1, walked, r;

	pthread_mutex_init(&in.lock, NULL);
	pthread_cond_init(&in.cond, NULL);
	if (st->flags & STORE_READONLY) {
		r = err_set(err, -EROFS, "%s: store opened read-only", st->dir);
		goto out;
	}
	real = realpath(prefix, NULL);
	if (!real) {
		r = err_set(err, neg_errno(), "%s: %s", prefix, strerror(errno));
		goto out;
	}
	in.prefix = real;
	in.plen = strlen(real);
	in.root_fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (in.root_fd < 0) {
		r = err_set(err, neg_errno(), "%s: %s", real, strerror(errno));
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
	pkgset_hash(condameta_pkgset(in.meta), hash);
	/* gc.c G2: nothing this ingest finds stored may vanish before it commits. */
	r = store_lock(st, LOCK_SH, &held, err);
	if (r)
		goto out;
	r = catalog_env_by_hash(st->cat, hash, &old, err);
	if (r && r != -ENOENT)
		goto out;
	exists = r == 0;
	in.dry = exists && !in.opts->replace;
	r = store_files(&in, err);
	if (r)
		goto out;
	if (exists) {
		r = compare_tree(&in, &old, err);
		if (r == 0) {
			*ret_result = INGEST_PRESENT;
			goto done;
		}
		if (r != -EEXIST || !in.opts->replace)
			goto out;
	}
	r = commit(&in, hash, condameta_pkgset(in.meta), ret_result, err);
	if (r)
		goto out;
done:
	memcpy(ret_hash, hash, 33);
	r = 0;
out:
	for (int i = 0; i < MAX_WORKERS; i++)
		object_writer_free(in.writers[i]);
	object_tmp_close(st->fd, in.tmp_fd, in.tmp_name);
	for (size_t i = 0; i < in.ndeferred; i++)
		free(in.deferred[i].data);
	free(in.deferred);
	free(in.compare_starts);
	free(in.pack_keys);
	free(in.pack_stored);
	for (size_t i = 0; in.pack_frames && i < in.npacks; i++)
		object_frames_free(in.pack_frames[i]);
	free(in.pack_frames);
	free(in.frame_starts);
	packer_free(in.packer);
	for (size_t i = 0; i < in.n; i++)
		inode_release(&in.nodes[i]);
	free(in.nodes);
	free(in.work);
	pkgset_free(lock);
	condameta_free(in.meta);
	if (in.root_fd >= 0)
		close(in.root_fd);
	if (held >= 0)
		close(held);
	free(real);
	pthread_cond_destroy(&in.cond);
	pthread_mutex_destroy(&in.lock);
	return r;
}
