// SPDX-License-Identifier: MIT
/*
 * Lock files: every lock fixture (with package counts and a few packages each), one
 * solved set written in every form (explicit, pinned environment.yml, conda-lock.yml,
 * pixi.lock v5/v6/v7, a conda-meta prefix) naming one hash, what must not change that
 * hash, and the refusals: files that are not locks, malformed locks, wrong platforms.
 */
#include "condafs/store.h"
#include "pkgset.h"
#include "test.h"
#include "testfs.h"

#include <dirent.h>
#include <errno.h>

static char *tmp;

#define CH   "https://channel.example.invalid/conda-forge"
#define PYPI "https://files.example.invalid/packages"

#define MD5_MUTEX    "d7c89558ba9fa0495403155b64376d81"
#define MD5_PYTHON   "c2f3b3a6dbd0ab2fd9ee7e8e8cd5a7a3"
#define SHA_ZLIB     "5ced96500d945fb286c9c838e54fa759aa04a7129c59800f0846b4335cee770d"
#define SHA_TZDATA   "7b2b69c54ec62a243eb6fba2391b5e443421608c3ae5dbff938ad33ca8db5122"
#define MD5_PIP      "f586ac1e56c8638b64f9c8122a7b8a67"
#define SHA_CHARSET  "90d558489962fd4918143277a773316e56c72da56ec7aa3dc3dbbe20fdfed15b"
#define SHA_REQUESTS "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f"

static void check_msg(const char *msg, const char *want)
{
	test_checks++;
	if (!strstr(msg, want)) {
		test_failures++;
		fprintf(stderr, "message \"%s\" lacks \"%s\"\n", msg, want);
	}
}

static const struct pkg *find(const struct pkgset *set, enum pkg_kind kind, const char *name)
{
	for (size_t i = 0; set && i < pkgset_count(set); i++) {
		const struct pkg *p = pkgset_at(set, i);

		if (p->kind == kind && strcmp(p->name, name) == 0)
			return p;
	}
	return NULL;
}

/* The package is there with this version and build (NULL for pypi). */
static void check_pkg(const struct pkgset *set, enum pkg_kind kind, const char *name,
                      const char *version, const char *build)
{
	const struct pkg *p = find(set, kind, name);

	test_checks++;
	if (!p || strcmp(p->version, version) != 0 ||
	    (build ? !p->build || strcmp(p->build, build) != 0 : p->build != NULL)) {
		test_failures++;
		fprintf(stderr, "package %s %s %s: found %s %s\n", name, version,
		        build ? build : "", p ? p->version : "(none)",
		        p && p->build ? p->build : "");
	}
}

static char *fixture(const char *rel)
{
	char *sub, *path;

	if (asprintf(&sub, "conda/lockfiles/%s", rel) < 0)
		return NULL;
	path = testfs_fixture(sub);
	free(sub);
	return path;
}

static struct pkgset *load(const char *path, const char *platform, const char *env)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;

	if (pkgset_from_lock(path, platform, env, &set, &err) < 0) {
		test_failures++;
		fprintf(stderr, "%s: unexpected error: %s\n", path, err.msg);
		return NULL;
	}
	return set;
}

static struct pkgset *load_fixture(const char *rel, const char *platform, const char *env)
{
	char *path = fixture(rel);
	struct pkgset *set = load(path, platform, env);

	free(path);
	return set;
}

/* ---- every fixture ---- */

static const struct {
	const char *file;
	const char *platform, *env;
	int rc;
	const char *want; /* the set's platform, or a part of the error */
	size_t count;
} fixtures[] = {
        {"conda-lock/conda-lock-v1.schema.json", NULL, NULL, -EINVAL, "not a lock: a JSON Schema",
         0},
        {"conda-lock/conda-lock.yml", "linux-64", NULL, 0, "linux-64", 28},
        {"conda-lock/conda-lock.yml", "linux-aarch64", NULL, 0, "linux-aarch64", 27},
        {"conda-lock/conda-lock.yml", "osx-64", NULL, -EINVAL,
         "platform osx-64 is not in the lock (it has linux-64, linux-aarch64)", 0},
        {"conda-lock/good_multiple_packages-lock.yaml", "linux-64", NULL, 0, "linux-64", 8},
        {"conda-lock/good_multiple_packages-lock.yaml", "osx-64", NULL, 0, "osx-64", 2},
        {"conda-lock/good_multiple_packages-lock.yaml", "win-64", NULL, 0, "win-64", 5},
        {"conda-lock/python-conda-lock.yml", "linux-64", NULL, 0, "linux-64", 22},
        {"conda-lock/python-conda-lock.yml", "linux-aarch64", NULL, 0, "linux-aarch64", 21},
        {"conda-lock/python-conda-lock.yml", "linux-ppc64le", NULL, 0, "linux-ppc64le", 22},
        {"conda-lock/python-conda-lock.yml", "osx-64", NULL, 0, "osx-64", 15},
        {"conda-lock/python-conda-lock.yml", "osx-arm64", NULL, 0, "osx-arm64", 15},
        {"conda-lock/python-conda-lock.yml", "win-64", NULL, 0, "win-64", 16},
        {"environment-yml/environment.yml", NULL, NULL, -EINVAL,
         "environment.yml: not a lock: 'idna' is not pinned to name=version=build", 0},
        {"environment-yml/environment_with_pip.yml", NULL, NULL, -EINVAL,
         "environment_with_pip.yml: not a lock: 'pip' is not pinned to name=version=build", 0},
        {"explicit/conda-linux-64.lock", NULL, NULL, 0, "linux-64", 6},
        {"explicit/conda-linux-64.lock", "osx-64", NULL, -EINVAL,
         "conda-linux-64.lock: a lock for linux-64, not for osx-64", 0},
        {"explicit/explicit-env-linux-64.txt", NULL, NULL, 0, "linux-64", 22},
        {"explicit/explicit.txt", NULL, NULL, 0, "linux-64", 2},
        {"explicit/explicit_env_linux.txt", NULL, NULL, 0, "linux-64", 15},
        {"explicit/minrk_environment.py-3.9-linux-64.lock", NULL, NULL, 0, "linux-64", 170},
        {"explicit/xtensor_linux-64.txt", "linux-64", NULL, 0, "linux-64", 7},
        {"pixi-lock/v5-flat-index-lock.yml", NULL, NULL, 0, "osx-arm64", 18},
        {"pixi-lock/v5-pypi-deps-not-in-lock/pixi.lock", NULL, "default", 0, "linux-64", 24},
        {"pixi-lock/v6-deps_add/pixi.lock", "linux-64", NULL, 0, "linux-64", 23},
        {"pixi-lock/v6-deps_add/pixi.lock", "osx-arm64", NULL, 0, "osx-arm64", 16},
        {"pixi-lock/v6-deps_add/pixi.lock", "win-64", NULL, 0, "win-64", 17},
        {"pixi-lock/v6-deps_add/pixi.lock", "linux-aarch64", NULL, -EINVAL,
         "environment 'default' has no platform 'linux-aarch64' (it has: linux-64, osx-arm64, "
         "win-64)",
         0},
        {"pixi-lock/v6-deps_add/pixi.lock", "linux-64", "test", -EINVAL,
         "no environment 'test' in the lock (it has: default)", 0},
        {"pixi-lock/v6-mixed-pypi-conda/pixi.lock", NULL, NULL, 0, "win-64", 4},
        {"pixi-lock/v6-python-from-conda-only-lock.yml", NULL, NULL, 0, "osx-arm64", 19},
        {"pixi-lock/v6-source-dependency/pixi.lock", NULL, NULL, 0, "linux-64", 1},
        {"pixi-lock/v7-conditional-dependency-cuda/pixi.lock", "linux-64", NULL, 0, "linux-64", 1},
        /* a named platform; the set is for its subdir */
        {"pixi-lock/v7-conditional-dependency-cuda/pixi.lock", "linux-64-cuda", NULL, 0, "linux-64",
         2},
        {"pixi-lock/v7-python-from-conda-only-lock.yml", NULL, NULL, 0, "osx-arm64", 19},
};

