// SPDX-License-Identifier: MIT
/*
 * Conda package archives (pkgarchive.h): the digest a lock records, and unpacking into one
 * data file and an index of the package's paths.
 *
 * A .tar.bz2 is one tar (info/ and the payload). A .conda (CEP 35) is a zip, its members
 * stored, of metadata.json and two zstd-compressed tars, info-<dist>.tar.zst and
 * pkg-<dist>.tar.zst; each tar is read by a second libarchive reader whose input is the
 * zip member's data as the zip reader hands it out, so neither is ever written anywhere.
 * Archives come from the network: everything in them is treated as hostile.
 *
 * Invariants:
 * A1: every path is relative, with no "", "." or ".." component, and none lies beneath a
 *     symbolic link or a regular file of the archive: each directory on the way is looked
 *     up in the set of the archive's paths, and one the archive has not named is added as
 *     a directory. Nothing is written but the data file.
 * A2: each path is named once: the set refuses a second entry of any kind (a directory
 *     the archive lists after the files in it excepted), and a hard link must name a
 *     regular file before it in the archive.
 * A3: a file's range of the data file holds the archive's bytes and size: every data
 *     block is written where the archive puts it within the range, none past its end,
 *     and a total that differs from the entry's size fails unless the entry is sparse
 *     (then the size is the entry's, the holes zeros). Each file has a range of its own,
 *     after every range before it, which no later entry writes; a hard link shares its
 *     target's.
 * A4: memory is bounded: the archive is read in READ_CHUNK pieces and data is written
 *     from libarchive's own buffers; the path set, the only thing that grows with the
 *     archive, is capped at MAX_PATH_BYTES of names and link targets.
 */
#include "pkgarchive.h"

#include "err.h"
#include "hex.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

/* One read of the archive: large, since the archive is read once from start to end. */
#define READ_CHUNK (1u << 20)
/* The names of a package's paths: the largest real ones hold a few MB of them. */
#define MAX_PATH_BYTES (64u << 20)

/* ---- the digest ---- */

static bool given(const char *s)
{
	return s && *s;
}

/* The hex of digest ctx into out (2 * its size + 1 bytes). */
static int hex_final(EVP_MD_CTX *ctx, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_DigestFinal_ex(ctx, md, &mdlen))
		return -EIO;
	hex_encode(md, mdlen, out);
	return 0;
}

int pkgarchive_verify(int fd, const char *sha256, const char *md5, const char *what,
                      struct pkgarchive_digests *ret, struct cfs_err *err)
{
	bool use_sha = given(sha256);
	const char *want = use_sha ? sha256 : md5, *alg = use_sha ? "sha256" : "md5";
	struct pkgarchive_digests got = {0};
	EVP_MD_CTX *sctx = NULL, *mctx = NULL;
	uint8_t *buf = NULL;
	off_t off = 0;
	int r;

