/* SPDX-License-Identifier: MIT */
/*
 * What the three parts of linking share (link.h): link.c makes the plan, link_read.c reads
 * each package, link_record.c writes the files conda makes besides the packages' (its
 * conda-meta records and history). Not a header for anyone else.
 */
#ifndef CONDAFS_LINK_INT_H
#define CONDAFS_LINK_INT_H

#include "link.h"
#include "yamldoc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* paths.json takes ~200 bytes a path; the largest packages list ~15,000 paths. */
#define LIST_MAX_BYTES  (64u << 20)
#define SMALL_MAX_BYTES (4u << 20)
/* conda's PREFIX_PLACEHOLDER: what a bare has_prefix line means. */
#define DEFAULT_PLACEHOLDER "/opt/anaconda1anaconda2anaconda3"

enum ptype { PT_FILE, PT_LINK, PT_DIR };

/* One path of a package, as paths.json (or info/files) says it. */
struct ppath {
	char *src; /* under the package directory: paths.json's _path */
	char *dst; /* under the prefix, after the noarch python mapping */
	enum ptype type;
	char *placeholder;
	bool binary, no_link, has_size;
	char *sha256;
	uint64_t size;
};

struct lpkg {
	struct link_plan *pl; /* owns every string of paths */
	const struct link_pkg *in;
	size_t idx; /* into the caller's pkgs */
	int dfd;    /* the package directory */
	struct yamldoc *index, *linkjson;
	const char *name, *version, *build, *subdir; /* in index */
	char *dist;                                  /* name-version-build; the plan's */
	char *channel; /* with the subdir, as conda-meta records it; the plan's */
	bool noarch_py, noarch_generic, paths_json;
	struct ppath *paths;
	size_t npaths, cappaths;
	size_t *deps; /* indices of packages in the set it depends on */
	size_t ndeps;
	size_t pos; /* in the link order */
};

/* A path before clobbering is resolved: pos orders packages, seq paths within one. */
struct cand {
	struct link_entry e;
	size_t owner; /* the package (index into pkgs) whose path it is, SIZE_MAX for conda's */
	size_t pos, seq;
};

struct link_plan {
	struct link_entry *e;
	size_t n;
	struct cand *c;
	size_t nc, capc;
	void **pool; /* every allocation the entries point into */
	size_t npool, cappool;
	size_t *order;
	size_t norder;
	const char **scripts;
	size_t nscripts;
	char *python;
	/* Each package's conda-meta record: its path and inputs, by package index. */
	struct recinfo {
		const char *path;
		struct pkgrec_meta in;
	} * rec;
	/* Each package's paths as link_paths checked them (L3), by package index. */
	struct srclist {
		struct link_src *s;
		size_t n, cap;
	} * src;
	size_t nsrc;
};

struct jbuf {
	char *p;
	size_t n, cap;
	bool oom;
};

/* The package is read from its record or its unpacked files, not from a directory. */
static inline bool lk_indexed(const struct lpkg *k)
{
	return k->in->rec || k->in->files;
}

/* ---- link.c ---- */

/* p, now owned by the plan; NULL (and p freed) when out of memory. */
void *lk_keep(struct link_plan *pl, void *p);
char *lk_keep_str(struct link_plan *pl, const char *s);
/* The pyc conda compiles for py (a path of the environment) with python pyver, malloc'd. */
char *lk_pyc_of(const char *py, const char *pyver);
/* src (a path of a noarch python package) is a source conda compiles. */
bool lk_is_noarch_py_source(const char *src);

/* ---- link_read.c ---- */

/* k's index.json and link.json: its name, version, build, subdir and noarch type. */
int lk_read_pkg(struct lpkg *k, struct cfs_err *err);
/* k's paths, from its record when it has one, else paths.json, else info/files. */
int lk_read_paths(struct lpkg *k, const char *pyver, struct cfs_err *err);
/* What package k's conda-meta record is made of besides the package itself: its lock's
 * URL and file name, its channel, and the python pyver a noarch python package maps for
 * (pkgrec_meta without its key and size). */
struct pkgrec_meta lk_record_inputs(const struct lpkg *k, const char *pyver);
/* The conda-meta record k's store record keeps, when it was made of the same inputs. */
const struct pkgrec_meta *lk_record_cached(const struct lpkg *k, const char *pyver);

/* ---- link_record.c ---- */

void lk_jput(struct jbuf *b, const char *s, size_t n);
void lk_jputs(struct jbuf *b, const char *s);
/* Package k's conda-meta/<dist>.json into b. */
int lk_make_record(struct lpkg *k, const char **cmds, size_t ncmds, const char *pyver,
                   struct jbuf *b);
/* conda-meta/history of the n packages k into b. */
int lk_make_history(struct lpkg *k, size_t n, int64_t now_ns, struct jbuf *b);

#endif
