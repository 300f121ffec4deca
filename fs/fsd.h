/* SPDX-License-Identifier: MIT */
/*
 * condafsd's insides, shared by its modules, main.c and their unit tests, and by nothing
 * else: the daemon's one state struct (each field says which lock protects it) and the
 * functions each module offers the others. The store is reached only through
 * <condafs/store.h>.
 */
#ifndef CONDAFS_FSD_H
#define CONDAFS_FSD_H

#include <condafs/cache.h>
#include <condafs/config.h>
#include <condafs/frozen.h>
#include <condafs/store.h>

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#define FSD_NAME "condafsd"

/* ---- the daemon's state (main.c owns it, state.c makes and releases it) ---- */

struct envtab;
struct meta;
struct prefetch;
struct use;

struct fsd {
	/* Set before the session starts and only read afterwards: no lock. */
	char *store_dir;  /* realpath */
	char *mountpoint; /* realpath: environment H is served at <mountpoint>/H */
	struct fuse_session *se;
	struct cache *cache;   /* NULL: no block cache; locks itself */
	struct cache *frames;  /* the store handles' shared decoded frames, or NULL */
	unsigned readahead_kb; /* 0: the kernel's */
	atomic_bool readahead_raised;
	struct prefetch *prefetch; /* NULL: no reading ahead; locks itself */
	struct use *use;           /* locks itself */
	struct meta *meta;         /* MOUNTPOINT/.condafs; locks itself */

	/* Written by the init handler, which libfuse runs before any other request: no lock. */
	bool no_open;    /* open replies ENOSYS: the kernel stops sending OPEN/RELEASE */
	bool no_opendir; /* the same for OPENDIR/RELEASEDIR */

	/* The environment table: the pointer under envtab_lock (tables are immutable and
	 * reference-counted, see envtab.c); envtab_version is atomic and changes after the
	 * pointer does, so a worker can tell cheaply that its reference is old. */
	pthread_mutex_t envtab_lock;
	struct envtab *envtab;
	_Atomic uint64_t envtab_version;

	/* The watcher thread (watch.c): watch_stopping is set, then watch_wake (an eventfd)
	 * written, to stop it; watch_thread and watch_running are touched by the main thread
	 * only. */
	int watch_wake;
	atomic_bool watch_stopping;
	pthread_t watch_thread;
	bool watch_running;
	/* Writers' socket (mounts.c), bound before the mount is made so that a mount that
	 * answers hears every writer; NULL when it could not be bound. Accepted on by the
	 * watcher alone, closed by the main thread after the watcher stopped. */
	struct store_listener *listener;
};

/* ---- log.c: levelled logging to stderr, the journal or syslog ---- */

enum log_level {
	LOG_LEVEL_ERR = 3,
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_NOTICE = 5,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* Before anything logs: stderr (with "<N>" level prefixes when systemd reads it). */
void log_init(enum log_level max);
/* After fuse_daemonize has pointed stderr at /dev/null: syslog from now on. */
void log_to_syslog(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));
/* A store handle's notices (store_open_notify: a lock waited for, and who holds it), as
 * warnings. */
void log_notice(void *ctx, const char *msg);
/* An error serving one file: logged the first time per key (a nodeid, never 0), and no
 * more than a few per second in all (struct log_limit), so a corrupt object cannot flood
 * the journal. */
void log_file_error(uint64_t key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The limit log_file_error applies, as a value driven by the caller's clock (the daemon
 * has one, under a lock; a test its own). Only the first error about a key (non-zero)
 * counts, whether it passes or not; of those, LOG_BURST pass at once, then one per
 * LOG_INTERVAL_NS (a token bucket holding at most LOG_BURST). The set of keys seen is
 * fixed: a full neighbourhood forgets a key, so one seen long ago may count again. */
#define LOG_BURST       20
#define LOG_INTERVAL_NS 200000000LL
#define LOG_SEEN_SLOTS  4096

/* Zeroed: nothing logged yet. */
struct log_limit {
	bool started;                  /* refill_ns is set */
	int64_t spent;                 /* of the LOG_BURST tokens, taken and not given back */
	int64_t refill_ns;             /* when the next token given back is counted from */
	uint64_t suppressed;           /* refused since the last line that passed */
	uint64_t seen[LOG_SEEN_SLOTS]; /* keys that passed; 0: empty */
};

