// SPDX-License-Identifier: MIT
/*
 * Activating an environment as conda's activate.py does (activate.h), computed without
 * writing anything: no temporary file, no cache. The activate.d scripts are sourced by one
 * /bin/sh that reports the environment through a pipe (fd 3) with `env -0` before and after
 * them, so what the shell itself changes (PWD, SHLVL) is not taken for theirs:
 *
 *   <env before the scripts> NUL  <script path> NUL ...  NUL  <env after them> NUL
 *
 * Each script's path goes out before it is sourced, so a script that ends the shell (exit,
 * exec, set -e) is named. Bounded: the declared variables' files, the number of scripts,
 * and what the shell writes back.
 */
#include "condafs/activate.h"

#include "err.h"
#include "nobody.h"
#include "textfile.h"
#include "useropen.h"
#include "yamldoc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* conda-meta/state and an env_vars.d file: a few variables, a few KB in practice. */
#define VARS_FILE_MAX (1u << 20)
/* Files in env_vars.d and scripts in activate.d: a few each in real environments. */
#define FILES_MAX 256
/* What the shell writes back: two copies of an environment, which execve caps at a
 * quarter of the stack limit (2 MB by default). */
#define DUMP_MAX (16u << 20)
/* Variables in one environment the shell reports. */
#define DUMP_VARS_MAX 16384

/* Shell text run by /bin/sh -c; "$@" are the scripts. Builtins are called through
 * `command` and env by its full path, so a script's functions and PATH change neither. */
static const char sh_text[] =
        "/usr/bin/env -0 >&3 || exit 125\n"
        "command printf '\\0' >&3\n"
        "for __condafs_script do\n"
        "\tcommand printf '%s\\0' \"$__condafs_script\" >&3\n"
        "\tif command [ -f \"$__condafs_script\" ] && command [ -r \"$__condafs_script\" ]; then\n"
        "\t\t. \"$__condafs_script\" 3>&-\n"
        "\telse\n"
        "\t\tcommand printf 'condafs: %s: cannot be read, not sourced\\n' "
        "\"$__condafs_script\" >&2\n"
        "\tfi\n"
        "done\n"
        "command printf '\\0' >&3\n"
        "/usr/bin/env -0 >&3 || exit 125\n"
        "command printf '\\0' >&3\n"
        "exit 0\n";
#define SH_VAR "__condafs_script"

struct kv {
	char *name;
	char *value; /* NULL: unset */
};

struct kvlist {
	struct kv *v;
	size_t n, cap;
};

struct activation {
	struct kvlist set;
	char **unset;
	size_t nunset;
	char *path_prepend;
};

/* A view of an environment (NAME=VALUE strings it does not own), sorted by name, each
 * name once (the first, as getenv finds it). */
struct envref {
	const char *s;
	size_t namelen;
	size_t order;
};

struct envmap {
	struct envref *v;
	size_t n;
};

static void kvlist_release(struct kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].value);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static ssize_t kvlist_findn(const struct kvlist *l, const char *name, size_t len)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strncmp(l->v[i].name, name, len) && !l->v[i].name[len])
			return (ssize_t)i;
	return -1;
}

static ssize_t kvlist_find(const struct kvlist *l, const char *name)
{
	return kvlist_findn(l, name, strlen(name));
}

/* Set (value) or unset (NULL) name: replaces the entry for name in place, else appends.
 * Copies both. */
static int kvlist_put(struct kvlist *l, const char *name, size_t namelen, const char *value)
{
	char *n = strndup(name, namelen), *v = NULL;

	if (!n || (value && !(v = strdup(value)))) {
		free(n);
		return -ENOMEM;
	}
	/* Looked for here rather than by kvlist_find's index: clang's analyzer, when it does
	 * not follow that call, takes the index for one into l->v even when l is empty. */
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].name, n) != 0)
			continue;
		free(n);
		free(l->v[i].value);
		l->v[i].value = v;
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct kv *nv = reallocarray(l->v, cap, sizeof(*nv));

		if (!nv) {
			free(n);
			free(v);
			return -ENOMEM;
		}
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = (struct kv){n, v};
	return 0;
}

