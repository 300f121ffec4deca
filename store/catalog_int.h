/* SPDX-License-Identifier: MIT */
/*
 * What the catalog's modules share inside the catalog (catalog.c, catalog_tree.c): the
 * database handle and the helpers every query uses. Nothing outside them includes it.
 */
#ifndef CONDAFS_CATALOG_INT_H
#define CONDAFS_CATALOG_INT_H

#include "catalog.h"

#include <sqlite3.h>

struct cattree;

sqlite3 *cat_db(struct catalog *c);
const char *cat_path(const struct catalog *c);
/* The store's directory, which holds the tree images (catalog_tree.c): the caller's fd. */
int cat_store_fd(const struct catalog *c);
struct cattree *cat_tree(struct catalog *c);
/* *slot prepared from sql on first use (persistent), reset with its bindings cleared. */
int cat_prepare(struct catalog *c, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **ret,
                struct cfs_err *err);
/* Step for no row wanted; step for one row: 0 with a row, -ENOENT without. */
int cat_step_done(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err);
int cat_step_row(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err);
int cat_db_err(struct catalog *c, int rc, const char *what, struct cfs_err *err);
int cat_exec(struct catalog *c, const char *sql, struct cfs_err *err);

/* catalog_tree.c's state of one handle: its statements, its caches of directory objects
 * and indexes, and the nodes an ingest inserts before catalog_env_ref. */
int cattree_new(struct cattree **ret);
void cattree_free(struct cattree *t);
/* Forget what the handle cached of environments (not of objects: a key is its bytes). */
void cattree_forget(struct cattree *t);

/* The links environment id's nodes hold (C8), taken out: it is being hidden or deleted
 * while live. */
int cattree_env_unlink(struct catalog *c, int64_t id, struct cfs_err *err);
/* Drop every reference environment id's tree holds (C2, C8, T4), before its row goes. */
int cattree_env_drop(struct catalog *c, int64_t id, struct cfs_err *err);
/* Version 4 to 7, inside the upgrade's transaction: every environment's nodes rows made
 * its tree image (node ids kept: the daemon hands them to the kernel). */
int cattree_upgrade(struct catalog *c, struct cfs_err *err);
/* Version 5 or 6 to 7, likewise: every environment's tree moved from the trees table into
 * its tree image. */
int cattree_upgrade_v6(struct catalog *c, struct cfs_err *err);
#endif
