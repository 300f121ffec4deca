/* SPDX-License-Identifier: MIT */
/*
 * An environment's activation as a modulefile: Lmod's Lua or Environment Modules' Tcl,
 * so that `module load` activates it and `module unload` undoes it.
 */
#ifndef CONDAFS_MODULEFILE_H
#define CONDAFS_MODULEFILE_H

#include <condafs/activate.h>

#include <stdbool.h>
#include <stddef.h>

/* Whether name is a module name condafs writes: components of letters, digits and
 * . _ + - (none empty or starting with '.') joined by '/', as in condafs/sci. */
bool modulefile_name_valid(const char *name);

/*
 * The modulefile: setenv for each variable a sets, except PATH, which is prepended to
 * (what a put before base_path, the PATH it was computed from) so that unloading takes
 * exactly that out again; unsetenv for each it unsets. Every value is quoted for the
 * language (tcl: Tcl, else Lua), whatever bytes it holds (Tcl: a value that is not UTF-8
 * is -EILSEQ, one line in err). title goes into whatis, quoted the same way. Malloc'd
 * into *ret.
 */
int modulefile_text(const struct activation *a, const char *base_path, bool tcl, const char *title,
                    char **ret, size_t *ret_len, struct cfs_err *err);

#endif
