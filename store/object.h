/* SPDX-License-Identifier: MIT */
/*
 * Objects: one stored content, compressed as independent zstd frames with a frame table so
 * that any byte range decompresses only the frames it touches. An object image is either a
 * file under objects/ or, for small contents, a blob inlined in the catalog; both have the
 * same layout (see object.c).
 */
#ifndef CONDAFS_OBJECT_H
#define CONDAFS_OBJECT_H

#include "condafs/store.h"

#include <stdint.h>
#include <zstd.h>

#define OBJECT_FRAME_SHIFT 18 /* 256 KiB frames: see README, "Frame size" */
#define OBJECT_FRAME_SIZE  (1u << OBJECT_FRAME_SHIFT)
/* Images up to this size live in the catalog instead of a file: see README, "Tiny files". */
#define OBJECT_INLINE_MAX 3072

struct objkey {
	uint8_t b[16];
};

void objkey_hex(const struct objkey *k, char ret[33]);
/* -EINVAL unless hex is 32 hex digits. */
int objkey_parse(const char *hex, struct objkey *ret);
/* objects/<2 hex>/<30 hex>, relative to the store directory. */
void objkey_path(const struct objkey *k, char ret[48]);

/* A content to store: len bytes at data, where the ranges outside the sorted data extents
 * (holes of a sparse file) read as zeros and are never touched. nextents == 0 means the
 * whole range is data. */
struct object_src {
	const uint8_t *data;
	uint64_t len;
	const uint64_t (*extents)[2]; /* [start, end) pairs */
	size_t nextents;
};

/* Compression state for one thread; the caller keeps one per worker. */
struct object_writer;
int object_writer_new(struct object_writer **ret);
void object_writer_free(struct object_writer *w);

void object_hash(const struct object_src *src, struct objkey *ret);

/*
 * Compress src into an image. If the image fits OBJECT_INLINE_MAX it is returned in
 * *ret_blob (malloc'd, the caller frees) and nothing is written. Otherwise it is written to
 * an unnamed file in objects_fd's tree, fsynced and linked at objkey_path(key): *ret_blob is
 * NULL. If that path exists already (a concurrent ingest, or an orphan of a crashed one)
 * the existing file is compared byte for byte with src and -EBADMSG returned if it differs.
 * *ret_stored is the image size.
 */
int object_write(struct object_writer *w, int store_fd, const struct objkey *key,
		 const struct object_src *src, uint8_t **ret_blob, uint64_t *ret_stored,
		 struct cfs_err *err);

/* fsync every objects/ subdirectory an object was linked into since the last call. */
int object_sync_dirs(struct object_writer *w, int store_fd, struct cfs_err *err);

/* An opened image, file or blob, ready for range reads. */
struct object;

/* Open the image of key: blob (borrowed; must live as long as the object) if not NULL,
 * else the file. -EBADMSG if missing or malformed. */
int object_open(int store_fd, const struct objkey *key, const uint8_t *blob, size_t bloblen,
		struct object **ret, struct cfs_err *err);
void object_close(struct object *o);
uint64_t object_size(const struct object *o);

/* Read [off, off + len) of the content (clipped to its end) into buf, using dctx.
 * -EBADMSG on a frame that does not decompress to its size. */
int object_read(struct object *o, ZSTD_DCtx *dctx, uint64_t off, size_t len, uint8_t *buf,
		size_t *ret_n, struct cfs_err *err);

/* 0 if the content of o equals src byte for byte, -EBADMSG if not. */
int object_compare(struct object *o, ZSTD_DCtx *dctx, const struct object_src *src,
		   struct cfs_err *err);

/* Re-read the whole content and check it hashes to its key: 0 or -EBADMSG. */
int object_check(struct object *o, ZSTD_DCtx *dctx, struct cfs_err *err);

#endif
