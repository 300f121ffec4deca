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
#include "useropen.h"

#include <limits.h>
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
	/* A pyc rewritten for its source (store/pyc.c): the source's index + 1, and the
	 * neutral size and inserts it was rewritten for, which the source's own store must
	 * find too (checked after the store phase: else the source changed between reads). */
	uint32_t pyc_src;
	uint32_t pyc_src_inserts;
	uint64_t pyc_src_neutral;
	/* A path of an install (ingest_plan.c), when src_rel is set: its file is src_rel
	 * beneath src_fd (an extracted package, borrowed); when src_data is set: its bytes
	 * are src_fd's from src_off on (an unpacked package's data file, pkgarchive.h,
	 * borrowed). Its bytes hold wprefix (a package's placeholder) where the prefix
	 * belongs, in binary mode when wbinary (paths.json's file_mode); wplen 0: they hold
	 * none. */
	const char *src_rel;
	int src_fd;
	bool src_data;
	uint64_t src_off;
	const char *wprefix;
	size_t wplen;
	bool wbinary;
	/* An install's path: its plan entry's index + 1 (0: not from a plan). known: its
	 * content is a stored object, key, taken from a package's record (pkgrec.h), which
	 * the store phase looks up under the store lock (gc.c G2) instead of reading a file. */
	uint32_t plan;
	bool known;
};

struct ingest {
	struct store *st;
	const struct ingest_opts *opts;
	const char *prefix; /* as the environment knows itself: its canonical path */
	size_t plen;
	int root_fd;          /* the prefix, opened once: every path is reached from it */
	struct fscreds creds; /* its owner's: every open of the prefix is made with them */
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
	pthread_mutex_t reloc_lock; /* held by the one worker reading a file whole */
	atomic_uint_fast64_t held;  /* bytes of small contents held for the second round */
	pthread_mutex_t lock;       /* guards err_rc, err, deferred, late_ready, running */
	pthread_cond_t cond;        /* late_ready or failed set, or a worker done */
	bool late_ready;            /* the late tasks are laid out */
	int running;
	int err_rc;
	struct cfs_err *err;
	struct object_writer *writers[MAX_WORKERS];
	/* The store phase's images being published (ingest_store.c), by nwriters writers. */
	pthread_t publisher;
	bool publishing;
	int nwriters;
	int publish_r;
	struct cfs_err publish_err;
	/* An install's: once the store phase has read every file and found or made every
	 * content, and before it makes its images durable (so not when dry), under the store
	 * lock, after_store may set records (the caller's), by the set's index, to what each
	 * package became (catalog.c C9), which the commit inserts with the packages, and
	 * drop what it no longer needs: no file is read after it. */
	int (*after_store)(struct ingest *in, void *arg, struct cfs_err *err);
	void *after_arg;
	const struct catalog_blob *records;
	/* An install's generated files, kept in one data file rather than a file each
	 * (ingest_plan.c). */
	const struct ingest_gen *gen;
};

/* The prefix node n's bytes were written for, and its length (0: none to look for). */
static inline const char *node_prefix(const struct ingest *in, const struct inode *n,
                                      size_t *ret_len)
{
	if (n->plan) {
		*ret_len = n->wplen;
		return n->wprefix;
	}
	*ret_len = in->plen;
	return in->prefix;
}

/* A small content whose key is stored already, as a member of a pack: compared after the
 * store phase, in pack order, so each frame of a pack is decoded once. */
struct deferred {
	uint32_t node;
	int64_t pack;
	uint64_t off;
	uint8_t *data; /* owned copy of the content */
	size_t len;
};

/* Files up to this size without holes are read whole into a worker's buffer; larger and
 * sparse ones are streamed through it in chunks of this size. */
#define READ_MAX (1u << 20)
/* A file that holds the prefix is read whole to be relocated, one at a time; a larger one
 * fails the ingest. conda's own install reads such a file whole too. */
#define RELOC_FILE_MAX (1024u << 20)

/* One file of the prefix, open for the store phase (ingest_read.c). */
struct fileread {
	struct ingest *in;
	struct inode *n;
	int fd;
	bool borrowed; /* fd is an unpacked package's data file, not closed here */
	uint64_t base; /* where the file's bytes start in fd */
	uint64_t len;
	bool sparse;         /* it has holes: they are never read, nor is it relocated */
	const uint8_t *data; /* the whole content (buf or whole), or NULL: streamed */
	uint8_t *buf;        /* the worker's READ_MAX bytes */
	uint8_t *whole;      /* a large file read whole to be relocated; owned */
	bool reloc_held;     /* holds in->reloc_lock while whole is */
	/* Streaming: the chunk in buf, the region of data or hole found last. */
	uint64_t buf_off;
	size_t buf_len;
	uint64_t reg_start, reg_end;
	bool reg_hole;
	bool second; /* the second pass: chunks are checked against the first's sums */
	/* Each chunk the first pass read, in order, with a sum of its bytes (owned); the
	 * second pass must read the same ones: next is where it is. */
	struct chunk_sum {
		uint64_t chunk, sum;
	} * sums;
	size_t nsums, capsums, next;
	int err; /* the first error of a read callback; -EAGAIN: the file changed */
	/* The first pass: is the prefix in it, is it binary. */
	bool scan, found, nul;
	enum reloc_mode first_guess; /* reloc_mode_guess of the first chunk */
	char carry[2 * PATH_MAX];    /* the end of the last chunk, for an occurrence across */
	size_t ncarry;
};

