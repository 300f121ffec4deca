// SPDX-License-Identifier: MIT
/*
 * Repacking: the members still used of packs that hold unused bytes are copied, in their
 * order, into new packs of at most PACK_TARGET bytes (several sparse packs make one), the
 * member rows move there, and the old images go. Plain gc rewrites packs at least half
 * unused, so a rewrite never copies more than it frees; gc --purge rewrites every pack with
 * an unused byte, so nothing of a removed environment stays in an image.
 *
 * Invariants (with gc.c's G1-G4, object.c's O1-O2 and catalog.c's C2):
 * M1: packs are rewritten only under the store lock held exclusively (G2), as gc deletes:
 *     no ingest is between finding a member and committing a reference to it, and no other
 *     gc or repair runs, so the members the plan read are all the members there are.
 * M2: a new image is durable and in place (syncfs, RENAME_NOREPLACE, syncfs: O1) before
 *     the transaction that names it commits; the member rows move and the old pack rows go
 *     in that one transaction; an old image is unlinked only after it commits (G1). A kill
 *     leaves the old rows (the new images named by no row's image) or the new rows (the old
 *     images named by none): verify passes, and the next gc deletes the leftovers and
 *     repacks again.
 * M3: a member's bytes go into a new image only once they hash to its key: a damaged pack
 *     is never copied into an image whose key would then vouch for wrong bytes. It stays as
 *     it is, for verify to name.
 * M4: a new pack's key is never a key the catalog has (a pack of one member hashes to that
 *     member's own key): such members get images of their own instead.
 * M5: a member keeps its row id, size and key, so nodes, groups and sources do not change;
 *     only where its bytes are does. A reader that found it in the old pack before the
 *     commit and opens the image after the unlink resolves it again (read.c).
 */
#include "repack.h"

#include "err.h"
#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* New content per round (a syncfs pair and one transaction): bounds how much the old and
 * the new images take on disk at once. */
#define REPACK_ROUND (64u << 20)

/* An old pack of the plan: its members are m[first, first + n). */
struct old_pack {
	size_t first, n;
	uint64_t live; /* its members' bytes */
	bool bad;      /* a member did not read back as its key (M3): left alone */
};

/* A new image: the members of the old packs [first, end), laid end to end. */
struct batch {
	size_t first, end;
	struct objkey key;
	uint64_t len, stored;
	bool single; /* each member got an image of its own instead (M4) */
	bool empty;  /* every old pack of it is bad */
	int64_t id;
};

struct repack_plan {
	bool all; /* gc --purge: a pack left unrewritten is a failure */
	struct catalog_member *m;
	size_t nm;
	uint64_t *new_off, *new_stored; /* per member: where it goes, its share of the image */
	struct old_pack *packs;
	size_t npacks;
	struct batch *batches;
	size_t nbatches;
};

void repack_plan_free(struct repack_plan *p)
{
	if (!p)
		return;
	free(p->m);
	free(p->new_off);
	free(p->new_stored);
	free(p->packs);
	free(p->batches);
	free(p);
}

int repack_plan_make(struct store *st, bool all, struct repack_plan **ret, struct cfs_err *err)
{
	struct repack_plan *p = calloc(1, sizeof(*p));
	size_t n;
	int r;

	if (!p)
		return -ENOMEM;
	p->all = all;
	r = catalog_repack_members(st->cat, all, &p->m, &p->nm, err);
	if (r)
		goto fail;
	/* At most one pack, and one batch, per member. */
	n = p->nm ? p->nm : 1;
	p->new_off = calloc(n, sizeof(*p->new_off));
	p->new_stored = calloc(n, sizeof(*p->new_stored));
	p->packs = calloc(n, sizeof(*p->packs));
	p->batches = calloc(n, sizeof(*p->batches));
	if (!p->new_off || !p->new_stored || !p->packs || !p->batches) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < p->nm; i++) {
		if (!i || p->m[i].pack != p->m[i - 1].pack)
			p->packs[p->npacks++] = (struct old_pack){.first = i};
		p->packs[p->npacks - 1].n++;
		p->packs[p->npacks - 1].live += p->m[i].size;
	}
	*ret = p;
	return 0;
fail:
	repack_plan_free(p);
	return r;
}

static uint64_t image_bytes(int store_fd, const struct objkey *key)
{
	struct stat sb;
	char path[48];

	objkey_path(key, path);
	return fstatat(store_fd, path, &sb, 0) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
}

void repack_plan_estimate(const struct repack_plan *p, int store_fd, struct gc_result *res)
{
	for (size_t k = 0; k < p->npacks; k++) {
		const struct catalog_member *m = &p->m[p->packs[k].first];
		double unused = m->pack_size ? 1.0 - (double)p->packs[k].live / m->pack_size : 0;

		res->packs_repacked++;
		res->bytes_freed += (uint64_t)(unused * image_bytes(store_fd, &m->pack_key));
	}
}

