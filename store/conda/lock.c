// SPDX-License-Identifier: MIT
/*
 * Lock files: reading the solved package set out of `conda list --explicit` output, a
 * fully pinned environment.yml, conda-lock.yml (v1, and the older layout without a
 * version key) and pixi.lock v5-v7. The format is told by content, never by file name.
 * Files that look like locks but do not pin a solution (`conda list --export`, an
 * environment.yml with ranges) are refused with a message saying what they are.
 */
#include "condafs/conda.h"

#include "err.h"
#include "pkgset.h"
#include "textfile.h"
#include "yamldoc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* About 500 bytes per package and platform (conda-lock, pixi): a lock of 1,000 packages
 * for 6 platforms is 3 MB. Far more is no lock, and a wrong path to a big file fails fast. */
#define LOCK_MAX_BYTES (16u << 20)

/* Characters that make a spec a range or a pattern rather than one pinned package. */
#define SPEC_NOT_PINNED " \t<>!~*,|[]()@#;=^$"

/* "<path>:<line>" for messages about one entry. */
struct whereline {
	char s[4200];
};

static const char *where_at(struct whereline *w, const char *path, size_t line)
{
	snprintf(w->s, sizeof(w->s), "%s:%zu", path, line);
	return w->s;
}

/* The scalar items of a sequence, or the keys of a mapping, as "a, b, c". */
static const char *join(char *buf, size_t size, const struct ynode *n)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ynode_count(n) && len < size; i++) {
		const char *s = ynode_str(ynode_is_map(n) ? ynode_key(n, i) : ynode_item(n, i));
		int w = snprintf(buf + len, size - len, "%s%s", i ? ", " : "", s ? s : "?");

		if (w < 0)
			break;
		len += (size_t)w;
	}
	return buf;
}

static bool seq_has(const struct ynode *seq, const char *s)
{
	for (size_t i = 0; i < ynode_count(seq); i++) {
		const char *item = ynode_str(ynode_item(seq, i));

		if (item && strcmp(item, s) == 0)
			return true;
	}
	return false;
}