/* Whether the error about key at now (nanoseconds of a clock that does not go back) is
 * logged. A key seen before is refused and not counted; any other refusal is. When
 * it passes, *ret_dropped is how many were refused since the last that passed (0: none),
 * which the caller says first. Not locked: the caller serialises. */
bool log_limit_pass(struct log_limit *l, uint64_t key, int64_t now, uint64_t *ret_dropped);

/* ---- inode.c: the nodeid space and attributes ---- */

/*
 * nodeid = (id << 2) | kind, id >= 1:
 *   kind 0  a store node (directory, symlink, relocated or unshared file): id = node id
 *   kind 1  a group of identical regular files (hard-link semantics): id = group id
 *   kind 2  a tag symlink in the root: id = tag id (never reused; a moved tag gets a new one)
 *   kind 3  MOUNTPOINT/.condafs and what it holds (meta.c), and the files served in every
 *           environment and stored in none (served.c)
 * and FUSE's root, nodeid 1 (kind 1 with id 0, which no group has).
 */
enum ino_kind {
	INO_NODE = 0,
	INO_GROUP = 1,
	INO_TAG = 2,
	INO_META = 3,
};

#define INO_ROOT ((fuse_ino_t)FUSE_ROOT_ID)

/* -EOVERFLOW for an id that does not fit (id < 1, or id >= 2^61); *ret is written only
 * on success. */
int ino_make(enum ino_kind kind, int64_t id, fuse_ino_t *ret);
/* -ESTALE for a nodeid ino_make cannot have made (id 0, among them the root; an id above
 * the largest). *ret_kind and *ret_id are written only on success. */
int ino_split(fuse_ino_t ino, enum ino_kind *ret_kind, int64_t *ret_id);
/* A nodeid's kind and id as ino_make put them, unchecked: for nodeids known to be ours
 * (the kernel's own, or the use table's); ino_split checks one from anywhere else. */
static inline enum ino_kind ino_kind_of(fuse_ino_t ino)
{
	return (enum ino_kind)(ino & 3);
}
static inline int64_t ino_id_of(fuse_ino_t ino)
{
	return (int64_t)(ino >> 2);
}
/* The nodeid a node is served under: its group's, its first hard link's, or its own. */
int ino_of_node(const struct store_node *n, fuse_ino_t *ret);
/* The attributes of a node served at nodeid ino under a prefix of plen bytes. */
void ino_attr(const struct store_node *n, fuse_ino_t ino, size_t plen, uint32_t nlink,
              struct stat *ret);
/* The generation for nodes of an environment: from its hash, so a node id that the store
 * reuses for another environment reaches the kernel as a new inode. */
uint64_t ino_generation(const char *hash);

/* ---- envtab.c: the environments being served ---- */

struct fsd_env {
	int64_t id;
	char hash[33];
	bool removed;        /* not in the root any more; served while the kernel holds it */
	fuse_ino_t ino;      /* its top directory's nodeid */
	uint64_t generation; /* of every nodeid of this environment (ino_generation) */
	struct store_node top;
	char *prefix; /* <mountpoint>/<hash>: what the build prefix is served as */
	size_t prefix_len;
	int64_t created; /* when it was ingested: the served files' mtime */
	/* conda-meta/frozen and EXTERNALLY-MANAGED as served here (condafs/frozen.h) */
	char *served[FROZEN_FILES];
	size_t served_len[FROZEN_FILES];
};

/* A name in the root directory: a live environment, or a tag (a symlink to a hash). */
struct fsd_root {
	char name[129];
	uint8_t len;
	fuse_ino_t ino;
	const struct fsd_env *env; /* NULL for a tag */
	char target[33];           /* a tag's environment hash */
	struct timespec mtime;     /* a tag's: when it was set */
};

/* Immutable once published. */
struct envtab {
	_Atomic unsigned refs;
	uint64_t version;
	struct timespec changed; /* the root directory's mtime */
	size_t n, nlive;
	struct fsd_env *envs;   /* live and removed-but-not-reaped environments */
	struct fsd_env **by_id; /* sorted by id */
	size_t nroot;
	struct fsd_root *root; /* sorted by name bytes: the root directory's order */
};