	if (!given(sha256) && !given(md5))
		return err_set(err, -EINVAL, "%s: the lock gives neither a sha256 nor an md5",
		               what);
	if (given(sha256) && (strlen(sha256) != 64 || !hex_only(sha256, 64, true)))
		return err_set(err, -EINVAL, "%s: the lock's sha256 is not 64 hex digits: %.80s",
		               what, sha256);
	if (given(md5) && (strlen(md5) != 32 || !hex_only(md5, 32, true)))
		return err_set(err, -EINVAL, "%s: the lock's md5 is not 32 hex digits: %.80s", what,
		               md5);
	sctx = EVP_MD_CTX_new();
	mctx = EVP_MD_CTX_new();
	buf = malloc(READ_CHUNK);
	if (!sctx || !mctx || !buf) {
		r = err_set(err, -ENOMEM, "%s: out of memory", what);
		goto out;
	}
	/* Both at once: the lock gives one, conda's record names both. */
	if (!EVP_DigestInit_ex(sctx, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(mctx, EVP_md5(), NULL)) {
		r = err_set(err, -EIO, "%s: sha256 or md5 is not available from libcrypto", what);
		goto out;
	}
	for (;;) {
		ssize_t n = pread(fd, buf, READ_CHUNK, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(err, neg_errno(), "%s: %s", what, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (!EVP_DigestUpdate(sctx, buf, (size_t)n) ||
		    !EVP_DigestUpdate(mctx, buf, (size_t)n)) {
			r = err_set(err, -EIO, "%s: computing its digests failed", what);
			goto out;
		}
		off += n;
	}
	if (hex_final(sctx, got.sha256) < 0 || hex_final(mctx, got.md5) < 0) {
		r = err_set(err, -EIO, "%s: computing its digests failed", what);
		goto out;
	}
	got.size = (uint64_t)off;
	r = strcasecmp(use_sha ? got.sha256 : got.md5, want) == 0
	            ? 0
	            : err_set(err, -EBADMSG, "%s: %s mismatch: the lock says %s, the archive is %s",
	                      what, alg, want, use_sha ? got.sha256 : got.md5);
	if (!r && ret)
		*ret = got;
out:
	EVP_MD_CTX_free(sctx);
	EVP_MD_CTX_free(mctx);
	free(buf);
	return r;
}

/* ---- the archive's paths ---- */

enum kind {
	K_FILE,
	K_LINK,
	K_DIR,      /* a directory the archive lists */
	K_MADE_DIR, /* a directory made for the paths under it, which the archive does not list */
};

struct node {
	char *path; /* owned; NULL: an empty slot */
	size_t len;
	uint64_t hash;
	enum kind kind;
	mode_t mode;           /* directories: what they get once everything is in them */
	struct timespec mtime; /* tv_nsec UTIME_OMIT when the archive has none */
	/* A file's range of the data file, a link's target (owned). */
	uint64_t off, size;
	char *target;
};

/* Open addressing, linear probing, at most half full. */
struct pathset {
	struct node *v;
	size_t cap, n, bytes;
};

static struct node *set_find(const struct pathset *s, const char *p, size_t len, uint64_t h)
{
	size_t mask = s->cap - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct node *n = &s->v[i];

		if (!n->path || (n->hash == h && n->len == len && memcmp(n->path, p, len) == 0))
			return n;
	}
}

static struct node *set_lookup(const struct pathset *s, const char *p, size_t len)
{
	struct node *n;

	if (!s->cap)
		return NULL;
	n = set_find(s, p, len, XXH3_64bits(p, len));
	return n->path ? n : NULL;
}

static int set_grow(struct pathset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 1024;
	struct node *v = calloc(cap, sizeof(*v));
	struct pathset t = {.v = v, .cap = cap};

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++)
		if (s->v[i].path)
			*set_find(&t, s->v[i].path, s->v[i].len, s->v[i].hash) = s->v[i];
	free(s->v);
	s->v = v;
	s->cap = cap;
	return 0;
}

static void set_free(struct pathset *s)
{
	for (size_t i = 0; i < s->cap; i++) {
		free(s->v[i].path);
		free(s->v[i].target);
	}
	free(s->v);
}

/* ---- unpacking ---- */

/* The archive at fd, read with pread (the fd's offset is the caller's). */
struct source {
	int fd;
	int64_t off, size;
	uint8_t *buf;
	int err; /* errno of a failed read: an I/O error, not a corrupt archive */
};

struct xtract {
	int data; /* the data file */
	uint64_t data_end;
	const char *what;
	struct cfs_err *err;
	struct source src;
	struct pathset set;
};

static la_ssize_t source_read(struct archive *a, void *data, const void **out)
{
	struct source *s = data;
	ssize_t n;

	do
		n = pread(s->fd, s->buf, READ_CHUNK, s->off);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		s->err = errno;
		archive_set_error(a, errno, "%s", strerror(errno));
		return -1;
	}
	s->off += n;
	*out = s->buf;
	return n;
}

static la_int64_t source_seek(struct archive *a, void *data, la_int64_t off, int whence)
{
	struct source *s = data;
	int64_t pos = whence == SEEK_SET ? off : whence == SEEK_CUR ? s->off + off : s->size + off;

	if (pos < 0) {
		archive_set_error(a, EINVAL, "seek before the start of the archive");
		return ARCHIVE_FATAL;
	}
	s->off = pos;
	return pos;
}

static la_int64_t source_skip(struct archive *a, void *data, la_int64_t n)
{
	struct source *s = data;

	(void)a;
	s->off += n;
	return n;
}

