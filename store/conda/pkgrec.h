/* SPDX-License-Identifier: MIT */
/*
 * A package's archive record (docs/package-format.md): what an install learned of one
 * package archive, so that a later install takes the package from the store instead of
 * fetching and extracting it again. It holds the info/ files linking reads, every path of
 * the package as linking checks it (type, mode, mtime, size, symlink target), each file's
 * content as the store holds it (key, neutral size, relocation record), and the .pyc
 * compiled for a noarch python package's sources by one python version. The bytes are
 * untrusted until pkgrec_open has checked every rule of the format.
 */
#ifndef CONDAFS_PKGREC_H
#define CONDAFS_PKGREC_H

#include "condafs/conda.h"
#include "condafs/nodetype.h"
#include "objkey.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One path: of the package (by its path beneath the package) or a compiled pyc (by its
 * path in the environment). Strings are NUL-terminated. */
struct pkgrec_entry {
	const char *path;
	enum node_type type;
	uint32_t mode; /* permission bits */
	int64_t mtime_ns;
	/* Files. */
	uint64_t size; /* as the package holds it, placeholder included */
	struct objkey key;
	uint64_t neutral_size;
	uint32_t inserts;
	const uint8_t *reloc; /* NULL when inserts is 0 */
	size_t reloc_len;
	/* Symlinks. */
	const char *target;
};

/* ---- writing ---- */

struct pkgrec;
struct pkgrec_builder;

/* pyver: the python version ("3.11") the pycs added are compiled by, "" when none are. */
int pkgrec_builder_new(const char *sha256, const char *md5, uint64_t size, const char *pyver,
                       struct pkgrec_builder **ret);
void pkgrec_builder_free(struct pkgrec_builder *b);
/* Each copies what it is given. */
int pkgrec_add_info(struct pkgrec_builder *b, const char *name, const uint8_t *data, size_t len);
int pkgrec_add_path(struct pkgrec_builder *b, const struct pkgrec_entry *e);
int pkgrec_add_pyc(struct pkgrec_builder *b, const struct pkgrec_entry *e);
/*
 * The conda-meta record an install made of the package (its conda-meta/<dist>.json, a
 * stored content), with what its bytes were made from besides the package itself: the
 * lock's URL and file name of the archive, the channel the record names, and the python
 * version it maps a noarch python package's paths for ("" when it maps none). A later
 * install with the same takes the record as stored instead of making it again.
 */
struct pkgrec_meta {
	const char *url, *fn, *channel, *pyver;
	struct objkey key;
	uint64_t size;
};
/* -EINVAL without a URL or a file name. */
int pkgrec_set_meta(struct pkgrec_builder *b, const struct pkgrec_meta *m);
/* A builder holding all rec holds but its conda-meta record, for python pyver (NULL: none):
 * rec's own pycs when pyver is its python, none for another (they are another python's:
 * the caller adds the ones compiled for pyver). */
int pkgrec_builder_from(const struct pkgrec *rec, const char *pyver, struct pkgrec_builder **ret);
/* The record's bytes (one zstd frame, malloc'd): -EINVAL naming the path for an entry the
 * format does not allow or a name given twice. */
int pkgrec_finish(struct pkgrec_builder *b, uint8_t **ret, size_t *ret_len, struct cfs_err *err);

/* ---- reading ---- */

/* Checks every rule of the format: -EUCLEAN naming what (the record's name in messages) and
 * the rule when one is broken. */
int pkgrec_open(const uint8_t *buf, size_t len, const char *what, struct pkgrec **ret,
                struct cfs_err *err);
void pkgrec_free(struct pkgrec *rec);
const char *pkgrec_sha256(const struct pkgrec *rec); /* "" when unknown */
const char *pkgrec_md5(const struct pkgrec *rec);
uint64_t pkgrec_size(const struct pkgrec *rec);
const char *pkgrec_pyver(const struct pkgrec *rec);
/* Its pycs are those of python pyver ("3.11"; NULL: no python), the ones an environment
 * of that python takes: for another, its noarch sources are compiled again. */
bool pkgrec_compiled_for(const struct pkgrec *rec, const char *pyver);
/* The conda-meta record it keeps, NULL when none (format 1, or none was made). */
const struct pkgrec_meta *pkgrec_meta(const struct pkgrec *rec);
/* An info/ file by its path ("info/paths.json"): -ENOENT when the package has none. */
int pkgrec_info(const struct pkgrec *rec, const char *name, const uint8_t **ret, size_t *ret_len);
size_t pkgrec_npaths(const struct pkgrec *rec);
const struct pkgrec_entry *pkgrec_path_at(const struct pkgrec *rec, size_t i);
const struct pkgrec_entry *pkgrec_path(const struct pkgrec *rec, const char *path);
size_t pkgrec_npycs(const struct pkgrec *rec);
const struct pkgrec_entry *pkgrec_pyc_at(const struct pkgrec *rec, size_t i);
const struct pkgrec_entry *pkgrec_pyc(const struct pkgrec *rec, const char *path);

#endif