static void test_fixture_table(void)
{
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		struct cfs_err err = {{0}};
		struct pkgset *set = NULL;
		char *path = fixture(fixtures[i].file);
		int r = pkgset_from_lock(path, fixtures[i].platform, fixtures[i].env, &set, &err);

		test_checks++;
		if (r != fixtures[i].rc) {
			test_failures++;
			fprintf(stderr, "%s (%s): rc %d, want %d: %s\n", fixtures[i].file,
			        fixtures[i].platform ? fixtures[i].platform : "-", r,
			        fixtures[i].rc, err.msg);
		} else if (r == 0) {
			CHECK_STR(pkgset_platform(set), fixtures[i].want);
			CHECK(pkgset_platform_choices(set) == NULL);
			test_checks++;
			if (pkgset_count(set) != fixtures[i].count) {
				test_failures++;
				fprintf(stderr, "%s (%s): %zu packages, want %zu\n",
				        fixtures[i].file,
				        fixtures[i].platform ? fixtures[i].platform : "-",
				        pkgset_count(set), fixtures[i].count);
			}
		} else {
			check_msg(err.msg, fixtures[i].want);
			/* one line, naming the file */
			CHECK(!strchr(err.msg, '\n'));
			CHECK(strstr(err.msg, strrchr(fixtures[i].file, '/') + 1) != NULL);
		}
		pkgset_free(set);
		free(path);
	}
}

static bool host_is_linux64(void)
{
	const char *host = pkgset_host_platform();

	return host && strcmp(host, "linux-64") == 0;
}

/* Locks for several platforms read with none asked for take this machine's, as conda-lock
 * and pixi install (on linux-64, where the tests run; elsewhere these are skipped). */
static const struct {
	const char *file;
	size_t count;
	const char *choices;
} host_rows[] = {
        {"conda-lock/conda-lock.yml", 28, "linux-64, linux-aarch64"},
        {"conda-lock/good_multiple_packages-lock.yaml", 8, "linux-64, osx-64, win-64"},
        {"pixi-lock/v6-deps_add/pixi.lock", 23, "linux-64, osx-arm64, win-64"},
        {"pixi-lock/v7-conditional-dependency-cuda/pixi.lock", 1, "linux-64, linux-64-cuda"},
};

static void test_host_rows(void)
{
	if (!host_is_linux64())
		return;
	for (size_t i = 0; i < sizeof(host_rows) / sizeof(host_rows[0]); i++) {
		struct pkgset *set = load_fixture(host_rows[i].file, NULL, NULL);

		CHECK(set != NULL);
		if (!set)
			continue;
		CHECK_STR(pkgset_platform(set), "linux-64");
		CHECK(pkgset_count(set) == host_rows[i].count);
		CHECK(pkgset_platform_choices(set) != NULL);
		if (pkgset_platform_choices(set))
			CHECK_STR(pkgset_platform_choices(set), host_rows[i].choices);
		pkgset_free(set);
	}
}

/* Every file under the lockfiles fixtures has a row above: a new fixture cannot go
 * untested. */
static void walk_fixtures(const char *dir, const char *rel)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	CHECK(d != NULL);
	while (d && (de = readdir(d))) {
		char *path, *sub;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		path = testfs_path(dir, "%s", de->d_name);
		if (asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0)
			testfs_die("asprintf", de->d_name);
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			walk_fixtures(path, sub);
		} else {
			bool listed = false;

			for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
				listed |= strcmp(fixtures[i].file, sub) == 0;
			test_checks++;
			if (!listed) {
				test_failures++;
				fprintf(stderr, "fixture %s is not tested\n", sub);
			}
		}
		free(sub);
		free(path);
	}
	if (d)
		closedir(d);
}

