/* SPDX-License-Identifier: MIT */
/*
 * The catalog: the SQLite database that says which environments exist, their trees and
 * packages, and which objects are stored. All SQL of the store lives in catalog.c and, for
 * environments' trees, catalog_tree.c.
 */
#ifndef CONDAFS_CATALOG_H
#define CONDAFS_CATALOG_H

#include "condafs/store.h"
#include "lockwait.h"
#include "object.h"

#include <stdbool.h>
#include <stdint.h>

struct catalog;

/* Makes the database at path for a new store (or opens the one a creator killed before it
 * wrote FORMAT left): WAL, a busy handler. A busy wait of a second or more is said to
 * notify (lockwait.h; NULL: silent), which must outlive the catalog. store_fd is the
 * store's directory, whose tree images the catalog reads and writes (catalog_tree.c); it
 * stays the caller's and must outlive the catalog too. */
int catalog_create(const char *path, int store_fd, const struct lockwait *notify,
                   struct catalog **ret, struct cfs_err *err);
/* Opens an existing catalog, never making one: -EUCLEAN naming the file if it is missing or
 * empty, -EPROTO if it is not a catalog of a version this code reads. write: upgrade an
 * older version for writing. notify and store_fd: as for catalog_create. */
int catalog_open(const char *path, int store_fd, bool write, const struct lockwait *notify,
                 struct catalog **ret, struct cfs_err *err);
/* *ret: the catalog has no object row, and is not that of a store whose environments were
 * all collected (no node left, and an ingest committed once): a new store's, one put in
 * place of a store's, or one that lost its rows. */
int catalog_names_nothing(struct catalog *c, bool *ret, struct cfs_err *err);
/* Record, before the first image of a store is published, that images may be there which
 * no row names yet (an ingest killed before its commit): catalog_names_nothing is then
 * false, and those images are orphans that gc and repair may remove. Commits at once. */
int catalog_mark_published(struct catalog *c, struct cfs_err *err);
/* A stored directory object naming a content that has no row: *ret_dir, *ret_obj; or an
 * environment's tree image without its row: *ret_dir zero, *ret_obj the image's key, and
 * ret_env its hash. -ENOENT if none. */
int catalog_dangling(struct catalog *c, struct objkey *ret_dir, struct objkey *ret_obj,
                     char ret_env[33], struct cfs_err *err);
/* The key of environment env's tree image, and whether an objects row has it (C2). */
int catalog_env_image(struct catalog *c, int64_t env, struct objkey *ret, bool *ret_row,
                      struct cfs_err *err);
void catalog_close(struct catalog *c);

/* Transactions. A write transaction takes the write lock at once (BEGIN IMMEDIATE). */
int catalog_begin(struct catalog *c, bool write, struct cfs_err *err);
int catalog_commit(struct catalog *c, struct cfs_err *err);
void catalog_rollback(struct catalog *c);

/* ---- objects ---- */

enum object_kind {
	OBJECT_CONTENT = 0, /* a file's content: its own image, or a member of a pack */
	OBJECT_PACK = 1,    /* an image holding members */
	OBJECT_TREE = 2,    /* an environment's tree image (catalog_tree.c): its own image */
};

/* An object as the catalog has it. */
struct catalog_object {
	int64_t id;
	struct objkey key;
	uint64_t size;
	uint64_t stored; /* image bytes; a member's share of its pack's */
	int64_t refs;    /* files of environments' trees naming a content; members naming a pack */
	enum object_kind kind;
	int64_t pack; /* a member's pack, else 0 */
	uint64_t pack_off;
};

/* -ENOENT when no object has key. */
int catalog_object_by_key(struct catalog *c, const struct objkey *key, struct catalog_object *ret,
                          struct cfs_err *err);
int catalog_object_by_id(struct catalog *c, int64_t id, struct catalog_object *ret,
                         struct cfs_err *err);
/* The id alone of the object with key, read from the key's index (no row is read): -ENOENT
 * when none has it. */
int catalog_object_id(struct catalog *c, const struct objkey *key, int64_t *ret_id,
                      struct cfs_err *err);

/* A file as an ingest read it. (dev, ino, ctime_ns) name it in the sources table (C5):
 * the kernel sets ctime on every change to an inode, and no caller can set it back. */
struct catalog_file {
	int64_t dev, ino, ctime_ns;
	uint32_t mode;
	int64_t mtime_ns;
};
/* What the store has for a file's content. */
struct catalog_found {
	struct catalog_object o;
	bool verified; /* the file's bytes were stored or compared as o's content before */
	int64_t group; /* the group of o with the file's mode and mtime, 0 if none yet */
};
/* The object with key, as catalog_object_by_key, and what it says of file f. */
int catalog_object_for_file(struct catalog *c, const struct objkey *key,
                            const struct catalog_file *f, struct catalog_found *ret,
                            struct cfs_err *err);
