// SPDX-License-Identifier: MIT
/*
 * The catalog in SQLite: schema, prepared statements, and every query the store makes.
 * WAL lets the daemon read while an ingest writes; a busy timeout lets two ingests queue.
 *
 * Invariants (with object.c's O1/O2):
 * C1: an environment row exists only together with its tree (catalog_tree.c) and packages:
 *     they are inserted in one transaction, and deleted in one.
 * C2: objects.refs is the number of files of every environment's tree (live or removed)
 *     naming the object, plus, for a pack, its members, and for a tree image, the
 *     environments naming it (catalog_tree_count.c T4); a tree names only an object whose
 *     image is durable (a file fsynced and linked, its directory fsynced).
 * C3: a directory's children have the ids [first_child, first_child + nchildren), sorted
 *     by name bytes, ids given breadth first (T5).
 * C4: at most one live environment (removed = 0) per hash. A removed environment keeps
 *     its rows, hidden from every lookup by name, until gc reaps it (gc.c G4), so a mount
 *     can go on serving its open files; the rows are never shown by hash or tag again.
 * C5: a sources row names a file (device, inode, ctime) whose bytes an ingest stored or
 *     compared as the content of obj, a stored content. The row goes in the transaction
 *     that deletes the object (gc, repair), and when the object is found missing or
 *     corrupt (repair). One row per inode, the last content seen in it: a file that
 *     changed since has another ctime and never matches, and the filesystem's reuse of
 *     inode numbers keeps the table about as large as the files ingested from.
 * C6: an environment's nodes have the ids root .. root + nodes - 1 (new ids start above
 *     every id ever used), so the environment of a node id is one probe of envs_root.
 * C7: objects.owner is the environment (live or removed) whose files are the only ones
 *     naming the object, NULL when two environments' files or none do. esum and esq are
 *     the sums of the environment ids of those names and of their squares: every name is
 *     environment m's exactly when esum = refs * m and esq = refs * m^2, so the owner is
 *     known again from the row alone whenever its counts change (catalog_tree.c), and an
 *     environment's unique bytes are a sum over objects_owned.
 * C8: groups.nlink is the number of files of live environments in the group, groups.refs
 *     of every environment: counted in when an environment's references are
 *     (catalog_env_ref), nlink out when it is hidden or deleted while live; a group goes
 *     with its last name. A lookup reads one groups row.
 * C9: packages.archive, the record of a package archive an environment was installed
 *     from (pkgrec.h), names only contents that environment's tree names too (the
 *     install records a package only when every file of it is in the tree), so it is
 *     good as long as its environment's rows are, and goes with them (C1).
 */
#include "catalog.h"

#include "catalog_int.h"
#include "err.h"
#include "pkgset.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Version 3 added the sources table and dropped two indexes (C6, and members by pack);
 * version 4 added objects.owner (C7) and groups.nlink (C8); version 5 stores trees as
 * directory objects (catalog_tree.c) in place of a row per node; version 6 keeps the
 * record of each package archive an install took an environment from (packages.archive,
 * pkgrec.h); version 7 moves each environment's tree into a tree image in the object store
 * (docs/tree-format.md), and the trees table goes; version 8 writes package records of
 * format 2 (docs/package-format.md), which keep the conda-meta record an install made of the
 * package (format 1 ones still read). A writable open upgrades a catalog of version 2 or
 * later; a reader reads version 8 alone. */
#define CATALOG_VERSION            8
#define CATALOG_VERSION_UPGRADABLE 2
#define BUSY_TIMEOUT_MS            60000

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        " WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS envs("
        " id INTEGER PRIMARY KEY, hash TEXT NOT NULL, platform TEXT NOT NULL,"
        " source_prefix BLOB NOT NULL, created INTEGER NOT NULL, last_used INTEGER NOT NULL,"
        " root INTEGER NOT NULL, files INTEGER NOT NULL, logical_bytes INTEGER NOT NULL,"
        " removed INTEGER NOT NULL DEFAULT 0, broken INTEGER NOT NULL DEFAULT 0,"
        " nodes INTEGER NOT NULL DEFAULT 0, tree BLOB);"
        /* C4: one live environment per hash; removed ones wait for gc to reap them. */
        "CREATE UNIQUE INDEX IF NOT EXISTS envs_live ON envs(hash) WHERE removed = 0;"
        "CREATE INDEX IF NOT EXISTS envs_removed ON envs(removed) WHERE removed != 0;"
        /* Which environment a node id belongs to (C6), without a scan of every one. */
        "CREATE INDEX IF NOT EXISTS envs_root ON envs(root);"
        "CREATE TABLE IF NOT EXISTS packages("
        " env INTEGER NOT NULL, kind INTEGER NOT NULL, name TEXT NOT NULL,"
        " version TEXT NOT NULL, build TEXT, channel TEXT, subdir TEXT, md5 TEXT, sha256 TEXT,"
        " archive BLOB);"
        "CREATE INDEX IF NOT EXISTS packages_env ON packages(env);"
        /* C9: an install finds a package it has stored by the lock's digest. */
        "CREATE INDEX IF NOT EXISTS packages_sha256 ON packages(sha256)"
        " WHERE archive IS NOT NULL;"
        "CREATE INDEX IF NOT EXISTS packages_md5 ON packages(md5) WHERE archive IS NOT NULL;"
        "CREATE TABLE IF NOT EXISTS objects("
        " id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, size INTEGER NOT NULL,"
        " stored INTEGER NOT NULL, refs INTEGER NOT NULL, kind INTEGER NOT NULL,"
        " pack INTEGER, pack_off INTEGER, owner INTEGER, esum INTEGER NOT NULL DEFAULT 0,"
        " esq INTEGER NOT NULL DEFAULT 0);"
        /* C7: an environment's unique bytes, summed from the index alone. */
        "CREATE INDEX IF NOT EXISTS objects_owned ON objects(owner, stored)"
        " WHERE owner IS NOT NULL;"
        "CREATE TABLE IF NOT EXISTS groups("
        " id INTEGER PRIMARY KEY, obj INTEGER NOT NULL, mode INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, nlink INTEGER NOT NULL DEFAULT 0,"
        " refs INTEGER NOT NULL DEFAULT 0, UNIQUE(obj, mode, mtime_ns));"
        /* In gc's order (S_GC_UNUSED): its next object is the index's first entry, where
         * an index of refs alone sorted every unreferenced object at each step. */
        "CREATE INDEX IF NOT EXISTS objects_unreferenced ON objects(kind, id) WHERE refs = 0;"
        "CREATE TABLE IF NOT EXISTS tags(name TEXT PRIMARY KEY, env INTEGER NOT NULL,"
        " id INTEGER NOT NULL UNIQUE, set_at INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS tags_env ON tags(env);"
        /* No index by object: rows of deleted objects go in one sweep (C5). */
        "CREATE TABLE IF NOT EXISTS sources(dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
        " ctime_ns INTEGER NOT NULL, obj INTEGER NOT NULL, PRIMARY KEY(dev, ino))"
        " WITHOUT ROWID;";

enum stmt_id {
	S_OBJ_BY_KEY,
	S_OBJ_ID,
	S_OBJ_BY_FILE,
	S_OBJ_BY_ID,
	S_OBJ_REF,
	S_OBJ_EACH,
	S_OBJ_PACKREF,
	S_GROUP_FIND,
	S_GROUP_INSERT,
	S_ENV_BY_HASH,
	S_ENV_BY_PREFIX,
	S_ENV_LIST,
	S_ENV_LIST_ALL,
	S_ENV_HIDE,
	S_ENV_REMOVED,
	S_ENV_INSERT,
	S_PKG_INSERT,
	S_PKG_LIST,
	S_PKG_BY_SHA256,
	S_PKG_BY_MD5,
	S_PKG_RECORDS,
	S_PKG_FORGET,
	S_ENV_DEL_PKGS,
	S_ENV_DEL,
	S_ENV_UNIQUE,
	S_GROUP_SETNLINK,
	S_NODE_MAX,
	S_NODE_LAST,
	S_GROUP_COUNT,
	S_GROUP_ATTR,
	S_DATA_VERSION,
	S_TAG_NEXT,
	S_TAG_SET,
	S_TAG_DEL,
	S_TAG_LIST,
	S_TAG_LIST_ENV,
	S_TAG_ENV,
	S_ENV_DEL_TAGS,
	S_TAG_MOVE_ENV,
	S_ENV_TOUCH,
	S_GC_ENVS,
	S_GC_UNUSED,
	S_OBJ_DEL,
	S_REPACK_PLAN,
	S_MEMBER_MOVE,
	S_PACK_DROP,
	S_STATS_ENVS,
	S_STATS_OBJS,
	S_OBJ_SETREFS,
	S_ENV_BROKEN,
	S_SOURCE_SET,
	S_SOURCE_FORGET,
	S_SOURCES_PRUNE,
	S_NAMES_NOTHING,
	S_MARK_PUBLISHED,
	S_COUNT,
};

