// SPDX-License-Identifier: MIT
/*
 * Package caches (pkgcache.h). Two layouts are read:
 *
 *  - conda and mamba: "<pkgs>/<dist>.conda|.tar.bz2" and the extracted "<pkgs>/<dist>/",
 *    into which conda writes info/repodata_record.json (with the archive's sha256 and md5)
 *    once the extraction is complete;
 *  - rattler (pixi): "<cache>/pkgs/<dist>/" or, for a cache that records origins,
 *    "<cache>/pkgs/<dist>-<sha256 of the URL, hex>/", each with a metadata file beside it
 *    named "<that>.lock": a big-endian u64 revision, then the archive's raw sha256 (32
 *    bytes) when rattler knew it. rattler keeps no archives.
 *
 * An extracted directory is trusted as conda trusts its own cache: conda links a package
 * from "<pkgs>/<dist>/" whose repodata_record.json carries the wanted digest without
 * hashing the files again, and rattler does the same with its metadata file. Whoever can
 * write the cache can already change what conda installs from it. An entry whose digest
 * is not recorded, or is recorded for another archive, is never used (rattler would take
 * one that records none).
 */
#include "pkgcache.h"

#include "err.h"
#include "hex.h"
#include "useropen.h"
#include "yamldoc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A repodata_record.json is a few kB; anything much larger is not one. */
#define RECORD_MAX (1u << 20)
/* rattler's metadata file: revision, then the sha256. */
#define RATTLER_REV_LEN 8
#define SHA256_LEN      32
/* "-" and the hex sha256 of the origin URL that rattler may append to the dist. */
#define ORIGIN_SUFFIX_LEN 65

struct cachedir {
	char *path;
	int fd;
	char **hashed; /* entries "<dist>-<origin hash>" */
	size_t nhashed;
};

struct pkgcache {
	struct cachedir *dirs;
	size_t n;
};

void pkgcache_free(struct pkgcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		struct cachedir *d = &c->dirs[i];

		for (size_t j = 0; j < d->nhashed; j++)
			free(d->hashed[j]);
		free(d->hashed);
		free(d->path);
		close(d->fd);
	}
	free(c->dirs);
	free(c);
}

/* The names ending in "-<64 hex>": rattler's origin-keyed entries, listed once here so
 * that a lookup needs no directory scan. */
static int list_hashed(struct cachedir *d)
{
	DIR *dir;
	struct dirent *e;
	int fd, r = 0;

	fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return 0;
	}
	while ((e = readdir(dir))) {
		size_t len = strlen(e->d_name);
		char **grown;

		if (len <= ORIGIN_SUFFIX_LEN || e->d_name[len - ORIGIN_SUFFIX_LEN] != '-' ||
		    !hex_only(e->d_name + len - ORIGIN_SUFFIX_LEN + 1, ORIGIN_SUFFIX_LEN - 1,
		              false))
			continue;
		grown = realloc(d->hashed, (d->nhashed + 1) * sizeof(*grown));
		if (!grown) {
			r = -ENOMEM;
			break;
		}
		d->hashed = grown;
		d->hashed[d->nhashed] = strdup(e->d_name);
		if (!d->hashed[d->nhashed]) {
			r = -ENOMEM;
			break;
		}
		d->nhashed++;
	}
	closedir(dir);
	return r;
}

static int add_dir(struct pkgcache *c, const char *path)
{
	struct cachedir *grown, d = {0};
	struct stat st, other;
	int r;

	d.fd = open_named(path, O_RDONLY | O_DIRECTORY);
	if (d.fd < 0)
		return d.fd == -ENOMEM ? -ENOMEM : 0;
	if (fstat(d.fd, &st) < 0)
		goto skip;
	for (size_t i = 0; i < c->n; i++)
		if (fstat(c->dirs[i].fd, &other) == 0 && other.st_dev == st.st_dev &&
		    other.st_ino == st.st_ino)
			goto skip;
	d.path = strdup(path);
	grown = d.path ? realloc(c->dirs, (c->n + 1) * sizeof(*grown)) : NULL;
	if (!grown) {
		free(d.path);
		close(d.fd);
		return -ENOMEM;
	}
	c->dirs = grown;
	c->dirs[c->n++] = d;
	r = list_hashed(&c->dirs[c->n - 1]);
	return r;
skip:
	close(d.fd);
	return 0;
}

/* base + "/" + tail, or NULL when base is unset or relative (as rattler ignores it). */
static int join(const char *base, const char *tail, char **ret)
{
	size_t len;

	*ret = NULL;
	if (!base || base[0] != '/')
		return 0;
	len = strlen(base) + strlen(tail) + 2;
	*ret = malloc(len);
	if (!*ret)
		return -ENOMEM;
	snprintf(*ret, len, "%s/%s", base, tail);
	return 0;
}

