/* SPDX-License-Identifier: MIT */
/*
 * verify and repair (store/verify.c): every object re-hashed, every tree checked, and what
 * can be mended without the lost bytes mended (docs/INVARIANTS.md, V1-V4).
 */
#ifndef CONDAFS_VERIFY_H
#define CONDAFS_VERIFY_H

#include <condafs/store.h>

#include <stdint.h>

/* One problem found by verify: the object and one user of it (env hash and path may be
 * NULL for an object nobody uses). */
struct verify_problem {
	const char *key;     /* 32 hex */
	const char *problem; /* "missing", "corrupt: ...", "unreferenced" */
	const char *env;
	const char *path;
};
struct verify_result {
	uint64_t objects_checked;
	uint64_t corrupt;         /* missing or corrupt objects */
	uint64_t unreferenced;    /* objects no environment uses (harmless, freed by gc) */
	uint64_t damaged_nodes;   /* nodes whose link to their object or place in their tree is
	                           * wrong (the problem has env and path, and key when the
	                           * object's row exists) */
	uint64_t damaged_records; /* records of package archives (docs/package-format.md) that
	                           * do not read or name a content with no row: an install
	                           * fetches such a package instead (the problem has env, and
	                           * the package as path) */
};
/* Re-hash every object and check every environment's tree. fn is called for every problem
 * and every user of a bad object. -EUCLEAN when the catalog names no object while objects/
 * holds images (it is not this store's catalog, or lost its rows). */
int store_verify(struct store *st, void (*fn)(void *ctx, const struct verify_problem *p), void *ctx,
                 struct verify_result *ret, struct cfs_err *err);

/* One change made by store_repair. */
enum repair_kind {
	REPAIR_ORPHAN,   /* key: an object file no catalog row names, removed */
	REPAIR_TMP,      /* name: a dead ingest's directory under tmp/, removed */
	REPAIR_REFS,     /* key: its reference count was refs_had, set to refs_now */
	REPAIR_NLINK,    /* key: the link count of its files shared across environments (one
	                  * inode) was refs_had, set to refs_now */
	REPAIR_DROPPED,  /* key: the row of a missing or corrupt object nothing uses, deleted */
	REPAIR_BROKEN,   /* env: marked broken (uses a missing or corrupt object) */
	REPAIR_UNBROKEN, /* env: no longer broken (its objects are whole again) */
	REPAIR_RECORD,   /* env, name: the package's damaged archive record, forgotten */
};
struct repair_action {
	enum repair_kind kind;
	const char *key;  /* 32 hex, or NULL */
	const char *name; /* a directory in tmp/, or NULL */
	const char *env;  /* an environment's hash, or NULL */
	int64_t refs_had, refs_now;
};
struct repair_result {
	struct verify_result found; /* what store_verify would have said before the repair */
	uint64_t orphans_removed;   /* object files no row named */
	uint64_t tmp_removed;       /* temporary directories of dead ingests */
	uint64_t refs_fixed;        /* reference and link counts that were wrong */
	uint64_t dropped;           /* rows of missing or corrupt objects nothing used */
	uint64_t envs_marked;       /* environments newly marked broken */
	uint64_t envs_cleared;      /* environments no longer broken */
	uint64_t envs_broken;       /* environments broken after the repair */
	uint64_t corrupt_left;      /* missing or corrupt objects still used: bytes lost */
	uint64_t records_forgotten; /* damaged package archive records */
};
/*
 * store_verify, then repair what can be repaired without the lost bytes: remove object
 * files no catalog row names and the temporary directories of dead ingests, set every
 * reference count to what the catalog's rows say (catalog.c C2), delete the rows of
 * missing or corrupt objects nothing uses, and set each environment's broken flag to
 * whether it uses a missing or corrupt object. fn is called as by store_verify (may be
 * NULL), done for every change made (may be NULL).
 *
 * Takes the store lock exclusively, like gc: waits for running ingests, and they wait for
 * it. Catalog changes are one transaction, committed before any file is removed: a crash
 * at any point leaves a store verify accepts, and a second repair finishes the job.
 * Objects whose bytes are gone stay (corrupt_left): restore their files to mend the
 * environments, then repair again. Damaged nodes (found.damaged_nodes) are never mended:
 * their environments are marked broken, and while any is found the repair changes no
 * count, row or object file (the rows that would say what is unused are in doubt), and
 * like gc it refuses a catalog that names no object while objects/ holds images.
 */
int store_repair(struct store *st, void (*fn)(void *ctx, const struct verify_problem *p),
                 void (*done)(void *ctx, const struct repair_action *a), void *ctx,
                 struct repair_result *ret, struct cfs_err *err);

#endif
