// SPDX-License-Identifier: MIT
/*
 * The solved package set that names an environment: the platform and its packages, kept
 * sorted, its hash, and the check that a lock describes the set of an environment.
 * Also the naming rules every reader of a set shares (PEP 503 names, conda file names,
 * channel and subdir from a URL), so a lock and a prefix spell one package the same way.
 *
 * The hash (pkgset_hash) is XXH3-128 of this text, all lines ending in '\n':
 *
 *	platform <platform>
 *	conda <name> <version> <build>		one per conda package
 *	pypi <name> <version>			one per pip package, name per PEP 503
 *
 * conda lines first, then pypi lines, each sorted by name (bytewise). A build can be ""
 * (a source package in a pixi.lock), which leaves the line ending in a space. No field
 * holds a blank or a control character (pkgset_add refuses them), so the text cannot be
 * read two ways. Channels, subdirs and md5/sha256 are not hashed: not every form of a
 * lock carries them, and the same environment must get the same name from every form.
 * The 128 bits print as 32 lowercase hex digits, the high 64 bits first.
 */
#include "pkgset.h"

#include "err.h"
#include "hex.h"

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: pkgset_hash cannot fail */
#include <xxhash.h>

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

struct pkgset {
	char *platform;
	char *choices;    /* the lock's platforms, when the host's was taken among them */
	struct pkg *pkgs; /* every string owned here */
	size_t n, cap;
	struct pkg_virtual *virt; /* every string owned here */
	size_t nvirt, capvirt;
	bool finished;
};

/* conda's known subdirs (conda/base/constants.py KNOWN_SUBDIRS), each between blanks. */
static const char subdirs[] = " noarch emscripten-wasm32 wasi-wasm32 freebsd-64 linux-32 linux-64"
                              " linux-aarch64 linux-armv6l linux-armv7l linux-ppc64 linux-ppc64le"
                              " linux-riscv64 linux-s390x osx-64 osx-arm64 win-32 win-64 win-arm64"
                              " zos-z ";

static bool is_subdir(const char *s, size_t len)
{
	for (const char *p = subdirs + 1; *p; p += strcspn(p, " ") + 1)
		if (strcspn(p, " ") == len && memcmp(p, s, len) == 0)
			return true;
	return false;
}

const char *pkgset_host_platform(void)
{
	struct utsname u;

	if (uname(&u) < 0)
		return NULL;
	if (strcmp(u.sysname, "Linux") == 0) {
		if (strcmp(u.machine, "x86_64") == 0)
			return "linux-64";
		if (strcmp(u.machine, "aarch64") == 0)
			return "linux-aarch64";
		if (strcmp(u.machine, "ppc64le") == 0)
			return "linux-ppc64le";
		if (strcmp(u.machine, "s390x") == 0)
			return "linux-s390x";
		if (strcmp(u.machine, "riscv64") == 0)
			return "linux-riscv64";
		if (strcmp(u.machine, "i686") == 0)
			return "linux-32";
	} else if (strcmp(u.sysname, "Darwin") == 0) {
		if (strcmp(u.machine, "x86_64") == 0)
			return "osx-64";
		if (strcmp(u.machine, "arm64") == 0)
			return "osx-arm64";
	}
	return NULL;
}

bool pkgset_split_filename(char *file, const char **ret_name, const char **ret_version,
                           const char **ret_build)
{
	size_t len = strlen(file), stem;
	char *build, *version;

	if (len > 6 && strcmp(file + len - 6, ".conda") == 0)
		stem = len - 6;
	else if (len > 8 && strcmp(file + len - 8, ".tar.bz2") == 0)
		stem = len - 8;
	else
		return false;
	build = memrchr(file, '-', stem);
	if (!build || build == file || build + 1 == file + stem)
		return false;
	version = memrchr(file, '-', (size_t)(build - file));
	if (!version || version == file || version + 1 == build)
		return false;
	file[stem] = '\0';
	*build++ = '\0';
	*version++ = '\0';
	*ret_name = file;
	*ret_version = version;
	*ret_build = build;
	return true;
}

