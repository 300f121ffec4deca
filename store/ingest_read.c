// SPDX-License-Identifier: MIT
/*
 * Reading one file of the prefix for the store phase, in memory bounded whatever the file
 * holds. The file is opened beneath the prefix with no symbolic link followed, with its
 * owner's credentials, and must be the inode the walk saw. A small file is read whole into
 * the worker's buffer; a larger or sparse one is streamed through that buffer a chunk at a
 * time, twice (once to hash it, once to compress or compare it), its holes found with
 * SEEK_DATA/SEEK_HOLE and never read. Nothing is mapped: a user who truncates a mapped
 * file would kill root's ingest with SIGBUS.
 *
 * Between the two passes the file could change. Each chunk's bytes are summed in the
 * first pass and checked in the second, and the second must read the same chunks, so what
 * is stored is what was hashed (ingest.c I3), or the ingest fails.
 */
#include "ingest.h"

#include "err.h"
#include "useropen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

bool ingest_same_stat(const struct inode *n, const struct stat *sb)
{
	return (uint64_t)sb->st_size == n->size &&
	       (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec == n->mtime_ns;
}

static const char *kind_of(mode_t m)
{
	return S_ISREG(m)    ? "a regular file"
	       : S_ISDIR(m)  ? "a directory"
	       : S_ISLNK(m)  ? "a symbolic link"
	       : S_ISFIFO(m) ? "a fifo"
	       : S_ISSOCK(m) ? "a socket"
	                     : "a device";
}

int ingest_changed(struct ingest *in, const struct inode *n, struct cfs_err *err)
{
	return err_set(err, -EAGAIN, "%s/%s: file changed while it was read", in->prefix, n->rel);
}

static int read_at(int fd, uint8_t *p, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, p + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return neg_errno();
		if (r == 0)
			return -EAGAIN; /* shorter than it was: it changed */
		done += (size_t)r;
	}
	return 0;
}

/* True when the file has a hole: its blocks do not cover its size, and the filesystem
 * says where one is (a compressed or inline file takes few blocks and has none). */
static bool has_hole(int fd, const struct stat *sb)
{
	off_t h;

	if ((uint64_t)sb->st_blocks * 512 >= (uint64_t)sb->st_size)
		return false;
	h = lseek(fd, 0, SEEK_HOLE);
	return h >= 0 && h < sb->st_size;
}

int fileread_open(struct ingest *in, struct inode *n, uint8_t *buf, struct fileread *f,
                  struct cfs_err *err)
{
	struct stat sb;
	int r, left;

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->in = in;
	f->n = n;
	f->buf = buf;
	f->len = n->size;
	if (n->src_data) {
		/* An unpacked package's data file: the install's own, with no holes. */
		f->fd = n->src_fd;
		f->borrowed = true;
		f->base = n->src_off;
		if (f->len > READ_MAX)
			return 0;
		r = read_at(f->fd, buf, f->len, f->base);
		if (r)
			return err_set(err, r == -EAGAIN ? -EIO : r, "%s/%s: cannot read: %s",
			               in->prefix, n->rel, strerror(r == -EAGAIN ? EIO : -r));
		f->data = buf;
		return 0;
	}
	r = fscreds_enter(&in->creds);
	if (r)
		return err_set(err, r,
		               "%s/%s: cannot take the credentials of the prefix's owner: %s",
		               in->prefix, n->rel, strerror(-r));
	f->fd = n->src_rel ? open_beneath(n->src_fd, n->src_rel, O_RDONLY)
	                   : open_beneath(in->root_fd, n->rel, O_RDONLY);
	left = fscreds_leave(&in->creds);
	if (f->fd < 0)
		return ingest_open_error(in, n->rel, f->fd, err);
	if (left)
		return err_set(err, left,
		               "%s/%s: cannot give back the credentials of the "
		               "prefix's owner: %s",
		               in->prefix, n->rel, strerror(-left));
	if (fstat(f->fd, &sb) < 0)
		return err_set(err, neg_errno(), "%s/%s: %s", in->prefix, n->rel, strerror(errno));
	/* The very file the walk saw: not another one moved there, nor a fifo. */
	if (!ingest_same_inode(n, &sb))
		return err_set(err, -EAGAIN,
		               "%s/%s: changed while the prefix was read (it is %s%s)", in->prefix,
		               n->rel, S_ISREG(sb.st_mode) ? "" : "now ",
		               S_ISREG(sb.st_mode) ? "another file" : kind_of(sb.st_mode));
	if (!ingest_same_stat(n, &sb))
		return ingest_changed(in, n, err);
	f->sparse = f->len && has_hole(f->fd, &sb);
	if (f->len > READ_MAX || f->sparse)
		return 0;
	/* Read for the size the walk saw; store_file's check after reading (I3) is what tells
	 * whether it changed. */
	r = read_at(f->fd, buf, f->len, 0);
	if (r == -EAGAIN)
		return ingest_changed(in, n, err);
	if (r)
		return err_set(err, r, "%s/%s: cannot read: %s", in->prefix, n->rel, strerror(-r));
	f->data = buf;
	return 0;
}