static int envref_cmp(const void *pa, const void *pb)
{
	const struct envref *a = pa, *b = pb;
	size_t n = a->namelen < b->namelen ? a->namelen : b->namelen;
	int c = memcmp(a->s, b->s, n);

	if (c)
		return c;
	if (a->namelen != b->namelen)
		return a->namelen < b->namelen ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

/* The map of the n strings at env (entries without '=' or with an empty name skipped). */
static int envmap_init(struct envmap *m, const char *const *env, size_t n)
{
	size_t k = 0;

	m->n = 0;
	m->v = calloc(n ? n : 1, sizeof(*m->v));
	if (!m->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(env[i], '=');

		if (eq && eq != env[i])
			m->v[k++] = (struct envref){env[i], (size_t)(eq - env[i]), i};
	}
	qsort(m->v, k, sizeof(*m->v), envref_cmp);
	for (size_t i = 0; i < k; i++)
		if (!m->n || m->v[m->n - 1].namelen != m->v[i].namelen ||
		    memcmp(m->v[m->n - 1].s, m->v[i].s, m->v[i].namelen) != 0)
			m->v[m->n++] = m->v[i];
	return 0;
}

static const char *envmap_getn(const struct envmap *m, const char *name, size_t len)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct envref key = {name, len, 0};
		int c = envref_cmp(&m->v[mid], &key);

		if (c == 0 || (m->v[mid].namelen == len && !memcmp(m->v[mid].s, name, len)))
			return m->v[mid].s + len + 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const char *envmap_get(const struct envmap *m, const char *name)
{
	return envmap_getn(m, name, strlen(name));
}

static size_t env_len(char *const *env)
{
	size_t n = 0;

	while (env[n])
		n++;
	return n;
}

/* PATH as conda makes it: bin in place of an active prefix's bin (where it was first
 * found), else first. */
static char *new_path(const char *path, const char *old_prefix, const char *bin)
{
	size_t oldlen = old_prefix ? strlen(old_prefix) : 0, binlen = strlen(bin);
	size_t cap = (path ? strlen(path) : 0) + binlen + 2, at = 0;
	char *out = malloc(cap);
	bool placed = false;

	if (!out)
		return NULL;
	if (path && !*path)
		path = NULL;
	if (!path || !old_prefix) {
		snprintf(out, cap, "%s%s%s", bin, path ? ":" : "", path ? path : "");
		return out;
	}
	for (const char *p = path;;) {
		const char *end = strchrnul(p, ':');
		size_t len = (size_t)(end - p);
		bool old = len == oldlen + 4 && !memcmp(p, old_prefix, oldlen) &&
		           !memcmp(p + oldlen, "/bin", 4);

		if (!old || !placed) {
			const char *s = old ? bin : p;
			size_t slen = old ? binlen : len;

			if (at)
				out[at++] = ':';
			memcpy(out + at, s, slen);
			at += slen;
			placed = placed || old;
		}
		if (!*end)
			break;
		p = end + 1;
	}
	out[at] = '\0';
	if (placed)
		return out;
	free(out);
	return new_path(path, NULL, bin);
}

static bool name_ok(const char *name)
{
	return *name && !strchr(name, '=');
}

/* The "NAME": "VALUE" pairs of a JSON object (map) into vars, names in upper case (conda's
 * envvars_force_uppercase, on by default), "***unset***" skipped. */
static int vars_from_map(struct kvlist *vars, const struct ynode *map, const char *display,
                         struct cfs_err *err)
{
	if (!ynode_is_map(map))
		return err_set(err, -EINVAL, "%s:%zu: env_vars is not a JSON object", display,
		               ynode_line(map));
	for (size_t i = 0; i < ynode_count(map); i++) {
		const char *k = ynode_str(ynode_key(map, i));
		const struct ynode *vn = ynode_value(map, i);
		const char *v = ynode_str(vn);
		char *upper;
		int r;

		if (!k || !name_ok(k))
			return err_set(err, -EINVAL, "%s:%zu: '%s' is not a variable name", display,
			               ynode_line(vn), k ? k : "");
		if (!v)
			return err_set(err, -EINVAL, "%s:%zu: the value of %s is not a string",
			               display, ynode_line(vn), k);
		if (!strcmp(v, "***unset***"))
			continue;
		upper = strdup(k);
		if (!upper)
			return err_set(err, -ENOMEM, "%s: out of memory", display);
		for (char *c = upper; *c; c++)
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 'a' + 'A');
		r = strcmp(upper, "PATH") ? kvlist_put(vars, upper, strlen(upper), v) : 0;
		free(upper);
		if (r)
			return err_set(err, r, "%s: out of memory", display);
	}
	return 0;
}

