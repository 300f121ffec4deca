// SPDX-License-Identifier: MIT
/*
 * The walk's counterpart for an install: the tree comes from a link plan (link.h), not
 * from a prefix on disk. Paths are laid out as the walk lays them out (breadth first, a
 * directory's children consecutive and sorted by name), so the store and commit phases
 * cannot tell the two apart. A package's file is read from its range of the package's
 * data file (or a cache's extracted package), with the placeholder it holds as the prefix
 * to take out, or is a content the store holds (the package's record); a generated file
 * (entry point, conda-meta record, history, pyc) from its range of the install's gen.data
 * (in->gen).
 */
#include "ingest.h"

#include "err.h"
#include "link.h"
#include "pkgarchive.h"
#include "pkgrec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The plan's index of each path's parent (SIZE_MAX: the top), by a binary search for the
 * path's directory among the sorted paths. */
static int find_parents(const struct link_plan *plan, size_t n, size_t *parent, struct cfs_err *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *p = link_plan_entry(plan, i)->path, *slash = strrchr(p, '/');
		size_t dlen, lo = 0, hi = i;

		parent[i] = SIZE_MAX;
		if (!slash)
			continue;
		dlen = (size_t)(slash - p);
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const char *q = link_plan_entry(plan, mid)->path;
			int c = strncmp(q, p, dlen);

			if (c == 0)
				c = q[dlen] ? 1 : 0;
			if (c == 0) {
				lo = mid;
				break;
			}
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo >= i || strlen(link_plan_entry(plan, lo)->path) != dlen ||
		    strncmp(link_plan_entry(plan, lo)->path, p, dlen) != 0 ||
		    link_plan_entry(plan, lo)->type != LINK_DIR)
			return err_set(err, -EINVAL, "%s: its directory is not in the plan", p);
		parent[i] = lo;
	}
	return 0;
}

/* The record of the package pyc e is compiled from, when that package is the store's and
 * its record holds the pycs of the plan's python (else they are compiled, as for a package
 * new to the store). */
static const struct pkgrec *pyc_rec(const struct link_plan *plan, const struct link_entry *e,
                                    const struct ingest_pkg *pkgs)
{
	const struct link_entry *s = link_plan_find(plan, e->pyc_of);
	const struct pkgrec *rec =
	        s && s->type == LINK_FILE && s->pkg != LINK_GENERATED ? pkgs[s->pkg].rec : NULL;

	return rec && pkgrec_compiled_for(rec, link_plan_python(plan)) ? rec : NULL;
}

/* A pyc the compiler did not make (its source does not compile) is not in the tree, nor a
 * directory made only for such pycs: gone[i] set, *ret_ngone counted. A package from the
 * store has the pycs its record holds. Children sort after their parent, so going
 * backwards a directory's children are counted before it is seen. */
static int drop_missing_pycs(struct ingest *in, const struct link_plan *plan, size_t n,
                             const size_t *parent, const struct ingest_pkg *pkgs, bool *gone,
                             size_t *ret_ngone, struct cfs_err *err)
{
	size_t *kids = calloc(n ? n : 1, sizeof(*kids)), *live = calloc(n ? n : 1, sizeof(*live));

	*ret_ngone = 0;
	if (!kids || !live) {
		free(kids);
		free(live);
		return err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = n; i-- > 0;) {
		const struct link_entry *e = link_plan_entry(plan, i);

		const struct pkgrec *rec = e->pyc_of ? pyc_rec(plan, e, pkgs) : NULL;

		if (rec)
			gone[i] = !pkgrec_pyc(rec, e->path);
		else if (e->pyc_of)
			gone[i] = in->gen->len[i] == INGEST_GEN_NONE;
		if (e->type == LINK_DIR && e->pkg == LINK_GENERATED && kids[i] > 0 && live[i] == 0)
			gone[i] = true;
		if (parent[i] != SIZE_MAX) {
			kids[parent[i]]++;
			live[parent[i]] += !gone[i];
		}
		*ret_ngone += gone[i];
	}
	free(kids);
	free(live);
	return 0;
}