/* Copy the members of old pack k to dst, each checked against its key (M3). -EBADMSG: the
 * pack is missing or damaged. */
static int read_pack(struct store *st, const struct repack_plan *p, size_t k, uint8_t *dst,
                     struct cfs_err *err)
{
	const struct old_pack *pk = &p->packs[k];
	struct object *o = NULL;
	char path[48], hex[33];
	uint64_t off = 0;
	int r = object_open(st->fd, &p->m[pk->first].pack_key, &o, err);

	objkey_path(&p->m[pk->first].pack_key, path);
	for (size_t i = pk->first; !r && i < pk->first + pk->n; i++) {
		const struct catalog_member *m = &p->m[i];
		struct object_src src = {.data = dst + off, .len = m->size};
		struct objkey key;
		size_t got;

		r = object_read(o, st->dctx, m->pack_off, (size_t)m->size, dst + off, &got, err);
		if (!r)
			object_hash(&src, &key);
		if (!r && (got != m->size || memcmp(key.b, m->key.b, 16) != 0)) {
			objkey_hex(&m->key, hex);
			r = err_set(err, -EBADMSG, "%s: member %s does not match its key", path,
			            hex);
		}
		off += m->size;
	}
	object_close(o);
	return r;
}

/* Read the old packs of b and write its image (or its members' images) to the temporary
 * directory. A bad old pack is marked, its first problem kept in bad, and left out. */
static int write_batch(struct store *st, struct object_writer *w, struct repack_plan *p,
                       struct batch *b, uint8_t *buf, struct cfs_err *bad, struct cfs_err *err)
{
	struct catalog_object known;
	struct object_src src;
	size_t nmembers = 0;
	int r;

	for (size_t k = b->first; k < b->end; k++) {
		struct old_pack *pk = &p->packs[k];
		struct cfs_err e = {{0}};
		char path[48];

		if (pk->live > PACK_TARGET - b->len) {
			/* No pack is ever that large: a catalog that says so is wrong. */
			objkey_path(&p->m[pk->first].pack_key, path);
			r = err_set(&e, -EBADMSG,
			            "%s: members of %llu bytes, more than a pack holds", path,
			            (unsigned long long)pk->live);
		} else {
			r = read_pack(st, p, k, buf + b->len, &e);
		}
		if (r == -EBADMSG) {
			pk->bad = true;
			if (!bad->msg[0])
				*bad = e;
			continue;
		}
		if (r)
			return err_set(err, r, "%s", e.msg);
		for (size_t i = pk->first; i < pk->first + pk->n; i++) {
			p->new_off[i] = b->len;
			b->len += p->m[i].size;
		}
		nmembers += pk->n;
	}
	if (!nmembers) {
		b->empty = true;
		return 0;
	}
	src = (struct object_src){.data = buf, .len = b->len};
	object_hash(&src, &b->key);
	r = catalog_object_by_key(st->cat, &b->key, &known, err);
	if (r && r != -ENOENT)
		return r;
	b->single = r == 0;
	if (!b->single) {
		r = object_write(w, &b->key, &src, &b->stored, err);
		for (size_t k = b->first; !r && k < b->end; k++)
			for (size_t i = p->packs[k].first; i < p->packs[k].first + p->packs[k].n;
			     i++)
				p->new_stored[i] = b->len ? p->m[i].size * b->stored / b->len : 0;
		return r;
	}
	for (size_t k = b->first; k < b->end; k++) {
		const struct old_pack *pk = &p->packs[k];

		for (size_t i = pk->first; !pk->bad && i < pk->first + pk->n; i++) {
			src = (struct object_src){.data = buf + p->new_off[i], .len = p->m[i].size};
			r = object_write(w, &p->m[i].key, &src, &p->new_stored[i], err);
			if (r)
				return r;
		}
	}
	return 0;
}

/* M2: the images written since the last round, durable and in place. */
static int publish(struct store *st, int tmp_fd, struct object_writer *w, struct cfs_err *err)
{
	int r;

	if (syncfs(tmp_fd) < 0)
		return err_set(err, neg_errno(), "%s: cannot sync the store: %s", st->dir,
		               strerror(errno));
	r = object_publish(w, false, err);
	if (!r && syncfs(st->fd) < 0)
		r = err_set(err, neg_errno(), "%s: cannot sync the store: %s", st->dir,
		            strerror(errno));
	return r;
}

/* M2: the members of batches [b0, b1) move to their new images and the old packs' rows go,
 * in one transaction. */
static int commit_round(struct store *st, struct repack_plan *p, size_t b0, size_t b1,
                        struct cfs_err *err)
{
	int r = catalog_begin(st->cat, true, err);