static const char *get_str(const struct ynode *map, const char *key)
{
	return ynode_str(ynode_get(map, key));
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/* The platform for a file that names none. */
static int default_platform(const char *path, const char *platform, const char **ret,
                            struct cfs_err *err)
{
	*ret = platform ? platform : pkgset_host_platform();
	if (!*ret)
		return err_set(err, -EINVAL,
		               "%s: the file names no platform and this machine has no conda "
		               "platform name; give the platform",
		               path);
	return 0;
}

/*
 * The platform to take from a lock that holds several (a sequence of names, or a mapping
 * keyed by them) when none is asked for: the host's, as conda-lock and pixi install. NULL
 * when the lock does not hold it; the caller then asks for a choice, naming them.
 */
static const char *host_among(const struct ynode *platforms)
{
	const char *host = pkgset_host_platform();

	if (!host)
		return NULL;
	for (size_t i = 0; i < ynode_count(platforms); i++) {
		const char *p = ynode_str(ynode_is_map(platforms) ? ynode_key(platforms, i)
		                                                  : ynode_item(platforms, i));

		if (p && strcmp(p, host) == 0)
			return host;
	}
	return NULL;
}

/* A lock for several platforms, none of them this machine's: say which to choose from. */
static int choose_one(const char *path, const char *what, const struct ynode *platforms,
                      struct cfs_err *err)
{
	const char *host = pkgset_host_platform();
	char list[512];

	return err_set(err, -EINVAL,
	               "%s: %s several platforms (%s), not this machine's (%s): "
	               "choose one with --platform",
	               path, what, join(list, sizeof(list), platforms), host ? host : "unknown");
}

/* Tell the set that its platform was the host's, taken among the lock's several. */
static int note_choice(struct pkgset *set, const char *path, const struct ynode *platforms,
                       struct cfs_err *err)
{
	char list[512];
	int r = pkgset_note_choices(set, join(list, sizeof(list), platforms));

	return r < 0 ? err_set(err, r, "%s: out of memory", path) : 0;
}

/* ---- virtual packages a solution requires (__cuda, __glibc, ...) ---- */

/* Keep name (len bytes) and spec when name is a virtual package. */
static int keep_virtual(struct pkgset *set, const char *name, size_t len, const char *spec,
                        const char *from, const char *where, struct cfs_err *err)
{
	char *copy;
	int r;

	if (len < 3 || strncmp(name, "__", 2) != 0)
		return 0;
	copy = strndup(name, len);
	if (!copy)
		return err_set(err, -ENOMEM, "%s: out of memory", where);
	while (*spec == ' ' || *spec == '\t')
		spec++;
	r = pkgset_add_virtual(set, copy, spec, from);
	free(copy);
	return r < 0 ? err_set(err, r, "%s: out of memory", where) : 0;
}

/* A package's dependencies as match specs, "name spec" ("__cuda >=12", "__glibc"). */
static int keep_virtual_specs(struct pkgset *set, const struct ynode *deps, const char *from,
                              const char *where, struct cfs_err *err)
{
	for (size_t i = 0; i < ynode_count(deps); i++) {
		const char *dep = ynode_str(ynode_item(deps, i));
		size_t len;
		int r;

		if (!dep)
			continue;
		len = strcspn(dep, " \t=<>!~");
		r = keep_virtual(set, dep, len, dep + len, from, where, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- conda list --explicit ---- */

/* The version in a wheel ("<name>-<version>-<tags>.whl") or sdist ("<name>-<version>.tar.gz")
 * file name; file is modified. */
static const char *pip_file_version(char *file)
{
	static const char *const sdist[] = {".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz"};
	size_t len = strlen(file);
	char *v;

	if (len > 4 && strcmp(file + len - 4, ".whl") == 0) {
		v = strchr(file, '-');
		if (!v || !strchr(v + 1, '-'))
			return NULL;
		*strchr(++v, '-') = '\0';
		return *v ? v : NULL;
	}
	for (size_t i = 0; i < sizeof(sdist) / sizeof(sdist[0]); i++) {
		size_t el = strlen(sdist[i]);

		if (len > el && strcmp(file + len - el, sdist[i]) == 0) {
			file[len - el] = '\0';
			v = strrchr(file, '-');
			return v && v[1] ? v + 1 : NULL;
		}
	}
	return NULL;
}

/* conda-lock's "# pip <name> @ <url>#sha256=<hex>"; s points after "pip ". */
static int explicit_pip(struct pkgset *set, char *s, const char *where, struct cfs_err *err)
{
	struct pkg p = {.kind = PKG_PYPI};
	char *at = strstr(s, " @ "), *url, *frag, *file;

	if (!at)
		return err_set(err, -EINVAL, "%s: '# pip %s' is not '# pip <name> @ <url>'", where,
		               s);
	*at = '\0';
	p.name = trim(s);
	url = trim(at + 3);
	frag = strchr(url, '#');
	if (frag) {
		*frag++ = '\0';
		if (strncmp(frag, "sha256=", 7) == 0)
			p.sha256 = frag + 7;
	}
	p.url = url;
	url[strcspn(url, "?")] = '\0';
	file = strrchr(url, '/');
	file = file ? file + 1 : url;
	p.version = pip_file_version(file);
	if (!p.version)
		return err_set(err, -EINVAL,
		               "%s: pip package %s: cannot tell its version from '%s' (not a "
		               "wheel or sdist file name)",
		               where, p.name, file);
	return pkgset_add(set, &p, where, err);
}

/* A package line: "<channel>/<subdir>/<file>[#<md5>|#<sha256>|#sha256:<hex>]". */
static int explicit_url(struct pkgset *set, char *s, const char *where, const char **url_platform,
                        struct cfs_err *err)
{
	struct pkg p = {.kind = PKG_CONDA};
	char *hash = strchr(s, '#'), *url = s, *file, *whole;
	int r;

	if (hash) {
		*hash++ = '\0';
		if (strncmp(hash, "sha256:", 7) == 0)
			p.sha256 = hash + 7;
		else if (strlen(hash) == 32)
			p.md5 = hash;
		else if (strlen(hash) == 64)
			p.sha256 = hash;
		else
			return err_set(err, -EINVAL, "%s: '#%s' is neither an md5 nor a sha256",
			               where, hash);
	}
	whole = strdup(url);
	if (!whole)
		return err_set(err, -ENOMEM, "%s: out of memory", where);
	p.url = whole;
	if (!pkgset_split_url(url, &p.channel, &p.subdir, &file)) {
		r = err_set(err, -EINVAL, "%s: '%s' is not a package URL", where, s);
	} else if (!pkgset_split_filename(file, &p.name, &p.version, &p.build)) {
		r = err_set(err, -EINVAL,
		            "%s: '%s' is not <name>-<version>-<build>.conda or .tar.bz2", where,
		            file);
	} else if (strcmp(p.subdir, "noarch") != 0 && *url_platform &&
	           strcmp(*url_platform, p.subdir) != 0) {
		r = err_set(err, -EINVAL, "%s: a package for %s among packages for %s", where,
		            p.subdir, *url_platform);
	} else {
		if (strcmp(p.subdir, "noarch") != 0)
			*url_platform = p.subdir;
		r = pkgset_add(set, &p, where, err);
	}
	free(whole);
	return r;
}

static int parse_explicit(const char *path, char *text, const char *platform, struct pkgset **ret,
                          struct cfs_err *err)
{
	const char *header = NULL, *url_platform = NULL, *final;
	struct pkgset *set = NULL;
	bool explicit = false;
	size_t lineno = 0;
	struct whereline w = {.s = ""};
	char *next;
	int r;

	r = pkgset_new(&set);
	if (r < 0)
		return err_set(err, r, "%s: out of memory", path);
	for (char *line = text; line; line = next) {
		char *s;

		lineno++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		s = trim(line);
		if (!*s)
			continue;
		if (strcmp(s, "@EXPLICIT") == 0) {
			explicit = true;
			continue;
		}
		if (*s == '#') {
			s = trim(s + 1);
			if (strncmp(s, "platform:", 9) == 0) {
				header = trim(s + 9);
			} else if (explicit && strncmp(s, "pip ", 4) == 0) {
				r = explicit_pip(set, s + 4, where_at(&w, path, lineno), err);
				if (r < 0)
					goto out;
			}
			continue;
		}
		if (!explicit) {
			r = err_set(err, -EINVAL, "%s:%zu: '%s' comes before @EXPLICIT", path,
			            lineno, s);
			goto out;
		}
		r = explicit_url(set, s, where_at(&w, path, lineno), &url_platform, err);
		if (r < 0)
			goto out;
	}
	if (header && url_platform && strcmp(header, url_platform) != 0) {
		r = err_set(err, -EINVAL, "%s: '# platform: %s' but the packages are for %s", path,
		            header, url_platform);
		goto out;
	}
	final = header ? header : url_platform;
	if (final && platform && strcmp(final, platform) != 0) {
		r = err_set(err, -EINVAL, "%s: a lock for %s, not for %s", path, final, platform);
		goto out;
	}
	if (!final) {
		r = default_platform(path, platform, &final, err);
		if (r < 0)
			goto out;
	}
	r = pkgset_finish(set, final, path, err);
	if (r < 0)
		goto out;
	*ret = set;
	set = NULL;
out:
	pkgset_free(set);
	return r;
}

/* ---- environment.yml ---- */

static int envyml_conda(struct pkgset *set, const char *path, const char *spec, const char *where,
                        struct cfs_err *err)
{
	struct pkg p = {.kind = PKG_CONDA};
	char *copy = strdup(spec), *s, *sep, *v, *b;
	int r;

	if (!copy)
		return err_set(err, -ENOMEM, "%s: out of memory", path);
	s = trim(copy);
	sep = strstr(s, "::");
	if (sep) {
		*sep = '\0';
		p.channel = s;
		s = sep + 2;
	}
	v = strchr(s, '=');
	b = v ? strchr(v + 1, '=') : NULL;
	if (!b || strchr(b + 1, '=')) {
		r = err_set(err, -EINVAL,
		            "%s: not a lock: '%s' is not pinned to name=version=build", path, spec);
		goto out;
	}
	*v++ = '\0';
	*b++ = '\0';
	if (!*s || !*v || !*b || s[strcspn(s, SPEC_NOT_PINNED)] || v[strcspn(v, SPEC_NOT_PINNED)] ||
	    b[strcspn(b, SPEC_NOT_PINNED)] || (p.channel && !*p.channel)) {
		r = err_set(err, -EINVAL,
		            "%s: not a lock: '%s' is not pinned to name=version=build", path, spec);
		goto out;
	}
	p.name = s;
	p.version = v;
	p.build = b;
	r = pkgset_add(set, &p, where, err);
out:
	free(copy);
	return r;
}

static int envyml_pip(struct pkgset *set, const char *path, const char *spec, const char *where,
                      struct cfs_err *err)
{
	struct pkg p = {.kind = PKG_PYPI};
	char *copy = strdup(spec), *s, *eq, *extras;
	int r;

	if (!copy)
		return err_set(err, -ENOMEM, "%s: out of memory", path);
	s = trim(copy);
	eq = strstr(s, "==");
	if (!eq) {
		r = err_set(err, -EINVAL, "%s: not a lock: pip '%s' is not pinned to name==version",
		            path, spec);
		goto out;
	}
	*eq = '\0';
	p.version = trim(eq + 2);
	s = trim(s);
	/* "name[extra]==1.0" installs the same distribution as "name==1.0". */
	extras = strchr(s, '[');
	if (extras && extras[strcspn(extras, "]")] == ']' &&
	    extras[strcspn(extras, "]") + 1] == '\0')
		*extras = '\0';
	p.name = s;
	if (!*p.name || !*p.version || p.name[strcspn(p.name, SPEC_NOT_PINNED)] ||
	    p.version[strcspn(p.version, SPEC_NOT_PINNED)]) {
		r = err_set(err, -EINVAL, "%s: not a lock: pip '%s' is not pinned to name==version",
		            path, spec);
		goto out;
	}
	r = pkgset_add(set, &p, where, err);
out:
	free(copy);
	return r;
}

static int parse_envyml(const char *path, const struct ynode *root, const char *platform,
                        struct pkgset **ret, struct cfs_err *err)
{
	const struct ynode *deps = ynode_get(root, "dependencies");
	const struct ynode *platforms = ynode_get(root, "platforms");
	struct pkgset *set = NULL;
	const char *final;
	char list[512];
	struct whereline w = {.s = ""};
	int r;

	if (!ynode_is_seq(deps))
		return err_set(err, -EINVAL, "%s:%zu: not a lock: dependencies is not a list", path,
		               ynode_line(deps));
	r = pkgset_new(&set);
	if (r < 0)
		return err_set(err, r, "%s: out of memory", path);
	for (size_t i = 0; i < ynode_count(deps); i++) {
		const struct ynode *dep = ynode_item(deps, i);
		const struct ynode *pip = ynode_get(dep, "pip");

		if (ynode_str(dep)) {
			r = envyml_conda(set, path, ynode_str(dep),
			                 where_at(&w, path, ynode_line(dep)), err);
		} else if (ynode_is_seq(pip) && ynode_count(dep) == 1) {
			for (size_t j = 0; j < ynode_count(pip) && r == 0; j++) {
				const struct ynode *item = ynode_item(pip, j);

				if (!ynode_str(item))
					r = err_set(err, -EINVAL,
					            "%s:%zu: a pip entry that is not a string",
					            path, ynode_line(item));
				else
					r = envyml_pip(set, path, ynode_str(item),
					               where_at(&w, path, ynode_line(item)), err);
			}
		} else {
			r = err_set(err, -EINVAL,
			            "%s:%zu: a dependency that is neither a string nor a pip: list",
			            path, ynode_line(dep));
		}
		if (r < 0)
			goto out;
	}
	/* conda-lock reads a "platforms" list from environment.yml; conda ignores it. */
	if (ynode_is_seq(platforms) && platform && !seq_has(platforms, platform)) {
		r = err_set(err, -EINVAL, "%s: platform %s is not in its platforms (%s)", path,
		            platform, join(list, sizeof(list), platforms));
		goto out;
	}
	if (ynode_is_seq(platforms) && !platform && ynode_count(platforms) > 1) {
		final = host_among(platforms);
		r = final ? note_choice(set, path, platforms, err)
		          : choose_one(path, "it lists", platforms, err);
	} else if (ynode_is_seq(platforms) && !platform && ynode_str(ynode_item(platforms, 0))) {
		final = ynode_str(ynode_item(platforms, 0));
	} else {
		r = default_platform(path, platform, &final, err);
	}
	if (r < 0)
		goto out;
	r = pkgset_finish(set, final, path, err);
	if (r < 0)
		goto out;
	*ret = set;
	set = NULL;
out:
	pkgset_free(set);
	return r;
}

/* ---- conda-lock.yml ---- */

static int condalock_conda(struct pkgset *set, const struct ynode *rec, const char *where,
                           struct cfs_err *err)
{
	const struct ynode *hash = ynode_get(rec, "hash"), *deps = ynode_get(rec, "dependencies");
	const char *url = get_str(rec, "url"), *fname, *fversion;
	struct pkg p = {
	        .kind = PKG_CONDA,
	        .name = get_str(rec, "name"),
	        .version = get_str(rec, "version"),
	        .md5 = get_str(hash, "md5"),
	        .sha256 = get_str(hash, "sha256"),
	        .url = url,
	};
	char *copy, *file;
	int r;

	if (!url || !p.name || !p.version)
		return err_set(err, -EINVAL, "%s: a conda package needs name, version and url",
		               where);
	copy = strdup(url);
	if (!copy)
		return err_set(err, -ENOMEM, "%s: out of memory", where);
	if (!pkgset_split_url(copy, &p.channel, &p.subdir, &file) ||
	    !pkgset_split_filename(file, &fname, &fversion, &p.build)) {
		r = err_set(err, -EINVAL,
		            "%s: %s: url '%s' does not end in <name>-<version>-<build>.conda or "
		            ".tar.bz2",
		            where, p.name, url);
		goto out;
	}
	if (strcmp(fname, p.name) != 0 || strcmp(fversion, p.version) != 0) {
		r = err_set(err, -EINVAL, "%s: %s %s: url '%s' is for %s %s", where, p.name,
		            p.version, url, fname, fversion);
		goto out;
	}
	r = pkgset_add(set, &p, where, err);
	/* conda-lock keeps a package's dependencies as a mapping, name: spec. */
	for (size_t i = 0; r == 0 && i < ynode_count(deps); i++) {
		const char *name = ynode_str(ynode_key(deps, i));
		const char *spec = ynode_str(ynode_value(deps, i));

		if (name)
			r = keep_virtual(set, name, strlen(name), spec ? spec : "", p.name, where,
			                 err);
	}
out:
	free(copy);
	return r;
}

static int parse_condalock(const char *path, const struct ynode *root, const char *platform,
                           struct pkgset **ret, struct cfs_err *err)
{
	const struct ynode *version = ynode_get(root, "version");
	const struct ynode *platforms = ynode_get(ynode_get(root, "metadata"), "platforms");
	const struct ynode *pkgs = ynode_get(root, "package");
	struct pkgset *set = NULL;
	const char *final = platform;
	size_t matched = 0;
	char list[512];
	struct whereline w = {.s = ""};
	int r;

	/* Files from before conda-lock wrote "version: 1" have the same layout. */
	if (version && (!ynode_str(version) || strcmp(ynode_str(version), "1") != 0))
		return err_set(err, -EINVAL,
		               "%s:%zu: conda-lock.yml version %s is not supported (only 1)", path,
		               ynode_line(version), ynode_str(version) ? ynode_str(version) : "?");
	if (!ynode_is_seq(pkgs))
		return err_set(err, -EINVAL, "%s:%zu: conda-lock.yml: package is not a list", path,
		               ynode_line(pkgs));
	if (platform && ynode_is_seq(platforms) && !seq_has(platforms, platform))
		return err_set(err, -EINVAL, "%s: platform %s is not in the lock (it has %s)", path,
		               platform, join(list, sizeof(list), platforms));
	if (!platform && !ynode_is_seq(platforms))
		return err_set(err, -EINVAL, "%s: metadata.platforms is missing: give the platform",
		               path);
	if (!platform && ynode_count(platforms) > 1 && !(final = host_among(platforms)))
		return choose_one(path, "the lock is for", platforms, err);
	if (!final)
		final = ynode_str(ynode_item(platforms, 0));
	if (!final)
		return err_set(err, -EINVAL, "%s:%zu: metadata.platforms holds no platform name",
		               path, ynode_line(platforms));
	r = pkgset_new(&set);
	if (r < 0)
		return err_set(err, r, "%s: out of memory", path);
	if (!platform && ynode_count(platforms) > 1 &&
	    (r = note_choice(set, path, platforms, err)) < 0)
		goto out;
	for (size_t i = 0; i < ynode_count(pkgs); i++) {
		const struct ynode *rec = ynode_item(pkgs, i);
		const char *manager = get_str(rec, "manager"), *cat = get_str(rec, "category");
		const char *where = where_at(&w, path, ynode_line(rec));
		const char *pl = get_str(rec, "platform");

		if (!pl || !manager) {
			r = err_set(err, -EINVAL, "%s: a package needs platform and manager",
			            where);
			goto out;
		}
		if (strcmp(pl, final) != 0)
			continue;
		matched++;
		/* What `conda-lock install` installs by default: main and dev, no extras. */
		if (cat && strcmp(cat, "main") != 0 && strcmp(cat, "dev") != 0)
			continue;
		if (strcmp(manager, "conda") == 0) {
			r = condalock_conda(set, rec, where, err);
		} else if (strcmp(manager, "pip") == 0) {
			const struct ynode *hash = ynode_get(rec, "hash");
			struct pkg p = {
			        .kind = PKG_PYPI,
			        .name = get_str(rec, "name"),
			        .version = get_str(rec, "version"),
			        .md5 = get_str(hash, "md5"),
			        .sha256 = get_str(hash, "sha256"),
			        .url = get_str(rec, "url"),
			};

			r = pkgset_add(set, &p, where, err);
		} else {
			r = err_set(err, -EINVAL, "%s: manager '%s' is neither conda nor pip",
			            where, manager);
		}
		if (r < 0)
			goto out;
	}
	/* Without metadata.platforms a mistyped platform would give an empty set. */
	if (!matched && ynode_count(pkgs)) {
		r = err_set(err, -EINVAL, "%s: no package in the lock is for %s", path, final);
		goto out;
	}
	r = pkgset_finish(set, final, path, err);
	if (r < 0)
		goto out;
	*ret = set;
	set = NULL;
out:
	pkgset_free(set);
	return r;
}

/* ---- pixi.lock ---- */

struct pixi_rec {
	enum pkg_kind kind;
	const char *loc;
	const struct ynode *node;
};

/* What a conda location's file name says, when it names a conda archive. */
struct condaloc {
	char *buf;
	const char *channel, *subdir, *name, *version, *build; /* NULL when not an archive */
};

static int condaloc_parse(const char *loc, struct condaloc *ret)
{
	const char *channel, *subdir;
	char *file;

	*ret = (struct condaloc){.buf = strdup(loc)};
	if (!ret->buf)
		return -ENOMEM;
	if (!pkgset_split_url(ret->buf, &channel, &subdir, &file) ||
	    !pkgset_split_filename(file, &ret->name, &ret->version, &ret->build))
		return 0;
	/* A relative path to an archive has a subdir but no channel worth comparing. */
	ret->channel = strstr(loc, "://") ? channel : NULL;
	ret->subdir = subdir;
	return 0;
}

static int pixi_rec_cmp(const void *a, const void *b)
{
	const struct pixi_rec *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return strcmp(x->loc, y->loc);
}

/* Records are keyed by kind and location: v5 by "kind" and url/path, v6 and v7 by a
 * "conda:" or "pypi:" key. */
static int pixi_index(const char *path, int version, const struct ynode *pkgs,
                      struct pixi_rec **ret, size_t *ret_n, struct cfs_err *err)
{
	size_t n = ynode_count(pkgs);
	struct pixi_rec *recs;

	if (!ynode_is_seq(pkgs))
		return err_set(err, -EINVAL, "%s:%zu: pixi.lock: packages is not a list", path,
		               ynode_line(pkgs));
	recs = calloc(n ? n : 1, sizeof(*recs));
	if (!recs)
		return err_set(err, -ENOMEM, "%s: out of memory", path);
	for (size_t i = 0; i < n; i++) {
		const struct ynode *rec = ynode_item(pkgs, i);
		const char *kind = get_str(rec, "kind");

		recs[i].node = rec;
		if (version == 5) {
			recs[i].loc =
			        get_str(rec, "url") ? get_str(rec, "url") : get_str(rec, "path");
			recs[i].kind = kind && strcmp(kind, "pypi") == 0 ? PKG_PYPI : PKG_CONDA;
			if (!kind || (strcmp(kind, "conda") != 0 && strcmp(kind, "pypi") != 0))
				recs[i].loc = NULL;
		} else if (get_str(rec, "conda")) {
			recs[i].kind = PKG_CONDA;
			recs[i].loc = get_str(rec, "conda");
		} else {
			recs[i].kind = PKG_PYPI;
			recs[i].loc = get_str(rec, "pypi");
		}
		if (!recs[i].loc) {
			free(recs);
			return err_set(err, -EINVAL,
			               version == 5
			                       ? "%s:%zu: a package without kind (conda or pypi) "
			                         "and url or path"
			                       : "%s:%zu: a package without conda: or pypi:",
			               path, ynode_line(rec));
		}
	}
	qsort(recs, n, sizeof(*recs), pixi_rec_cmp);
	*ret = recs;
	*ret_n = n;
	return 0;
}

static bool yaml_true(const struct ynode *n)
{
	return ynode_str(n) && strcmp(ynode_str(n), "true") == 0;
}

/* Does a selector's optional field agree with the record (or what its location says)? */
static bool sel_agrees(const struct ynode *sel, const struct ynode *rec, const char *key,
                       const char *derived)
{
	const char *want = get_str(sel, key), *have = get_str(rec, key);

	if (!want)
		return true;
	if (!have)
		have = derived;
	return have && strcmp(want, have) == 0;
}

/* rattler_lock's choice among records that share a location: v6 selectors may carry
 * name/version/build/subdir; v7 binaries must be for the platform or noarch, v7 sources
 * must carry the selector's variants. */
static bool pixi_selects(int version, const struct ynode *sel, const struct ynode *rec,
                         const struct condaloc *cl, const char *subdir)
{
	const struct ynode *variants = ynode_get(sel, "variants");

	if (!sel_agrees(sel, rec, "name", cl->name))
		return false;
	if (version == 6)
		return sel_agrees(sel, rec, "version", cl->version) &&
		       sel_agrees(sel, rec, "build", cl->build) &&
		       sel_agrees(sel, rec, "subdir", cl->subdir);
	if (version != 7)
		return true;
	if (cl->name) {
		const char *rec_subdir =
		        get_str(rec, "subdir") ? get_str(rec, "subdir") : cl->subdir;

		return rec_subdir &&
		       (strcmp(rec_subdir, subdir) == 0 || strcmp(rec_subdir, "noarch") == 0);
	}
	if (yaml_true(ynode_get(sel, "dev")) != yaml_true(ynode_get(rec, "dev")))
		return false;
	for (size_t i = 0; i < ynode_count(variants); i++) {
		const char *key = ynode_str(ynode_key(variants, i));
		const char *want = ynode_str(ynode_value(variants, i));
		const char *have = get_str(ynode_get(rec, "variants"), key ? key : "");

		if (!key || !want || !have || strcmp(want, have) != 0)
			return false;
	}
	return true;
}

/* The record's archive size: 0 (unknown) unless it is a plain decimal byte count. It only
 * orders downloads and totals their progress (store/install_sources.c), so a lock that
 * says it otherwise is not refused for it. */
static uint64_t get_size(const struct ynode *rec)
{
	uint64_t v;

	return ynode_u64(ynode_get(rec, "size"), &v) ? v : 0;
}

static int pixi_conda(struct pkgset *set, const struct ynode *rec, const struct condaloc *cl,
                      const char *loc, const char *where, struct cfs_err *err)
{
	struct pkg p = {
	        .kind = PKG_CONDA,
	        .name = get_str(rec, "name") ? get_str(rec, "name") : cl->name,
	        .version = get_str(rec, "version") ? get_str(rec, "version") : cl->version,
	        .build = get_str(rec, "build") ? get_str(rec, "build") : cl->build,
	        .subdir = get_str(rec, "subdir") ? get_str(rec, "subdir") : cl->subdir,
	        .channel = cl->channel,
	        .url = loc,
	};
	int r;

	if (!p.name || !p.version)
		return err_set(err, -EINVAL,
		               "%s: %s: the record has no name and version, and the location is "
		               "not a conda file name",
		               where, loc);
	if (cl->name) {
		p.md5 = get_str(rec, "md5");
		p.sha256 = get_str(rec, "sha256");
		p.size = get_size(rec);
	} else if (!p.build) {
		/* A source package is built at install time; its lock record may have no build
		 * string yet. */
		p.build = "";
	}
	r = pkgset_add(set, &p, where, err);
	return r < 0 ? r : keep_virtual_specs(set, ynode_get(rec, "depends"), p.name, where, err);
}

static int pixi_entry(struct pkgset *set, const char *path, int version,
                      const struct pixi_rec *recs, size_t nrecs, const struct ynode *sel,
                      const char *subdir, struct cfs_err *err)
{
	struct pixi_rec key = {.kind = PKG_CONDA, .loc = get_str(sel, "conda")};
	size_t lo = 0, hi = nrecs;
	struct whereline w = {.s = ""};
	const char *where;

	if (!key.loc) {
		key.kind = PKG_PYPI;
		key.loc = get_str(sel, "pypi");
	}
	where = where_at(&w, path, ynode_line(sel));
	if (!key.loc)
		return err_set(err, -EINVAL, "%s: an entry without conda: or pypi:", where);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pixi_rec_cmp(&recs[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < nrecs && pixi_rec_cmp(&recs[lo], &key) == 0; lo++) {
		const struct ynode *rec = recs[lo].node;
		struct condaloc cl = {0};
		int r;

		where = where_at(&w, path, ynode_line(rec));
		if (key.kind == PKG_PYPI) {
			struct pkg p = {
			        .kind = PKG_PYPI,
			        .name = get_str(rec, "name"),
			        .version = get_str(rec, "version"),
			        .md5 = get_str(rec, "md5"),
			        .sha256 = get_str(rec, "sha256"),
			        .url = key.loc,
			};

			return pkgset_add(set, &p, where, err);
		}
		if (condaloc_parse(key.loc, &cl) < 0)
			return err_set(err, -ENOMEM, "%s: out of memory", path);
		r = 1;
		if (pixi_selects(version, sel, rec, &cl, subdir))
			r = pixi_conda(set, rec, &cl, key.loc, where, err);
		free(cl.buf);
		if (r <= 0)
			return r;
	}
	return err_set(err, -EINVAL, "%s:%zu: %s has no matching record in packages", path,
	               ynode_line(sel), key.loc);
}

static int parse_pixi(const char *path, const struct ynode *root, const char *platform,
                      const char *environment, struct pkgset **ret, struct cfs_err *err)
{
	const char *vs = get_str(root, "version"), *subdir, *envname;
	const struct ynode *envs = ynode_get(root, "environments"), *env, *byplat, *list;
	struct pixi_rec *recs = NULL;
	struct pkgset *set = NULL;
	size_t nrecs = 0;
	char names[512];
	bool chosen;
	int version, r;

	if (!vs || (strcmp(vs, "5") != 0 && strcmp(vs, "6") != 0 && strcmp(vs, "7") != 0))
		return err_set(err, -EINVAL, "%s: pixi.lock version %s is not supported (5 to 7)",
		               path, vs ? vs : "(none)");
	version = vs[0] - '0';
	envname = environment ? environment : "default";
	env = ynode_get(envs, envname);
	if (!env)
		return err_set(err, -EINVAL, "%s: no environment '%s' in the lock (it has: %s)",
		               path, envname, join(names, sizeof(names), envs));
	byplat = ynode_get(env, "packages");
	if (byplat && !ynode_is_map(byplat))
		return err_set(err, -EINVAL, "%s:%zu: environment '%s': packages is not a mapping",
		               path, ynode_line(byplat), envname);
	if (!ynode_count(byplat))
		return err_set(err, -EINVAL, "%s: environment '%s' has no packages", path, envname);
	chosen = !platform && ynode_count(byplat) > 1;
	if (chosen && !(platform = host_among(byplat))) {
		char what[300];

		snprintf(what, sizeof(what), "environment '%s' is for", envname);
		return choose_one(path, what, byplat, err);
	}
	if (!platform)
		platform = ynode_str(ynode_key(byplat, 0));
	if (!platform)
		return err_set(err, -EINVAL,
		               "%s:%zu: environment '%s': a platform that is not a name", path,
		               ynode_line(byplat), envname);
	list = ynode_get(byplat, platform);
	if (!ynode_is_seq(list))
		return err_set(err, -EINVAL,
		               "%s: environment '%s' has no platform '%s' (it has: %s)", path,
		               envname, platform, join(names, sizeof(names), byplat));
	/* v7 names platforms ("linux-64-cuda") and gives each its conda subdir. */
	subdir = platform;
	for (size_t i = 0; version == 7 && i < ynode_count(ynode_get(root, "platforms")); i++) {
		const struct ynode *pl = ynode_item(ynode_get(root, "platforms"), i);
		const char *name = get_str(pl, "name");

		if (name && strcmp(name, platform) == 0 && get_str(pl, "subdir"))
			subdir = get_str(pl, "subdir");
	}
	r = pixi_index(path, version, ynode_get(root, "packages"), &recs, &nrecs, err);
	if (r < 0)
		return r;
	r = pkgset_new(&set);
	if (r < 0) {
		r = err_set(err, r, "%s: out of memory", path);
		goto out;
	}
	if (chosen && (r = note_choice(set, path, byplat, err)) < 0)
		goto out;
	/* v7 platforms declare the virtual packages they were solved for: "__cuda=12". */
	for (size_t i = 0; version == 7 && i < ynode_count(ynode_get(root, "platforms")); i++) {
		const struct ynode *pl = ynode_item(ynode_get(root, "platforms"), i);
		const struct ynode *virt = ynode_get(pl, "virtual-packages");
		const char *name = get_str(pl, "name");
		char from[300];

		if (!name || strcmp(name, platform) != 0)
			continue;
		snprintf(from, sizeof(from), "platform %s", name);
		for (size_t j = 0; j < ynode_count(virt); j++) {
			const char *v = ynode_str(ynode_item(virt, j));
			char spec[128];
			size_t len;

			if (!v)
				continue;
			/* name=version=build, as rattler writes a generic virtual package */
			len = strcspn(v, "=");
			snprintf(spec, sizeof(spec), "%.*s",
			         v[len] ? (int)strcspn(v + len + 1, "=") : 0,
			         v[len] ? v + len + 1 : "");
			r = keep_virtual(set, v, len, spec, from, path, err);
			if (r < 0)
				goto out;
		}
	}
	for (size_t i = 0; i < ynode_count(list); i++) {
		r = pixi_entry(set, path, version, recs, nrecs, ynode_item(list, i), subdir, err);
		if (r < 0)
			goto out;
	}
	r = pkgset_finish(set, subdir, path, err);
	if (r < 0)
		goto out;
	*ret = set;
	set = NULL;
out:
	pkgset_free(set);
	free(recs);
	return r;
}

/* ---- telling the formats apart ---- */

static bool has_explicit_line(const char *text)
{
	for (const char *s = text; s; s = strchr(s, '\n')) {
		const char *e;

		s += *s == '\n';
		while (*s == ' ' || *s == '\t')
			s++;
		if (strncmp(s, "@EXPLICIT", 9) != 0)
			continue;
		e = s + 9;
		while (*e == ' ' || *e == '\t' || *e == '\r')
			e++;
		if (*e == '\n' || *e == '\0')
			return true;
	}
	return false;
}

/* `conda list --export`: comments and name=version=build lines, nothing else. */
static bool looks_like_export(const char *text)
{
	size_t pins = 0;

	for (const char *s = text; *s;) {
		size_t len = strcspn(s, "\n"), i = 0, e = len;

		while (i < e && (s[i] == ' ' || s[i] == '\t'))
			i++;
		while (e > i && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r'))
			e--;
		if (i < e && s[i] != '#') {
			size_t eq = 0;

			for (size_t j = i; j < e; j++) {
				if (s[j] == ' ' || s[j] == '\t')
					return false;
				if (s[j] != '=')
					continue;
				/* name, version and build are all non-empty */
				if (j == i || j + 1 == e || s[j + 1] == '=')
					return false;
				eq++;
			}
			if (eq != 2)
				return false;
			pins++;
		}
		s += len;
		s += *s == '\n';
	}
	return pins > 0;
}

int pkgset_from_lock(const char *path, const char *platform, const char *environment,
                     struct pkgset **ret, struct cfs_err *err)
{
	struct yamldoc *doc = NULL;
	const struct ynode *root;
	char *text = NULL;
	size_t len;
	int r;

	r = textfile_read(AT_FDCWD, path, path, LOCK_MAX_BYTES, &text, &len, err);
	if (r < 0)
		return r;
	if (strlen(text) != len) {
		r = err_set(err, -EINVAL, "%s: not a lock: binary content (a NUL byte)", path);
		goto out;
	}
	if (has_explicit_line(text)) {
		r = parse_explicit(path, text, platform, ret, err);
		goto out;
	}
	if (looks_like_export(text)) {
		r = err_set(err, -EINVAL,
		            "%s: not a lock: `conda list --export` output (name=version=build "
		            "lines without @EXPLICIT) has no package URLs; use `conda list "
		            "--explicit --md5`",
		            path);
		goto out;
	}
	r = yamldoc_parse(path, text, len, &doc, err);
	if (r < 0)
		goto out;
	root = yamldoc_root(doc);
	if (!root)
		r = err_set(err, -EINVAL, "%s: not a lock: the file is empty", path);
	else if (ynode_get(root, "package") && ynode_get(root, "metadata"))
		r = parse_condalock(path, root, platform, ret, err);
	else if (ynode_get(root, "environments") && ynode_get(root, "packages"))
		r = parse_pixi(path, root, platform, environment, ret, err);
	else if (ynode_get(root, "dependencies"))
		r = parse_envyml(path, root, platform, ret, err);
	else if (ynode_get(root, "$schema"))
		r = err_set(err, -EINVAL, "%s: not a lock: a JSON Schema", path);
	else
		r = err_set(err, -EINVAL,
		            "%s: not a lock: neither @EXPLICIT, environment.yml (dependencies), "
		            "conda-lock.yml (package, metadata) nor pixi.lock (environments, "
		            "packages)",
		            path);
out:
	yamldoc_free(doc);
	free(text);
	return r;
}
