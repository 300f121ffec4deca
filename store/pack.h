/* SPDX-License-Identifier: MIT */
/*
 * Packing small contents: the new small contents of an ingest are laid end to end, sorted
 * so that similar files sit together, and stored as a few large images ("packs"). One
 * zstd frame then compresses dozens of related files at once, and no small content wastes
 * most of a filesystem block.
 */
#ifndef CONDAFS_PACK_H
#define CONDAFS_PACK_H

#include "object.h"

#include <stddef.h>
#include <stdint.h>

/* Contents up to this size are packed; larger ones get an image of their own. */
#define PACK_MEMBER_MAX (256u * 1024)
/* Raw bytes per pack: large enough to amortise a file, small enough for gc to free. */
#define PACK_TARGET (8u << 20)

struct packer;

int packer_new(struct packer **ret);
void packer_free(struct packer *p);

/* Add a copy of a content, unless its key is there already. name (the file's path) orders
 * similar contents together. Safe to call from several threads. */
int packer_add(struct packer *p, const struct objkey *key, const uint8_t *data, size_t len,
               const char *name);

/* Sort the members and cut them into packs; no packer_add after this. -EBADMSG if two
 * members have the same key but not the same bytes (a hash collision). */
int packer_layout(struct packer *p, size_t *ret_npacks);

/* Copy bytes [off, off + len) of pack i to dst. The content of a pack is never held in
 * one piece: its frames are gathered from the members as they are compressed. */
void packer_gather(const struct packer *p, size_t i, uint64_t off, size_t len, uint8_t *dst);

/* The key of pack i's content. */
int packer_pack_key(const struct packer *p, size_t i, struct objkey *ret);

/* The content length of pack i. */
uint64_t packer_pack_len(const struct packer *p, size_t i);

/* Where a member went: its pack index and offset. -ENOENT if key was never added. */
int packer_find(const struct packer *p, const struct objkey *key, size_t *ret_pack,
                uint64_t *ret_off, uint64_t *ret_len);

/* The bytes of a member (valid while p lives). */
const uint8_t *packer_member_data(const struct packer *p, size_t pack, uint64_t off);

#endif
