/* SPDX-License-Identifier: MIT */
/*
 * A YAML or JSON file as a small read-only tree of mappings, sequences and scalars, for
 * the lock file parsers and the conda-meta reader. Well-formed JSON is read directly;
 * anything else goes through libyaml, with the same tree as a result.
 */
#ifndef CONDAFS_YAMLDOC_H
#define CONDAFS_YAMLDOC_H

#include "condafs/conda.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct yamldoc;
struct ynode;

/*
 * Parse text (len bytes, need not be NUL-terminated) as one YAML document; text whose
 * first character is '{' or '[' is read as JSON. name is used in messages, which read
 * "<name>:<line>: invalid YAML: <libyaml's reason>". The text is not referenced after
 * the call. Untrusted text is fine: a document nested more than 64 deep, or with more
 * than 2^20 nodes (an alias counting as the nodes it names), is -EINVAL at the line
 * where the limit was passed, found before the time and memory it would take to read.
 */
int yamldoc_parse(const char *name, const char *text, size_t len, struct yamldoc **ret,
                  struct cfs_err *err);

/* Read path (relative to dirfd, or AT_FDCWD) and parse it; display names it in messages.
 * A file larger than max bytes is -EFBIG. */
int yamldoc_load(int dirfd, const char *path, const char *display, size_t max, struct yamldoc **ret,
                 struct cfs_err *err);

void yamldoc_free(struct yamldoc *doc);

/* NULL when the text holds no document (empty, or only comments), or doc is NULL. Nodes
 * live as long as the document. */
const struct ynode *yamldoc_root(const struct yamldoc *doc);

/* Every accessor below takes NULL and then answers NULL, 0 or false, so lookups chain:
 * ynode_str(ynode_get(ynode_get(root, "metadata"), "platforms")). */
bool ynode_is_map(const struct ynode *n);
bool ynode_is_seq(const struct ynode *n);
/* 1-based line where the node starts. */
size_t ynode_line(const struct ynode *n);
/* The text of a scalar; NULL for a null (plain "", "~", "null") and for collections. */
const char *ynode_str(const struct ynode *n);
/* A scalar that is a plain decimal count (digits only, in range): true and *ret. */
bool ynode_u64(const struct ynode *n, uint64_t *ret);
/* A scalar written as a string (a JSON string, a quoted YAML scalar), not a word such as
 * a number, true or null: what a writer must quote again. */
bool ynode_is_quoted(const struct ynode *n);
/* Items of a sequence, pairs of a mapping, 0 for a scalar. */
size_t ynode_count(const struct ynode *n);
/* The i-th item of a sequence. */
const struct ynode *ynode_item(const struct ynode *n, size_t i);
/* The key and the value of the i-th pair of a mapping. */
const struct ynode *ynode_key(const struct ynode *n, size_t i);
const struct ynode *ynode_value(const struct ynode *n, size_t i);
/* The value for a scalar key in a mapping (the first, if the key repeats). */
const struct ynode *ynode_get(const struct ynode *n, const char *key);

#endif
