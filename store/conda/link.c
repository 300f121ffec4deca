// SPDX-License-Identifier: MIT
/*
 * Linking as conda does it, as data (link.h). Packages are read whole first (index.json,
 * paths.json or the old info/files + has_prefix + no_link, link.json), ordered as conda's
 * PrefixGraph orders them, then each path is mapped (noarch python), checked against the
 * package directory, and laid out; a path two packages ship goes to the later one. The
 * files conda generates (entry points, conda-meta/<dist>.json, conda-meta/history) are
 * made here as bytes.
 */
#include "link.h"

#include "err.h"
#include "grow.h"
#include "pkgarchive.h"
#include "pkgrec.h"
#include "textfile.h"
#include "useropen.h"
#include "yamldoc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* paths.json takes ~200 bytes a path; the largest packages list ~15,000 paths. */
#define LIST_MAX_BYTES  (64u << 20)
#define SMALL_MAX_BYTES (4u << 20)
/* conda's PREFIX_PLACEHOLDER: what a bare has_prefix line means. */
#define DEFAULT_PLACEHOLDER "/opt/anaconda1anaconda2anaconda3"

enum ptype { PT_FILE, PT_LINK, PT_DIR };

/* One path of a package, as paths.json (or info/files) says it. */
struct ppath {
	char *src; /* under the package directory: paths.json's _path */
	char *dst; /* under the prefix, after the noarch python mapping */
	enum ptype type;
	char *placeholder;
	bool binary, no_link, has_size;
	char *sha256;
	uint64_t size;
};

struct lpkg {
	struct link_plan *pl; /* owns every string of paths */
	const struct link_pkg *in;
	size_t idx; /* into the caller's pkgs */
	int dfd;    /* the package directory */
	struct yamldoc *index, *linkjson;
	const char *name, *version, *build, *subdir; /* in index */
	char *dist;                                  /* name-version-build; the plan's */
	char *channel; /* with the subdir, as conda-meta records it; the plan's */
	bool noarch_py, noarch_generic, paths_json;
	struct ppath *paths;
	size_t npaths, cappaths;
	size_t *deps; /* indices of packages in the set it depends on */
	size_t ndeps;
	size_t pos; /* in the link order */
};

/* A path before clobbering is resolved: pos orders packages, seq paths within one. */
struct cand {
	struct link_entry e;
	size_t owner; /* the package (index into pkgs) whose path it is, SIZE_MAX for conda's */
	size_t pos, seq;
};

struct link_plan {
	struct link_entry *e;
	size_t n;
	struct cand *c;
	size_t nc, capc;
	void **pool; /* every allocation the entries point into */
	size_t npool, cappool;
	size_t *order;
	size_t norder;
	const char **scripts;
	size_t nscripts;
	char *python;
	/* Each package's conda-meta record: its path and inputs, by package index. */
	struct recinfo {
		const char *path;
		struct pkgrec_meta in;
	} * rec;
	/* Each package's paths as link_paths checked them (L3), by package index. */
	struct srclist {
		struct link_src *s;
		size_t n, cap;
	} * src;
	size_t nsrc;
};

/* p, now owned by the plan; NULL (and p freed) when out of memory. */
static void *keep(struct link_plan *pl, void *p)
{
	void **v;

	if (!p)
		return NULL;
	v = grow_array(pl->pool, &pl->cappool, pl->npool + 1, sizeof(*v));
	if (!v) {
		free(p);
		return NULL;
	}
	pl->pool = v;
	pl->pool[pl->npool++] = p;
	return p;
}

static char *keep_str(struct link_plan *pl, const char *s)
{
	return keep(pl, strdup(s));
}

/* L1: relative, normalised, inside its root. */
static bool path_ok(const char *p)
{
	const char *c = p, *e;

	if (!*p || *p == '/')
		return false;
	for (;;) {
		e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!e)
			return true;
		c = e + 1;
	}
}

/* ---- reading a package ---- */

/* The package is read from its record or its unpacked files, not from a directory. */
static bool indexed(const struct lpkg *k)
{
	return k->in->rec || k->in->files;
}

/* An info/ file of the package, from its directory (no symlink followed), its unpacked
 * files or its record: malloc'd and NUL-terminated as textfile_read returns it; -ENOENT
 * when it has none. */
static int read_info(struct lpkg *k, const char *name, const char *display, size_t max, char **ret,
                     size_t *ret_len, struct cfs_err *err)
{
	const uint8_t *data;
	size_t len;
	int r;

	if (!indexed(k))
		return textfile_read(k->dfd, name, display, max, ret, ret_len, err);
	if (k->in->files) {
		r = pkgarchive_files_read(k->in->files, name, max, ret, ret_len);
		if (r == -EFBIG)
			return err_set(err, r, "%s: over %zu bytes", display, max);
		if (r == -EINVAL)
			return err_set(err, r, "%s: not a regular file", display);
		if (r && r != -ENOENT)
			return err_set(err, r, "%s: %s", display, strerror(-r));
		return r;
	}
	if (pkgrec_info(k->in->rec, name, &data, &len) < 0)
		return -ENOENT;
	if (len > max)
		return err_set(err, -EFBIG, "%s: over %zu bytes", display, max);
	*ret = malloc(len + 1);
	if (!*ret)
		return err_set(err, -ENOMEM, "out of memory");
	memcpy(*ret, data, len);
	(*ret)[len] = '\0';
	*ret_len = len;
	return 0;
}

static int load_info(struct lpkg *k, const char *name, const char *display, size_t max,
                     struct yamldoc **ret, struct cfs_err *err)
{
	char *text = NULL;
	size_t len;
	int r;

	if (!indexed(k))
		return yamldoc_load(k->dfd, name, display, max, ret, err);
	r = read_info(k, name, display, max, &text, &len, err);
	if (r == 0)
		r = yamldoc_parse(display, text, len, ret, err);
	free(text);
	return r;
}

