// SPDX-License-Identifier: MIT
/*
 * Reading a package for linking (link.h): index.json and link.json, then its paths from
 * paths.json or the old info/files + has_prefix + no_link, from its directory (no symbolic
 * link followed), its unpacked files or its store record.
 */
#include "link_int.h"

#include "err.h"
#include "grow.h"
#include "pkgarchive.h"
#include "textfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An info/ file of the package, from its directory (no symlink followed), its unpacked
 * files or its record: malloc'd and NUL-terminated as textfile_read returns it; -ENOENT
 * when it has none. */
static int read_info(struct lpkg *k, const char *name, const char *display, size_t max, char **ret,
                     size_t *ret_len, struct cfs_err *err)
{
	const uint8_t *data;
	size_t len;
	int r;

	if (!lk_indexed(k))
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

	if (!lk_indexed(k))
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
		pp.src = lk_keep_str(k->pl, path);
		pp.placeholder = ph ? lk_keep_str(k->pl, ph) : NULL;
		pp.sha256 = sha ? lk_keep_str(k->pl, sha) : NULL;
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
		pp.src = lk_keep_str(k->pl, line);
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
			pp->placeholder = lk_keep_str(k->pl, nw == 1 ? DEFAULT_PLACEHOLDER : w[0]);
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

int lk_read_pkg(struct lpkg *k, struct cfs_err *err)
{
	const struct ynode *root, *noarch;
	char display[4200];
	const char *nt;
	int r;

	if (!lk_indexed(k)) {
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
	k->dist = lk_keep(k->pl, k->dist);
	if (!k->dist)
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

struct pkgrec_meta lk_record_inputs(const struct lpkg *k, const char *pyver)
{
	return (struct pkgrec_meta){.url = k->in->url ? k->in->url : "",
	                            .fn = k->in->fn ? k->in->fn : "",
	                            .channel = k->channel,
	                            .pyver = k->noarch_py && pyver ? pyver : ""};
}

/* The conda-meta record package k's store record keeps, when it was made of the same
 * inputs as k's would be now, else NULL. */
const struct pkgrec_meta *lk_record_cached(const struct lpkg *k, const char *pyver)
{
	const struct pkgrec_meta *m = k->in->rec ? pkgrec_meta(k->in->rec) : NULL;
	struct pkgrec_meta in = lk_record_inputs(k, pyver);

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

		pp->src = lk_keep_str(k->pl, e->path);
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
int lk_read_paths(struct lpkg *k, const char *pyver, struct cfs_err *err)
{
	int r;

	if (lk_record_cached(k, pyver)) {
		r = paths_from_record(k);
		return r < 0 ? err_set(err, r, "%s: out of memory", k->dist) : 0;
	}
	r = read_paths_json(k, err);
	if (r == -ENOENT)
		r = read_files(k, err);
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
