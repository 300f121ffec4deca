// SPDX-License-Identifier: MIT
/*
 * Reading a solved prefix's conda-meta: one package per conda-meta/<name>.json record
 * (parsed leniently, as conda, micromamba and rattler each write them differently), plus
 * one pip package per site-packages *.dist-info directory that no record owns; and, per
 * file, the prefix placeholder a record lists, for relocation at ingest. Everything is
 * reached from the prefix's descriptor with no symbolic link followed (useropen.h): a
 * link stands for itself in the stored tree, and nothing is read through one.
 */
#include "condameta.h"

#include "err.h"
#include "pkgset.h"
#include "textfile.h"
#include "useropen.h"
#include "yamldoc.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* METADATA holds the long description too; a few MB at most in practice. */
#define METADATA_MAX_BYTES (16u << 20)
/* A record takes 330-490 bytes per file it lists (python's: 0.7 MB for 1,875 files); the
 * largest packages list 12,000-15,000 files (pytorch, boost's headers): about 6 MB. */
#define RECORD_MAX_BYTES (32u << 20)

struct placeholder {
	char *path; /* relative to the prefix, as installed */
	size_t len;
	bool binary;
};

struct condameta {
	struct pkgset *set;
	struct placeholder *ph; /* sorted by path, unique */
	size_t nph, capph;
};

/* A growable array of strings (record file names, dist-info directories conda owns). */
struct strlist {
	char **v;
	size_t n, cap;
};

static int strlist_add(struct strlist *l, char *s)
{
	if (!s)
		return -ENOMEM;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v;

		if (cap > SIZE_MAX / sizeof(*v)) {
			free(s);
			return -ENOMEM;
		}
		v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			free(s);
			return -ENOMEM;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = s;
	return 0;
}

