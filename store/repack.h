/* SPDX-License-Identifier: MIT */
/*
 * Repacking, gc's last step: packs holding contents that nothing uses any more are
 * rewritten with only the members still used, so the unused bytes (a removed environment's
 * secrets among them) leave the disk while every used member stays readable.
 */
#ifndef CONDAFS_REPACK_H
#define CONDAFS_REPACK_H

#include "store_impl.h"

struct repack_plan;

/* The packs to rewrite: every pack with an unused byte (all), or those where unused bytes
 * are at least half the pack. Call inside gc's write transaction once the unused objects'
 * rows are deleted: the plan sees what the commit will leave. */
int repack_plan_make(struct store *st, bool all, struct repack_plan **ret, struct cfs_err *err);
void repack_plan_free(struct repack_plan *p);

/* A dry run's account of the plan: the packs it would rewrite, and the bytes that would
 * free, estimated from each image's size and unused fraction (nothing is compressed). */
void repack_plan_estimate(const struct repack_plan *p, int store_fd, struct gc_result *res);

/* Rewrite the planned packs: after gc's commit, with the store lock still held
 * exclusively (M1). Adds to res->packs_repacked and res->bytes_freed. A pack whose bytes do
 * not read back as its members' keys is left as it is (M3); with a plan made for all, the
 * call then fails naming it (-EBADMSG) once the others are done. */
int repack_run(struct store *st, struct repack_plan *p, struct gc_result *res, struct cfs_err *err);

#endif