/*
 * Open node n's file (beneath the prefix, with the owner's credentials) and check it is
 * the inode the walk saw, with its size and mtime. A small file without holes is read
 * into buf (f->data); any other is left to stream. fileread_close whatever it returns.
 */
int fileread_open(struct ingest *in, struct inode *n, uint8_t *buf, struct fileread *f,
                  struct cfs_err *err);
/* I3 after reading: the file still has the size and mtime it was planned with (*sb its
 * stat; an unpacked package's data file is the install's alone and is not looked at). */
bool fileread_unchanged(const struct fileread *f, struct stat *sb);
void fileread_close(struct fileread *f);
/* First pass over a streamed file: its key, and whether it holds the prefix and may be
 * relocated (then fileread_whole). */
int fileread_scan(struct fileread *f, struct objkey *ret_key, bool *ret_relocatable,
                  struct cfs_err *err);
/* The second pass: the content as a source for object_write or object_compare. */
struct object_src fileread_src(struct fileread *f);
/* After the second pass, which returned r: r if it read what the first did, else the
 * error to report (the file changed, or could not be read). */
int fileread_check(struct fileread *f, int r, struct cfs_err *err);
/* A file that holds the prefix, read whole into f->data (at most RELOC_FILE_MAX bytes,
 * one such file at a time). */
int fileread_whole(struct fileread *f, struct cfs_err *err);
/* The file of n still has the size and mtime the walk saw. */
bool ingest_same_stat(const struct inode *n, const struct stat *sb);
/* "file changed while it was read", naming n's path. */
int ingest_changed(struct ingest *in, const struct inode *n, struct cfs_err *err);

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

/* The error of opening rel (open_beneath's r), naming it; EACCES says whose permissions
 * the prefix is read with. */
int ingest_open_error(struct ingest *in, const char *rel, int r, struct cfs_err *err);
/* sb (of a descriptor just opened) is the inode the walk saw as n, of the same type. */
bool ingest_same_inode(const struct inode *n, const struct stat *sb);
/* The walk: every path of the prefix into in->nodes, parents before children. */
int ingest_walk(struct ingest *in, struct cfs_err *err);
/* The store phase: every file's content stored or found, the new images published (I1). */
int ingest_store_files(struct ingest *in, struct cfs_err *err);
/* Every rewritten pyc's source was stored as the pyc was rewritten for. */
int ingest_check_pycs(struct ingest *in, struct cfs_err *err);
/* r, or for -EBADMSG (a stored key with other bytes) the message that says so for rel. */
int ingest_collision(struct ingest *in, const char *rel, int r, struct cfs_err *err);
/* 0 if the prefix's tree is the stored environment's; -EEXIST naming the differences. */
int ingest_compare_tree(struct ingest *in, const struct store_env *env, struct cfs_err *err);
/* The environment's rows in one transaction (I2); *ret_result says new or replaced. */
int ingest_commit(struct ingest *in, const char *hash, const struct pkgset *set,
                  enum ingest_result *ret_result, struct cfs_err *err);

/* in made ready for its paths: every field zero but the locks and the descriptors (-1). */
void ingest_init(struct ingest *in, struct store *st, const struct ingest_opts *opts);
/* Once in->nodes holds the tree (and in->meta the records: an install has none, its
 * paths' plan gives their placeholders): store, compare with a stored environment of that
 * hash, commit (under the store lock, gc.c G2). */
int ingest_phases(struct ingest *in, const char *hash, const struct pkgset *set,
                  enum ingest_result *ret_result, struct cfs_err *err);
/* Everything in holds, but not in->opts, in->st nor in->prefix. */
void ingest_release(struct ingest *in);
/* The store phase's images published (0), or why not: before anything may name them. */
int ingest_publish_wait(struct ingest *in, struct cfs_err *err);

struct link_plan;
struct pkgarchive_files;
struct pkgrec;
/* Where each package of an install is read from: the store's record of it (its content
 * and compiled pycs taken from the store), else its unpacked files, else its extracted
 * directory. */
/* The generated files of an install (entry points, conda-meta records and history,
 * compiled pycs), in one data file (fd, the install's alone) instead of a file each: by
 * plan entry, its offset and length there, len INGEST_GEN_NONE when none was written (a
 * pyc the compiler made none of: its source does not compile). */
#define INGEST_GEN_NONE UINT64_MAX
struct ingest_gen {
	int fd;
	const uint64_t *off, *len;
};

struct ingest_pkg {
	const struct pkgrec *rec;
	const struct pkgarchive_files *files;
	int dir_fd; /* -1: none */
};
/* The install's tree, from its plan (link.h): package paths from pkgs (by link_entry.pkg),
 * generated ones from in->gen; the top has mtime top_mtime_ns. */
int ingest_plan_nodes(struct ingest *in, const struct link_plan *plan,
                      const struct ingest_pkg *pkgs, int64_t top_mtime_ns, struct cfs_err *err);

#endif
