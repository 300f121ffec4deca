/* SPDX-License-Identifier: MIT */
/*
 * Linking as conda does it, as data: from the extracted packages of a solved environment
 * (directories as conda's package cache holds them, info/ and the payload), every path of
 * the environment conda would make, without writing a prefix. Each path says where its
 * bytes come from (a package's file, or bytes made here: entry points, conda-meta records,
 * the history), its type, mode and mtime, and the prefix placeholder it holds, if any.
 * The facts are conda's (CEP 34, conda/core/link.py, path_actions.py, portability.py,
 * gateways/disk/create.py and read.py).
 *
 * Invariants of a plan (what the store relies on when it commits one):
 *   L1 every path is relative, normalised and inside the prefix: not empty, no leading
 *      '/', no empty, "." or ".." component; so is every source path under its package.
 *   L2 no path lies beneath an entry that is not a directory (a package cannot put a file
 *      through another package's symlink), and every parent directory is an entry.
 *   L3 at plan time, a LINK_FILE source was a regular file, reached beneath its package's
 *      directory with no symbolic link followed, of the size paths.json gives; a
 *      LINK_SYMLINK's target was read from a symbolic link. The caller reading the source
 *      later opens it the same way and must check its type again (the directory may change).
 */
#ifndef CONDAFS_LINK_H
#define CONDAFS_LINK_H

#include "condafs/conda.h"
#include "pkgrec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pkgarchive_files;

struct link_pkg {
	const char *dir;          /* the extracted package, an absolute path (with rec or
	                           * files: only a name for messages) */
	const char *url;          /* the lock's URL of its archive */
	const char *fn;           /* archive file name, e.g. "numpy-1.24.2-py311h_0.conda" */
	const char *channel;      /* canonical channel URL, without subdir */
	const char *md5, *sha256; /* lowercase hex, either may be NULL */
	uint64_t size;            /* archive size, 0 unknown */
	const char *platform;     /* the environment's ("linux-64"): a package of another
	                           * subdir than it and noarch is refused; NULL: any */
	/* The store's record of the package (pkgrec.h), or the package unpacked into a data
	 * file (pkgarchive.h): its info/ files and paths are read from it, and dir only names
	 * the package in messages. Both NULL: read dir. */
	const struct pkgrec *rec;
	const struct pkgarchive_files *files;
	/* The lock's name, version and build of it, which its info/index.json must name too:
	 * the environment's conda-meta records are made from index.json, and must name the
	 * set the lock's hash is of. NULL: not checked. */
	const char *name, *version, *build;
};

enum link_type { LINK_FILE, LINK_SYMLINK, LINK_DIR };

#define LINK_GENERATED SIZE_MAX

struct link_entry {
	const char *path; /* relative to the prefix, no leading '/' */
	enum link_type type;
	uint32_t mode; /* permission bits (07777) */
	int64_t mtime_ns;
	size_t pkg;              /* index into pkgs, or LINK_GENERATED (SIZE_MAX) */
	const char *src;         /* LINK_FILE from a package: its path under pkgs[pkg].dir */
	const uint8_t *data;     /* LINK_FILE generated: its bytes */
	size_t len;              /* LINK_FILE: its size; LINK_SYMLINK: the target's */
	const char *target;      /* LINK_SYMLINK: the target as written */
	const char *placeholder; /* NULL, or the prefix placeholder the file holds */
	bool binary;             /* the placeholder's file_mode is binary */
	/* LINK_FILE generated with no data: the .pyc conda compiles for this .py of the plan
	 * (a noarch python package's), which the installer compiles. */
	const char *pyc_of;
	/* LINK_FILE generated with no data, len bytes: a stored content, a package's
	 * conda-meta record as its store record keeps it (pkgrec_meta) for the same inputs. */
	const struct objkey *key;
};

struct link_plan;

