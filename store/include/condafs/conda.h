/* SPDX-License-Identifier: MIT */
/*
 * The public interface of the conda library (store/conda/): the solved package set that
 * names an environment, read from a lock file of any format or from a prefix's conda-meta,
 * and its hash. The library knows conda (locks, package sets, conda-meta, package
 * archives, linking, activation) and nothing of the store: the store builds on it, never
 * the other way (tests/layering checks).
 */
#ifndef CONDAFS_CONDA_H
#define CONDAFS_CONDA_H

#include <condafs/err.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pkg_kind {
	PKG_CONDA = 0,
	PKG_PYPI = 1,
};

/* Strings are owned by the set they came from. Unknown fields are NULL. */
struct pkg {
	enum pkg_kind kind;
	const char *name; /* conda: as is; pypi: normalised per PEP 503 */
	const char *version;
	const char *build;   /* conda only */
	const char *channel; /* canonical channel URL or name, without the subdir */
	const char *subdir;  /* conda only */
	const char *md5;     /* lowercase hex */
	const char *sha256;  /* lowercase hex */
	/* Where the archive (conda) or the wheel/sdist (pypi) is, as the lock or record says
	 * (without a "#digest"); NULL when the source does not say. Not part of the hash. */
	const char *url;
	/* The archive's size in bytes, as the lock says (pixi.lock); 0: it does not. Not
	 * part of the hash. */
	uint64_t size;
};

struct pkgset;

/*
 * Read a lock file: `conda list --explicit`, a fully pinned environment.yml,
 * conda-lock.yml v1 or pixi.lock v5-v7. platform may be NULL: the lock's only platform,
 * else the host's when the lock holds it (pkgset_platform_choices says so); environment
 * is pixi's environment name (NULL = "default").
 * A file that is not a lock is -EINVAL with a message saying what it is.
 */
int pkgset_from_lock(const char *path, const char *platform, const char *environment,
                     struct pkgset **ret, struct cfs_err *err);

/* The set installed in a conda prefix: conda-meta records plus pip dist-info not owned
 * by a conda record. */
int pkgset_from_prefix(const char *prefix, struct pkgset **ret, struct cfs_err *err);

void pkgset_free(struct pkgset *set);
const char *pkgset_platform(const struct pkgset *set);
/* When no platform was asked for and the lock held several, the set took this machine's:
 * the lock's platforms ("linux-64, osx-arm64"), valid while the set lives; else NULL. */
const char *pkgset_platform_choices(const struct pkgset *set);
size_t pkgset_count(const struct pkgset *set);
/* Packages are sorted by (kind, name); valid while the set lives. */
const struct pkg *pkgset_at(const struct pkgset *set, size_t i);

/* A virtual package the lock's solution requires (conda's __cuda, __glibc, ...): a
 * package's dependency on it (pixi.lock depends, conda-lock.yml dependencies) or one the
 * lock's platform declares (pixi.lock v7 virtual-packages). Only a set read from a lock
 * has them; they are not part of the hash. Valid while the set lives. */
struct pkg_virtual {
	const char *name; /* "__cuda" */
	const char *spec; /* the version part of the match spec: ">=12", "12"; "" for any */
	const char *from; /* the package that depends on it, or "platform NAME" */
};
size_t pkgset_virtual_count(const struct pkgset *set);
const struct pkg_virtual *pkgset_virtual_at(const struct pkgset *set, size_t i);

/* XXH3-128 of the canonical set (platform, (name, version, build) / (name, version)),
 * as 32 lowercase hex digits and a NUL. */
void pkgset_hash(const struct pkgset *set, char ret[33]);

/* 0 when lock describes exactly the packages of have, with equal channels and archive
 * hashes wherever both carry them; else -EINVAL and a message listing the differences. */
int pkgset_match(const struct pkgset *have, const struct pkgset *lock, struct cfs_err *err);

#endif
