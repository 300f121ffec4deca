/* SPDX-License-Identifier: MIT */
/*
 * What the parts of an ingest share: the paths of the prefix as the walk saw them
 * (ingest_walk.c), what the store phase found of each (ingest_store.c), and what the
 * commit writes (ingest_commit.c). ingest.c runs them one after the other.
 */
#ifndef CONDAFS_INGEST_H
#define CONDAFS_INGEST_H

#include "store_impl.h"

#include "condameta.h"
#include "pack.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define MAX_WORKERS 8

/* One path of the prefix, by its index in the walk. */
struct inode {
	char *rel; /* relative to the prefix, "" for the top; owned */
	const char *name;
	size_t namelen;
	uint32_t parent;
	enum node_type type;
	uint32_t mode;
	int64_t mtime_ns, ctime_ns;
	uint64_t size; /* as on disk */
	dev_t dev;
	ino_t ino;
	nlink_t nlink;
	uint32_t first_child, nchildren;
	uint32_t hardlink; /* index + 1 of the first path of the same inode (its own for the
	                    * first), 0 when the inode has one path */
	/* Filled by the store phase (files) or the walk (symlinks). */
	struct objkey key;
	uint64_t neutral_size;
	uint32_t inserts;
	uint8_t *reloc; /* encoded relocation record, owned */
	size_t reloc_len;
	bool packed;     /* a new content that went to the packer */
	bool unchanged;  /* kept its ctime while read, and was not relocated: a source (C5) */
	bool verified;   /* a source recorded before as holding this content (I4) */
	int64_t obj;     /* its content's object: found by the store phase, or made by commit */
	int64_t group;   /* its group, when the store phase found one */
	uint64_t stored; /* image bytes of a content with an image of its own */
	char *target;    /* symlinks: neutral target, owned */
	size_t target_len;
};

struct ingest {
	struct store *st;
	const struct ingest_opts *opts;
	const char *prefix; /* as the environment knows itself: realpath */
	size_t plen;
	int root_fd;
	struct condameta *meta;
	struct inode *nodes;
	size_t n, cap;
	bool dry; /* hash only: the environment exists and may not be replaced */
	/* The store phase. */
	int tmp_fd; /* this ingest's temporary directory */
	char tmp_name[64];
	struct packer *packer;
	struct deferred *deferred; /* stored members to compare, guarded by lock */
	size_t ndeferred, capdeferred;
	size_t *compare_starts; /* deferred grouped by pack: ncompare + 1 bounds */
	size_t ncompare;
	size_t npacks;
	struct objkey *pack_keys;
	uint64_t *pack_stored;
	struct object_frames **pack_frames;
	size_t *frame_starts; /* the packs' frame tasks: npacks + 1 bounds */
	uint32_t *work;
	size_t nwork;
	atomic_size_t next, next_late;
	atomic_bool failed;
	atomic_size_t files_finished;
	atomic_uint_fast64_t files_done, bytes_done;
	uint64_t bytes_total;
	pthread_mutex_t lock; /* guards err_rc, err, deferred, late_ready, running */
	pthread_cond_t cond;  /* late_ready or failed set, or a worker done */
	bool late_ready;      /* the late tasks are laid out */
	int running;
	int err_rc;
	struct cfs_err *err;
	struct object_writer *writers[MAX_WORKERS];
};

/* A small content whose key is stored already, as a member of a pack: compared after the
 * store phase, in pack order, so each frame of a pack is decoded once. */
struct deferred {
	uint32_t node;
	int64_t pack;
	uint64_t off;
	uint8_t *data; /* owned copy of the content */
	size_t len;
};

void ingest_warn(struct ingest *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline int64_t stat_ctime_ns(const struct stat *sb)
{
	return (int64_t)sb->st_ctim.tv_sec * 1000000000 + sb->st_ctim.tv_nsec;
}

/* A later path of a hard-linked inode: its content is the first path's. */
static inline bool is_secondary(const struct ingest *in, const struct inode *n)
{
	return n->hardlink && &in->nodes[n->hardlink - 1] != n;
}

static inline const struct inode *content_of(const struct ingest *in, const struct inode *n)
{
	return n->hardlink ? &in->nodes[n->hardlink - 1] : n;
}

/* The file as the walk saw it. */
static inline struct catalog_file file_of(const struct inode *n)
{
	return (struct catalog_file){(int64_t)n->dev, (int64_t)n->ino, n->ctime_ns, n->mode,
	                             n->mtime_ns};
}

/* openat for a path relative to the prefix, deep ones a component at a time. */
int ingest_open_rel(int root_fd, const char *rel, int flags);
/* The walk: every path of the prefix into in->nodes, parents before children. */
int ingest_walk(struct ingest *in, struct cfs_err *err);
/* The store phase: every file's content stored or found, the new images published (I1). */
int ingest_store_files(struct ingest *in, struct cfs_err *err);
/* r, or for -EBADMSG (a stored key with other bytes) the message that says so for rel. */
int ingest_collision(struct ingest *in, const char *rel, int r, struct cfs_err *err);
/* 0 if the prefix's tree is the stored environment's; -EEXIST naming the differences. */
int ingest_compare_tree(struct ingest *in, const struct store_env *env, struct cfs_err *err);
/* The environment's rows in one transaction (I2); *ret_result says new or replaced. */
int ingest_commit(struct ingest *in, const char *hash, const struct pkgset *set,
                  enum ingest_result *ret_result, struct cfs_err *err);

#endif