#define ENV_COLS                                                                                   \
	"id, hash, platform, source_prefix, created, last_used, root, files, logical_bytes,"       \
	" removed, broken"
#define OBJ_COLS "id, key, size, stored, refs, kind, pack, pack_off"
/* Whether node id x belongs to a removed environment: the one with the last root at or
 * before x (C6), found by envs_root; asked only while some environment is removed. */
#define IN_REMOVED_ENV(x)                                                                          \
	"(EXISTS (SELECT 1 FROM envs WHERE removed != 0) AND (SELECT removed FROM envs"            \
	" WHERE root <= " x " ORDER BY root DESC LIMIT 1) != 0)"
/* Whether node n (the nodes table's alias) is a removed environment's. */
#define N_REMOVED IN_REMOVED_ENV("n.id")
/* The environment node id x belongs to (C6). */
#define ENV_OF(x) "(SELECT id FROM envs WHERE root <= " x " ORDER BY root DESC LIMIT 1)"
#define FIRST_ENV ENV_OF("first")
#define LAST_ENV  ENV_OF("last")
/* w(obj, first, last): the environments of b's first and last node ids, for a WITH. */
#define ENDS_ENVS                                                                                  \
	"w(obj, first, last) AS MATERIALIZED (SELECT obj, " FIRST_ENV ", " LAST_ENV " FROM b)"
static const char *const stmt_sql[S_COUNT] = {
        [S_OBJ_BY_KEY] = "SELECT " OBJ_COLS " FROM objects WHERE key = ?1",
        /* The key's unique index holds the rowid: it covers this. */
        [S_OBJ_ID] = "SELECT id FROM objects WHERE key = ?1",
        [S_OBJ_BY_FILE] = "SELECT " OBJ_COLS ", EXISTS (SELECT 1 FROM sources s"
                          " WHERE s.dev = ?2 AND s.ino = ?3 AND s.ctime_ns = ?4"
                          " AND s.obj = objects.id), (SELECT g.id FROM groups g"
                          " WHERE g.obj = objects.id AND g.mode = ?5 AND g.mtime_ns = ?6)"
                          " FROM objects WHERE key = ?1",
        [S_OBJ_BY_ID] = "SELECT " OBJ_COLS " FROM objects WHERE id = ?1",
        /* One statement for both cases: catalog_object_ref tells them apart by the last
         * insert rowid, which the update path leaves alone. */
        [S_OBJ_REF] = "INSERT INTO objects(key, size, stored, refs, kind, pack, pack_off)"
                      " VALUES (?1, ?2, ?3, ?7, ?4, ?5, ?6) ON CONFLICT(key) DO UPDATE"
                      " SET refs = refs + excluded.refs RETURNING id",
        /* A pack, then its members in pack order: each frame is decoded once. */
        [S_OBJ_EACH] = "SELECT " OBJ_COLS " FROM objects"
                       " ORDER BY coalesce(pack, id), kind DESC, pack_off",
        [S_OBJ_PACKREF] = "UPDATE objects SET refs = refs + ?2 WHERE id = ?1",
        [S_GROUP_FIND] = "SELECT id FROM groups WHERE obj = ?1 AND mode = ?2 AND mtime_ns = ?3",
        [S_GROUP_INSERT] = "INSERT INTO groups(obj, mode, mtime_ns) VALUES (?1, ?2, ?3)",
        [S_ENV_BY_HASH] = "SELECT " ENV_COLS " FROM envs WHERE hash = ?1 AND removed = 0",
        [S_ENV_BY_PREFIX] = "SELECT " ENV_COLS " FROM envs WHERE hash >= ?1 AND hash < ?1 || 'g'"
                            " AND removed = 0 ORDER BY hash LIMIT 2",
        [S_ENV_LIST] = "SELECT " ENV_COLS " FROM envs WHERE removed = 0 ORDER BY hash",
        [S_ENV_LIST_ALL] = "SELECT " ENV_COLS " FROM envs ORDER BY hash, removed",
        [S_ENV_HIDE] = "UPDATE envs SET removed = max(?2, 1) WHERE id = ?1 AND removed = 0",
        [S_ENV_REMOVED] = "SELECT " ENV_COLS " FROM envs WHERE removed != 0 ORDER BY id",
        [S_ENV_INSERT] = "INSERT INTO envs(hash, platform, source_prefix, created, last_used,"
                         " root, files, logical_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        [S_PKG_INSERT] = "INSERT INTO packages(env, kind, name, version, build, channel, subdir,"
                         " md5, sha256, archive) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                         " ?10)",
        /* The newest environment's record that is not known broken. */
        [S_PKG_BY_SHA256] = "SELECT p.archive, e.root FROM packages p JOIN envs e ON e.id = p.env"
                            " WHERE p.sha256 = ?1 AND p.archive IS NOT NULL AND e.broken = 0"
                            " ORDER BY p.env DESC LIMIT 1",
        [S_PKG_BY_MD5] = "SELECT p.archive, e.root FROM packages p JOIN envs e ON e.id = p.env"
                         " WHERE p.md5 = ?1 AND p.archive IS NOT NULL AND e.broken = 0"
                         " ORDER BY p.env DESC LIMIT 1",
        [S_PKG_RECORDS] = "SELECT p.rowid, e.hash, p.name || '-' || p.version || '-' ||"
                          " coalesce(p.build, ''), p.archive FROM packages p"
                          " JOIN envs e ON e.id = p.env WHERE p.archive IS NOT NULL",
        [S_PKG_FORGET] = "UPDATE packages SET archive = NULL WHERE rowid = ?1",
        [S_PKG_LIST] = "SELECT kind, name, version, build, channel, subdir, md5, sha256"
                       " FROM packages WHERE env = ?1",
        [S_ENV_DEL_PKGS] = "DELETE FROM packages WHERE env = ?1",
        [S_ENV_DEL] = "DELETE FROM envs WHERE id = ?1",
        [S_ENV_UNIQUE] = "SELECT coalesce(sum(stored), 0) FROM objects WHERE owner = ?1",
        /* A reader of a catalog older than C7. */
        /* Ids are never reused: the daemon hands them to the kernel as inode numbers. */
        [S_NODE_MAX] = "SELECT max(coalesce((SELECT max(root + nodes - 1) FROM envs), 0),"
                       " coalesce((SELECT CAST(value AS INTEGER) FROM meta"
                       " WHERE key = 'last_node_id'), 0))",
        [S_NODE_LAST] = "INSERT INTO meta(key, value) VALUES ('last_node_id', ?1)"
                        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [S_GROUP_COUNT] = "SELECT nlink FROM groups WHERE id = ?1",
        /* What a group's files share, served without any of them (store_group_get). */
        [S_GROUP_ATTR] = "SELECT g.mode, g.mtime_ns, o.size, g.nlink FROM groups g"
                         " JOIN objects o ON o.id = g.obj WHERE g.id = ?1",
        [S_GROUP_SETNLINK] = "UPDATE groups SET nlink = ?2 WHERE id = ?1",
        [S_DATA_VERSION] = "PRAGMA data_version",
        /* Tag ids are never reused, and a moved tag gets a new one: the daemon serves a
         * tag as a symlink whose nodeid is its id, and the kernel caches link targets. */
        [S_TAG_NEXT] = "INSERT INTO meta(key, value) VALUES ('last_tag_id',"
                       " coalesce((SELECT max(id) FROM tags), 0) + 1)"
                       " ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                       " RETURNING CAST(value AS INTEGER)",
        [S_TAG_SET] = "INSERT INTO tags(name, env, id, set_at) VALUES (?1, ?2, ?3, ?4)"
                      " ON CONFLICT(name) DO UPDATE SET env = excluded.env, id = excluded.id,"
                      " set_at = excluded.set_at WHERE env != excluded.env",
        [S_TAG_DEL] = "DELETE FROM tags WHERE name = ?1",
        [S_TAG_LIST] = "SELECT t.name, e.hash, t.id, t.set_at FROM tags t"
                       " JOIN envs e ON e.id = t.env ORDER BY t.name",
        [S_TAG_LIST_ENV] = "SELECT t.name, e.hash, t.id, t.set_at FROM tags t"
                           " JOIN envs e ON e.id = t.env WHERE e.hash = ?1 AND e.removed = 0"
                           " ORDER BY t.name",
        [S_TAG_ENV] =
                "SELECT " ENV_COLS " FROM envs WHERE id = (SELECT env FROM tags WHERE name = ?1)",
        [S_ENV_DEL_TAGS] = "DELETE FROM tags WHERE env = ?1",
        /* Same hash, same link target: the tags keep their ids. */
        [S_TAG_MOVE_ENV] = "UPDATE tags SET env = ?2 WHERE env = ?1",
        [S_ENV_TOUCH] = "UPDATE envs SET last_used = max(last_used, ?2) WHERE id = ?1",
        [S_GC_ENVS] = "SELECT " ENV_COLS " FROM envs WHERE last_used < ?1 AND removed = 0"
                      " AND id NOT IN (SELECT env FROM tags) ORDER BY hash",
        /* Members before packs: deleting a member releases its pack. */
        [S_GC_UNUSED] = "SELECT " OBJ_COLS " FROM objects WHERE refs = 0 ORDER BY kind, id LIMIT 1",
        [S_OBJ_DEL] = "DELETE FROM objects WHERE id = ?1",
        /* Members grouped by pack in one scan: objects.pack has no index (C6's note in
         * docs/PERFORMANCE.md). ?1: every pack with a dead byte, else those half dead or
         * more. */
        [S_REPACK_PLAN] = "SELECT o.id, o.key, o.size, o.pack_off, p.id, p.key, p.size"
                          " FROM objects o JOIN objects p ON p.id = o.pack WHERE o.pack IN"
                          " (SELECT m.pack FROM (SELECT pack, sum(size) AS live FROM objects"
                          " WHERE pack IS NOT NULL GROUP BY pack) m JOIN objects q"
                          " ON q.id = m.pack WHERE q.kind = 1 AND q.size > m.live"
                          " AND (?1 OR (q.size - m.live) * 2 >= q.size))"
                          " ORDER BY o.pack, o.pack_off",
        /* Only while it is still where the plan saw it; pack ?4 NULL: an image of its
         * own. */
        [S_MEMBER_MOVE] = "UPDATE objects SET pack = ?4, pack_off = ?5, stored = ?6"
                          " WHERE id = ?1 AND pack = ?2 AND pack_off = ?3 AND kind = 0",
        [S_PACK_DROP] = "DELETE FROM objects WHERE id = ?1 AND kind = 1 AND refs = 0",
        [S_STATS_ENVS] =
                "SELECT count(*), coalesce(sum(logical_bytes), 0) FROM envs WHERE removed = 0",
        [S_STATS_OBJS] = "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(stored), 0)"
                         " FROM objects WHERE kind = 0",
        [S_OBJ_SETREFS] = "UPDATE objects SET refs = ?2 WHERE id = ?1",
        [S_ENV_BROKEN] = "UPDATE envs SET broken = ?2 WHERE id = ?1",
        [S_SOURCE_SET] = "INSERT INTO sources(dev, ino, ctime_ns, obj) VALUES (?1, ?2, ?3, ?4)"
                         " ON CONFLICT(dev, ino) DO UPDATE SET ctime_ns = excluded.ctime_ns,"
                         " obj = excluded.obj",
        /* ?1: a JSON array of object ids. */
        [S_SOURCE_FORGET] = "DELETE FROM sources WHERE obj IN (SELECT value FROM json_each(?1))",
        [S_SOURCES_PRUNE] = "DELETE FROM sources WHERE NOT EXISTS"
                            " (SELECT 1 FROM objects WHERE objects.id = sources.obj)",
        /* No object row, and not the catalog of a store whose environments were all
         * collected (no environment left, but an ingest committed once) nor of one whose ingests
         * never committed (images published, then killed: orphans). */
        [S_NAMES_NOTHING] = "SELECT NOT EXISTS (SELECT 1 FROM objects) AND (EXISTS"
                            " (SELECT 1 FROM envs) OR NOT EXISTS (SELECT 1 FROM meta"
                            " WHERE key IN ('last_node_id', 'published')))",
        [S_MARK_PUBLISHED] = "INSERT INTO meta(key, value) VALUES ('published', '1')"
                             " ON CONFLICT DO NOTHING",
};