/* Build a table of every environment in the store, with refs = 1 (envtab_build of what
 * the store lists). */
int envtab_load(struct fsd *fs, struct store *st, uint64_t version, struct envtab **ret,
                struct cfs_err *err);
/* The table of the n environments v, live and removed (the top directory of v[i] is
 * tops[i]), and of the tags, served at mountpoint, with refs = 1. Neither array needs to
 * be sorted; a tag whose id makes no nodeid is left out. -ENOMEM, or -EOVERFLOW for an
 * environment whose top directory's id makes no nodeid. */
int envtab_build(const char *mountpoint, uint64_t version, const struct store_env *v,
                 const struct store_node *tops, size_t n, const struct store_tag *tags,
                 size_t ntags, struct envtab **ret);
void envtab_put(struct envtab *t); /* drops a reference; NULL is fine */
/* A new reference to the current table. */
struct envtab *envtab_get(struct fsd *fs);
/* Make t current (the caller's reference moves to fs) and drop the old one. */
void envtab_publish(struct fsd *fs, struct envtab *t);
/* NULL when absent. Valid as long as the caller's reference to t. */
const struct fsd_root *envtab_root_find(const struct envtab *t, const char *name, size_t len);
/* The tag served at nodeid ino (an environment's nodeid finds nothing). */
const struct fsd_root *envtab_tag_by_ino(const struct envtab *t, fuse_ino_t ino);
const struct fsd_env *envtab_by_id(const struct envtab *t, int64_t id);

/* ---- worker.c: what each FUSE worker thread keeps ---- */

/* A node as the worker resolved it from a nodeid. */
struct wnode {
	fuse_ino_t ino;
	struct store_node n;
	uint32_t nlink;
	const struct fsd_env *env; /* NULL for a group whose users are not in the table */
};

struct worker;

/* This thread's worker, opened on first use (a store handle of its own), for one request:
 * give it back with worker_put when the request is done. */
int worker_get(struct fsd *fs, struct worker **ret);
/* The request is done; NULL is fine (worker_get failed). */
void worker_put(struct worker *w);
/* Idle workers (no request for a second) let go of their catalog snapshots, so SQLite
 * can restart its log while the mount sits unused. The watcher calls it every tick. */
void worker_sweep_idle(void);
/* A read-only store handle for a thread of the daemon, sharing fs's decoded frames. It
 * reads one snapshot of the catalog: reopen it when the environment table changes. */
int worker_store_open(struct fsd *fs, struct store **ret, struct cfs_err *err);
/* Close this thread's worker now (the main thread, before it closes the session). */
void worker_release_self(void);
struct store *worker_store(struct worker *w);
const struct envtab *worker_envtab(struct worker *w);
/* The version of the table this worker serves from (for the block cache). */
uint64_t worker_version(const struct worker *w);
/* A buffer of at least size bytes, valid until the next call on w. */
int worker_buf(struct worker *w, size_t size, void **ret);
/* Resolve a nodeid (not the root): -ESTALE when it names nothing any more. The result
 * is valid until the next worker_node or worker_remember call on w. */
int worker_node(struct worker *w, fuse_ino_t ino, const struct wnode **ret, struct cfs_err *err);
/* Keep what a lookup or a listing found as nodeid ino, for the requests that follow. */
void worker_remember(struct worker *w, fuse_ino_t ino, const struct store_node *n,
                     const struct fsd_env *env, uint32_t nlink);
/* How many names a group has: cached per thread until the environment table changes. */
int worker_group_nlink(struct worker *w, int64_t group, uint32_t *ret, struct cfs_err *err);

/* ---- the block cache of served blocks (condafs/cache.h), shared by the workers ---- */

/* Blocks are aligned to the store's frame size (256 KiB, store/object.h), so filling one
 * decompresses one frame; any other size would still be correct, only slower. */
#define CACHE_BLOCK_SHIFT 18
#define CACHE_BLOCK_SIZE  ((size_t)1 << CACHE_BLOCK_SHIFT)

/* ---- prefetch.c: reading ahead of sequential readers ---- */

struct prefetch;

