// SPDX-License-Identifier: MIT
/*
 * Package archive records, format 2 (docs/package-format.md; format 1 is read too): the
 * builder writes them
 * after an install has stored a package's files, the reader checks every rule before an
 * install takes anything from one.
 *
 * Invariants:
 * K1: a struct pkgrec exists only for bytes pkgrec_open accepted: every string is within
 *     the record and NUL-terminated, entries are strictly sorted by path, and each entry
 *     follows its type's rules, so lookups read nothing outside it and need no checks.
 * K2: the builder writes only what pkgrec_open accepts (the unit test holds each to the
 *     other).
 */
#include "pkgrec.h"

#include "err.h"
#include "grow.h"
#include "memdup.h"
#include "varint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const char magic[8] = {'C', 'F', 'S', 'P', 'K', 'G', '2', '\n'};
/* Format 1: no conda-meta record after the pycs. */
static const char magic1[8] = {'C', 'F', 'S', 'P', 'K', 'G', '1', '\n'};

/* A record is read whole: a torch package's lists are a few MiB at most. */
#define RECORD_MAX   (256u << 20)
#define PATH_MAX_LEN 4096
#define TARGET_MAX   4095
#define LEVEL        3
/* The Content_Checksum_flag of a zstd frame's descriptor, its fifth byte (RFC 8878). */
#define FRAME_CHECKSUM 0x04

struct info {
	char *name;
	uint8_t *data;
	size_t len;
};

struct list {
	struct pkgrec_entry *e;
	size_t n, cap;
};

struct pkgrec_builder {
	char *sha256, *md5, *pyver;
	uint64_t size;
	struct info *info;
	size_t ninfo, capinfo;
	struct list paths, pycs;
	struct pkgrec_meta meta; /* its strings owned; url NULL: none */
};

struct pkgrec {
	uint8_t *buf; /* the decompressed record; every pointer below points into it */
	const char *sha256, *md5, *pyver;
	uint64_t size;
	struct info *info; /* name and data point into buf */
	size_t ninfo;
	struct list paths, pycs;
	struct pkgrec_meta meta;
	bool has_meta;
};

/* ---- writing ---- */

int pkgrec_builder_new(const char *sha256, const char *md5, uint64_t size, const char *pyver,
                       struct pkgrec_builder **ret)
{
	struct pkgrec_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->sha256 = strdup(sha256 ? sha256 : "");
	b->md5 = strdup(md5 ? md5 : "");
	b->pyver = strdup(pyver ? pyver : "");
	b->size = size;
	if (!b->sha256 || !b->md5 || !b->pyver) {
		pkgrec_builder_free(b);
		return -ENOMEM;
	}
	*ret = b;
	return 0;
}

static void list_free(struct list *l, bool owned)
{
	for (size_t i = 0; owned && i < l->n; i++) {
		free((char *)l->e[i].path);
		free((uint8_t *)l->e[i].reloc);
		free((char *)l->e[i].target);
	}
	free(l->e);
}

/* A builder's conda-meta record's strings, which it owns. */
static void meta_free(struct pkgrec_meta *m)
{
	free((char *)m->url);
	free((char *)m->fn);
	free((char *)m->channel);
	free((char *)m->pyver);
}

void pkgrec_builder_free(struct pkgrec_builder *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->ninfo; i++) {
		free(b->info[i].name);
		free(b->info[i].data);
	}
	free(b->info);
	list_free(&b->paths, true);
	list_free(&b->pycs, true);
	meta_free(&b->meta);
	free(b->sha256);
	free(b->md5);
	free(b->pyver);
	free(b);
}

int pkgrec_add_info(struct pkgrec_builder *b, const char *name, const uint8_t *data, size_t len)
{
	struct info *v = grow_array(b->info, &b->capinfo, b->ninfo + 1, sizeof(*v));
	struct info in = {strdup(name), malloc(len ? len : 1), len};

	if (v)
		b->info = v;
	if (!v || !in.name || !in.data) {
		free(in.name);
		free(in.data);
		return -ENOMEM;
	}
	memcpy(in.data, data, len);
	b->info[b->ninfo++] = in;
	return 0;
}

int pkgrec_set_meta(struct pkgrec_builder *b, const struct pkgrec_meta *m)
{
	struct pkgrec_meta c;

	/* K2: the reader refuses a record without them. */
	if (!*m->url || !*m->fn)
		return -EINVAL;
	c = (struct pkgrec_meta){strdup(m->url),   strdup(m->fn), strdup(m->channel),
	                         strdup(m->pyver), m->key,        m->size};
	if (!c.url || !c.fn || !c.channel || !c.pyver) {
		meta_free(&c);
		return -ENOMEM;
	}
	meta_free(&b->meta);
	b->meta = c;
	return 0;
}