static int add_path(struct lpkg *k, struct ppath *pp)
{
	struct ppath *v = grow_array(k->paths, &k->cappaths, k->npaths + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	k->paths = v;
	k->paths[k->npaths++] = *pp;
	return 0;
}

static int read_paths_json(struct lpkg *k, struct cfs_err *err)
{
	struct yamldoc *doc = NULL;
	const struct ynode *root, *paths;
	char display[4200];
	int r;

	snprintf(display, sizeof(display), "%s/info/paths.json", k->dist);
	r = load_info(k, "info/paths.json", display, LIST_MAX_BYTES, &doc, err);
	if (r < 0)
		return r;
	root = yamldoc_root(doc);
	paths = ynode_get(root, "paths");
	if (!ynode_is_seq(paths) || !ynode_str(ynode_get(root, "paths_version")) ||
	    strcmp(ynode_str(ynode_get(root, "paths_version")), "1") != 0) {
		r = err_set(err, -EINVAL, "%s: not a paths.json of version 1", display);
		goto out;
	}
	for (size_t i = 0; i < ynode_count(paths); i++) {
		const struct ynode *p = ynode_item(paths, i);
		const char *path = ynode_str(ynode_get(p, "_path"));
		const char *type = ynode_str(ynode_get(p, "path_type"));
		const char *ph = ynode_str(ynode_get(p, "prefix_placeholder"));
		const char *mode = ynode_str(ynode_get(p, "file_mode"));
		const char *size = ynode_str(ynode_get(p, "size_in_bytes"));
		const char *sha = ynode_str(ynode_get(p, "sha256"));
		const char *nl = ynode_str(ynode_get(p, "no_link"));
		struct ppath pp = {0};
		char *end;

		if (!path || !type) {
			r = err_set(err, -EINVAL, "%s:%zu: a path without _path or path_type",
			            display, ynode_line(p));
			goto out;
		}
		if (strcmp(type, "hardlink") == 0)
			pp.type = PT_FILE;
		else if (strcmp(type, "softlink") == 0)
			pp.type = PT_LINK;
		else if (strcmp(type, "directory") == 0)
			pp.type = PT_DIR;
		else {
			r = err_set(err, -EINVAL, "%s:%zu: unknown path_type %s", display,
			            ynode_line(p), type);
			goto out;
		}
		if (ph && (!*ph || pp.type != PT_FILE)) {
			r = err_set(err, -EINVAL, "%s:%zu: %s: a prefix_placeholder on a %s",
			            display, ynode_line(p), path, type);
			goto out;
		}
		if (ph && mode && strcmp(mode, "text") != 0 && strcmp(mode, "binary") != 0) {
			r = err_set(err, -EINVAL, "%s:%zu: %s: unknown file_mode %s", display,
			            ynode_line(p), path, mode);
			goto out;
		}
		pp.binary = ph && mode && strcmp(mode, "binary") == 0;
		pp.no_link = nl && strcmp(nl, "true") == 0;
		if (size) {
			errno = 0;
			pp.size = strtoull(size, &end, 10);
			if (errno || *end || end == size || *size == '-') {
				r = err_set(err, -EINVAL, "%s:%zu: %s: size_in_bytes %s", display,
				            ynode_line(p), path, size);
				goto out;
			}
			pp.has_size = true;
		}
		pp.src = keep_str(k->pl, path);
		pp.placeholder = ph ? keep_str(k->pl, ph) : NULL;
		pp.sha256 = sha ? keep_str(k->pl, sha) : NULL;
		if (!pp.src || (ph && !pp.placeholder) || (sha && !pp.sha256) ||
		    add_path(k, &pp) < 0) {
			r = err_set(err, -ENOMEM, "%s: out of memory", display);
			goto out;
		}
	}
	k->paths_json = true;
	r = 0;
out:
	yamldoc_free(doc);
	return r;
}

/* The next line of text (NUL-terminated in place), without its "\n" or "\r\n". */
static char *next_line(char **at)
{
	char *s = *at, *nl;

	if (!*s)
		return NULL;
	nl = strchr(s, '\n');
	if (nl) {
		*nl = 0;
		*at = nl + 1;
	} else {
		*at = s + strlen(s);
	}
	if (nl && nl > s && nl[-1] == '\r')
		nl[-1] = 0;
	return s;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\r')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

/* A word of a has_prefix line as conda splits it (shlex, posix=False: a quoted word keeps
 * its quotes and spaces), with the quotes it then strips. */
static char *has_prefix_word(char **at)
{
	char *s = *at, *w, *e;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return NULL;
	w = s;
	while (*s && *s != ' ' && *s != '\t') {
		if (*s == '"' || *s == '\'') {
			char q = *s;

			e = strchr(s + 1, q);
			s = e ? e + 1 : s + strlen(s);
		} else {
			s++;
		}
	}
	if (*s)
		*s++ = 0;
	*at = s;
	while (*w == '"' || *w == '\'')
		w++;
	e = w + strlen(w);
	while (e > w && (e[-1] == '"' || e[-1] == '\''))
		*--e = 0;
	return w;
}

/* Old packages: info/files, with info/has_prefix and info/no_link (read.py's
 * read_paths_json without a paths.json). The type comes from the file itself. */
static int read_files(struct lpkg *k, struct cfs_err *err)
{
	char *files = NULL, *hp = NULL, *nl = NULL, *at, *line;
	size_t len;
	char display[4200];
	int r;

	snprintf(display, sizeof(display), "%s/info/files", k->dist);
	r = read_info(k, "info/files", display, LIST_MAX_BYTES, &files, &len, err);
	if (r == -ENOENT)
		r = err_set(err, -EINVAL, "%s: neither info/paths.json nor info/files", k->dist);
	if (r < 0)
		goto out;
	snprintf(display, sizeof(display), "%s/info/has_prefix", k->dist);
	r = read_info(k, "info/has_prefix", display, LIST_MAX_BYTES, &hp, &len, err);
	if (r < 0 && r != -ENOENT)
		goto out;
	snprintf(display, sizeof(display), "%s/info/no_link", k->dist);
	r = read_info(k, "info/no_link", display, LIST_MAX_BYTES, &nl, &len, err);
	if (r < 0 && r != -ENOENT)
		goto out;
	for (at = files; (line = next_line(&at));) {
		struct ppath pp = {0};

		line = trim(line);
		if (!*line || *line == '#')
			continue;
		pp.type = PT_FILE; /* softlinks are told apart when the file is checked */
		pp.src = keep_str(k->pl, line);
		if (!pp.src || add_path(k, &pp) < 0) {
			r = err_set(err, -ENOMEM, "%s: out of memory", k->dist);
			goto out;
		}
	}
	for (at = hp ? hp : (char *)""; (line = next_line(&at));) {
		char *w[4], *p = trim(line);
		size_t nw = 0;

		if (!*p || *p == '#')
			continue;
		while (nw < 4 && (w[nw] = has_prefix_word(&p)))
			nw++;
		if (nw != 1 && nw != 3) {
			r = err_set(err, -EINVAL, "%s/info/has_prefix: invalid line: %s", k->dist,
			            line);
			goto out;
		}
		if (nw == 3 && strcmp(w[1], "text") != 0 && strcmp(w[1], "binary") != 0) {
			r = err_set(err, -EINVAL, "%s/info/has_prefix: unknown mode %s", k->dist,
			            w[1]);
			goto out;
		}
		/* The last line naming a file wins, as conda's dict does. */
		for (size_t i = 0; i < k->npaths; i++) {
			struct ppath *pp = &k->paths[i];

			if (strcmp(pp->src, nw == 1 ? w[0] : w[2]) != 0)
				continue;
			pp->placeholder = keep_str(k->pl, nw == 1 ? DEFAULT_PLACEHOLDER : w[0]);
			pp->binary = nw == 3 && strcmp(w[1], "binary") == 0;
			if (!pp->placeholder) {
				r = err_set(err, -ENOMEM, "%s: out of memory", k->dist);
				goto out;
			}
		}
	}
	for (at = nl ? nl : (char *)""; (line = next_line(&at));) {
		line = trim(line);
		for (size_t i = 0; *line && i < k->npaths; i++)
			if (strcmp(k->paths[i].src, line) == 0)
				k->paths[i].no_link = true;
	}
	r = 0;
out:
	free(files);
	free(hp);
	free(nl);
	return r;
}

static int read_pkg(struct lpkg *k, struct cfs_err *err)
{
	const struct ynode *root, *noarch;
	char display[4200];
	const char *nt;
	int r;

	if (!indexed(k)) {
		k->dfd = open(k->in->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (k->dfd < 0)
			return err_set(err, neg_errno(), "%s: %s", k->in->dir, strerror(errno));
	}
	snprintf(display, sizeof(display), "%s/info/index.json", k->in->dir);
	r = load_info(k, "info/index.json", display, SMALL_MAX_BYTES, &k->index, err);
	if (r == -ENOENT)
		return err_set(err, -EINVAL, "%s: not in the package", display);
	if (r < 0)
		return r;
	root = yamldoc_root(k->index);
	k->name = ynode_str(ynode_get(root, "name"));
	k->version = ynode_str(ynode_get(root, "version"));
	k->build = ynode_str(ynode_get(root, "build"));
	k->subdir = ynode_str(ynode_get(root, "subdir"));
	if (!ynode_is_map(root) || !k->name || !k->version || !k->build || !*k->name)
		return err_set(err, -EINVAL, "%s: no name, version and build", display);
	if (asprintf(&k->dist, "%s-%s-%s", k->name, k->version, k->build) < 0)
		k->dist = NULL;
	if (!keep(k->pl, k->dist))
		return err_set(err, -ENOMEM, "%s: out of memory", display);
	/* The dist names conda-meta/<dist>.json: one file name. */
	if (strchr(k->dist, '/') || k->dist[0] == '.')
		return err_set(err, -EINVAL, "%s: not a package name: %s", display, k->dist);
	if ((k->in->name && strcmp(k->name, k->in->name) != 0) ||
	    (k->in->version && strcmp(k->version, k->in->version) != 0) ||
	    (k->in->build && strcmp(k->build, k->in->build) != 0))
		return err_set(err, -EINVAL, "%s: names %s, where the lock has %s %s %s", display,
		               k->dist, k->in->name ? k->in->name : k->name,
		               k->in->version ? k->in->version : k->version,
		               k->in->build ? k->in->build : k->build);
	if (!k->subdir)
		k->subdir = "noarch";
	if (k->in->platform && strcmp(k->subdir, "noarch") != 0 &&
	    strcmp(k->subdir, k->in->platform) != 0)
		return err_set(err, -EINVAL, "%s: a package for %s, not for the environment's %s",
		               k->dist, k->subdir, k->in->platform);

	snprintf(display, sizeof(display), "%s/info/link.json", k->dist);
	r = load_info(k, "info/link.json", display, SMALL_MAX_BYTES, &k->linkjson, err);
	if (r < 0 && r != -ENOENT)
		return r;
	/* link.json's noarch type is what conda reads first; index.json's noarch otherwise. */
	noarch = ynode_get(yamldoc_root(k->linkjson), "noarch");
	nt = ynode_str(ynode_get(noarch, "type"));
	if (!nt)
		nt = ynode_str(ynode_get(root, "noarch"));
	k->noarch_py = nt && strcmp(nt, "python") == 0;
	/* conda's NoarchType.coerce: "generic", or the old boolean true. */
	k->noarch_generic = nt && (strcmp(nt, "generic") == 0 || strcmp(nt, "true") == 0);
	return 0;
}

/* What package k's conda-meta record is made of besides the package itself: its lock's
 * URL and file name, its channel, and the python pyver a noarch python package maps for
 * (pkgrec_meta without its key and size). */
static struct pkgrec_meta record_inputs(const struct lpkg *k, const char *pyver)
{
	return (struct pkgrec_meta){.url = k->in->url ? k->in->url : "",
	                            .fn = k->in->fn ? k->in->fn : "",
	                            .channel = k->channel,
	                            .pyver = k->noarch_py && pyver ? pyver : ""};
}

/* The conda-meta record package k's store record keeps, when it was made of the same
 * inputs as k's would be now, else NULL. */
static const struct pkgrec_meta *record_cached(const struct lpkg *k, const char *pyver)
{
	const struct pkgrec_meta *m = k->in->rec ? pkgrec_meta(k->in->rec) : NULL;
	struct pkgrec_meta in = record_inputs(k, pyver);

	if (!m || strcmp(m->url, in.url) != 0 || strcmp(m->fn, in.fn) != 0 ||
	    strcmp(m->channel, in.channel) != 0 || strcmp(m->pyver, in.pyver) != 0)
		return NULL;
	return m;
}

/* Package k's paths from its store record: what linking takes of paths.json, which only
 * making its conda-meta record needs more of (placeholders, digests, no_link). */
static int paths_from_record(struct lpkg *k)
{
	size_t n = pkgrec_npaths(k->in->rec);

	k->paths = calloc(n ? n : 1, sizeof(*k->paths));
	if (!k->paths)
		return -ENOMEM;
	k->cappaths = n ? n : 1;
	for (size_t i = 0; i < n; i++) {
		const struct pkgrec_entry *e = pkgrec_path_at(k->in->rec, i);
		struct ppath *pp = &k->paths[k->npaths++];

		pp->src = keep_str(k->pl, e->path);
		if (!pp->src)
			return -ENOMEM;
		pp->type = e->type == NODE_FILE      ? PT_FILE
		           : e->type == NODE_SYMLINK ? PT_LINK
		                                     : PT_DIR;
		pp->has_size = e->type == NODE_FILE;
		pp->size = e->size;
	}
	k->paths_json = true;
	return 0;
}

/* Package k's paths: from paths.json, else (an old package) info/files and has_prefix; or
 * from its store record, when its conda-meta record is taken as stored too. */
static int read_paths(struct lpkg *k, const char *pyver, struct cfs_err *err)
{
	int r;

	if (record_cached(k, pyver)) {
		r = paths_from_record(k);
		return r < 0 ? err_set(err, r, "%s: out of memory", k->dist) : 0;
	}
	r = read_paths_json(k, err);
	if (r == -ENOENT)
		r = read_files(k, err);
	return r;
}

/* ---- link order ---- */

/* The package name a depends entry names: up to the version, ignoring a channel. */
static size_t spec_name(const char *spec, const char **ret)
{
	const char *s = spec, *c;

	while (*s == ' ')
		s++;
	c = strstr(s, "::");
	if (c)
		s = c + 2;
	*ret = s;
	return strcspn(s, " =<>!~[(,");
}

static int cmp_pkg_name(const void *a, const void *b)
{
	const struct lpkg *x = *(struct lpkg *const *)a, *y = *(struct lpkg *const *)b;

	return strcmp(x->name, y->name);
}

static struct lpkg *find_name(struct lpkg **sorted, size_t n, const char *name, size_t len)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strncmp(sorted[mid]->name, name, len);

		if (c == 0 && sorted[mid]->name[len])
			c = 1;
		if (c == 0)
			return sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * conda's PrefixGraph order (models/prefix_graph.py, with allow_cycles, its default):
 * packages nothing depends on and that depend on nothing in the set first, by name; then,
 * round by round, every package whose dependencies are all placed, by name; in a cycle,
 * the package with the fewest unplaced dependencies (then the first dist) goes next.
 * python's dependency on pip is dropped, as conda drops it; a noarch python package gets
 * python as a dependency, so it is always mapped for a python that is linked before it.
 */
static int link_order(struct lpkg *k, size_t n, struct link_plan *pl, struct cfs_err *err)
{
	struct lpkg **sorted = calloc(n ? n : 1, sizeof(struct lpkg *));
	bool *placed = calloc(n ? n : 1, sizeof(*placed)), *parent = NULL;
	size_t *left = calloc(n ? n : 1, sizeof(*left)), *ready = NULL;
	struct lpkg *python;
	int r = -ENOMEM;

	pl->order = calloc(n ? n : 1, sizeof(*pl->order));
	parent = calloc(n ? n : 1, sizeof(*parent));
	ready = calloc(n ? n : 1, sizeof(*ready));
	if (!sorted || !placed || !left || !pl->order || !parent || !ready) {
		err_set(err, -ENOMEM, "link order: out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = &k[i];
	qsort(sorted, n, sizeof(struct lpkg *), cmp_pkg_name);
	for (size_t i = 1; i < n; i++)
		if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
			r = err_set(err, -EINVAL, "two packages named %s: %s and %s",
			            sorted[i]->name, sorted[i - 1]->dist, sorted[i]->dist);
			goto out;
		}
	python = find_name(sorted, n, "python", 6);
	for (size_t i = 0; i < n; i++) {
		const struct ynode *deps = ynode_get(yamldoc_root(k[i].index), "depends");

		k[i].deps = calloc(ynode_count(deps) + 1, sizeof(*k[i].deps));
		if (!k[i].deps) {
			err_set(err, -ENOMEM, "link order: out of memory");
			goto out;
		}
		for (size_t d = 0; d <= ynode_count(deps); d++) {
			const char *spec =
			        d < ynode_count(deps) ? ynode_str(ynode_item(deps, d)) : NULL;
			const char *nm;
			struct lpkg *dep;
			bool dup = false;

			if (spec) {
				size_t len = spec_name(spec, &nm);

				dep = find_name(sorted, n, nm, len);
			} else {
				dep = k[i].noarch_py ? python : NULL;
			}
			if (!dep || dep == &k[i] ||
			    (strcmp(k[i].name, "python") == 0 && strcmp(dep->name, "pip") == 0))
				continue;
			for (size_t j = 0; j < k[i].ndeps; j++)
				dup |= k[i].deps[j] == (size_t)(dep - k);
			if (!dup)
				k[i].deps[k[i].ndeps++] = (size_t)(dep - k);
		}
		left[i] = k[i].ndeps;
		for (size_t j = 0; j < k[i].ndeps; j++)
			parent[k[i].deps[j]] = true;
	}
	/* Disconnected packages first, by name. */
	for (size_t s = 0; s < n; s++) {
		size_t i = (size_t)(sorted[s] - k);

		if (!left[i] && !parent[i]) {
			placed[i] = true;
			pl->order[pl->norder++] = i;
		}
	}
	while (pl->norder < n) {
		size_t nready = 0;

		for (size_t s = 0; s < n; s++) {
			size_t i = (size_t)(sorted[s] - k);

			if (!placed[i] && !left[i])
				ready[nready++] = i;
		}
		if (!nready) {
			size_t best = SIZE_MAX;

			for (size_t i = 0; i < n; i++)
				if (!placed[i] && (best == SIZE_MAX || left[i] < left[best] ||
				                   (left[i] == left[best] &&
				                    strcmp(k[i].dist, k[best].dist) < 0)))
					best = i;
			ready[nready++] = best;
		}
		for (size_t j = 0; j < nready; j++) {
			placed[ready[j]] = true;
			pl->order[pl->norder++] = ready[j];
		}
		for (size_t i = 0; i < n; i++)
			for (size_t d = 0; !placed[i] && d < k[i].ndeps; d++)
				for (size_t j = 0; j < nready; j++)
					left[i] -= k[i].deps[d] == ready[j];
	}
	for (size_t o = 0; o < n; o++)
		k[pl->order[o]].pos = o;
	r = 0;
out:
	free(sorted);
	free(placed);
	free(left);
	free(parent);
	free(ready);
	return r;
}

/* ---- JSON as Python's json.dumps(indent=2, sort_keys=True) writes it ---- */

struct jbuf {
	char *p;
	size_t n, cap;
	bool oom;
};

static void jput(struct jbuf *b, const char *s, size_t n)
{
	char *p;

	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		p = grow_array(b->p, &b->cap, b->n + n + 1, 1);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void jputs(struct jbuf *b, const char *s)
{
	jput(b, s, strlen(s));
}

/* A new line indented depth levels of two spaces (json.dump's indent=2), in one piece. */
static void jindent(struct jbuf *b, int depth)
{
	static const char line[] = "\n                ";
	const int most = (int)(sizeof(line) - 2) / 2;

	jput(b, line, 1 + 2 * (size_t)(depth < most ? depth : most));
	for (depth -= most; depth > 0; depth -= most)
		jput(b, line + 1, 2 * (size_t)(depth < most ? depth : most));
}

/* A string with ensure_ascii: everything past ASCII as \uXXXX (surrogate pairs past the
 * BMP), lowercase hex, as Python writes it. */
static void jstr(struct jbuf *b, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	char tmp[16];

	jputs(b, "\"");
	while (*u) {
		unsigned cp = *u;
		size_t len = 1, run = 0;

		/* A run of what needs no escape, in one piece. */
		while (u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\')
			run++;
		if (run) {
			jput(b, (const char *)u, run);
			u += run;
			continue;
		}
		if (cp >= 0xf0 && u[1] && u[2] && u[3]) {
			cp = ((cp & 7u) << 18) | ((u[1] & 63u) << 12) | ((u[2] & 63u) << 6) |
			     (u[3] & 63u);
			len = 4;
		} else if (cp >= 0xe0 && u[1] && u[2]) {
			cp = ((cp & 15u) << 12) | ((u[1] & 63u) << 6) | (u[2] & 63u);
			len = 3;
		} else if (cp >= 0xc0 && u[1]) {
			cp = ((cp & 31u) << 6) | (u[1] & 63u);
			len = 2;
		}
		u += len;
		if (cp == '"')
			jputs(b, "\\\"");
		else if (cp == '\\')
			jputs(b, "\\\\");
		else if (cp == '\n')
			jputs(b, "\\n");
		else if (cp == '\r')
			jputs(b, "\\r");
		else if (cp == '\t')
			jputs(b, "\\t");
		else if (cp == '\b')
			jputs(b, "\\b");
		else if (cp == '\f')
			jputs(b, "\\f");
		else if (cp >= 0x20 && cp < 0x7f) {
			tmp[0] = (char)cp;
			jput(b, tmp, 1);
		} else if (cp >= 0x10000) {
			cp -= 0x10000;
			snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x", 0xd800 + (cp >> 10),
			         0xdc00 + (cp & 0x3ff));
			jputs(b, tmp);
		} else {
			snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
			jputs(b, tmp);
		}
	}
	jputs(b, "\"");
}

static bool is_json_word(const char *s)
{
	const char *p = s;

	if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
		return true;
	if (*p == '-')
		p++;
	if (!(*p >= '0' && *p <= '9'))
		return false;
	if (*p == '0' && p[1] >= '0' && p[1] <= '9')
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p == '.') {
		if (!(*++p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return !*p;
}

static const char *key_at(const struct ynode *map, size_t i)
{
	const char *k = ynode_str(ynode_key(map, i));

	return k ? k : "null";
}

/* Keys in code point order (UTF-8's byte order), a repeated key in its order. */
static int cmp_map_key(const void *a, const void *b, void *map)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(key_at(map, x), key_at(map, y));

	return c ? c : (x < y ? -1 : x > y);
}

static void jnode(struct jbuf *b, const struct ynode *n, int depth);

static void jmap(struct jbuf *b, const struct ynode *n, int depth)
{
	size_t cnt = ynode_count(n), *idx;

	if (!cnt) {
		jputs(b, "{}");
		return;
	}
	idx = calloc(cnt, sizeof(*idx));
	if (!idx) {
		b->oom = true;
		return;
	}
	for (size_t i = 0; i < cnt; i++)
		idx[i] = i;
	qsort_r(idx, cnt, sizeof(*idx), cmp_map_key, (void *)n);
	jputs(b, "{");
	for (size_t i = 0, out = 0; i < cnt; i++) {
		/* A repeated key: json.load keeps the last. */
		if (i + 1 < cnt && strcmp(key_at(n, idx[i]), key_at(n, idx[i + 1])) == 0)
			continue;
		jputs(b, out++ ? "," : "");
		jindent(b, depth + 1);
		jstr(b, key_at(n, idx[i]));
		jputs(b, ": ");
		jnode(b, ynode_value(n, idx[i]), depth + 1);
	}
	jindent(b, depth);
	jputs(b, "}");
	free(idx);
}

static void jnode(struct jbuf *b, const struct ynode *n, int depth)
{
	const char *s = ynode_str(n);

	if (ynode_is_map(n)) {
		jmap(b, n, depth);
	} else if (ynode_is_seq(n)) {
		if (!ynode_count(n)) {
			jputs(b, "[]");
			return;
		}
		jputs(b, "[");
		for (size_t i = 0; i < ynode_count(n); i++) {
			jindent(b, depth + 1);
			jnode(b, ynode_item(n, i), depth + 1);
			jputs(b, i + 1 < ynode_count(n) ? "," : "");
		}
		jindent(b, depth);
		jputs(b, "]");
	} else if (!s) {
		jputs(b, "null");
	} else if (!ynode_is_quoted(n) && is_json_word(s)) {
		jputs(b, s);
	} else {
		jstr(b, s);
	}
}

/* ---- entry points ---- */

static bool import_path_ok(const char *s, size_t n)
{
	bool start = true;

	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (start)
				return false;
			start = true;
		} else if (c == '_' || (c | 32) - 'a' < 26 || c >= 0x80 ||
		           (!start && c - '0' < 10)) {
			start = false;
		} else {
			return false;
		}
	}
	return !start;
}

/* "name = module:func" as conda's parse_entry_point_def splits and checks it: the
 * script's bytes, with the prefix as prefix_token (create.py's python_entry_point_template
 * after a "#!PREFIX/bin/pythonX.Y" shebang, portability.py's for a prefix that fits it). */
static int entry_point(struct lpkg *k, const char *def, const char *token, const char *pyver,
                       char **ret_cmd, struct jbuf *out, struct cfs_err *err)
{
	const char *eq = strchr(def, '='), *m, *me, *colon, *f, *fe, *c, *ce;
	size_t ilen;

	if (!eq)
		goto bad;
	for (c = def; *c == ' ' || *c == '\t' || *c == '\r' || *c == '\n'; c++)
		;
	for (ce = eq; ce > c && strchr(" \t\r\n", ce[-1]); ce--)
		;
	for (m = eq + 1; *m && strchr(" \t\r\n\"'", *m); m++)
		;
	for (fe = m + strlen(m); fe > m && strchr(" \t\r\n\"'", fe[-1]); fe--)
		;
	colon = NULL;
	for (const char *p = m; p < fe; p++)
		if (*p == ':')
			colon = p;
	if (!colon)
		goto bad;
	for (me = colon; me > m && (me[-1] == ' ' || me[-1] == '\t'); me--)
		;
	for (f = colon + 1; f < fe && (*f == ' ' || *f == '\t'); f++)
		;
	if (ce == c || *c == '.' || strcspn(c, "/\\\r\n") < (size_t)(ce - c) ||
	    !import_path_ok(m, (size_t)(me - m)) || !import_path_ok(f, (size_t)(fe - f)))
		goto bad;
	*ret_cmd = strndup(c, (size_t)(ce - c));
	if (!*ret_cmd)
		return err_set(err, -ENOMEM, "out of memory");
	for (ilen = 0; f + ilen < fe && f[ilen] != '.'; ilen++)
		;
	jputs(out, "#!");
	jputs(out, token);
	jputs(out, "/bin/python");
	jputs(out, pyver);
	jputs(out, "\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n\nfrom ");
	jput(out, m, (size_t)(me - m));
	jputs(out, " import ");
	jput(out, f, ilen);
	jputs(out, "\n\nif __name__ == '__main__':\n"
	           "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
	           "    sys.exit(");
	jput(out, f, (size_t)(fe - f));
	jputs(out, "())\n");
	return 0;
bad:
	return err_set(err, -EINVAL, "%s/info/link.json: invalid entry point: %s", k->dist, def);
}

/* ---- the plan ---- */

static int add_cand(struct link_plan *pl, const struct link_entry *e, size_t owner, size_t pos,
                    size_t seq)
{
	struct cand *v = grow_array(pl->c, &pl->capc, pl->nc + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	pl->c = v;
	pl->c[pl->nc].e = *e;
	pl->c[pl->nc].owner = owner;
	pl->c[pl->nc].pos = pos;
	pl->c[pl->nc].seq = seq;
	pl->nc++;
	return 0;
}

/* The noarch python mapping (common/path/python.py get_python_noarch_target_path). */
char *link_noarch_path(const char *src, const char *pyver)
{
	char *s = NULL;

	if (strncmp(src, "site-packages/", 14) == 0) {
		if (asprintf(&s, "lib/python%s/site-packages/%s", pyver, src + 14) < 0)
			return NULL;
		return s;
	}
	if (strncmp(src, "python-scripts/", 15) == 0) {
		if (asprintf(&s, "bin/%s", src + 15) < 0)
			return NULL;
		return s;
	}
	return strdup(src);
}

/* What lstat and readlink would say of a path of type with these attributes in the
 * package's directory. */
static void index_stat(enum node_type type, uint32_t mode, uint64_t size, int64_t mtime_ns,
                       const char *link, struct stat *st, char *target, size_t cap)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = mode | (type == NODE_FILE      ? S_IFREG
	                      : type == NODE_SYMLINK ? S_IFLNK
	                                             : S_IFDIR);
	st->st_size = (off_t)size;
	st->st_mtim.tv_sec = mtime_ns / 1000000000;
	st->st_mtim.tv_nsec = mtime_ns % 1000000000;
	if (type == NODE_SYMLINK)
		snprintf(target, cap, "%s", link);
}

/* What the package's record, or its unpacked index, says of src, as lstat and readlink
 * would say it of the file in its directory: -ENOENT when it holds none. */
static int indexed_stat(const struct lpkg *k, const char *src, struct stat *st, char *target,
                        size_t cap)
{
	const struct pkgrec_entry *re;
	const struct pkgarchive_entry *fe;

	if (k->in->rec) {
		re = pkgrec_path(k->in->rec, src);
		if (!re)
			return -ENOENT;
		index_stat(re->type, re->mode, re->size, re->mtime_ns, re->target, st, target, cap);
		return 0;
	}
	fe = pkgarchive_files_find(k->in->files, src);
	if (!fe)
		return -ENOENT;
	index_stat(fe->type, fe->mode, fe->size, fe->mtime_ns, fe->target, st, target, cap);
	return 0;
}

/* The package's paths as checked, for a record of it (link_plan_pkg_src). */
static int add_src(struct link_plan *pl, size_t pkg, const struct link_src *src)
{
	struct srclist *l = &pl->src[pkg];
	struct link_src *v = grow_array(l->s, &l->cap, l->n + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	l->s = v;
	l->s[l->n++] = *src;
	return 0;
}

/* L3: check each path against the package directory (or its record) and add it to the
 * plan. */
static int link_paths(struct link_plan *pl, struct lpkg *k, const char *pyver, int64_t now_ns,
                      struct cfs_err *err)
{
	char *cached = NULL, target[4097];
	int pfd = -1, r = 0;

	for (size_t i = 0; i < k->npaths; i++) {
		struct ppath *pp = &k->paths[i];
		const char *slash = strrchr(pp->src, '/'), *base = slash ? slash + 1 : pp->src;
		size_t plen = slash ? (size_t)(slash - pp->src) : 0;
		struct link_entry e = {0};
		struct stat st;

		pp->dst =
		        keep(pl, k->noarch_py ? link_noarch_path(pp->src, pyver) : strdup(pp->src));
		if (!pp->dst) {
			r = err_set(err, -ENOMEM, "%s: out of memory", k->dist);
			goto out;
		}
		if (!path_ok(pp->src) || !path_ok(pp->dst)) {
			r = err_set(err, -EINVAL, "%s: path %s escapes the prefix", k->dist,
			            pp->src);
			goto out;
		}
		if (indexed(k)) {
			r = indexed_stat(k, pp->src, &st, target, sizeof(target));
		} else if (!cached || strlen(cached) != plen ||
		           memcmp(cached, pp->src, plen) != 0) {
			free(cached);
			if (pfd >= 0)
				close(pfd);
			cached = strndup(pp->src, plen);
			if (!cached) {
				pfd = -1;
				r = err_set(err, -ENOMEM, "%s: out of memory", k->dist);
				goto out;
			}
			pfd = open_beneath(k->dfd, cached, O_RDONLY | O_DIRECTORY);
		}
		if (!indexed(k) && (pfd < 0 || fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0))
			r = pfd < 0 ? pfd : neg_errno();
		if (r) {
			if (r == -ENOENT || r == -ENOTDIR)
				r = err_set(err, -EINVAL,
				            "%s: %s names %s, which the package lacks", k->dist,
				            k->paths_json ? "info/paths.json" : "info/files",
				            pp->src);
			else if (r == -ELOOP)
				r = err_set(err, -EINVAL,
				            "%s: %s: a symbolic link on the way in the package",
				            k->dist, pp->src);
			else
				r = err_set(err, r, "%s: %s: %s", k->dist, pp->src, strerror(-r));
			goto out;
		}
		/* Old packages say nothing of links: conda takes the file's own type. */
		if (!k->paths_json && S_ISLNK(st.st_mode) && !pp->placeholder)
			pp->type = PT_LINK;
		e.pkg = k->idx;
		e.mtime_ns = now_ns;
		if (pp->type == PT_FILE) {
			if (!S_ISREG(st.st_mode)) {
				r = err_set(err, -EINVAL,
				            "%s: %s is a hardlink in paths.json, not a regular "
				            "file in the package",
				            k->dist, pp->src);
				goto out;
			}
			if (pp->has_size && (uint64_t)st.st_size != pp->size) {
				r = err_set(err, -EINVAL,
				            "%s: %s has %lld bytes, paths.json says %llu", k->dist,
				            pp->src, (long long)st.st_size,
				            (unsigned long long)pp->size);
				goto out;
			}
			e.type = LINK_FILE;
			e.mode = st.st_mode & 07777;
			e.src = pp->src;
			e.len = (size_t)st.st_size;
			e.placeholder = pp->placeholder;
			e.binary = pp->binary;
			/* A package file keeps its mtime. conda stamps a file it relocates with
			 * the install's time, which makes the package's own .pyc of a relocated
			 * .py stale: on a read-only mount every import would compile it again. */
			e.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		} else if (pp->type == PT_LINK) {
			ssize_t n = indexed(k) ? (ssize_t)strlen(target) : 0;

			if (!S_ISLNK(st.st_mode)) {
				r = err_set(err, -EINVAL,
				            "%s: %s is a softlink in paths.json, not a symbolic "
				            "link in the package",
				            k->dist, pp->src);
				goto out;
			}
			if (!indexed(k))
				n = readlinkat(pfd, base, target, sizeof(target) - 1);
			if (n <= 0 || (size_t)n >= sizeof(target) - 1) {
				r = err_set(err, n < 0 ? neg_errno() : -ENAMETOOLONG,
				            "%s: %s: cannot read the link", k->dist, pp->src);
				goto out;
			}
			target[n] = 0;
			e.type = LINK_SYMLINK;
			e.mode = 0777;
			e.target = keep_str(pl, target);
			e.len = (size_t)n;
			if (!e.target) {
				r = err_set(err, -ENOMEM, "%s: out of memory", k->dist);
				goto out;
			}
		} else {
			if (!S_ISDIR(st.st_mode)) {
				r = err_set(
				        err, -EINVAL,
				        "%s: %s is a directory in paths.json, not in the package",
				        k->dist, pp->src);
				goto out;
			}
			e.type = LINK_DIR;
			e.mode = 0755;
		}
		e.path = pp->dst;
		if (add_cand(pl, &e, k->idx, k->pos, i) < 0 ||
		    add_src(pl, k->idx,
		            &(struct link_src){
		                    pp->src, pp->dst, e.type, e.type == LINK_FILE ? e.mode : 0,
		                    e.type == LINK_FILE ? e.mtime_ns : 0, e.len, e.target}) < 0) {
			r = err_set(err, -ENOMEM, "%s: out of memory", k->dist);
			goto out;
		}
	}
out:
	free(cached);
	if (pfd >= 0)
		close(pfd);
	return r;
}

/* conda's pyc_path for a python 3: dir/__pycache__/name.cpython-XY.pyc. */
static char *pyc_of(const char *py, const char *pyver)
{
	const char *slash = strrchr(py, '/');
	int dlen = slash ? (int)(slash - py + 1) : 0;
	char nodot[16];
	char *s;
	size_t j = 0;

	for (const char *v = pyver; *v && j + 1 < sizeof(nodot); v++)
		if (*v != '.')
			nodot[j++] = *v;
	nodot[j] = 0;
	if (asprintf(&s, "%.*s__pycache__/%.*s.cpython-%s.pyc", dlen, py,
	             (int)(strlen(py) - (size_t)dlen - 3), py + dlen, nodot) < 0)
		return NULL;
	return s;
}

static bool is_noarch_py_source(const char *src)
{
	size_t n = strlen(src);

	/* conda's ^site-packages[/\\][^\t\n\r\f\v]+\.py$ */
	return strncmp(src, "site-packages/", 14) == 0 && n > 17 &&
	       strcmp(src + n - 3, ".py") == 0 && !strpbrk(src, "\t\n\r\f\v");
}

static void jfield(struct jbuf *b, const char *key, bool *first)
{
	jputs(b, *first ? "" : ",");
	*first = false;
	jindent(b, 1);
	jstr(b, key);
	jputs(b, ": ");
}

/* What a record lists, in conda's order (core/link.py: the link actions, then the compile
 * actions, then the entry points): every path but directories, as linked; the pycs conda
 * compiles for a noarch python package's site-packages .py files (the caller compiles them);
 * the entry points. */
struct ritem {
	char *path;             /* as in the prefix; owned */
	const struct ppath *pp; /* a package path, or NULL */
	const char *type;       /* paths_data's path_type of a generated one */
};

static int record_items(const struct lpkg *k, const char **cmds, size_t ncmds, const char *pyver,
                        struct ritem **ret, size_t *ret_n)
{
	struct ritem *it = calloc(2 * k->npaths + ncmds + 1, sizeof(*it));
	size_t n = 0;

	if (!it)
		return -ENOMEM;
	for (size_t i = 0; i < k->npaths; i++)
		if (k->paths[i].type != PT_DIR) {
			it[n].pp = &k->paths[i];
			it[n++].path = strdup(k->paths[i].dst);
		}
	for (size_t i = 0; k->noarch_py && i < k->npaths; i++)
		if (k->paths[i].type != PT_DIR && is_noarch_py_source(k->paths[i].src)) {
			it[n].type = "pyc_file";
			it[n++].path = pyc_of(k->paths[i].dst, pyver);
		}
	for (size_t i = 0; i < ncmds; i++) {
		it[n].type = "unix_python_entry_point";
		if (asprintf(&it[n++].path, "bin/%s", cmds[i]) < 0)
			it[n - 1].path = NULL;
	}
	*ret = it;
	*ret_n = n;
	for (size_t i = 0; i < n; i++)
		if (!it[i].path)
			return -ENOMEM;
	return 0;
}

/* One paths_data entry: the package's (conda's PathDataV1 from paths.json, _path as the
 * package names it) or a generated one's. */
static void jpath_data(struct jbuf *b, const struct ritem *it)
{
	const struct ppath *pp = it->pp;
	char num[32];

	jputs(b, "{");
	jindent(b, 4);
	jputs(b, "\"_path\": ");
	jstr(b, pp ? pp->src : it->path);
	if (!pp) {
		jputs(b, ",");
		jindent(b, 4);
		jputs(b, "\"path_type\": ");
		jstr(b, it->type);
		jindent(b, 3);
		jputs(b, "}");
		return;
	}
	if (pp->placeholder) {
		jputs(b, ",");
		jindent(b, 4);
		jputs(b, pp->binary ? "\"file_mode\": \"binary\"" : "\"file_mode\": \"text\"");
	}
	if (pp->no_link) {
		jputs(b, ",");
		jindent(b, 4);
		jputs(b, "\"no_link\": true");
	}
	jputs(b, ",");
	jindent(b, 4);
	jputs(b,
	      pp->type == PT_LINK ? "\"path_type\": \"softlink\"" : "\"path_type\": \"hardlink\"");
	if (pp->placeholder) {
		jputs(b, ",");
		jindent(b, 4);
		jputs(b, "\"prefix_placeholder\": ");
		jstr(b, pp->placeholder);
	}
	if (pp->sha256) {
		jputs(b, ",");
		jindent(b, 4);
		jputs(b, "\"sha256\": ");
		jstr(b, pp->sha256);
		/* A linked file is the package's bytes; one with a placeholder depends on the
		 * path it is served at, so no sha256_in_prefix. */
		if (!pp->placeholder && pp->type == PT_FILE) {
			jputs(b, ",");
			jindent(b, 4);
			jputs(b, "\"sha256_in_prefix\": ");
			jstr(b, pp->sha256);
		}
	}
	if (pp->has_size) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)pp->size);
		jputs(b, ",");
		jindent(b, 4);
		jputs(b, "\"size_in_bytes\": ");
		jputs(b, num);
	}
	jindent(b, 3);
	jputs(b, "}");
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys conda's record adds or replaces. */
static const char *const record_keys[] = {
        "channel",    "features",       "files",  "fn",   "link",           "md5", "package_type",
        "paths_data", "requested_spec", "sha256", "size", "track_features", "url"};

/* Whether the record has key of ours: the ones we have a value for. */
static bool record_has(const struct lpkg *k, const char *key)
{
	if (strcmp(key, "package_type") == 0)
		return k->noarch_py || k->noarch_generic;
	if (strcmp(key, "md5") == 0)
		return k->in->md5;
	if (strcmp(key, "sha256") == 0)
		return k->in->sha256;
	if (strcmp(key, "size") == 0)
		return k->in->size;
	return true;
}

/*
 * conda-meta/<dist>.json as conda's CreatePrefixRecordAction writes it (json.dump,
 * indent 2, sorted keys, no final newline): index.json's fields, then what the install
 * adds; "files" and "paths_data" list record_items. "paths_data" keeps each package path
 * as paths.json names it (noarch python paths stay site-packages/..., as conda leaves
 * them). features and track_features are index.json's, "" when it has none.
 *
 * The machine paths conda records name its package cache, which a store has not:
 * extracted_package_dir and package_tarball_full_path are left out (conda and rattler
 * read both as optional), and link.source is "" with type 1 (hardlink: the files are the
 * package's bytes). sha256_in_prefix is left out for files with a placeholder.
 * requested_spec is "None", as conda writes it for a package no spec asked for: a lock
 * names no specs.
 */
static int make_record(struct lpkg *k, const char **cmds, size_t ncmds, const char *pyver,
                       struct jbuf *b)
{
	const size_t nmine = sizeof(record_keys) / sizeof(*record_keys);
	const struct ynode *root = yamldoc_root(k->index);
	size_t cnt = ynode_count(root), nkeys = 0, nit = 0;
	const char **keys = calloc(cnt + nmine + 1, sizeof(*keys));
	struct ritem *it = NULL;
	bool first = true;
	char num[32];
	int r = -ENOMEM;

	if (!keys || record_items(k, cmds, ncmds, pyver, &it, &nit) < 0)
		goto out;
	for (size_t i = 0; i < cnt; i++) {
		const char *key = ynode_str(ynode_key(root, i));
		bool ours = false;

		for (size_t m = 0; key && m < nmine; m++)
			ours |= strcmp(key, record_keys[m]) == 0;
		if (key && !ours && strcmp(key, "extracted_package_dir") != 0 &&
		    strcmp(key, "package_tarball_full_path") != 0)
			keys[nkeys++] = key;
	}
	for (size_t m = 0; m < nmine; m++)
		if (record_has(k, record_keys[m]))
			keys[nkeys++] = record_keys[m];
	qsort(keys, nkeys, sizeof(*keys), cmp_strp);
	jputs(b, "{");
	for (size_t i = 0; i < nkeys; i++) {
		const char *key = keys[i];

		if (i && strcmp(key, keys[i - 1]) == 0)
			continue;
		jfield(b, key, &first);
		if (strcmp(key, "channel") == 0) {
			jstr(b, k->channel);
		} else if (strcmp(key, "features") == 0 || strcmp(key, "track_features") == 0) {
			if (ynode_get(root, key))
				jnode(b, ynode_get(root, key), 1);
			else
				jputs(b, "\"\"");
		} else if (strcmp(key, "fn") == 0) {
			jstr(b, k->in->fn);
		} else if (strcmp(key, "url") == 0) {
			jstr(b, k->in->url);
		} else if (strcmp(key, "md5") == 0) {
			jstr(b, k->in->md5);
		} else if (strcmp(key, "sha256") == 0) {
			jstr(b, k->in->sha256);
		} else if (strcmp(key, "size") == 0) {
			snprintf(num, sizeof(num), "%llu", (unsigned long long)k->in->size);
			jputs(b, num);
		} else if (strcmp(key, "package_type") == 0) {
			jstr(b, k->noarch_py ? "noarch_python" : "noarch_generic");
		} else if (strcmp(key, "requested_spec") == 0) {
			jstr(b, "None");
		} else if (strcmp(key, "link") == 0) {
			jputs(b, "{");
			jindent(b, 2);
			jputs(b, "\"source\": \"\",");
			jindent(b, 2);
			jputs(b, "\"type\": 1");
			jindent(b, 1);
			jputs(b, "}");
		} else if (strcmp(key, "files") == 0) {
			jputs(b, nit ? "[" : "[]");
			for (size_t j = 0; j < nit; j++) {
				jindent(b, 2);
				jstr(b, it[j].path);
				jputs(b, j + 1 < nit ? "," : "");
			}
			if (nit) {
				jindent(b, 1);
				jputs(b, "]");
			}
		} else if (strcmp(key, "paths_data") == 0) {
			jputs(b, "{");
			jindent(b, 2);
			jputs(b, nit ? "\"paths\": [" : "\"paths\": [],");
			for (size_t j = 0; j < nit; j++) {
				jindent(b, 3);
				jpath_data(b, &it[j]);
				jputs(b, j + 1 < nit ? "," : "");
			}
			if (nit) {
				jindent(b, 2);
				jputs(b, "],");
			}
			jindent(b, 2);
			jputs(b, "\"paths_version\": 1");
			jindent(b, 1);
			jputs(b, "}");
		} else {
			jnode(b, ynode_get(root, key), 1);
		}
	}
	jindent(b, 0);
	jputs(b, "}"); /* json.dump ends with the brace, no newline */
	r = b->oom ? -ENOMEM : 0;
out:
	for (size_t i = 0; it && i < nit; i++)
		free(it[i].path);
	free(it);
	free(keys);
	return r;
}

/* A file of b's bytes (taken from b) at path (taken, freed on error too). */
static int add_generated(struct link_plan *pl, char *path, struct jbuf *b, uint32_t mode,
                         const char *placeholder, int64_t now_ns, size_t owner, size_t pos,
                         size_t seq)
{
	struct link_entry e = {0};

	e.path = keep(pl, path);
	if (b->oom || !e.path)
		return -ENOMEM;
	e.data = keep(pl, b->p ? b->p : strdup(""));
	b->p = NULL;
	e.len = b->n;
	b->n = b->cap = 0;
	if (!e.path || !e.data)
		return -ENOMEM;
	e.type = LINK_FILE;
	e.mode = mode;
	e.mtime_ns = now_ns;
	e.pkg = LINK_GENERATED;
	e.placeholder = placeholder;
	return add_cand(pl, &e, owner, pos, seq);
}

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	int c = strcmp(x->e.path, y->e.path);

	if (c)
		return c;
	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const char *dist_of(const struct lpkg *k, size_t n, size_t owner)
{
	return owner < n ? k[owner].dist : "conda-meta";
}

/* Every parent of every path in pl->c (sorted, each path once) as a directory conda
 * makes, merged in: pl->c stays sorted. In name order, the parents a path shares with
 * the path before it were made for that one, so each is made about once, not once per
 * path beneath it. */
static int make_parents(struct link_plan *pl, int64_t now_ns)
{
	struct cand *made = NULL, *all = NULL;
	size_t nmade = 0, capmade = 0;
	int r = 0;

	for (size_t i = 0; !r && i < pl->nc; i++) {
		const char *path = pl->c[i].e.path, *prev = i ? pl->c[i - 1].e.path : "";
		size_t common = 0;

		while (path[common] && path[common] == prev[common])
			common++;
		for (const char *s = strchr(path, '/'); !r && s; s = strchr(s + 1, '/')) {
			size_t at = (size_t)(s - path);
			struct cand *v;

			if (at < common)
				continue;
			v = grow_array(made, &capmade, nmade + 1, sizeof(*v));
			if (!v) {
				r = -ENOMEM;
				break;
			}
			made = v;
			made[nmade] = (struct cand){.owner = SIZE_MAX, .pos = SIZE_MAX};
			made[nmade].e.path = keep(pl, strndup(path, at));
			made[nmade].e.type = LINK_DIR;
			made[nmade].e.mode = 0755;
			made[nmade].e.mtime_ns = now_ns;
			made[nmade].e.pkg = LINK_GENERATED;
			if (!made[nmade++].e.path)
				r = -ENOMEM;
		}
	}
	if (!r && nmade) {
		qsort(made, nmade, sizeof(*made), cmp_cand);
		all = malloc((pl->nc + nmade) * sizeof(*all));
		if (!all)
			r = -ENOMEM;
	}
	if (!r && all) {
		size_t i = 0, j = 0, o = 0;

		while (i < pl->nc || j < nmade)
			all[o++] = j == nmade || (i < pl->nc && cmp_cand(&pl->c[i], &made[j]) <= 0)
			                   ? pl->c[i++]
			                   : made[j++];
		free(pl->c);
		pl->c = all;
		pl->nc = pl->capc = o;
	}
	free(made);
	return r;
}

/* Resolve clobbering (the later in link order wins, with a warning), refuse a path beneath a
 * file or symlink (L2), and add every parent directory conda makes. */
static int lay_out(struct link_plan *pl, struct lpkg *k, size_t n, int64_t now_ns,
                   void (*warn)(void *arg, const char *line), void *arg, struct cfs_err *err)
{
	size_t w = 0;
	char *line;

	qsort(pl->c, pl->nc, sizeof(*pl->c), cmp_cand);
	for (size_t i = 0; i < pl->nc; i++) {
		struct cand *c = &pl->c[i];

		if (w && strcmp(pl->c[w - 1].e.path, c->e.path) == 0) {
			struct cand *prev = &pl->c[w - 1];

			if (prev->e.type == LINK_DIR && c->e.type == LINK_DIR)
				continue;
			if (prev->e.type == LINK_DIR || c->e.type == LINK_DIR)
				return err_set(
				        err, -EINVAL, "%s: a directory in %s, not in %s", c->e.path,
				        dist_of(k, n,
				                prev->e.type == LINK_DIR ? prev->owner : c->owner),
				        dist_of(k, n,
				                prev->e.type == LINK_DIR ? c->owner : prev->owner));
			if (prev->owner == c->owner && prev->e.pkg != LINK_GENERATED &&
			    c->e.pkg != LINK_GENERATED)
				return err_set(err, -EINVAL, "%s: lists %s twice",
				               dist_of(k, n, c->owner), c->e.path);
			if (warn) {
				if (asprintf(&line, "%s: in both %s and %s; %s wins", c->e.path,
				             dist_of(k, n, prev->owner), dist_of(k, n, c->owner),
				             dist_of(k, n, c->owner)) < 0)
					return err_set(err, -ENOMEM, "out of memory");
				warn(arg, line);
				free(line);
			}
			*prev = *c;
			continue;
		}
		pl->c[w++] = *c;
	}
	pl->nc = w;
	if (make_parents(pl, now_ns) < 0)
		return err_set(err, -ENOMEM, "out of memory");
	w = 0;
	for (size_t i = 0; i < pl->nc; i++) {
		struct cand *c = &pl->c[i];

		if (w && strcmp(pl->c[w - 1].e.path, c->e.path) == 0) {
			/* A made parent where a package has an entry: the package's, if it is a
			 * directory; else a path goes through a file or symlink. */
			struct cand *prev = &pl->c[w - 1];
			const struct cand *pkgc = prev->pos == SIZE_MAX ? c : prev;

			if (pkgc->e.type != LINK_DIR)
				return err_set(
				        err, -EINVAL,
				        "%s: %s is a %s there, and another path lies beneath it",
				        dist_of(k, n, pkgc->owner), c->e.path,
				        pkgc->e.type == LINK_SYMLINK ? "symbolic link" : "file");
			if (prev->pos == SIZE_MAX)
				*prev = *c;
			continue;
		}
		pl->c[w++] = *c;
	}
	pl->nc = w;
	pl->e = calloc(pl->nc ? pl->nc : 1, sizeof(*pl->e));
	if (!pl->e)
		return err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < pl->nc; i++)
		pl->e[i] = pl->c[i].e;
	pl->n = pl->nc;
	free(pl->c);
	pl->c = NULL;
	pl->nc = pl->capc = 0;
	return 0;
}

/* conda-meta/history as conda's History.write_changes writes it for a new environment:
 * the header with the local time (conda's time.strftime), the command, and one
 * "+channel/subdir::dist" line per package, sorted. conda also writes "# conda version:",
 * which would claim a conda that never ran, and "# update specs:", which a lock does not
 * have: both are left out (conda's history parser takes both as optional). */
static int make_history(struct lpkg *k, size_t n, int64_t now_ns, struct jbuf *b)
{
	char **lines = calloc(n ? n : 1, sizeof(*lines));
	time_t t = (time_t)(now_ns / 1000000000);
	struct tm tm;
	char when[64];
	int r = 0;

	if (!lines)
		return -ENOMEM;
	if (!localtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(when, sizeof(when), "1970-01-01 00:00:00");
	for (size_t i = 0; i < n; i++)
		if (asprintf(&lines[i], "+%s::%s\n", k[i].channel, k[i].dist) < 0) {
			lines[i] = NULL;
			r = -ENOMEM;
			goto out;
		}
	qsort(lines, n, sizeof(*lines), cmp_strp);
	jputs(b, "==> ");
	jputs(b, when);
	jputs(b, " <==\n# cmd: condafs install\n");
	for (size_t i = 0; i < n; i++)
		jputs(b, lines[i]);
	r = b->oom ? -ENOMEM : 0;
out:
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	return r;
}

/* The major.minor of python's version (conda's get_major_minor_version): what noarch python
 * packages are mapped for. */
static int python_version(const struct lpkg *py, char **ret, struct cfs_err *err)
{
	const char *v = py->version;
	size_t a = strspn(v, "0123456789"), c = 0;

	if (a && v[a] == '.')
		c = strspn(v + a + 1, "0123456789");
	if (!c)
		return err_set(err, -EINVAL,
		               "%s: no python version to map noarch python packages for", py->dist);
	*ret = strndup(v, a + 1 + c);
	return *ret ? 0 : err_set(err, -ENOMEM, "out of memory");
}

/* channel/subdir: the caller's channel, else the URL without its file name. */
static char *channel_of(const struct lpkg *k)
{
	const char *url = k->in->url ? k->in->url : "";
	const char *slash = strrchr(url, '/');
	char *s = NULL;

	if (k->in->channel) {
		size_t len = strlen(k->in->channel);

		while (len && k->in->channel[len - 1] == '/')
			len--;
		if (asprintf(&s, "%.*s/%s", (int)len, k->in->channel, k->subdir) < 0)
			return NULL;
		return s;
	}
	return strndup(url, slash ? (size_t)(slash - url) : 0);
}

static bool is_link_script(const char *path, const char *name)
{
	size_t n = strlen(name);

	/* bin/.<name>-pre-link.sh, bin/.<name>-post-link.sh */
	return strncmp(path, "bin/.", 5) == 0 && strncmp(path + 5, name, n) == 0 &&
	       (strcmp(path + 5 + n, "-pre-link.sh") == 0 ||
	        strcmp(path + 5 + n, "-post-link.sh") == 0);
}

/* Package p's conda-meta record, the o-th of n in link order: as its store record keeps it
 * when that was made of the same (the package's own files, and these), else made now. */
static int add_record(struct link_plan *pl, struct lpkg *p, const char **cmds, size_t ncmds,
                      const char *pyver, int64_t now_ns, size_t n, size_t o, struct jbuf *b)
{
	const struct pkgrec_meta *m = record_cached(p, pyver);
	struct recinfo *ri = &pl->rec[p->idx];
	struct link_entry e = {0};
	char *path = NULL;

	ri->in = record_inputs(p, pyver);
	ri->in.url = keep_str(pl, ri->in.url);
	ri->in.fn = keep_str(pl, ri->in.fn);
	if (asprintf(&path, "conda-meta/%s.json", p->dist) < 0)
		path = NULL;
	ri->path = keep(pl, path);
	if (!ri->in.url || !ri->in.fn || !ri->path)
		return -ENOMEM;
	if (!m) {
		int r = make_record(p, cmds, ncmds, pyver, b);

		return r < 0 ? r
		             : add_generated(pl, strdup(ri->path), b, 0644, NULL, now_ns, SIZE_MAX,
		                             n, o);
	}
	e.path = ri->path;
	e.type = LINK_FILE;
	e.mode = 0644;
	e.mtime_ns = now_ns;
	e.pkg = LINK_GENERATED;
	e.key = &m->key;
	e.len = m->size;
	return add_cand(pl, &e, SIZE_MAX, n, o);
}

/* One package, the o-th of n in link order: its paths, entry points and record. */
static int plan_pkg(struct link_plan *pl, struct lpkg *p, const char *token, const char *pyver,
                    int64_t now_ns, size_t n, size_t o, struct jbuf *b, struct cfs_err *err)
{
	const struct ynode *eps =
	        ynode_get(ynode_get(yamldoc_root(p->linkjson), "noarch"), "entry_points");
	size_t neps = p->noarch_py ? ynode_count(eps) : 0;
	const char **cmds = NULL;
	char *path = NULL;
	int r;

	r = link_paths(pl, p, pyver, now_ns, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < p->npaths; i++)
		if (is_link_script(p->paths[i].dst, p->name)) {
			pl->scripts[pl->nscripts++] = p->dist;
			break;
		}
	cmds = calloc(neps + 1, sizeof(*cmds));
	if (!cmds)
		return err_set(err, -ENOMEM, "%s: out of memory", p->dist);
	for (size_t e = 0; e < neps; e++) {
		const char *def = ynode_str(ynode_item(eps, e));
		char *cmd = NULL;

		if (!def) {
			r = err_set(err, -EINVAL,
			            "%s/info/link.json: an entry point is not a string", p->dist);
			goto out;
		}
		r = entry_point(p, def, token, pyver, &cmd, b, err);
		if (r < 0)
			goto out;
		cmds[e] = keep(pl, cmd);
		if (!cmds[e] || asprintf(&path, "bin/%s", cmds[e]) < 0)
			path = NULL;
		r = path ? add_generated(pl, path, b, 0755, token, now_ns, p->idx, p->pos,
		                         p->npaths + e)
		         : -ENOMEM;
		if (r < 0) {
			err_set(err, r, "%s: out of memory", p->dist);
			goto out;
		}
	}
	/* The pycs conda compiles after linking: the installer compiles them (pyc_of). */
	for (size_t i = 0; p->noarch_py && i < p->npaths; i++) {
		struct link_entry e = {0};

		if (p->paths[i].type == PT_DIR || !is_noarch_py_source(p->paths[i].src))
			continue;
		e.path = keep(pl, pyc_of(p->paths[i].dst, pyver));
		if (!e.path) {
			r = err_set(err, -ENOMEM, "%s: out of memory", p->dist);
			goto out;
		}
		e.type = LINK_FILE;
		e.mode = 0644;
		e.mtime_ns = now_ns;
		e.pkg = LINK_GENERATED;
		e.pyc_of = p->paths[i].dst;
		r = add_cand(pl, &e, p->idx, p->pos, p->npaths + neps + i);
		if (r < 0) {
			err_set(err, r, "%s: out of memory", p->dist);
			goto out;
		}
	}
	r = add_record(pl, p, cmds, neps, pyver, now_ns, n, o, b);
	if (r < 0)
		err_set(err, r, "%s: out of memory", p->dist);
out:
	free(cmds);
	return r;
}

int link_plan_make(const struct link_pkg *pkgs, size_t n, const char *prefix_token, int64_t now_ns,
                   void (*warn)(void *arg, const char *line), void *arg, struct link_plan **ret,
                   struct cfs_err *err)
{
	struct link_plan *pl = calloc(1, sizeof(*pl));
	struct lpkg *k = calloc(n ? n : 1, sizeof(*k));
	const char *pyver = NULL, *token = NULL;
	struct lpkg *py = NULL;
	struct jbuf b = {0};
	int r = -ENOMEM;

	*ret = NULL;
	if (!pl || !k) {
		err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		k[i].dfd = -1;
	pl->scripts = calloc(n ? n : 1, sizeof(*pl->scripts));
	pl->src = calloc(n ? n : 1, sizeof(*pl->src));
	pl->rec = calloc(n ? n : 1, sizeof(*pl->rec));
	pl->nsrc = n;
	token = keep_str(pl, prefix_token);
	if (!pl->scripts || !pl->src || !pl->rec || !token) {
		err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		k[i].pl = pl;
		k[i].in = &pkgs[i];
		k[i].idx = i;
		r = read_pkg(&k[i], err);
		if (r < 0)
			goto out;
		k[i].channel = keep(pl, channel_of(&k[i]));
		if (!k[i].channel) {
			r = err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	r = link_order(k, n, pl, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (strcmp(k[i].name, "python") == 0)
			py = &k[i];
	for (size_t i = 0; i < n; i++) {
		if (!k[i].noarch_py)
			continue;
		if (!py) {
			r = err_set(err, -EINVAL,
			            "%s: a noarch python package, and the set has no python",
			            k[i].dist);
			goto out;
		}
		if (!pl->python) {
			r = python_version(py, &pl->python, err);
			if (r < 0)
				goto out;
		}
	}
	pyver = pl->python;
	for (size_t i = 0; i < n; i++) {
		r = read_paths(&k[i], pyver, err);
		if (r < 0)
			goto out;
	}
	for (size_t o = 0; o < n; o++) {
		r = plan_pkg(pl, &k[pl->order[o]], token, pyver, now_ns, n, o, &b, err);
		if (r < 0)
			goto out;
	}
	r = make_history(k, n, now_ns, &b);
	if (r == 0)
		r = add_generated(pl, strdup("conda-meta/history"), &b, 0644, NULL, now_ns,
		                  SIZE_MAX, n, n);
	if (r < 0) {
		err_set(err, r, "out of memory");
		goto out;
	}
	r = lay_out(pl, k, n, now_ns, warn, arg, err);
	if (r < 0)
		goto out;
	*ret = pl;
	pl = NULL;
	r = 0;
out:
	free(b.p);
	for (size_t i = 0; k && i < n; i++) {
		if (k[i].dfd >= 0)
			close(k[i].dfd);
		yamldoc_free(k[i].index);
		yamldoc_free(k[i].linkjson);
		free(k[i].paths);
		free(k[i].deps);
	}
	free(k);
	link_plan_free(pl);
	return r;
}

int link_record_placeholder(const struct pkgrec *rec, const char *name, char **ret,
                            struct cfs_err *err)
{
	struct link_plan *pl = calloc(1, sizeof(*pl));
	struct link_pkg in = {.dir = name, .rec = rec};
	struct lpkg k = {.pl = pl, .in = &in, .dfd = -1, .dist = (char *)name};
	int r = pl ? 0 : err_set(err, -ENOMEM, "out of memory");

	*ret = NULL;
	if (!r)
		r = read_paths_json(&k, err);
	if (r == -ENOENT)
		r = read_files(&k, err);
	for (size_t i = 0; !r && !*ret && i < k.npaths; i++)
		if (k.paths[i].placeholder && !(*ret = strdup(k.paths[i].placeholder)))
			r = err_set(err, -ENOMEM, "out of memory");
	free(k.paths);
	link_plan_free(pl);
	return r;
}

size_t link_plan_count(const struct link_plan *p)
{
	return p->n;
}

const char *link_plan_record(const struct link_plan *p, size_t i, struct pkgrec_meta *ret)
{
	if (i >= p->nsrc || !p->rec[i].path)
		return NULL;
	*ret = p->rec[i].in;
	return p->rec[i].path;
}

const struct link_entry *link_plan_entry(const struct link_plan *p, size_t i)
{
	return i < p->n ? &p->e[i] : NULL;
}

size_t link_plan_scripts(const struct link_plan *p)
{
	return p->nscripts;
}

const char *link_plan_script_pkg(const struct link_plan *p, size_t i)
{
	return i < p->nscripts ? p->scripts[i] : NULL;
}

const char *link_plan_python(const struct link_plan *p)
{
	return p->python;
}

size_t link_plan_order(const struct link_plan *p, size_t i)
{
	return i < p->norder ? p->order[i] : SIZE_MAX;
}

const struct link_entry *link_plan_find(const struct link_plan *p, const char *path)
{
	size_t lo = 0, hi = p->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->e[mid].path, path);

		if (c == 0)
			return &p->e[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct link_entry *link_plan_python_file(const struct link_plan *p)
{
	const struct link_entry *e;
	char path[64];

	if (!p->python)
		return NULL;
	snprintf(path, sizeof(path), "bin/python%s", p->python);
	e = link_plan_find(p, path);
	if (e && e->type == LINK_SYMLINK && !strchr(e->target, '/') &&
	    strlen(e->target) < sizeof(path) - 4) {
		snprintf(path, sizeof(path), "bin/%s", e->target);
		e = link_plan_find(p, path);
	}
	return e && e->type == LINK_FILE && e->pkg != LINK_GENERATED ? e : NULL;
}

size_t link_plan_pkg_srcs(const struct link_plan *p, size_t pkg)
{
	return pkg < p->nsrc ? p->src[pkg].n : 0;
}

const struct link_src *link_plan_pkg_src(const struct link_plan *p, size_t pkg, size_t i)
{
	return pkg < p->nsrc && i < p->src[pkg].n ? &p->src[pkg].s[i] : NULL;
}

void link_plan_free(struct link_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->npool; i++)
		free(p->pool[i]);
	free(p->pool);
	free(p->e);
	free(p->c);
	free(p->order);
	free(p->scripts);
	free(p->python);
	for (size_t i = 0; p->src && i < p->nsrc; i++)
		free(p->src[i].s);
	free(p->src);
	free(p->rec);
	free(p);
}
