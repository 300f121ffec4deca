/* SPDX-License-Identifier: MIT */
/*
 * Prefix relocation: finding the build prefix inside a file, storing the file without it
 * ("neutral" content, so environments that differ only by prefix share one object), and
 * serving it back under any other prefix.
 *
 * Text mode: every occurrence anywhere is removed; reading inserts the new prefix at each
 * recorded offset, so the size changes by (new - old length) per occurrence.
 * Binary mode (conda's rule): only occurrences inside a NUL-terminated string count. The
 * occurrences are removed and as many NULs put right after the string, so the neutral
 * content keeps the file's size. Reading inserts the new prefix and takes the same number
 * of bytes back out of the NULs after the string: the size never changes, and a prefix
 * that does not fit the slot is -ENOSPC.
 *
 * Offsets in a struct reloc are in neutral coordinates, sorted. A struct reloc holds the
 * encoded record (or a window onto it) and a few marks, never an array of offsets: its
 * memory does not grow with the file (reloc.c R6).
 */
#ifndef CONDAFS_RELOC_H
#define CONDAFS_RELOC_H

#include "condafs/store.h"

#include <stddef.h>
#include <stdint.h>

enum reloc_mode {
	RELOC_NONE = 0, /* never rewritten (.pyc, zip-like archives) */
	RELOC_TEXT = 1,
	RELOC_BINARY = 2,
	/* A .pyc rewritten for its relocated source (store/pyc.c): text-mode inserts into its
	 * strings, plus 32-bit fields (string lengths, the header's source size) that grow by
	 * a multiple of the prefix's length. Record format 2 (docs/reloc-format.md). */
	RELOC_PYC = 3,
};

struct reloc;

/* The mode conda would use for a file it has no record for: none for length-prefixed
 * formats (.pyc, zip, wheel, egg, jar), binary if the content holds a NUL, else text. */
enum reloc_mode reloc_mode_guess(const char *relpath, const uint8_t *data, size_t len);

/*
 * Find prefix (plen bytes) in data. When nothing is found *ret and *ret_neutral are NULL.
 * Otherwise *ret_neutral (malloc'd, *ret_neutral_len bytes) is the neutral content and
 * *ret the record; the caller frees both. placeholder_len, when not 0, is the length of
 * the placeholder conda-meta recorded for the file: a binary slot holds at most that many
 * bytes per occurrence (without it the slot ends at the last NUL before the next
 * non-NUL byte).
 */
int reloc_scan(const uint8_t *data, size_t len, const char *prefix, size_t plen,
               enum reloc_mode mode, size_t placeholder_len, uint8_t **ret_neutral,
               size_t *ret_neutral_len, struct reloc **ret, struct cfs_err *err);

void reloc_free(struct reloc *r);

/* Occurrences that change the size (text mode), else 0. */
uint32_t reloc_text_inserts(const struct reloc *r);

/* 0 if a prefix of plen bytes fits every binary slot, else -ENOSPC. */
int reloc_fits(const struct reloc *r, size_t plen);

/* Read callback for the neutral content: fill buf with len bytes at off; 0 or -errno. */
typedef int (*reloc_source_fn)(void *ctx, uint64_t off, size_t len, uint8_t *buf);

/*
 * Bytes [off, off + len) of the content as served under prefix, clipped to its end;
 * *ret_n is the count written. -ENOSPC when the prefix does not fit a binary slot. It
 * decodes from the last mark before off, reading a record opened with reloc_open through
 * its source (and, when it read from it, tells the source it is done before it returns).
 * Not thread-safe: r holds the window it reads through.
 */
int reloc_read(struct reloc *r, uint64_t neutral_len, const char *prefix, size_t plen, uint64_t off,
               size_t len, uint8_t *buf, size_t *ret_n, reloc_source_fn src, void *ctx);

/* A field of a pyc record: the 32-bit little-endian number at neutral offset x is served
 * as its neutral value + k * |prefix| (mod 2^32). */
struct reloc_field {
	uint64_t x;
	uint32_t k;
};

/*
 * A pyc record (RELOC_PYC): inserts at the neutral offsets ins[0..nins) (sorted, text
 * mode), fields[0..nfields) sorted, not overlapping, with no insert strictly inside one.
 * -E2BIG when the record would be larger than RELOC_PYC_MAX bytes.
 */
#define RELOC_PYC_MAX 4096
int reloc_make_pyc(const uint64_t *ins, size_t nins, const struct reloc_field *fields,
                   size_t nfields, struct reloc **ret);

/* The whole content (neutral, nlen bytes in memory) as served under prefix to, given to
 * out in pieces of at most 1 MiB; relpath names the file in the error. */
int reloc_emit(struct reloc *r, const uint8_t *neutral, size_t nlen, const char *relpath,
               const char *to, int (*out)(void *ctx, const void *buf, size_t n), void *ctx,
               struct cfs_err *err);

/* The record's encoding for the catalog. *ret is malloc'd. Only for a record in memory
 * (reloc_scan, reloc_decode); -EINVAL for one opened from a source. */
int reloc_encode(const struct reloc *r, uint8_t **ret, size_t *ret_len);
/* A record from its encoding in memory (copied). -EBADMSG on a malformed blob. */
int reloc_decode(const uint8_t *blob, size_t len, struct reloc **ret);

/* Where an encoded record is, when it is read piece by piece (reloc_open). */
struct reloc_blob {
	/* len bytes at off of record key into buf: 0 or -errno. */
	int (*read)(void *ctx, int64_t key, uint64_t off, size_t len, uint8_t *buf);
	/* No more reads until the next reloc_open or reloc_read call (may be NULL). */
	void (*done)(void *ctx);
	void *ctx; /* must outlive the record */
	int64_t key;
	uint64_t len; /* of the encoded record */
};
/*
 * A record read through b: validated whole (one pass, -EBADMSG as reloc_decode), then kept
 * in memory when small, else read again through b, a window at a time, by every
 * reloc_read: its memory is bounded whatever its length (R6).
 */
int reloc_open(const struct reloc_blob *b, struct reloc **ret);

#endif