/* Record that file f's bytes are the content of obj (C5). */
int catalog_source_set(struct catalog *c, const struct catalog_file *f, int64_t obj,
                       struct cfs_err *err);
/* Forget every file recorded as holding the content of one of objs[0..n): the next
 * ingest compares them. */
int catalog_sources_forget(struct catalog *c, const int64_t *objs, size_t n, struct cfs_err *err);
/* Insert o (id and refs ignored) unless its key is there, then add refs references.
 * *ret_id is its id, *ret_new whether this call inserted it (a new member also takes a
 * reference on its pack). */
int catalog_object_ref(struct catalog *c, const struct catalog_object *o, int64_t refs,
                       int64_t *ret_id, bool *ret_new, struct cfs_err *err);
/* Calls fn for every object, each pack followed by its members in pack order; fn
 * returning non-zero stops the walk with that value. */
int catalog_object_each(struct catalog *c, int (*fn)(void *ctx, const struct catalog_object *o),
                        void *ctx, struct cfs_err *err);
/* Calls fn for every file node, in every environment (live or removed), whose content is
 * one of the n objects ids: with i its index in ids, the environment's id and hash, and
 * the node's id; and, with node 0, for every environment whose tree image is one of them
 * (a tree that does not read has no other users named). One walk of every tree, however
 * many objects are asked for. */
int catalog_objects_users(struct catalog *c, const int64_t *ids, size_t n,
                          int (*fn)(void *ctx, size_t i, int64_t env, const char *hash,
                                    int64_t node),
                          void *ctx, struct cfs_err *err);

/* The counts repair recounts: objects' references (C2), shared files' links (C8). */
enum catalog_count {
	CATALOG_REFS,
	CATALOG_NLINK,
};
/* A count that disagrees with the rows: id, the object's (or the group's, and key its
 * object's); had is the row's count, want the true one. */
struct catalog_refs {
	int64_t id;
	struct objkey key;
	int64_t had, want;
};
/* Every count of that kind which is wrong, by id; *ret is malloc'd, the caller frees it.
 * Call inside a transaction, so that the counts still hold when they are written. */
int catalog_counts_wrong(struct catalog *c, enum catalog_count which, struct catalog_refs **ret,
                         size_t *ret_n, struct cfs_err *err);
int catalog_count_set(struct catalog *c, enum catalog_count which, int64_t id, int64_t value,
                      struct cfs_err *err);

/* The group of files served identically: found or made. obj_is_new: this transaction
 * inserted obj (catalog_object_ref said so), so it has no group yet and none is looked for. */
int catalog_group(struct catalog *c, int64_t obj, bool obj_is_new, uint32_t mode, int64_t mtime_ns,
                  int64_t *ret_id, struct cfs_err *err);

/* ---- environments ---- */

int catalog_env_by_hash(struct catalog *c, const char *hash, struct store_env *ret,
                        struct cfs_err *err);
/* Unique match of a hash prefix: -ENOENT none, -EINVAL ambiguous. */
int catalog_env_by_prefix(struct catalog *c, const char *prefix, struct store_env *ret,
                          struct cfs_err *err);
enum catalog_envs {
	CATALOG_ENVS_LIVE,    /* by hash */
	CATALOG_ENVS_ALL,     /* live and removed, by hash */
	CATALOG_ENVS_REMOVED, /* removed, waiting for gc to reap them */
};
int catalog_env_list(struct catalog *c, enum catalog_envs which, struct store_env **ret,
                     size_t *ret_n, struct cfs_err *err);
/* Bytes held elsewhere, not copied. */
struct catalog_blob {
	const uint8_t *data; /* NULL: none */
	size_t len;
};
/* Insert the environment row and its packages: *ret_id. env->root must be set. records:
 * NULL, or by the set's index each package's archive record (pkgrec.h), data NULL for
 * none. */
int catalog_env_insert(struct catalog *c, const struct store_env *env, const struct pkgset *set,
                       const struct catalog_blob *records, int64_t *ret_id, struct cfs_err *err);
/* C9: the record (pkgrec.h) of the package archive with this sha256 (else this md5) that
 * the newest environment not known broken was installed from; *ret malloc'd, *ret_root
 * that environment's top node. -ENOENT when none was. */
int catalog_package_record(struct catalog *c, const char *sha256, const char *md5, uint8_t **ret,
                           size_t *ret_len, int64_t *ret_root, struct cfs_err *err);
/* Every package archive record (C9): fn(ctx, row, env hash, dist, bytes, length), the
 * bytes valid during the call; fn's nonzero return stops the walk and is returned. */