static int open_source(struct xtract *x, struct archive *a, bool seekable)
{
	archive_read_set_read_callback(a, source_read);
	archive_read_set_skip_callback(a, source_skip);
	if (seekable)
		archive_read_set_seek_callback(a, source_seek);
	archive_read_set_callback_data(a, &x->src);
	return archive_read_open1(a);
}

/* What libarchive said of a (member: the .conda member being read, or NULL). */
static int corrupt(struct xtract *x, struct archive *a, const char *member)
{
	const char *msg = archive_error_string(a);

	if (x->src.err)
		return err_set(x->err, -x->src.err, "%s: %s", x->what, strerror(x->src.err));
	return err_set(x->err, -EBADMSG, "%s: corrupt archive: %s%s%s", x->what,
	               member ? member : "", member ? ": " : "", msg ? msg : "unknown error");
}

static int refuse(struct xtract *x, const char *path, const char *reason)
{
	return err_set(x->err, -EINVAL, "%s: %s: %s", x->what, path, reason);
}

/* Why p (len bytes) may not be a path of a package, or NULL. */
static const char *path_problem(const char *p, size_t len)
{
	if (len == 0)
		return "an empty path";
	if (p[0] == '/')
		return "an absolute path";
	for (size_t i = 0; i <= len;) {
		size_t j = i;

		while (j < len && p[j] != '/')
			j++;
		if (j == i)
			return "an empty path component";
		if (j - i == 1 && p[i] == '.')
			return "a \".\" component";
		if (j - i == 2 && p[i] == '.' && p[i + 1] == '.')
			return "a \"..\" component";
		i = j + 1;
	}
	return NULL;
}

static int add_path(struct xtract *x, const char *p, size_t len, enum kind kind, struct node **ret)
{
	uint64_t h = XXH3_64bits(p, len);
	struct node *n;

	if (x->set.bytes + len + 1 > MAX_PATH_BYTES)
		return err_set(x->err, -EFBIG,
		               "%s: more than %u MiB of path names and link targets", x->what,
		               MAX_PATH_BYTES >> 20);
	if (2 * (x->set.n + 1) > x->set.cap && set_grow(&x->set) < 0)
		return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
	n = set_find(&x->set, p, len, h);
	n->path = strndup(p, len);
	if (!n->path)
		return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
	n->len = len;
	n->hash = h;
	n->kind = kind;
	n->mode = 0755;
	n->mtime.tv_nsec = UTIME_OMIT;
	x->set.n++;
	x->set.bytes += len + 1;
	*ret = n;
	return 0;
}

/* The component dir[0, j) on the way to path is neither a link nor a file of the archive
 * (A1): *ret its node, or NULL when the archive has not named it. */
static int component_check(struct xtract *x, const char *path, const char *dir, size_t j,
                           struct node **ret)
{
	struct node *n = set_lookup(&x->set, dir, j);

	if (n && n->kind == K_LINK)
		return err_set(x->err, -EINVAL, "%s: %s: reaches through the symbolic link %.*s",
		               x->what, path, (int)j, dir);
	if (n && n->kind == K_FILE)
		return err_set(x->err, -EINVAL, "%s: %s: %.*s is a regular file", x->what, path,
		               (int)j, dir);
	*ret = n;
	return 0;
}

/* The entry's mtime, tv_nsec UTIME_OMIT when the archive has none. */
static struct timespec entry_mtime(struct archive_entry *e)
{
	return (struct timespec){.tv_sec = archive_entry_mtime(e),
	                         .tv_nsec = archive_entry_mtime_is_set(e)
	                                            ? archive_entry_mtime_nsec(e)
	                                            : UTIME_OMIT};
}

static int write_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return neg_errno();
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