struct catalog {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[S_COUNT];
	const struct lockwait *notify; /* NULL: waits are silent */
	struct cattree *tree;          /* catalog_tree.c's */
	struct timespec busy_since;    /* when the current busy wait began */
	bool busy_said;                /* ...and whether it was said */
	int version;                   /* of the catalog's schema, after any upgrade */
	int store_fd;                  /* the store's directory: tree images (not owned) */
};

static int db_err(struct catalog *c, int rc, const char *what, struct cfs_err *err)
{
	int e = rc == SQLITE_BUSY || rc == SQLITE_LOCKED      ? -EBUSY
	        : rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? -EUCLEAN
	        : rc == SQLITE_FULL                           ? -ENOSPC
	        : rc == SQLITE_NOMEM                          ? -ENOMEM
	        : rc == SQLITE_READONLY                       ? -EROFS
	                                                      : -EIO;

	return err_set(err, e, "%s: %s: %s", c->path, what, sqlite3_errmsg(c->db));
}

static int step_done(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err);
static int step_row(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err);

/* The statement id, reset and with its bindings cleared. */
static int stmt(struct catalog *c, enum stmt_id id, sqlite3_stmt **ret, struct cfs_err *err)
{
	return cat_prepare(c, &c->stmt[id], stmt_sql[id], ret, err);
}

/* Step a statement that returns no row (or whose row is not wanted). */
static int step_done(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
		sqlite3_reset(s);
		return 0;
	}
	rc = db_err(c, rc, "write failed", err);
	sqlite3_reset(s);
	return rc;
}

/* Step for one row: 0 with a row, -ENOENT without. */
static int step_row(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return -ENOENT;
	return db_err(c, rc, "query failed", err);
}

/*
 * Every row statement s yields, each turned into an element of size bytes by fn, into a
 * malloc'd array *ret the caller frees. s is reset in any case.
 */
static int collect(struct catalog *c, sqlite3_stmt *s, size_t size,
                   void (*fn)(sqlite3_stmt *s, void *dst), void **ret, size_t *ret_n,
                   struct cfs_err *err)
{
	uint8_t *v = NULL;
	size_t n = 0, cap = 0;
	int r;

