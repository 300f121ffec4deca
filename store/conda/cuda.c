// SPDX-License-Identifier: MIT
/*
 * The CUDA driver check (condafs/cuda.h): an environment's CUDA need from its package set,
 * the host's NVIDIA driver, and NVIDIA's table of the minimum Linux driver per CUDA
 * release, the one place condafs keeps it.
 */
#include "condafs/cuda.h"

#include "err.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- NVIDIA's table ---- */

/*
 * Minimum Linux x86_64 driver per CUDA release: NVIDIA's "CUDA Toolkit and Corresponding
 * Driver Versions" table in the CUDA Toolkit Release Notes
 * (https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html#id7), one row per
 * minor release, its GA (first) release's driver; an update may need a newer one (12.2
 * Update 2: 535.104.05), which minor-version compatibility covers. Checked against the
 * transcription in meson's mesonbuild/modules/cuda.py (commit cd1a097e, 2026-08), which
 * also gives 11.0.2 GA (the 450.36.06 row is 11.0.1 RC). There is no CUDA 12.7.
 */
static const struct release {
	unsigned major, minor;
	const char *driver;
} table[] = {
        {13, 3, "610.43.02"}, {13, 2, "595.45.04"}, {13, 1, "590.44.01"}, {13, 0, "580.65.06"},
        {12, 9, "575.51.03"}, {12, 8, "570.26"},    {12, 6, "560.28.03"}, {12, 5, "555.42.02"},
        {12, 4, "550.54.14"}, {12, 3, "545.23.06"}, {12, 2, "535.54.03"}, {12, 1, "530.30.02"},
        {12, 0, "525.60.13"}, {11, 8, "520.61.05"}, {11, 7, "515.43.04"}, {11, 6, "510.39.01"},
        {11, 5, "495.29.05"}, {11, 4, "470.42.01"}, {11, 3, "465.19.01"}, {11, 2, "460.27.03"},
        {11, 1, "455.23"},    {11, 0, "450.51.05"}, {10, 2, "440.33"},    {10, 1, "418.39"},
        {10, 0, "410.48"},    {9, 2, "396.26"},     {9, 1, "390.46"},     {9, 0, "384.81"},
        {8, 0, "367.48"},     {7, 5, "352.31"},     {7, 0, "346.46"},
};

/*
 * Minor-version compatibility: from CUDA 11 on, a release runs on any driver at least the
 * minimum of its major release's family, without the features that need the newer driver.
 * NVIDIA's "CUDA Compatibility" guide, "Minor Version Compatibility"
 * (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html,
 * Table 1: 13.x >= 580, 12.x >= 525, 11.x >= 450, and its note: 11.x needs 450.80.02), and
 * the release notes' table of the minimum for minor-version compatibility (12.x >=
 * 525.60.13).
 */
static const struct release compat[] = {
        {13, 0, "580"},
        {12, 0, "525.60.13"},
        {11, 0, "450.80.02"},
};

const char *cuda_min_driver(unsigned major, unsigned minor)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].major == major && table[i].minor == minor)
			return table[i].driver;
	return NULL;
}

const char *cuda_compat_driver(unsigned major)
{
	for (size_t i = 0; i < sizeof(compat) / sizeof(compat[0]); i++)
		if (compat[i].major == major)
			return compat[i].driver;
	return NULL;
}

/* ---- the need ---- */

/* "12.1", "11.8.0", "12.1.105", "12", "12.": the release major.minor a version (len
 * bytes) starts with. */
static bool release_of(const char *s, size_t len, unsigned *major, unsigned *minor)
{
	unsigned v[2] = {0, 0};
	size_t i = 0;

	for (int k = 0; k < 2 && i < len; k++) {
		size_t start = i;

		while (i < len && isdigit((unsigned char)s[i]) && i - start < 4)
			v[k] = v[k] * 10 + (unsigned)(s[i++] - '0');
		if ((k == 0 && i == start) || (i < len && s[i] != '.'))
			return false;
		i++;
	}
	if (v[0] == 0)
		return false;
	*major = v[0];
	*minor = v[1];
	return true;
}