/*
 * pkgs in any order; prefix_token: the string generated files hold where the prefix
 * belongs (a long unique placeholder; such files have placeholder = prefix_token, text
 * mode); now_ns: the mtime of generated files, made directories and symbolic links, as
 * conda stamps them at install; a package's files keep their mtime, relocated ones too
 * (conda stamps those with now_ns, leaving a shipped .pyc of them stale). warn(arg, line) for each
 * warning: a path two packages ship, "<path>: in both <dist a> and <dist b>; <dist b> wins" (the
 * later in link order wins, as conda's clobbering does). Entries are sorted by path bytes,
 * so parents come before their children; every parent directory is a LINK_DIR entry
 * (conda-meta/ included), the top "" is not listed. -EINVAL naming the package and the
 * reason for an inconsistent package: index.json naming another package than the lock;
 * paths.json naming a file the directory lacks, or of another type or size; a path escaping the
 * prefix or the package; a path beneath a file or symlink of the plan; a noarch python package
 * without a python in the set; an invalid entry point. Every info/ file is read beneath the package
 * dir, no symlink followed.
 *
 * Entry points start "#!<prefix_token>/bin/pythonX.Y", as conda writes them for a prefix
 * where that line fits; for a prefix that makes it longer than 127 bytes, or holds a space,
 * conda writes a /bin/sh trampoline instead, which the path the environment is served at
 * decides and a plan cannot know: there the plan's line is the longer one.
 */
int link_plan_make(const struct link_pkg *pkgs, size_t n, const char *prefix_token, int64_t now_ns,
                   void (*warn)(void *arg, const char *line), void *arg, struct link_plan **ret,
                   struct cfs_err *err);
/* The prefix placeholder the files of the package rec records hold (conda-build gives a
 * package one), as its paths.json (or, in an old package, has_prefix) names it: *ret
 * NULL when none does. name names the package in messages. */
int link_record_placeholder(const struct pkgrec *rec, const char *name, char **ret,
                            struct cfs_err *err);
size_t link_plan_count(const struct link_plan *p);
/* Package i's conda-meta record: its path in the plan, and what its bytes were made of
 * besides the package (into ret: url, fn, channel, pyver; valid while p is). */
const char *link_plan_record(const struct link_plan *p, size_t i, struct pkgrec_meta *ret);
const struct link_entry *link_plan_entry(const struct link_plan *p, size_t i);
/* Packages with a pre-link or post-link script (bin/.<name>-pre-link.sh etc.), which are
 * not run (pixi's default): their dist names, in link order. */
size_t link_plan_scripts(const struct link_plan *p);
const char *link_plan_script_pkg(const struct link_plan *p, size_t i);
/* The python version the noarch packages were mapped for ("3.11"), or NULL when the set
 * has no noarch python package. */
const char *link_plan_python(const struct link_plan *p);
/* The entry at path (entries are sorted by path bytes), or NULL. */
const struct link_entry *link_plan_find(const struct link_plan *p, const char *path);
/* The environment's python: bin/pythonX.Y, through one symbolic link in bin/ (conda's
 * python ships the file there), a package's file; NULL when there is none. */
const struct link_entry *link_plan_python_file(const struct link_plan *p);
/* The link order: the i-th package linked, as an index into pkgs. */
size_t link_plan_order(const struct link_plan *p, size_t i);

/* One path of a package as the plan checked it (L3), whether or not it won a clobber:
 * what a record of the package keeps (pkgrec.h). */
struct link_src {
	const char *src; /* beneath the package */
	const char *dst; /* in the environment */
	enum link_type type;
	uint32_t mode;    /* LINK_FILE */
	int64_t mtime_ns; /* LINK_FILE */
	size_t len;       /* LINK_FILE: its size; LINK_SYMLINK: the target's */
	const char *target;
};
/* Package pkg's paths, in its paths.json's (or info/files') order. */
size_t link_plan_pkg_srcs(const struct link_plan *p, size_t pkg);
const struct link_src *link_plan_pkg_src(const struct link_plan *p, size_t pkg, size_t i);
void link_plan_free(struct link_plan *p);

/* Where a noarch python package's path src (site-packages/..., python-scripts/...) is
 * linked for python pyver ("3.11"), as conda maps it: malloc'd, NULL out of memory. */
char *link_noarch_path(const char *src, const char *pyver);

#endif
