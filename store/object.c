// SPDX-License-Identifier: MIT
/*
 * Object images: writing a content as independent zstd frames with a frame table, reading
 * any byte range back, and checking an image against its key. Images are written the way
 * git writes objects: to an unnamed file in the store, fsynced, then linked into place.
 *
 * Invariants:
 * O1: a file at objects/xx/yyy is complete and fsynced: it is linked only after fsync, and
 *     an existing path is never rewritten.
 * O2: a path that exists when we want to write it holds the same content, or we fail:
 *     it is compared byte for byte, so a hash collision can never merge two contents.
 *
 * Image layout (little endian):
 *   0  8 magic "CFSOBJ1\n"      16  8 content size
 *   8  4 frame shift            24 16 key (XXH3-128 of the content)
 *  12  4 frame count            40  4 * frame count: frame table
 * then the frames back to back. A table entry holds the frame's stored length in its low
 * 30 bits and its kind in the top two: zstd, raw (incompressible) or zero (a hole: nothing
 * stored). Every frame but the last holds 1 << shift bytes of content.
 */
#include "object.h"

#include "err.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* Inlined: the hash runs over every byte ingested. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define HDR_SIZE      40
#define KIND_ZSTD     0u
#define KIND_RAW      1u
#define KIND_ZERO     2u
#define LEN_MASK      ((1u << 30) - 1)
#define ZSTD_LEVEL    3
#define WRITE_BUF_MAX (4u << 20)

static const char object_magic[8] = {'C', 'F', 'S', 'O', 'B', 'J', '1', '\n'};
static const uint8_t zeros[65536];

