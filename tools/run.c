// SPDX-License-Identifier: MIT
/*
 * condafs run and shell-hook (run.h). Nothing is written: run replaces this process with
 * the command (its exit status, signals and stdio are the command's own), shell-hook prints
 * to stdout. Both compute the activation once per call.
 */
#include "run.h"

#include "out.h"

#include <condafs/activate.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

int hook_shell_parse(const char *s, enum hook_shell *ret)
{
	static const char *const names[] = {
	        [HOOK_BASH] = "bash", [HOOK_ZSH] = "zsh", [HOOK_FISH] = "fish"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i])) {
			*ret = (enum hook_shell)i;
			return 0;
		}
	return -EINVAL;
}

int run_env_at(const char *path, char **ret_dir, char **ret_name, struct cfs_err *err)
{
	char *dir = realpath(path, NULL), *meta = NULL, *slash;
	struct stat sb;
	int r = 0;

	*ret_dir = *ret_name = NULL;
	if (!dir) {
		r = -errno;
		snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(errno));
		return r;
	}
	if (asprintf(&meta, "%s/conda-meta", dir) < 0) {
		free(dir);
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
		return -ENOMEM;
	}
	if (stat(meta, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(err->msg, sizeof(err->msg),
		         "%s: not an environment (no conda-meta directory)", path);
		r = -ENOTDIR;
		goto out;
	}
	/* conda's _default_env: "<name>" for .../envs/<name>, else the whole path. */
	slash = strrchr(dir, '/');
	if (slash && slash - dir >= 5 && !strncmp(slash - 5, "/envs", 5))
		*ret_name = strdup(slash + 1);
	else
		*ret_name = strdup(dir);
	if (!*ret_name) {
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
		r = -ENOMEM;
		goto out;
	}
	*ret_dir = dir;
	dir = NULL;
out:
	free(dir);
	free(meta);
	return r;
}

static bool has_name(const char *entry, const char *name)
{
	size_t len = strlen(name);

	return !strncmp(entry, name, len) && entry[len] == '=';
}

/* environ with the activation applied: a new array; the entries kept are environ's. */
static char **activated_env(const struct activation *a)
{
	size_t n = 0, k = 0, kept, nset = activation_count(a);
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + nset + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool drop = false;

		for (size_t j = 0; !drop && j < nset; j++)
			drop = has_name(environ[i], activation_name(a, j));
		for (size_t j = 0; !drop && j < activation_unset_count(a); j++)
			drop = has_name(environ[i], activation_unset_name(a, j));
		if (!drop)
			env[k++] = environ[i];
	}
	kept = k;
	for (size_t j = 0; j < nset; j++, k++)
		if (asprintf(&env[k], "%s=%s", activation_name(a, j), activation_value(a, j)) < 0) {
			/* The entries before kept are environ's own; the rest are ours. */
			while (k > kept)
				free(env[--k]);
			free(env);
			return NULL;
		}
	return env;
}

int run_exec(const char *dir, const char *name, char **argv, struct cfs_err *err)
{
	struct activation *a = NULL;
	char **env;
	int r = activation_compute(dir, name, NULL, &a, err), e;

	if (r)
		return 1;
	env = activated_env(a);
	activation_free(a);
	if (!env) {
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", dir);
		return 1;
	}
	/* execvp looks the command up in environ's PATH: the activated one. */
	environ = env;
	execvp(argv[0], argv);
	e = errno;
	snprintf(err->msg, sizeof(err->msg), "%s: %s", argv[0], strerror(e));
	return e == ENOENT ? 127 : 126;
}

/* A name every shell takes in `export NAME=...`; the others are left out of shell code. */
static bool shell_name(const char *s)
{
	if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

/* s (len bytes) single-quoted: for sh, a quote as '\''; for fish, \' and \\. */
static void put_quoted(FILE *out, const char *s, size_t len, enum hook_shell shell)
{
	fputc('\'', out);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\'' && shell != HOOK_FISH)
			fputs("'\\''", out);
		else if ((s[i] == '\'' || s[i] == '\\') && shell == HOOK_FISH)
			fprintf(out, "\\%c", s[i]);
		else
			fputc(s[i], out);
	}
	fputc('\'', out);
}

static void put_set(FILE *out, const char *name, const char *value, enum hook_shell shell)
{
	size_t nlen = strlen(name);

	if (shell != HOOK_FISH) {
		fprintf(out, "export %s=", name);
		put_quoted(out, value, strlen(value), shell);
		fputc('\n', out);
		return;
	}
	fprintf(out, "set -gx %s", name);
	/* fish keeps a variable named ...PATH as a list, joined with ':' when exported. */
	if (nlen >= 4 && !strcmp(name + nlen - 4, "PATH")) {
		for (const char *p = value;;) {
			const char *end = strchrnul(p, ':');

			fputc(' ', out);
			put_quoted(out, p, (size_t)(end - p), shell);
			if (!*end)
				break;
			p = end + 1;
		}
	} else {
		fputc(' ', out);
		put_quoted(out, value, strlen(value), shell);
	}
	fputc('\n', out);
}

static void note_skipped(const char *name)
{
	fputs("condafs: shell-hook: note: ", stderr);
	out_text(stderr, name);
	fputs(" is not a shell variable name: left out\n", stderr);
}

int shell_hook_print(FILE *out, const char *dir, const char *name, enum hook_shell shell, bool json,
                     struct cfs_err *err)
{
	struct activation *a = NULL;
	int r = activation_compute(dir, name, NULL, &a, err);

	if (r)
		return r;
	if (json) {
		/* pixi's shape (crates/pixi_cli/src/shell_hook.rs, struct ShellEnv): every
		 * variable activation sets, PATH with its whole new value. pixi's
		 * activation_scripts are left out: what the activate.d scripts do is in the
		 * variables already. A variable a script unsets has no place in it. */
		fputs("{\"environment_variables\": {", out);
		for (size_t i = 0; i < activation_count(a); i++) {
			const char *n = activation_name(a, i), *v = activation_value(a, i);

			fputs(i ? ", " : "", out);
			out_json_str(out, n, strlen(n));
			fputs(": ", out);
			out_json_str(out, v, strlen(v));
		}
		fputs("}}\n", out);
		goto out;
	}
	for (size_t i = 0; i < activation_unset_count(a); i++) {
		const char *n = activation_unset_name(a, i);

		if (!shell_name(n))
			note_skipped(n);
		else
			fprintf(out, shell == HOOK_FISH ? "set -e %s\n" : "unset %s\n", n);
	}
	for (size_t i = 0; i < activation_count(a); i++) {
		if (!shell_name(activation_name(a, i)))
			note_skipped(activation_name(a, i));
		else
			put_set(out, activation_name(a, i), activation_value(a, i), shell);
	}
	/* As conda's hooks do: forget where commands were found before PATH changed. */
	if (shell != HOOK_FISH)
		fputs("hash -r 2>/dev/null\n", out);
out:
	activation_free(a);
	if (fflush(out) != 0) {
		r = -errno;
		snprintf(err->msg, sizeof(err->msg), "writing to stdout: %s", strerror(errno));
	}
	return r;
}