int pkgrec_builder_from(const struct pkgrec *rec, const char *pyver, struct pkgrec_builder **ret)
{
	struct pkgrec_builder *b = NULL;
	bool own = pkgrec_compiled_for(rec, pyver);
	int r = pkgrec_builder_new(rec->sha256, rec->md5, rec->size, pyver, &b);

	for (size_t i = 0; !r && i < rec->ninfo; i++)
		r = pkgrec_add_info(b, rec->info[i].name, rec->info[i].data, rec->info[i].len);
	for (size_t i = 0; !r && i < rec->paths.n; i++)
		r = pkgrec_add_path(b, &rec->paths.e[i]);
	for (size_t i = 0; !r && own && i < rec->pycs.n; i++)
		r = pkgrec_add_pyc(b, &rec->pycs.e[i]);
	if (r) {
		pkgrec_builder_free(b);
		return r;
	}
	*ret = b;
	return 0;
}

static int add(struct list *l, const struct pkgrec_entry *e)
{
	struct pkgrec_entry *v = grow_array(l->e, &l->cap, l->n + 1, sizeof(*v));
	char *path = NULL, *target = NULL;
	bool fail = false;
	uint8_t *rl;

	if (!v)
		return -ENOMEM;
	l->e = v;
	path = strdup(e->path);
	if (e->target)
		target = strdup(e->target);
	rl = memdup_or_null(e->reloc, e->reloc_len, &fail);
	if (!path || (e->target && !target) || fail) {
		free(path);
		free(target);
		free(rl);
		return -ENOMEM;
	}
	l->e[l->n] = *e;
	l->e[l->n].path = path;
	l->e[l->n].target = target;
	l->e[l->n].reloc = rl;
	l->n++;
	return 0;
}

int pkgrec_add_path(struct pkgrec_builder *b, const struct pkgrec_entry *e)
{
	return add(&b->paths, e);
}

int pkgrec_add_pyc(struct pkgrec_builder *b, const struct pkgrec_entry *e)
{
	return add(&b->pycs, e);
}

/* Why e breaks the format, or NULL (the reader's rules and the builder's). */
static const char *entry_problem(const struct pkgrec_entry *e, bool pyc)
{
	size_t plen = strlen(e->path);

	if (!plen || plen > PATH_MAX_LEN)
		return "a path empty or too long";
	if (e->mode & ~07777u)
		return "a mode with more than permission bits";
	if (pyc && e->type != NODE_FILE)
		return "a compiled pyc that is not a file";
	switch (e->type) {
	case NODE_DIR:
		return NULL;
	case NODE_SYMLINK:
		if (!e->target || !*e->target || strlen(e->target) > TARGET_MAX)
			return "a symbolic link without a target, or with one too long";
		return NULL;
	case NODE_FILE:
		/* A binary placeholder is replaced in place: a record without inserts. */
		if (e->inserts && !e->reloc_len)
			return "prefix inserts without a relocation record";
		if (!e->reloc_len && e->neutral_size != e->size)
			return "a file not relocated whose two sizes differ";
		return NULL;
	}
	return "an entry of no known type";
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct pkgrec_entry *)a)->path,
	              ((const struct pkgrec_entry *)b)->path);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct info *)a)->name, ((const struct info *)b)->name);
}

struct out {
	uint8_t *p;
	size_t n, cap;
	bool fail;
};

static void put(struct out *o, const void *data, size_t len)
{
	uint8_t *v = o->fail ? NULL : grow_array(o->p, &o->cap, o->n + len, 1);

	if (!v) {
		o->fail = true;
		return;
	}
	o->p = v;
	memcpy(o->p + o->n, data, len);
	o->n += len;
}

static void put_uv(struct out *o, uint64_t v)
{
	uint8_t b[10];

	put(o, b, put_varint(b, v));
}

/* A string: its length, its bytes, then a NUL the reader checks. */
static void put_str(struct out *o, const void *s, size_t len)
{
	put_uv(o, len);
	put(o, s, len);
	put(o, "", 1);
}