/*
 * A CUDA release in a build string or local version: a '_' or '+'-separated word
 * "cudaXY" or "cuXY" (its last digit is the minor: cuda118 is 11.8, cu92 9.2) or
 * "cudaX.Y" ("py3.10_cuda11.8_cudnn8.7.0_0"). "cudnn8" and "cpu" are not one.
 */
static bool release_in_build(const char *s, unsigned *major, unsigned *minor)
{
	for (const char *w = s; *w;) {
		size_t len = strcspn(w, "_+");
		size_t pre = !strncmp(w, "cuda", 4) ? 4 : !strncmp(w, "cu", 2) ? 2 : 0;

		if (pre && len > pre && isdigit((unsigned char)w[pre])) {
			const char *d = w + pre;
			size_t dl = len - pre;

			if (memchr(d, '.', dl)) {
				if (release_of(d, dl, major, minor))
					return true;
			} else if (dl >= 2 && dl <= 3 && strspn(d, "0123456789") >= dl) {
				*major = 0;
				for (size_t i = 0; i + 1 < dl; i++)
					*major = *major * 10 + (unsigned)(d[i] - '0');
				*minor = (unsigned)(d[dl - 1] - '0');
				if (*major)
					return true;
			}
		}
		w += len;
		w += *w != '\0';
	}
	return false;
}

/*
 * The lowest release a __cuda spec accepts: ">=12", "12", "12.*", "==11.8", ">=11.2,<13";
 * of alternatives ("a|b"), the lowest. false when it names none (a bare __cuda, "<13").
 */
static bool release_of_spec(const char *spec, unsigned *major, unsigned *minor)
{
	bool any = false;

	for (const char *alt = spec; *alt;) {
		const char *aend = alt + strcspn(alt, "|");
		unsigned amaj = 0, amin = 0, cmaj, cmin;
		bool found = false;

		for (const char *c = alt; c < aend;) {
			const char *cend = c + strcspn(c, ",|"), *v = c + strspn(c, " ");

			/* Upper bounds and exclusions do not raise the need. */
			if (v < cend && *v != '<' && *v != '!') {
				v += strspn(v, ">=~ ");
				if (release_of(v, strspn(v, "0123456789."), &cmaj, &cmin) &&
				    (!found || cmaj > amaj || (cmaj == amaj && cmin > amin))) {
					amaj = cmaj;
					amin = cmin;
					found = true;
				}
			}
			c = cend + (*cend == ',');
		}
		if (found && (!any || amaj < *major || (amaj == *major && amin < *minor))) {
			*major = amaj;
			*minor = amin;
			any = true;
		}
		alt = aend + (*aend == '|');
	}
	return any;
}

/* Sources in the order that names the need among equal releases. */
enum { SRC_CUDA_VERSION, SRC_CUDART, SRC_CUDATOOLKIT, SRC_PYTORCH_CUDA, SRC_BUILD, SRC_VIRTUAL };

/* The need so far: the highest release, the best-ranked source among equals. */
struct best {
	unsigned major, minor;
	int rank;
	bool any;
};

/* Whether a source giving major.minor at rank names the need instead of what b holds. */
static bool better(struct best *b, unsigned major, unsigned minor, int rank)
{
	if (b->any && (major < b->major || (major == b->major && minor < b->minor) ||
	               (major == b->major && minor == b->minor && rank >= b->rank)))
		return false;
	*b = (struct best){major, minor, rank, true};
	return true;
}

