// SPDX-License-Identifier: MIT
/*
 * The walk of an ingest: one thread lists the prefix breadth first, children sorted by
 * name so that a directory's children get consecutive ids, and records what each path is
 * (type, mode, times, size, inode); symlink targets are read here. Hard links are found
 * once the tree is known. Every directory is opened beneath the prefix's descriptor with no
 * symbolic link followed, and must be the inode its parent's listing saw: a user who
 * swaps a directory for a link while the walk runs makes it fail, never wander.
 */
#include "ingest.h"

#include "err.h"
#include "useropen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- walk ---- */

static int add_node(struct ingest *in, struct inode **ret)
{
	if (in->n == in->cap) {
		size_t cap = in->cap ? 2 * in->cap : 1024;
		struct inode *v = realloc(in->nodes, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		in->nodes = v;
		in->cap = cap;
	}
	*ret = &in->nodes[in->n++];
	memset(*ret, 0, sizeof(**ret));
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	const struct inode *x = a, *y = b;
	size_t n = x->namelen < y->namelen ? x->namelen : y->namelen;
	int c = memcmp(x->name, y->name, n);

	return c ? c : (x->namelen > y->namelen) - (x->namelen < y->namelen);
}

static const char *special_kind(mode_t m)
{
	return S_ISFIFO(m)   ? "fifo"
	       : S_ISSOCK(m) ? "socket"
	       : S_ISCHR(m)  ? "character device"
	       : S_ISBLK(m)  ? "block device"
	                     : "special file";
}

/* Fill the attributes of n from st; -EINVAL for special files the caller must skip. */
static int set_attrs(struct ingest *in, struct inode *n, const struct stat *sb)
{
	uint32_t mode = sb->st_mode & 07777;

	if (S_ISDIR(sb->st_mode))
		n->type = NODE_DIR;
	else if (S_ISREG(sb->st_mode))
		n->type = NODE_FILE;
	else if (S_ISLNK(sb->st_mode))
		n->type = NODE_SYMLINK;
	else
		return -EINVAL;
	if (mode & 07000) {
		ingest_warn(in, "%s/%s: setuid, setgid and sticky bits are not kept", in->prefix,
		            n->rel);
		mode &= 0777;
	}
	n->mode = mode;
	n->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
	n->ctime_ns = stat_ctime_ns(sb);
	n->size = S_ISREG(sb->st_mode) ? (uint64_t)sb->st_size : 0;
	n->dev = sb->st_dev;
	n->ino = sb->st_ino;
	n->nlink = sb->st_nlink;
	return 0;
}

static int read_symlink(struct ingest *in, int dfd, struct inode *n, struct cfs_err *err)
{
	char buf[PATH_MAX];
	uint8_t *neutral = NULL;
	size_t nlen = 0;
	struct reloc *rl = NULL;
	ssize_t len = readlinkat(dfd, n->name, buf, sizeof(buf));
	int r;

	if (len < 0)
		return err_set(err, neg_errno(), "%s/%s: %s", in->prefix, n->rel, strerror(errno));
	if ((size_t)len == sizeof(buf))
		return err_set(err, -ENAMETOOLONG, "%s/%s: link target too long", in->prefix,
		               n->rel);
	/* Absolute targets into the prefix follow the environment to wherever it is served;
	 * anything else (a sibling of the prefix, a system path) is kept as it is. */
	if ((size_t)len >= in->plen && memcmp(buf, in->prefix, in->plen) == 0 &&
	    ((size_t)len == in->plen || buf[in->plen] == '/')) {
		r = reloc_scan((const uint8_t *)buf, in->plen, in->prefix, in->plen, RELOC_TEXT, 0,
		               &neutral, &nlen, &rl, err);
		if (r)
			return r;
		if (rl) {
			/* The prefix, then the rest of the target unchanged. */
			uint8_t *t = realloc(neutral, nlen + (size_t)len - in->plen + 1);

			if (!t) {
				free(neutral);
				reloc_free(rl);
				return -ENOMEM;
			}
			neutral = t;
			memcpy(neutral + nlen, buf + in->plen, (size_t)len - in->plen);
			nlen += (size_t)len - in->plen;
		}
	}
	if (rl) {
		r = reloc_encode(rl, &n->reloc, &n->reloc_len);
		n->inserts = reloc_text_inserts(rl);
		reloc_free(rl);
		n->target = (char *)neutral;
		n->target_len = nlen;
		return r;
	}
	n->target = malloc((size_t)len + 1);
	if (!n->target)
		return -ENOMEM;
	memcpy(n->target, buf, (size_t)len);
	n->target_len = (size_t)len;
	return 0;
}

int ingest_open_error(struct ingest *in, const char *rel, int r, struct cfs_err *err)
{
	const char *sep = *rel ? "/" : "";

	if (r == -EACCES && in->creds.active)
		return err_set(err, r, "%s%s%s: cannot be read by the prefix's owner (uid %u): %s",
		               in->prefix, sep, rel, (unsigned)in->creds.uid, strerror(-r));
	return err_set(err, r, "%s%s%s: %s", in->prefix, sep, rel, beneath_strerror(r));
}

bool ingest_same_inode(const struct inode *n, const struct stat *sb)
{
	return sb->st_dev == n->dev && sb->st_ino == n->ino &&
	       (n->type == NODE_DIR ? S_ISDIR(sb->st_mode) : S_ISREG(sb->st_mode));
}

/* List directory i, append its children sorted by name. */
static int walk_dir(struct ingest *in, uint32_t i, struct cfs_err *err)
{
	const char *rel = in->nodes[i].rel;
	int dfd = open_beneath(in->root_fd, rel, O_RDONLY | O_DIRECTORY);
	size_t first = in->n;
	struct stat sb;
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (dfd < 0)
		return ingest_open_error(in, rel, dfd, err);
	/* The directory listed is the one its parent's listing saw, not one moved there. */
	if (fstat(dfd, &sb) < 0 || !ingest_same_inode(&in->nodes[i], &sb)) {
		close(dfd);
		return err_set(err, -EAGAIN, "%s%s%s: changed while the prefix was read",
		               in->prefix, *rel ? "/" : "", rel);
	}
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -ENOMEM;
	}
	while ((errno = 0, de = readdir(d))) {
		struct inode *n;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			r = err_set(err, neg_errno(), "%s/%s%s%s: %s", in->prefix, rel,
			            *rel ? "/" : "", de->d_name, strerror(errno));
			goto out;
		}
		r = add_node(in, &n);
		if (r)
			goto out;
		if (asprintf(&n->rel, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
			n->rel = NULL;
			in->n--;
			r = -ENOMEM;
			goto out;
		}
		n->name = n->rel + strlen(n->rel) - strlen(de->d_name);
		n->namelen = strlen(de->d_name);
		n->parent = i;
		if (set_attrs(in, n, &sb)) {
			if (!in->opts->skip_special) {
				r = err_set(err, -EINVAL,
				            "%s/%s: special file (%s) cannot be stored", in->prefix,
				            n->rel, special_kind(sb.st_mode));
				goto out;
			}
			ingest_warn(in, "%s/%s: special file (%s) skipped", in->prefix, n->rel,
			            special_kind(sb.st_mode));
			free(n->rel);
			in->n--;
			continue;
		}
		if (n->type == NODE_SYMLINK) {
			r = read_symlink(in, dfd, n, err);
			if (r)
				goto out;
		}
	}
	if (errno) {
		r = err_set(err, neg_errno(), "%s/%s: %s", in->prefix, rel, strerror(errno));
		goto out;
	}
	/* name pointers point into rel, which does not move with the array */
	qsort(in->nodes + first, in->n - first, sizeof(*in->nodes), name_cmp);
	in->nodes[i].first_child = (uint32_t)first;
	in->nodes[i].nchildren = (uint32_t)(in->n - first);
out:
	closedir(d);
	return r;
}

