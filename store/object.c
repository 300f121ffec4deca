// SPDX-License-Identifier: MIT
/*
 * Object images: writing a content as independent zstd frames with a frame table, reading
 * any byte range back, and checking an image against its key. Images are written the way
 * git writes objects: to a temporary file in the store, made durable, then moved into
 * place — in batches, so that an ingest syncs twice instead of once per file.
 *
 * Invariants:
 * O1: a file at objects/xx/yyy is complete and durable: it is renamed there only after the
 *     ingest's syncfs (an fsync of each, for a few), and an existing path is
 *     never replaced (RENAME_NOREPLACE).
 * O2: a path that exists when we want to write it holds the same content, or we fail:
 *     it is compared byte for byte, so a hash collision can never merge two contents.
 * O3: no byte of a format 2 image reaches a caller unchecked: its header and frame table
 *     are checked when it is opened, and every decode of a frame (zstd or raw) hashes the
 *     bytes it decoded and compares them with the frame's checksum; a frame that fails is
 *     -EBADMSG and never kept (cache.c H2). Format 1 images, written before frames had
 *     checksums, are read as they are; verify checks them by their key.
 *
 * Image layout (docs/object-format.md has it in full), little endian:
 *   0  8 magic "CFSOBJ2\n" ("CFSOBJ1\n": format 1)
 *   8  4 frame shift          16  8 content size
 *  12  4 frame count          24 16 key (XXH3-128 of the content)
 *  40  8 XXH3-64 of bytes 0-39 and the frame table (format 1: absent)
 *  48 12 * frame count: frame table (format 1: at 40, 4 bytes an entry)
 * then the frames back to back. An entry holds the frame's stored length in the low 30 bits
 * of its first 4 bytes and its kind in the top two: zstd, raw (incompressible) or zero (a
 * hole: nothing stored); then (format 2) the XXH3-64 of the frame's decoded bytes. Every
 * frame but the last holds 1 << shift bytes of content.
 */
#include "object.h"

#include "err.h"
#include "hex.h"

#include <condafs/cache.h>

#include <assert.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
/* Inlined: the hash runs over every byte ingested. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define HDR1_SIZE     40 /* format 1: no checksums */
#define ENTRY1_SIZE   4
#define HDR_SIZE      48
#define ENTRY_SIZE    12 /* kind and length, XXH3-64 of the frame's content */
#define KIND_ZSTD     0u
#define KIND_RAW      1u
#define KIND_ZERO     2u
#define LEN_MASK      ((1u << 30) - 1)
#define ZSTD_LEVEL    3
#define WRITE_BUF_MAX (4u << 20)

static const char object_magic[8] = {'C', 'F', 'S', 'O', 'B', 'J', '2', '\n'};
static const char object_magic1[8] = {'C', 'F', 'S', 'O', 'B', 'J', '1', '\n'};
static const uint8_t zeros[65536];

void objkey_hex(const struct objkey *k, char ret[33])
{
	hex_encode(k->b, 16, ret);
}

int objkey_parse(const char *hex, struct objkey *ret)
{
	struct objkey k;

	if (strlen(hex) != 32)
		return -EINVAL;
	for (int i = 0; i < 16; i++) {
		int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		k.b[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret = k;
	return 0;
}

void objkey_path(const struct objkey *k, char ret[48])
{
	char hex[33];

	objkey_hex(k, hex);
	snprintf(ret, 48, "objects/%.2s/%s", hex, hex + 2);
}

/* One objects/xx of object_each_image. */
static int each_in_dir(int store_fd, const char *store_dir, int i,
                       int (*fn)(void *ctx, int dfd, const char *name, const struct objkey *key),
                       void *ctx, struct cfs_err *err)
{
	char dir[16], hex[33];
	struct objkey key;
	struct dirent *de;
	int dfd, r = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "objects/%02x", i);
	dfd = openat(store_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT)
		return 0;
	d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		r = err_set(err, neg_errno(), "%s/%s: %s", store_dir, dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return r;
	}
	while (!r && (errno = 0, de = readdir(d))) {
		if (strlen(de->d_name) != 30)
			continue;
		snprintf(hex, sizeof(hex), "%02x%s", i, de->d_name);
		if (objkey_parse(hex, &key) == 0)
			r = fn(ctx, dirfd(d), de->d_name, &key);
	}
	if (!r && errno)
		r = err_set(err, neg_errno(), "%s/%s: %s", store_dir, dir, strerror(errno));
	closedir(d);
	return r;
}

int object_each_image(int store_fd, const char *store_dir,
                      int (*fn)(void *ctx, int dfd, const char *name, const struct objkey *key),
                      void *ctx, struct cfs_err *err)
{
	int r = 0;

	for (int i = 0; i < 256 && !r; i++)
		r = each_in_dir(store_fd, store_dir, i, fn, ctx, err);
	return r;
}

/* ---- sources with holes ---- */

/* Calls fn for each piece of [off, off + len) of src: data pieces point into src->data,
 * hole pieces point at zeros (at most sizeof(zeros) at a time). */
static int src_walk(const struct object_src *src, uint64_t off, uint64_t len,
                    int (*fn)(void *ctx, const uint8_t *p, size_t n, bool hole), void *ctx)
{
	uint64_t end = off + len;
	size_t e = 0;

	if (!src->data && src->read) {
		while (off < end) {
			const uint8_t *p = NULL;
			uint64_t n = 0;
			bool hole = false;
			int r = src->read(src->ctx, off, end - off, &p, &n, &hole);

			if (!r && (n == 0 || n > end - off))
				r = -EIO;
			if (r)
				return r;
			if (hole && n > sizeof(zeros))
				n = sizeof(zeros);
			r = fn(ctx, hole ? zeros : p, n, hole);
			if (r)
				return r;
			off += n;
		}
		return 0;
	}
	/* Without read, the bytes are at data: of a content with neither, nothing is asked. */
	assert(src->data || len == 0);
	if (src->nextents == 0)
		return len ? fn(ctx, src->data + off, len, false) : 0;
	while (off < end) {
		uint64_t piece_end;
		bool hole;

		while (e < src->nextents && src->extents[e][1] <= off)
			e++;
		if (e < src->nextents && src->extents[e][0] <= off) {
			hole = false;
			piece_end = src->extents[e][1] < end ? src->extents[e][1] : end;
		} else {
			hole = true;
			piece_end = e < src->nextents && src->extents[e][0] < end
			                    ? src->extents[e][0]
			                    : end;
			if (piece_end - off > sizeof(zeros))
				piece_end = off + sizeof(zeros);
		}
		int r = fn(ctx, hole ? zeros : src->data + off, piece_end - off, hole);
		if (r)
			return r;
		off = piece_end;
	}
	return 0;
}

static int hash_piece(void *ctx, const uint8_t *p, size_t n, bool hole)
{
	(void)hole;
	XXH3_128bits_update(ctx, p, n);
	return 0;
}

static void key_from_hash(XXH128_hash_t h, struct objkey *ret)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(ret->b, c.digest, 16);
}