static void test_fixture_contents(void)
{
	struct pkgset *set, *set2;
	const struct pkg *p;
	char h1[33], h2[33];

	set = load_fixture("explicit/conda-linux-64.lock", NULL, NULL);
	check_pkg(set, PKG_CONDA, "zlib", "1.2.11", "h36c2ea0_1013");
	check_pkg(set, PKG_CONDA, "_openmp_mutex", "4.5", "1_gnu");
	p = find(set, PKG_CONDA, "zlib");
	CHECK(p && p->md5 && strcmp(p->md5, "cf7190238072a41e9579e4476a6a60b8") == 0);
	CHECK(p && p->sha256 == NULL);
	CHECK(p && p->subdir && strcmp(p->subdir, "linux-64") == 0);
	CHECK(p && p->channel && strncmp(p->channel, "https://", 8) == 0 &&
	      strcmp(p->channel + strlen(p->channel) - 12, "/conda-forge") == 0);
	pkgset_free(set);

	/* no "# platform:" header: the packages' subdir says it */
	set = load_fixture("explicit/explicit.txt", NULL, NULL);
	check_pkg(set, PKG_CONDA, "ca-certificates", "2025.2.25", "h06a4308_0");
	p = find(set, PKG_CONDA, "_libgcc_mutex");
	CHECK(p && !p->md5 && !p->sha256);
	CHECK(p && p->channel && strcmp(p->channel + strlen(p->channel) - 10, "/pkgs/main") == 0);
	pkgset_free(set);

	set = load_fixture("explicit/minrk_environment.py-3.9-linux-64.lock", NULL, NULL);
	check_pkg(set, PKG_CONDA, "python", "3.9.23", "hc30ae73_0_cpython");
	check_pkg(set, PKG_CONDA, "tk", "8.6.13", "noxft_hd72426e_102");
	check_pkg(set, PKG_CONDA, "libedit", "3.1.20250104", "pl5321h7949ede_0");
	/* conda names are not normalised: both spellings are distinct packages */
	check_pkg(set, PKG_CONDA, "typing_extensions", "4.14.1", "pyhe01879c_0");
	check_pkg(set, PKG_CONDA, "typing-extensions", "4.14.1", "h4440ef1_0");
	p = find(set, PKG_CONDA, "tzdata");
	CHECK(p && p->subdir && strcmp(p->subdir, "noarch") == 0);
	pkgset_free(set);

	set = load_fixture("explicit/explicit_env_linux.txt", NULL, NULL);
	check_pkg(set, PKG_CONDA, "python", "3.9.5", "hdb3f193_3");
	pkgset_free(set);

	set = load_fixture("conda-lock/conda-lock.yml", "linux-64", NULL);
	check_pkg(set, PKG_CONDA, "bzip2", "1.0.8", "hd590300_5");
	check_pkg(set, PKG_CONDA, "idna", "3.4", "pyhd8ed1ab_0");
	check_pkg(set, PKG_PYPI, "requests", "2.31.0", NULL);
	check_pkg(set, PKG_PYPI, "charset-normalizer", "3.3.2", NULL);
	p = find(set, PKG_PYPI, "requests");
	CHECK(p && p->sha256 && strcmp(p->sha256, SHA_REQUESTS) == 0 && !p->channel);
	p = find(set, PKG_CONDA, "bzip2");
	CHECK(p && p->md5 && strcmp(p->md5, "69b8b6202a07720f448be700e300ccf4") == 0);
	CHECK(p && p->sha256 &&
	      strcmp(p->sha256,
	             "242c0c324507ee172c0e0dd2045814e746bb303d1eb78870d182ceb0abc726a8") == 0);
	pkgset_free(set);
	set = load_fixture("conda-lock/conda-lock.yml", "linux-aarch64", NULL);
	check_pkg(set, PKG_CONDA, "bzip2", "1.0.8", "h31becfc_5");
	check_pkg(set, PKG_CONDA, "ld_impl_linux-aarch64", "2.40", "h2d8c526_0");
	CHECK(find(set, PKG_CONDA, "ld_impl_linux-64") == NULL);
	pkgset_free(set);

	/* "version: 1" last, as older conda-lock wrote it */
	set = load_fixture("conda-lock/good_multiple_packages-lock.yaml", "linux-64", NULL);
	check_pkg(set, PKG_PYPI, "starlette", "0.17.1", NULL);
	check_pkg(set, PKG_PYPI, "uvicorn", "0.17.6", NULL);
	check_pkg(set, PKG_CONDA, "libgomp", "11.2.0", "h1d223b6_13");
	pkgset_free(set);
	set = load_fixture("conda-lock/python-conda-lock.yml", "win-64", NULL);
	check_pkg(set, PKG_CONDA, "python", "3.11.0", "hcf16a7b_0_cpython");
	pkgset_free(set);

	set = load_fixture("pixi-lock/v5-flat-index-lock.yml", NULL, NULL);
	check_pkg(set, PKG_CONDA, "python", "3.12.0", "h47c9636_0_cpython");
	/* a wheel from a local find-links path */
	check_pkg(set, PKG_PYPI, "requests", "2.31.0", NULL);
	check_pkg(set, PKG_PYPI, "charset-normalizer", "3.3.2", NULL);
	/* the archive's size, which orders downloads (0: not given) */
	p = find(set, PKG_CONDA, "bzip2");
	CHECK(p && p->size == 122325);
	pkgset_free(set);

	/* v6: name, version and build come from the file name */
	set = load_fixture("pixi-lock/v6-mixed-pypi-conda/pixi.lock", NULL, NULL);
	check_pkg(set, PKG_CONDA, "flask", "3.1.0", "pyhd8ed1ab_1");
	check_pkg(set, PKG_CONDA, "python", "3.13.3", "h261c0b1_101");
	check_pkg(set, PKG_PYPI, "boltons", "25.0.0", NULL);
	check_pkg(set, PKG_PYPI, "sdist", "0.0.0", NULL);
	p = find(set, PKG_CONDA, "flask");
	CHECK(p && p->subdir && strcmp(p->subdir, "noarch") == 0);
	CHECK(p && p->md5 && strcmp(p->md5, "2da939620e3a741f61fc1cb136df66fb") == 0);
	CHECK(p && p->size == 0);
	pkgset_free(set);

	/* a source package: no hashes, no channel, an empty build */
	set = load_fixture("pixi-lock/v6-source-dependency/pixi.lock", NULL, NULL);
	check_pkg(set, PKG_CONDA, "child-package", "0.1.0", "");
	p = find(set, PKG_CONDA, "child-package");
	CHECK(p && !p->md5 && !p->sha256 && !p->channel);
	pkgset_free(set);

	set = load_fixture("pixi-lock/v7-conditional-dependency-cuda/pixi.lock", "linux-64-cuda",
	                   NULL);
	check_pkg(set, PKG_CONDA, "gpu-package", "1.0.0", "0");
	check_pkg(set, PKG_CONDA, "base-package", "1.0.0", "0");
	p = find(set, PKG_CONDA, "gpu-package");
	CHECK(p && p->md5 && strcmp(p->md5, "deadbeefdeadbeefdeadbeefdeadbeef") == 0);
	pkgset_free(set);

	/* one solution written as pixi.lock v6 and v7 */
	set = load_fixture("pixi-lock/v6-python-from-conda-only-lock.yml", NULL, NULL);
	set2 = load_fixture("pixi-lock/v7-python-from-conda-only-lock.yml", NULL, NULL);
	check_pkg(set, PKG_CONDA, "python", "3.13.0", "hbbac1ca_101_cp313");
	if (set && set2) {
		struct cfs_err err = {{0}};

		pkgset_hash(set, h1);
		pkgset_hash(set2, h2);
		CHECK_STR(h1, h2);
		CHECK(pkgset_match(set, set2, &err) == 0);
	}
	pkgset_free(set);
	pkgset_free(set2);

	/* two real solves of one spec a few weeks apart: named apart, and match says why */
	set = load_fixture("explicit/explicit-env-linux-64.txt", NULL, NULL);
	set2 = load_fixture("conda-lock/python-conda-lock.yml", "linux-64", NULL);
	if (set && set2) {
		struct cfs_err err = {{0}};

		pkgset_hash(set, h1);
		pkgset_hash(set2, h2);
		CHECK(strcmp(h1, h2) != 0);
		CHECK(pkgset_match(set, set2, &err) == -EINVAL);
		check_msg(err.msg, "pip: 23.0 pyhd8ed1ab_0 in the environment, 23.0.1 pyhd8ed1ab_0 "
		                   "in the lock");
		check_msg(err.msg, "setuptools: 67.1.0 pyhd8ed1ab_0 in the environment, 67.4.0 "
		                   "pyhd8ed1ab_0 in the lock");
	}
	pkgset_free(set);
	pkgset_free(set2);
}

