/* SPDX-License-Identifier: MIT */
/*
 * The public interface of the condafs store: the content-addressed object store, ingesting
 * a conda prefix, installing a lock, and reading environments back; the package sets that
 * name environments are the conda library's (condafs/conda.h). The daemon (fs/) and the
 * CLI (tools/) use the store only through these headers; nothing here knows about FUSE.
 *
 * Errors: every action returns 0 or a negative errno and, when given a struct cfs_err,
 * fills it with one line a user can read, naming the file and the reason. The mapping is
 * fixed: corrupt object -EBADMSG, catalog inconsistency -EUCLEAN, unknown environment or
 * path -ENOENT, database busy past its timeout -EBUSY, bad input -EINVAL, a prefix that
 * does not fit a binary slot -ENOSPC, a store of an unknown format -EPROTO.
 *
 * Threads: a struct store is used by one thread at a time; open one per thread (they
 * share the files and see each other's committed work).
 */
#ifndef CONDAFS_STORE_H
#define CONDAFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <condafs/conda.h>
#include <condafs/err.h>
#include <condafs/nodetype.h>

struct cache;

/* ---- the store ---- */

enum store_flags {
	STORE_CREATE = 1 << 0,   /* create the store if the directory holds none */
	STORE_READONLY = 1 << 1, /* never write (the daemon) */
	/* Reads see the catalog as of the handle's first read, until store_snapshot_refresh
	 * or store_snapshot_release lets go of it: one read transaction instead of SQLite's
	 * locking around every query. For handles that are reopened whenever what they serve
	 * changes (the daemon's threads); while one is held, SQLite cannot restart its
	 * write-ahead log past it, so an idle handle must let go (store_snapshot_release). */
	STORE_SNAPSHOT = 1 << 2,
};

struct store;

int store_open(const char *dir, unsigned flags, struct store **ret, struct cfs_err *err);
/*
 * store_open, and notify(ctx, line) is told, on the calling thread, what a user should
 * know while the handle works that is neither a result nor an error (the line is
 * unescaped; NULL notify says nothing). A writer that has waited a second for a lock says
 * what it waits for and who holds it ("waiting for the store lock (DIR/lock) held by pid
 * 1234 (condafs ingest /x)") and keeps waiting; gc names who holds the removed
 * environments it cannot reap.
 */
int store_open_notify(const char *dir, unsigned flags, void (*notify)(void *ctx, const char *msg),
                      void *ctx, struct store **ret, struct cfs_err *err);
void store_close(struct store *st);
/* A STORE_SNAPSHOT handle whose snapshot is a second old or more, or was let go, takes a
 * new one (at its next read), so SQLite's log can restart; call it before each request.
 * Nothing for other handles. */
int store_snapshot_refresh(struct store *st, struct cfs_err *err);
/* A STORE_SNAPSHOT handle lets go of its snapshot until the next store_snapshot_refresh:
 * for a handle that will sit idle, so it does not hold SQLite's log back meanwhile.
 * Nothing for other handles, or when it holds none. */
void store_snapshot_release(struct store *st);

/* ---- ingest (ingest.c) ---- */

struct ingest_progress {
	uint64_t files_done, files_total;
	uint64_t bytes_done, bytes_total;
};

enum ingest_result {
	INGEST_NEW,      /* stored */
	INGEST_PRESENT,  /* already stored with the same tree: nothing changed */
	INGEST_REPLACED, /* --replace swapped in a differing tree */
};

struct ingest_opts {
	const char *lock_path;     /* NULL: no lock to check against */
	const char *lock_platform; /* as pkgset_from_lock */
	const char *lock_env;
	bool replace;      /* swap in a tree that differs from the stored one */
	bool skip_special; /* warn and skip fifos, sockets, devices instead of failing */
	/* Called from the ingesting thread; may be NULL. */
	void (*progress)(void *ctx, const struct ingest_progress *p);
	/* Warnings (stripped setuid bits, skipped special files); may be NULL. */
	void (*warn)(void *ctx, const char *msg);
	void *ctx;
};

/*
 * Store the conda prefix at path. On success *ret_hash names the environment.
 * All or nothing: on any error the catalog is unchanged.
 */
int store_ingest(struct store *st, const char *prefix, const struct ingest_opts *opts,
                 char ret_hash[33], enum ingest_result *ret_result, struct cfs_err *err);

/* ---- install: a lock's packages straight into the store (install.c) ---- */

struct install_fetch {
	size_t done, total;          /* archives downloaded, to download */
	uint64_t bytes, bytes_total; /* bytes so far, expected (0: unknown) */
	double rate;                 /* bytes per second, lately */
};

