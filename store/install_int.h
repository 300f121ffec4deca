/* SPDX-License-Identifier: MIT */
/*
 * What the parts of condafs install share (install.c and its invariants N1-N4): the
 * packages of the lock and where each comes from, and the install's state. install.c runs
 * the install; install_sources.c finds, fetches, checks and unpacks packages;
 * install_record.c keeps what the store learns of each package and takes packages from it.
 */
#ifndef CONDAFS_INSTALL_INT_H
#define CONDAFS_INSTALL_INT_H

#include "condafs/store.h"

#include "catalog.h"
#include "ingest.h"
#include "pkgarchive.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct ingest;
struct ingest_pkg;
struct link_plan;
struct pkg;
struct pkgrec;
struct pkgset;

/* One conda package of the lock and where its files come from. */
struct source {
	const struct pkg *p;
	char *fn;   /* the archive's file name, from the URL */
	char *dist; /* fn without its extension */
	char *dir;  /* the package extracted, a cache's or written out here (absolute) */
	/* Or the package unpacked into pkgs/<dist>.data, one data file (pkgarchive.h). */
	struct pkgarchive_files *files;
	char *archive; /* an archive in a cache, to check and extract; NULL: none */
	bool fetch;    /* to download into dl/ */
	/* The archive's digests and size once checked (size 0: taken from a cache's
	 * extracted package, the lock's digests stand). */
	struct pkgarchive_digests dg;
	bool ours; /* dir or files were extracted here (else a cache's: N2) */
	/* The store's record of it (its blob, and read): then nothing else is looked for. */
	uint8_t *blob;
	size_t blob_len;
	struct pkgrec *rec;
	int64_t rec_root; /* the top of the environment the record came with (C9) */
	/* Its placeholder, from the record's paths.json, once read (NULL: none). */
	char *rec_placeholder;
	bool rec_placeholder_read;
};

struct install {
	struct store *st;
	const struct install_opts *opts;
	const char *lock;
	struct pkgset *set;
	struct source *src;
	size_t n;
	int work_fd;
	char work_name[64];
	char *work; /* absolute path of the temporary directory */
	int dl_fd, pkgs_fd;
	/* The generated files (ingest.h ingest_gen): gen.data, open while the plan lives,
	 * and by plan entry where each is in it; gen_end its length. */
	int gen_data_fd;
	uint64_t *gen_off, *gen_len, gen_end;
	struct ingest_gen gen;
	pthread_mutex_t warn_mu; /* warnings come from the unpacking threads too */
	/* What the commit records of each package (N4), and what they are made from. */
	const struct link_plan *plan;
	struct ingest_pkg *pkgs;
	struct catalog_blob *records;
	uint8_t **made; /* records made here, owned */
};

void install_warn(struct install *ins, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Owned by us and writable by no one else (N1, N2). */
bool install_is_ours(const struct stat *sb);
/* The name of source s's data file in pkgs/: "<dist>.data". */
void install_data_name(const struct source *s, char buf[PATH_MAX]);
/* mkdir -p of rel's parents beneath dfd, each made with mode. */
int install_make_parents(int dfd, const char *rel, mode_t mode);

/* ---- install_sources.c ---- */

/* Where each package comes from: the store (its record), a cache's extracted package, a
 * cache's archive, or the channel. */
int install_find_sources(struct install *ins, struct cfs_err *err);
/* Check and unpack, in parallel, the caches' archives (N1); one that fails its digest is
 * left to download, with a warning. */
int install_unpack_cached(struct install *ins, struct cfs_err *err);
/* Download the packages to fetch, into dl/, through the mirrors, each checked and unpacked
 * (N1) as soon as it is whole, beside the rest's downloads; a failed archive stops them. */
int install_fetch_unpack(struct install *ins, struct cfs_err *err);

/* ---- install_record.c ---- */

/* s is from the store, and its record holds the pycs of the plan's python. */
bool install_rec_compiled(const struct source *s, const struct link_plan *plan);
/* A pyc of the plan is to be compiled: its package is new to the store, or its record
 * holds another python's pycs. */
bool install_compiles(const struct install *ins, const struct link_plan *plan);
/* The source src (its path in the package) of noarch package i, taken from the store, for
 * the compiler: read back from the environment its record came with, as the archive holds
 * it; malloc'd and NUL-terminated, *ret_len bytes without the NUL. -EFBIG over max bytes. */
int install_read_stored_source(struct install *ins, size_t i, const char *src, size_t max,
                               char **ret, size_t *ret_len, struct cfs_err *err);
/* Python, for the .pyc compiler to run, written out into pkgs/<dist>/ as the archive
 * would extract, s->dir set: an unpacked package from its data file, every path of it;
 * package i taken from the store, the paths the plan takes from it, read back from the
 * store (fetching it again would cost its download and unpacking both). What the
 * environment is made from stays the data file or the record. */
int install_write_out_unpacked(struct install *ins, struct source *s, struct cfs_err *err);
int install_write_out_stored(struct install *ins, const struct link_plan *plan, size_t i,
                             struct cfs_err *err);
/* Every package's record (N4), which the commit inserts: ingest.h's after_store. */
int install_record_packages(struct ingest *in, void *arg, struct cfs_err *err);

#endif