	while ((r = step_row(c, s, err)) == 0) {
		if (n == cap) {
			void *nv;

			cap = cap ? 2 * cap : 16;
			nv = cap <= SIZE_MAX / size ? realloc(v, cap * size) : NULL;
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		fn(s, v + n++ * size);
	}
	sqlite3_reset(s);
	if (r != -ENOENT) {
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Run statement id, with ?1 bound to *arg when arg is not NULL, for one integer. */
static int query_int(struct catalog *c, enum stmt_id id, const int64_t *arg, int64_t *ret,
                     struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, id, &s, err);

	if (r)
		return r;
	if (arg)
		sqlite3_bind_int64(s, 1, *arg);
	r = step_row(c, s, err);
	if (r == 0)
		*ret = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return r;
}

/* Run statement id, which returns no row, with ?1 bound to a. */
static int exec_int1(struct catalog *c, enum stmt_id id, int64_t a, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, id, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, a);
	return step_done(c, s, err);
}

/* Run statement id, which returns no row, with ?1 and ?2 bound to a and b. */
static int exec_int2(struct catalog *c, enum stmt_id id, int64_t a, int64_t b, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, id, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	return step_done(c, s, err);
}

/* The bytes of the -shm file a writer locks: SQLite's WAL_WRITE_LOCK, then the
 * checkpointer's and recovery's. */
#define SHM_WRITE_LOCK   120
#define SHM_WRITE_LOCK_N 3

/* SQLite's busy handler: its own backoff, for BUSY_TIMEOUT_MS in all, and after a second
 * one line saying who holds the lock, so a wait behind another process is never silent. */
static int busy_wait(void *ctx, int count)
{
	static const int delay_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
	struct catalog *c = ctx;
	struct timespec now, pause;
	int64_t waited;
	int d = count < 12 ? delay_ms[count] : 100;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (count == 0) {
		c->busy_since = now;
		c->busy_said = false;
	}
	waited = (int64_t)(now.tv_sec - c->busy_since.tv_sec) * 1000 +
	         (now.tv_nsec - c->busy_since.tv_nsec) / 1000000;
	if (waited >= BUSY_TIMEOUT_MS)
		return 0;
	if (c->notify && !c->busy_said && waited >= LOCKWAIT_REPORT_MS) {
		char what[4200], who[768] = "", shm[4200];

		c->busy_said = true;
		snprintf(shm, sizeof(shm), "%s-shm", c->path);
		lockwait_holders(-1, shm, SHM_WRITE_LOCK, SHM_WRITE_LOCK_N, false, who,
		                 sizeof(who));
		if (!who[0])
			lockwait_holders(-1, c->path, 0, 0, true, who, sizeof(who));
		snprintf(what, sizeof(what), "the catalog's write lock (%s)", c->path);
		lockwait_tell(c->notify, what, who);
	}
	pause = (struct timespec){d / 1000, (long)(d % 1000) * 1000000};
	nanosleep(&pause, NULL);
	return 1;
}

static int exec(struct catalog *c, const char *sql, struct cfs_err *err)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : db_err(c, rc, sql, err);
}

/* ---- for catalog_tree.c (catalog_int.h) ---- */

sqlite3 *cat_db(struct catalog *c)
{
	return c->db;
}

const char *cat_path(const struct catalog *c)
{
	return c->path;
}

int cat_store_fd(const struct catalog *c)
{
	return c->store_fd;
}

struct cattree *cat_tree(struct catalog *c)
{
	return c->tree;
}

int cat_prepare(struct catalog *c, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **ret,
                struct cfs_err *err)
{
	int rc;

	*ret = NULL;
	if (!*slot) {
		rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
		if (rc != SQLITE_OK)
			return db_err(c, rc, "cannot prepare a query", err);
	}
	sqlite3_reset(*slot);
	sqlite3_clear_bindings(*slot);
	*ret = *slot;
	return 0;
}

int cat_step_done(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err)
{
	return step_done(c, s, err);
}

int cat_step_row(struct catalog *c, sqlite3_stmt *s, struct cfs_err *err)
{
	return step_row(c, s, err);
}

int cat_db_err(struct catalog *c, int rc, const char *what, struct cfs_err *err)
{
	return db_err(c, rc, what, err);
}

int cat_exec(struct catalog *c, const char *sql, struct cfs_err *err)
{
	return exec(c, sql, err);
}

/*
 * An existing catalog must be there and hold tables before anything writes to it: SQLite
 * would make an empty database of a missing or empty file, and an empty catalog in front
 * of a store's objects makes every one of them look unreferenced (gc.c, verify.c).
 */
static int check_there(struct catalog *c, int rc, struct cfs_err *err)
{
	sqlite3_stmt *s = NULL;
	struct stat sb;
	int r;

	if (rc != SQLITE_OK && stat(c->path, &sb) < 0 && errno == ENOENT)
		return err_set(err, -EUCLEAN,
		               "%s: the catalog is missing: restore it from a backup (condafs "
		               "makes a catalog only with a new store)",
		               c->path);
	if (rc != SQLITE_OK)
		return db_err(c, rc, "cannot open the catalog", err);
	rc = sqlite3_prepare_v2(c->db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW)
		r = db_err(c, rc, "cannot read the catalog", err);
	else if (sqlite3_column_int64(s, 0) == 0)
		r = err_set(err, -EUCLEAN,
		            "%s: the catalog is empty: restore it from a backup (condafs makes a "
		            "catalog only with a new store)",
		            c->path);
	else
		r = 0;
	sqlite3_finalize(s);
	return r;
}

/* The version in column 0 of s, 0 for anything but a small decimal number. */
static int version_of(sqlite3_stmt *s)
{
	const char *v = (const char *)sqlite3_column_text(s, 0);
	int n = 0;

	if (!v || !*v)
		return 0;
	for (; *v; v++) {
		if (*v < '0' || *v > '9' || n > 1000)
			return 0;
		n = n * 10 + (*v - '0');
	}
	return n;
}

/* A catalog of an older version given the column by hand (a test's) is upgraded too. */
static bool has_column(struct catalog *c, const char *table, const char *column)
{
	sqlite3_stmt *s = NULL;
	bool has = false;

	if (sqlite3_prepare_v2(c->db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &s,
	                       NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, column, -1, SQLITE_STATIC);
		has = sqlite3_step(s) == SQLITE_ROW;
	}
	sqlite3_finalize(s);
	return has;
}