struct install_opts {
	const char *platform;       /* as pkgset_from_lock */
	const char *environment;    /* pixi's environment, NULL: "default" */
	const char *const *mirrors; /* "FROM=TO": a package URL under FROM is fetched from TO */
	size_t nmirrors;
	const char *const *pkgs_dirs; /* package caches searched before the usual ones */
	size_t npkgs_dirs;
	/* Called from the installing thread; may be NULL. */
	void (*fetching)(void *ctx, const struct install_fetch *p);
	/* The store phase's progress and every warning (ingest_opts); ctx is shared. */
	struct ingest_opts ingest;
	/* Each package with a pre- or post-link script, which is not run (besides its
	 * warning), in link order; may be NULL. */
	void (*script_not_run)(void *arg, const char *dist);
	void *script_arg;
};

/*
 * Build the environment lock describes from its packages' archives, taken from package
 * caches on this machine or downloaded from the lock's URLs (through mirrors), each checked
 * against the lock's sha256 or md5 before it is read, and linked as conda links them,
 * without writing a prefix. *ret_hash is pkgset_hash of the lock's set; INGEST_PRESENT when
 * it was stored already (then nothing is fetched). All or nothing, as store_ingest.
 */
int store_install(struct store *st, const char *lock, const struct install_opts *opts,
                  char ret_hash[33], enum ingest_result *ret_result, struct cfs_err *err);

/* ---- environments ---- */

struct store_env {
	int64_t id;
	char hash[33];
	char platform[32];
	char source_prefix[4096];
	int64_t created;   /* seconds since the epoch */
	int64_t last_used; /* seconds since the epoch */
	int64_t root;      /* node id of the environment's top directory */
	uint64_t files;
	uint64_t logical_bytes; /* sum of file sizes as ingested */
	int64_t removed;        /* 0, or when it was removed (its rows wait for gc) */
	bool broken;            /* verify --repair found missing or corrupt objects in it */
};

/* *ret is a malloc'd array the caller frees. Sorted by hash. */
int store_env_list(struct store *st, struct store_env **ret, size_t *ret_n, struct cfs_err *err);
/* The same, plus removed environments whose rows gc has not reaped yet (a mount still
 * serves their open files): sorted by hash, a live one before removed ones. */
int store_env_list_all(struct store *st, struct store_env **ret, size_t *ret_n,
                       struct cfs_err *err);
/* Find by tag, full hash, or a unique prefix of a hash (at least 4 hex digits). */
int store_env_find(struct store *st, const char *name, struct store_env *ret, struct cfs_err *err);
int store_env_packages(struct store *st, const struct store_env *env, struct pkgset **ret,
                       struct cfs_err *err);
/* Take an environment and the tags on it out of view in one transaction: no name finds it
 * any more. Its rows and objects stay until garbage collection reaps it, once no mount
 * holds it (store_hold). */
int store_env_remove(struct store *st, const struct store_env *env, struct cfs_err *err);

/* ---- tags: names for environments (gc.c) ---- */

/* A tag name: 1-128 bytes of [A-Za-z0-9._+-], not starting with '.' or '-', and not
 * 32 hex digits (a hash). */
bool store_tag_valid(const char *name);
/* Point name at env, creating or moving it in one step. -EINVAL for a bad name. */
int store_tag_set(struct store *st, const char *name, const struct store_env *env,
                  struct cfs_err *err);
/* -ENOENT if there is no such tag. */
int store_tag_remove(struct store *st, const char *name, struct cfs_err *err);

struct store_tag {
	char name[129];
	char hash[33];
	int64_t id;     /* unique for ever; a moved tag gets a new one */
	int64_t set_at; /* seconds since the epoch */
};
/* All tags sorted by name (env_hash NULL) or those on one environment; *ret is malloc'd,
 * the caller frees it. */
int store_tag_list(struct store *st, const char *env_hash, struct store_tag **ret, size_t *ret_n,
                   struct cfs_err *err);

/* ---- last use and garbage collection (gc.c) ---- */

/* Record that environments were used at time t (seconds): last_used only moves forward.
 * One transaction for all of them. */
int store_env_touch(struct store *st, const int64_t *env_ids, size_t n, int64_t t,
                    struct cfs_err *err);

/* Why gc kept an environment that unused_for alone would have removed. */
enum gc_kept {
	GC_KEPT_TAGGED, /* a tag names it */
	GC_KEPT_GRACE,  /* used within the grace window */
	GC_KEPT_HELD,   /* removed (now or before), but a mount holds it: reaped by a later gc */
};