int catalog_package_records(struct catalog *c,
                            int (*fn)(void *ctx, int64_t row, const char *env, const char *dist,
                                      const uint8_t *data, size_t len),
                            void *ctx, struct cfs_err *err);
/* The record of packages row `row` forgotten: an install fetches its package again. */
int catalog_package_forget(struct catalog *c, int64_t row, struct cfs_err *err);
/* Remove an environment from view at time t (C4): its rows stay. */
int catalog_env_hide(struct catalog *c, int64_t id, int64_t t, struct cfs_err *err);
/* Move the tags of environment from to environment to, or delete them (to 0). */
int catalog_env_retag(struct catalog *c, int64_t from, int64_t to, struct cfs_err *err);
/* Make environment id's tree of the nodes inserted (catalog_tree.c) and add the
 * references its files hold (C2, C7, C8). */
int catalog_env_ref(struct catalog *c, int64_t id, struct cfs_err *err);
/* Delete an environment, its packages and tree, and drop the references they held. */
int catalog_env_delete(struct catalog *c, int64_t id, struct cfs_err *err);
/* Packages of an environment in pkgset form. */
int catalog_env_packages(struct catalog *c, int64_t id, const char *platform, struct pkgset **ret,
                         struct cfs_err *err);
int catalog_env_unique_bytes(struct catalog *c, int64_t id, uint64_t *ret, struct cfs_err *err);
/* Set envs.broken: the environment uses a missing or corrupt object (verify --repair). */
int catalog_env_set_broken(struct catalog *c, int64_t id, bool broken, struct cfs_err *err);

/* ---- nodes ---- */

/* A node as inserted; ids are the final ones, each one more than the last (C3, C6), and
 * nothing is stored until catalog_env_ref makes the tree of them. */
struct catalog_node_row {
	int64_t id, env, parent;
	struct objkey key; /* files: the content's */
	const void *name;
	size_t namelen;
	enum node_type type;
	uint32_t mode;
	int64_t mtime_ns;
	uint64_t size;
	uint32_t inserts;
	int64_t obj; /* 0: none (directories, symlinks) */
	int64_t group;
	int64_t hardlink;
	int64_t first_child;
	uint32_t nchildren;
	const void *target; /* symlinks */
	size_t target_len;
	const void *reloc;
	size_t reloc_len;
};

/* The largest node id in use (0 if none): new ids start above it. */
int catalog_node_max_id(struct catalog *c, int64_t *ret, struct cfs_err *err);
/* Record that ids up to last are taken, so that they are never handed out again. */
int catalog_node_reserve(struct catalog *c, int64_t last, struct cfs_err *err);
int catalog_node_insert(struct catalog *c, const struct catalog_node_row *row, struct cfs_err *err);
int catalog_node_get(struct catalog *c, int64_t id, struct store_node *ret, struct cfs_err *err);
int catalog_node_lookup(struct catalog *c, int64_t dir, const void *name, size_t len,
                        struct store_node *ret, struct cfs_err *err);
/* Calls fn for nodes with ids in [first, end) in id order, until fn returns non-zero. */
int catalog_node_range(struct catalog *c, int64_t first, int64_t end,
                       int (*fn)(void *ctx, const struct store_node *n), void *ctx,
                       struct cfs_err *err);
/* What reading a node needs: its object, the image holding it and where, the length of its
 * relocation record (0: none; catalog_reloc_read reads it) and, for symlinks, the target
 * (valid until the next call on c). */
struct catalog_content {
	struct catalog_object obj; /* obj.id == 0 for none */
	struct objkey image_key;   /* the pack for a member, else obj.key */
	uint64_t image_off;
	size_t reloc_len;
	const uint8_t *target;
	size_t target_len;
};
int catalog_node_content(struct catalog *c, int64_t id, struct catalog_content *ret,
                         struct cfs_err *err);
/* The same for a group (store_group_get's node, which has no id): its object. */
int catalog_group_content(struct catalog *c, int64_t group, struct catalog_content *ret,
                          struct cfs_err *err);
/* Done with what catalog_node_content returned: releases the row, so this handle's read
 * snapshot does not stay pinned (it would miss later commits and hold up checkpoints). */
void catalog_content_done(struct catalog *c);
/*
 * len bytes at off of node's relocation record, read in place from its environment's tree
 * image: a record is never loaded whole, whatever its size, and a read decodes only the
 * frames it touches. -EUCLEAN when the node has no record of that length.
 */
int catalog_reloc_read(struct catalog *c, int64_t node, uint64_t off, size_t len, void *buf,
                       struct cfs_err *err);

/* Calls fn for every node of an environment in id order, with its object key (NULL for
 * none) and link target (pointers valid during the call). */