/* Inside the write transaction: the schema made or brought to CATALOG_VERSION. */
static int upgrade(struct catalog *c, struct cfs_err *err)
{
	sqlite3_stmt *s = NULL;
	char sql[128];
	int r = 0;

	/* Read again under the write lock: another writer may have upgraded it since. A
	 * catalog without its meta table is one being made. */
	if (sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key = 'catalog_version'", -1,
	                       &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		c->version = version_of(s);
	else
		c->version = CATALOG_VERSION;
	sqlite3_finalize(s);
	if (c->version < CATALOG_VERSION_UPGRADABLE || c->version > CATALOG_VERSION)
		return err_set(err, -EPROTO,
		               "%s: catalog version %d is not one this condafs knows (%d)", c->path,
		               c->version, CATALOG_VERSION);
	/* The schema's index on objects.owner needs the column first. */
	if (c->version < 4)
		r = exec(c,
		         "ALTER TABLE objects ADD COLUMN owner INTEGER;"
		         "ALTER TABLE groups ADD COLUMN nlink INTEGER NOT NULL DEFAULT 0",
		         err);
	/* The schema's indexes on packages.archive need the column first. */
	if (!r && c->version < 6 && !has_column(c, "packages", "archive"))
		r = exec(c, "ALTER TABLE packages ADD COLUMN archive BLOB", err);
	if (!r && c->version < 5)
		r = exec(c,
		         "ALTER TABLE envs ADD COLUMN nodes INTEGER NOT NULL DEFAULT 0;"
		         "ALTER TABLE envs ADD COLUMN tree BLOB;"
		         "ALTER TABLE objects ADD COLUMN esum INTEGER NOT NULL DEFAULT 0;"
		         "ALTER TABLE objects ADD COLUMN esq INTEGER NOT NULL DEFAULT 0;"
		         "ALTER TABLE groups ADD COLUMN refs INTEGER NOT NULL DEFAULT 0",
		         err);
	if (!r)
		r = exec(c, schema, err);
	/* Indexes of older layouts, dropped by version 3 and since (not versioned). */
	if (!r)
		r = exec(c,
		         "DROP INDEX IF EXISTS nodes_env; DROP INDEX IF EXISTS objects_pack;"
		         "DROP INDEX IF EXISTS objects_unused;",
		         err);
	/* C7 and C8 for every object and group. */
	if (!r && c->version < 4)
		r = exec(c,
		         "WITH b(obj, first, last) AS MATERIALIZED (SELECT id, (SELECT min(n.id)"
		         " FROM nodes n WHERE n.obj = objects.id), (SELECT max(n.id) FROM nodes n"
		         " WHERE n.obj = objects.id) FROM objects), " ENDS_ENVS
		         " UPDATE objects SET owner = CASE WHEN w.first = w.last THEN w.first END"
		         " FROM w WHERE objects.id = w.obj;"
		         "UPDATE groups SET nlink = (SELECT count(*) FROM nodes n WHERE n.grp ="
		         " groups.id AND NOT " N_REMOVED ")",
		         err);
	/* C7's sums and C8's refs from the nodes (by nodes_obj and nodes_grp), then the trees
	 * from them (node ids kept), then no more nodes. */
	if (!r && c->version < 5)
		r = exec(c,
		         "UPDATE objects SET esum = coalesce((SELECT sum(n.env) FROM nodes n"
		         " WHERE n.obj = objects.id), 0), esq = coalesce((SELECT sum(n.env * n.env)"
		         " FROM nodes n WHERE n.obj = objects.id), 0);"
		         "UPDATE groups SET refs = (SELECT count(*) FROM nodes n"
		         " WHERE n.grp = groups.id)",
		         err);
	if (!r && c->version < 5)
		r = cattree_upgrade(c, err);
	if (!r && c->version < 5)
		r = exec(c, "DROP TABLE nodes", err);
	/* The trees table's objects into each environment's tree image, then no more table. */
	if (!r && c->version >= 5 && c->version < 7)
		r = cattree_upgrade_v6(c, err);
	if (!r && c->version >= 5 && c->version < 7)
		r = exec(c, "DROP TABLE trees", err);
	if (r)
		return r;
	snprintf(sql, sizeof(sql),
	         "INSERT INTO meta(key, value) VALUES ('catalog_version', '%d')"
	         " ON CONFLICT DO UPDATE SET value = excluded.value",
	         CATALOG_VERSION);
	r = exec(c, sql, err);
	if (!r)
		c->version = CATALOG_VERSION;
	return r;
}

/* create: make the database (a new store); write: upgrade an older schema. */
static int open_catalog(const char *path, int store_fd, bool create, bool write,
                        const struct lockwait *notify, struct catalog **ret, struct cfs_err *err)
{
	struct catalog *c = calloc(1, sizeof(*c));
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (!c || !(c->path = strdup(path)) || cattree_new(&c->tree)) {
		if (c)
			free(c->path);
		free(c);
		return -ENOMEM;
	}
	c->notify = notify;
	c->store_fd = store_fd;
	rc = sqlite3_open_v2(path, &c->db, flags, NULL);
	if (c->db)
		sqlite3_busy_handler(c->db, busy_wait, c);
	if (!create)
		r = check_there(c, rc, err);
	else
		r = rc == SQLITE_OK ? 0 : db_err(c, rc, "cannot create the catalog", err);
	if (r)
		goto fail;
	/* Two processes opening a new catalog race to switch it to WAL; SQLite answers busy
	 * at once there instead of waiting, so wait here. */
	for (int tries = 0;; tries++) {
		r = exec(c, "PRAGMA journal_mode=WAL", err);
		if (r != -EBUSY || tries * 10 >= BUSY_TIMEOUT_MS)
			break;
		usleep(10000);
	}
	if (!r)
		r = exec(c, "PRAGMA synchronous=FULL", err);
	if (r)
		goto fail;
	rc = sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key = 'catalog_version'", -1,
	                        &s, NULL);
	/* Only a new store's catalog may lack its version: it is being made. */
	if (!create && (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW)) {
		r = err_set(err, -EPROTO, "%s: not a condafs catalog", path);
		goto fail;
	}
	c->version = create ? CATALOG_VERSION : version_of(s);
	/* A writer upgrades an older version below. */
	if (c->version < CATALOG_VERSION_UPGRADABLE || c->version > CATALOG_VERSION) {
		r = err_set(err, -EPROTO,
		            "%s: catalog version %s is not one this condafs knows (%d)", path,
		            sqlite3_column_text(s, 0), CATALOG_VERSION);
		goto fail;
	}
	if (!create && !write && c->version < CATALOG_VERSION) {
		r = err_set(err, -EPROTO,
		            "%s: catalog version %d is older than this condafs reads (%d): any "
		            "writing command upgrades it (condafs verify, gc, ingest)",
		            path, c->version, CATALOG_VERSION);
		goto fail;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (create || write) {
		r = exec(c, "BEGIN IMMEDIATE", err);
		if (r)
			goto fail;
		r = upgrade(c, err);
		if (r) {
			exec(c, "ROLLBACK", NULL);
			goto fail;
		}
		r = exec(c, "COMMIT", err);
		if (r)
			goto fail;
	}
	if (create) {
		/* Made by another creator meanwhile, perhaps of another version. */
		rc = sqlite3_prepare_v2(c->db,
		                        "SELECT value FROM meta WHERE key = 'catalog_version'", -1,
		                        &s, NULL);
		if (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW ||
		    version_of(s) != CATALOG_VERSION) {
			r = err_set(err, -EPROTO, "%s: not a condafs catalog of version %d", path,
			            CATALOG_VERSION);
			goto fail;
		}
	}
	sqlite3_finalize(s);
	*ret = c;
	return 0;
fail:
	sqlite3_finalize(s);
	catalog_close(c);
	return r;
}

int catalog_create(const char *path, int store_fd, const struct lockwait *notify,
                   struct catalog **ret, struct cfs_err *err)
{
	return open_catalog(path, store_fd, true, true, notify, ret, err);
}

int catalog_open(const char *path, int store_fd, bool write, const struct lockwait *notify,
                 struct catalog **ret, struct cfs_err *err)
{
	return open_catalog(path, store_fd, false, write, notify, ret, err);
}

void catalog_close(struct catalog *c)
{
	if (!c)
		return;
	cattree_free(c->tree);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_close(c->db);
	free(c->path);
	free(c);
}

int catalog_begin(struct catalog *c, bool write, struct cfs_err *err)
{
	return exec(c, write ? "BEGIN IMMEDIATE" : "BEGIN", err);
}

int catalog_commit(struct catalog *c, struct cfs_err *err)
{
	return exec(c, "COMMIT", err);
}

void catalog_rollback(struct catalog *c)
{
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- objects ---- */

static void object_row(sqlite3_stmt *s, struct catalog_object *ret)
{
	const void *key = sqlite3_column_blob(s, 1);

	ret->id = sqlite3_column_int64(s, 0);
	memset(ret->key.b, 0, 16);
	if (key && sqlite3_column_bytes(s, 1) == 16)
		memcpy(ret->key.b, key, 16);
	ret->size = (uint64_t)sqlite3_column_int64(s, 2);
	ret->stored = (uint64_t)sqlite3_column_int64(s, 3);
	ret->refs = sqlite3_column_int64(s, 4);
	ret->kind = (enum object_kind)sqlite3_column_int(s, 5);
	ret->pack = sqlite3_column_int64(s, 6);
	ret->pack_off = (uint64_t)sqlite3_column_int64(s, 7);
}

int catalog_object_by_key(struct catalog *c, const struct objkey *key, struct catalog_object *ret,
                          struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_OBJ_BY_KEY, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	r = step_row(c, s, err);
	if (r == 0)
		object_row(s, ret);
	/* A statement left on its row keeps a read transaction open outside one of ours: a
	 * later BEGIN IMMEDIATE would then fail at once (busy snapshot) once another
	 * connection has committed (gc's repack looks keys up between its transactions). */
	sqlite3_reset(s);
	return r;
}

int catalog_object_id(struct catalog *c, const struct objkey *key, int64_t *ret_id,
                      struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_OBJ_ID, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	r = step_row(c, s, err);
	if (r == 0)
		*ret_id = sqlite3_column_int64(s, 0);
	sqlite3_reset(s); /* as catalog_object_by_key */
	return r;
}

static void bind_source(sqlite3_stmt *s, int first, const struct catalog_file *f)
{
	sqlite3_bind_int64(s, first, f->dev);
	sqlite3_bind_int64(s, first + 1, f->ino);
	sqlite3_bind_int64(s, first + 2, f->ctime_ns);
}

int catalog_object_for_file(struct catalog *c, const struct objkey *key,
                            const struct catalog_file *f, struct catalog_found *ret,
                            struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_OBJ_BY_FILE, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, key->b, 16, SQLITE_STATIC);
	bind_source(s, 2, f);
	sqlite3_bind_int64(s, 5, f->mode);
	sqlite3_bind_int64(s, 6, f->mtime_ns);
	r = step_row(c, s, err);
	if (r == 0) {
		object_row(s, &ret->o);
		ret->verified = sqlite3_column_int(s, 8) != 0;
		ret->group = sqlite3_column_int64(s, 9);
	}
	return r;
}

int catalog_source_set(struct catalog *c, const struct catalog_file *f, int64_t obj,
                       struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_SOURCE_SET, &s, err);

	if (r)
		return r;
	bind_source(s, 1, f);
	sqlite3_bind_int64(s, 4, obj);
	return step_done(c, s, err);
}

