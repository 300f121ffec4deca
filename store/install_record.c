// SPDX-License-Identifier: MIT
/*
 * What condafs install keeps of each package (install.c N4, catalog.c C9) and takes from
 * the store again: the records the commit inserts, a stored package written out for the
 * compiler to run, and the sources it compiles read back from the store.
 */
#include "install_int.h"

#include "err.h"
#include "grow.h"
#include "ingest.h"
#include "link.h"
#include "pkgarchive.h"
#include "pkgrec.h"
#include "pyzip.h"
#include "store_impl.h"
#include "textfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool install_rec_compiled(const struct source *s, const struct link_plan *plan)
{
	return s->rec && pkgrec_compiled_for(s->rec, link_plan_python(plan));
}

bool install_compiles(const struct install *ins, const struct link_plan *plan)
{
	for (size_t i = 0; i < link_plan_count(plan); i++) {
		const struct link_entry *e = link_plan_entry(plan, i), *s;

		if (!e->pyc_of)
			continue;
		s = link_plan_find(plan, e->pyc_of);
		if (s && s->type == LINK_FILE && s->pkg != LINK_GENERATED &&
		    !install_rec_compiled(&ins->src[s->pkg], plan))
			return true;
	}
	return false;
}

/* ---- what the .pyc compiler reads, written out ---- */

#define WRITE_OUT_CHUNK (1u << 20)

/* n bytes of buf to fd, path rel of package s. */
static int write_all(struct install *ins, const struct source *s, const char *rel, int fd,
                     const uint8_t *buf, size_t n, struct cfs_err *err)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, buf + done, n - done);

		if (w < 0)
			return err_set(err, neg_errno(), "%s/pkgs/%s/%s: %s", ins->work, s->dist,
			               rel, strerror(errno));
		done += (size_t)w;
	}
	return 0;
}

/* Path rel of package s beneath dfd, made as the archive's extraction would make it:
 * directories 0755 (the compiler, nobody, must reach the files), symbolic links as they
 * are; a regular file is made empty and left open for writing at *ret_fd. */
static int make_path(struct install *ins, const struct source *s, int dfd, const char *rel,
                     enum node_type type, const char *target, int *ret_fd, struct cfs_err *err)
{
	int r = install_make_parents(dfd, rel, 0755);

	*ret_fd = -1;
	if (r)
		return err_set(err, r, "%s/pkgs/%s/%s: %s", ins->work, s->dist, rel, strerror(-r));
	if (type == NODE_DIR)
		r = mkdirat(dfd, rel, 0755) < 0 && errno != EEXIST ? neg_errno() : 0;
	else if (type == NODE_SYMLINK)
		r = symlinkat(target, dfd, rel) < 0 ? neg_errno() : 0;
	else if ((*ret_fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	                           0600)) < 0)
		r = neg_errno();
	return r ? err_set(err, r, "%s/pkgs/%s/%s: %s", ins->work, s->dist, rel, strerror(-r)) : 0;
}

/* The file written at fd (rel of s) gets its mode and mtime and is closed; r as it was. */
static int close_file(struct install *ins, const struct source *s, const char *rel, int fd,
                      uint32_t mode, int64_t mtime_ns, int r, struct cfs_err *err)
{
	struct timespec ts = {mtime_ns / 1000000000, mtime_ns % 1000000000};

	if (!r && (fchmod(fd, mode & 0777) < 0 || futimens(fd, (struct timespec[2]){ts, ts}) < 0))
		r = err_set(err, neg_errno(), "%s/pkgs/%s/%s: %s", ins->work, s->dist, rel,
		            strerror(errno));
	close(fd);
	return r;
}

/*
 * Where one path of the written-out python goes (pyzip.h): a file (fd >= 0), a member of
 * the zip (zip set: its bytes gathered, then added whole, as the size a member is written
 * with is the size read, which a pyc rewritten for its source's prefix may not have
 * told), or nowhere (neither: a directory or link made, or a path the interpreter does
 * not need). Without a zip, every path is a file.
 */
struct sink {
	int fd;
	struct pyzip *zip;
	char name[PATH_MAX];
	uint8_t *mem;
	size_t n, cap;
};