bool fileread_unchanged(const struct fileread *f, struct stat *sb)
{
	memset(sb, 0, sizeof(*sb));
	if (f->borrowed)
		return true;
	return fstat(f->fd, sb) == 0 && ingest_same_stat(f->n, sb);
}

void fileread_close(struct fileread *f)
{
	if (f->fd >= 0 && !f->borrowed)
		close(f->fd);
	free(f->whole);
	free(f->sums);
	if (f->reloc_held)
		pthread_mutex_unlock(&f->in->reloc_lock);
}

/* ---- streaming ---- */

static int stream_fail(struct fileread *f, int r)
{
	if (!f->err)
		f->err = r;
	return r;
}

/* Look for the prefix and for a NUL in the chunk at p (the first pass reads every chunk of
 * a file without holes once, in order). */
static void scan_chunk(struct fileread *f, const uint8_t *p, size_t n)
{
	size_t plen, keep, k;
	const char *prefix = node_prefix(f->in, f->n, &plen);

	keep = plen ? plen - 1 : 0;
	if (!f->nul && memchr(p, 0, n))
		f->nul = true;
	if (f->found || !f->scan)
		return;
	/* An occurrence across the boundary starts in the last plen - 1 bytes before it. */
	k = n < keep ? n : keep;
	memcpy(f->carry + f->ncarry, p, k);
	if (memmem(f->carry, f->ncarry + k, prefix, plen) || memmem(p, n, prefix, plen)) {
		f->found = true;
		return;
	}
	if (n >= keep) {
		memcpy(f->carry, p + n - keep, keep);
		f->ncarry = keep;
	} else {
		size_t have = f->ncarry + n;

		if (have > keep) {
			memmove(f->carry, f->carry + have - keep, keep);
			have = keep;
		}
		f->ncarry = have;
	}
}

/* The first pass reads chunks in increasing order; one read again replaces its sum. */
static int add_sum(struct fileread *f, uint64_t c, uint64_t sum)
{
	if (f->nsums && f->sums[f->nsums - 1].chunk == c) {
		f->sums[f->nsums - 1].sum = sum;
		return 0;
	}
	if (f->nsums == f->capsums) {
		size_t cap = f->capsums ? 2 * f->capsums : 64;
		void *v = realloc(f->sums, cap * sizeof(*f->sums));

		if (!v)
			return stream_fail(f, -ENOMEM);
		f->sums = v;
		f->capsums = cap;
	}
	f->sums[f->nsums++] = (struct chunk_sum){c, sum};
	return 0;
}

/* Bring chunk c (READ_MAX bytes at c * READ_MAX, or what is left) into the buffer. */
static int load_chunk(struct fileread *f, uint64_t c)
{
	uint64_t off = c * READ_MAX;
	size_t n = f->len - off < READ_MAX ? (size_t)(f->len - off) : READ_MAX;
	uint64_t sum;
	int r = read_at(f->fd, f->buf, n, f->base + off);

	if (r)
		return stream_fail(f, r);
	f->buf_off = off;
	f->buf_len = n;
	sum = XXH3_64bits(f->buf, n);
	if (!f->second) {
		if (c == 0)
			f->first_guess = reloc_mode_guess(f->n->rel, f->buf, n);
		f->scan = f->scan && f->first_guess != RELOC_NONE;
		scan_chunk(f, f->buf, n);
		return add_sum(f, c, sum);
	}
	/* The chunk read again right after, or the next one the first pass read. */
	if (f->next && f->sums[f->next - 1].chunk == c)
		return f->sums[f->next - 1].sum == sum ? 0 : stream_fail(f, -EAGAIN);
	if (f->next == f->nsums || f->sums[f->next].chunk != c || f->sums[f->next].sum != sum)
		return stream_fail(f, -EAGAIN);
	f->next++;
	return 0;
}

/* Where the data and holes of a sparse file are, around off: lseek, remembered until off
 * leaves the region it found. */
