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
 * which writes it. source(arg, src, &bytes, &len, err) gives a source's bytes (malloc'd:
 * 0), or says its package brings its pycs (taken from the store: 1), or fails the
 * install (-errno, the message set). python_dir is python's package written out, as the
 * compiler reaches it (NULL: not written out, an error when any pyc is to compile); the
 * compiler starts in cwd_fd (so python_dir may be "/proc/self/cwd/..."), as nobody with
 * no groups when we are root, opens no source and writes no file: the sources go in on
 * its stdin, the pycs come back through a pipe, each checked (its header names its
 * source's mtime and size) before put sees it. A source that does not compile gets no
 * pyc, as conda skips it; a python that cannot run leaves them all out: each with one
 * warning, never an error. -errno (the message set) for what the install cannot go on
 * without: memory, or source's or put's failure. put is called from several threads at
 * once (one per compiler process), never twice for one entry.
 */
int pycompile_plan(const struct link_plan *plan, const char *python_dir, int cwd_fd,
                   int (*source)(void *arg, const struct link_entry *src, uint8_t **ret,
                                 size_t *ret_len, struct cfs_err *err),
                   int (*put)(void *arg, const struct link_entry *e, const uint8_t *data,
                              size_t len, struct cfs_err *err),
                   void (*warn)(void *arg, const char *line), void *arg, struct cfs_err *err);

#endif
