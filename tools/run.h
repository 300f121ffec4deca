/* SPDX-License-Identifier: MIT */
/*
 * condafs run and condafs shell-hook: an environment's activation (condafs/activate.h),
 * computed once, then exec'd with a command or printed as shell code or JSON.
 */
#ifndef CONDAFS_RUN_H
#define CONDAFS_RUN_H

#include <condafs/store.h>

#include <stdbool.h>
#include <stdio.h>

enum hook_shell { HOOK_BASH, HOOK_ZSH, HOOK_FISH };

/* "bash", "zsh" or "fish": 0, else -EINVAL. */
int hook_shell_parse(const char *s, enum hook_shell *ret);

/*
 * An environment named by its directory (a mount's MOUNT/<hash>, or where a container
 * bind-mounts it): *ret_dir the absolute path with no symbolic link, *ret_name what conda
 * calls it (the last component when the directory above is named "envs", else the path).
 * A directory without conda-meta/ is -ENOTDIR. The caller frees both.
 */
int run_env_at(const char *path, char **ret_dir, char **ret_name, struct cfs_err *err);

/*
 * Replace this process with argv[0] (looked up in the activated PATH) run with the
 * environment at dir activated as name. Returns only when it cannot: the exit code (127
 * no such command, 126 not runnable, 1 the activation failed) with err set.
 */
int run_exec(const char *dir, const char *name, char **argv, struct cfs_err *err);

/* Print to out what activating dir as name sets and unsets: code for shell to eval, or
 * with json pixi's `shell-hook --json` object. 0 or -errno with err set. */
int shell_hook_print(FILE *out, const char *dir, const char *name, enum hook_shell shell, bool json,
                     struct cfs_err *err);

#endif