static int find_region(struct fileread *f, uint64_t off)
{
	off_t d, h;

	if (off >= f->reg_start && off < f->reg_end)
		return 0;
	d = lseek(f->fd, (off_t)off, SEEK_DATA);
	if (d < 0 && errno != ENXIO)
		return stream_fail(f, neg_errno());
	if (d < 0 || (uint64_t)d >= f->len) /* a hole to the end, as far as we read */
		d = (off_t)f->len;
	if ((uint64_t)d > off) {
		f->reg_start = off;
		f->reg_end = (uint64_t)d;
		f->reg_hole = true;
		return 0;
	}
	h = lseek(f->fd, (off_t)off, SEEK_HOLE);
	if (h < 0)
		return stream_fail(f, neg_errno());
	f->reg_start = off;
	f->reg_end = (uint64_t)h > off ? (uint64_t)h : f->len;
	f->reg_hole = false;
	return 0;
}

static int stream_read(void *ctx, uint64_t off, uint64_t max, const uint8_t **ret_p,
                       uint64_t *ret_n, bool *ret_hole)
{
	struct fileread *f = ctx;
	uint64_t end = off + max, c = off / READ_MAX;
	int r;

	if (f->err)
		return f->err;
	if (f->sparse) {
		r = find_region(f, off);
		if (r)
			return r;
		if (f->reg_end < end)
			end = f->reg_end;
		if (f->reg_hole) {
			*ret_hole = true;
			*ret_n = end - off;
			return 0;
		}
	}
	if (!f->buf_len || f->buf_off != c * READ_MAX) {
		r = load_chunk(f, c);
		if (r)
			return r;
	}
	if (end > f->buf_off + f->buf_len)
		end = f->buf_off + f->buf_len;
	*ret_hole = false;
	*ret_p = f->buf + (off - f->buf_off);
	*ret_n = end - off;
	return 0;
}

static struct object_src stream_src(struct fileread *f)
{
	f->buf_len = 0;
	f->reg_start = f->reg_end = 0;
	return (struct object_src){.len = f->len, .read = stream_read, .ctx = f};
}

int fileread_scan(struct fileread *f, struct objkey *ret_key, bool *ret_relocatable,
                  struct cfs_err *err)
{
	struct ingest *in = f->in;
	struct object_src src;
	size_t plen;

	(void)node_prefix(in, f->n, &plen);
	/* A sparse file's holes are never read, so neither is it searched for the prefix. */
	f->scan = !f->sparse && plen > 0 && plen < sizeof(f->carry) / 2;
	f->first_guess = RELOC_TEXT;
	src = stream_src(f);
	object_hash(&src, ret_key);
	if (f->err == -EAGAIN)
		return ingest_changed(in, f->n, err);
	if (f->err)
		return err_set(err, f->err, "%s/%s: cannot read: %s", in->prefix, f->n->rel,
		               strerror(-f->err));
	*ret_relocatable = f->scan && f->found;
	return 0;
}

struct object_src fileread_src(struct fileread *f)
{
	f->second = true;
	return stream_src(f);
}

int fileread_check(struct fileread *f, int r, struct cfs_err *err)
{
	struct ingest *in = f->in;

	/* A second pass that ended early (r: a comparison failed) read less, and said why. */
	if (f->err == -EAGAIN || (!f->err && !r && f->next != f->nsums))
		return ingest_changed(in, f->n, err);
	if (f->err)
		return err_set(err, f->err, "%s/%s: cannot read: %s", in->prefix, f->n->rel,
		               strerror(-f->err));
	return r;
}

int fileread_whole(struct fileread *f, struct cfs_err *err)
{
	struct ingest *in = f->in;
	int r;

	if (f->len > RELOC_FILE_MAX)
		return err_set(err, -EFBIG,
		               "%s/%s: holds the prefix and is larger than the %u MiB a file "
		               "relocated at ingest may have",
		               in->prefix, f->n->rel, RELOC_FILE_MAX >> 20);
	/* One at a time: the bound on ingest's memory counts one such file (README). */
	pthread_mutex_lock(&in->reloc_lock);
	f->reloc_held = true;
	f->whole = malloc(f->len);
	if (!f->whole)
		return err_set(err, -ENOMEM, "%s/%s: out of memory", in->prefix, f->n->rel);
	r = read_at(f->fd, f->whole, f->len, f->base);
	if (r == -EAGAIN)
		return ingest_changed(in, f->n, err);
	if (r)
		return err_set(err, r, "%s/%s: cannot read: %s", in->prefix, f->n->rel,
		               strerror(-r));
	f->data = f->whole;
	return 0;
}