static void strlist_release(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool strlist_has(const struct strlist *l, const char *s)
{
	return l->n && bsearch(&s, l->v, l->n, sizeof(*l->v), str_cmp);
}

/* What the records agree the platform is: the subdir of every record that is not noarch. */
struct platform_vote {
	char *subdir;
	char *from; /* the record that named it first */
};

struct reader {
	const char *prefix;
	struct condameta *m;
	struct platform_vote vote;
	struct strlist owned; /* "lib/pythonX.Y/site-packages/<name>.dist-info" in a record */
};

static int placeholder_add(struct condameta *m, const char *path, size_t len, bool binary)
{
	if (m->nph == m->capph) {
		size_t cap = m->capph ? m->capph * 2 : 64;
		struct placeholder *ph;

		if (cap > SIZE_MAX / sizeof(*ph))
			return -ENOMEM;
		ph = realloc(m->ph, cap * sizeof(*ph));
		if (!ph)
			return -ENOMEM;
		m->ph = ph;
		m->capph = cap;
	}
	m->ph[m->nph].path = strdup(path);
	if (!m->ph[m->nph].path)
		return -ENOMEM;
	m->ph[m->nph].len = len;
	m->ph[m->nph].binary = binary;
	m->nph++;
	return 0;
}

/*
 * conda writes a noarch: python package's paths_data with the package's own paths
 * ("site-packages/pip/__init__.py") while files[] has where they went
 * ("lib/python3.13/site-packages/pip/__init__.py"). The directory above site-packages,
 * as files[] spells it ("lib/python3.13/"), or NULL.
 */
static const char *record_python_dir(const struct ynode *files, size_t *ret_len)
{
	for (size_t i = 0; i < ynode_count(files); i++) {
		const char *f = ynode_str(ynode_item(files, i)), *sp;

		if (!f || strncmp(f, "lib/python", 10) != 0)
			continue;
		sp = strstr(f + 10, "/site-packages/");
		if (sp && !memchr(f + 10, '/', (size_t)(sp - (f + 10)))) {
			*ret_len = (size_t)(sp + 1 - f);
			return f;
		}
	}
	return NULL;
}

static int record_placeholders(struct reader *rd, const struct ynode *rec, const char *display,
                               struct cfs_err *err)
{
	const struct ynode *paths = ynode_get(ynode_get(rec, "paths_data"), "paths");
	const char *pydir = NULL;
	size_t pydir_len = 0;
	bool looked = false;

	for (size_t i = 0; i < ynode_count(paths); i++) {
		const struct ynode *e = ynode_item(paths, i);
		const char *ph = ynode_str(ynode_get(e, "prefix_placeholder"));
		const char *path = ynode_str(ynode_get(e, "_path"));
		const char *mode = ynode_str(ynode_get(e, "file_mode"));
		bool binary;
		char *mapped = NULL;
		int r;

		if (!ph)
			continue;
		if (!path || !*ph)
			return err_set(
			        err, -EINVAL,
			        "%s:%zu: a paths_data entry with a prefix_placeholder needs a "
			        "_path and a non-empty placeholder",
			        display, ynode_line(e));
		if (!mode || strcmp(mode, "text") == 0)
			binary = false;
		else if (strcmp(mode, "binary") == 0)
			binary = true;
		else
			return err_set(err, -EINVAL,
			               "%s:%zu: file_mode '%s' is neither text nor binary", display,
			               ynode_line(e), mode);
		if (strncmp(path, "site-packages/", 14) == 0) {
			if (!looked)
				pydir = record_python_dir(ynode_get(rec, "files"), &pydir_len);
			looked = true;
			if (pydir && asprintf(&mapped, "%.*s%s", (int)pydir_len, pydir, path) < 0)
				return err_set(err, -ENOMEM, "%s: out of memory", display);
		}
		r = placeholder_add(rd->m, mapped ? mapped : path, strlen(ph), binary);
		free(mapped);
		if (r < 0)
			return err_set(err, r, "%s: out of memory", display);
	}
	return 0;
}

/* Remember "<...>.dist-info" directories that a record installed. */
static int record_owned(struct reader *rd, const struct ynode *rec, const char *display,
                        struct cfs_err *err)
{
	const struct ynode *files = ynode_get(rec, "files");
	const char *last = NULL;
	size_t last_len = 0;

	for (size_t i = 0; i < ynode_count(files); i++) {
		const char *f = ynode_str(ynode_item(files, i)), *d;
		size_t len;

		if (!f || !(d = strstr(f, ".dist-info/")))
			continue;
		len = (size_t)(d - f) + strlen(".dist-info");
		if (last && last_len == len && memcmp(last, f, len) == 0)
			continue;
		if (strlist_add(&rd->owned, strndup(f, len)) < 0)
			return err_set(err, -ENOMEM, "%s: out of memory", display);
		last = f;
		last_len = len;
	}
	return 0;
}

static int record_read(struct reader *rd, int metafd, const char *file, struct cfs_err *err)
{
	struct pkg p = {.kind = PKG_CONDA};
	struct yamldoc *doc = NULL;
	const struct ynode *rec;
	char *display = NULL, *url = NULL, *fname;
	const char *url_channel, *url_subdir;
	int r;

	if (asprintf(&display, "%s/conda-meta/%s", rd->prefix, file) < 0)
		return err_set(err, -ENOMEM, "%s: out of memory", rd->prefix);
	r = yamldoc_load(metafd, file, display, RECORD_MAX_BYTES, &doc, err);
	if (r < 0)
		goto out;
	rec = yamldoc_root(doc);
	p.name = ynode_str(ynode_get(rec, "name"));
	p.version = ynode_str(ynode_get(rec, "version"));
	p.build = ynode_str(ynode_get(rec, "build"));
	if (!p.build) /* micromamba also writes build_string */
		p.build = ynode_str(ynode_get(rec, "build_string"));
	if (!ynode_is_map(rec) || !p.name || !p.version || !p.build) {
		r = err_set(err, -EINVAL,
		            "%s: not a conda-meta record: it needs name, version and build",
		            display);
		goto out;
	}
	p.md5 = ynode_str(ynode_get(rec, "md5"));
	p.sha256 = ynode_str(ynode_get(rec, "sha256"));
	p.subdir = ynode_str(ynode_get(rec, "subdir"));
	/* channel may be a URL with or without the subdir, or a short name; the package URL
	 * says it best. */
	p.channel = ynode_str(ynode_get(rec, "channel"));
	if (ynode_str(ynode_get(rec, "url"))) {
		url = strdup(ynode_str(ynode_get(rec, "url")));
		if (!url) {
			r = err_set(err, -ENOMEM, "%s: out of memory", display);
			goto out;
		}
		if (pkgset_split_url(url, &url_channel, &url_subdir, &fname)) {
			p.channel = url_channel;
			if (!p.subdir)
				p.subdir = url_subdir;
		}
	}
	r = pkgset_add(rd->m->set, &p, display, err);
	if (r < 0)
		goto out;
	if (p.subdir && strcmp(p.subdir, "noarch") != 0) {
		if (!rd->vote.subdir) {
			rd->vote.subdir = strdup(p.subdir);
			rd->vote.from = strdup(file);
			if (!rd->vote.subdir || !rd->vote.from) {
				r = err_set(err, -ENOMEM, "%s: out of memory", display);
				goto out;
			}
		} else if (strcmp(rd->vote.subdir, p.subdir) != 0) {
			r = err_set(err, -EINVAL, "%s: a package for %s, but %s is for %s", display,
			            p.subdir, rd->vote.from, rd->vote.subdir);
			goto out;
		}
	}
	r = record_placeholders(rd, rec, display, err);
	if (r < 0)
		goto out;
	r = record_owned(rd, rec, display, err);
out:
	free(url);
	yamldoc_free(doc);
	free(display);
	return r;
}

/* Name and Version from a METADATA file (RFC 822 headers, up to the first blank line). */
static void metadata_fields(char *text, const char **ret_name, const char **ret_version)
{
	char *next;

	for (char *line = text; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line[strcspn(line, "\r")] = '\0';
		if (!*line)
			return;
		if (strncasecmp(line, "Name:", 5) == 0 && !*ret_name)
			*ret_name = line + 5 + strspn(line + 5, " \t");
		else if (strncasecmp(line, "Version:", 8) == 0 && !*ret_version)
			*ret_version = line + 8 + strspn(line + 8, " \t");
	}
}

static int distinfo_read(struct reader *rd, int spfd, const char *pydir, const char *entry,
                         struct cfs_err *err)
{
	struct pkg p = {.kind = PKG_PYPI};
	char *rel = NULL, *display = NULL, *meta = NULL, *text = NULL, *stem = NULL;
	size_t len;
	int r;

	if (asprintf(&rel, "lib/%s/site-packages/%s", pydir, entry) < 0) {
		rel = NULL;
		goto nomem;
	}
	if (strlist_has(&rd->owned, rel)) {
		r = 0;
		goto out;
	}
	if (asprintf(&display, "%s/%s", rd->prefix, rel) < 0) {
		display = NULL;
		goto nomem;
	}
	if (asprintf(&meta, "%s/METADATA", entry) < 0) {
		meta = NULL;
		goto nomem;
	}
	r = textfile_read(spfd, meta, display, METADATA_MAX_BYTES, &text, &len, err);
	if (r == -ENOTDIR) { /* a file named *.dist-info is no distribution */
		r = 0;
		goto out;
	}
	/* A link (the directory or its METADATA) is not followed: the name says it all. */
	if (r < 0 && r != -ENOENT && r != -ELOOP)
		goto out;
	if (text)
		metadata_fields(text, &p.name, &p.version);
	/* Without METADATA the directory's name "<name>-<version>.dist-info" still says it;
	 * the version has no '-', the name may. */
	if (!p.name || !p.version || !*p.name || !*p.version) {
		char *dash;

		stem = strndup(entry, strlen(entry) - strlen(".dist-info"));
		if (!stem)
			goto nomem;
		dash = strrchr(stem, '-');
		if (!dash) {
			r = err_set(
			        err, -EINVAL,
			        "%s: no Name and Version in METADATA, and the directory name is "
			        "not <name>-<version>.dist-info",
			        display);
			goto out;
		}
		*dash = '\0';
		p.name = stem;
		p.version = dash + 1;
	}
	r = pkgset_add(rd->m->set, &p, display, err);
	goto out;
nomem:
	r = err_set(err, -ENOMEM, "%s: out of memory", rd->prefix);
out:
	free(stem);
	free(text);
	free(meta);
	free(display);
	free(rel);
	return r;
}

/* Read the entries of the directory at fd (which the call takes over) into *names: only
 * those that end in suffix, sorted, so the packages and any error come in a fixed order. */
static int dir_names(int fd, const char *suffix, struct strlist *names)
{
	size_t sl = strlen(suffix);
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (fd < 0)
		return neg_errno();
	d = fdopendir(fd);
	if (!d) {
		r = neg_errno();
		close(fd);
		return r;
	}
	for (errno = 0; (de = readdir(d)); errno = 0) {
		size_t nl = strlen(de->d_name);

		if (de->d_name[0] == '.' || nl <= sl || strcmp(de->d_name + nl - sl, suffix) != 0)
			continue;
		r = strlist_add(names, strdup(de->d_name));
		if (r < 0)
			break;
	}
	if (!r && errno)
		r = neg_errno();
	closedir(d);
	if (!r && names->n)
		qsort(names->v, names->n, sizeof(*names->v), str_cmp);
	return r;
}

/* A directory of the prefix, or -errno (-ELOOP: a symbolic link on the way). */
static int open_dir(int dirfd, const char *path)
{
	return open_beneath(dirfd, path, O_RDONLY | O_DIRECTORY);
}

/* A directory the pip scan does not look into: missing, not a directory, or a symbolic
 * link (whatever it points to is read where it is, if it is in the prefix). */
static bool not_there(int r)
{
	return r == -ENOENT || r == -ENOTDIR || r == -ELOOP;
}

/* A second descriptor for a directory we keep using while dir_names reads it. */
static int dup_cloexec(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/* pip packages: lib/python<X.Y>/site-packages/<name>.dist-info not owned by a record. */
static int scan_pip(struct reader *rd, int pfd, struct cfs_err *err)
{
	struct strlist pydirs = {0};
	int libfd, r;

	libfd = open_dir(pfd, "lib");
	if (libfd < 0 && not_there(libfd))
		return 0;
	if (libfd < 0)
		return err_set(err, libfd, "%s/lib: %s", rd->prefix, strerror(-libfd));
	r = dir_names(libfd, "", &pydirs);
	if (r < 0) {
		r = err_set(err, r, "%s/lib: %s", rd->prefix, strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < pydirs.n; i++) {
		struct strlist entries = {0};
		char *sp;
		int spfd;

		if (strncmp(pydirs.v[i], "python", 6) != 0)
			continue;
		if (asprintf(&sp, "lib/%s/site-packages", pydirs.v[i]) < 0) {
			r = err_set(err, -ENOMEM, "%s: out of memory", rd->prefix);
			goto out;
		}
		spfd = open_dir(pfd, sp);
		if (spfd < 0 && not_there(spfd)) {
			free(sp);
			continue;
		}
		if (spfd < 0) {
			r = err_set(err, spfd, "%s/%s: %s", rd->prefix, sp, strerror(-spfd));
			free(sp);
			goto out;
		}
		r = dir_names(dup_cloexec(spfd), ".dist-info", &entries);
		if (r < 0)
			r = err_set(err, r, "%s/%s: %s", rd->prefix, sp, strerror(-r));
		for (size_t j = 0; r == 0 && j < entries.n; j++)
			r = distinfo_read(rd, spfd, pydirs.v[i], entries.v[j], err);
		strlist_release(&entries);
		close(spfd);
		free(sp);
		if (r < 0)
			goto out;
	}
out:
	strlist_release(&pydirs);
	return r;
}

static int placeholder_cmp(const void *a, const void *b)
{
	const struct placeholder *x = a, *y = b;

	return strcmp(x->path, y->path);
}

int condameta_read_at(int pfd, const char *prefix, struct condameta **ret, struct cfs_err *err)
{
	struct reader rd = {.prefix = prefix};
	struct strlist records = {0};
	const char *platform;
	struct stat st;
	int metafd, r;

	metafd = open_dir(pfd, "conda-meta");
	if (metafd == -ENOENT || metafd == -ENOTDIR)
		return err_set(err, -EINVAL, "not a conda prefix: %s/conda-meta/history: missing",
		               prefix);
	if (metafd < 0)
		return err_set(err, metafd, "%s/conda-meta: %s", prefix, beneath_strerror(metafd));
	if (fstatat(metafd, "history", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			r = err_set(err, -EINVAL,
			            "not a conda prefix: %s/conda-meta/history: missing", prefix);
		else
			r = err_set(err, neg_errno(), "%s/conda-meta/history: %s", prefix,
			            strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = err_set(err, -EINVAL,
		            "not a conda prefix: %s/conda-meta/history: not a regular file",
		            prefix);
		goto out;
	}
	rd.m = calloc(1, sizeof(*rd.m));
	if (!rd.m || pkgset_new(&rd.m->set) < 0) {
		r = err_set(err, -ENOMEM, "%s: out of memory", prefix);
		goto out;
	}
	r = dir_names(dup_cloexec(metafd), ".json", &records);
	if (r < 0) {
		r = err_set(err, r, "%s/conda-meta: %s", prefix, strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < records.n; i++) {
		r = record_read(&rd, metafd, records.v[i], err);
		if (r < 0)
			goto out;
	}
	if (rd.owned.n)
		qsort(rd.owned.v, rd.owned.n, sizeof(*rd.owned.v), str_cmp);
	r = scan_pip(&rd, pfd, err);
	if (r < 0)
		goto out;
	platform = rd.vote.subdir ? rd.vote.subdir : pkgset_host_platform();
	if (!platform) {
		r = err_set(err, -EINVAL,
		            "%s: every package is noarch and this machine has no conda platform "
		            "name",
		            prefix);
		goto out;
	}
	r = pkgset_finish(rd.m->set, platform, prefix, err);
	if (r < 0)
		goto out;
	if (rd.m->nph)
		qsort(rd.m->ph, rd.m->nph, sizeof(*rd.m->ph), placeholder_cmp);
	/* Two records listing one path (a clobbered file): keep one entry, so lookups are
	 * unambiguous; the placeholder lengths agree in practice. */
	{
		size_t o = 0;

		for (size_t i = 0; i < rd.m->nph; i++) {
			if (o && strcmp(rd.m->ph[i].path, rd.m->ph[o - 1].path) == 0)
				free(rd.m->ph[i].path);
			else
				rd.m->ph[o++] = rd.m->ph[i];
		}
		rd.m->nph = o;
	}
	*ret = rd.m;
	rd.m = NULL;
out:
	condameta_free(rd.m);
	strlist_release(&records);
	strlist_release(&rd.owned);
	free(rd.vote.subdir);
	free(rd.vote.from);
	close(metafd);
	return r;
}

int condameta_read(const char *prefix, struct condameta **ret, struct cfs_err *err)
{
	struct fscreds creds;
	struct stat sb;
	int pfd = open_named(prefix, O_RDONLY | O_DIRECTORY), r;

	if (pfd < 0)
		return err_set(err, pfd, "%s: %s", prefix, strerror(-pfd));
	if (fstat(pfd, &sb) < 0) {
		r = err_set(err, neg_errno(), "%s: %s", prefix, strerror(errno));
		close(pfd);
		return r;
	}
	r = fscreds_init(&creds, sb.st_uid);
	if (!r)
		r = fscreds_enter(&creds);
	if (r) {
		r = err_set(err, r, "%s: cannot take the credentials of its owner (uid %u): %s",
		            prefix, (unsigned)sb.st_uid, strerror(-r));
	} else {
		r = condameta_read_at(pfd, prefix, ret, err);
		int left = fscreds_leave(&creds);

		if (!r && left) {
			condameta_free(*ret);
			*ret = NULL;
			r = err_set(err, left, "%s: cannot take back our own credentials: %s",
			            prefix, strerror(-left));
		}
	}
	fscreds_release(&creds);
	close(pfd);
	return r;
}

void condameta_free(struct condameta *m)
{
	if (!m)
		return;
	pkgset_free(m->set);
	for (size_t i = 0; i < m->nph; i++)
		free(m->ph[i].path);
	free(m->ph);
	free(m);
}

const struct pkgset *condameta_pkgset(const struct condameta *m)
{
	return m->set;
}

struct pkgset *condameta_take_pkgset(struct condameta *m)
{
	struct pkgset *set = m->set;

	m->set = NULL;
	return set;
}

bool condameta_placeholder(const struct condameta *m, const char *relpath, bool *ret_binary,
                           size_t *ret_len)
{
	struct placeholder key = {.path = (char *)relpath};
	const struct placeholder *ph;

	if (!m->nph)
		return false;
	ph = bsearch(&key, m->ph, m->nph, sizeof(*m->ph), placeholder_cmp);
	if (!ph)
		return false;
	*ret_binary = ph->binary;
	*ret_len = ph->len;
	return true;
}

int pkgset_from_prefix(const char *prefix, struct pkgset **ret, struct cfs_err *err)
{
	struct condameta *m = NULL;
	int r;

	r = condameta_read(prefix, &m, err);
	if (r)
		return r;
	/* Set when it returns 0: for clang's analyzer, which cannot tell that its error
	 * returns (neg_errno's -errno) are never 0. */
	assert(m);
	*ret = condameta_take_pkgset(m);
	condameta_free(m);
	return 0;
}