bool pkgset_split_url(char *url, const char **ret_channel, const char **ret_subdir, char **ret_file)
{
	size_t len = strcspn(url, "#?");
	char *file, *subdir;

	file = memrchr(url, '/', len);
	if (!file || file == url || file + 1 == url + len)
		return false;
	subdir = memrchr(url, '/', (size_t)(file - url));
	if (!subdir || subdir == url || subdir + 1 == file)
		return false;
	url[len] = '\0';
	*file++ = '\0';
	*subdir++ = '\0';
	*ret_channel = url;
	*ret_subdir = subdir;
	*ret_file = file;
	return true;
}

/* Names, versions and builds go into the hashed text between blanks. */
static bool word_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

static int hex_copy(const char *hex, size_t want, char **ret)
{
	char *c;

	*ret = NULL;
	if (strlen(hex) != want || !hex_only(hex, want, true))
		return -EINVAL;
	c = strdup(hex);
	if (!c)
		return -ENOMEM;
	for (char *q = c; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	*ret = c;
	return 0;
}

/* PEP 503: lowercase, every run of '-', '_', '.' becomes one '-'. */
static char *pep503(const char *name)
{
	char *out = malloc(strlen(name) + 1), *o = out;

	if (!out)
		return NULL;
	for (const char *s = name; *s;) {
		if (*s == '-' || *s == '_' || *s == '.') {
			while (*s == '-' || *s == '_' || *s == '.')
				s++;
			*o++ = '-';
		} else {
			*o++ = (char)tolower((unsigned char)*s++);
		}
	}
	*o = '\0';
	return out;
}

/* A channel without a trailing '/' and without a trailing subdir: conda-meta writes
 * "https://host/conda-forge/osx-arm64" or "https://host/conda-forge/", a lock's URL gives
 * "https://host/conda-forge"; all are one channel. */
static char *channel_canon(const char *channel)
{
	size_t len = strlen(channel);
	const char *slash;
	char *c;

	while (len > 1 && channel[len - 1] == '/')
		len--;
	slash = memrchr(channel, '/', len);
	if (slash && is_subdir(slash + 1, len - (size_t)(slash + 1 - channel))) {
		len = (size_t)(slash - channel);
		while (len > 1 && channel[len - 1] == '/')
			len--;
	}
	c = strndup(channel, len);
	return c;
}

static void pkg_release(struct pkg *p)
{
	free((char *)p->name);
	free((char *)p->version);
	free((char *)p->build);
	free((char *)p->channel);
	free((char *)p->subdir);
	free((char *)p->md5);
	free((char *)p->sha256);
	free((char *)p->url);
}

int pkgset_new(struct pkgset **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

int pkgset_add(struct pkgset *set, const struct pkg *p, const char *where, struct cfs_err *err)
{
	struct pkg c = {.kind = p->kind, .size = p->size};
	char *md5 = NULL, *sha256 = NULL;
	int r;

	if (!p->name || !*p->name || !word_ok(p->name)) {
		return err_set(err, -EINVAL, "%s: '%s' is not a package name", where,
		               p->name ? p->name : "");
	}
	if (!p->version || !*p->version || !word_ok(p->version))
		return err_set(err, -EINVAL, "%s: %s: '%s' is not a version", where, p->name,
		               p->version ? p->version : "");
	if (p->kind == PKG_CONDA && (!p->build || !word_ok(p->build)))
		return err_set(err, -EINVAL, "%s: %s: '%s' is not a build string", where, p->name,
		               p->build ? p->build : "");
	if (p->kind == PKG_PYPI && p->build)
		return err_set(err, -EINVAL, "%s: %s: a pip package has no build string", where,
		               p->name);
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 64;
		struct pkg *pkgs;

		if (cap > SIZE_MAX / sizeof(*pkgs))
			return err_set(err, -ENOMEM, "%s: out of memory", where);
		pkgs = realloc(set->pkgs, cap * sizeof(*pkgs));
		if (!pkgs)
			return err_set(err, -ENOMEM, "%s: out of memory", where);
		set->pkgs = pkgs;
		set->cap = cap;
	}
	c.name = p->kind == PKG_PYPI ? pep503(p->name) : strdup(p->name);
	c.version = strdup(p->version);
	if (!c.name || !c.version)
		goto nomem;
	if (p->build && !(c.build = strdup(p->build)))
		goto nomem;
	if (p->channel && *p->channel && !(c.channel = channel_canon(p->channel)))
		goto nomem;
	if (p->subdir && *p->subdir && !(c.subdir = strdup(p->subdir)))
		goto nomem;
	if (p->url && *p->url && !(c.url = strdup(p->url)))
		goto nomem;
	if (p->md5 && *p->md5) {
		r = hex_copy(p->md5, 32, &md5);
		c.md5 = md5;
		if (r == -ENOMEM)
			goto nomem;
		if (r < 0) {
			r = err_set(err, r, "%s: %s: md5 '%s' is not 32 hex digits", where, p->name,
			            p->md5);
			goto out;
		}
	}
	if (p->sha256 && *p->sha256) {
		r = hex_copy(p->sha256, 64, &sha256);
		c.sha256 = sha256;
		if (r == -ENOMEM)
			goto nomem;
		if (r < 0) {
			r = err_set(err, r, "%s: %s: sha256 '%s' is not 64 hex digits", where,
			            p->name, p->sha256);
			goto out;
		}
	}
	set->pkgs[set->n++] = c;
	return 0;
nomem:
	r = err_set(err, -ENOMEM, "%s: out of memory", where);
out:
	pkg_release(&c);
	return r;
}

static int pkg_cmp(const void *a, const void *b)
{
	const struct pkg *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return strcmp(x->name, y->name);
}

static const char *kind_label(const struct pkg *p)
{
	return p->kind == PKG_PYPI ? "pypi:" : "";
}

int pkgset_finish(struct pkgset *set, const char *platform, const char *where, struct cfs_err *err)
{
	assert(!set->finished);
	/* The catalog keeps the platform in 32 bytes (struct store_env). */
	if (!*platform || strlen(platform) > 31 || !word_ok(platform))
		return err_set(err, -EINVAL, "%s: '%s' is not a platform name", where, platform);
	for (size_t i = 0; i < set->n; i++) {
		const struct pkg *p = &set->pkgs[i];

		if (p->subdir && strcmp(p->subdir, "noarch") != 0 &&
		    strcmp(p->subdir, platform) != 0)
			return err_set(err, -EINVAL, "%s: %s is a package for %s, not for %s",
			               where, p->name, p->subdir, platform);
	}
	set->platform = strdup(platform);
	if (!set->platform)
		return err_set(err, -ENOMEM, "%s: out of memory", where);
	if (set->n)
		qsort(set->pkgs, set->n, sizeof(*set->pkgs), pkg_cmp);
	for (size_t i = 1; i < set->n; i++) {
		const struct pkg *a = &set->pkgs[i - 1], *b = &set->pkgs[i];

		if (pkg_cmp(a, b) == 0)
			return err_set(err, -EINVAL, "%s: %s%s is listed twice (%s and %s)", where,
			               kind_label(a), a->name, a->version, b->version);
	}
	set->finished = true;
	return 0;
}

void pkgset_free(struct pkgset *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		pkg_release(&set->pkgs[i]);
	free(set->pkgs);
	for (size_t i = 0; i < set->nvirt; i++) {
		free((char *)set->virt[i].name);
		free((char *)set->virt[i].spec);
		free((char *)set->virt[i].from);
	}
	free(set->virt);
	free(set->platform);
	free(set->choices);
	free(set);
}

const char *pkgset_platform(const struct pkgset *set)
{
	return set->platform;
}

int pkgset_note_choices(struct pkgset *set, const char *list)
{
	char *s = strdup(list);

	if (!s)
		return -ENOMEM;
	free(set->choices);
	set->choices = s;
	return 0;
}

const char *pkgset_platform_choices(const struct pkgset *set)
{
	return set->choices;
}

int pkgset_add_virtual(struct pkgset *set, const char *name, const char *spec, const char *from)
{
	struct pkg_virtual v;

	for (size_t i = 0; i < set->nvirt; i++)
		if (!strcmp(set->virt[i].name, name) && !strcmp(set->virt[i].spec, spec))
			return 0;
	if (set->nvirt == set->capvirt) {
		size_t cap = set->capvirt ? set->capvirt * 2 : 8;
		struct pkg_virtual *nv = reallocarray(set->virt, cap, sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		set->virt = nv;
		set->capvirt = cap;
	}
	v = (struct pkg_virtual){.name = strdup(name), .spec = strdup(spec), .from = strdup(from)};
	if (!v.name || !v.spec || !v.from) {
		free((char *)v.name);
		free((char *)v.spec);
		free((char *)v.from);
		return -ENOMEM;
	}
	set->virt[set->nvirt++] = v;
	return 0;
}

size_t pkgset_virtual_count(const struct pkgset *set)
{
	return set->nvirt;
}

const struct pkg_virtual *pkgset_virtual_at(const struct pkgset *set, size_t i)
{
	return i < set->nvirt ? &set->virt[i] : NULL;
}

size_t pkgset_count(const struct pkgset *set)
{
	return set->n;
}

const struct pkg *pkgset_at(const struct pkgset *set, size_t i)
{
	return i < set->n ? &set->pkgs[i] : NULL;
}

static void hash_str(XXH3_state_t *st, const char *s)
{
	XXH3_128bits_update(st, s, strlen(s));
}

void pkgset_hash(const struct pkgset *set, char ret[33])
{
	XXH3_state_t st;
	XXH128_hash_t h;

	assert(set->finished);
	XXH3_INITSTATE(&st);
	XXH3_128bits_reset(&st);
	hash_str(&st, "platform ");
	hash_str(&st, set->platform);
	hash_str(&st, "\n");
	for (size_t i = 0; i < set->n; i++) {
		const struct pkg *p = &set->pkgs[i];

		hash_str(&st, p->kind == PKG_CONDA ? "conda " : "pypi ");
		hash_str(&st, p->name);
		hash_str(&st, " ");
		hash_str(&st, p->version);
		if (p->kind == PKG_CONDA) {
			hash_str(&st, " ");
			hash_str(&st, p->build);
		}
		hash_str(&st, "\n");
	}
	h = XXH3_128bits_digest(&st);
	snprintf(ret, 33, "%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64, (uint64_t)h.low64);
}

/* ---- pkgset_match ---- */

/* The message: a head, as many differences as fit in one cfs_err line, then a count of
 * the rest. */
struct diffs {
	char buf[sizeof(((struct cfs_err *)0)->msg)];
	size_t len;
	size_t shown, hidden;
};

#define DIFFS_HEAD "lock does not match the environment: "

/* Room kept for " (and 123456 more)". */
#define DIFFS_TAIL 24

__attribute__((format(printf, 2, 3))) static void diff_add(struct diffs *d, const char *fmt, ...)
{
	char item[sizeof(d->buf)];
	size_t need, sep = d->shown ? 2 : 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(item, sizeof(item), fmt, ap);
	va_end(ap);
	need = n < 0 ? SIZE_MAX : (size_t)n + sep;
	if (need >= sizeof(d->buf) - DIFFS_TAIL - d->len) {
		d->hidden++;
		return;
	}
	if (sep)
		memcpy(d->buf + d->len, "; ", 2);
	memcpy(d->buf + d->len + sep, item, (size_t)n + 1);
	d->len += need;
	d->shown++;
}

/* A short name ("conda-forge", "pkgs/main") is the last components of a channel URL. */
static bool channel_name_of(const char *name, const char *url)
{
	size_t nl = strlen(name), ul = strlen(url);

	if (strstr(name, "://"))
		return false;
	if (strcmp(name, "defaults") == 0)
		/* conda's default_channels on unix */
		return channel_name_of("pkgs/main", url) || channel_name_of("pkgs/r", url);
	return ul > nl && url[ul - nl - 1] == '/' && memcmp(url + ul - nl, name, nl) == 0;
}

static bool channel_equal(const char *a, const char *b)
{
	return strcmp(a, b) == 0 || channel_name_of(a, b) || channel_name_of(b, a);
}

static void pkg_compare(struct diffs *d, const struct pkg *h, const struct pkg *l)
{
	const char *k = kind_label(h);

	if (strcmp(h->version, l->version) != 0 ||
	    (h->kind == PKG_CONDA && strcmp(h->build, l->build) != 0)) {
		diff_add(d, "%s%s: %s%s%s in the environment, %s%s%s in the lock", k, h->name,
		         h->version, h->build ? " " : "", h->build ? h->build : "", l->version,
		         l->build ? " " : "", l->build ? l->build : "");
		return;
	}
	if (h->channel && l->channel && !channel_equal(h->channel, l->channel))
		diff_add(d, "%s%s: channel %s in the environment, %s in the lock", k, h->name,
		         h->channel, l->channel);
	if (h->md5 && l->md5 && strcmp(h->md5, l->md5) != 0)
		diff_add(d, "%s%s: md5 %s in the environment, %s in the lock", k, h->name, h->md5,
		         l->md5);
	if (h->sha256 && l->sha256 && strcmp(h->sha256, l->sha256) != 0)
		diff_add(d, "%s%s: sha256 %s in the environment, %s in the lock", k, h->name,
		         h->sha256, l->sha256);
}

static void diff_missing(struct diffs *d, const struct pkg *h)
{
	diff_add(d, "%s%s %s%s%s: missing from the lock", kind_label(h), h->name, h->version,
	         h->build ? " " : "", h->build ? h->build : "");
}

static void diff_extra(struct diffs *d, const struct pkg *l)
{
	diff_add(d, "%s%s %s%s%s: in the lock, not in the environment", kind_label(l), l->name,
	         l->version, l->build ? " " : "", l->build ? l->build : "");
}

int pkgset_match(const struct pkgset *have, const struct pkgset *lock, struct cfs_err *err)
{
	struct diffs d = {.buf = DIFFS_HEAD, .len = sizeof(DIFFS_HEAD) - 1};
	size_t i = 0, j = 0;

	assert(have->finished && lock->finished);

	if (strcmp(have->platform, lock->platform) != 0)
		diff_add(&d, "platform: %s in the environment, %s in the lock", have->platform,
		         lock->platform);
	/* A merge of two sorted lists; what is left of either after the other ends still
	 * comes in name order. */
	while (i < have->n && j < lock->n) {
		int c = pkg_cmp(&have->pkgs[i], &lock->pkgs[j]);

		if (c < 0)
			diff_missing(&d, &have->pkgs[i++]);
		else if (c > 0)
			diff_extra(&d, &lock->pkgs[j++]);
		else
			pkg_compare(&d, &have->pkgs[i++], &lock->pkgs[j++]);
	}
	while (i < have->n)
		diff_missing(&d, &have->pkgs[i++]);
	while (j < lock->n)
		diff_extra(&d, &lock->pkgs[j++]);
	if (!d.shown && !d.hidden)
		return 0;
	if (d.hidden)
		return err_set(err, -EINVAL, "%s (and %zu more)", d.buf, d.hidden);
	return err_set(err, -EINVAL, "%s", d.buf);
}
