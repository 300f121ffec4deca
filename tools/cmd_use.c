// SPDX-License-Identifier: MIT
/*
 * Using an environment: run and shell-hook (through the mount), and the Jupyter kernel
 * spec and the environment module that start it the same way.
 */
#include "cli.h"
#include "destfile.h"
#include "kernelspec.h"
#include "modulefile.h"
#include "out.h"
#include "run.h"
#include "viamount.h"

#include <condafs/activate.h>
#include <condafs/cuda.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * The directory ENV is served at (*ret_dir) and the name activation gives it (*ret_name;
 * a tag as given, else the hash): an environment's directory as such; a lock file's hash,
 * or a tag or hash the store (root) or the mount (a user) knows, at MOUNT/<hash>. ret_hash:
 * the environment's hash, "" for a directory. With ret_set, also its package set (the
 * caller's), from where ENV was found.
 */
static int served_env(const struct cli *c, const char *arg, char **ret_dir, char **ret_name,
                      char ret_hash[33], struct pkgset **ret_set)
{
	const char *mnt = c->mount ? c->mount : c->config.mountpoint;
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct viamount *vm;
	struct store_env env;
	struct store *st;
	struct stat sb;
	bool lock = false;
	char *path;
	int r;

	ret_hash[0] = '\0';
	if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		r = run_env_at(arg, ret_dir, ret_name, &err);
		if (!r && ret_set && (r = pkgset_from_prefix(*ret_dir, ret_set, &err))) {
			free(*ret_dir);
			free(*ret_name);
		}
		return r ? cli_die(c, &err, r) : 0;
	}
	if (stat(arg, &sb) == 0) {
		if ((r = pkgset_from_lock(arg, c->platform, c->environment, &set, &err)))
			return cli_die(c, &err, r);
		cli_say_platform(c, arg, set);
		pkgset_hash(set, env.hash);
		lock = true;
	} else {
		if ((r = cli_open_view(c, &st, &vm)))
			return r;
		r = cli_view_env(st, vm, arg, &env, ret_set ? &set : NULL, &err);
		cli_close_view(st, vm);
		if (r)
			return cli_die(c, &err, r);
	}
	if (asprintf(&path, "%s/%s", mnt, env.hash) < 0)
		return cli_die(c, NULL, -ENOMEM);
	r = run_env_at(path, ret_dir, ret_name, &err);
	if (r) {
		char msg[sizeof(err.msg) + 2 * PATH_MAX + 64];

		snprintf(msg, sizeof(msg), "%s: %s is not served (is condafsd running at %s?): %s",
		         arg, env.hash, mnt, err.msg);
		free(path);
		pkgset_free(set);
		cli_say(c->cmd, msg);
		return EXIT_FAILED;
	}
	free(path);
	free(*ret_name);
	memcpy(ret_hash, env.hash, 33);
	/* A tag names the environment as given; a hash, a prefix of one or a lock by the hash. */
	*ret_name = strdup(!lock && strncmp(env.hash, arg, strlen(arg)) != 0 ? arg : env.hash);
	if (!*ret_name) {
		free(*ret_dir);
		pkgset_free(set);
		return cli_die(c, NULL, -ENOMEM);
	}
	if (ret_set)
		*ret_set = set;
	else
		pkgset_free(set);
	return 0;
}

int cmd_run(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct cuda_driver drv;
	char *dir, *name, hash[33], line[512];
	int r;

	if (c->argc < 2) {
		fprintf(stderr, "condafs: run: expected ENV and a command\n%s", cli_usage);
		return EXIT_USAGE;
	}
	if ((r = cuda_host_driver(c->driver, &drv, &err)))
		return cli_die(c, &err, r);
	/* The packages are read only where there is a driver to be too old. */
	if ((r = served_env(c, c->argv[0], &dir, &name, hash, drv.present ? &set : NULL)))
		return r;
	if (set && cuda_warn_line(set, c->driver, line, sizeof(line)) == 1)
		cli_say(c->cmd, line);
	pkgset_free(set);
	r = run_exec(dir, name, c->argv + 1, &err);
	cli_say(c->cmd, err.msg);
	free(dir);
	free(name);
	return r;
}