void objkey_hex(const struct objkey *k, char ret[33])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		ret[2 * i] = hex[k->b[i] >> 4];
		ret[2 * i + 1] = hex[k->b[i] & 15];
	}
	ret[32] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int objkey_parse(const char *hex, struct objkey *ret)
{
	struct objkey k;

	if (strlen(hex) != 32)
		return -EINVAL;
	for (int i = 0; i < 16; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

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

/* ---- sources with holes ---- */

/* Calls fn for each piece of [off, off + len) of src: data pieces point into src->data,
 * hole pieces point at zeros (at most sizeof(zeros) at a time). */
static int src_walk(const struct object_src *src, uint64_t off, uint64_t len,
		    int (*fn)(void *ctx, const uint8_t *p, size_t n, bool hole), void *ctx)
{
	uint64_t end = off + len;
	size_t e = 0;

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

/* ---- writing ---- */

struct object_writer {
	ZSTD_CCtx *cctx;
	uint8_t *frame;  /* one frame of content, for sources with holes */
	uint8_t *cbuf;   /* ZSTD_compressBound(frame size) */
	size_t cbuf_size;
	uint8_t *out;    /* the image being assembled */
	size_t out_len, out_cap;
	uint8_t dirs_touched[256];
};

int object_writer_new(struct object_writer **ret)
{
	struct object_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->cctx = ZSTD_createCCtx();
	w->frame = malloc(OBJECT_FRAME_SIZE);
	w->cbuf_size = ZSTD_compressBound(OBJECT_FRAME_SIZE);
	w->cbuf = malloc(w->cbuf_size);
	if (!w->cctx || !w->frame || !w->cbuf) {
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
	free(w->frame);
	free(w->cbuf);
	free(w->out);
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
			return -errno;
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
			return -errno;
		}
		if (r == 0)
			return -EBADMSG;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* Compress frame i of src, appending it to w->out; *ret_entry is its table entry. */
static int compress_frame(struct object_writer *w, const struct object_src *src, uint64_t i,
			  uint32_t *ret_entry)
{
	uint64_t off = i << OBJECT_FRAME_SHIFT;
	size_t n = src->len - off < OBJECT_FRAME_SIZE ? (size_t)(src->len - off) : OBJECT_FRAME_SIZE;
	const uint8_t *p;
	size_t c;
	int r;

	if (src_is_zero(src, off, n)) {
		*ret_entry = KIND_ZERO << 30;
		return 0;
	}
	if (src->nextents) {
		struct copy_ctx cc = {w->frame};

		src_walk(src, off, n, copy_piece, &cc);
		p = w->frame;
	} else {
		p = src->data + off;
	}
	c = ZSTD_compress2(w->cctx, w->cbuf, w->cbuf_size, p, n);
	if (ZSTD_isError(c))
		return -EIO;
	/* Store raw when compression saves under 1/64: not worth a decompression per read. */
	if (c >= n - n / 64) {
		r = out_append(w, p, n);
		*ret_entry = KIND_RAW << 30 | (uint32_t)n;
	} else {
		r = out_append(w, w->cbuf, c);
		*ret_entry = KIND_ZSTD << 30 | (uint32_t)c;
	}
	return r;
}

/* A header and table for src with all entries zero, in little endian. */
static int image_header(const struct objkey *key, const struct object_src *src,
			uint64_t nframes, uint8_t **ret, size_t *ret_len)
{
	size_t len = HDR_SIZE + 4 * (size_t)nframes;
	uint8_t *h = calloc(1, len);
	uint32_t v32;
	uint64_t v64;

	if (!h)
		return -ENOMEM;
	memcpy(h, object_magic, 8);
	v32 = htole32(OBJECT_FRAME_SHIFT);
	memcpy(h + 8, &v32, 4);
	v32 = htole32((uint32_t)nframes);
	memcpy(h + 12, &v32, 4);
	v64 = htole64(src->len);
	memcpy(h + 16, &v64, 8);
	memcpy(h + 24, key->b, 16);
	*ret = h;
	*ret_len = len;
	return 0;
}

static int link_tmpfile(struct object_writer *w, int store_fd, int fd, const struct objkey *key,
			const struct object_src *src, struct cfs_err *err)
{
	char proc[64], path[48];
	struct object *o = NULL;
	ZSTD_DCtx *dctx = NULL;
	int r;

	objkey_path(key, path);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	w->dirs_touched[key->b[0]] = 1;
	if (linkat(AT_FDCWD, proc, store_fd, path, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	if (errno != EEXIST)
		return err_set(err, -errno, "%s: cannot link object: %s", path, strerror(errno));
	/* O2: somebody stored this key first; it must be our content. */
	dctx = ZSTD_createDCtx();
	if (!dctx)
		return -ENOMEM;
	r = object_open(store_fd, key, NULL, 0, &o, err);
	if (r == 0)
		r = object_compare(o, dctx, src, err);
	object_close(o);
	ZSTD_freeDCtx(dctx);
	return r;
}

int object_write(struct object_writer *w, int store_fd, const struct objkey *key,
		 const struct object_src *src, uint8_t **ret_blob, uint64_t *ret_stored,
		 struct cfs_err *err)
{
	uint64_t nframes = (src->len + OBJECT_FRAME_SIZE - 1) >> OBJECT_FRAME_SHIFT;
	uint8_t *hdr = NULL;
	size_t hdr_len;
	off_t file_off;
	char path[48];
	int fd = -1, r;

	objkey_path(key, path);
	if (nframes > UINT32_MAX)
		return err_set(err, -EFBIG, "%s: content too large", path);
	r = image_header(key, src, nframes, &hdr, &hdr_len);
	if (r)
		return r;
	w->out_len = 0;
	r = out_append(w, hdr, hdr_len);
	if (r)
		goto out;

	/* Small contents are assembled in memory: most become catalog blobs. */
	if (nframes <= 1) {
		uint32_t entry = 0;

		if (nframes == 1) {
			r = compress_frame(w, src, 0, &entry);
			if (r)
				goto out;
			entry = htole32(entry);
			memcpy(w->out + HDR_SIZE, &entry, 4);
		}
		if (w->out_len <= OBJECT_INLINE_MAX) {
			*ret_blob = malloc(w->out_len);
			if (!*ret_blob) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(*ret_blob, w->out, w->out_len);
			*ret_stored = w->out_len;
			goto out;
		}
	}

	fd = openat(store_fd, "objects", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0444);
	if (fd < 0) {
		r = err_set(err, -errno, "objects: cannot create a temporary file: %s",
			    strerror(errno));
		goto out;
	}
	file_off = 0;
	if (nframes > 1) {
		/* The table is written last, when every frame's length is known. */
		file_off = (off_t)hdr_len;
		w->out_len = 0;
		for (uint64_t i = 0; i < nframes; i++) {
			uint32_t entry;

			r = compress_frame(w, src, i, &entry);
			if (r)
				goto out;
			entry = htole32(entry);
			memcpy(hdr + HDR_SIZE + 4 * i, &entry, 4);
			if (w->out_len >= WRITE_BUF_MAX || i + 1 == nframes) {
				r = write_all(fd, w->out, w->out_len, file_off);
				if (r)
					goto io_err;
				file_off += (off_t)w->out_len;
				w->out_len = 0;
			}
		}
		r = write_all(fd, hdr, hdr_len, 0);
	} else {
		r = write_all(fd, w->out, w->out_len, 0);
		file_off = (off_t)w->out_len;
	}
	if (r)
		goto io_err;
	/* O1: durable before it has a name. */
	if (fsync(fd) < 0) {
		r = -errno;
		goto io_err;
	}
	r = link_tmpfile(w, store_fd, fd, key, src, err);
	if (r)
		goto out;
	*ret_blob = NULL;
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

int object_sync_dirs(struct object_writer *w, int store_fd, struct cfs_err *err)
{
	for (int i = 0; i < 256; i++) {
		char dir[16];
		int fd, r = 0;

		if (!w->dirs_touched[i])
			continue;
		snprintf(dir, sizeof(dir), "objects/%02x", i);
		fd = openat(store_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0)
			r = -errno;
		if (fd >= 0)
			close(fd);
		if (r)
			return err_set(err, r, "%s: cannot sync: %s", dir, strerror(-r));
		w->dirs_touched[i] = 0;
	}
	return 0;
}

/* ---- reading ---- */

struct object {
	struct objkey key;
	int fd;             /* -1 for a blob */
	const uint8_t *blob;
	uint64_t size;
	uint32_t shift;
	uint32_t nframes;
	uint32_t *entries;  /* host order */
	uint64_t *offsets;  /* nframes + 1 image offsets */
	uint8_t *cbuf;      /* compressed frame scratch */
	size_t cbuf_size;
	uint8_t *frame;     /* the last decompressed frame */
	int64_t frame_index; /* which one, -1 none */
};

static int image_read(struct object *o, uint8_t *p, size_t n, uint64_t off)
{
	if (o->fd < 0) {
		memcpy(p, o->blob + off, n);
		return 0;
	}
	return read_all(o->fd, p, n, (off_t)off);
}

int object_open(int store_fd, const struct objkey *key, const uint8_t *blob, size_t bloblen,
		struct object **ret, struct cfs_err *err)
{
	struct object *o = calloc(1, sizeof(*o));
	uint8_t hdr[HDR_SIZE];
	uint64_t image_len, v64;
	char path[48];
	uint32_t v32;
	struct stat sb;
	int r;

	objkey_path(key, path);
	if (!o)
		return -ENOMEM;
	o->key = *key;
	o->fd = -1;
	o->frame_index = -1;
	if (blob) {
		o->blob = blob;
		image_len = bloblen;
	} else {
		o->fd = openat(store_fd, path, O_RDONLY | O_CLOEXEC);
		if (o->fd < 0) {
			r = err_set(err, -EBADMSG, "%s: missing object: %s", path,
				    strerror(errno));
			goto fail;
		}
		if (fstat(o->fd, &sb) < 0) {
			r = err_set(err, -errno, "%s: %s", path, strerror(errno));
			goto fail;
		}
		image_len = (uint64_t)sb.st_size;
	}
	if (image_len < HDR_SIZE || image_read(o, hdr, HDR_SIZE, 0))
		goto bad;
	memcpy(&v32, hdr + 8, 4);
	o->shift = le32toh(v32);
	memcpy(&v32, hdr + 12, 4);
	o->nframes = le32toh(v32);
	memcpy(&v64, hdr + 16, 8);
	o->size = le64toh(v64);
	if (memcmp(hdr, object_magic, 8) || memcmp(hdr + 24, key->b, 16) || o->shift < 12 ||
	    o->shift > 26 ||
	    o->nframes != ((o->size + (1ull << o->shift) - 1) >> o->shift) ||
	    image_len < HDR_SIZE + 4ull * o->nframes)
		goto bad;
	o->entries = malloc(4ull * o->nframes + 1);
	o->offsets = malloc(8ull * (o->nframes + 1ull));
	if (!o->entries || !o->offsets) {
		r = -ENOMEM;
		goto fail;
	}
	if (image_read(o, (uint8_t *)o->entries, 4ull * o->nframes, HDR_SIZE))
		goto bad;
	o->offsets[0] = HDR_SIZE + 4ull * o->nframes;
	for (uint32_t i = 0; i < o->nframes; i++) {
		uint32_t e = le32toh(o->entries[i]), kind = e >> 30, len = e & LEN_MASK;
		uint64_t raw = i + 1 == o->nframes ? o->size - ((uint64_t)i << o->shift)
						  : 1ull << o->shift;

		o->entries[i] = e;
		if (kind > KIND_ZERO || (kind == KIND_RAW && len != raw) ||
		    (kind == KIND_ZERO && len != 0))
			goto bad;
		o->offsets[i + 1] = o->offsets[i] + len;
		if (len > o->cbuf_size)
			o->cbuf_size = len;
	}
	if (o->offsets[o->nframes] != image_len)
		goto bad;
	*ret = o;
	return 0;
bad:
	r = err_set(err, -EBADMSG, "%s: corrupt object: malformed image", path);
fail:
	object_close(o);
	return r;
}

void object_close(struct object *o)
{
	if (!o)
		return;
	if (o->fd >= 0)
		close(o->fd);
	free(o->entries);
	free(o->offsets);
	free(o->cbuf);
	free(o->frame);
	free(o);
}

uint64_t object_size(const struct object *o)
{
	return o->size;
}

/* Decompress frame i into dst (which holds the frame's content size). */
static int frame_decode(struct object *o, ZSTD_DCtx *dctx, uint32_t i, uint8_t *dst,
			struct cfs_err *err)
{
	uint32_t kind = o->entries[i] >> 30, len = o->entries[i] & LEN_MASK;
	uint64_t raw = i + 1 == o->nframes ? o->size - ((uint64_t)i << o->shift) : 1ull << o->shift;
	const uint8_t *src;
	char path[48];
	size_t n;

	if (kind == KIND_ZERO) {
		memset(dst, 0, raw);
		return 0;
	}
	if (o->fd < 0) {
		src = o->blob + o->offsets[i];
	} else {
		if (!o->cbuf) {
			o->cbuf = malloc(o->cbuf_size ? o->cbuf_size : 1);
			if (!o->cbuf)
				return -ENOMEM;
		}
		if (read_all(o->fd, o->cbuf, len, (off_t)o->offsets[i]))
			goto bad;
		src = o->cbuf;
	}
	if (kind == KIND_RAW) {
		memcpy(dst, src, raw);
		return 0;
	}
	n = ZSTD_decompressDCtx(dctx, dst, raw, src, len);
	if (!ZSTD_isError(n) && n == raw)
		return 0;
bad:
	objkey_path(&o->key, path);
	return err_set(err, -EBADMSG, "%s: corrupt object: frame %u does not decode", path, i);
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
			r = frame_get(o, dctx, i, &f, err);
			if (r == 0)
				memcpy(buf + done, f + in, n);
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

int object_compare(struct object *o, ZSTD_DCtx *dctx, const struct object_src *src,
		   struct cfs_err *err)
{
	char path[48];

	objkey_path(&o->key, path);
	if (o->size != src->len)
		return err_set(err, -EBADMSG,
			       "%s: stored content differs from a file with the same key", path);
	for (uint32_t i = 0; i < o->nframes; i++) {
		uint64_t off = (uint64_t)i << o->shift;
		uint64_t raw = i + 1 == o->nframes ? o->size - off : 1ull << o->shift;
		struct cmp_ctx c;
		const uint8_t *f;
		int r;

		if ((o->entries[i] >> 30) == KIND_ZERO) {
			if (!src_is_zero(src, off, raw))
				goto differs;
			continue;
		}
		r = frame_get(o, dctx, i, &f, err);
		if (r)
			return r;
		c.content = f;
		if (src_walk(src, off, raw, cmp_piece, &c))
			goto differs;
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