static void put_entries(struct out *o, const struct list *l)
{
	put_uv(o, l->n);
	for (size_t i = 0; i < l->n; i++) {
		const struct pkgrec_entry *e = &l->e[i];
		uint8_t type = (uint8_t)e->type;

		put_str(o, e->path, strlen(e->path));
		put(o, &type, 1);
		put_uv(o, e->mode);
		put_uv(o, (uint64_t)e->mtime_ns);
		if (e->type == NODE_FILE) {
			put(o, e->key.b, sizeof(e->key.b));
			put_uv(o, e->size);
			put_uv(o, e->neutral_size);
			put_uv(o, e->inserts);
			put_str(o, e->reloc ? e->reloc : (const uint8_t *)"", e->reloc_len);
		} else if (e->type == NODE_SYMLINK) {
			put_str(o, e->target, strlen(e->target));
		}
	}
}

static int check_list(struct list *l, bool pyc, struct cfs_err *err)
{
	if (l->n)
		qsort(l->e, l->n, sizeof(*l->e), by_path);
	for (size_t i = 0; i < l->n; i++) {
		const char *why = entry_problem(&l->e[i], pyc);

		if (!why && i && strcmp(l->e[i - 1].path, l->e[i].path) == 0)
			why = "a path given twice";
		if (why)
			return err_set(err, -EINVAL, "%s: %s", l->e[i].path, why);
	}
	return 0;
}

int pkgrec_finish(struct pkgrec_builder *b, uint8_t **ret, size_t *ret_len, struct cfs_err *err)
{
	struct out o = {0};
	ZSTD_CCtx *cctx;
	uint8_t *z = NULL;
	size_t bound, n;
	int r;

	if (b->ninfo)
		qsort(b->info, b->ninfo, sizeof(*b->info), by_name);
	for (size_t i = 1; i < b->ninfo; i++)
		if (strcmp(b->info[i - 1].name, b->info[i].name) == 0)
			return err_set(err, -EINVAL, "%s: given twice", b->info[i].name);
	r = check_list(&b->paths, false, err);
	if (!r)
		r = check_list(&b->pycs, true, err);
	if (r)
		return r;
	put(&o, magic, sizeof(magic));
	put_str(&o, b->sha256, strlen(b->sha256));
	put_str(&o, b->md5, strlen(b->md5));
	put_uv(&o, b->size);
	put_str(&o, b->pyver, strlen(b->pyver));
	put_uv(&o, b->ninfo);
	for (size_t i = 0; i < b->ninfo; i++) {
		put_str(&o, b->info[i].name, strlen(b->info[i].name));
		put_str(&o, b->info[i].data, b->info[i].len);
	}
	put_entries(&o, &b->paths);
	put_entries(&o, &b->pycs);
	put(&o, b->meta.url ? "\1" : "", 1);
	if (b->meta.url) {
		put_str(&o, b->meta.url, strlen(b->meta.url));
		put_str(&o, b->meta.fn, strlen(b->meta.fn));
		put_str(&o, b->meta.channel, strlen(b->meta.channel));
		put_str(&o, b->meta.pyver, strlen(b->meta.pyver));
		put(&o, b->meta.key.b, sizeof(b->meta.key.b));
		put_uv(&o, b->meta.size);
	}
	if (o.fail || o.n > RECORD_MAX) {
		r = err_set(err, o.fail ? -ENOMEM : -EFBIG, "%s",
		            o.fail ? "out of memory" : "a package record over 256 MiB");
		goto out;
	}
	bound = ZSTD_compressBound(o.n);
	z = malloc(bound);
	if (!z) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* With its checksum: a flipped byte is an error, not another record (K1). */
	cctx = ZSTD_createCCtx();
	if (!cctx) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, LEVEL);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	n = ZSTD_compress2(cctx, z, bound, o.p, o.n);
	ZSTD_freeCCtx(cctx);
	if (ZSTD_isError(n)) {
		r = err_set(err, -EIO, "zstd: %s", ZSTD_getErrorName(n));
		goto out;
	}
	*ret = z;
	*ret_len = n;
	z = NULL;
out:
	free(z);
	free(o.p);
	return r;
}

/* ---- reading ---- */

struct in {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t get_uv(struct in *d)
{
	uint64_t v = 0;

