/* SPDX-License-Identifier: MIT */
/*
 * Object images: one content compressed as independent zstd frames with a frame table, so
 * that any byte range decompresses only the frames it touches. An image is a file under
 * objects/; it holds one large content, or a pack of many small ones (see pack.c).
 */
#ifndef CONDAFS_OBJECT_H
#define CONDAFS_OBJECT_H

#include "condafs/store.h"
#include "objkey.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <zstd.h>

/* 256 KiB frames: see docs/ARCHITECTURE.md, "Frame size". */
#define OBJECT_FRAME_SHIFT 18
#define OBJECT_FRAME_SIZE  (1u << OBJECT_FRAME_SHIFT)

void objkey_hex(const struct objkey *k, char ret[33]);
/* -EINVAL unless hex is 32 hex digits. */
int objkey_parse(const char *hex, struct objkey *ret);
/* objects/<2 hex>/<30 hex>, relative to the store directory. */
void objkey_path(const struct objkey *k, char ret[48]);

/*
 * Every image under objects/: each file objects/xx/y whose name makes a key (the one
 * walker gc's sweep, verify's orphan search and the new-store check share). fn(ctx, dfd,
 * name, key), dfd the open objects/xx, name the file's name in it: 0 goes on, > 0 stops
 * and is returned, < 0 is returned as the error fn set. A missing objects/xx is skipped;
 * one that cannot be read is -errno, "STORE_DIR/objects/xx: reason" in err.
 */
int object_each_image(int store_fd, const char *store_dir,
                      int (*fn)(void *ctx, int dfd, const char *name, const struct objkey *key),
                      void *ctx, struct cfs_err *err);

/* A content to store: len bytes at data, where the ranges outside the sorted data extents
 * (holes of a sparse file) read as zeros and are never touched. nextents == 0 means the
 * whole range is data. Or, with data NULL, len bytes that read gives piece by piece, so a
 * content of any size is handled in bounded memory. */
struct object_src {
	const uint8_t *data;
	uint64_t len;
	const uint64_t (*extents)[2]; /* [start, end) pairs */
	size_t nextents;
	/* The piece of the content at off, of at most max bytes (max > 0, off + max <= len):
	 * *ret_hole for *ret_n bytes of zeros, else *ret_n bytes at *ret_p, valid until the
	 * next call. Called with increasing offsets, except that a range may be asked for
	 * again right after. 0 or -errno, which the call that asked returns. */
	int (*read)(void *ctx, uint64_t off, uint64_t max, const uint8_t **ret_p, uint64_t *ret_n,
	            bool *ret_hole);
	void *ctx;
};

/*
 * An ingest's temporary directory, tmp/ingest-<pid>-<n>, locked (flock) while the ingest
 * lives. Opening one first removes those whose ingest died: their lock is free.
 * *ret_fd is the directory, ret_name its name in tmp/; object_tmp_close removes it with
 * whatever is left in it.
 */
int object_tmp_open(int store_fd, int *ret_fd, char ret_name[64], struct cfs_err *err);
void object_tmp_close(int store_fd, int tmp_fd, const char *name);
/*
 * Remove the temporary directories of dead ingests (their lock is free), calling fn with
 * the name of each one removed. With exclusive (the caller holds the store lock
 * exclusively: no ingest is making one), also those a dead ingest left half made.
 */
int object_tmp_clean(int store_fd, bool exclusive, void (*fn)(void *ctx, const char *name),
                     void *ctx, struct cfs_err *err);

/*
 * Writing images for one ingest, from one thread. Images are written to the ingest's
 * temporary directory tmp_fd without fsync; object_publish moves them into place once the
 * caller has made them durable (syncfs), so an ingest costs two syncs, not one per file.
 */
struct object_writer;
int object_writer_new(int store_fd, int tmp_fd, struct object_writer **ret);
void object_writer_free(struct object_writer *w);

void object_hash(const struct object_src *src, struct objkey *ret);
/* The key of the concatenation of n pieces. */
void object_hash_pieces(const struct iovec *v, size_t n, struct objkey *ret);

/*
 * Compress src into an image in the temporary directory, to be published. If key is
 * stored already (a concurrent ingest, or an orphan of a crashed one) the stored image is
 * compared byte for byte with src instead: -EBADMSG if it differs. *ret_stored is the
 * image size.
 */
int object_write(struct object_writer *w, const struct objkey *key, const struct object_src *src,
                 uint64_t *ret_stored, struct cfs_err *err);