static int64_t ts_ns(const struct timespec *ts, int64_t now)
{
	return ts->tv_nsec == UTIME_OMIT ? now : (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* The directories on the way to path[0, dirlen) in the set, those the archive has not
 * named added as made ones. */
static int unpack_parents(struct xtract *x, const char *path, size_t dirlen)
{
	for (size_t i = 0; i < dirlen;) {
		size_t j = i;
		struct node *n;
		int r;

		while (j < dirlen && path[j] != '/')
			j++;
		r = component_check(x, path, path, j, &n);
		if (r == 0 && !n)
			r = add_path(x, path, j, K_MADE_DIR, &n);
		if (r < 0)
			return r;
		i = j + 1;
	}
	return 0;
}

/* A regular file's data, into the data file's next range (A3): *ret_off and *ret_size
 * are that range. */
static int unpack_data(struct xtract *x, struct archive *a, struct archive_entry *e,
                       const char *path, const char *member, uint64_t *ret_off, uint64_t *ret_size)
{
	int64_t size = archive_entry_size(e), end = 0;

	if (size < 0 || (uint64_t)size > (uint64_t)INT64_MAX - x->data_end)
		return err_set(x->err, -EBADMSG, "%s: corrupt archive: %s: a size of %jd", x->what,
		               path, (intmax_t)size);
	for (;;) {
		const void *buf;
		size_t n;
		la_int64_t off;
		int r = archive_read_data_block(a, &buf, &n, &off);

		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK)
			return corrupt(x, a, member);
		/* Never past its own range (A3). */
		if (off < 0 || (uint64_t)off > (uint64_t)size || n > (uint64_t)(size - off))
			return err_set(x->err, -EBADMSG,
			               "%s: corrupt archive: %s: data past its size of %jd",
			               x->what, path, (intmax_t)size);
		r = write_all(x->data, buf, n, (off_t)(x->data_end + (uint64_t)off));
		if (r < 0)
			return err_set(x->err, r, "%s: %s: writing its data: %s", x->what, path,
			               strerror(-r));
		if (off + (int64_t)n > end)
			end = off + (int64_t)n;
	}
	if (end != size && !(end < size && archive_entry_sparse_count(e) > 0))
		return err_set(x->err, -EBADMSG,
		               "%s: corrupt archive: %s: %jd bytes of data for a size of %jd",
		               x->what, path, (intmax_t)end, (intmax_t)size);
	*ret_off = x->data_end;
	*ret_size = (uint64_t)size;
	x->data_end += (uint64_t)size;
	return 0;
}

/* An entry of the archive into the set, its data into the data file. */
static int unpack_entry(struct xtract *x, struct archive *a, struct archive_entry *e,
                        const char *path, size_t len, const char *member)
{
	const char *hardlink = archive_entry_hardlink(e), *slash = memrchr(path, '/', len);
	mode_t type = archive_entry_filetype(e);
	struct timespec mtime = entry_mtime(e);
	struct node *n;
	uint64_t off = 0, size = 0;
	int r;

	r = unpack_parents(x, path, slash ? (size_t)(slash - path) : 0);
	if (r < 0)
		return r;
	if (hardlink) {
		size_t tlen = strlen(hardlink);
		const struct node *t;
		mode_t mode;

		if (path_problem(hardlink, tlen) || !(t = set_lookup(&x->set, hardlink, tlen)) ||
		    t->kind != K_FILE)
			return err_set(x->err, -EINVAL,
			               "%s: %s: a hard link to %s, which is not a regular file "
			               "before it in the archive",
			               x->what, path, hardlink);
		if (archive_entry_size(e) > 0)
			return refuse(x, path, "a hard link with data of its own");
		/* One inode: the target's bytes, mode and mtime. */
		off = t->off;
		size = t->size;
		mode = t->mode;
		mtime = t->mtime;
		r = add_path(x, path, len, K_FILE, &n);
		if (r < 0)
			return r;
		n->off = off;
		n->size = size;
		n->mode = mode;
		n->mtime = mtime;
		return 0;
	}
	switch (type) {
	case AE_IFREG:
		r = unpack_data(x, a, e, path, member, &off, &size);
		if (r == 0)
			r = add_path(x, path, len, K_FILE, &n);
		if (r)
			return r;
		n->off = off;
		n->size = size;
		n->mode = archive_entry_perm(e) & 0777;
		n->mtime = mtime;
		return 0;
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);

		if (!target || !*target)
			return refuse(x, path, "a symbolic link without a target");
		if (strlen(target) > 4095)
			return refuse(x, path, "a symbolic link whose target is over 4095 bytes");
		r = add_path(x, path, len, K_LINK, &n);
		if (r < 0)
			return r;
		/* Targets are kept with the names, and count against their cap (A4). */
		x->set.bytes += strlen(target) + 1;
		if (x->set.bytes > MAX_PATH_BYTES)
			return err_set(x->err, -EFBIG,
			               "%s: more than %u MiB of path names and link targets",
			               x->what, MAX_PATH_BYTES >> 20);
		n->target = strdup(target);
		if (!n->target)
			return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
		n->mode = 0777;
		n->mtime = mtime;
		return 0;
	}
	default: /* AE_IFDIR */
		n = set_lookup(&x->set, path, len);
		if (!n) {
			r = add_path(x, path, len, K_DIR, &n);
			if (r < 0)
				return r;
		}
		n->kind = K_DIR;
		n->mode = archive_entry_perm(e) & 0777;
		n->mtime = mtime;
		return 0;
	}
}