static int load_vars_file(int dfd, const char *rel, const char *display, bool state,
                          struct kvlist *vars, struct cfs_err *err)
{
	struct yamldoc *doc = NULL;
	const struct ynode *root, *map;
	size_t len;
	char *text;
	int r = textfile_read(dfd, rel, display, VARS_FILE_MAX, &text, &len, err);

	if (r == -ENOENT && state)
		return 0;
	if (r == -EFBIG)
		return err_set(err, r, "%s: larger than %u bytes", display, VARS_FILE_MAX);
	if (r)
		return r;
	r = yamldoc_parse(display, text, len, &doc, err);
	free(text);
	if (r)
		return r;
	root = yamldoc_root(doc);
	if (!ynode_is_map(root)) {
		r = err_set(err, -EINVAL, "%s: not a JSON object", display);
		goto out;
	}
	map = state ? ynode_get(root, "env_vars") : root;
	if (map)
		r = vars_from_map(vars, map, display, err);
out:
	yamldoc_free(doc);
	return r;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The entries of directory rel under dfd (none when it does not exist), sorted by name
 * as conda sorts them (Python's sorted: code point order, byte order in UTF-8); with
 * suffix, only names ending in it. */
static int list_dir(int dfd, const char *rel, const char *display, const char *suffix, char ***ret,
                    size_t *ret_n, struct cfs_err *err)
{
	size_t n = 0, slen = suffix ? strlen(suffix) : 0;
	char **v = NULL;
	struct dirent *de;
	DIR *d;
	int fd = open_beneath(dfd, rel, O_RDONLY | O_DIRECTORY), r = 0;

	*ret = NULL;
	*ret_n = 0;
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return err_set(err, fd, "%s: %s", display, beneath_strerror(fd));
	d = fdopendir(fd);
	if (!d) {
		r = neg_errno();
		close(fd);
		return err_set(err, r, "%s: %s", display, strerror(-r));
	}
	v = calloc(FILES_MAX, sizeof(*v));
	if (!v) {
		r = err_set(err, -ENOMEM, "%s: out of memory", display);
		goto out;
	}
	while ((errno = 0, de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (suffix && (len < slen || strcmp(de->d_name + len - slen, suffix) != 0))
			continue;
		if (n == FILES_MAX) {
			r = err_set(err, -E2BIG, "%s: more than %d entries", display, FILES_MAX);
			goto out;
		}
		if (!(v[n++] = strdup(de->d_name))) {
			r = err_set(err, -ENOMEM, "%s: out of memory", display);
			goto out;
		}
	}
	if (errno) {
		r = neg_errno();
		err_set(err, r, "%s: %s", display, strerror(-r));
		goto out;
	}
	qsort(v, n, sizeof(*v), str_cmp);
	*ret = v;
	*ret_n = n;
	v = NULL;
	n = 0;
out:
	names_free(v, n);
	closedir(d);
	return r;
}

/* What the environment declares: etc/conda/env_vars.d/ (packages'), then conda-meta/state
 * (the environment's, winning over the packages'). */
static int declared_vars(int dfd, const char *env_dir, struct kvlist *vars, struct cfs_err *err)
{
	char display[PATH_MAX + 64], rel[PATH_MAX];
	char **names = NULL;
	size_t n = 0;
	int r;

	snprintf(display, sizeof(display), "%s/etc/conda/env_vars.d", env_dir);
	r = list_dir(dfd, "etc/conda/env_vars.d", display, NULL, &names, &n, err);
	for (size_t i = 0; !r && i < n; i++) {
		snprintf(rel, sizeof(rel), "etc/conda/env_vars.d/%s", names[i]);
		snprintf(display, sizeof(display), "%s/%s", env_dir, rel);
		r = load_vars_file(dfd, rel, display, false, vars, err);
	}
	names_free(names, n);
	if (r)
		return r;
	snprintf(display, sizeof(display), "%s/conda-meta/state", env_dir);
	return load_vars_file(dfd, "conda-meta/state", display, true, vars, err);
}

/* One environment `env -0` wrote: NUL-terminated entries up to an empty one. */
struct dump {
	const char **v;
	size_t n;
	struct envmap map;
};

/* Split buf[*at..len) at NULs into d until an empty entry (consumed); false when the
 * text ends first. */
static int dump_take(char *buf, size_t len, size_t *at, struct dump *d, bool *complete)
{
	*complete = false;
	d->v = calloc(DUMP_VARS_MAX, sizeof(*d->v));
	if (!d->v)
		return -ENOMEM;
	while (*at < len) {
		char *s = buf + *at, *nul = memchr(s, '\0', len - *at);

		if (!nul)
			break;
		*at = (size_t)(nul + 1 - buf);
		if (nul == s) {
			*complete = true;
			break;
		}
		if (d->n == DUMP_VARS_MAX)
			return -E2BIG;
		d->v[d->n++] = s;
	}
	return envmap_init(&d->map, d->v, d->n);
}

static void dump_release(struct dump *d)
{
	free(d->v);
	free(d->map.v);
}

/* Read what the shell writes on fd until its final terminator (three empty entries in
 * all) or EOF: a process a script left running may hold the pipe open long after. */
static int read_dump(int fd, char **ret, size_t *ret_len, const char *display, struct cfs_err *err)
{
	size_t len = 0, cap = 1 << 16, empties = 0;
	char *buf = malloc(cap);

	if (!buf)
		return err_set(err, -ENOMEM, "%s: out of memory", display);
	while (empties < 3) {
		ssize_t n;

		if (len == cap) {
			char *nb;

			if (cap >= DUMP_MAX) {
				free(buf);
				return err_set(
				        err, -E2BIG,
				        "%s: the scripts' environment is larger than %u bytes",
				        display, DUMP_MAX);
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return err_set(err, -ENOMEM, "%s: out of memory", display);
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = neg_errno();

			free(buf);
			return err_set(err, r, "%s: reading from /bin/sh: %s", display,
			               strerror(-r));
		}
		if (n == 0)
			break;
		for (size_t i = len; i < len + (size_t)n; i++)
			if (buf[i] == '\0' && (i == 0 || buf[i - 1] == '\0'))
				empties++;
		len += (size_t)n;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* Run /bin/sh over the scripts with env; *ret_buf holds what it wrote on fd 3, *ret_status
 * its wait status. As root, the shell runs as nobody with no groups: the scripts are the
 * code of whoever built the environment (a user, whose prefix root ingested), and the
 * mount does not say who that was; root computing an activation (a system modulefile, a
 * kernel spec, run) must not run it as root. */
static int run_shell(char *const *env, char **scripts, size_t nscripts, const char *display,
                     char **ret_buf, size_t *ret_len, int *ret_status, struct cfs_err *err)
{
	char **argv = calloc(nscripts + 5, sizeof(*argv));
	struct nobody nb;
	int p[2] = {-1, -1}, r = 0, status = 0;
	pid_t pid;

	*ret_buf = NULL;
	if (!argv)
		return err_set(err, -ENOMEM, "%s: out of memory", display);
	nobody_init(&nb);
	argv[0] = "sh";
	argv[1] = "-c";
	argv[2] = (char *)sh_text;
	argv[3] = "sh";
	for (size_t i = 0; i < nscripts; i++)
		argv[4 + i] = scripts[i];
	if (pipe2(p, O_CLOEXEC) < 0) {
		r = neg_errno();
		free(argv);
		return err_set(err, r, "%s: pipe: %s", display, strerror(-r));
	}
	pid = fork();
	if (pid < 0) {
		r = err_set(err, neg_errno(), "%s: cannot run /bin/sh: %s", display,
		            strerror(errno));
		goto out;
	}
	if (pid == 0) {
		/* fd 3 is the pipe, fd 1 our stderr (what a script prints is not the command's
		 * output), fd 0 /dev/null (the command's stdin is not the scripts'). Only
		 * async-signal-safe calls until exec. */
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (null < 0 || nobody_child_fd(p[1], 3) || nobody_child_fd(2, 1) ||
		    nobody_child_fd(null, 0) || nobody_enter(&nb) < 0)
			_exit(126);
		execve("/bin/sh", argv, env);
		_exit(127);
	}
	close(p[1]);
	p[1] = -1;
	r = read_dump(p[0], ret_buf, ret_len, display, err);
	close(p[0]);
	p[0] = -1;
	if (r)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*ret_status = status;
out:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	free(argv);
	return r;
}

static bool is(const struct envref *e, const char *name)
{
	return e->namelen == strlen(name) && !memcmp(e->s, name, e->namelen);
}

/* Source the scripts (names under env_dir/etc/conda/activate.d) over env, and put what
 * they changed into changes: sets in name order, then unsets. Not the working directory
 * (PWD, OLDPWD): a script's cd cannot outlive its shell. */
static int source_scripts(const char *env_dir, char **names, size_t n, char *const *env,
                          struct kvlist *changes, struct cfs_err *err)
{
	char display[PATH_MAX + 64];
	char **paths = calloc(n, sizeof(*paths));
	struct dump before = {0}, after = {0};
	const char *last = NULL;
	bool done[3] = {false};
	size_t len = 0, at = 0, npaths = 0;
	char *buf = NULL;
	int status = 0, r;

	snprintf(display, sizeof(display), "%s/etc/conda/activate.d", env_dir);
	if (!paths)
		return err_set(err, -ENOMEM, "%s: out of memory", display);
	for (; npaths < n; npaths++)
		if (asprintf(&paths[npaths], "%s/%s", display, names[npaths]) < 0) {
			r = err_set(err, -ENOMEM, "%s: out of memory", display);
			goto out;
		}
	r = run_shell(env, paths, n, display, &buf, &len, &status, err);
	if (r)
		goto out;
	r = dump_take(buf, len, &at, &before, &done[0]);
	while (!r && done[0] && at < len && buf[at]) {
		last = buf + at;
		at += strlen(last) + 1;
	}
	if (!r && done[0] && at < len) {
		done[1] = true;
		at++;
		r = dump_take(buf, len, &at, &after, &done[2]);
	}
	if (r == -E2BIG) {
		r = err_set(err, r, "%s: more than %d variables", display, DUMP_VARS_MAX);
		goto out;
	}
	if (r) {
		r = err_set(err, r, "%s: out of memory", display);
		goto out;
	}
	if (!done[2] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char how[64];

		if (WIFSIGNALED(status))
			snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
		else
			snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
		r = err_set(err, -EINVAL, "%s: /bin/sh %s before activation finished%s",
		            last ? last : display, how,
		            last && !done[2] ? " (the script ended the shell)" : "");
		goto out;
	}
	for (size_t i = 0; i < after.map.n; i++) {
		const struct envref *e = &after.map.v[i];
		const char *value = e->s + e->namelen + 1;
		const char *was = envmap_getn(&before.map, e->s, e->namelen);
		bool ours = is(e, SH_VAR) || is(e, "PWD") || is(e, "OLDPWD");

		if (!ours && (!was || strcmp(was, value) != 0) &&
		    (r = kvlist_put(changes, e->s, e->namelen, value))) {
			r = err_set(err, r, "%s: out of memory", display);
			goto out;
		}
	}
	for (size_t i = 0; i < before.map.n; i++) {
		const struct envref *e = &before.map.v[i];

		if (!is(e, "PWD") && !is(e, "OLDPWD") &&
		    !envmap_getn(&after.map, e->s, e->namelen) &&
		    (r = kvlist_put(changes, e->s, e->namelen, NULL))) {
			r = err_set(err, r, "%s: out of memory", display);
			goto out;
		}
	}
out:
	dump_release(&before);
	dump_release(&after);
	free(buf);
	names_free(paths, npaths);
	return r;
}

/* base with changes applied, as NAME=VALUE strings: the shell's environment. */
static char **env_with(const struct envmap *base, const struct kvlist *changes)
{
	char **env = calloc(base->n + changes->n + 1, sizeof(*env));
	size_t n = 0;

	if (!env)
		return NULL;
	for (size_t i = 0; i < base->n; i++) {
		const struct envref *e = &base->v[i];

		if (kvlist_findn(changes, e->s, e->namelen) < 0 && !(env[n++] = strdup(e->s)))
			goto fail;
	}
	for (size_t i = 0; i < changes->n; i++)
		if (changes->v[i].value &&
		    asprintf(&env[n++], "%s=%s", changes->v[i].name, changes->v[i].value) < 0) {
			env[--n] = NULL;
			goto fail;
		}
	return env;
fail:
	names_free(env, n);
	return NULL;
}

/* The variables conda sets itself, in its order; base_shlvl and old_prefix from base. */
static int conda_vars(const char *env_dir, const char *name, const struct envmap *base,
                      struct kvlist *changes, long *ret_old_shlvl, char **ret_bin)
{
	const char *shlvl_s = envmap_get(base, "CONDA_SHLVL");
	const char *old_prefix = envmap_get(base, "CONDA_PREFIX");
	char *end = NULL, *bin = NULL, *path = NULL, *prompt = NULL, num[32];
	long old = shlvl_s ? strtol(shlvl_s, &end, 10) : 0;
	bool active, reactivate;
	int r = -ENOMEM;

	if (!shlvl_s || end == shlvl_s || old < 0 || old > INT_MAX - 1)
		old = 0;
	active = old > 0 && old_prefix && *old_prefix;
	reactivate = active && !strcmp(old_prefix, env_dir);
	if (asprintf(&bin, "%s/bin", env_dir) < 0) {
		bin = NULL;
		goto out;
	}
	if (asprintf(&prompt, "(%s) ", name) < 0) {
		prompt = NULL;
		goto out;
	}
	path = new_path(envmap_get(base, "PATH"), active ? old_prefix : NULL, bin);
	snprintf(num, sizeof(num), "%ld", reactivate ? old : old + 1);
	if (!path || (r = kvlist_put(changes, "PATH", 4, path)) ||
	    (r = kvlist_put(changes, "CONDA_PREFIX", 12, env_dir)) ||
	    (r = kvlist_put(changes, "CONDA_SHLVL", 11, num)) ||
	    (r = kvlist_put(changes, "CONDA_DEFAULT_ENV", 17, name)) ||
	    (r = kvlist_put(changes, "CONDA_PROMPT_MODIFIER", 21, prompt)))
		goto out;
	*ret_old_shlvl = old;
	*ret_bin = bin;
	bin = NULL;
out:
	free(bin);
	free(path);
	free(prompt);
	return r;
}

/* The declared variables after conda's own (which they do not replace), each base value
 * they replace kept for conda's deactivate, and the prefix stacked below. */
static int add_declared(const struct kvlist *vars, const struct envmap *base, long old_shlvl,
                        const char *env_dir, struct kvlist *changes)
{
	const char *old_prefix = envmap_get(base, "CONDA_PREFIX");
	size_t nconda = changes->n;
	char name[64];
	int r;

	/* vars holds each name once, so a name found in changes is one of conda's. */
	for (size_t i = 0; i < vars->n; i++)
		if (kvlist_find(changes, vars->v[i].name) < 0 &&
		    (r = kvlist_put(changes, vars->v[i].name, strlen(vars->v[i].name),
		                    vars->v[i].value)))
			return r;
	for (size_t i = 0; i < vars->n; i++) {
		const char *was = envmap_get(base, vars->v[i].name);
		ssize_t at = kvlist_find(changes, vars->v[i].name);
		char *save;

		if (!was || at < (ssize_t)nconda)
			continue;
		if (asprintf(&save, "__CONDA_SHLVL_%ld_%s", old_shlvl, vars->v[i].name) < 0)
			return -ENOMEM;
		r = kvlist_put(changes, save, strlen(save), was);
		free(save);
		if (r)
			return r;
	}
	if (old_shlvl > 0 && old_prefix && *old_prefix && strcmp(old_prefix, env_dir) != 0) {
		snprintf(name, sizeof(name), "CONDA_PREFIX_%ld", old_shlvl);
		return kvlist_put(changes, name, strlen(name), old_prefix);
	}
	return 0;
}

/* changes less what base already has, split into sets and unsets. */
static int finish(struct activation *a, struct kvlist *changes, const struct envmap *base)
{
	a->unset = calloc(changes->n ? changes->n : 1, sizeof(*a->unset));
	if (!a->unset)
		return -ENOMEM;
	for (size_t i = 0; i < changes->n; i++) {
		struct kv *c = &changes->v[i];
		const char *was = envmap_get(base, c->name);
		int r;

		if (!c->value) {
			if (was) {
				a->unset[a->nunset++] = c->name;
				c->name = NULL;
			}
			continue;
		}
		if (was && !strcmp(was, c->value))
			continue;
		if ((r = kvlist_put(&a->set, c->name, strlen(c->name), c->value)))
			return r;
	}
	return 0;
}

int activation_compute(const char *env_dir, const char *name, char *const *base_env,
                       struct activation **ret, struct cfs_err *err)
{
	char *const *src = base_env ? base_env : environ;
	struct kvlist changes = {0}, vars = {0};
	struct activation *a = calloc(1, sizeof(*a));
	struct envmap base = {0};
	char display[PATH_MAX + 64];
	char **scripts = NULL, **shenv = NULL;
	size_t nscripts = 0;
	long old_shlvl = 0;
	int dfd = -1, r;

	*ret = NULL;
	if (!a)
		return err_set(err, -ENOMEM, "%s: out of memory", env_dir);
	if (env_dir[0] != '/') {
		r = err_set(err, -EINVAL, "%s: an environment's directory must be absolute",
		            env_dir);
		goto out;
	}
	dfd = open(env_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		r = neg_errno();
		err_set(err, r, "%s: %s", env_dir, strerror(-r));
		goto out;
	}
	if ((r = envmap_init(&base, (const char *const *)src, env_len(src))) ||
	    (r = conda_vars(env_dir, name, &base, &changes, &old_shlvl, &a->path_prepend))) {
		err_set(err, r, "%s: out of memory", env_dir);
		goto out;
	}
	if ((r = declared_vars(dfd, env_dir, &vars, err)))
		goto out;
	if ((r = add_declared(&vars, &base, old_shlvl, env_dir, &changes))) {
		err_set(err, r, "%s: out of memory", env_dir);
		goto out;
	}
	snprintf(display, sizeof(display), "%s/etc/conda/activate.d", env_dir);
	r = list_dir(dfd, "etc/conda/activate.d", display, ".sh", &scripts, &nscripts, err);
	if (r)
		goto out;
	if (nscripts) {
		if (!(shenv = env_with(&base, &changes))) {
			r = err_set(err, -ENOMEM, "%s: out of memory", env_dir);
			goto out;
		}
		r = source_scripts(env_dir, scripts, nscripts, shenv, &changes, err);
		if (r)
			goto out;
	}
	if ((r = finish(a, &changes, &base))) {
		err_set(err, r, "%s: out of memory", env_dir);
		goto out;
	}
	*ret = a;
	a = NULL;
out:
	if (dfd >= 0)
		close(dfd);
	names_free(scripts, nscripts);
	if (shenv)
		names_free(shenv, env_len(shenv));
	kvlist_release(&changes);
	kvlist_release(&vars);
	free(base.v);
	activation_free(a);
	return r;
}

size_t activation_count(const struct activation *a)
{
	return a->set.n;
}

const char *activation_name(const struct activation *a, size_t i)
{
	return i < a->set.n ? a->set.v[i].name : NULL;
}

const char *activation_value(const struct activation *a, size_t i)
{
	return i < a->set.n ? a->set.v[i].value : NULL;
}

size_t activation_unset_count(const struct activation *a)
{
	return a->nunset;
}

const char *activation_unset_name(const struct activation *a, size_t i)
{
	return i < a->nunset ? a->unset[i] : NULL;
}

const char *activation_path_prepend(const struct activation *a)
{
	return a->path_prepend;
}

void activation_free(struct activation *a)
{
	if (!a)
		return;
	kvlist_release(&a->set);
	names_free(a->unset, a->nunset);
	free(a->path_prepend);
	free(a);
}