void object_hash(const struct object_src *src, struct objkey *ret)
{
	XXH3_state_t st;

	XXH3_128bits_reset(&st);
	src_walk(src, 0, src->len, hash_piece, &st);
	key_from_hash(XXH3_128bits_digest(&st), ret);
}

void object_hash_pieces(const struct iovec *v, size_t n, struct objkey *ret)
{
	XXH3_state_t st;

	XXH3_128bits_reset(&st);
	for (size_t i = 0; i < n; i++)
		XXH3_128bits_update(&st, v[i].iov_base, v[i].iov_len);
	key_from_hash(XXH3_128bits_digest(&st), ret);
}

/* True if [off, off + len) of src is all zero bytes, without touching holes. */
static int zero_piece(void *ctx, const uint8_t *p, size_t n, bool hole)
{
	(void)ctx;
	if (hole)
		return 0;
	/* A buffer is zero iff its first byte is and it equals itself shifted by one. */
	return !(p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static bool src_is_zero(const struct object_src *src, uint64_t off, uint64_t len)
{
	return src_walk(src, off, len, zero_piece, NULL) == 0;
}

struct copy_ctx {
	uint8_t *dst;
};

static int copy_piece(void *ctx, const uint8_t *p, size_t n, bool hole)
{
	struct copy_ctx *c = ctx;

	if (hole)
		memset(c->dst, 0, n);
	else
		memcpy(c->dst, p, n);
	c->dst += n;
	return 0;
}

/* ---- temporary directories ---- */

/*
 * Empty the directory at fd, subdirectories too (an install extracts packages there),
 * holding one descriptor at a time whatever the depth: down into the first subdirectory
 * not yet empty, back up through ".." once a directory is. Nothing is followed: entries
 * are removed by name, directories opened with O_NOFOLLOW, and only we write beneath tmp/.
 */
static int empty_dir(int fd)
{
	int cur = dup(fd), depth = 0;

	if (cur < 0)
		return neg_errno();
	for (;;) {
		DIR *d = fdopendir(dup(cur));
		struct dirent *de;
		char sub[NAME_MAX + 1] = "";
		int next, r = 0;
		bool dir;

		if (!d) {
			close(cur);
			return -ENOMEM;
		}
		/* Anything that cannot be removed stops it: else it would come back forever. */
		while (!r && (de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (unlinkat(cur, de->d_name, 0) == 0 || errno == ENOENT)
				continue;
			dir = errno == EISDIR;
			if (dir && unlinkat(cur, de->d_name, AT_REMOVEDIR) == 0)
				continue;
			/* A directory not empty yet: gone into below. */
			if (dir && (errno == ENOTEMPTY || errno == EEXIST))
				snprintf(sub, sizeof(sub), "%s", de->d_name);
			else
				r = neg_errno();
			break;
		}
		closedir(d);
		if (r) {
			close(cur);
			return r;
		}
		if (sub[0]) {
			next = openat(cur, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next >= 0) {
				/* A package may ship a directory without write permission. */
				fchmod(next, 0700);
				depth++;
			}
		} else if (depth > 0) {
			next = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			depth--;
		} else {
			close(cur);
			return 0;
		}
		close(cur);
		if (next < 0)
			return neg_errno();
		cur = next;
	}
}

/* Empty and remove the directory name in dir_fd (whose fd is fd, consumed): 0 once it is
 * gone. */
static int remove_tmpdir(int dir_fd, const char *name, int fd)
{
	int r = empty_dir(fd);

	close(fd);
	if (!r && name && unlinkat(dir_fd, name, AT_REMOVEDIR) < 0)
		return neg_errno();
	return r;
}

/*
 * Remove the temporary directories of dead ingests: nobody holds their lock. A ".new-"
 * directory is unlocked for a moment while its ingest makes it, so it is taken for dead
 * only with exclusive, when the store lock keeps every ingest out (gc.c G2).
 */
static int clean_tmp(int tmp_root, bool exclusive, void (*fn)(void *ctx, const char *name),
                     void *ctx)
{
	int fd = dup(tmp_root), r;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		r = fd >= 0 ? -ENOMEM : neg_errno();
		if (fd >= 0)
			close(fd);
		return r;
	}
	while ((de = readdir(d))) {
		int dfd;

		if (strncmp(de->d_name, "ingest-", 7) != 0 &&
		    !(exclusive && strncmp(de->d_name, ".new-", 5) == 0))
			continue;
		dfd = openat(tmp_root, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			continue;
		if (flock(dfd, LOCK_EX | LOCK_NB) < 0) {
			close(dfd);
			continue;
		}
		if (remove_tmpdir(tmp_root, de->d_name, dfd) == 0 && fn)
			fn(ctx, de->d_name);
	}
	closedir(d);
	return 0;
}

int object_tmp_clean(int store_fd, bool exclusive, void (*fn)(void *ctx, const char *name),
                     void *ctx, struct cfs_err *err)
{
	int root = openat(store_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (root < 0 && errno == ENOENT)
		return 0;
	if (root < 0)
		return err_set(err, neg_errno(), "tmp: %s", strerror(errno));
	r = clean_tmp(root, exclusive, fn, ctx);
	close(root);
	return r ? err_set(err, r, "tmp: %s", strerror(-r)) : 0;
}

int object_tmp_open(int store_fd, int *ret_fd, char ret_name[64], struct cfs_err *err)
{
	static unsigned counter;
	char fresh[64], name[64];
	int root, fd = -1, r;

	if (mkdirat(store_fd, "tmp", 0700) < 0 && errno != EEXIST)
		return err_set(err, neg_errno(), "tmp: %s", strerror(errno));
	root = openat(store_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return err_set(err, neg_errno(), "tmp: %s", strerror(errno));
	clean_tmp(root, false, NULL, NULL);
	/* Made under another name and locked before it is renamed to where cleaners look. */
	unsigned n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	snprintf(fresh, sizeof(fresh), ".new-%d-%u", (int)getpid(), n);
	snprintf(name, sizeof(name), "ingest-%d-%u", (int)getpid(), n);
	if (mkdirat(root, fresh, 0700) < 0) {
		r = err_set(err, neg_errno(), "tmp/%s: %s", fresh, strerror(errno));
		goto out;
	}
	fd = openat(root, fresh, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX) < 0 || renameat(root, fresh, root, name) < 0) {
		r = err_set(err, neg_errno(), "tmp/%s: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlinkat(root, fresh, AT_REMOVEDIR);
		goto out;
	}
	*ret_fd = fd;
	memcpy(ret_name, name, sizeof(name));
	r = 0;
out:
	close(root);
	return r;
}

void object_tmp_close(int store_fd, int tmp_fd, const char *name)
{
	int root;

	if (tmp_fd < 0)
		return;
	root = openat(store_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		close(tmp_fd);
		return;
	}
	remove_tmpdir(root, name, tmp_fd);
	close(root);
}

/* ---- writing ---- */

struct object_writer {
	int store_fd, tmp_fd;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx; /* for comparisons with stored images */
	uint8_t *frame;  /* one frame of content, for sources with holes */
	uint8_t *cbuf;   /* ZSTD_compressBound(frame size) */
	size_t cbuf_size;
	uint8_t *out; /* frames waiting to be written */
	size_t out_len, out_cap;
	struct objkey *pending; /* written to tmp_fd, not yet published */
	size_t npending, cappending;
	uint32_t shift; /* of object_write's images: OBJECT_FRAME_SHIFT unless told */
};

int object_writer_new(int store_fd, int tmp_fd, struct object_writer **ret)
{
	struct object_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->store_fd = store_fd;
	w->tmp_fd = tmp_fd;
	w->shift = OBJECT_FRAME_SHIFT;
	w->cctx = ZSTD_createCCtx();
	w->dctx = ZSTD_createDCtx();
	w->frame = malloc(OBJECT_FRAME_SIZE);
	w->cbuf_size = ZSTD_compressBound(OBJECT_FRAME_SIZE);
	w->cbuf = malloc(w->cbuf_size);
	if (!w->cctx || !w->dctx || !w->frame || !w->cbuf) {
		object_writer_free(w);
		return -ENOMEM;
	}
	ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
	*ret = w;
	return 0;
}

void object_writer_free(struct object_writer *w)
{
	if (!w)
		return;
	ZSTD_freeCCtx(w->cctx);
	ZSTD_freeDCtx(w->dctx);
	free(w->frame);
	free(w->cbuf);
	free(w->out);
	free(w->pending);
	free(w);
}

static int out_append(struct object_writer *w, const void *p, size_t n)
{
	if (w->out_len + n > w->out_cap) {
		size_t cap = w->out_cap ? w->out_cap : 65536;

		while (cap < w->out_len + n)
			cap *= 2;
		uint8_t *o = realloc(w->out, cap);
		if (!o)
			return -ENOMEM;
		w->out = o;
		w->out_cap = cap;
	}
	memcpy(w->out + w->out_len, p, n);
	w->out_len += n;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pwrite(fd, p, n, off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return neg_errno();
		}
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

static int read_all(int fd, uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pread(fd, p, n, off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return neg_errno();
		}
		if (r == 0)
			return -EBADMSG;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* The content bytes of frame i of a content of len bytes in frames of 1 << shift. */
static size_t frame_len(uint64_t len, uint64_t i, uint32_t shift)
{
	uint64_t off = i << shift;

	return len - off < (1ull << shift) ? (size_t)(len - off) : (size_t)1 << shift;
}

/* Compress one frame's n content bytes at p with w's context: *ret_entry is its table
 * entry, *ret_sum its checksum (O3), *ret_out its stored bytes (p itself when raw, else
 * w->cbuf), *ret_len long. */
static int encode_frame(struct object_writer *w, const uint8_t *p, size_t n, uint32_t *ret_entry,
                        uint64_t *ret_sum, const uint8_t **ret_out, size_t *ret_len)
{
	size_t c = ZSTD_compress2(w->cctx, w->cbuf, w->cbuf_size, p, n);

	if (ZSTD_isError(c))
		return -EIO;
	*ret_sum = XXH3_64bits(p, n);
	/* Store raw when compression saves under 1/64: not worth a decompression per read. */
	if (c >= n - n / 64) {
		*ret_entry = KIND_RAW << 30 | (uint32_t)n;
		*ret_out = p;
		*ret_len = n;
	} else {
		*ret_entry = KIND_ZSTD << 30 | (uint32_t)c;
		*ret_out = w->cbuf;
		*ret_len = c;
	}
	return 0;
}

/* Compress frame i of src, appending it to w->out; *ret_entry and *ret_sum are its table
 * entry. */
static int compress_frame(struct object_writer *w, const struct object_src *src, uint64_t i,
                          uint32_t *ret_entry, uint64_t *ret_sum)
{
	uint64_t off = i << w->shift;
	size_t n = frame_len(src->len, i, w->shift), len;
	const uint8_t *p, *out;
	int r;

	if (src_is_zero(src, off, n)) {
		*ret_entry = KIND_ZERO << 30;
		*ret_sum = 0;
		return 0;
	}
	if (src->nextents || !src->data) {
		struct copy_ctx cc = {w->frame};

		r = src_walk(src, off, n, copy_piece, &cc);
		if (r)
			return r;
		p = w->frame;
	} else {
		p = src->data + off;
	}
	r = encode_frame(w, p, n, ret_entry, ret_sum, &out, &len);
	return r ? r : out_append(w, out, len);
}

/* A header and a zeroed table for a content of len bytes, in little endian; the table is
 * filled by table_set and the whole sealed by finish_image. */
static int image_header(const struct objkey *key, uint64_t len_content, uint64_t nframes,
                        uint32_t shift, uint8_t **ret, size_t *ret_len)
{
	size_t len = HDR_SIZE + ENTRY_SIZE * (size_t)nframes;
	uint8_t *h = calloc(1, len);
	uint32_t v32;
	uint64_t v64;

	if (!h)
		return -ENOMEM;
	memcpy(h, object_magic, 8);
	v32 = htole32(shift);
	memcpy(h + 8, &v32, 4);
	v32 = htole32((uint32_t)nframes);
	memcpy(h + 12, &v32, 4);
	v64 = htole64(len_content);
	memcpy(h + 16, &v64, 8);
	memcpy(h + 24, key->b, 16);
	*ret = h;
	*ret_len = len;
	return 0;
}

static void table_set(uint8_t *hdr, uint64_t i, uint32_t entry, uint64_t sum)
{
	uint32_t e = htole32(entry);
	uint64_t s = htole64(sum);

	memcpy(hdr + HDR_SIZE + ENTRY_SIZE * i, &e, 4);
	memcpy(hdr + HDR_SIZE + ENTRY_SIZE * i + 4, &s, 8);
}

/* The checksum of a format 2 header (its first 40 bytes) and its frame table. */
static uint64_t header_sum(const uint8_t *hdr, const uint8_t *table, size_t table_len)
{
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, hdr, HDR1_SIZE);
	XXH3_64bits_update(&st, table, table_len);
	return XXH3_64bits_digest(&st);
}

/* O2 for a key whose image exists already. */
static int compare_existing(struct object_writer *w, const struct objkey *key,
                            const struct object_src *src, uint64_t *ret_stored, struct cfs_err *err)
{
	struct object *o = NULL;
	int r = object_open(w->store_fd, key, &o, err);

	if (r == 0)
		r = object_compare(o, w->dctx, 0, src, err);
	if (r == 0)
		*ret_stored = object_image_size(o);
	object_close(o);
	return r;
}

/* Start writing the image out now, so the ingest's syncfs finds little left to do. Only a
 * head start: durability is the syncfs's, which reports any write error. */
static void start_writeback(int fd)
{
	sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static int add_pending(struct object_writer *w, const struct objkey *key)
{
	if (w->npending == w->cappending) {
		size_t cap = w->cappending ? 2 * w->cappending : 256;
		void *v = realloc(w->pending, cap * sizeof(*w->pending));

		if (!v)
			return -ENOMEM;
		w->pending = v;
		w->cappending = cap;
	}
	w->pending[w->npending++] = *key;
	return 0;
}

/* The end of writing a temporary image at fd (negative: another worker of this ingest
 * writes it): the header with its frame table, sealed by its checksum, and the image queued
 * for publishing, its writeback started. */
static int finish_image(struct object_writer *w, int fd, const struct objkey *key, uint8_t *hdr,
                        size_t hdr_len, const char *path, struct cfs_err *err)
{
	int r;

	uint64_t sum;

	if (fd < 0)
		return 0;
	sum = htole64(header_sum(hdr, hdr + HDR_SIZE, hdr_len - HDR_SIZE));
	memcpy(hdr + HDR1_SIZE, &sum, 8);
	r = write_all(fd, hdr, hdr_len, 0);
	if (r)
		return err_set(err, r, "%s: cannot write object: %s", path, strerror(-r));
	r = add_pending(w, key);
	if (!r)
		start_writeback(fd);
	return r;
}

int object_write(struct object_writer *w, const struct objkey *key, const struct object_src *src,
                 uint64_t *ret_stored, struct cfs_err *err)
{
	uint64_t nframes = (src->len + (1ull << w->shift) - 1) >> w->shift;
	uint8_t *hdr = NULL;
	size_t hdr_len;
	off_t file_off;
	char path[48], hex[33];
	int fd = -1, r;

	objkey_path(key, path);
	objkey_hex(key, hex);
	if (nframes > UINT32_MAX)
		return err_set(err, -EFBIG, "%s: content too large", path);
	if (faccessat(w->store_fd, path, F_OK, AT_EACCESS) == 0)
		return compare_existing(w, key, src, ret_stored, err);
	fd = openat(w->tmp_fd, hex, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0 && errno == EEXIST)
		fd = -2; /* another worker of this ingest writes the same content */
	else if (fd < 0)
		return err_set(err, neg_errno(), "%s: cannot create a temporary file: %s", path,
		               strerror(errno));
	r = image_header(key, src->len, nframes, w->shift, &hdr, &hdr_len);
	if (r)
		goto out;
	/* The table is written last, when every frame's length is known. */
	file_off = (off_t)hdr_len;
	w->out_len = 0;
	for (uint64_t i = 0; i < nframes; i++) {
		uint32_t entry;
		uint64_t sum;

		r = compress_frame(w, src, i, &entry, &sum);
		if (r)
			goto out;
		table_set(hdr, i, entry, sum);
		if (w->out_len >= WRITE_BUF_MAX || i + 1 == nframes) {
			if (fd >= 0 && (r = write_all(fd, w->out, w->out_len, file_off)))
				goto io_err;
			file_off += (off_t)w->out_len;
			w->out_len = 0;
		}
	}
	r = finish_image(w, fd, key, hdr, hdr_len, path, err);
	if (!r)
		*ret_stored = (uint64_t)file_off;
	goto out;
io_err:
	err_set(err, r, "%s: cannot write object: %s", path, strerror(-r));
out:
	if (fd >= 0)
		close(fd);
	free(hdr);
	return r;
}

/* ---- images compressed frame by frame, by several threads ---- */

struct object_frames {
	uint64_t len;
	uint32_t nframes;
	atomic_uint left;  /* tasks not done yet */
	uint32_t *entries; /* table entries, host order */
	uint64_t *sums;    /* each frame's checksum (O3) */
	uint8_t **stored;  /* each frame's stored bytes, owned (NULL for a zero frame) */
};

int object_frames_new(uint64_t len, struct object_frames **ret)
{
	uint64_t nframes = (len + OBJECT_FRAME_SIZE - 1) >> OBJECT_FRAME_SHIFT;
	struct object_frames *f;

	if (nframes > UINT32_MAX)
		return -EFBIG;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->len = len;
	f->nframes = (uint32_t)nframes;
	atomic_init(&f->left, object_frames_tasks(f));
	f->entries = calloc(nframes ? nframes : 1, sizeof(*f->entries));
	f->sums = calloc(nframes ? nframes : 1, sizeof(*f->sums));
	f->stored = calloc(nframes ? nframes : 1, sizeof(*f->stored));
	if (!f->entries || !f->sums || !f->stored) {
		object_frames_free(f);
		return -ENOMEM;
	}
	*ret = f;
	return 0;
}

void object_frames_free(struct object_frames *f)
{
	if (!f)
		return;
	/* Also when object_frames_new could not allocate stored. */
	for (uint32_t i = 0; f->stored && i < f->nframes; i++)
		free(f->stored[i]);
	free(f->stored);
	free(f->sums);
	free(f->entries);
	free(f);
}

uint32_t object_frames_tasks(const struct object_frames *f)
{
	/* An empty content has no frame, but its image must still be written. */
	return f->nframes ? f->nframes : 1;
}

int object_frames_compress(struct object_writer *w, struct object_frames *f, uint32_t i,
                           const uint8_t *data, bool *ret_last)
{
	struct object_src src = {
	        .data = data, .len = i < f->nframes ? frame_len(f->len, i, OBJECT_FRAME_SHIFT) : 0};
	const uint8_t *out;
	size_t len;
	int r;

	if (src.len && src_is_zero(&src, 0, src.len)) {
		f->entries[i] = KIND_ZERO << 30;
	} else if (src.len) {
		r = encode_frame(w, data, src.len, &f->entries[i], &f->sums[i], &out, &len);
		if (r)
			return r;
		f->stored[i] = malloc(len);
		if (!f->stored[i])
			return -ENOMEM;
		memcpy(f->stored[i], out, len);
	}
	/* Sequentially consistent: the last one sees every other task's frame. */
	*ret_last = atomic_fetch_sub(&f->left, 1) == 1;
	return 0;
}

int object_frames_write(struct object_writer *w, struct object_frames *f, const struct objkey *key,
                        uint64_t *ret_stored, struct cfs_err *err)
{
	uint8_t *hdr = NULL;
	size_t hdr_len;
	off_t off;
	char path[48], hex[33];
	int fd, r;

	objkey_path(key, path);
	objkey_hex(key, hex);
	fd = openat(w->tmp_fd, hex, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0 && errno != EEXIST)
		return err_set(err, neg_errno(), "%s: cannot create a temporary file: %s", path,
		               strerror(errno));
	r = image_header(key, f->len, f->nframes, OBJECT_FRAME_SHIFT, &hdr, &hdr_len);
	if (r)
		goto out;
	off = (off_t)hdr_len;
	for (uint32_t i = 0; i < f->nframes; i++) {
		size_t len = f->entries[i] & LEN_MASK;

		table_set(hdr, i, f->entries[i], f->sums[i]);
		/* EEXIST: another worker of this ingest writes the same content. */
		if (fd >= 0 && len && (r = write_all(fd, f->stored[i], len, off)))
			goto io_err;
		off += (off_t)len;
	}
	r = finish_image(w, fd, key, hdr, hdr_len, path, err);
	if (!r)
		*ret_stored = (uint64_t)off;
	goto out;
io_err:
	err_set(err, r, "%s: cannot write object: %s", path, strerror(-r));
out:
	if (fd >= 0)
		close(fd);
	free(hdr);
	return r;
}

/* Move one durable temporary image into place, or compare it with the one there. */
static int publish_one(struct object_writer *w, const struct objkey *key, struct cfs_err *err)
{
	struct object *mine = NULL, *theirs = NULL;
	uint8_t *a = NULL, *b = NULL;
	char path[48], hex[33];
	size_t ga = 0, gb = 0;
	int fd, r;

	objkey_path(key, path);
	objkey_hex(key, hex);
	if (renameat2(w->tmp_fd, hex, w->store_fd, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == ENOENT) {
		/* objects/xx/ is made on first use: with packing most would stay empty. */
		char dir[16];

		snprintf(dir, sizeof(dir), "objects/%.2s", hex);
		if (mkdirat(w->store_fd, dir, 0755) < 0 && errno != EEXIST)
			return err_set(err, neg_errno(), "%s: %s", dir, strerror(errno));
		if (renameat2(w->tmp_fd, hex, w->store_fd, path, RENAME_NOREPLACE) == 0)
			return 0;
	}
	if (errno != EEXIST)
		return err_set(err, neg_errno(), "%s: cannot publish object: %s", path,
		               strerror(errno));
	/* Stored meanwhile: O2, then ours goes. */
	r = object_open(w->store_fd, key, &theirs, err);
	if (r)
		goto out;
	fd = openat(w->tmp_fd, hex, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = err_set(err, neg_errno(), "%s: %s", hex, strerror(errno));
		goto out;
	}
	r = object_open_fd(fd, key, &mine, err);
	if (r)
		goto out;
	a = malloc(OBJECT_FRAME_SIZE);
	b = malloc(OBJECT_FRAME_SIZE);
	if (!a || !b) {
		r = -ENOMEM;
		goto out;
	}
	r = object_size(mine) == object_size(theirs) ? 0 : -EBADMSG;
	for (uint64_t off = 0; !r && off < object_size(mine); off += ga) {
		r = object_read(mine, w->dctx, off, OBJECT_FRAME_SIZE, a, &ga, err);
		if (!r)
			r = object_read(theirs, w->dctx, off, OBJECT_FRAME_SIZE, b, &gb, err);
		if (!r && (ga == 0 || ga != gb || memcmp(a, b, ga) != 0))
			r = -EBADMSG;
	}
	if (r == -EBADMSG)
		err_set(err, r, "%s: stored content differs from a file with the same key", path);
	if (!r)
		unlinkat(w->tmp_fd, hex, 0);
out:
	free(a);
	free(b);
	object_close(mine);
	object_close(theirs);
	return r;
}

/* fsync the file or directory name at dir_fd. */
static int sync_at(int dir_fd, const char *name)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return neg_errno();
	if (fsync(fd) < 0)
		r = neg_errno();
	close(fd);
	return r;
}

size_t object_writer_pending(const struct object_writer *w)
{
	return w->npending;
}

int object_writer_sync(struct object_writer *w, struct cfs_err *err)
{
	for (size_t i = 0; i < w->npending; i++) {
		char hex[33];
		int r;

		objkey_hex(&w->pending[i], hex);
		r = sync_at(w->tmp_fd, hex);
		if (r)
			return err_set(err, r, "%s: cannot sync object: %s", hex, strerror(-r));
	}
	return 0;
}

int object_publish(struct object_writer *w, bool sync_dirs, struct cfs_err *err)
{
	for (size_t i = 0; i < w->npending; i++) {
		char dir[16], hex[33];
		int r = publish_one(w, &w->pending[i], err);

		if (r)
			return r;
		objkey_hex(&w->pending[i], hex);
		snprintf(dir, sizeof(dir), "objects/%.2s", hex);
		if (sync_dirs && (r = sync_at(w->store_fd, dir)))
			return err_set(err, r, "%s: cannot sync: %s", dir, strerror(-r));
	}
	w->npending = 0;
	return 0;
}

struct object_one {
	int store_fd, tmp_fd;
	char tmp[64];
	struct object_writer *w;
};

int object_one_open(int store_fd, struct object_one **ret, struct cfs_err *err)
{
	struct object_one *o = calloc(1, sizeof(*o));
	int r;

	if (!o)
		return err_set(err, -ENOMEM, "out of memory");
	o->store_fd = store_fd;
	o->tmp_fd = -1;
	*ret = o;
	r = object_tmp_open(store_fd, &o->tmp_fd, o->tmp, err);
	if (!r && (r = object_writer_new(store_fd, o->tmp_fd, &o->w)))
		err_set(err, r, "out of memory");
	if (r) {
		object_one_close(o);
		*ret = NULL;
	}
	return r;
}

int object_one_write(struct object_one *o, const struct objkey *key, const struct object_src *src,
                     uint32_t shift, uint64_t *ret_stored, struct cfs_err *err)
{
	char path[48];
	int r;

	objkey_path(key, path);
	if (shift < 12 || shift > OBJECT_FRAME_SHIFT)
		return err_set(err, -EINVAL, "%s: frame shift %u", path, shift);
	o->w->shift = shift;
	r = object_write(o->w, key, src, ret_stored, err);
	/* Nothing pending: the key was stored already, and compared (O2). */
	if (!r)
		r = object_writer_sync(o->w, err);
	return r;
}

int object_one_publish(struct object_one *o, struct cfs_err *err)
{
	/* O1: its name durable too before anything names it. */
	return object_publish(o->w, true, err);
}

void object_one_close(struct object_one *o)
{
	if (!o)
		return;
	object_writer_free(o->w);
	if (o->tmp_fd >= 0)
		object_tmp_close(o->store_fd, o->tmp_fd, o->tmp);
	free(o);
}

/* ---- reading ---- */

struct object {
	struct objkey key;
	int fd;
	uint64_t size;
	uint32_t shift;
	uint32_t nframes;
	unsigned format;   /* 1 or 2 */
	uint32_t *entries; /* host order */
	uint64_t *sums;    /* each frame's checksum (O3); NULL in format 1 */
	uint64_t *offsets; /* nframes + 1 image offsets */
	uint8_t *cbuf;     /* compressed frame scratch */
	size_t cbuf_size;
	uint8_t *frame;       /* the last decompressed frame */
	int64_t frame_index;  /* which one, -1 none */
	struct cache *frames; /* shared decoded frames, or NULL */
};

int object_open_fd(int fd, const struct objkey *key, struct object **ret, struct cfs_err *err)
{
	struct object *o = calloc(1, sizeof(*o));
	uint8_t hdr[HDR_SIZE], *table = NULL;
	uint64_t image_len, v64, table_len;
	size_t hdr_len, entry_size;
	const char *why = "malformed image";
	char path[48];
	uint32_t v32;
	struct stat sb;
	int r;

	objkey_path(key, path);
	if (!o) {
		close(fd);
		return -ENOMEM;
	}
	/* Whole, not member by member: clang's analyzer takes a struct stored into the first
	 * member (key) for one stored into all of *o. */
	*o = (struct object){.key = *key, .fd = fd, .frame_index = -1};
	if (fstat(o->fd, &sb) < 0) {
		r = err_set(err, neg_errno(), "%s: %s", path, strerror(errno));
		goto fail;
	}
	image_len = (uint64_t)sb.st_size;
	if (image_len < HDR1_SIZE || read_all(o->fd, hdr, HDR1_SIZE, 0))
		goto bad;
	if (memcmp(hdr, object_magic, 8) == 0) {
		o->format = 2;
		hdr_len = HDR_SIZE;
		entry_size = ENTRY_SIZE;
		if (image_len < HDR_SIZE || read_all(o->fd, hdr + HDR1_SIZE, 8, HDR1_SIZE))
			goto bad;
	} else if (memcmp(hdr, object_magic1, 8) == 0) {
		o->format = 1;
		hdr_len = HDR1_SIZE;
		entry_size = ENTRY1_SIZE;
	} else {
		goto bad;
	}
	memcpy(&v32, hdr + 8, 4);
	o->shift = le32toh(v32);
	memcpy(&v32, hdr + 12, 4);
	o->nframes = le32toh(v32);
	memcpy(&v64, hdr + 16, 8);
	o->size = le64toh(v64);
	table_len = entry_size * (uint64_t)o->nframes;
	if (memcmp(hdr + 24, key->b, 16) != 0 || o->shift < 12 || o->shift > 26 ||
	    o->size > (1ull << 50) ||
	    o->nframes != ((o->size + (1ull << o->shift) - 1) >> o->shift) ||
	    image_len < hdr_len + table_len)
		goto bad;
	table = malloc(table_len ? table_len : 1);
	o->entries = calloc(o->nframes ? o->nframes : 1, sizeof(*o->entries));
	o->sums = o->format == 2 ? calloc(o->nframes ? o->nframes : 1, sizeof(*o->sums)) : NULL;
	o->offsets = calloc(o->nframes + 1ull, sizeof(*o->offsets));
	if (!table || !o->entries || (o->format == 2 && !o->sums) || !o->offsets) {
		r = -ENOMEM;
		goto fail;
	}
	if (read_all(o->fd, table, table_len, (off_t)hdr_len))
		goto bad;
	if (o->format == 2) {
		memcpy(&v64, hdr + HDR1_SIZE, 8);
		if (header_sum(hdr, table, table_len) != le64toh(v64)) {
			why = "header or frame table fails its checksum";
			goto bad;
		}
	}
	o->offsets[0] = hdr_len + table_len;
	for (uint32_t i = 0; i < o->nframes; i++) {
		uint32_t e, kind, len;
		uint64_t raw = i + 1 == o->nframes ? o->size - ((uint64_t)i << o->shift)
		                                   : 1ull << o->shift;

		memcpy(&v32, table + entry_size * i, 4);
		e = le32toh(v32);
		kind = e >> 30;
		len = e & LEN_MASK;
		if (o->sums) {
			memcpy(&v64, table + entry_size * i + 4, 8);
			o->sums[i] = le64toh(v64);
		}
		o->entries[i] = e;
		if (kind > KIND_ZERO || (kind == KIND_RAW && len != raw) ||
		    (kind == KIND_ZERO && len != 0))
			goto bad;
		o->offsets[i + 1] = o->offsets[i] + len;
		/* Raw frames are read straight into their destination. */
		if (kind == KIND_ZSTD && len > o->cbuf_size)
			o->cbuf_size = len;
	}
	if (o->offsets[o->nframes] != image_len)
		goto bad;
	free(table);
	*ret = o;
	return 0;
bad:
	r = err_set(err, -EBADMSG, "%s: corrupt object: %s", path, why);
fail:
	assert(r < 0);
	free(table);
	object_close(o);
	return r;
}

int object_open(int store_fd, const struct objkey *key, struct object **ret, struct cfs_err *err)
{
	char path[48];
	int fd;

	objkey_path(key, path);
	fd = openat(store_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, -EBADMSG, "%s: missing object: %s", path, strerror(errno));
	return object_open_fd(fd, key, ret, err);
}

uint64_t object_image_size(const struct object *o)
{
	return o->offsets[o->nframes];
}

void object_close(struct object *o)
{
	if (!o)
		return;
	if (o->fd >= 0)
		close(o->fd);
	free(o->entries);
	free(o->sums);
	free(o->offsets);
	free(o->cbuf);
	free(o->frame);
	free(o);
}

uint64_t object_size(const struct object *o)
{
	return o->size;
}

unsigned object_format(const struct object *o)
{
	return o->format;
}

/* Decode frame i into dst (which holds the frame's content size) and check it (O3). */
static int frame_decode(struct object *o, ZSTD_DCtx *dctx, uint32_t i, uint8_t *dst,
                        struct cfs_err *err)
{
	uint32_t kind = o->entries[i] >> 30, len = o->entries[i] & LEN_MASK;
	uint64_t raw = i + 1 == o->nframes ? o->size - ((uint64_t)i << o->shift) : 1ull << o->shift;
	const char *why = "does not decode";
	char path[48];
	size_t n;

	if (kind == KIND_ZERO) {
		/* Nothing stored: the entry itself is covered by the table's checksum. */
		memset(dst, 0, raw);
		return 0;
	}
	if (kind == KIND_RAW) {
		if (read_all(o->fd, dst, raw, (off_t)o->offsets[i]))
			goto bad;
	} else {
		if (!o->cbuf) {
			o->cbuf = malloc(o->cbuf_size ? o->cbuf_size : 1);
			if (!o->cbuf)
				return -ENOMEM;
		}
		if (read_all(o->fd, o->cbuf, len, (off_t)o->offsets[i]))
			goto bad;
		n = ZSTD_decompressDCtx(dctx, dst, raw, o->cbuf, len);
		if (ZSTD_isError(n) || n != raw)
			goto bad;
	}
	if (!o->sums || XXH3_64bits(dst, raw) == o->sums[i])
		return 0;
	why = "fails its checksum";
bad:
	objkey_path(&o->key, path);
	return err_set(err, -EBADMSG, "%s: corrupt object: frame %u %s", path, i, why);
}

/* The content of frame i, decoded into the object's frame buffer (kept for the next read). */
static int frame_get(struct object *o, ZSTD_DCtx *dctx, uint32_t i, const uint8_t **ret,
                     struct cfs_err *err)
{
	int r;

	if (o->frame_index != i) {
		if (!o->frame) {
			o->frame = malloc(1ull << o->shift);
			if (!o->frame)
				return -ENOMEM;
		}
		o->frame_index = -1;
		r = frame_decode(o, dctx, i, o->frame, err);
		if (r)
			return r;
		o->frame_index = i;
	}
	*ret = o->frame;
	return 0;
}

void object_share_frames(struct object *o, struct cache *frames)
{
	o->frames = frames;
}

/* n bytes at in of frame i (raw bytes long) from the shared frames, decoded by whichever thread
 * wanted it first: the small contents packed in one frame cost one decompression between them.
 * -ENOBUFS: not cached. */
static int frame_copy_shared(struct object *o, ZSTD_DCtx *dctx, uint32_t i, uint64_t raw,
                             uint64_t in, size_t n, uint8_t *dst, struct cfs_err *err)
{
	struct cache_block *b;
	uint64_t lo, hi;
	bool fill;
	int r;

	memcpy(&lo, o->key.b, 8);
	memcpy(&hi, o->key.b + 8, 8);
	r = cache_get(o->frames, lo, hi, i, (size_t)raw, &b, &fill);
	if (r)
		return r;
	if (fill) {
		r = frame_decode(o, dctx, i, cache_block_data(b), err);
		cache_filled(o->frames, b, r, r ? 0 : (size_t)raw);
	}
	if (!r)
		memcpy(dst, cache_block_data(b) + in, n);
	cache_put(o->frames, b);
	return r;
}

int object_read(struct object *o, ZSTD_DCtx *dctx, uint64_t off, size_t len, uint8_t *buf,
                size_t *ret_n, struct cfs_err *err)
{
	uint64_t fsz = 1ull << o->shift;
	size_t done = 0;

	if (off >= o->size) {
		*ret_n = 0;
		return 0;
	}
	if (len > o->size - off)
		len = (size_t)(o->size - off);
	while (done < len) {
		uint32_t i = (uint32_t)(off >> o->shift);
		uint64_t in = off & (fsz - 1);
		uint64_t raw = i + 1 == o->nframes ? o->size - ((uint64_t)i << o->shift) : fsz;
		size_t n = raw - in < len - done ? (size_t)(raw - in) : len - done;
		const uint8_t *f;
		int r;

		if (in == 0 && n == raw && o->frame_index != i) {
			r = frame_decode(o, dctx, i, buf + done, err);
		} else {
			r = o->frames ? frame_copy_shared(o, dctx, i, raw, in, n, buf + done, err)
			              : -ENOBUFS;
			if (r == -ENOBUFS) {
				r = frame_get(o, dctx, i, &f, err);
				if (r == 0)
					memcpy(buf + done, f + in, n);
			}
		}
		if (r)
			return r;
		done += n;
		off += n;
	}
	*ret_n = done;
	return 0;
}

struct cmp_ctx {
	const uint8_t *content;
};

static int cmp_piece(void *ctx, const uint8_t *p, size_t n, bool hole)
{
	struct cmp_ctx *c = ctx;
	int r;

	(void)hole;
	r = memcmp(c->content, p, n) != 0;
	c->content += n;
	return r;
}

int object_compare(struct object *o, ZSTD_DCtx *dctx, uint64_t off, const struct object_src *src,
                   struct cfs_err *err)
{
	uint64_t fsz = 1ull << o->shift, done = 0;
	char path[48];

	objkey_path(&o->key, path);
	if (off > o->size || src->len > o->size - off)
		goto differs;
	while (done < src->len) {
		uint32_t i = (uint32_t)((off + done) >> o->shift);
		uint64_t in = (off + done) & (fsz - 1);
		uint64_t raw = i + 1 == o->nframes ? o->size - ((uint64_t)i << o->shift) : fsz;
		uint64_t n = raw - in < src->len - done ? raw - in : src->len - done;
		struct cmp_ctx c;
		const uint8_t *f;
		int r;

		if ((o->entries[i] >> 30) == KIND_ZERO) {
			if (!src_is_zero(src, done, n))
				goto differs;
		} else {
			r = frame_get(o, dctx, i, &f, err);
			if (r)
				return r;
			c.content = f + in;
			if (src_walk(src, done, n, cmp_piece, &c))
				goto differs;
		}
		done += n;
	}
	return 0;
differs:
	return err_set(err, -EBADMSG, "%s: stored content differs from a file with the same key",
	               path);
}

int object_check(struct object *o, ZSTD_DCtx *dctx, struct cfs_err *err)
{
	XXH3_state_t st;
	struct objkey k;
	char path[48];

	XXH3_128bits_reset(&st);
	for (uint32_t i = 0; i < o->nframes; i++) {
		uint64_t raw = i + 1 == o->nframes ? o->size - ((uint64_t)i << o->shift)
		                                   : 1ull << o->shift;
		const uint8_t *f;
		int r = frame_get(o, dctx, i, &f, err);

		if (r)
			return r;
		XXH3_128bits_update(&st, f, raw);
	}
	key_from_hash(XXH3_128bits_digest(&st), &k);
	if (memcmp(k.b, o->key.b, 16) == 0)
		return 0;
	objkey_path(&o->key, path);
	return err_set(err, -EBADMSG, "%s: corrupt object: content does not match its key", path);
}
