/* SPDX-License-Identifier: MIT */
/*
 * Activating an environment as conda does, without conda and without writing anything:
 * what `conda activate` would set and unset, computed once, for `condafs run` (exec with
 * it), `condafs shell-hook` (print it), kernel specs and modulefiles.
 *
 * Following conda's activate.py (_build_activate_stack): CONDA_PREFIX, CONDA_SHLVL (one
 * more than the base's, CONDA_PREFIX_<n> keeping a prefix already active), CONDA_DEFAULT_ENV
 * (name), CONDA_PROMPT_MODIFIER "(name) ", PATH with env_dir/bin first (replacing the bin
 * of a prefix already active); then the variables the environment declares, those of
 * etc/conda/env_vars.d/ (sorted) and conda-meta/state's "env_vars" (as `conda env config
 * vars set` writes them), names in upper case, "***unset***" and PATH ignored, a base value
 * they replace kept as __CONDA_SHLVL_<n>_<NAME>; then the .sh scripts of etc/conda/activate.d,
 * sorted, sourced in that order by /bin/sh with all of the above exported (conda's
 * _yield_commands: the exports first, then the scripts). What the scripts print
 * goes to stderr; their stdin is /dev/null.
 */
#ifndef CONDAFS_ACTIVATE_H
#define CONDAFS_ACTIVATE_H

#include <condafs/conda.h>

#include <stddef.h>

struct activation;

/*
 * What activating the environment served at env_dir (e.g. /envs/<hash>) sets: CONDA_PREFIX,
 * CONDA_DEFAULT_ENV (= name), CONDA_SHLVL, PATH with env_dir/bin first, conda-meta/state
 * env_vars, and what the scripts etc/conda/activate.d/NAME.sh export when sourced by /bin/sh in
 * order. base_env: the environment to start from (NULL: environ). A state file that is not JSON,
 * too large, or a script that ends the shell is -EINVAL (or the errno) with one line in err
 * naming the file.
 */
int activation_compute(const char *env_dir, const char *name, char *const *base_env,
                       struct activation **ret, struct cfs_err *err);
/* The variables set, in the order conda sets them (conda's own, the declared ones, then
 * the scripts' in name order), each with its whole new value (PATH too). */
size_t activation_count(const struct activation *a);
const char *activation_name(const struct activation *a, size_t i);
const char *activation_value(const struct activation *a, size_t i);
/* The variables of base_env that activation removes (a script's unset). */
size_t activation_unset_count(const struct activation *a);
const char *activation_unset_name(const struct activation *a, size_t i);
/* env_dir/bin: what PATH gains. */
const char *activation_path_prepend(const struct activation *a);
void activation_free(struct activation *a); /* NULL is fine */

#endif