	if (!d->bad && !get_varint(&d->p, d->end, &v))
		d->bad = true;
	return d->bad ? 0 : v;
}

static const char *get_str(struct in *d, size_t *ret_len)
{
	uint64_t len = get_uv(d);
	const char *s = (const char *)d->p;

	if (d->bad || len >= (uint64_t)(d->end - d->p) || d->p[len] != 0) {
		d->bad = true;
		return NULL;
	}
	d->p += len + 1;
	*ret_len = (size_t)len;
	return s;
}

static const char *get_entries(struct in *d, struct list *l, bool pyc)
{
	uint64_t n = get_uv(d);
	size_t len;

	/* Each entry takes at least 5 bytes: n is bounded by what is left. */
	if (d->bad || n > (uint64_t)(d->end - d->p) / 5)
		return "a count past its end";
	l->e = calloc(n ? n : 1, sizeof(*l->e));
	if (!l->e)
		return "out of memory";
	for (l->n = 0; l->n < n; l->n++) {
		struct pkgrec_entry *e = &l->e[l->n];
		const char *why;
		uint64_t v;

		e->path = get_str(d, &len);
		if (d->bad || d->p >= d->end)
			return "an entry past its end";
		if (strlen(e->path) != len)
			return "a path holding a NUL";
		e->type = (enum node_type) * d->p++;
		/* Read whole, so a value past the field's width is refused, not cut (K1). */
		v = get_uv(d);
		if (v > 07777)
			return "a mode with more than permission bits";
		e->mode = (uint32_t)v;
		e->mtime_ns = (int64_t)get_uv(d);
		if (e->type == NODE_FILE) {
			if (d->bad || d->end - d->p < (ptrdiff_t)sizeof(e->key.b))
				return "an entry past its end";
			memcpy(e->key.b, d->p, sizeof(e->key.b));
			d->p += sizeof(e->key.b);
			e->size = get_uv(d);
			e->neutral_size = get_uv(d);
			v = get_uv(d);
			if (v > UINT32_MAX)
				return "prefix inserts past 2^32";
			e->inserts = (uint32_t)v;
			e->reloc = (const uint8_t *)get_str(d, &e->reloc_len);
			if (!e->reloc_len)
				e->reloc = NULL;
		} else if (e->type == NODE_SYMLINK) {
			e->target = get_str(d, &len);
		}
		if (d->bad)
			return "an entry past its end";
		why = entry_problem(e, pyc);
		if (why)
			return why;
		if (e->type == NODE_SYMLINK && strlen(e->target) != len)
			return "a target holding a NUL";
		if (l->n && strcmp(l->e[l->n - 1].path, e->path) >= 0)
			return "paths not strictly sorted";
	}
	return NULL;
}

/* Format 2's conda-meta record: a byte 0, or 1 and the record. */
static const char *get_meta(struct in *d, struct pkgrec *rec)
{
	struct pkgrec_meta *m = &rec->meta;
	const char **s[] = {&m->url, &m->fn, &m->channel, &m->pyver};
	size_t len;

	if (d->p >= d->end || *d->p > 1)
		return "no conda-meta record's flag";
	if (!*d->p++)
		return NULL;
	for (size_t i = 0; i < sizeof(s) / sizeof(*s); i++) {
		*s[i] = get_str(d, &len);
		if (!d->bad && strlen(*s[i]) != len)
			return "a conda-meta record's string holding a NUL";
	}
	if (d->bad || d->end - d->p < (ptrdiff_t)sizeof(m->key.b))
		return "a conda-meta record past its end";
	memcpy(m->key.b, d->p, sizeof(m->key.b));
	d->p += sizeof(m->key.b);
	m->size = get_uv(d);
	if (d->bad)
		return "a conda-meta record past its end";
	if (!*m->url || !*m->fn)
		return "a conda-meta record without its URL or file name";
	rec->has_meta = true;
	return NULL;
}

static const char *parse(struct pkgrec *rec, size_t n)
{
	struct in d = {rec->buf, rec->buf + n, false};
	const char *why;
	uint64_t ninfo;
	size_t len;

	bool v1 = n >= sizeof(magic1) && memcmp(rec->buf, magic1, sizeof(magic1)) == 0;

	if (!v1 && (n < sizeof(magic) || memcmp(rec->buf, magic, sizeof(magic)) != 0))
		return "not a package record of format 1 or 2";
	d.p += sizeof(magic);
	rec->sha256 = get_str(&d, &len);
	rec->md5 = get_str(&d, &len);
	rec->size = get_uv(&d);
	rec->pyver = get_str(&d, &len);
	ninfo = get_uv(&d);
	if (d.bad || ninfo > (uint64_t)(d.end - d.p) / 4)
		return "a header past its end";
	rec->info = calloc(ninfo ? ninfo : 1, sizeof(*rec->info));
	if (!rec->info)
		return "out of memory";
	for (rec->ninfo = 0; rec->ninfo < ninfo; rec->ninfo++) {
		struct info *in = &rec->info[rec->ninfo];

		in->name = (char *)get_str(&d, &len);
		if (!d.bad && strlen(in->name) != len)
			return "an info name holding a NUL";
		in->data = (uint8_t *)get_str(&d, &in->len);
		if (d.bad)
			return "an info file past its end";
		if (rec->ninfo && strcmp(rec->info[rec->ninfo - 1].name, in->name) >= 0)
			return "info files not strictly sorted";
	}
	why = get_entries(&d, &rec->paths, false);
	if (!why)
		why = get_entries(&d, &rec->pycs, true);
	if (!why && !v1)
		why = get_meta(&d, rec);
	if (!why && d.p != d.end)
		why = "bytes after its end";
	return why;
}

int pkgrec_open(const uint8_t *buf, size_t len, const char *what, struct pkgrec **ret,
                struct cfs_err *err)
{
	unsigned long long size = ZSTD_getFrameContentSize(buf, len);
	struct pkgrec *rec;
	const char *why;
	size_t got;