static int sink_open(struct install *ins, const struct source *s, int dfd, struct pyzip *z,
                     const char *rel, enum node_type type, const char *target, struct sink *k,
                     struct cfs_err *err)
{
	*k = (struct sink){.fd = -1};
	switch (z ? pyzip_how(z, rel, type, k->name, sizeof(k->name)) : PYZIP_FILE) {
	case PYZIP_SKIP:
		return 0;
	case PYZIP_ZIP:
		k->zip = z;
		return 0;
	case PYZIP_FILE:
		break;
	}
	return make_path(ins, s, dfd, rel, type, target, &k->fd, err);
}

static int sink_write(struct install *ins, const struct source *s, const char *rel, struct sink *k,
                      const uint8_t *buf, size_t n, struct cfs_err *err)
{
	uint8_t *v;

	if (!k->zip)
		return write_all(ins, s, rel, k->fd, buf, n, err);
	if (!n)
		return 0;
	v = grow_array(k->mem, &k->cap, k->n + n, 1);
	if (!v)
		return err_set(err, -ENOMEM, "out of memory");
	k->mem = v;
	memcpy(k->mem + k->n, buf, n);
	k->n += n;
	return 0;
}

/* The path written: a file gets its mode and mtime, a member of the zip is added. r as it
 * was, or the failure to close. */
static int sink_close(struct install *ins, const struct source *s, const char *rel, struct sink *k,
                      uint32_t mode, int64_t mtime_ns, int r, struct cfs_err *err)
{
	if (!k->zip)
		return close_file(ins, s, rel, k->fd, mode, mtime_ns, r, err);
	if (!r) {
		int z = pyzip_add(k->zip, k->name, k->n, mtime_ns);

		if (!z)
			z = pyzip_write(k->zip, k->mem, k->n);
		if (z)
			r = err_set(err, z, "%s/pkgs/%s/%s: %s", ins->work, s->dist, rel,
			            z == -EIO ? pyzip_error(k->zip) : strerror(-z));
	}
	free(k->mem);
	return r;
}