/* One thread filling blocks ahead of sequential readers (needs fs->cache). */
int prefetch_start(struct fsd *fs, struct prefetch **ret);
/* Stops the thread; blocks still queued leave the cache unfilled. NULL is fine. */
void prefetch_stop(struct prefetch *p);
/* A read of [off, end) of nodeid ino (size fsize) was served: when it continues the
 * previous one, queue the blocks that follow. NULL p: nothing. */
void prefetch_note(struct prefetch *p, fuse_ino_t ino, const struct store_node *n,
                   const char *prefix, uint64_t version, uint64_t off, uint64_t end,
                   uint64_t fsize);

/* ---- use.c: what the kernel holds of each environment, and its last use ---- */

int use_new(const char *store_dir, struct use **ret, struct cfs_err *err);
void use_free(struct use *u);
/* Entry ino, node node of environment env_id, is about to reach the kernel (a lookup
 * reply, a readdirplus entry): its lookup count grows by one. -EBUSY: gc is reaping the
 * environment (it was removed); the entry must not be sent. */
int use_entry(struct use *u, fuse_ino_t ino, int64_t env_id, int64_t node);
/* The node of its environment a charged ino was handed out as: -ENOENT if none. */
int use_node(struct use *u, fuse_ino_t ino, int64_t *ret);
/* The kernel dropped nlookup of its references to ino (FORGET, or a reply not sent). */
void use_forget(struct use *u, fuse_ino_t ino, uint64_t nlookup);
/* A request used environment env_id now. */
void use_mark(struct use *u, int64_t env_id);
/* The environments used since the last call: *ret is malloc'd, the caller frees it. */
int use_take(struct use *u, int64_t **ret, size_t *ret_n);
/* The nodeids of kind charged to environments that t does not serve as live; *ret is
 * malloc'd, the caller frees it. */
int use_list_removed(struct use *u, const struct envtab *t, enum ino_kind kind, fuse_ino_t **ret,
                     size_t *ret_n);
/* Charge group nodeids of environments t no longer serves as live to a live environment
 * with the same file at the same path (the watcher, after publishing t). */
void use_rehome(struct use *u, struct store *st, const struct envtab *t);

/* ---- meta.c: MOUNTPOINT/.condafs, the reports users read instead of the store ---- */

#define META_DIR_NAME ".condafs"

int meta_new(struct fsd *fs, struct meta **ret);
void meta_free(struct meta *m); /* NULL is fine */
/* Make envs.json and stats.json again from st (the watcher's handle, or the first one
 * before mounting, with notify false); publish them when they changed, telling the kernel
 * to drop the old names. Logs what fails (the old texts stay). */
int meta_refresh(struct fsd *fs, struct store *st, bool notify);
/* The environment table went from old to t: drop the names of packages/ that came, went
 * or changed (the watcher, after publishing t). */
void meta_tables(struct fsd *fs, const struct envtab *old, const struct envtab *t);
/* The requests meta.c answers: a nodeid of kind INO_META, and ".condafs" in the root. */
bool meta_owns(fuse_ino_t ino);
bool meta_is_root_name(const char *name);
void meta_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void meta_getattr(fuse_req_t req, fuse_ino_t ino);
void meta_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);
void meta_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus);
void meta_forget(struct fsd *fs, fuse_ino_t ino, uint64_t nlookup);

/* ---- served.c: conda-meta/frozen and EXTERNALLY-MANAGED, in every environment ---- */

/* A nodeid of a served file. */
bool served_owns(fuse_ino_t ino);
/* The nodeid of file f served in environment env_id (kind INO_META, beside meta.c's):
 * -EOVERFLOW for an id that makes none (env_id < 1, or env_id >= 2^57). */
int served_ino(int64_t env_id, enum frozen_file f, fuse_ino_t *ret);
/* The environment id and file of a served nodeid; false for any other nodeid. */
bool served_split(fuse_ino_t ino, int64_t *ret_env, enum frozen_file *ret_f);
/* The entry of the file directory dir (of env) gets made for it: 1 and *e, *ret_name when
 * it gets one, 0 when not, a negative errno when the catalog cannot say. */
int served_dir_entry(struct worker *w, const struct fsd_env *env, const struct store_node *dir,
                     const char **ret_name, struct fuse_entry_param *e, struct cfs_err *err);
/* Its attributes, and its text (valid while the caller holds t): -ESTALE when t does not
 * serve its environment. */
