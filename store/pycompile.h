// SPDX-License-Identifier: MIT
/*
 * The .pyc of noarch python packages, compiled as conda compiles them after linking: by
 * the environment's own python (pycompile.c).
 */
#ifndef CONDAFS_PYCOMPILE_H
#define CONDAFS_PYCOMPILE_H

#include "condafs/store.h"
#include "link.h"

/*
 * Compile every pyc_of entry of plan and hand each pyc to put(arg, entry, bytes, len),
 * which writes it. dirs[i]: package i's extracted directory as the compiler reaches it,
 * pkg_fds[i] the same directory open (NULL and -1: a package taken from the store, whose
 * pycs are not compiled: python's must be given when any pyc is); the compiler starts in cwd_fd (so
 * dirs may be
 * "/proc/self/cwd/..."), as nobody with no groups when we are root, and writes no file:
 * the pycs come back through a pipe, each checked (its header names its source's mtime and
 * size) before put sees it. A source that does not compile gets no pyc, as conda skips it;
 * a python that cannot run leaves them all out: each with one warning, never an error.
 * -errno (the message set) for what the install cannot go on without: memory, or put's.
 */
int pycompile_plan(const struct link_plan *plan, const char *const *dirs, const int *pkg_fds,
                   int cwd_fd,
                   int (*put)(void *arg, const struct link_entry *e, const uint8_t *data,
                              size_t len, struct cfs_err *err),
                   void (*warn)(void *arg, const char *line), void *arg, struct cfs_err *err);

#endif