/* ---- one set, every form ---- */

/* The inputs are laid out as the files they stand for. */
// clang-format off
#define U_MUTEX   CH "/linux-64/_libgcc_mutex-0.1-conda_forge.tar.bz2"
#define U_PYTHON  CH "/linux-64/python-3.12.1-hab00c5b_1_cpython.conda"
#define U_ZLIB    CH "/linux-64/zlib-1.3.1-h4ab18f5_1.conda"
#define U_TZDATA  CH "/noarch/tzdata-2024a-h0c530f3_0.conda"
#define U_PIP     CH "/noarch/pip-24.0-pyhd8ed1ab_0.conda"
#define W_CHARSET PYPI "/charset_normalizer-3.3.2-py3-none-any.whl"
#define W_REQUESTS PYPI "/requests-2.31.0-py3-none-any.whl"

static const char explicit_a[] =
	"# This file may be used to create an environment using:\n"
	"# $ conda create --name <env> --file <this file>\n"
	"# platform: linux-64\n"
	"@EXPLICIT\n"
	U_MUTEX "#" MD5_MUTEX "\n"
	U_PYTHON "#" MD5_PYTHON "\n"
	U_ZLIB "#sha256:" SHA_ZLIB "\n"
	U_TZDATA "#" SHA_TZDATA "\n"
	U_PIP "#" MD5_PIP "\n"
	"# pip charset-normalizer @ " PYPI "/charset_normalizer-3.3.2-cp312-cp312-"
	"manylinux_2_17_x86_64.whl#sha256=" SHA_CHARSET "\n"
	"# pip requests @ " PYPI "/requests-2.31.0.tar.gz#sha256=" SHA_REQUESTS "\n";

/* Other order, other comments, CRLF, no platform header, no hashes. */
static const char explicit_b[] =
	"# written by hand\r\n"
	"\r\n"
	"@EXPLICIT\r\n"
	"# pip requests @ " W_REQUESTS "\r\n"
	U_PIP "\r\n"
	"   # indented comment\r\n"
	U_ZLIB "\r\n"
	U_TZDATA "\r\n"
	U_PYTHON "\r\n"
	"# pip Charset_Normalizer @ " PYPI "/charset_normalizer-3.3.2.zip\r\n"
	U_MUTEX "\r\n";

static const char envyml_a[] =
	"name: one\n"
	"channels:\n"
	"  - conda-forge\n"
	"dependencies:\n"
	"  - _libgcc_mutex=0.1=conda_forge\n"
	"  - python=3.12.1=hab00c5b_1_cpython\n"
	"  - zlib=1.3.1=h4ab18f5_1\n"
	"  - tzdata=2024a=h0c530f3_0\n"
	"  - pip=24.0=pyhd8ed1ab_0\n"
	"  - pip:\n"
	"    - charset-normalizer==3.3.2\n"
	"    - requests==2.31.0\n"
	"prefix: /opt/conda/envs/one\n";

static const char envyml_b[] =
	"# exported on another machine\n"
	"name: something-else\n"
	"dependencies:\n"
	"  - pip:\n"
	"      - Requests[socks] == 2.31.0\n"
	"      - charset_normalizer==3.3.2\n"
	"  - conda-forge::tzdata=2024a=h0c530f3_0\n"
	"  - " CH "::zlib=1.3.1=h4ab18f5_1   # a comment\n"
	"  - 'pip=24.0=pyhd8ed1ab_0'\n"
	"  - python=3.12.1=hab00c5b_1_cpython\n"
	"  - _libgcc_mutex=0.1=conda_forge\n"
	"variables:\n"
	"  A: b\n"
	"prefix: /home/someone/envs/else\n";

/* conda-lock.yml v1 with a second platform whose packages must be left out, and an
 * extras category `conda-lock install` leaves out by default. */
static const char condalock_a[] =
	"version: 1\n"
	"metadata:\n"
	"  content_hash: {linux-64: abc, osx-arm64: def}\n"
	"  channels: [{url: conda-forge, used_env_vars: []}]\n"
	"  platforms: [linux-64, osx-arm64]\n"
	"  sources: [environment.yml]\n"
	"package:\n"
	"- {name: _libgcc_mutex, version: '0.1', manager: conda, platform: linux-64,\n"
	"   dependencies: {}, url: '" U_MUTEX "',\n"
	"   hash: {md5: " MD5_MUTEX "}, category: main, optional: false}\n"
	"- name: python\n"
	"  version: 3.12.1\n"
	"  manager: conda\n"
	"  platform: linux-64\n"
	"  url: " U_PYTHON "\n"
	"  hash:\n"
	"    md5: " MD5_PYTHON "\n"
	"  category: main\n"
	"  optional: false\n"
	"- name: python\n"
	"  version: 3.12.1\n"
	"  manager: conda\n"
	"  platform: osx-arm64\n"
	"  url: " CH "/osx-arm64/python-3.12.1-hdf0ec26_1_cpython.conda\n"
	"  hash: {md5: 00000000000000000000000000000000}\n"
	"- {name: zlib, version: 1.3.1, manager: conda, platform: linux-64,\n"
	"   url: '" U_ZLIB "', hash: {sha256: " SHA_ZLIB "}}\n"
	"- {name: tzdata, version: 2024a, manager: conda, platform: linux-64,\n"
	"   url: '" U_TZDATA "', hash: {sha256: " SHA_TZDATA "}}\n"
	"- {name: pip, version: '24.0', manager: conda, platform: linux-64, category: main,\n"
	"   url: '" U_PIP "', hash: {md5: " MD5_PIP "}}\n"
	"- {name: charset-normalizer, version: 3.3.2, manager: pip, platform: linux-64,\n"
	"   url: '" W_CHARSET "', hash: {sha256: " SHA_CHARSET "}}\n"
	"- {name: requests, version: 2.31.0, manager: pip, platform: linux-64,\n"
	"   url: '" W_REQUESTS "', hash: {sha256: " SHA_REQUESTS "}}\n"
	"- {name: pytest, version: 8.0.0, manager: pip, platform: linux-64, category: test,\n"
	"   url: '" PYPI "/pytest-8.0.0-py3-none-any.whl', hash: {}, optional: true}\n";

