// SPDX-License-Identifier: MIT
/*
 * Linking as conda does it, as data (link.h): the plan. Packages are read whole first
 * (link_read.c), ordered as conda's PrefixGraph orders them, then each path is mapped
 * (noarch python), checked against the package directory, and laid out; a path two
 * packages ship goes to the later one. The files conda generates are made as bytes: entry
 * points here, conda-meta/<dist>.json and conda-meta/history in link_record.c.
 */
#include "link_int.h"

#include "err.h"
#include "grow.h"
#include "pkgarchive.h"
#include "useropen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* p, now owned by the plan; NULL (and p freed) when out of memory. */
void *lk_keep(struct link_plan *pl, void *p)
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

char *lk_keep_str(struct link_plan *pl, const char *s)
{
	return lk_keep(pl, strdup(s));
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
	lk_jputs(out, "#!");
	lk_jputs(out, token);
	lk_jputs(out, "/bin/python");
	lk_jputs(out, pyver);
	lk_jputs(out, "\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n\nfrom ");
	lk_jput(out, m, (size_t)(me - m));
	lk_jputs(out, " import ");
	lk_jput(out, f, ilen);
	lk_jputs(out, "\n\nif __name__ == '__main__':\n"
	              "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
	              "    sys.exit(");
	lk_jput(out, f, (size_t)(fe - f));
	lk_jputs(out, "())\n");
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

		pp->dst = lk_keep(pl, k->noarch_py ? link_noarch_path(pp->src, pyver)
		                                   : strdup(pp->src));
		if (!pp->dst) {
			r = err_set(err, -ENOMEM, "%s: out of memory", k->dist);
			goto out;
		}
		if (!path_ok(pp->src) || !path_ok(pp->dst)) {
			r = err_set(err, -EINVAL, "%s: path %s escapes the prefix", k->dist,
			            pp->src);
			goto out;
		}
		if (lk_indexed(k)) {
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
		if (!lk_indexed(k) && (pfd < 0 || fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0))
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
			ssize_t n = lk_indexed(k) ? (ssize_t)strlen(target) : 0;

			if (!S_ISLNK(st.st_mode)) {
				r = err_set(err, -EINVAL,
				            "%s: %s is a softlink in paths.json, not a symbolic "
				            "link in the package",
				            k->dist, pp->src);
				goto out;
			}
			if (!lk_indexed(k))
				n = readlinkat(pfd, base, target, sizeof(target) - 1);
			if (n <= 0 || (size_t)n >= sizeof(target) - 1) {
				r = err_set(err, n < 0 ? neg_errno() : -ENAMETOOLONG,
				            "%s: %s: cannot read the link", k->dist, pp->src);
				goto out;
			}
			target[n] = 0;
			e.type = LINK_SYMLINK;
			e.mode = 0777;
			e.target = lk_keep_str(pl, target);
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
char *lk_pyc_of(const char *py, const char *pyver)
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

bool lk_is_noarch_py_source(const char *src)
{
	size_t n = strlen(src);

	/* conda's ^site-packages[/\\][^\t\n\r\f\v]+\.py$ */
	return strncmp(src, "site-packages/", 14) == 0 && n > 17 &&
	       strcmp(src + n - 3, ".py") == 0 && !strpbrk(src, "\t\n\r\f\v");
}

/* A file of b's bytes (taken from b) at path (taken, freed on error too). */
static int add_generated(struct link_plan *pl, char *path, struct jbuf *b, uint32_t mode,
                         const char *placeholder, int64_t now_ns, size_t owner, size_t pos,
                         size_t seq)
{
	struct link_entry e = {0};

	e.path = lk_keep(pl, path);
	if (b->oom || !e.path)
		return -ENOMEM;
	e.data = lk_keep(pl, b->p ? b->p : strdup(""));
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
			made[nmade].e.path = lk_keep(pl, strndup(path, at));
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
	const struct pkgrec_meta *m = lk_record_cached(p, pyver);
	struct recinfo *ri = &pl->rec[p->idx];
	struct link_entry e = {0};
	char *path = NULL;

	ri->in = lk_record_inputs(p, pyver);
	ri->in.url = lk_keep_str(pl, ri->in.url);
	ri->in.fn = lk_keep_str(pl, ri->in.fn);
	if (asprintf(&path, "conda-meta/%s.json", p->dist) < 0)
		path = NULL;
	ri->path = lk_keep(pl, path);
	if (!ri->in.url || !ri->in.fn || !ri->path)
		return -ENOMEM;
	if (!m) {
		int r = lk_make_record(p, cmds, ncmds, pyver, b);

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
		cmds[e] = lk_keep(pl, cmd);
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

		if (p->paths[i].type == PT_DIR || !lk_is_noarch_py_source(p->paths[i].src))
			continue;
		e.path = lk_keep(pl, lk_pyc_of(p->paths[i].dst, pyver));
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
	token = lk_keep_str(pl, prefix_token);
	if (!pl->scripts || !pl->src || !pl->rec || !token) {
		err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		k[i].pl = pl;
		k[i].in = &pkgs[i];
		k[i].idx = i;
		r = lk_read_pkg(&k[i], err);
		if (r < 0)
			goto out;
		k[i].channel = lk_keep(pl, channel_of(&k[i]));
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
		r = lk_read_paths(&k[i], pyver, err);
		if (r < 0)
			goto out;
	}
	for (size_t o = 0; o < n; o++) {
		r = plan_pkg(pl, &k[pl->order[o]], token, pyver, now_ns, n, o, &b, err);
		if (r < 0)
			goto out;
	}
	r = lk_make_history(k, n, now_ns, &b);
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