	for (size_t b = b0; !r && b < b1; b++) {
		struct batch *bt = &p->batches[b];

		if (bt->empty)
			continue;
		if (!bt->single) {
			struct catalog_object o = {.key = bt->key,
			                           .size = bt->len,
			                           .stored = bt->stored,
			                           .kind = OBJECT_PACK};
			bool fresh;

			r = catalog_object_ref(st->cat, &o, 0, &bt->id, &fresh, err);
			/* M1, M4: nothing can have stored this key since write_batch looked. */
			if (!r && !fresh)
				r = err_set(err, -EUCLEAN,
				            "%s: a new pack's key appeared during gc", st->dir);
		}
		for (size_t k = bt->first; !r && k < bt->end; k++) {
			const struct old_pack *pk = &p->packs[k];

			if (pk->bad)
				continue;
			for (size_t i = pk->first; !r && i < pk->first + pk->n; i++)
				r = catalog_member_move(st->cat, &p->m[i], bt->single ? 0 : bt->id,
				                        p->new_off[i], p->new_stored[i], err);
			if (!r)
				r = catalog_pack_drop(st->cat, p->m[pk->first].pack, err);
		}
	}
	if (!r)
		r = catalog_commit(st->cat, err);
	if (r)
		catalog_rollback(st->cat);
	return r;
}

/* After the commit (G1): unlink the old images of batches [b0, b1), and count. */
static int drop_old(struct store *st, const struct repack_plan *p, size_t b0, size_t b1,
                    struct gc_result *res, struct cfs_err *err)
{
	uint64_t freed = 0, written = 0;

	for (size_t b = b0; b < b1; b++) {
		const struct batch *bt = &p->batches[b];

		if (bt->empty)
			continue;
		for (size_t k = bt->first; k < bt->end; k++) {
			const struct old_pack *pk = &p->packs[k];

			if (pk->bad)
				continue;
			for (size_t i = pk->first; bt->single && i < pk->first + pk->n; i++)
				written += image_bytes(st->fd, &p->m[i].key);
		}
		if (!bt->single)
			written += image_bytes(st->fd, &bt->key);
		for (size_t k = bt->first; k < bt->end; k++) {
			const struct objkey *old = &p->m[p->packs[k].first].pack_key;
			char path[48];

			if (p->packs[k].bad)
				continue;
			objkey_path(old, path);
			freed += image_bytes(st->fd, old);
			if (unlinkat(st->fd, path, 0) < 0 && errno != ENOENT)
				return err_set(err, neg_errno(), "%s/%s: %s", st->dir, path,
				               strerror(errno));
			res->packs_repacked++;
		}
	}
	res->bytes_freed += freed > written ? freed - written : 0;
	return 0;
}

int repack_run(struct store *st, struct repack_plan *p, struct gc_result *res, struct cfs_err *err)
{
	struct object_writer *w = NULL;
	struct cfs_err bad = {{0}};
	char tmp_name[64];
	uint8_t *buf = NULL;
	int tmp_fd = -1, r;
	size_t k = 0;

	/* The temporary directories of killed ingests and repacks: no ingest runs (M1), so
	 * every one is dead. Failing to remove them is no reason to fail. */
	object_tmp_clean(st->fd, true, NULL, NULL, NULL);
	if (!p->npacks)
		return 0;
	r = object_tmp_open(st->fd, &tmp_fd, tmp_name, err);
	if (!r)
		r = object_writer_new(st->fd, tmp_fd, &w);
	if (!r && !(buf = malloc(PACK_TARGET)))
		r = -ENOMEM;
	while (!r && k < p->npacks) {
		size_t b0 = p->nbatches;
		uint64_t round = 0;

		while (!r && k < p->npacks && round < REPACK_ROUND) {
			struct batch *b = &p->batches[p->nbatches++];
			uint64_t live = p->packs[k].live;

			/* Neighbouring packs come from one ingest, in its order: they stay
			 * together, as many as fit one pack. */
			*b = (struct batch){.first = k, .end = k + 1};
			while (b->end < p->npacks && live + p->packs[b->end].live <= PACK_TARGET)
				live += p->packs[b->end++].live;
			k = b->end;
			round += live;
			r = write_batch(st, w, p, b, buf, &bad, err);
		}
		if (!r)
			r = publish(st, tmp_fd, w, err);
		if (!r)
			r = commit_round(st, p, b0, p->nbatches, err);
		if (!r)
			r = drop_old(st, p, b0, p->nbatches, res, err);
	}
	object_writer_free(w);
	if (tmp_fd >= 0)
		object_tmp_close(st->fd, tmp_fd, tmp_name);
	free(buf);
	/* Plain gc only saves space, and verify is what reports damage; a purge that cannot
	 * rewrite a pack has not done what it promised. */
	if (!r && bad.msg[0] && p->all)
		r = err_set(err, -EBADMSG,
		            "%s; left as it is, not repacked (condafs verify names what uses it)",
		            bad.msg);
	return r;
}