void cuda_need_of(const struct pkgset *set, struct cuda_need *ret)
{
	static const struct {
		const char *name;
		int rank;
	} by_version[] = {
	        {"cuda-version", SRC_CUDA_VERSION},
	        {"cuda-cudart", SRC_CUDART},
	        {"cudatoolkit", SRC_CUDATOOLKIT},
	        {"pytorch-cuda", SRC_PYTORCH_CUDA},
	};
	struct best b = {0};
	unsigned major, minor;
	char *src = ret->source;
	size_t len = sizeof(ret->source);

	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);

		if (p->kind == PKG_PYPI) {
			const char *local = strchr(p->version, '+');

			/* pip's torch wheels: "2.1.0+cu121" */
			if (!strcmp(p->name, "torch") && local &&
			    release_in_build(local + 1, &major, &minor) &&
			    better(&b, major, minor, SRC_BUILD))
				snprintf(src, len, "pypi %s %s", p->name, p->version);
			continue;
		}
		for (size_t k = 0; k < sizeof(by_version) / sizeof(by_version[0]); k++)
			if (!strcmp(p->name, by_version[k].name) &&
			    release_of(p->version, strlen(p->version), &major, &minor) &&
			    better(&b, major, minor, by_version[k].rank))
				snprintf(src, len, "%s %s", p->name, p->version);
		if ((!strcmp(p->name, "pytorch") || !strcmp(p->name, "libtorch")) &&
		    release_in_build(p->build, &major, &minor) &&
		    better(&b, major, minor, SRC_BUILD))
			snprintf(src, len, "%s %s %s", p->name, p->version, p->build);
	}
	for (size_t i = 0; i < pkgset_virtual_count(set); i++) {
		const struct pkg_virtual *v = pkgset_virtual_at(set, i);

		if (!strcmp(v->name, "__cuda") && release_of_spec(v->spec, &major, &minor) &&
		    better(&b, major, minor, SRC_VIRTUAL))
			snprintf(src, len, "__cuda %s (%s)", v->spec, v->from);
	}
	if (!b.any)
		return;
	ret->major = b.major;
	ret->minor = b.minor;
	snprintf(ret->release, sizeof(ret->release), "%u.%u", b.major, b.minor);
}

/* ---- the driver ---- */

int cuda_driver_parse(const char *s, struct cuda_driver *ret)
{
	size_t len = strlen(s), i = 0;
	unsigned v[3] = {0, 0, 0};

	memset(ret, 0, sizeof(*ret));
	if (!len || len >= sizeof(ret->version))
		return -EINVAL;
	for (int k = 0; k < 3; k++) {
		size_t start = i;

		while (i < len && isdigit((unsigned char)s[i]) && i - start < 6)
			v[k] = v[k] * 10 + (unsigned)(s[i++] - '0');
		if (i == start || (i < len && s[i] != '.'))
			return -EINVAL;
		if (i == len)
			break;
		if (k == 2 || ++i == len)
			return -EINVAL;
	}
	ret->present = true;
	memcpy(ret->v, v, sizeof(v));
	memcpy(ret->version, s, len + 1);
	return 0;
}

int cuda_driver_from_proc(const char *text, struct cuda_driver *ret)
{
	const char *line = strstr(text, "NVRM version:");

	memset(ret, 0, sizeof(*ret));
	if (!line)
		return -ENOENT;
	for (const char *w = line + 13; *w && *w != '\n';) {
		size_t len;
		char word[32];

		w += strspn(w, " \t");
		len = strcspn(w, " \t\n");
		if (len && len < sizeof(word) && isdigit((unsigned char)*w) &&
		    memchr(w, '.', len)) {
			memcpy(word, w, len);
			word[len] = '\0';
			if (cuda_driver_parse(word, ret) == 0)
				return 0;
		}
		w += len;
	}
	return -ENOENT;
}