int cmd_shell_hook(const struct cli *c)
{
	struct cfs_err err = {{0}};
	enum hook_shell shell = HOOK_BASH;
	char *dir, *name, hash[33];
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	if (c->shell && hook_shell_parse(c->shell, &shell)) {
		fprintf(stderr, "condafs: shell-hook: --shell: '%s' is not bash, zsh or fish\n%s",
		        c->shell, cli_usage);
		return EXIT_USAGE;
	}
	if ((r = served_env(c, c->argv[0], &dir, &name, hash, NULL)))
		return r;
	r = shell_hook_print(stdout, dir, name, shell, c->json, &err);
	free(dir);
	free(name);
	return r ? cli_die(c, &err, r) : 0;
}

/* The global options a later `condafs run` needs to find the same store and mount:
 * those that differ from what it would take by default (the config file), made absolute
 * in abs (a kernel runs from wherever Jupyter starts it). */
static size_t run_opts(const struct cli *c, const char *opts[6], char abs[3][PATH_MAX])
{
	const char *given[3] = {NULL, NULL, NULL};
	static const char *const flag[3] = {"--config", "--store", "--mount"};
	size_t n = 0;

	if (strcmp(c->config_path, CONFIG_PATH) != 0)
		given[0] = c->config_path;
	if (strcmp(c->store_dir, c->config.store) != 0)
		given[1] = c->store_dir;
	if (c->mount && strcmp(c->mount, c->config.mountpoint) != 0)
		given[2] = c->mount;
	for (size_t i = 0; i < 3; i++) {
		if (!given[i])
			continue;
		opts[n++] = flag[i];
		opts[n++] = realpath(given[i], abs[i]) ? abs[i] : given[i];
	}
	return n;
}

static void say_written(const char *what, const char *dir, const char *file,
                        enum destfile_result res)
{
	static const char *const how[] = {
	        [DESTFILE_NEW] = "written",
	        [DESTFILE_SAME] = "unchanged (it held this already)",
	        [DESTFILE_REPLACED] = "replaced (--force)",
	};

	printf("%s ", what);
	out_text(stdout, dir);
	printf("/");
	out_text(stdout, file);
	printf(": %s\n", how[res]);
}

/* What names the environment to people: a tag as given, the hash's first 12 digits, or
 * the directory's conda name. */
static void env_label(const char *name, const char *hash, char label[160])
{
	if (hash[0] && !strcmp(name, hash))
		snprintf(label, 160, "%.12s", hash);
	else
		snprintf(label, 160, "%s", name);
}

int cmd_kernel(const struct cli *c)
{
	struct cfs_err err = {{0}};
	enum kernelspec_where where = KERNELSPEC_USER;
	enum destfile_result res;
	char label[160], name[256], exe[PATH_MAX], shown[256], hash[33], abs[3][PATH_MAX];
	char *env_dir = NULL, *env_name = NULL, *dir = NULL, *json = NULL;
	const char *opts[6];
	size_t n, len;
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	if (c->user + c->system + !!c->prefix > 1) {
		cli_say(c->cmd, "--user, --system and --prefix DIR: choose one");
		return EXIT_USAGE;
	}
	if (c->system)
		where = KERNELSPEC_SYSTEM;
	else if (c->prefix)
		where = KERNELSPEC_PREFIX;
	if (c->name && !kernelspec_name_valid(c->name)) {
		snprintf(err.msg, sizeof(err.msg),
		         "--name %s: not a kernel name (letters, digits, '.', '_' and '-', as "
		         "jupyter_client accepts)",
		         c->name);
		cli_die(c, &err, -EINVAL);
		return EXIT_USAGE;
	}
	if ((r = served_env(c, c->argv[0], &env_dir, &env_name, hash, NULL)))
		return r;
	env_label(env_name, hash, label);
	snprintf(name, sizeof(name), "%s%s", c->name ? "" : "condafs-", c->name ? c->name : label);
	/* jupyter_client lowercases kernel names; a tag may hold '+', a directory '/'. */
	for (char *p = name; *p; p++)
		*p = *p == '.' || kernelspec_name_valid((char[]){*p, 0})
		             ? (char)tolower((unsigned char)*p)
		             : '-';
	if ((r = kernelspec_find_ipykernel(env_dir, c->argv[0], &err)))
		goto out;
	if (!realpath("/proc/self/exe", exe)) {
		r = -errno;
		snprintf(err.msg, sizeof(err.msg), "/proc/self/exe: %s", strerror(errno));
		goto out;
	}
	n = run_opts(c, opts, abs);
	if (hash[0] && strcmp(env_name, hash) != 0)
		snprintf(shown, sizeof(shown), "%s %.12s", env_name, hash);
	else
		snprintf(shown, sizeof(shown), "%s", label);
	/* The hash pins the environment the notebook was made with, also when a tag moves; a
	 * directory (a container's bind mount) is run as the directory. */
	r = kernelspec_json(exe, (char *const *)opts, n, hash[0] ? hash : env_dir, shown, &json,
	                    &len);
	if (!r)
		r = kernelspec_dir(where, c->prefix, name, &dir, &err);
	if (!r)
		r = destfile_write(dir, "kernel.json", json, len, c->force, &res, &err);
	if (!r)
		say_written("kernelspec", dir, "kernel.json", res);
out:
	free(env_dir);
	free(env_name);
	free(dir);
	free(json);
	return r ? cli_die(c, &err, r) : 0;
}