/* The layout from before conda-lock wrote a version: one platform, keys sorted. */
static const char condalock_b[] =
	"metadata:\n"
	"  platforms:\n"
	"    - linux-64\n"
	"package:\n"
	"  - {manager: pip, name: requests, platform: linux-64, version: 2.31.0,\n"
	"     url: '" W_REQUESTS "'}\n"
	"  - {manager: pip, name: Charset-Normalizer, platform: linux-64, version: 3.3.2,\n"
	"     url: '" W_CHARSET "'}\n"
	"  - {manager: conda, name: _libgcc_mutex, platform: linux-64, version: '0.1',\n"
	"     url: '" U_MUTEX "'}\n"
	"  - {manager: conda, name: pip, platform: linux-64, version: '24.0',\n"
	"     url: '" U_PIP "'}\n"
	"  - {manager: conda, name: python, platform: linux-64, version: 3.12.1,\n"
	"     url: '" U_PYTHON "'}\n"
	"  - {manager: conda, name: tzdata, platform: linux-64, version: 2024a,\n"
	"     url: '" U_TZDATA "'}\n"
	"  - {manager: conda, name: zlib, platform: linux-64, version: 1.3.1,\n"
	"     url: '" U_ZLIB "'}\n";

static const char pixi_v5[] =
	"version: 5\n"
	"environments:\n"
	"  default:\n"
	"    channels:\n"
	"      - url: " CH "/\n"
	"    packages:\n"
	"      linux-64:\n"
	"        - conda: " U_MUTEX "\n"
	"        - conda: " U_PYTHON "\n"
	"        - conda: " U_ZLIB "\n"
	"        - conda: " U_TZDATA "\n"
	"        - conda: " U_PIP "\n"
	"        - pypi: " W_CHARSET "\n"
	"        - pypi: ./wheels/requests-2.31.0-py3-none-any.whl\n"
	"      osx-arm64:\n"
	"        - conda: " U_TZDATA "\n"
	"packages:\n"
	"  - kind: conda\n"
	"    name: _libgcc_mutex\n"
	"    version: '0.1'\n"
	"    build: conda_forge\n"
	"    subdir: linux-64\n"
	"    url: " U_MUTEX "\n"
	"    md5: " MD5_MUTEX "\n"
	"  - kind: pypi\n"
	"    name: charset-normalizer\n"
	"    version: 3.3.2\n"
	"    url: " W_CHARSET "\n"
	"    sha256: " SHA_CHARSET "\n"
	"  - kind: conda\n"
	"    name: pip\n"
	"    version: '24.0'\n"
	"    build: pyhd8ed1ab_0\n"
	"    subdir: noarch\n"
	"    noarch: python\n"
	"    url: " U_PIP "\n"
	"    md5: " MD5_PIP "\n"
	"  - kind: conda\n"
	"    name: python\n"
	"    version: 3.12.1\n"
	"    build: hab00c5b_1_cpython\n"
	"    subdir: linux-64\n"
	"    url: " U_PYTHON "\n"
	"    md5: " MD5_PYTHON "\n"
	"  - kind: pypi\n"
	"    name: requests\n"
	"    version: 2.31.0\n"
	"    path: ./wheels/requests-2.31.0-py3-none-any.whl\n"
	"  - kind: conda\n"
	"    name: tzdata\n"
	"    version: 2024a\n"
	"    build: h0c530f3_0\n"
	"    subdir: noarch\n"
	"    url: " U_TZDATA "\n"
	"    sha256: " SHA_TZDATA "\n"
	"  - kind: conda\n"
	"    name: zlib\n"
	"    version: 1.3.1\n"
	"    build: h4ab18f5_1\n"
	"    subdir: linux-64\n"
	"    url: " U_ZLIB "\n"
	"    sha256: " SHA_ZLIB "\n";

/* v6 and v7 records carry hashes only; name, version and build are in the URL. */
#define PIXI_V6_V7_RECORDS                       \
	"packages:\n"                            \
	"- conda: " U_MUTEX "\n"                 \
	"  md5: " MD5_MUTEX "\n"                 \
	"- pypi: " W_CHARSET "\n"                \
	"  name: charset-normalizer\n"           \
	"  version: 3.3.2\n"                     \
	"  sha256: " SHA_CHARSET "\n"            \
	"- conda: " U_PIP "\n"                   \
	"  md5: " MD5_PIP "\n"                   \
	"- conda: " U_PYTHON "\n"                \
	"  md5: " MD5_PYTHON "\n"                \
	"- pypi: " W_REQUESTS "\n"               \
	"  name: requests\n"                     \
	"  version: 2.31.0\n"                    \
	"  sha256: " SHA_REQUESTS "\n"           \
	"- conda: " U_TZDATA "\n"                \
	"  sha256: " SHA_TZDATA "\n"             \
	"- conda: " U_ZLIB "\n"                  \
	"  sha256: " SHA_ZLIB "\n"

#define PIXI_V6_V7_LIST                          \
	"      - conda: " U_TZDATA "\n"          \
	"      - conda: " U_ZLIB "\n"            \
	"      - conda: " U_PYTHON "\n"          \
	"      - conda: " U_PIP "\n"             \
	"      - conda: " U_MUTEX "\n"           \
	"      - pypi: " W_REQUESTS "\n"         \
	"      - pypi: " W_CHARSET "\n"

/* v6 with a second environment. */
static const char pixi_v6[] =
	"version: 6\n"
	"environments:\n"
	"  default:\n"
	"    channels:\n"
	"    - url: " CH "/\n"
	"    packages:\n"
	"      linux-64:\n"
	PIXI_V6_V7_LIST
	"  lint:\n"
	"    channels:\n"
	"    - url: " CH "/\n"
	"    packages:\n"
	"      linux-64:\n"
	"      - conda: " U_ZLIB "\n"
	"      linux-aarch64:\n"
	"      - conda: " U_TZDATA "\n"
	PIXI_V6_V7_RECORDS;

/* v7 names its platforms; this one is "gnu64", for subdir linux-64. */
static const char pixi_v7[] =
	"version: 7\n"
	"platforms:\n"
	"- name: gnu64\n"
	"  subdir: linux-64\n"
	"- name: osx-arm64\n"
	"environments:\n"
	"  default:\n"
	"    channels:\n"
	"    - url: " CH "/\n"
	"    packages:\n"
	"      gnu64:\n"
	PIXI_V6_V7_LIST
	"      osx-arm64:\n"
	"      - conda: " U_TZDATA "\n"
	PIXI_V6_V7_RECORDS;
// clang-format on