	if (len < 5 || size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
	    size > RECORD_MAX || !(buf[4] & FRAME_CHECKSUM) ||
	    ZSTD_findFrameCompressedSize(buf, len) != len)
		return err_set(err, -EUCLEAN,
		               "%s: not one zstd frame with its checksum and a known size up to "
		               "256 MiB",
		               what);
	rec = calloc(1, sizeof(*rec));
	if (!rec || !(rec->buf = malloc(size ? size : 1))) {
		free(rec);
		return err_set(err, -ENOMEM, "out of memory");
	}
	got = ZSTD_decompress(rec->buf, size ? size : 1, buf, len);
	if (ZSTD_isError(got) || got != size)
		why = "a damaged zstd frame";
	else
		why = parse(rec, got);
	if (why) {
		int r = strcmp(why, "out of memory") == 0 ? -ENOMEM : -EUCLEAN;

		pkgrec_free(rec);
		return err_set(err, r, "%s: %s", what, why);
	}
	*ret = rec;
	return 0;
}

void pkgrec_free(struct pkgrec *rec)
{
	if (!rec)
		return;
	free(rec->info);
	list_free(&rec->paths, false);
	list_free(&rec->pycs, false);
	free(rec->buf);
	free(rec);
}

const char *pkgrec_sha256(const struct pkgrec *rec)
{
	return rec->sha256;
}

const char *pkgrec_md5(const struct pkgrec *rec)
{
	return rec->md5;
}

uint64_t pkgrec_size(const struct pkgrec *rec)
{
	return rec->size;
}

const struct pkgrec_meta *pkgrec_meta(const struct pkgrec *rec)
{
	return rec->has_meta ? &rec->meta : NULL;
}

const char *pkgrec_pyver(const struct pkgrec *rec)
{
	return rec->pyver;
}

bool pkgrec_compiled_for(const struct pkgrec *rec, const char *pyver)
{
	return pyver && strcmp(rec->pyver, pyver) == 0;
}

int pkgrec_info(const struct pkgrec *rec, const char *name, const uint8_t **ret, size_t *ret_len)
{
	struct info key = {.name = (char *)name};
	const struct info *in =
	        rec->ninfo ? bsearch(&key, rec->info, rec->ninfo, sizeof(*rec->info), by_name)
	                   : NULL;

	if (!in)
		return -ENOENT;
	*ret = in->data;
	*ret_len = in->len;
	return 0;
}

size_t pkgrec_npaths(const struct pkgrec *rec)
{
	return rec->paths.n;
}

const struct pkgrec_entry *pkgrec_path_at(const struct pkgrec *rec, size_t i)
{
	return i < rec->paths.n ? &rec->paths.e[i] : NULL;
}

static const struct pkgrec_entry *find(const struct list *l, const char *path)
{
	struct pkgrec_entry key = {.path = path};

	return l->n ? bsearch(&key, l->e, l->n, sizeof(*l->e), by_path) : NULL;
}

const struct pkgrec_entry *pkgrec_path(const struct pkgrec *rec, const char *path)
{
	return find(&rec->paths, path);
}

size_t pkgrec_npycs(const struct pkgrec *rec)
{
	return rec->pycs.n;
}

const struct pkgrec_entry *pkgrec_pyc_at(const struct pkgrec *rec, size_t i)
{
	return i < rec->pycs.n ? &rec->pycs.e[i] : NULL;
}

const struct pkgrec_entry *pkgrec_pyc(const struct pkgrec *rec, const char *path)
{
	return find(&rec->pycs, path);
}