static const char *type_name(mode_t type)
{
	switch (type) {
	case AE_IFIFO:
		return "a fifo, which a package may not hold";
	case AE_IFCHR:
		return "a character device, which a package may not hold";
	case AE_IFBLK:
		return "a block device, which a package may not hold";
	case AE_IFSOCK:
		return "a socket, which a package may not hold";
	default:
		return "an entry of unknown type, which a package may not hold";
	}
}

static int put_entry(struct xtract *x, struct archive *a, struct archive_entry *e,
                     const char *member)
{
	const char *path = archive_entry_pathname(e), *hardlink = archive_entry_hardlink(e);
	mode_t type = archive_entry_filetype(e);
	const char *problem;
	struct node *n;
	size_t len;

	if (!path)
		return err_set(x->err, -EINVAL, "%s: an entry without a path", x->what);
	len = strlen(path);
	/* tar writes a directory's name with a slash at its end. */
	if (type == AE_IFDIR && len > 1 && path[len - 1] == '/')
		len--;
	problem = path_problem(path, len);
	if (problem)
		return refuse(x, path, problem);
	if (!hardlink && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
		return refuse(x, path, type_name(type));
	n = set_lookup(&x->set, path, len);
	if (n && !(n->kind == K_MADE_DIR && type == AE_IFDIR && !hardlink))
		return refuse(x, path,
		              n->kind == K_MADE_DIR ? "already the directory of paths before it"
		                                    : "named twice in the archive");
	return unpack_entry(x, a, e, path, len, member);
}

static int read_tar(struct xtract *x, struct archive *a, const char *member)
{
	struct archive_entry *e;

	for (;;) {
		int r = archive_read_next_header(a, &e);

		if (r == ARCHIVE_EOF)
			return 0;
		if (r != ARCHIVE_OK)
			return corrupt(x, a, member);
		r = put_entry(x, a, e, member);
		if (r < 0)
			return r;
	}
}

static int read_tar_bz2(struct xtract *x)
{
	struct archive *a = archive_read_new();
	int r;

	if (!a)
		return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
	archive_read_support_filter_bzip2(a);
	archive_read_support_format_tar(a);
	r = open_source(x, a, false) != ARCHIVE_OK ? corrupt(x, a, NULL) : read_tar(x, a, NULL);
	archive_read_free(a);
	return r;
}

/* The inner tar's input: the data of the zip member being read. */
struct member_pipe {
	struct archive *outer;
	int64_t pos;
};

static la_ssize_t member_read(struct archive *a, void *data, const void **out)
{
	struct member_pipe *p = data;
	la_int64_t off;
	size_t n;
	int r = archive_read_data_block(p->outer, out, &n, &off);

	if (r == ARCHIVE_EOF)
		return 0;
	if (r != ARCHIVE_OK) {
		const char *msg = archive_error_string(p->outer);

		archive_set_error(a, EBADMSG, "%s", msg ? msg : "unknown error");
		return -1;
	}
	if (off != p->pos) {
		archive_set_error(a, EBADMSG, "a zip member with a hole");
		return -1;
	}
	p->pos += (int64_t)n;
	return (la_ssize_t)n;
}

static int read_member_tar(struct xtract *x, struct archive *outer, const char *member)
{
	struct member_pipe p = {.outer = outer};
	struct archive *a = archive_read_new();
	const void *buf;
	la_int64_t off;
	size_t n;
	int r;

	if (!a)
		return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	r = archive_read_open(a, &p, NULL, member_read, NULL) != ARCHIVE_OK
	            ? corrupt(x, a, member)
	            : read_tar(x, a, member);
	/* The rest of the member after the tar's end, read so that the zip reader checks the
	 * member's CRC-32 over all of it. */
	if (r == 0) {
		int ar;

		while ((ar = archive_read_data_block(outer, &buf, &n, &off)) == ARCHIVE_OK)
			;
		if (ar != ARCHIVE_EOF)
			r = corrupt(x, outer, member);
	}
	archive_read_free(a);
	return r;
}

static bool member_of_kind(const char *name, const char *kind)
{
	size_t len = strlen(name), klen = strlen(kind);

	return len > klen + strlen(".tar.zst") && strncmp(name, kind, klen) == 0 &&
	       strcmp(name + len - strlen(".tar.zst"), ".tar.zst") == 0 && !strchr(name, '/');
}

static int read_conda(struct xtract *x)
{
	struct archive *a = archive_read_new();
	bool seen_meta = false, seen_info = false, seen_pkg = false;
	struct archive_entry *e;
	int r;

	if (!a)
		return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
	/* The central directory says what the zip holds: the seekable reader goes by it. */
	archive_read_support_format_zip_seekable(a);
	if (open_source(x, a, true) != ARCHIVE_OK) {
		r = corrupt(x, a, NULL);
		goto out;
	}
	for (;;) {
		const char *name;
		bool *seen;

		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK) {
			r = corrupt(x, a, NULL);
			goto out;
		}
		name = archive_entry_pathname(e);
		if (!name)
			name = "";
		seen = strcmp(name, "metadata.json") == 0 ? &seen_meta
		       : member_of_kind(name, "info-")    ? &seen_info
		       : member_of_kind(name, "pkg-")     ? &seen_pkg
		                                          : NULL;
		if (!seen || archive_entry_filetype(e) != AE_IFREG) {
			r = refuse(x, name,
			           "not a member of a .conda (metadata.json, info-*.tar.zst, "
			           "pkg-*.tar.zst)");
			goto out;
		}
		if (*seen) {
			r = refuse(x, name, "a second member of its kind in the .conda");
			goto out;
		}
		*seen = true;
		if (seen == &seen_meta)
			r = archive_read_data_skip(a) == ARCHIVE_OK ? 0 : corrupt(x, a, name);
		else
			r = read_member_tar(x, a, name);
		if (r < 0)
			goto out;
	}
	if (!seen_meta || !seen_info || !seen_pkg) {
		r = err_set(x->err, -EINVAL, "%s: a .conda without its %s member", x->what,
		            !seen_meta   ? "metadata.json"
		            : !seen_info ? "info-*.tar.zst"
		                         : "pkg-*.tar.zst");
		goto out;
	}
	r = 0;
out:
	archive_read_free(a);
	return r;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Read the archive at x->src.fd (its format from name) into x's set and data file. */
static int read_archive(struct xtract *x, const char *name)
{
	bool conda = ends_with(name, ".conda");
	locale_t utf8, old;
	struct stat st;
	int r;

	if (!conda && !ends_with(name, ".tar.bz2"))
		return err_set(x->err, -EINVAL, "%s: not a .conda or a .tar.bz2", x->what);
	if (fstat(x->src.fd, &st) < 0)
		return err_set(x->err, neg_errno(), "%s: %s", x->what, strerror(errno));
	x->src.size = st.st_size;
	/* Paths are UTF-8 (pax headers say so, paths.json is JSON), and libarchive converts
	 * them to the locale's charset: under the C locale it refuses every non-ASCII name.
	 * A UTF-8 locale for this thread only, while the archive is read, keeps them as they
	 * are whatever the process's locale. */
	utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (!utf8)
		return err_set(x->err, neg_errno(), "%s: the C.UTF-8 locale: %s", x->what,
		               strerror(errno));
	x->src.buf = malloc(READ_CHUNK);
	if (!x->src.buf) {
		freelocale(utf8);
		return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
	}
	old = uselocale(utf8);
	r = conda ? read_conda(x) : read_tar_bz2(x);
	uselocale(old);
	freelocale(utf8);
	return r;
}

static void xtract_free(struct xtract *x)
{
	set_free(&x->set);
	free(x->src.buf);
}

/* ---- an unpacked package ---- */

struct pkgarchive_files {
	int fd;
	size_t n;
	struct pkgarchive_entry *v; /* sorted by path bytes; paths and targets owned */
};

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct pkgarchive_entry *)a)->path,
	              ((const struct pkgarchive_entry *)b)->path);
}