int catalog_env_tree(struct catalog *c, int64_t env,
                     int (*fn)(void *ctx, const struct store_node *n, const struct objkey *key,
                               const void *target, size_t target_len),
                     void *ctx, struct cfs_err *err);

/* A node as verify checks it: its row as stored, and the rows it names. Pointers are valid
 * during the call. */
struct catalog_link {
	int64_t id, parent;
	const uint8_t *name;
	size_t namelen;
	int type; /* enum node_type, unless damaged */
	int64_t size;
	int64_t obj, group; /* obj: the row obj_key names, -1 for none; group: 0 for none */
	int64_t first_child, nchildren;
	bool has_target;
	bool obj_found; /* a row of id obj exists: */
	int64_t obj_size;
	struct objkey obj_key;
	bool group_found; /* a row of id group exists, naming group_obj */
	int64_t group_obj;
};
/* Calls fn for every node of an environment in id order, until fn returns non-zero;
 * -EUCLEAN, saying what, when its tree does not read (catalog_tree.c T5). */
int catalog_env_links(struct catalog *c, int64_t env,
                      int (*fn)(void *ctx, const struct catalog_link *l), void *ctx,
                      struct cfs_err *err);

/* store_group_get: ret NULL for the count alone. ret is what the group's files share (no
 * node id, environment or name: served without any of them). */
int catalog_group_get(struct catalog *c, int64_t group, struct store_node *ret, uint32_t *ret_nlink,
                      struct cfs_err *err);
/* PRAGMA data_version: changes when another connection commits. */
int catalog_data_version(struct catalog *c, uint64_t *ret, struct cfs_err *err);

/* ---- tags, last use, garbage ---- */

/* Point name at env (set at time t), with a new tag id when it moves. Two statements:
 * call inside a write transaction. */
int catalog_tag_set(struct catalog *c, const char *name, int64_t env, int64_t t,
                    struct cfs_err *err);
/* -ENOENT if there is no such tag. */
int catalog_tag_remove(struct catalog *c, const char *name, struct cfs_err *err);
int catalog_tag_list(struct catalog *c, const char *env_hash, struct store_tag **ret, size_t *ret_n,
                     struct cfs_err *err);
int catalog_env_by_tag(struct catalog *c, const char *name, struct store_env *ret,
                       struct cfs_err *err);
int catalog_env_touch(struct catalog *c, int64_t id, int64_t t, struct cfs_err *err);
/* Untagged environments last used before a time; *ret malloc'd. */
int catalog_gc_envs(struct catalog *c, int64_t before, struct store_env **ret, size_t *ret_n,
                    struct cfs_err *err);
/* One object no row references (members first): -ENOENT when there is none. */
int catalog_unused_object(struct catalog *c, struct catalog_object *ret, struct cfs_err *err);
/* Delete an object's row; a member's pack loses its reference. */
int catalog_object_delete(struct catalog *c, const struct catalog_object *o, struct cfs_err *err);
/* Drop the sources of objects deleted (C5), in the transaction that deleted them. The
 * groups of an environment go with it (catalog_env_delete). */
int catalog_prune(struct catalog *c, struct cfs_err *err);

/* A member of a pack gc may rewrite (repack.c), and the pack it is in now. */
struct catalog_member {
	int64_t id;
	struct objkey key;
	uint64_t size, pack_off;
	int64_t pack;
	struct objkey pack_key;
	uint64_t pack_size; /* the pack's content, dead members included */
};
/* The members of every pack that holds bytes no member names any more (all), or of those
 * where such bytes are at least half the pack: by pack, in pack order. *ret is malloc'd,
 * the caller frees it. */
int catalog_repack_members(struct catalog *c, bool all, struct catalog_member **ret, size_t *ret_n,
                           struct cfs_err *err);
/* Move member m, if it is still where m says, to pack at pack_off (pack 0: an image of its
 * own), with stored as its share; the references of both packs follow (C2). -EUCLEAN if it
 * moved meanwhile. */
int catalog_member_move(struct catalog *c, const struct catalog_member *m, int64_t pack,
                        uint64_t pack_off, uint64_t stored, struct cfs_err *err);
/* Delete a pack's row once no member names it; -EUCLEAN while one does. */
int catalog_pack_drop(struct catalog *c, int64_t id, struct cfs_err *err);
/* End this handle's read transaction, if one is open, and begin another: later commits
 * become visible. A write transaction is left alone (it sees them already). */
int catalog_snapshot_renew(struct catalog *c, struct cfs_err *err);

/* Totals for store_stats. */
int catalog_stats(struct catalog *c, struct store_stats *ret, struct cfs_err *err);

#endif