/* A conda-meta record as conda writes it. */
static void write_record(const char *prefix, const char *name, const char *version,
                         const char *build, const char *subdir, const char *fn, const char *md5,
                         const char *sha256, const char *files, const char *paths)
{
	char *json;

	if (asprintf(&json,
	             "{\n"
	             "  \"build\": \"%s\",\n"
	             "  \"build_number\": 1,\n"
	             "  \"channel\": \"" CH "/%s\",\n"
	             "  \"files\": [%s],\n"
	             "  \"fn\": \"%s\",\n"
	             "  \"link\": {\"source\": \"/opt/conda/pkgs/x\", \"type\": 1},\n"
	             "  %s%s%s\n"
	             "  \"name\": \"%s\",\n"
	             "  \"paths_data\": {\"paths\": [%s], \"paths_version\": 1},\n"
	             "  \"requested_spec\": \"None\",\n"
	             "  %s%s%s\n"
	             "  \"subdir\": \"%s\",\n"
	             "  \"timestamp\": 1700000000,\n"
	             "  \"url\": \"" CH "/%s/%s\",\n"
	             "  \"version\": \"%s\"\n"
	             "}\n",
	             build, subdir, files, fn, md5 ? "\"md5\": \"" : "", md5 ? md5 : "",
	             md5 ? "\"," : "", name, paths, sha256 ? "\"sha256\": \"" : "",
	             sha256 ? sha256 : "", sha256 ? "\"," : "", subdir, subdir, fn, version) < 0)
		testfs_die("asprintf", name);
	testfs_write(prefix, json, "conda-meta/%s-%s-%s.json", name, version, build);
	free(json);
}

/* The same set as a prefix: conda records, a history, pip's own dist-info owned by the
 * pip record, and two pip-installed packages (one without METADATA). */
static char *make_prefix(const char *name)
{
	char *prefix = testfs_path(tmp, "%s", name);

	testfs_write(prefix, "==> 2024-01-01 00:00:00 <==\n# cmd: conda create\n",
	             "conda-meta/history");
	write_record(prefix, "_libgcc_mutex", "0.1", "conda_forge", "linux-64",
	             "_libgcc_mutex-0.1-conda_forge.tar.bz2", MD5_MUTEX, NULL, "", "");
	write_record(prefix, "python", "3.12.1", "hab00c5b_1_cpython", "linux-64",
	             "python-3.12.1-hab00c5b_1_cpython.conda", MD5_PYTHON, NULL,
	             "\"bin/python3.12\", \"lib/python3.12/os.py\"",
	             "{\"_path\": \"bin/python3.12\", \"path_type\": \"hardlink\", "
	             "\"file_mode\": \"binary\", \"prefix_placeholder\": "
	             "\"/home/conda/feedstock_root/build_artifacts/python_1/_h_env_placehold\"}");
	write_record(prefix, "zlib", "1.3.1", "h4ab18f5_1", "linux-64",
	             "zlib-1.3.1-h4ab18f5_1.conda", NULL, SHA_ZLIB, "\"lib/libz.so.1\"", "");
	write_record(prefix, "tzdata", "2024a", "h0c530f3_0", "noarch",
	             "tzdata-2024a-h0c530f3_0.conda", NULL, SHA_TZDATA, "", "");
	write_record(prefix, "pip", "24.0", "pyhd8ed1ab_0", "noarch", "pip-24.0-pyhd8ed1ab_0.conda",
	             MD5_PIP, NULL,
	             "\"lib/python3.12/site-packages/pip-24.0.dist-info/METADATA\", "
	             "\"lib/python3.12/site-packages/pip/__init__.py\"",
	             "{\"_path\": \"site-packages/pip-24.0.dist-info/METADATA\"}");
	testfs_write(prefix, "Metadata-Version: 2.1\nName: pip\nVersion: 24.0\n\n",
	             "lib/python3.12/site-packages/pip-24.0.dist-info/METADATA");
	testfs_write(prefix, "", "lib/python3.12/site-packages/pip/__init__.py");
	testfs_write(prefix,
	             "Metadata-Version: 2.1\r\nName: charset-normalizer\r\nVersion: 3.3.2\r\n"
	             "Summary: x\r\n\r\nName: not-this\r\n",
	             "lib/python3.12/site-packages/charset_normalizer-3.3.2.dist-info/METADATA");
	testfs_write(prefix, "pip\n",
	             "lib/python3.12/site-packages/requests-2.31.0.dist-info/INSTALLER");
	return prefix;
}

static void write_tmp(const char *name, const char *text)
{
	testfs_write(tmp, text, "%s", name);
}

static struct pkgset *load_tmp(const char *name, const char *platform, const char *env)
{
	char *path = testfs_path(tmp, "%s", name);
	struct pkgset *set = load(path, platform, env);

	free(path);
	return set;
}

static void test_one_set_every_form(void)
{
	static const struct {
		const char *file, *text, *platform, *env;
	} forms[] = {
	        {"explicit-a.txt", explicit_a, NULL, NULL},
	        {"explicit-b.txt", explicit_b, NULL, NULL},
	        {"environment.yml", envyml_a, "linux-64", NULL},
	        {"env-other.yaml", envyml_b, "linux-64", NULL},
	        {"conda-lock.yml", condalock_a, "linux-64", NULL},
	        {"old-conda-lock.yml", condalock_b, NULL, NULL},
	        {"v5.lock", pixi_v5, "linux-64", NULL},
	        {"pixi.lock", pixi_v6, NULL, "default"},
	        {"v7.lock", pixi_v7, "gnu64", NULL},
	};
	struct pkgset *sets[sizeof(forms) / sizeof(forms[0])];
	struct pkgset *prefix1 = NULL, *prefix2 = NULL;
	struct cfs_err err = {{0}};
	char want[33], got[33];
	char *p1 = make_prefix("prefix-one"), *p2 = make_prefix("elsewhere/deeper/prefix-two");

	CHECK(pkgset_from_prefix(p1, &prefix1, &err) == 0);
	CHECK(pkgset_from_prefix(p2, &prefix2, &err) == 0);
	if (!prefix1 || !prefix2) {
		fprintf(stderr, "prefix: %s\n", err.msg);
		return;
	}
	CHECK(pkgset_count(prefix1) == 7);
	CHECK_STR(pkgset_platform(prefix1), "linux-64");
	check_pkg(prefix1, PKG_PYPI, "charset-normalizer", "3.3.2", NULL);
	check_pkg(prefix1, PKG_PYPI, "requests", "2.31.0", NULL);
	CHECK(find(prefix1, PKG_PYPI, "pip") == NULL);
	pkgset_hash(prefix1, want);
	pkgset_hash(prefix2, got);
	CHECK_STR(got, want);

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		write_tmp(forms[i].file, forms[i].text);
		sets[i] = load_tmp(forms[i].file, forms[i].platform, forms[i].env);
		if (!sets[i])
			continue;
		pkgset_hash(sets[i], got);
		test_checks++;
		if (strcmp(got, want) != 0 || pkgset_count(sets[i]) != 7) {
			test_failures++;
			fprintf(stderr, "%s: hash %s (%zu packages), the prefix's %s\n",
			        forms[i].file, got, pkgset_count(sets[i]), want);
		}
		/* and where both carry channels and hashes, they agree */
		test_checks++;
		if (pkgset_match(prefix1, sets[i], &err) != 0) {
			test_failures++;
			fprintf(stderr, "%s: %s\n", forms[i].file, err.msg);
		}
		CHECK_STR(pkgset_platform(sets[i]), "linux-64");
	}

	/* environment.yml names no platform: the host's */
	if (pkgset_host_platform() && strcmp(pkgset_host_platform(), "linux-64") == 0) {
		struct pkgset *host = load_tmp("environment.yml", NULL, NULL);

		if (host) {
			pkgset_hash(host, got);
			CHECK_STR(got, want);
		}
		pkgset_free(host);
	}

	/* the lint environment of the v6 lock is another set */
	{
		struct pkgset *lint = load_tmp("pixi.lock", "linux-64", "lint");

		CHECK(pkgset_count(lint) == 1);
		check_pkg(lint, PKG_CONDA, "zlib", "1.3.1", "h4ab18f5_1");
		pkgset_free(lint);
	}

	/* the prefix and a lock that disagree on an md5 */
	{
		char *bad = strdup(explicit_a);
		char *at = strstr(bad, MD5_PYTHON);

		memcpy(at, "ffffffff", 8);
		write_tmp("explicit-bad-md5.txt", bad);
		free(bad);
		struct pkgset *set = load_tmp("explicit-bad-md5.txt", NULL, NULL);

		CHECK(pkgset_match(prefix1, set, &err) == -EINVAL);
		check_msg(err.msg, "python: md5 " MD5_PYTHON " in the environment, ffffffff");
		pkgset_free(set);
	}

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		pkgset_free(sets[i]);
	pkgset_free(prefix1);
	pkgset_free(prefix2);
	free(p1);
	free(p2);
}