/*
 * An image whose frames several threads compress at once, for a content too large to
 * wait for one thread. The content of len bytes is given frame by frame and is not kept.
 * object_frames_tasks is how many object_frames_compress calls it takes (i from 0 below
 * that, each once, in any order, from any threads, each with its own writer); the one
 * that returns *ret_last true is the last, and its caller then writes the image with
 * object_frames_write, as object_write would (the key is the caller's to compute). The
 * frames are held in memory until object_frames_free.
 */
struct object_frames;
int object_frames_new(uint64_t len, struct object_frames **ret);
void object_frames_free(struct object_frames *f);
uint32_t object_frames_tasks(const struct object_frames *f);
/* data: the content of frame i, OBJECT_FRAME_SIZE bytes (the last frame: what is left). */
int object_frames_compress(struct object_writer *w, struct object_frames *f, uint32_t i,
                           const uint8_t *data, bool *ret_last);
/* Unlike object_write, this does not look for a stored image first: a key stored already
 * is compared when object_publish finds it there (O2). */
int object_frames_write(struct object_writer *w, struct object_frames *f, const struct objkey *key,
                        uint64_t *ret_stored, struct cfs_err *err);

/* How many images were written since the last object_publish. */
size_t object_writer_pending(const struct object_writer *w);
/* fsync each of them: for a few, cheaper than a syncfs, which also waits for whatever
 * else the file system has to write. */
int object_writer_sync(struct object_writer *w, struct cfs_err *err);

/*
 * Move every image written since the last call into objects/ (never replacing one: a key
 * that appeared meanwhile is compared instead), and with sync_dirs fsync the directories
 * that changed (else the caller makes them durable, with a syncfs). Call after the images
 * are durable.
 */
int object_publish(struct object_writer *w, bool sync_dirs, struct cfs_err *err);

/*
 * One image made durable now, in a temporary directory of its own: for an image made
 * inside a catalog transaction (a tree image), which cannot wait for an ingest's syncfs.
 * object_one_open makes the directory; object_one_write writes the image there with
 * frames of 1 << shift bytes (12..OBJECT_FRAME_SHIFT) and fsyncs it (a key stored already
 * is compared instead, as object_write does), from any one thread; object_one_publish
 * moves it into place and fsyncs its directory (O1); object_one_close removes the
 * directory. Only the write runs off the opening thread, so that every change to the
 * store's directories stays on it.
 */
struct object_one;
int object_one_open(int store_fd, struct object_one **ret, struct cfs_err *err);
int object_one_write(struct object_one *o, const struct objkey *key, const struct object_src *src,
                     uint32_t shift, uint64_t *ret_stored, struct cfs_err *err);
int object_one_publish(struct object_one *o, struct cfs_err *err);
void object_one_close(struct object_one *o);

/* An opened image, ready for range reads. */
struct object;
struct cache;

/* Open the image of key (format 1 or 2, docs/object-format.md). -EBADMSG if missing,
 * malformed, or (format 2) its header or frame table fails its checksum. */
int object_open(int store_fd, const struct objkey *key, struct object **ret, struct cfs_err *err);
/* The same for an image open at fd, which the object then owns (and closes). */
int object_open_fd(int fd, const struct objkey *key, struct object **ret, struct cfs_err *err);
/* Bytes the image takes on disk. */
uint64_t object_image_size(const struct object *o);
void object_close(struct object *o);
uint64_t object_size(const struct object *o);
/* The image's format: 2 (frames checked on every decode) or 1 (written before frames had
 * checksums: only object_check, by the key, finds damage in them). */
unsigned object_format(const struct object *o);

/* From now on, reads that want part of a frame take the decoded frame from frames, shared
 * with other threads' objects, instead of decoding it into a buffer of this object's own. */
void object_share_frames(struct object *o, struct cache *frames);

/* Read [off, off + len) of the content (clipped to its end) into buf, using dctx.
 * -EBADMSG on a frame that does not decompress to its size or (format 2) whose bytes fail
 * its checksum: then buf holds no byte of that frame worth reading. */
int object_read(struct object *o, ZSTD_DCtx *dctx, uint64_t off, size_t len, uint8_t *buf,
                size_t *ret_n, struct cfs_err *err);

/* 0 if bytes [off, off + src->len) of o equal src byte for byte, -EBADMSG if not. */
int object_compare(struct object *o, ZSTD_DCtx *dctx, uint64_t off, const struct object_src *src,
                   struct cfs_err *err);

/* Re-read the whole content and check it hashes to its key: 0 or -EBADMSG. */
int object_check(struct object *o, ZSTD_DCtx *dctx, struct cfs_err *err);

#endif