struct gc_opts {
	int64_t now;        /* seconds since the epoch */
	int64_t unused_for; /* remove untagged environments not used for this long */
	int64_t grace;      /* ...but never one used within this long (config gc.grace) */
	bool dry_run;       /* report what would go, change nothing */
	/* Told of each environment kept that unused_for alone would remove, and why; called
	 * with store_gc's ctx. May be NULL. */
	void (*kept)(void *ctx, const struct store_env *env, enum gc_kept why);
	bool purge; /* repack every pack holding a byte nothing uses (repack.c) */
};

struct gc_result {
	uint64_t envs_removed;
	uint64_t envs_held; /* removed, but a mount still serves them: reaped by a later gc */
	uint64_t objects_freed;
	uint64_t bytes_freed;    /* on disk (a dry run's repacking part is an estimate) */
	uint64_t packs_repacked; /* packs rewritten without their unused members */
};

/*
 * Remove untagged environments unused for longer than opts->unused_for and opts->grace
 * (fn is told of each, may be NULL; opts->kept of the ones kept and why), reap the rows of
 * every removed environment no mount holds, then delete the objects no environment uses,
 * and rewrite the packs that hold them (those at least half unused; every one with
 * opts->purge), so their bytes leave the disk. Catalog rows go before files: a crash at any
 * point leaves a store verify passes, and the next gc finishes the job. Waits for running
 * ingests before deleting objects; ingests wait for it.
 */
int store_gc(struct store *st, const struct gc_opts *opts,
             void (*fn)(void *ctx, const struct store_env *env), void *ctx, struct gc_result *ret,
             struct cfs_err *err);
/*
 * Holding environments: a mount holds every environment the kernel may still ask about
 * (it has inodes of it), and gc reaps a removed environment's rows only when nothing
 * holds it, so open files of a removed environment keep being served until they close.
 * Holds are locks: a process that dies lets go of them. Thread-safe.
 */
struct store_hold;
int store_hold_open(const char *dir, struct store_hold **ret, struct cfs_err *err);
void store_hold_close(struct store_hold *h); /* lets go of everything; NULL is fine */
/* -EBUSY when gc is reaping the environment at this moment (it was removed). */
int store_hold_env(struct store_hold *h, int64_t env_id);
void store_hold_release(struct store_hold *h, int64_t env_id);

/* Bytes stored only for this environment: what removing it would free. */
int store_env_unique_bytes(struct store *st, const struct store_env *env, uint64_t *ret,
                           struct cfs_err *err);

/* ---- the tree of an environment ---- */

/*
 * One path of an environment. Node ids are unique across the store. A directory's
 * children have the consecutive ids [first_child, first_child + nchildren), sorted by
 * name. Regular files that are served with identical bytes and attributes in every
 * environment (same object, no prefix inside, same mode and mtime) share a group id > 0.
 */
struct store_node {
	int64_t id;
	int64_t env_id;
	int64_t parent; /* 0 for an environment's top directory */
	enum node_type type;
	uint32_t mode;         /* permission bits only */
	int64_t mtime_ns;      /* nanoseconds since the epoch */
	uint64_t size_neutral; /* stored size; see store_node_size */
	uint32_t text_inserts; /* prefix occurrences that change the size */
	bool relocated;        /* served bytes depend on the prefix */
	int64_t group;
	int64_t hardlink; /* first node of the same source inode in this env (itself for
	                   * the first), 0 when the inode had one path */
	int64_t first_child;
	uint32_t nchildren;
	uint16_t namelen;
	char name[256]; /* not NUL-terminated beyond namelen; "" for a top directory */
};

/* The size served for prefix length plen. */
static inline uint64_t store_node_size(const struct store_node *n, size_t plen)
{
	return n->size_neutral + (uint64_t)n->text_inserts * plen;
}

int store_node_get(struct store *st, int64_t id, struct store_node *ret, struct cfs_err *err);
/* What the files of group share (content, mode, mtime: they are served identically), as a
 * node with no id, environment or name, which store_read reads; and how many names the
 * group has in live environments. ret NULL for the count alone. */
int store_group_get(struct store *st, int64_t group, struct store_node *ret, uint32_t *ret_nlink,
                    struct cfs_err *err);
/* -ENOENT when the directory has no such name. */
int store_node_lookup(struct store *st, int64_t dir, const char *name, size_t len,
                      struct store_node *ret, struct cfs_err *err);
/* Calls fn for the children of dir from index start on, until fn returns non-zero
 * (which is then returned; 1 means "stop, no error"). */
int store_dir_iter(struct store *st, const struct store_node *dir, uint32_t start,
                   int (*fn)(void *ctx, const struct store_node *child), void *ctx,
                   struct cfs_err *err);
/* The node at path (relative, "" for the top) under directory node top: -ENOENT if none. */
int store_path_lookup(struct store *st, int64_t top, const char *path, struct store_node *ret,
                      struct cfs_err *err);
