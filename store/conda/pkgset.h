/* SPDX-License-Identifier: MIT */
/*
 * Building a struct pkgset (for lock.c and condameta.c), and the naming rules every
 * source of a package set shares: PEP 503 names, conda archive file names, channel and
 * subdir from a package URL, the host's platform.
 */
#ifndef CONDAFS_PKGSET_H
#define CONDAFS_PKGSET_H

#include "condafs/conda.h"

#include <stdbool.h>
#include <stddef.h>

/* An empty set, to be filled with pkgset_add and closed with pkgset_finish. -ENOMEM. */
int pkgset_new(struct pkgset **ret);

/*
 * Add a copy of p. Checks and normalises: name and version non-empty and without blanks,
 * build (conda only, may be "") without blanks, pypi names per PEP 503, md5/sha256 hex
 * and lowercased, channel stripped of a trailing '/' and a trailing subdir. where names
 * the source in messages ("<where>: <reason>"). -EINVAL or -ENOMEM.
 */
int pkgset_add(struct pkgset *set, const struct pkg *p, const char *where, struct cfs_err *err);

/*
 * Give the set its platform (copied; a source may only know it after its last package)
 * and sort the packages by (kind, name). -EINVAL when a name appears twice for one kind,
 * when a conda package's subdir is neither the platform nor noarch, or when platform is
 * no platform name. Call once, after the last pkgset_add and before any reader.
 */
int pkgset_finish(struct pkgset *set, const char *platform, const char *where, struct cfs_err *err);

/*
 * Keep a virtual package (a name starting with "__") that the solution requires: a
 * package's dependency on it (from: that package's name) or one the lock's platform
 * declares (from: "platform NAME"). spec is the version part of the match spec, "" for
 * any; all three are copied. A (name, spec) pair already kept is not kept twice. Not part
 * of the hash, nor of pkgset_match: not every form of a lock carries them. -ENOMEM.
 */
int pkgset_add_virtual(struct pkgset *set, const char *name, const char *spec, const char *from);

/* The set's platform was the host's, taken among the lock's several (list: "a, b, c",
 * copied), for pkgset_platform_choices. -ENOMEM. */
int pkgset_note_choices(struct pkgset *set, const char *list);

/* "linux-64", "osx-arm64", ... for the machine we run on; NULL when conda has no name
 * for it. */
const char *pkgset_host_platform(void);

/*
 * Split a conda archive file name "<name>-<version>-<build>.conda" (or .tar.bz2) in place,
 * from the right on '-'. The pointers point into file, which is modified only on success.
 * false when file is not such a name.
 */
bool pkgset_split_filename(char *file, const char **ret_name, const char **ret_version,
                           const char **ret_build);

/*
 * Split a package URL or path "<channel>/<subdir>/<file>" in place, cutting a "#..." or
 * "?..." suffix: the pointers point into url, which is modified only on success. false
 * when url has fewer than three non-empty parts.
 */
bool pkgset_split_url(char *url, const char **ret_channel, const char **ret_subdir,
                      char **ret_file);

#endif