/* What a modulefile's activation starts from: no user's own variables go into a file
 * others load. Its PATH is where what the activation prepends ends. */
#define MODULE_BASE_PATH "/usr/local/bin:/usr/bin:/bin"

int cmd_module(const struct cli *c)
{
	static char *const base_env[] = {"PATH=" MODULE_BASE_PATH, NULL};
	struct cfs_err err = {{0}};
	struct activation *a = NULL;
	enum destfile_result res;
	char label[160], name[256], title[512], hash[33];
	char *env_dir = NULL, *env_name = NULL, *text = NULL, *dir = NULL, *fname = NULL, *file;
	size_t len;
	int r;

	if ((r = cli_need_args(c, 1)))
		return r;
	if (c->name && !modulefile_name_valid(c->name)) {
		snprintf(err.msg, sizeof(err.msg),
		         "--name %s: not a module name (letters, digits, '.', '_', '+' and '-', "
		         "parts joined by '/', none starting with '.')",
		         c->name);
		cli_die(c, &err, -EINVAL);
		return EXIT_USAGE;
	}
	if ((r = served_env(c, c->argv[0], &env_dir, &env_name, hash, NULL)))
		return r;
	env_label(env_name, hash, label);
	snprintf(name, sizeof(name), "%s%s", c->name ? "" : "condafs/", c->name ? c->name : label);
	if (!modulefile_name_valid(name)) {
		snprintf(err.msg, sizeof(err.msg), "%s: not a module name (--name NAME gives one)",
		         name);
		r = -EINVAL;
		goto out;
	}
	if (hash[0] && strcmp(env_name, hash) != 0)
		snprintf(title, sizeof(title), "condafs environment %s (%s)", env_name, hash);
	else
		snprintf(title, sizeof(title), "condafs environment %s", env_name);
	/* Activated as `condafs run` activates it: CONDA_DEFAULT_ENV the tag or the hash. */
	r = activation_compute(env_dir, env_name, base_env, &a, &err);
	if (!r)
		r = modulefile_text(a, MODULE_BASE_PATH, c->tcl, title, &text, &len, &err);
	if (r)
		goto out;
	if (!c->prefix) {
		if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
			r = -EIO;
			snprintf(err.msg, sizeof(err.msg), "standard output: %s", strerror(errno));
		}
		goto out;
	}
	/* NAME's last part is the file (NAME.lua for Lmod), the rest directories. */
	file = strrchr(name, '/');
	if (file)
		*file++ = '\0';
	if (asprintf(&dir, "%s%s%s", c->prefix, file ? "/" : "", file ? name : "") < 0)
		dir = NULL;
	if (asprintf(&fname, "%s%s", file ? file : name, c->tcl ? "" : ".lua") < 0)
		fname = NULL;
	if (!dir || !fname) {
		r = -ENOMEM;
		goto out;
	}
	r = destfile_write(dir, fname, text, len, c->force, &res, &err);
	if (!r)
		say_written("modulefile", dir, fname, res);
out:
	activation_free(a);
	free(env_dir);
	free(env_name);
	free(text);
	free(dir);
	free(fname);
	return r ? cli_die(c, &err, r) : 0;
}