static int ino_cmp(const void *a, const void *b, void *ctx)
{
	const struct inode *nodes = ctx;
	const struct inode *x = &nodes[*(const uint32_t *)a], *y = &nodes[*(const uint32_t *)b];

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return (*(const uint32_t *)a > *(const uint32_t *)b) -
	       (*(const uint32_t *)a < *(const uint32_t *)b);
}

/* Hard links are one object: every path of an inode but the first points at the first. */
static int find_hardlinks(struct ingest *in)
{
	uint32_t *v = malloc((in->n ? in->n : 1) * sizeof(*v));
	size_t k = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < in->n; i++)
		if (in->nodes[i].type == NODE_FILE && in->nodes[i].nlink > 1)
			v[k++] = (uint32_t)i;
	if (k)
		qsort_r(v, k, sizeof(*v), ino_cmp, in->nodes);
	for (size_t j = 1; j < k; j++) {
		struct inode *a = &in->nodes[v[j - 1]], *b = &in->nodes[v[j]];

		if (a->dev == b->dev && a->ino == b->ino) {
			if (!a->hardlink)
				a->hardlink = v[j - 1] + 1;
			b->hardlink = a->hardlink;
		}
	}
	free(v);
	return 0;
}

int ingest_walk(struct ingest *in, struct cfs_err *err)
{
	struct inode *top;
	struct stat sb;
	int r;

	if (fstat(in->root_fd, &sb) < 0)
		return err_set(err, neg_errno(), "%s: %s", in->prefix, strerror(errno));
	r = add_node(in, &top);
	if (r)
		return r;
	top->rel = strdup("");
	if (!top->rel)
		return -ENOMEM;
	top->name = top->rel;
	set_attrs(in, top, &sb);
	/* The array grows behind us: breadth first, by index. */
	for (uint32_t i = 0; i < in->n; i++) {
		if (in->nodes[i].type != NODE_DIR)
			continue;
		r = walk_dir(in, i, err);
		if (r)
			return r;
		if (in->n > UINT32_MAX / 2)
			return err_set(err, -EFBIG, "%s: too many files", in->prefix);
	}
	return find_hardlinks(in);
}