/* The path of a node relative to its environment ("" for the top). */
int store_node_path(struct store *st, int64_t id, char *buf, size_t size, struct cfs_err *err);
/* The link target as served under prefix; *ret is malloc'd, the caller frees it. */
int store_readlink(struct store *st, const struct store_node *n, const char *prefix, char **ret,
                   struct cfs_err *err);
/*
 * Reads on st then take the frames they decode in part (the small files packed together,
 * relocated files read piecewise) from frames, a cache (condafs/cache.h) that the
 * handles of other threads share: each frame is decompressed once between them. frames
 * must outlive st's use of it.
 */
void store_share_frames(struct store *st, struct cache *frames);
/*
 * Read up to len bytes at off of a file as served under prefix. *ret_n is short only
 * at the end of the file. -EBADMSG for a corrupt or missing object, -ENOSPC when the
 * prefix does not fit a binary slot of the file.
 */
int store_read(struct store *st, const struct store_node *n, const char *prefix, uint64_t off,
               size_t len, void *buf, size_t *ret_n, struct cfs_err *err);

/* A number that changes whenever another handle commits to the catalog: a cheap way to
 * notice environments added or removed. */
int store_changes(struct store *st, uint64_t *ret, struct cfs_err *err);

/* ---- the daemons serving a store, told of changes (mounts.c) ---- */

struct store_listener;
/* A daemon listens for writers' changes on a socket of its own under dir/mounts/ (made
 * 0700 if missing). Close with store_listener_close, which removes the name. */
int store_listen(const char *dir, struct store_listener **ret, struct cfs_err *err);
/* Poll it for POLLIN: a writer is waiting. */
int store_listener_fd(const struct store_listener *l);
/* A waiting writer's connection (an fd the caller owns), or -EAGAIN when none waits. */
int store_listener_accept(struct store_listener *l);
/* Tell the writer on conn that the mount now shows its change; closes conn. */
void store_listener_answer(int conn);
void store_listener_close(struct store_listener *l); /* NULL is fine */
/*
 * After a commit: tell every daemon serving the store at dir and wait, timeout_ms in all,
 * until each answers that its mount shows the change. *ret_late counts the ones that did
 * not answer in time (they catch up by themselves: they also poll the catalog).
 */
int store_tell_mounts(const char *dir, int timeout_ms, unsigned *ret_late, struct cfs_err *err);

/* ---- the whole store in numbers (verify and repair: condafs/verify.h) ---- */

struct store_stats {
	uint64_t envs;
	uint64_t objects;
	uint64_t logical_bytes; /* sum over environments of their file sizes */
	uint64_t content_bytes; /* sum of distinct objects' uncompressed sizes */
	uint64_t stored_bytes;  /* bytes the objects take in the store */
};
int store_stats(struct store *st, struct store_stats *ret, struct cfs_err *err);

/* ---- relocating served bytes (reloc.c) ---- */

/*
 * The bytes data (len, of the file relpath in an environment) served under prefix from, as
 * they would be under prefix to, by conda's rule, in the mode ingest guesses when
 * conda-meta says nothing: none for .pyc and zip-like archives, binary when data holds a
 * NUL (inside NUL-terminated strings only, the string's NULs taken or given so the size
 * stays), else text (every occurrence). out gets the result in pieces, in order, and
 * stops it by returning non-zero (returned). -ENOSPC, before out is called, when to does
 * not fit a binary slot. A file that holds from is copied once in memory.
 */
int store_relocate(const char *relpath, const void *data, size_t len, const char *from,
                   const char *to, int (*out)(void *ctx, const void *buf, size_t n), void *ctx,
                   struct cfs_err *err);

/* The size up to which a pyc and its source are rewritten (store/pyc.c): larger ones are
 * served as they are. */
#define STORE_PYC_MAX (1u << 20)

/* For a pyc's path (.../__pycache__/NAME.TAG.pyc, TAG like cpython-311 or
 * cpython-311.opt-1): NAME.py into buf, the source Python checks it against; false for
 * any other path. */
bool store_pyc_source(const char *relpath, char *buf, size_t size);

/*
 * A pyc (data, len, at relpath) as served under prefix from, as it would be under to,
 * given its source as served under from (src, src_len bytes, mtime src_mtime_s): rewritten
 * as ingest rewrites it (docs/ARCHITECTURE.md, "Pyc files rewritten for their source")
 * when Python would use it and the source holds from in text mode, else as it is. The
 * same bytes as the store serves under to. out as for store_relocate.
 */
int store_relocate_pyc(const char *relpath, const void *data, size_t len, const void *src,
                       size_t src_len, int64_t src_mtime_s, const char *from, const char *to,
                       int (*out)(void *ctx, const void *buf, size_t n), void *ctx,
                       struct cfs_err *err);

#endif