/* pkgs/<dist>/, made for package s and open at *ret_fd. */
static int make_top(struct install *ins, const struct source *s, int *ret_fd, struct cfs_err *err)
{
	*ret_fd = -1;
	if (mkdirat(ins->pkgs_fd, s->dist, 0700) < 0 ||
	    (*ret_fd = openat(ins->pkgs_fd, s->dist,
	                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_set(err, neg_errno(), "%s/pkgs/%s: %s", ins->work, s->dist,
		               strerror(errno));
	return 0;
}

static int set_dir(struct install *ins, struct source *s, struct cfs_err *err)
{
	if (asprintf(&s->dir, "%s/pkgs/%s", ins->work, s->dist) < 0) {
		s->dir = NULL;
		return err_set(err, -ENOMEM, "out of memory");
	}
	return 0;
}

/* Entry e of unpacked package s into dfd (or z): the archive's bytes, from the data file. */
static int write_unpacked(struct install *ins, const struct source *s,
                          const struct pkgarchive_entry *e, int dfd, struct pyzip *z, uint8_t *buf,
                          struct cfs_err *err)
{
	int data = pkgarchive_files_fd(s->files);
	struct sink k;
	int r = sink_open(ins, s, dfd, z, e->path, e->type, e->target, &k, err);

	if (r || (k.fd < 0 && !k.zip))
		return r;
	for (uint64_t off = 0; !r && off < e->size;) {
		size_t want =
		        e->size - off < WRITE_OUT_CHUNK ? (size_t)(e->size - off) : WRITE_OUT_CHUNK;
		ssize_t n = pread(data, buf, want, (off_t)(e->off + off));

		if (n <= 0)
			r = err_set(err, n < 0 ? neg_errno() : -EIO, "%s/pkgs/%s.data: %s",
			            ins->work, s->dist,
			            n < 0 ? strerror(errno) : "shorter than unpacked");
		else
			r = sink_write(ins, s, e->path, &k, buf, (size_t)n, err);
		off += n > 0 ? (uint64_t)n : 0;
	}
	return sink_close(ins, s, e->path, &k, e->mode, e->mtime_ns, r, err);
}

/* The zip of python's standard library beneath dfd (pyzip.h), for the python of version
 * (its package's "3.11.2", or the plan's "3.11"); *ret NULL when the version is not one
 * (then every path is written as a file, as the archive holds it). */
static int open_zip(struct install *ins, const struct source *s, int dfd, const char *version,
                    struct pyzip **ret, struct cfs_err *err)
{
	char pyver[16];
	size_t n = version ? strspn(version, "0123456789") : 0;
	int r;

	*ret = NULL;
	if (!n || version[n] != '.')
		return 0;
	n += 1 + strspn(version + n + 1, "0123456789");
	if (n >= sizeof(pyver))
		return 0;
	snprintf(pyver, sizeof(pyver), "%.*s", (int)n, version);
	r = pyzip_open(dfd, pyver, ret);
	if (r == -EINVAL)
		return 0;
	return r ? err_set(err, r, "%s/pkgs/%s/lib: %s", ins->work, s->dist, strerror(-r)) : 0;
}

/* The zip finished, or left for the install's directory to remove after a failure (r). */
static int close_zip(struct install *ins, const struct source *s, struct pyzip *z, int r,
                     struct cfs_err *err)
{
	int c;

	if (r) {
		pyzip_abort(z);
		return r;
	}
	c = pyzip_close(z);
	return c ? err_set(err, c, "%s/pkgs/%s: the standard library's zip: %s", ins->work, s->dist,
	                   strerror(-c))
	         : 0;
}

int install_write_out_unpacked(struct install *ins, struct source *s, struct cfs_err *err)
{
	uint8_t *buf = malloc(WRITE_OUT_CHUNK);
	struct pyzip *z = NULL;
	int dfd = -1,
	    r = buf ? make_top(ins, s, &dfd, err) : err_set(err, -ENOMEM, "out of memory");

	if (!r)
		r = open_zip(ins, s, dfd, s->p->version, &z, err);
	for (size_t j = 0; !r && j < pkgarchive_files_count(s->files); j++)
		r = write_unpacked(ins, s, pkgarchive_files_entry(s->files, j), dfd, z, buf, err);
	r = close_zip(ins, s, z, r, err);
	if (!r)
		r = set_dir(ins, s, err);
	if (dfd >= 0)
		close(dfd);
	free(buf);
	return r;
}

/* Plan entry e of package i, from the store, into dfd at its path in the package: read
 * from the environment its record came with, at the entry's path there, with prefix where
 * the prefix goes (the archive's bytes when prefix is the package's placeholder). */
static int write_stored(struct install *ins, size_t i, const struct link_entry *e,
                        const char *prefix, int dfd, struct pyzip *z, uint8_t *buf,
                        struct cfs_err *err)
{
	const struct source *s = &ins->src[i];
	const char *rel = e->src ? e->src : e->path;
	enum node_type type = e->type == LINK_FILE      ? NODE_FILE
	                      : e->type == LINK_SYMLINK ? NODE_SYMLINK
	                                                : NODE_DIR;
	struct store_node node;
	uint64_t off = 0;
	size_t got = 1;
	struct sink k;
	int r = sink_open(ins, s, dfd, z, rel, type, e->target, &k, err);

	if (r || (k.fd < 0 && !k.zip))
		return r;
	r = store_path_lookup(ins->st, s->rec_root, e->path, &node, err);
	if (r == -ENOENT)
		r = err_set(err, r, "%s: %s: not in the environment its record came with", s->fn,
		            e->path);
	while (!r && got) {
		r = store_read(ins->st, &node, prefix, off, WRITE_OUT_CHUNK, buf, &got, err);
		if (!r)
			r = sink_write(ins, s, rel, &k, buf, got, err);
		off += got;
	}
	return sink_close(ins, s, rel, &k, e->mode, e->mtime_ns, r, err);
}

int install_write_out_stored(struct install *ins, const struct link_plan *plan, size_t i,
                             struct cfs_err *err)
{
	char *placeholder = NULL;
	uint8_t *buf = malloc(WRITE_OUT_CHUNK);
	struct pyzip *z = NULL;
	int dfd = -1, r = buf ? make_top(ins, &ins->src[i], &dfd, err)
	                      : err_set(err, -ENOMEM, "out of memory");

	/* One placeholder for the whole package, from its record's paths.json (the plan has
	 * none of a package whose conda-meta record it took as stored): the pycs it ships for
	 * its relocated sources were rewritten for them (ingest.h pyc_src), read back with the
	 * same. */
	if (!r)
		r = link_record_placeholder(ins->src[i].rec, ins->src[i].fn, &placeholder, err);
	if (!r)
		r = open_zip(ins, &ins->src[i], dfd, link_plan_python(plan), &z, err);
	for (size_t j = 0; !r && j < link_plan_count(plan); j++)
		if (link_plan_entry(plan, j)->pkg == i)
			r = write_stored(ins, i, link_plan_entry(plan, j),
			                 placeholder ? placeholder : "/", dfd, z, buf, err);
	r = close_zip(ins, &ins->src[i], z, r, err);
	if (!r)
		r = set_dir(ins, &ins->src[i], err);
	ins->src[i].ours = !r;
	if (dfd >= 0)
		close(dfd);
	free(buf);
	free(placeholder);
	return r;
}

/* The placeholder of package s, from its record's paths.json, once: *ret NULL for none. */
static int rec_placeholder(struct source *s, const char **ret, struct cfs_err *err)
{
	int r = 0;

	if (!s->rec_placeholder_read)
		r = link_record_placeholder(s->rec, s->fn, &s->rec_placeholder, err);
	s->rec_placeholder_read = !r;
	*ret = s->rec_placeholder;
	return r;
}

int install_read_stored_source(struct install *ins, size_t i, const char *src, size_t max,
                               char **ret, size_t *ret_len, struct cfs_err *err)
{
	struct source *s = &ins->src[i];
	char *path = link_noarch_path(src, pkgrec_pyver(s->rec)), *text = NULL;
	const char *prefix = NULL;
	struct store_node node;
	uint64_t size, off = 0;
	int r;

	if (!path) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* Where the environment the record came with has it, read back with the package's
	 * placeholder: the archive's bytes, which the compiler reads of any package. */
	r = rec_placeholder(s, &prefix, err);
	if (!r)
		r = store_path_lookup(ins->st, s->rec_root, path, &node, err);
	if (r == -ENOENT)
		r = err_set(err, r, "%s: %s: not in the environment its record came with", s->fn,
		            path);
	if (r)
		goto out;
	if (!prefix)
		prefix = "/";
	size = store_node_size(&node, strlen(prefix));
	if (node.type != NODE_FILE)
		r = err_set(err, -EUCLEAN,
		            "%s: %s: not a file in the environment its record came with", s->fn,
		            path);
	else if (size > max)
		r = err_set(err, -EFBIG, "%s: %s: over %zu bytes", s->fn, path, max);
	else if (!(text = malloc(size + 1)))
		r = err_set(err, -ENOMEM, "out of memory");
	while (!r && off < size) {
		size_t got = 0;

		r = store_read(ins->st, &node, prefix, off, (size_t)(size - off), text + off, &got,
		               err);
		if (!r && !got)
			r = err_set(err, -EUCLEAN, "%s: %s: shorter than its size in the store",
			            s->fn, path);
		off += got;
	}
	if (!r) {
		text[size] = '\0';
		*ret = text;
		*ret_len = (size_t)size;
		text = NULL;
	}
out:
	free(text);
	free(path);
	return r;
}

/* What the store phase made of node k's content, into a record's entry. */
static void take_content(struct pkgrec_entry *pe, const struct inode *k)
{
	pe->key = k->key;
	pe->neutral_size = k->neutral_size;
	pe->inserts = k->inserts;
	pe->reloc = k->reloc;
	pe->reloc_len = k->reloc_len;
}

/* Package i's conda-meta record as the store phase stored it, with what it was made of,
 * into *m: false when the environment has none of it to name. */
static bool record_meta(const struct install *ins, const struct ingest *in, size_t i,
                        const uint32_t *node_of, struct pkgrec_meta *m)
{
	const char *path = link_plan_record(ins->plan, i, m);
	const struct link_entry *e = path ? link_plan_find(ins->plan, path) : NULL;
	const struct inode *k;
	size_t j;

	if (!e || e->type != LINK_FILE || e->pkg != LINK_GENERATED || !*m->url || !*m->fn)
		return false;
	j = (size_t)(e - link_plan_entry(ins->plan, 0));
	if (!node_of[j])
		return false;
	k = &in->nodes[node_of[j] - 1];
	if (k->reloc || k->neutral_size != k->size)
		return false;
	m->key = k->key;
	m->size = k->size;
	return true;
}

static bool same_meta(const struct pkgrec_meta *a, const struct pkgrec_meta *b)
{
	return a && strcmp(a->url, b->url) == 0 && strcmp(a->fn, b->fn) == 0 &&
	       strcmp(a->channel, b->channel) == 0 && strcmp(a->pyver, b->pyver) == 0 &&
	       memcmp(a->key.b, b->key.b, sizeof(a->key.b)) == 0 && a->size == b->size;
}

/* The info/ files linking reads: what a record keeps of them. */
static const char *const info_files[] = {"info/index.json", "info/link.json",  "info/paths.json",
                                         "info/files",      "info/has_prefix", "info/no_link"};

/* The pycs compiled for package i, as the store phase stored them, into b. */
static int add_pycs(const struct install *ins, const struct ingest *in, size_t i,
                    const uint32_t *node_of, struct pkgrec_builder *b)
{
	const struct link_plan *plan = ins->plan;
	int r = 0;

	for (size_t j = 0; !r && j < link_plan_count(plan); j++) {
		const struct link_entry *e = link_plan_entry(plan, j), *src;
		struct pkgrec_entry pe;
		const struct inode *k;

		if (!e->pyc_of || !node_of[j])
			continue;
		src = link_plan_find(plan, e->pyc_of);
		if (!src || src->type != LINK_FILE || src->pkg != i)
			continue;
		k = &in->nodes[node_of[j] - 1];
		pe = (struct pkgrec_entry){.path = e->path,
		                           .type = NODE_FILE,
		                           .mode = k->mode,
		                           .mtime_ns = k->mtime_ns,
		                           .size = k->size};
		take_content(&pe, k);
		r = pkgrec_add_pyc(b, &pe);
	}
	return r;
}

/* What the install read and stored of unpacked package i, into a new builder *ret: its
 * info/ files, its paths with their contents, the pycs compiled for it. */
static int record_new(struct install *ins, struct ingest *in, size_t i, const uint32_t *node_of,
                      struct pkgrec_builder **ret)
{
	const struct link_plan *plan = ins->plan;
	const struct source *s = &ins->src[i];
	const char *pyver = link_plan_python(plan);
	struct pkgrec_builder *b = NULL;
	int r = pkgrec_builder_new(s->dg.size ? s->dg.sha256 : s->p->sha256,
	                           s->dg.size ? s->dg.md5 : s->p->md5, s->dg.size,
	                           pyver ? pyver : "", &b);

	for (size_t j = 0; !r && j < sizeof(info_files) / sizeof(*info_files); j++) {
		struct cfs_err e2;
		char *text = NULL;
		size_t len;

		r = ins->pkgs[i].files ? pkgarchive_files_read(ins->pkgs[i].files, info_files[j],
		                                               64u << 20, &text, &len)
		                       : textfile_read(ins->pkgs[i].dir_fd, info_files[j],
		                                       info_files[j], 64u << 20, &text, &len, &e2);
		if (r == 0)
			r = pkgrec_add_info(b, info_files[j], (const uint8_t *)text, len);
		free(text);
		if (r == -ENOENT)
			r = 0;
	}
	for (size_t j = 0; !r && j < link_plan_pkg_srcs(plan, i); j++) {
		const struct link_src *ls = link_plan_pkg_src(plan, i, j);
		const struct link_entry *e = link_plan_find(plan, ls->dst);
		struct pkgrec_entry pe = {
		        .path = ls->src, .mode = ls->mode, .mtime_ns = ls->mtime_ns};

		pe.type = ls->type == LINK_FILE      ? NODE_FILE
		          : ls->type == LINK_SYMLINK ? NODE_SYMLINK
		                                     : NODE_DIR;
		if (pe.type == NODE_FILE) {
			const struct inode *k =
			        &in->nodes[node_of[e - link_plan_entry(plan, 0)] - 1];

			take_content(&pe, k);
			pe.size = ls->len;
		}
		pe.target = ls->target;
		r = pkgrec_add_path(b, &pe);
	}
	if (!r)
		r = add_pycs(ins, in, i, node_of, b);
	if (r) {
		pkgrec_builder_free(b);
		return r;
	}
	*ret = b;
	return 0;
}

/* Package i as a record (N4) into ins->made[i], from its directory and the nodes the
 * store phase filled (node_of: by plan entry, the node's index + 1); none when a path of
 * it is not in the tree (another package's won) or an info/ file cannot be read. */
static int record_package(struct install *ins, struct ingest *in, size_t i, const uint32_t *node_of,
                          struct cfs_err *err)
{
	const struct link_plan *plan = ins->plan;
	const struct source *s = &ins->src[i];
	struct pkgrec_builder *b = NULL;
	struct pkgrec_meta meta;
	bool has_meta;
	int r;

	for (size_t j = 0; j < link_plan_pkg_srcs(plan, i); j++) {
		const struct link_src *ls = link_plan_pkg_src(plan, i, j);
		const struct link_entry *e = link_plan_find(plan, ls->dst);

		if (!e || e->type != ls->type ||
		    (e->type != LINK_DIR &&
		     (e->pkg != i || !node_of[e - link_plan_entry(plan, 0)])))
			return 0;
	}
	has_meta = record_meta(ins, in, i, node_of, &meta);
	/* From the store: as it was, when its conda-meta record is this environment's (C9: it
	 * names only what the environment's tree does), else with this one's. */
	if (s->rec && has_meta && same_meta(pkgrec_meta(s->rec), &meta)) {
		ins->records[i] = (struct catalog_blob){s->blob, s->blob_len};
		return 0;
	}
	/* A record of another python's pycs takes those compiled now for this one. */
	r = !s->rec ? record_new(ins, in, i, node_of, &b)
	            : pkgrec_builder_from(s->rec, link_plan_python(plan), &b);
	if (!r && s->rec && !install_rec_compiled(s, plan))
		r = add_pycs(ins, in, i, node_of, b);
	if (!r && has_meta)
		r = pkgrec_set_meta(b, &meta);
	if (r) {
		r = err_set(err, r, "out of memory");
	} else {
		struct cfs_err e2;

		/* A record is a saving, not the environment: one that cannot be made is a
		 * warning, and the package is fetched again next time. */
		r = pkgrec_finish(b, &ins->made[i], &ins->records[i].len, &e2);
		if (r == -ENOMEM)
			r = err_set(err, r, "out of memory");
		else if (r)
			install_warn(ins, "%s: not recorded for later installs: %s", s->fn, e2.msg);
		else
			ins->records[i].data = ins->made[i];
		if (r != -ENOMEM)
			r = 0;
	}
	pkgrec_builder_free(b);
	return r;
}

/* Every package's record (N4), which the commit inserts: ingest.h's after_store. */
int install_record_packages(struct ingest *in, void *arg, struct cfs_err *err)
{
	struct install *ins = arg;
	size_t n = link_plan_count(ins->plan);
	uint32_t *node_of = calloc(n ? n : 1, sizeof(*node_of));
	int r = node_of ? 0 : err_set(err, -ENOMEM, "out of memory");

	for (size_t k = 0; !r && k < in->n; k++)
		if (in->nodes[k].plan)
			node_of[in->nodes[k].plan - 1] = (uint32_t)k + 1;
	for (size_t i = 0; !r && i < ins->n; i++)
		r = record_package(ins, in, i, node_of, err);
	free(node_of);
	return r;
}