/* The set's paths as entries of f, taken from the set. */
static int files_from_set(struct xtract *x, struct pkgarchive_files *f)
{
	struct timespec now;
	int64_t now_ns;

	clock_gettime(CLOCK_REALTIME, &now);
	now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	f->v = calloc(x->set.n ? x->set.n : 1, sizeof(*f->v));
	if (!f->v)
		return err_set(x->err, -ENOMEM, "%s: out of memory", x->what);
	for (size_t i = 0; i < x->set.cap; i++) {
		struct node *n = &x->set.v[i];
		struct pkgarchive_entry *e = &f->v[f->n];

		if (!n->path)
			continue;
		e->path = n->path;
		e->type = n->kind == K_FILE   ? NODE_FILE
		          : n->kind == K_LINK ? NODE_SYMLINK
		                              : NODE_DIR;
		e->mode = (uint32_t)n->mode;
		e->mtime_ns = ts_ns(&n->mtime, now_ns);
		e->size = n->kind == K_LINK ? strlen(n->target) : n->kind == K_FILE ? n->size : 0;
		e->off = n->off;
		e->target = n->target;
		n->path = NULL;
		n->target = NULL;
		f->n++;
	}
	qsort(f->v, f->n, sizeof(*f->v), cmp_entry);
	return 0;
}