/* Node k as the record says it was stored (ingest.h's known). Its mtime stays the plan's:
 * a pyc compiled by an earlier install has this one's time, as if compiled again. */
static int fill_known(struct inode *k, const struct pkgrec_entry *re)
{
	k->type = NODE_FILE;
	k->known = true;
	k->size = re->size;
	k->key = re->key;
	k->neutral_size = re->neutral_size;
	k->inserts = re->inserts;
	if (re->reloc_len) {
		k->reloc = malloc(re->reloc_len);
		if (!k->reloc)
			return -ENOMEM;
		memcpy(k->reloc, re->reloc, re->reloc_len);
		k->reloc_len = re->reloc_len;
	}
	return 0;
}

/* Node k from plan entry e: attributes from the plan, identity from its source file, or
 * its content from the store's record of its package. */
static int fill_node(struct ingest *in, struct inode *k, const struct link_entry *e,
                     const struct link_plan *plan, const struct ingest_pkg *pkgs,
                     struct cfs_err *err)
{
	const struct pkgarchive_entry *fe;
	const struct ingest_pkg *pkg;
	const struct pkgrec *rec;
	struct stat sb;

	k->mode = e->mode & 0777;
	k->mtime_ns = e->mtime_ns;
	k->nlink = 1;
	switch (e->type) {
	case LINK_DIR:
		k->type = NODE_DIR;
		return 0;
	case LINK_SYMLINK:
		k->type = NODE_SYMLINK;
		k->target_len = strlen(e->target);
		k->target = strdup(e->target);
		return k->target ? 0 : -ENOMEM;
	case LINK_FILE:
		break;
	}
	k->type = NODE_FILE;
	pkg = e->pkg != LINK_GENERATED ? &pkgs[e->pkg] : NULL;
	rec = e->pkg != LINK_GENERATED ? pkgs[e->pkg].rec
	      : e->pyc_of              ? pyc_rec(plan, e, pkgs)
	                               : NULL;
	if (rec) {
		const struct pkgrec_entry *re =
		        e->pyc_of ? pkgrec_pyc(rec, e->path) : pkgrec_path(rec, e->src);

		if (!re || re->type != NODE_FILE)
			return err_set(err, -EINVAL, "%s: not a file of its package's record",
			               e->path);
		return fill_known(k, re);
	}
	if (e->placeholder) {
		k->wprefix = e->placeholder;
		k->wplen = strlen(e->placeholder);
		k->wbinary = e->binary;
	}
	if (!pkg && e->key) {
		/* A conda-meta record as its package's store record keeps it. */
		k->known = true;
		k->key = *e->key;
		k->size = k->neutral_size = e->len;
		return 0;
	}
	if (!pkg) {
		/* Generated into the install's own data file (ingest_gen). */
		size_t j = (size_t)(e - link_plan_entry(plan, 0));

		if (in->gen->len[j] == INGEST_GEN_NONE)
			return err_set(err, -EINVAL, "%s: generated but never written", e->path);
		k->src_fd = in->gen->fd;
		k->src_data = true;
		k->src_off = in->gen->off[j];
		k->size = in->gen->len[j];
		return 0;
	}
	if (pkg && pkg->files) {
		/* As the plan checked it (L3): the data file is the install's alone. */
		fe = pkgarchive_files_find(pkg->files, e->src);
		if (!fe || fe->type != NODE_FILE)
			return err_set(err, -EINVAL, "%s: its package holds no regular file there",
			               e->path);
		k->src_fd = pkgarchive_files_fd(pkg->files);
		k->src_data = true;
		k->src_off = fe->off;
		k->size = fe->size;
		k->mtime_ns = fe->mtime_ns;
		return 0;
	}
	k->src_fd = pkg->dir_fd;
	k->src_rel = e->src;
	if (fstatat(k->src_fd, k->src_rel, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return err_set(err, neg_errno(), "%s: %s", e->path, strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return err_set(err, -EINVAL, "%s: its package holds no regular file there",
		               e->path);
	k->size = (uint64_t)sb.st_size;
	k->dev = sb.st_dev;
	k->ino = sb.st_ino;
	k->ctime_ns = stat_ctime_ns(&sb);
	/* The store phase checks the file against the mtime it was planned with (I3). */
	k->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	return 0;
}

int ingest_plan_nodes(struct ingest *in, const struct link_plan *plan,
                      const struct ingest_pkg *pkgs, int64_t top_mtime_ns, struct cfs_err *err)
{
	size_t n = link_plan_count(plan), *parent = NULL, *order = NULL, *first = NULL;
	size_t *node_of = NULL, nq = 0, ngone = 0;
	bool *gone = NULL;
	int r;

	if (n + 1 > UINT32_MAX / 2)
		return err_set(err, -EFBIG, "%s: too many files", in->prefix);
	parent = malloc((n + 1) * sizeof(*parent));
	/* Zeroed, though the counting sort below writes every slot that is read: clang's
	 * analyzer cannot follow that. */
	order = calloc(n + 1, sizeof(*order));
	first = calloc(n + 1, sizeof(*first));
	node_of = malloc((n + 1) * sizeof(*node_of));
	gone = calloc(n + 1, sizeof(*gone));
	in->nodes = calloc(n + 1, sizeof(*in->nodes));
	if (!parent || !order || !first || !node_of || !gone || !in->nodes) {
		r = -ENOMEM;
		goto out;
	}
	in->cap = n + 1;
	r = find_parents(plan, n, parent, err);
	if (r)
		goto out;
	r = drop_missing_pycs(in, plan, n, parent, pkgs, gone, &ngone, err);
	if (r)
		goto out;
	/* Children grouped by parent (slot 0: the top; i + 1: entry i), each group in the
	 * plan's order, which is by name: a counting sort. */
	for (size_t i = 0; i < n; i++)
		if (!gone[i])
			first[parent[i] == SIZE_MAX ? 0 : parent[i] + 1]++;
	for (size_t g = 0, sum = 0; g <= n; g++) {
		size_t c = first[g];

		first[g] = sum;
		sum += c;
	}
	for (size_t i = 0; i < n; i++) {
		size_t g = parent[i] == SIZE_MAX ? 0 : parent[i] + 1;

		if (!gone[i])
			order[first[g]++] = i;
	}
	/* first[g] is now the end of group g; its start is the end of group g - 1. */
	in->nodes[0].rel = strdup("");
	if (!in->nodes[0].rel) {
		r = -ENOMEM;
		goto out;
	}
	in->nodes[0].name = in->nodes[0].rel;
	in->nodes[0].type = NODE_DIR;
	in->nodes[0].mode = 0755;
	in->nodes[0].mtime_ns = top_mtime_ns;
	in->n = 1;
	/* Breadth first: node q's children get the next ids, in name order. */
	for (nq = 0; nq < in->n; nq++) {
		struct inode *d = &in->nodes[nq];
		size_t g = nq == 0 ? 0 : node_of[nq] + 1;
		size_t start = g == 0 ? 0 : first[g - 1], end = first[g];

		if (d->type != NODE_DIR)
			continue;
		d->first_child = (uint32_t)in->n;
		d->nchildren = (uint32_t)(end - start);
		for (size_t j = start; j < end; j++) {
			const struct link_entry *e = link_plan_entry(plan, order[j]);
			struct inode *k = &in->nodes[in->n];
			const char *slash = strrchr(e->path, '/');

			node_of[in->n] = order[j];
			in->n++;
			k->rel = strdup(e->path);
			if (!k->rel) {
				r = -ENOMEM;
				goto out;
			}
			k->name = slash ? k->rel + (slash - e->path) + 1 : k->rel;
			k->namelen = strlen(k->name);
			k->parent = (uint32_t)nq;
			k->plan = (uint32_t)order[j] + 1;
			r = fill_node(in, k, e, plan, pkgs, err);
			if (r)
				goto out;
		}
	}
	if (in->n != n + 1 - ngone)
		r = err_set(err, -EINVAL, "%s: the plan's paths do not form one tree", in->prefix);
out:
	if (r == -ENOMEM)
		r = err_set(err, r, "out of memory");
	free(parent);
	free(order);
	free(first);
	free(node_of);
	free(gone);
	return r;
}