/* ---- refusals ---- */

static void check_refused(const char *file, const char *text, const char *platform, const char *env,
                          int want_rc, const char *want)
{
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	char *path = testfs_path(tmp, "%s", file);
	int r;

	if (text)
		write_tmp(file, text);
	r = pkgset_from_lock(path, platform, env, &set, &err);
	test_checks++;
	if (r != want_rc || set) {
		test_failures++;
		fprintf(stderr, "%s: rc %d, want %d (%s)\n", file, r, want_rc, err.msg);
	}
	check_msg(err.msg, want);
	CHECK(strncmp(err.msg, path, strlen(path)) == 0);
	CHECK(!strchr(err.msg, '\n'));
	pkgset_free(set);
	free(path);
}

/* A sparse file of size bytes at tmp/name. */
static void write_sparse(const char *name, off_t size)
{
	char *path = testfs_path(tmp, "%s", name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || ftruncate(fd, size) < 0)
		testfs_die("create", path);
	close(fd);
	free(path);
}

static void test_refusals(void)
{
	/* Far above any real lock: refused before it is read. */
	write_sparse("huge.lock", (16 << 20) + 1);
	check_refused("huge.lock", NULL, NULL, NULL, -EFBIG,
	              "huge.lock: 16777217 bytes is more than the 16777216");
	check_refused("export.txt",
	              "# This file may be used to create an environment using:\n"
	              "# $ conda create --name <env> --file <this file>\n"
	              "# platform: linux-64\n"
	              "_libgcc_mutex=0.1=conda_forge\n"
	              "python=3.12.1=hab00c5b_1_cpython\n"
	              "requests=2.31.0=pypi_0\n",
	              NULL, NULL, -EINVAL,
	              "export.txt: not a lock: `conda list --export` output (name=version=build "
	              "lines without @EXPLICIT)");
	check_refused(
	        "unpinned.yml",
	        "name: x\ndependencies:\n  - python=3.12.1=hab00c5b_1_cpython\n"
	        "  - numpy>=1.24\n",
	        "linux-64", NULL, -EINVAL,
	        "unpinned.yml: not a lock: 'numpy>=1.24' is not pinned to name=version=build");
	check_refused("unpinned2.yml", "dependencies:\n  - python=3.12\n", "linux-64", NULL,
	              -EINVAL, "not a lock: 'python=3.12' is not pinned");
	check_refused("unpinned3.yml", "dependencies:\n  - python==3.12.1=h_0\n", "linux-64", NULL,
	              -EINVAL, "not a lock: 'python==3.12.1=h_0' is not pinned");
	check_refused("unpinned4.yml", "dependencies:\n  - python=3.12.1=*_cpython\n", "linux-64",
	              NULL, -EINVAL, "not a lock: 'python=3.12.1=*_cpython' is not pinned");
	check_refused("unpinned-pip.yml",
	              "dependencies:\n  - pip=24.0=pyhd8ed1ab_0\n  - pip:\n    - requests>=2\n",
	              "linux-64", NULL, -EINVAL,
	              "not a lock: pip 'requests>=2' is not pinned to name==version");
	check_refused("pip-url.yml", "dependencies:\n  - pip:\n    - git+" PYPI "/requests.git\n",
	              "linux-64", NULL, -EINVAL, "is not pinned to name==version");
	check_refused("random.txt", "hello world\nthis is not a lock\n", NULL, NULL, -EINVAL,
	              "random.txt: not a lock: neither @EXPLICIT, environment.yml");
	check_refused("mapping.yml", "name: x\nchannels: [conda-forge]\n", NULL, NULL, -EINVAL,
	              "not a lock: neither");
	check_refused("empty.txt", "", NULL, NULL, -EINVAL,
	              "empty.txt: not a lock: the file is empty");
	check_refused("missing.txt", NULL, NULL, NULL, -ENOENT,
	              "missing.txt: No such file or directory");
	check_refused(
	        "bad.yml", "dependencies:\n  - a=1=b\n  - [unclosed, x\n  - c=1=d\n", NULL, NULL,
	        -EINVAL,
	        "bad.yml:5: invalid YAML: did not find expected ',' or ']' (while parsing a flow "
	        "sequence at line 3)");
	check_refused("bad-indent.yml", "version: 6\nenvironments:\n  default: {}\n packages: []\n",
	              NULL, NULL, -EINVAL, "bad-indent.yml:4: invalid YAML:");
	check_refused("bad.json", "{\"version\": 1,\n \"package\": [\n}\n", NULL, NULL, -EINVAL,
	              "bad.json:3: invalid JSON:");

	/* explicit files that are broken */
	check_refused("before.txt", "python=3.12\n@EXPLICIT\n" CH "/noarch/a-1-0.conda\n", NULL,
	              NULL, -EINVAL, "before.txt:1: 'python=3.12' comes before @EXPLICIT");
	check_refused("badhash.txt", "@EXPLICIT\n" CH "/noarch/a-1-0.conda#abc123\n", NULL, NULL,
	              -EINVAL, "badhash.txt:2: '#abc123' is neither an md5 nor a sha256");
	check_refused("badhex.txt",
	              "@EXPLICIT\n" CH "/noarch/a-1-0.conda#zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n",
	              NULL, NULL, -EINVAL, "badhex.txt:2: a: md5 'zzzz");
	check_refused("notpkg.txt", "@EXPLICIT\n" CH "/linux-64/python.conda\n", NULL, NULL,
	              -EINVAL,
	              "notpkg.txt:2: 'python.conda' is not <name>-<version>-<build>.conda");
	check_refused("nourl.txt", "@EXPLICIT\npython-3.12.1-h_0.conda\n", NULL, NULL, -EINVAL,
	              "nourl.txt:2: 'python-3.12.1-h_0.conda' is not a package URL");
	check_refused("mixed.txt",
	              "@EXPLICIT\n" CH "/linux-64/a-1-0.conda\n" CH "/osx-64/b-1-0.conda\n", NULL,
	              NULL, -EINVAL,
	              "mixed.txt:3: a package for osx-64 among packages for linux-64");
	check_refused("header.txt",
	              "# platform: osx-arm64\n@EXPLICIT\n" CH "/linux-64/a-1-0.conda\n", NULL, NULL,
	              -EINVAL,
	              "header.txt: '# platform: osx-arm64' but the packages are for linux-64");
	check_refused("twice.txt",
	              "@EXPLICIT\n" CH "/linux-64/a-1-0.conda\n" CH "/linux-64/a-2-0.conda\n", NULL,
	              NULL, -EINVAL, "twice.txt: a is listed twice (");
	check_refused("pipver.txt",
	              "@EXPLICIT\n# pip requests @ git+" PYPI "/requests.git#sha256=00\n", NULL,
	              NULL, -EINVAL, "pipver.txt:2: pip package requests: cannot tell its version");

	/* conda-lock.yml */
	check_refused("v2.yml", "version: 2\nmetadata: {platforms: [linux-64]}\npackage: []\n",
	              NULL, NULL, -EINVAL, "v2.yml:1: conda-lock.yml version 2 is not supported");
	check_refused("nameurl.yml",
	              "version: 1\nmetadata: {platforms: [linux-64]}\npackage:\n"
	              "- {name: zlib, version: 1.3.1, manager: conda, platform: linux-64,\n"
	              "   url: '" CH "/linux-64/zlib-1.2.13-h4ab18f5_1.conda'}\n",
	              NULL, NULL, -EINVAL, "nameurl.yml:4: zlib 1.3.1: url '");
	check_refused("manager.yml",
	              "version: 1\nmetadata: {platforms: [linux-64]}\npackage:\n"
	              "- {name: zlib, version: 1.3.1, manager: npm, platform: linux-64}\n",
	              NULL, NULL, -EINVAL, "manager.yml:4: manager 'npm' is neither conda nor pip");
	check_refused("typo.yml",
	              "metadata: {}\npackage:\n"
	              "- {name: zlib, version: 1.3.1, manager: conda, platform: linux-64,\n"
	              "   url: '" U_ZLIB "'}\n",
	              "linux64", NULL, -EINVAL, "typo.yml: no package in the lock is for linux64");
	check_refused("noplat.yml", "version: 1\nmetadata: {}\npackage: []\n", NULL, NULL, -EINVAL,
	              "noplat.yml: metadata.platforms is missing: give the platform");

	/* pixi.lock */
	check_refused("v4.lock", "version: 4\nenvironments: {}\npackages: []\n", NULL, NULL,
	              -EINVAL, "v4.lock: pixi.lock version 4 is not supported (5 to 7)");
	check_refused("norecord.lock",
	              "version: 6\nenvironments:\n  default:\n    packages:\n      linux-64:\n"
	              "      - conda: " CH "/linux-64/a-1-0.conda\npackages: []\n",
	              NULL, NULL, -EINVAL,
	              "norecord.lock:6: " CH "/linux-64/a-1-0.conda has no matching record");
	check_refused("noenv.lock", pixi_v6, "linux-64", "prod", -EINVAL,
	              "noenv.lock: no environment 'prod' in the lock (it has: default, lint)");
	check_refused("v7plat.lock", pixi_v7, NULL, NULL, -EINVAL,
	              "environment 'default' is for several platforms (gnu64, osx-arm64)");

	/* environment.yml with conda-lock's platforms list */
	check_refused("plats.yml", "platforms: [osx-64, osx-arm64]\ndependencies:\n  - a=1=b\n",
	              NULL, NULL, -EINVAL,
	              "plats.yml: it lists several platforms (osx-64, osx-arm64), not this "
	              "machine's");
	check_refused("plats2.yml", "platforms: [linux-64]\ndependencies:\n  - a=1=b\n", "win-64",
	              NULL, -EINVAL,
	              "plats2.yml: platform win-64 is not in its platforms (linux-64)");
	check_refused("nodeps.yml", "name: x\ndependencies: numpy\n", NULL, NULL, -EINVAL,
	              "nodeps.yml:2: not a lock: dependencies is not a list");
}