int pkgcache_new(const char *const *dirs, size_t ndirs, struct pkgcache **ret, struct cfs_err *err)
{
	const char *home = getenv("HOME"), *xdg = getenv("XDG_CACHE_HOME");
	struct pkgcache *c;
	char *defaults[5] = {0};
	int r = 0;

	*ret = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(err, -ENOMEM, "package caches: out of memory");
	for (size_t i = 0; !r && i < ndirs; i++)
		r = add_dir(c, dirs[i]);
	if (!r)
		r = join("/opt/conda", "pkgs", &defaults[0]);
	if (!r)
		r = join(home, ".conda/pkgs", &defaults[1]);
	if (!r)
		r = join(getenv("PIXI_CACHE_DIR"), "pkgs", &defaults[2]);
	if (!r)
		r = join(getenv("RATTLER_CACHE_DIR"), "pkgs", &defaults[3]);
	/* rattler's default, dirs::cache_dir() on Linux: $XDG_CACHE_HOME if absolute, else
	 * $HOME/.cache. */
	if (!r && xdg && xdg[0] == '/')
		r = join(xdg, "rattler/cache/pkgs", &defaults[4]);
	else if (!r)
		r = join(home, ".cache/rattler/cache/pkgs", &defaults[4]);
	for (size_t i = 0; !r && i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (defaults[i])
			r = add_dir(c, defaults[i]);
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		free(defaults[i]);
	if (r < 0) {
		pkgcache_free(c);
		return err_set(err, r, "package caches: %s", strerror(-r));
	}
	*ret = c;
	return 0;
}

static int path_of(const struct cachedir *d, const char *name, char **ret)
{
	size_t len = strlen(d->path) + strlen(name) + 2;

	*ret = malloc(len);
	if (!*ret)
		return -ENOMEM;
	snprintf(*ret, len, "%s/%s", d->path, name);
	return 0;
}

/* rel (beneath d, no symbolic link on the way) is a regular file. */
static bool regular_beneath(const struct cachedir *d, const char *rel)
{
	struct stat st;
	int fd = open_beneath(d->fd, rel, O_RDONLY);
	bool ok;

	if (fd < 0)
		return false;
	ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	close(fd);
	return ok;
}

/* conda's record: 1 when it names the lock's digest, 0 when it names another or none, -1
 * when there is no readable record, -ENOMEM. */
static int conda_record_matches(const struct cachedir *d, const char *entry, const char *sha256,
                                const char *md5)
{
	struct cfs_err err = {{0}};
	struct yamldoc *doc = NULL;
	const char *want = sha256 ? sha256 : md5, *have;
	char rel[PATH_MAX];
	int r;

	snprintf(rel, sizeof(rel), "%s/info/repodata_record.json", entry);
	r = yamldoc_load(d->fd, rel, rel, RECORD_MAX, &doc, &err);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return -1;
	have = ynode_str(ynode_get(yamldoc_root(doc), sha256 ? "sha256" : "md5"));
	r = have && strcasecmp(have, want) == 0;
	yamldoc_free(doc);
	return r;
}

/* rattler's metadata file "<entry>.lock" records the lock's sha256. */
static bool rattler_record_matches(const struct cachedir *d, const char *entry, const char *sha256)
{
	unsigned char buf[RATTLER_REV_LEN + SHA256_LEN];
	char rel[PATH_MAX], hex[2 * SHA256_LEN + 1];
	size_t got = 0;
	int fd;

	if (!sha256)
		return false;
	snprintf(rel, sizeof(rel), "%s.lock", entry);
	fd = open_beneath(d->fd, rel, O_RDONLY);
	if (fd < 0)
		return false;
	while (got < sizeof(buf)) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got < sizeof(buf))
		return false;
	for (size_t i = 0; i < SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", buf[RATTLER_REV_LEN + i]);
	return strcasecmp(hex, sha256) == 0;
}

/* entry (a directory name in d) is the package extracted, with the lock's digest. */
static int extracted_matches(const struct cachedir *d, const char *entry, const char *sha256,
                             const char *md5)
{
	char rel[PATH_MAX];
	int r;

	snprintf(rel, sizeof(rel), "%s/info/index.json", entry);
	if (!regular_beneath(d, rel))
		return 0;
	snprintf(rel, sizeof(rel), "%s/info/paths.json", entry);
	if (!regular_beneath(d, rel))
		return 0;
	r = conda_record_matches(d, entry, sha256, md5);
	if (r != -1)
		return r;
	return rattler_record_matches(d, entry, sha256);
}

int pkgcache_find(const struct pkgcache *c, const char *fn, const char *sha256, const char *md5,
                  char **ret_archive, char **ret_extracted)
{
	char dist[NAME_MAX + 1];
	size_t len = strlen(fn), dlen = 0;
	int r = 0;

	*ret_archive = *ret_extracted = NULL;
	if (!len || len > NAME_MAX || strchr(fn, '/') || fn[0] == '.')
		return 0;
	if (len > 6 && strcmp(fn + len - 6, ".conda") == 0)
		dlen = len - 6;
	else if (len > 8 && strcmp(fn + len - 8, ".tar.bz2") == 0)
		dlen = len - 8;
	memcpy(dist, fn, dlen);
	dist[dlen] = '\0';
	if (sha256 && !*sha256)
		sha256 = NULL;
	if (md5 && !*md5)
		md5 = NULL;

	for (size_t i = 0; !r && i < c->n && !*ret_archive; i++)
		if (regular_beneath(&c->dirs[i], fn))
			r = path_of(&c->dirs[i], fn, ret_archive);
	/* Without a digest nothing tells this package from another build under its name. */
	if (r || !dlen || (!sha256 && !md5))
		goto out;
	for (size_t i = 0; !r && i < c->n && !*ret_extracted; i++) {
		const struct cachedir *d = &c->dirs[i];

		r = extracted_matches(d, dist, sha256, md5);
		if (r > 0) {
			r = path_of(d, dist, ret_extracted);
			break;
		}
		for (size_t j = 0; r == 0 && !*ret_extracted && j < d->nhashed; j++) {
			if (strlen(d->hashed[j]) != dlen + ORIGIN_SUFFIX_LEN ||
			    strncmp(d->hashed[j], dist, dlen) != 0)
				continue;
			r = extracted_matches(d, d->hashed[j], sha256, md5);
			if (r > 0)
				r = path_of(d, d->hashed[j], ret_extracted);
		}
	}
out:
	if (r < 0) {
		free(*ret_archive);
		free(*ret_extracted);
		*ret_archive = *ret_extracted = NULL;
		return r;
	}
	return 0;
}