int catalog_sources_forget(struct catalog *c, const int64_t *objs, size_t n, struct cfs_err *err)
{
	/* One pass over the table, whatever n is: an id takes at most 21 bytes. */
	char *list = malloc(n * 21 + 3), *p;
	sqlite3_stmt *s;
	int r;

	if (!list)
		return -ENOMEM;
	p = list;
	*p++ = '[';
	for (size_t i = 0; i < n; i++)
		p += snprintf(p, 22, "%s%lld", i ? "," : "", (long long)objs[i]);
	p[0] = ']';
	p[1] = '\0';
	r = stmt(c, S_SOURCE_FORGET, &s, err);
	if (!r) {
		sqlite3_bind_text(s, 1, list, -1, SQLITE_STATIC);
		r = step_done(c, s, err);
	}
	free(list);
	return r;
}

int catalog_object_by_id(struct catalog *c, int64_t id, struct catalog_object *ret,
                         struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_OBJ_BY_ID, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, id);
	r = step_row(c, s, err);
	if (r == 0)
		object_row(s, ret);
	sqlite3_reset(s);
	return r;
}

int catalog_object_ref(struct catalog *c, const struct catalog_object *o, int64_t refs,
                       int64_t *ret_id, bool *ret_new, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int64_t id;
	bool fresh;
	int r = stmt(c, S_OBJ_REF, &s, err);

	if (r)
		return r;
	sqlite3_bind_blob(s, 1, o->key.b, 16, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (int64_t)o->size);
	sqlite3_bind_int64(s, 3, (int64_t)o->stored);
	sqlite3_bind_int(s, 4, o->kind);
	if (o->pack) {
		sqlite3_bind_int64(s, 5, o->pack);
		sqlite3_bind_int64(s, 6, (int64_t)o->pack_off);
	}
	sqlite3_bind_int64(s, 7, refs);
	/* No row has id 0: after the step it is the new row's id only if one was made. */
	sqlite3_set_last_insert_rowid(c->db, 0);
	r = step_row(c, s, err);
	if (r == -ENOENT)
		r = err_set(err, -EUCLEAN, "%s: object vanished while referenced", c->path);
	id = r ? 0 : sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r)
		return r;
	fresh = sqlite3_last_insert_rowid(c->db) == id;
	/* A new member holds a reference on its pack. */
	if (fresh && o->pack && (r = exec_int2(c, S_OBJ_PACKREF, o->pack, 1, err)))
		return r;
	*ret_id = id;
	*ret_new = fresh;
	return 0;
}

int catalog_object_each(struct catalog *c, int (*fn)(void *ctx, const struct catalog_object *o),
                        void *ctx, struct cfs_err *err)
{
	struct catalog_object o;
	sqlite3_stmt *s;
	int r = stmt(c, S_OBJ_EACH, &s, err);

	while (r == 0 && (r = step_row(c, s, err)) == 0) {
		object_row(s, &o);
		r = fn(ctx, &o);
	}
	sqlite3_reset(s);
	return r == -ENOENT ? 0 : r;
}

int catalog_group(struct catalog *c, int64_t obj, bool obj_is_new, uint32_t mode, int64_t mtime_ns,
                  int64_t *ret_id, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r;

	/* An object this transaction made has no group to find yet. */
	if (!obj_is_new) {
		r = stmt(c, S_GROUP_FIND, &s, err);
		if (r)
			return r;
		sqlite3_bind_int64(s, 1, obj);
		sqlite3_bind_int64(s, 2, mode);
		sqlite3_bind_int64(s, 3, mtime_ns);
		r = step_row(c, s, err);
		if (r == 0)
			*ret_id = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		if (r != -ENOENT)
			return r;
	}
	r = stmt(c, S_GROUP_INSERT, &s, err);
	if (r)
		return r;
	sqlite3_bind_int64(s, 1, obj);
	sqlite3_bind_int64(s, 2, mode);
	sqlite3_bind_int64(s, 3, mtime_ns);
	r = step_done(c, s, err);
	if (r == 0)
		*ret_id = sqlite3_last_insert_rowid(c->db);
	return r;
}

/* ---- repair: reference counts, environments that lost bytes ---- */

int catalog_count_set(struct catalog *c, enum catalog_count which, int64_t id, int64_t value,
                      struct cfs_err *err)
{
	return exec_int2(c, which == CATALOG_NLINK ? S_GROUP_SETNLINK : S_OBJ_SETREFS, id, value,
	                 err);
}

int catalog_env_set_broken(struct catalog *c, int64_t id, bool broken, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_ENV_BROKEN, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int(s, 2, broken);
	return step_done(c, s, err);
}

/* ---- environments ---- */

static void copy_text(char *dst, size_t size, const unsigned char *src, int len)
{
	size_t n = src && len > 0 ? (size_t)len : 0;

	if (n >= size)
		n = size - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Also a collect() row: dst is a struct store_env. */
static void env_row(sqlite3_stmt *s, void *dst)
{
	struct store_env *ret = dst;

	memset(ret, 0, sizeof(*ret));
	ret->id = sqlite3_column_int64(s, 0);
	copy_text(ret->hash, sizeof(ret->hash), sqlite3_column_text(s, 1),
	          sqlite3_column_bytes(s, 1));
	copy_text(ret->platform, sizeof(ret->platform), sqlite3_column_text(s, 2),
	          sqlite3_column_bytes(s, 2));
	copy_text(ret->source_prefix, sizeof(ret->source_prefix), sqlite3_column_blob(s, 3),
	          sqlite3_column_bytes(s, 3));
	ret->created = sqlite3_column_int64(s, 4);
	ret->last_used = sqlite3_column_int64(s, 5);
	ret->root = sqlite3_column_int64(s, 6);
	ret->files = (uint64_t)sqlite3_column_int64(s, 7);
	ret->logical_bytes = (uint64_t)sqlite3_column_int64(s, 8);
	ret->removed = sqlite3_column_int64(s, 9);
	ret->broken = sqlite3_column_int(s, 10) != 0;
}

/* One environment from statement id with ?1 bound to text. */
static int env_by_text(struct catalog *c, enum stmt_id id, const char *text, struct store_env *ret,
                       struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, id, &s, err);

	if (r)
		return r;
	sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
	r = step_row(c, s, err);
	if (r == 0)
		env_row(s, ret);
	sqlite3_reset(s);
	return r;
}

int catalog_env_by_hash(struct catalog *c, const char *hash, struct store_env *ret,
                        struct cfs_err *err)
{
	return env_by_text(c, S_ENV_BY_HASH, hash, ret, err);
}

int catalog_env_by_prefix(struct catalog *c, const char *prefix, struct store_env *ret,
                          struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_ENV_BY_PREFIX, &s, err);

	if (r)
		return r;
	sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
	r = step_row(c, s, err);
	if (r == 0) {
		env_row(s, ret);
		if (step_row(c, s, err) == 0)
			r = -EINVAL;
	}
	sqlite3_reset(s);
	return r;
}

/* Every environment a prepared statement yields; *ret malloc'd. */
static int env_rows(struct catalog *c, sqlite3_stmt *s, struct store_env **ret, size_t *ret_n,
                    struct cfs_err *err)
{
	void *v;
	int r = collect(c, s, sizeof(**ret), env_row, &v, ret_n, err);

	if (!r)
		*ret = v;
	return r;
}

