/* SPDX-License-Identifier: MIT */
/*
 * A .pyc compiled beside a source that holds the build prefix: served valid for the source
 * as relocated, its header's source size following the source's and the strings of its
 * constants naming the new prefix (store/pyc.c).
 */
#ifndef CONDAFS_PYC_H
#define CONDAFS_PYC_H

#include "reloc.h"

#include "condafs/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The pyc's header is 16 bytes: magic, flags, then source mtime and size (timestamp). */
#define PYC_HEADER 16

/*
 * True when data is a timestamp pyc of a CPython this module knows (3.8 to 3.13) whose
 * header matches a source of mtime (seconds) and size as Python checks it.
 */
bool pyc_header_matches(const uint8_t *data, size_t len, int64_t src_mtime_s, uint64_t src_size);

/*
 * The pyc data (whose header pyc_header_matches) rewritten for a source of src_neutral
 * neutral bytes and src_inserts text inserts: the neutral content (malloc'd) and a pyc
 * record (RELOC_PYC) that serves it under any prefix with the header's size field equal
 * to the source's size there, and every string of its objects that held prefix re-encoded
 * holding the new one. *ret NULL (and 0 returned) when the pyc is not rewritten: its
 * marshal data is malformed, nested deeper than PYC_DEPTH_MAX, does not end where the
 * file does, or the record would pass RELOC_PYC_MAX bytes.
 */
int pyc_scan(const uint8_t *data, size_t len, const char *prefix, size_t plen, uint64_t src_neutral,
             uint32_t src_inserts, uint8_t **ret_neutral, size_t *ret_neutral_len,
             struct reloc **ret);

#endif