void pkgarchive_files_free(struct pkgarchive_files *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		free((char *)f->v[i].path);
		free((char *)f->v[i].target);
	}
	free(f->v);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

int pkgarchive_unpack(int fd, const char *name, int data_fd, const char *what,
                      struct pkgarchive_files **ret, struct cfs_err *err)
{
	struct xtract x = {.data = data_fd, .what = what, .err = err, .src = {.fd = fd}};
	struct pkgarchive_files *f = calloc(1, sizeof(*f));
	int r;

	if (!f)
		return err_set(err, -ENOMEM, "%s: out of memory", what);
	f->fd = -1;
	r = read_archive(&x, name);
	/* A sparse file's last hole is past what was written. */
	if (r == 0 && ftruncate(data_fd, (off_t)x.data_end) < 0)
		r = err_set(err, neg_errno(), "%s: its data: %s", what, strerror(errno));
	if (r == 0)
		r = files_from_set(&x, f);
	if (r == 0) {
		f->fd = fcntl(data_fd, F_DUPFD_CLOEXEC, 0);
		if (f->fd < 0)
			r = err_set(err, neg_errno(), "%s: its data: %s", what, strerror(errno));
	}
	xtract_free(&x);
	if (r) {
		pkgarchive_files_free(f);
		return r;
	}
	*ret = f;
	return 0;
}

const struct pkgarchive_entry *pkgarchive_files_find(const struct pkgarchive_files *f,
                                                     const char *path)
{
	struct pkgarchive_entry key = {.path = path};

	return bsearch(&key, f->v, f->n, sizeof(*f->v), cmp_entry);
}

size_t pkgarchive_files_count(const struct pkgarchive_files *f)
{
	return f->n;
}

const struct pkgarchive_entry *pkgarchive_files_entry(const struct pkgarchive_files *f, size_t i)
{
	return &f->v[i];
}

int pkgarchive_files_fd(const struct pkgarchive_files *f)
{
	return f->fd;
}

int pkgarchive_files_read(const struct pkgarchive_files *f, const char *path, size_t max,
                          char **ret, size_t *ret_len)
{
	const struct pkgarchive_entry *e = pkgarchive_files_find(f, path);
	char *buf;

	if (!e)
		return -ENOENT;
	if (e->type != NODE_FILE)
		return -EINVAL;
	if (e->size > max)
		return -EFBIG;
	buf = malloc(e->size + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t done = 0; done < e->size;) {
		ssize_t n = pread(f->fd, buf + done, e->size - done, (off_t)(e->off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Shorter than unpacking left it: the data file is ours alone. */
			int r = n < 0 ? neg_errno() : -EIO;

			free(buf);
			return r;
		}
		done += (size_t)n;
	}
	buf[e->size] = '\0';
	*ret = buf;
	*ret_len = e->size;
	return 0;
}