int catalog_env_list(struct catalog *c, enum catalog_envs which, struct store_env **ret,
                     size_t *ret_n, struct cfs_err *err)
{
	static const enum stmt_id ids[] = {
	        [CATALOG_ENVS_LIVE] = S_ENV_LIST,
	        [CATALOG_ENVS_ALL] = S_ENV_LIST_ALL,
	        [CATALOG_ENVS_REMOVED] = S_ENV_REMOVED,
	};
	sqlite3_stmt *s;
	int r = stmt(c, ids[which], &s, err);

	return r ? r : env_rows(c, s, ret, ret_n, err);
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

int catalog_env_insert(struct catalog *c, const struct store_env *env, const struct pkgset *set,
                       const struct catalog_blob *records, int64_t *ret_id, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int64_t id;
	int r = stmt(c, S_ENV_INSERT, &s, err);

	if (r)
		return r;
	sqlite3_bind_text(s, 1, env->hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, env->platform, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, env->source_prefix, (int)strlen(env->source_prefix), SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, env->created);
	sqlite3_bind_int64(s, 5, env->last_used);
	sqlite3_bind_int64(s, 6, env->root);
	sqlite3_bind_int64(s, 7, (int64_t)env->files);
	sqlite3_bind_int64(s, 8, (int64_t)env->logical_bytes);
	r = step_done(c, s, err);
	if (r)
		return r;
	id = sqlite3_last_insert_rowid(c->db);
	for (size_t i = 0; i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);

		r = stmt(c, S_PKG_INSERT, &s, err);
		if (r)
			return r;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int(s, 2, p->kind);
		sqlite3_bind_text(s, 3, p->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, p->version, -1, SQLITE_STATIC);
		bind_text_or_null(s, 5, p->build);
		bind_text_or_null(s, 6, p->channel);
		bind_text_or_null(s, 7, p->subdir);
		bind_text_or_null(s, 8, p->md5);
		bind_text_or_null(s, 9, p->sha256);
		if (records && records[i].data)
			sqlite3_bind_blob(s, 10, records[i].data, (int)records[i].len,
			                  SQLITE_STATIC);
		else
			sqlite3_bind_null(s, 10);
		r = step_done(c, s, err);
		if (r)
			return r;
	}
	*ret_id = id;
	return 0;
}

int catalog_package_record(struct catalog *c, const char *sha256, const char *md5, uint8_t **ret,
                           size_t *ret_len, int64_t *ret_root, struct cfs_err *err)
{
	sqlite3_stmt *s;
	const void *blob;
	int n, r = stmt(c, sha256 ? S_PKG_BY_SHA256 : S_PKG_BY_MD5, &s, err);

	if (r)
		return r;
	sqlite3_bind_text(s, 1, sha256 ? sha256 : md5, -1, SQLITE_STATIC);
	r = step_row(c, s, err);
	if (r) {
		sqlite3_reset(s);
		return r;
	}
	blob = sqlite3_column_blob(s, 0);
	n = sqlite3_column_bytes(s, 0);
	*ret = malloc(n > 0 ? (size_t)n : 1);
	if (!*ret) {
		sqlite3_reset(s);
		return err_set(err, -ENOMEM, "out of memory");
	}
	if (n > 0)
		memcpy(*ret, blob, (size_t)n);
	*ret_len = (size_t)(n > 0 ? n : 0);
	*ret_root = sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	return 0;
}

int catalog_package_records(struct catalog *c,
                            int (*fn)(void *ctx, int64_t row, const char *env, const char *dist,
                                      const uint8_t *data, size_t len),
                            void *ctx, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int rc = SQLITE_DONE, r = stmt(c, S_PKG_RECORDS, &s, err);

	if (r)
		return r;
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const void *blob = sqlite3_column_blob(s, 3);
		int n = sqlite3_column_bytes(s, 3);

		r = fn(ctx, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
		       (const char *)sqlite3_column_text(s, 2), blob, n > 0 ? (size_t)n : 0);
	}
	if (!r && rc != SQLITE_DONE)
		r = db_err(c, rc, "query failed", err);
	sqlite3_reset(s);
	return r;
}

int catalog_package_forget(struct catalog *c, int64_t row, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_PKG_FORGET, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, row);
	return step_done(c, s, err);
}

int catalog_env_hide(struct catalog *c, int64_t id, int64_t t, struct cfs_err *err)
{
	int r = cattree_env_unlink(c, id, err);

	return r ? r : exec_int2(c, S_ENV_HIDE, id, t, err);
}

int catalog_env_retag(struct catalog *c, int64_t from, int64_t to, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, to ? S_TAG_MOVE_ENV : S_ENV_DEL_TAGS, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, from);
	if (to)
		sqlite3_bind_int64(s, 2, to);
	return step_done(c, s, err);
}

int catalog_env_delete(struct catalog *c, int64_t id, struct cfs_err *err)
{
	static const enum stmt_id steps[] = {S_ENV_DEL_PKGS, S_ENV_DEL_TAGS, S_ENV_DEL};
	int r = cattree_env_drop(c, id, err);

	for (size_t i = 0; !r && i < sizeof(steps) / sizeof(steps[0]); i++) {
		sqlite3_stmt *s;

		r = stmt(c, steps[i], &s, err);
		if (!r) {
			sqlite3_bind_int64(s, 1, id);
			r = step_done(c, s, err);
		}
	}
	return r;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

int catalog_env_packages(struct catalog *c, int64_t id, const char *platform, struct pkgset **ret,
                         struct cfs_err *err)
{
	struct pkgset *set = NULL;
	sqlite3_stmt *s;
	int r = stmt(c, S_PKG_LIST, &s, err);

	if (r)
		return r;
	r = pkgset_new(&set);
	if (r)
		return r;
	sqlite3_bind_int64(s, 1, id);
	while ((r = step_row(c, s, err)) == 0) {
		struct pkg p = {
		        .kind = (enum pkg_kind)sqlite3_column_int(s, 0),
		        .name = col_text(s, 1),
		        .version = col_text(s, 2),
		        .build = col_text(s, 3),
		        .channel = col_text(s, 4),
		        .subdir = col_text(s, 5),
		        .md5 = col_text(s, 6),
		        .sha256 = col_text(s, 7),
		};
		r = pkgset_add(set, &p, c->path, err);
		if (r)
			break;
	}
	sqlite3_reset(s);
	if (r == -ENOENT)
		r = pkgset_finish(set, platform, c->path, err);
	if (r) {
		pkgset_free(set);
		return r;
	}
	*ret = set;
	return 0;
}

int catalog_env_unique_bytes(struct catalog *c, int64_t id, uint64_t *ret, struct cfs_err *err)
{
	int64_t v;
	int r = query_int(c, S_ENV_UNIQUE, &id, &v, err);

	if (r == 0)
		*ret = (uint64_t)v;
	return r;
}

/* ---- nodes ---- */

int catalog_node_max_id(struct catalog *c, int64_t *ret, struct cfs_err *err)
{
	return query_int(c, S_NODE_MAX, NULL, ret, err);
}

int catalog_node_reserve(struct catalog *c, int64_t last, struct cfs_err *err)
{
	return exec_int1(c, S_NODE_LAST, last, err);
}

int catalog_names_nothing(struct catalog *c, bool *ret, struct cfs_err *err)
{
	int64_t v;
	int r = query_int(c, S_NAMES_NOTHING, NULL, &v, err);

	if (!r)
		*ret = v != 0;
	return r;
}

int catalog_mark_published(struct catalog *c, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_MARK_PUBLISHED, &s, err);

	return r ? r : step_done(c, s, err);
}

int catalog_group_get(struct catalog *c, int64_t group, struct store_node *ret, uint32_t *ret_nlink,
                      struct cfs_err *err)
{
	int64_t nlink;
	sqlite3_stmt *s;
	int r;