int served_attr(const struct envtab *t, fuse_ino_t ino, struct stat *ret);
int served_text(const struct envtab *t, fuse_ino_t ino, const char **ret, size_t *ret_len);

/* ---- ops.c: the low-level handlers ---- */

extern const struct fuse_lowlevel_ops fsd_ops;

/* ---- watch.c: environments added and removed while mounted ---- */

/* The watcher thread: it follows the store's changes (polled, and told by writers through
 * the store's listener socket, so a writer's command returns once the mount shows its
 * change). */
void watch_listen(struct fsd *fs);
int watch_start(struct fsd *fs);
void watch_stop(struct fsd *fs);

/* ---- notify.c: systemd's readiness protocol ---- */

/* Send "READY=1" (and a status line) to $NOTIFY_SOCKET when it is set: one datagram.
 * Logs and carries on when it cannot. Called by the INIT handler: the kernel holds every
 * other request until INIT is answered, and serves them from then on. Never blocks. */
void notify_ready(struct fsd *fs);

/* ---- opts.c: the command line and the config file ---- */

struct opts {
	const char *store;      /* NULL: $CONDAFS_STORE, else the config's */
	const char *mountpoint; /* NULL: the config's */
	const char *config_path;
	bool foreground, debug;
	unsigned threads; /* 0: the config's, else 2 */
	unsigned cache_mb;
	bool prefetch;
	unsigned readahead_kb;
	char *fuse_opts; /* the -o options, comma-joined; malloc'd (opts_release) */
	struct config config;
};

/* argv into o (zeroed by the caller; its strings borrow argv's): 0, or -1 with *ret_exit
 * the process's exit code, 0 after --help (usage on stdout), 2 for bad usage and 1 out of
 * memory (said on stderr). Uses getopt's globals: set optind to 0 to parse again. */
int opts_parse(int argc, char **argv, struct opts *o, int *ret_exit);
/* The config file (o->config_path) under the command line: the store after
 * $CONDAFS_STORE, the mount point, the threads, and the log level (log_init) unless -d.
 * Logs what is wrong and returns its -errno. */
int opts_apply_config(struct opts *o);
/* The arguments fuse_session_new takes for o: argv0, the fixed mount options (read-only,
 * nosuid, nodev), allow_other when asked (root), the -o options, -d under -d. *ret is the
 * caller's to free (fuse_opt_free_args); -ENOMEM. */
int opts_fuse_args(const struct opts *o, const char *argv0, bool allow_other,
                   struct fuse_args *ret);
void opts_release(struct opts *o); /* frees fuse_opts */

/* ---- state.c: the daemon's state from start to end ---- */

/* Zero fs and make what it needs before anything else: -errno. */
int fsd_init(struct fsd *fs);
/* Open the store once (fs->store_dir), so that a wrong --store is said on the terminal,
 * upgrading an old catalog; bind the writers' socket; load the first environment table and
 * the .condafs reports. The handle is closed again: SQLite connections must not cross the
 * fork of fuse_daemonize; every thread opens its own afterwards. Logs what fails. */
int fsd_load(struct fsd *fs);
/* The caches' hit counts, at debug level. */
void fsd_log_caches(const struct fsd *fs);
/* Everything fs holds; after fsd_init, whether or not the rest ran. */
void fsd_release(struct fsd *fs);

/* ---- storedir.c: the store directory before opening it ---- */

/* 0 when dir can be opened as a store: a missing or empty directory becomes an empty
 * store (0700); anything else is left for store_open to judge. -1 after logging why
 * not. */
int storedir_prepare(const char *dir);

/* ---- mountpoint.c: checking the mount point before mounting ---- */

/* 0 when MOUNTPOINT can be mounted on, after clearing a dead condafs mount (statfs gives
 * ENOTCONN) left by a killed daemon; otherwise logs what is wrong and how to fix it. */
int mountpoint_check(const char *path);
/* Raise the mount's readahead to fs->readahead_kb through /sys/class/bdi, once. The
 * kernel applies the INIT reply's readahead (never more than it offered, 128 KiB) when
 * that reply arrives, so this is called by the first request after it. */
void mountpoint_raise_readahead(struct fsd *fs);

#endif