int cuda_driver_cmp(const unsigned a[3], const unsigned b[3])
{
	for (int i = 0; i < 3; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}

/* `nvidia-smi --query-gpu=driver_version --format=csv,noheader`: one line per GPU. 0 and
 * the first line's version; -ENOENT when it is not there, fails or prints none. */
static int driver_from_smi(struct cuda_driver *ret)
{
	char *const argv[] = {"nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader",
	                      NULL};
	posix_spawn_file_actions_t fa;
	char out[256];
	size_t n = 0;
	int fd[2], status, r;
	pid_t pid;

	if (pipe2(fd, O_CLOEXEC) < 0)
		return -ENOENT;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	r = posix_spawnp(&pid, "nvidia-smi", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	if (r != 0) {
		close(fd[0]);
		return -ENOENT;
	}
	for (;;) {
		ssize_t k = read(fd[0], out + n, sizeof(out) - 1 - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		if (n == sizeof(out) - 1)
			break;
	}
	close(fd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || cuda_driver_parse(out, ret) < 0)
		return -ENOENT;
	return 0;
}

#define PROC_VERSION "/proc/driver/nvidia/version"

static int driver_given(const char *s, const char *source, struct cuda_driver *ret,
                        struct cfs_err *err)
{
	if (!strcmp(s, "none")) {
		memset(ret, 0, sizeof(*ret));
		snprintf(ret->absent, sizeof(ret->absent), "%s none", source);
		return 0;
	}
	if (cuda_driver_parse(s, ret) < 0)
		return err_set(err, -EINVAL,
		               "%s: '%s' is not a driver version (like 535.104.05, or none)",
		               source, s);
	snprintf(ret->source, sizeof(ret->source), "%s", source);
	return 0;
}

int cuda_host_driver(const char *override, struct cuda_driver *ret, struct cfs_err *err)
{
	const char *env = getenv("CONDAFS_DRIVER_VERSION");
	char text[4096];
	ssize_t n;
	int fd;

	if (override)
		return driver_given(override, "--driver", ret, err);
	if (env && *env)
		return driver_given(env, "CONDAFS_DRIVER_VERSION", ret, err);
	fd = open(PROC_VERSION, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		do
			n = read(fd, text, sizeof(text) - 1);
		while (n < 0 && errno == EINTR);
		close(fd);
		text[n > 0 ? n : 0] = '\0';
		if (cuda_driver_from_proc(text, ret) < 0)
			return err_set(err, -EBADMSG, "%s: names no driver version", PROC_VERSION);
		snprintf(ret->source, sizeof(ret->source), "%s", PROC_VERSION);
		return 0;
	}
	if (driver_from_smi(ret) == 0) {
		snprintf(ret->source, sizeof(ret->source), "nvidia-smi");
		return 0;
	}
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->absent, sizeof(ret->absent), "no %s and no nvidia-smi", PROC_VERSION);
	return 0;
}

/* ---- the verdict ---- */

static bool at_least(const struct cuda_driver *drv, const char *min)
{
	struct cuda_driver m;

	return cuda_driver_parse(min, &m) == 0 && cuda_driver_cmp(drv->v, m.v) >= 0;
}

/* Driver version a is older than b (both from the table). */
static bool older(const char *a, const char *b)
{
	struct cuda_driver x, y;

	return cuda_driver_parse(a, &x) == 0 && cuda_driver_parse(b, &y) == 0 &&
	       cuda_driver_cmp(x.v, y.v) < 0;
}

void cuda_check(const struct cuda_need *need, const struct cuda_driver *drv, struct cuda_check *ret)
{
	const char *req = cuda_min_driver(need->major, need->minor);
	const char *cmp = cuda_compat_driver(need->major);
	char needs[128];

	memset(ret, 0, sizeof(*ret));
	/* Compatibility offers nothing below the release's own minimum (12.0, 11.0). */
	if (req && cmp && !older(cmp, req))
		cmp = NULL;
	if (!need->major) {
		ret->verdict = CUDA_NOT_NEEDED;
		snprintf(ret->text, sizeof(ret->text), "no CUDA needed");
		return;
	}
	snprintf(ret->required, sizeof(ret->required), "%s", req ? req : "");
	snprintf(ret->compat, sizeof(ret->compat), "%s", cmp ? cmp : "");
	if (req && cmp)
		snprintf(needs, sizeof(needs),
		         "CUDA %s needs driver >= %s, or >= %s with minor-version compatibility",
		         need->release, req, cmp);
	else if (req || cmp)
		snprintf(needs, sizeof(needs), "CUDA %s needs driver >= %s%s", need->release,
		         req ? req : cmp, req ? "" : " (minor-version compatibility)");
	if (!req && !cmp) {
		ret->verdict = CUDA_UNKNOWN;
		snprintf(ret->text, sizeof(ret->text),
		         "unknown: CUDA %s is not in condafs's table of NVIDIA's minimum drivers "
		         "(%u.%u to %u.%u)",
		         need->release, table[sizeof(table) / sizeof(table[0]) - 1].major,
		         table[sizeof(table) / sizeof(table[0]) - 1].minor, table[0].major,
		         table[0].minor);
	} else if (!drv->present) {
		ret->verdict = CUDA_NO_DRIVER;
		snprintf(ret->text, sizeof(ret->text), "no driver: %s, and this host has none",
		         needs);
	} else if (req && at_least(drv, req)) {
		ret->verdict = CUDA_FITS;
		snprintf(ret->text, sizeof(ret->text), "fits: CUDA %s needs driver >= %s",
		         need->release, req);
	} else if (cmp && at_least(drv, cmp)) {
		ret->verdict = CUDA_FITS_COMPAT;
		if (req)
			snprintf(ret->text, sizeof(ret->text),
			         "fits by minor-version compatibility: CUDA %s runs on driver >= "
			         "%s, but features such as PTX JIT need >= %s",
			         need->release, cmp, req);
		else
			snprintf(ret->text, sizeof(ret->text),
			         "fits by minor-version compatibility: CUDA %u.x runs on driver >= "
			         "%s (condafs's table has no CUDA %s)",
			         need->major, cmp, need->release);
	} else {
		ret->verdict = CUDA_TOO_OLD;
		snprintf(ret->text, sizeof(ret->text), "too old: %s; this host has %s", needs,
		         drv->version);
	}
}

const char *cuda_verdict_name(enum cuda_verdict v)
{
	static const char *const names[] = {
	        [CUDA_NOT_NEEDED] = "not-needed",         [CUDA_FITS] = "fits",
	        [CUDA_FITS_COMPAT] = "fits-minor-compat", [CUDA_TOO_OLD] = "too-old",
	        [CUDA_NO_DRIVER] = "no-driver",           [CUDA_UNKNOWN] = "unknown",
	};

	return names[v];
}

bool cuda_verdict_ok(enum cuda_verdict v)
{
	return v == CUDA_NOT_NEEDED || v == CUDA_FITS || v == CUDA_FITS_COMPAT;
}

int cuda_warn_line(const struct pkgset *set, const char *driver_override, char *buf, size_t len)
{
	struct cfs_err err = {{0}};
	struct cuda_driver drv;
	struct cuda_need need;
	struct cuda_check chk;
	bool both;
	int r;

	if (len)
		buf[0] = '\0';
	cuda_need_of(set, &need);
	if (!need.major)
		return 0;
	r = cuda_host_driver(driver_override, &drv, &err);
	if (r < 0) {
		snprintf(buf, len, "%s", err.msg);
		return r;
	}
	cuda_check(&need, &drv, &chk);
	if (chk.verdict != CUDA_TOO_OLD)
		return 0;
	both = chk.required[0] && chk.compat[0];
	snprintf(buf, len,
	         "warning: the NVIDIA driver %s is too old for this environment's CUDA %s (%s): "
	         "it needs >= %s%s%s%s",
	         drv.version, need.release, need.source,
	         chk.required[0] ? chk.required : chk.compat, both ? ", or >= " : "",
	         both ? chk.compat : "", both ? " with minor-version compatibility" : "");
	return 1;
}