	if (!ret) {
		r = query_int(c, S_GROUP_COUNT, &group, &nlink, err);
		if (r == 0)
			*ret_nlink = (uint32_t)nlink;
		return r;
	}
	/* Its files share content, mode and mtime, and none is relocated: no file of any
	 * environment is needed to serve the group. */
	r = stmt(c, S_GROUP_ATTR, &s, err);
	if (r)
		return r;
	sqlite3_bind_int64(s, 1, group);
	r = step_row(c, s, err);
	if (r == 0) {
		memset(ret, 0, sizeof(*ret));
		ret->type = NODE_FILE;
		ret->group = group;
		ret->mode = (uint32_t)sqlite3_column_int64(s, 0);
		ret->mtime_ns = sqlite3_column_int64(s, 1);
		ret->size_neutral = (uint64_t)sqlite3_column_int64(s, 2);
		*ret_nlink = (uint32_t)sqlite3_column_int64(s, 3);
	}
	sqlite3_reset(s);
	return r;
}

int catalog_data_version(struct catalog *c, uint64_t *ret, struct cfs_err *err)
{
	int64_t v;
	int r = query_int(c, S_DATA_VERSION, NULL, &v, err);

	if (r == 0)
		*ret = (uint64_t)v;
	return r;
}

int catalog_tag_set(struct catalog *c, const char *name, int64_t env, int64_t t,
                    struct cfs_err *err)
{
	sqlite3_stmt *s;
	int64_t id;
	int r = query_int(c, S_TAG_NEXT, NULL, &id, err);

	if (!r)
		r = stmt(c, S_TAG_SET, &s, err);
	if (r)
		return r;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, env);
	sqlite3_bind_int64(s, 3, id);
	sqlite3_bind_int64(s, 4, t);
	return step_done(c, s, err);
}

int catalog_tag_remove(struct catalog *c, const char *name, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_TAG_DEL, &s, err);

	if (r)
		return r;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	r = step_done(c, s, err);
	return r ? r : sqlite3_changes(c->db) ? 0 : -ENOENT;
}

static void tag_row(sqlite3_stmt *s, void *dst)
{
	struct store_tag *v = dst;

	copy_text(v->name, sizeof(v->name), sqlite3_column_text(s, 0), sqlite3_column_bytes(s, 0));
	copy_text(v->hash, sizeof(v->hash), sqlite3_column_text(s, 1), sqlite3_column_bytes(s, 1));
	v->id = sqlite3_column_int64(s, 2);
	v->set_at = sqlite3_column_int64(s, 3);
}

int catalog_tag_list(struct catalog *c, const char *env_hash, struct store_tag **ret, size_t *ret_n,
                     struct cfs_err *err)
{
	sqlite3_stmt *s;
	void *v;
	int r = stmt(c, env_hash ? S_TAG_LIST_ENV : S_TAG_LIST, &s, err);

	if (r)
		return r;
	if (env_hash)
		sqlite3_bind_text(s, 1, env_hash, -1, SQLITE_STATIC);
	r = collect(c, s, sizeof(**ret), tag_row, &v, ret_n, err);
	if (!r)
		*ret = v;
	return r;
}

int catalog_env_by_tag(struct catalog *c, const char *name, struct store_env *ret,
                       struct cfs_err *err)
{
	return env_by_text(c, S_TAG_ENV, name, ret, err);
}

int catalog_env_touch(struct catalog *c, int64_t id, int64_t t, struct cfs_err *err)
{
	return exec_int2(c, S_ENV_TOUCH, id, t, err);
}

int catalog_gc_envs(struct catalog *c, int64_t before, struct store_env **ret, size_t *ret_n,
                    struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_GC_ENVS, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, before);
	return env_rows(c, s, ret, ret_n, err);
}

int catalog_unused_object(struct catalog *c, struct catalog_object *ret, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_GC_UNUSED, &s, err);

	if (r)
		return r;
	r = step_row(c, s, err);
	if (r == 0)
		object_row(s, ret);
	sqlite3_reset(s);
	return r;
}

int catalog_object_delete(struct catalog *c, const struct catalog_object *o, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_OBJ_DEL, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, o->id);
	r = step_done(c, s, err);
	if (r || !o->pack)
		return r;
	/* A member held a reference on its pack. */
	return exec_int2(c, S_OBJ_PACKREF, o->pack, -1, err);
}

int catalog_prune(struct catalog *c, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_SOURCES_PRUNE, &s, err);

	return r ? r : step_done(c, s, err);
}

static void repack_row(sqlite3_stmt *s, void *dst)
{
	struct catalog_member *m = dst;
	const void *k = sqlite3_column_blob(s, 1), *pk = sqlite3_column_blob(s, 5);

	memset(m, 0, sizeof(*m));
	m->id = sqlite3_column_int64(s, 0);
	if (k && sqlite3_column_bytes(s, 1) == 16)
		memcpy(m->key.b, k, 16);
	m->size = (uint64_t)sqlite3_column_int64(s, 2);
	m->pack_off = (uint64_t)sqlite3_column_int64(s, 3);
	m->pack = sqlite3_column_int64(s, 4);
	if (pk && sqlite3_column_bytes(s, 5) == 16)
		memcpy(m->pack_key.b, pk, 16);
	m->pack_size = (uint64_t)sqlite3_column_int64(s, 6);
}

int catalog_repack_members(struct catalog *c, bool all, struct catalog_member **ret, size_t *ret_n,
                           struct cfs_err *err)
{
	sqlite3_stmt *s;
	void *v = NULL;
	int r = stmt(c, S_REPACK_PLAN, &s, err);

	if (r)
		return r;
	sqlite3_bind_int(s, 1, all);
	r = collect(c, s, sizeof(**ret), repack_row, &v, ret_n, err);
	if (!r)
		*ret = v;
	return r;
}

int catalog_member_move(struct catalog *c, const struct catalog_member *m, int64_t pack,
                        uint64_t pack_off, uint64_t stored, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_MEMBER_MOVE, &s, err);

	if (r)
		return r;
	sqlite3_bind_int64(s, 1, m->id);
	sqlite3_bind_int64(s, 2, m->pack);
	sqlite3_bind_int64(s, 3, (int64_t)m->pack_off);
	if (pack) {
		sqlite3_bind_int64(s, 4, pack);
		sqlite3_bind_int64(s, 5, (int64_t)pack_off);
	}
	sqlite3_bind_int64(s, 6, (int64_t)stored);
	r = step_done(c, s, err);
	if (!r && sqlite3_changes(c->db) != 1)
		r = err_set(err, -EUCLEAN, "%s: object %lld is no longer a member of pack %lld",
		            c->path, (long long)m->id, (long long)m->pack);
	/* C2: a pack's references are its members. */
	if (!r)
		r = exec_int2(c, S_OBJ_PACKREF, m->pack, -1, err);
	if (!r && pack)
		r = exec_int2(c, S_OBJ_PACKREF, pack, 1, err);
	return r;
}

int catalog_pack_drop(struct catalog *c, int64_t id, struct cfs_err *err)
{
	int r = exec_int1(c, S_PACK_DROP, id, err);

	if (!r && sqlite3_changes(c->db) != 1)
		r = err_set(err, -EUCLEAN, "%s: pack %lld still has members", c->path,
		            (long long)id);
	return r;
}

int catalog_snapshot_renew(struct catalog *c, struct cfs_err *err)
{
	int r = 0;

	/* A write transaction sees every commit already: it holds the write lock. */
	if (sqlite3_txn_state(c->db, NULL) == SQLITE_TXN_READ) {
		r = catalog_commit(c, err);
		if (!r)
			r = catalog_begin(c, false, err);
	}
	return r;
}

int catalog_stats(struct catalog *c, struct store_stats *ret, struct cfs_err *err)
{
	sqlite3_stmt *s;
	int r = stmt(c, S_STATS_ENVS, &s, err);

	if (r)
		return r;
	r = step_row(c, s, err);
	if (r)
		return r;
	ret->envs = (uint64_t)sqlite3_column_int64(s, 0);
	ret->logical_bytes = (uint64_t)sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	r = stmt(c, S_STATS_OBJS, &s, err);
	if (r)
		return r;
	r = step_row(c, s, err);
	if (r)
		return r;
	ret->objects = (uint64_t)sqlite3_column_int64(s, 0);
	ret->content_bytes = (uint64_t)sqlite3_column_int64(s, 1);
	ret->stored_bytes = (uint64_t)sqlite3_column_int64(s, 2);
	sqlite3_reset(s);
	return 0;
}
