/* SPDX-License-Identifier: MIT */
/*
 * A Jupyter kernelspec for an environment: kernel.json whose argv starts the
 * environment's ipykernel through `condafs run`, and where jupyter_client looks for it.
 */
#ifndef CONDAFS_KERNELSPEC_H
#define CONDAFS_KERNELSPEC_H

#include <condafs/store.h>

#include <stddef.h>

/* Where the kernelspec goes, as jupyter_client's KernelSpecManager.install_kernel_spec
 * puts it. */
enum kernelspec_where {
	KERNELSPEC_USER,   /* $JUPYTER_DATA_DIR, else $XDG_DATA_HOME/jupyter, else
	                      ~/.local/share/jupyter; then kernels/ */
	KERNELSPEC_SYSTEM, /* /usr/local/share/jupyter/kernels */
	KERNELSPEC_PREFIX, /* PREFIX/share/jupyter/kernels */
};

/* Whether name is one jupyter_client accepts (letters, digits, . _ -), neither "." nor
 * "..". jupyter_client lowercases names: so must the caller. */
bool kernelspec_name_valid(const char *name);

/* The kernelspec's directory for name: malloc'd into *ret. */
int kernelspec_dir(enum kernelspec_where where, const char *prefix, const char *name, char **ret,
                   struct cfs_err *err);

/* 0 when the environment at env_dir (a mount's MOUNT/<hash>) has ipykernel in
 * lib/pythonX.Y/site-packages, else -ENOENT with one line in err naming ENV (env_name). */
int kernelspec_find_ipykernel(const char *env_dir, const char *env_name, struct cfs_err *err);

/*
 * kernel.json: argv is exe, then the global options in opts (nopts strings: --store S
 * and the like, when not the defaults), then "run", hash, "--", python -m
 * ipykernel_launcher -f {connection_file}; display_name names label. Malloc'd into *ret.
 */
int kernelspec_json(const char *exe, char *const *opts, size_t nopts, const char *hash,
                    const char *label, char **ret, size_t *ret_len);

#endif