static void test_platform_from_file(void)
{
	struct pkgset *set;

	write_tmp("one-plat.yml", "platforms: [osx-arm64]\ndependencies:\n  - a=1=b\n");
	set = load_tmp("one-plat.yml", NULL, NULL);
	CHECK(set && strcmp(pkgset_platform(set), "osx-arm64") == 0);
	pkgset_free(set);

	/* all noarch and no header: the argument, else the host */
	write_tmp("noarch.txt", "@EXPLICIT\n" CH "/noarch/a-1-0.conda\n");
	set = load_tmp("noarch.txt", "win-64", NULL);
	CHECK(set && strcmp(pkgset_platform(set), "win-64") == 0);
	pkgset_free(set);
	set = load_tmp("noarch.txt", NULL, NULL);
	CHECK(set && strcmp(pkgset_platform(set), pkgset_host_platform()) == 0);
	pkgset_free(set);

	/* several platforms and none asked for: this machine's, as conda-lock and pixi
	 * install, and the set says it was taken among which */
	if (host_is_linux64()) {
		write_tmp("two-plat.yml", "platforms: [osx-arm64, linux-64]\ndependencies:\n"
		                          "  - a=1=b\n");
		set = load_tmp("two-plat.yml", NULL, NULL);
		CHECK(set && strcmp(pkgset_platform(set), "linux-64") == 0);
		CHECK(set && pkgset_platform_choices(set) &&
		      strcmp(pkgset_platform_choices(set), "osx-arm64, linux-64") == 0);
		pkgset_free(set);
		set = load_tmp("two-plat.yml", "osx-arm64", NULL);
		CHECK(set && pkgset_platform_choices(set) == NULL);
		pkgset_free(set);
		set = load_tmp("one-plat.yml", NULL, NULL);
		CHECK(set && pkgset_platform_choices(set) == NULL);
		pkgset_free(set);
	}
}

int main(void)
{
	char *root = fixture("");

	tmp = testfs_mkdtemp();
	test_fixture_table();
	test_host_rows();
	walk_fixtures(root, "");
	test_fixture_contents();
	test_one_set_every_form();
	test_refusals();
	test_platform_from_file();
	testfs_rmtree(tmp);
	free(tmp);
	free(root);
	return test_exit();
}
