/* SPDX-License-Identifier: MIT */
/*
 * The two files that tell conda and pip an environment cannot be changed: conda-meta/frozen
 * (CEP 22: conda, mamba and pixi refuse to modify a prefix holding it, and print its
 * "message") and Python's EXTERNALLY-MANAGED (PEP 668: pip refuses to install into the
 * interpreter whose stdlib directory holds it, and prints its "Error"). condafsd serves
 * them in every environment and the store keeps neither: they name the path an
 * environment is served at, which the store does not know, and storing them would change
 * nothing a hash, `show` or the catalog says. `condafs export --frozen` writes the same
 * bytes. An environment that stores either file itself keeps its own (its maker's word),
 * and gets none made for it.
 */
#ifndef CONDAFS_FROZEN_H
#define CONDAFS_FROZEN_H

#include <condafs/store.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum frozen_file {
	FROZEN_CONDA = 0,  /* conda-meta/frozen */
	FROZEN_PYTHON = 1, /* lib/pythonX.Y/EXTERNALLY-MANAGED */
};
#define FROZEN_FILES 2

/* Where they are: conda-meta/frozen, and EXTERNALLY-MANAGED in each stdlib directory: a
 * directory lib/pythonX.Y (frozen_stdlib_name) holding os.py, the landmark CPython finds
 * its prefix by (sysconfig's "stdlib" path, where pip looks). */
#define FROZEN_CONDA_DIR       "conda-meta"
#define FROZEN_CONDA_NAME      "frozen"
#define FROZEN_PYTHON_NAME     "EXTERNALLY-MANAGED"
#define FROZEN_STDLIB_PARENT   "lib"
#define FROZEN_STDLIB_LANDMARK "os.py"
/* Their mode: read-only for everyone. */
#define FROZEN_MODE 0444

/* The file's name in its directory. */
const char *frozen_name(enum frozen_file f);

/* Whether a directory in lib/ is named as CPython names its stdlib directory:
 * python<major>.<minor>, with "t" for a free-threaded build (python3.13t). */
bool frozen_stdlib_name(const char *name, size_t len);

/*
 * The text of file f for environment hash served at env_dir: conda-meta/frozen is
 * {"message": "..."} (CEP 22's schema), EXTERNALLY-MANAGED an INI file with
 * [externally-managed] Error=... (PEP 668); both say the environment is served read-only
 * by condafs at env_dir and how to get one to change. *ret is malloc'd (NUL-terminated,
 * *ret_len bytes without the NUL). -ENOMEM only.
 */
int frozen_text(enum frozen_file f, const char *env_dir, const char *hash, char **ret,
                size_t *ret_len);

/*
 * Whether directory dir of the environment whose top directory is node top gets a file
 * made for it: 1 and *ret when dir is conda-meta/ at the top or a stdlib directory and
 * stores no file of that name itself; 0 when it gets none; a negative errno when the
 * catalog cannot say.
 */
int frozen_dir_gets(struct store *st, int64_t top, const struct store_node *dir,
                    enum frozen_file *ret, struct cfs_err *err);

#endif
