// SPDX-License-Identifier: MIT
/*
 * pkgset: building a set (checks, normalisation, order, duplicates), the canonical hash
 * text and its XXH3-128 against a one-shot hash of the documented format, what the hash
 * ignores, pkgset_match's messages, and the shared naming helpers.
 */
#include "pkgset.h"
#include "test.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#define CH "https://channel.example.invalid/conda-forge"

static const struct pkg base[] = {
        {PKG_PYPI, "Charset_Normalizer", "3.3.2", NULL, NULL, NULL, NULL, NULL, NULL, 0},
        {PKG_CONDA, "zlib", "1.3.1", "h4ab18f5_1", CH "/linux-64/", NULL,
         "57D7DC60E9325E3DE37FF8DFFD18E814", NULL, NULL, 0},
        {PKG_CONDA, "python", "3.12.1", "hab00c5b_1_cpython", CH, "linux-64", NULL, NULL, NULL, 0},
        {PKG_CONDA, "tzdata", "2024a", "h0c530f3_0", "conda-forge", "noarch", NULL,
         "7b2b69c54ec62a243eb6fba2391b5e443421608c3ae5dbff938ad33ca8db5122", NULL, 0},
        {PKG_PYPI, "requests", "2.31.0", NULL, NULL, NULL, NULL, NULL, NULL, 0},
};
#define NBASE (sizeof(base) / sizeof(base[0]))

static const char canonical[] = "platform linux-64\n"
                                "conda python 3.12.1 hab00c5b_1_cpython\n"
                                "conda tzdata 2024a h0c530f3_0\n"
                                "conda zlib 1.3.1 h4ab18f5_1\n"
                                "pypi charset-normalizer 3.3.2\n"
                                "pypi requests 2.31.0\n";

/* A finished set from pkgs[order[0]], pkgs[order[1]], ... */
static struct pkgset *make(const char *platform, const struct pkg *pkgs, size_t n,
                           const size_t *order)
{
	struct cfs_err err = {{0}};
	struct pkgset *set;

	if (pkgset_new(&set) < 0)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (pkgset_add(set, &pkgs[order ? order[i] : i], "t", &err) < 0) {
			fprintf(stderr, "add: %s\n", err.msg);
			pkgset_free(set);
			return NULL;
		}
	if (pkgset_finish(set, platform, "t", &err) < 0) {
		fprintf(stderr, "finish: %s\n", err.msg);
		pkgset_free(set);
		return NULL;
	}
	return set;
}

static void hex128(const void *data, size_t len, char out[33])
{
	XXH128_hash_t h = XXH3_128bits(data, len);

	snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64, (uint64_t)h.low64);
}

/* pkgset_hash, or a recorded failure when make() failed. */
static void hash_of(const struct pkgset *set, char out[33])
{
	test_checks++;
	if (!set) {
		test_failures++;
		fprintf(stderr, "no set to hash\n");
		snprintf(out, 33, "(none)");
		return;
	}
	pkgset_hash(set, out);
}

static void test_build(void)
{
	struct pkgset *set = make("linux-64", base, NBASE, NULL);
	const struct pkg *p;

	CHECK(set != NULL);
	if (!set)
		return;
	CHECK_STR(pkgset_platform(set), "linux-64");
	CHECK(pkgset_count(set) == NBASE);
	/* conda first, then pypi; by name */
	CHECK_STR(pkgset_at(set, 0)->name, "python");
	CHECK_STR(pkgset_at(set, 1)->name, "tzdata");
	CHECK_STR(pkgset_at(set, 2)->name, "zlib");
	CHECK_STR(pkgset_at(set, 3)->name, "charset-normalizer");
	CHECK(pkgset_at(set, 3)->kind == PKG_PYPI);
	CHECK(pkgset_at(set, 3)->build == NULL);
	CHECK_STR(pkgset_at(set, 4)->name, "requests");
	CHECK(pkgset_at(set, 5) == NULL);
	p = pkgset_at(set, 2);
	CHECK_STR(p->md5, "57d7dc60e9325e3de37ff8dffd18e814");
	CHECK_STR(p->channel, CH);
	CHECK_STR(pkgset_at(set, 0)->channel, CH);
	CHECK_STR(pkgset_at(set, 0)->subdir, "linux-64");
	CHECK_STR(pkgset_at(set, 1)->channel, "conda-forge");
	pkgset_free(set);
}

/* The channel pkgset_add keeps for what a source wrote. */
static void check_channel(const char *written, const char *kept)
{
	const struct pkg p = {PKG_CONDA, "zlib", "1", "h_0", written, NULL, NULL, NULL, NULL, 0};
	struct pkgset *set = make("linux-64", &p, 1, NULL);

	CHECK_STR(set ? pkgset_at(set, 0)->channel : NULL, kept);
	pkgset_free(set);
}

static void test_channels(void)
{
	check_channel(CH, CH);
	check_channel(CH "/", CH);
	check_channel(CH "/linux-64", CH);
	check_channel(CH "/noarch/", CH);
	check_channel(CH "/osx-arm64//", CH);
	check_channel("conda-forge", "conda-forge");
	check_channel("conda-forge/win-64", "conda-forge");
	/* only a known subdir is stripped */
	check_channel(CH "/label/dev", CH "/label/dev");
	check_channel(CH "/linux-6", CH "/linux-6");
	check_channel("linux-64", "linux-64");
}

static void check_add_fails(struct pkg p, const char *want)
{
	struct cfs_err err = {{0}};
	struct pkgset *set;

	CHECK(pkgset_new(&set) == 0);
	CHECK(pkgset_add(set, &p, "lock.txt:3", &err) == -EINVAL);
	if (!strstr(err.msg, want)) {
		test_failures++;
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err.msg, want);
	}
	pkgset_free(set);
}

static void check_finish_fails(const char *platform, const struct pkg *pkgs, size_t n,
                               const char *want)
{
	struct cfs_err err = {{0}};
	struct pkgset *set;

	CHECK(pkgset_new(&set) == 0);
	for (size_t i = 0; i < n; i++)
		CHECK(pkgset_add(set, &pkgs[i], "t", &err) == 0);
	CHECK(pkgset_finish(set, platform, "env.yml", &err) == -EINVAL);
	if (!strstr(err.msg, want)) {
		test_failures++;
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err.msg, want);
	}
	pkgset_free(set);
}

static void test_refusals(void)
{
	check_add_fails(
	        (struct pkg){PKG_CONDA, "zlib", "1.3 1", "h_0", NULL, NULL, NULL, NULL, NULL, 0},
	        "lock.txt:3: zlib: '1.3 1' is not a version");
	check_add_fails((struct pkg){PKG_CONDA, "", "1", "h_0", NULL, NULL, NULL, NULL, NULL, 0},
	                "lock.txt:3: '' is not a package name");
	check_add_fails((struct pkg){PKG_CONDA, "zlib", "1", NULL, NULL, NULL, NULL, NULL, NULL, 0},
	                "zlib: '' is not a build string");
	check_add_fails(
	        (struct pkg){PKG_CONDA, "zlib", "1", "h\n0", NULL, NULL, NULL, NULL, NULL, 0},
	        "is not a build string");
	check_add_fails(
	        (struct pkg){PKG_PYPI, "idna", "3.7", "py_0", NULL, NULL, NULL, NULL, NULL, 0},
	        "idna: a pip package has no build string");
	check_add_fails(
	        (struct pkg){PKG_CONDA, "zlib", "1", "h_0", NULL, NULL, "abc", NULL, NULL, 0},
	        "zlib: md5 'abc' is not 32 hex digits");
	check_add_fails(
	        (struct pkg){PKG_CONDA, "zlib", "1", "h_0", NULL, NULL, NULL,
	                     "zz2b69c54ec62a243eb6fba2391b5e443421608c3ae5dbff938ad33ca8db5122",
	                     NULL, 0},
	        "is not 64 hex digits");

	const struct pkg dup[] = {
	        {PKG_CONDA, "zlib", "1.3.1", "h_0", NULL, NULL, NULL, NULL, NULL, 0},
	        {PKG_CONDA, "zlib", "1.2.13", "h_1", NULL, NULL, NULL, NULL, NULL, 0},
	};
	check_finish_fails("linux-64", dup, 2, "env.yml: zlib is listed twice (");
	/* PEP 503 makes these one name */
	const struct pkg pdup[] = {
	        {PKG_PYPI, "Typing_Extensions", "4.9.0", NULL, NULL, NULL, NULL, NULL, NULL, 0},
	        {PKG_PYPI, "typing.extensions", "4.9.0", NULL, NULL, NULL, NULL, NULL, NULL, 0},
	};
	check_finish_fails("linux-64", pdup, 2, "pypi:typing-extensions is listed twice");
	const struct pkg wrong[] = {
	        {PKG_CONDA, "zlib", "1.3.1", "h_0", NULL, "osx-64", NULL, NULL, NULL, 0},
	};
	check_finish_fails("linux-64", wrong, 1, "zlib is a package for osx-64, not for linux-64");
	check_finish_fails("linux 64", NULL, 0, "'linux 64' is not a platform name");
	check_finish_fails("a-platform-name-longer-than-the-catalog-keeps", NULL, 0,
	                   "is not a platform name");

	/* one name in both kinds is not a duplicate */
	const struct pkg both[] = {
	        {PKG_CONDA, "requests", "2.31.0", "pyhd8ed1ab_0", NULL, NULL, NULL, NULL, NULL, 0},
	        {PKG_PYPI, "requests", "2.31.0", NULL, NULL, NULL, NULL, NULL, NULL, 0},
	};
	struct pkgset *set = make("linux-64", both, 2, NULL);

	CHECK(set != NULL && pkgset_count(set) == 2);
	pkgset_free(set);
}

static void test_hash(void)
{
	static const size_t reversed[] = {4, 3, 2, 1, 0};
	char want[33], got[33], other[33];
	struct pkgset *set, *set2;
	struct pkg changed[NBASE];

	hex128(canonical, strlen(canonical), want);
	set = make("linux-64", base, NBASE, NULL);
	hash_of(set, got);
	CHECK_STR(got, want);
	CHECK(strlen(got) == 32);
	pkgset_free(set);

	/* order of adding does not matter */
	set = make("linux-64", base, NBASE, reversed);
	hash_of(set, got);
	CHECK_STR(got, want);
	pkgset_free(set);

	/* channels, subdirs and archive hashes are not in the name */
	memcpy(changed, base, sizeof(base));
	changed[1].channel = "https://mirror.example.invalid/other";
	changed[1].md5 = NULL;
	changed[2].subdir = NULL;
	changed[3].sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
	set = make("linux-64", changed, NBASE, NULL);
	hash_of(set, got);
	CHECK_STR(got, want);
	pkgset_free(set);

	/* versions, builds, platform and kind are */
	memcpy(changed, base, sizeof(base));
	changed[1].build = "h4ab18f5_2";
	set = make("linux-64", changed, NBASE, NULL);
	hash_of(set, got);
	CHECK(strcmp(got, want) != 0);
	pkgset_free(set);
	memcpy(changed, base, sizeof(base));
	changed[2].subdir = NULL;
	set = make("linux-aarch64", changed, NBASE, NULL);
	CHECK(set != NULL);
	hash_of(set, got);
	CHECK(strcmp(got, want) != 0);
	pkgset_free(set);
	memcpy(changed, base, sizeof(base));
	changed[4].kind = PKG_CONDA;
	changed[4].build = "pyhd8ed1ab_0";
	set = make("linux-64", changed, NBASE, NULL);
	hash_of(set, got);
	CHECK(strcmp(got, want) != 0);
	pkgset_free(set);

	/* an empty set hashes its platform line alone; known XXH3-128 answer for "" */
	set = make("linux-64", NULL, 0, NULL);
	hash_of(set, got);
	hex128("platform linux-64\n", 18, want);
	CHECK_STR(got, want);
	pkgset_free(set);
	hex128("", 0, other);
	CHECK_STR(other, "99aa06d3014798d86001c324468d497f");

	/* a source package's empty build keeps its separator */
	const struct pkg src[] = {
	        {PKG_CONDA, "child-package", "0.1.0", "", NULL, "noarch", NULL, NULL, NULL, 0},
	};
	set = make("linux-64", src, 1, NULL);
	hash_of(set, got);
	hex128("platform linux-64\nconda child-package 0.1.0 \n", 45, want);
	CHECK_STR(got, want);
	set2 = make("linux-64", src, 1, NULL);
	hash_of(set2, other);
	CHECK_STR(got, other);
	pkgset_free(set);
	pkgset_free(set2);
}

static void check_match(const struct pkg *lock, size_t n, const char *platform, int want_rc,
                        const char *want)
{
	struct cfs_err err = {{0}};
	struct pkgset *have = make("linux-64", base, NBASE, NULL);
	struct pkgset *l = make(platform, lock, n, NULL);

	CHECK(have && l);
	if (have && l) {
		CHECK(pkgset_match(have, l, &err) == want_rc);
		if (want && !strstr(err.msg, want)) {
			test_failures++;
			fprintf(stderr, "match \"%s\" lacks \"%s\"\n", err.msg, want);
		}
		CHECK(strlen(err.msg) < sizeof(err.msg) - 1);
	}
	pkgset_free(have);
	pkgset_free(l);
}

static void test_match(void)
{
	struct pkg l[NBASE + 1];

	check_match(base, NBASE, "linux-64", 0, NULL);

	/* a lock without channels or hashes checks names, versions and builds only */
	for (size_t i = 0; i < NBASE; i++)
		l[i] = (struct pkg){base[i].kind,
		                    base[i].name,
		                    base[i].version,
		                    base[i].build,
		                    NULL,
		                    NULL,
		                    NULL,
		                    NULL,
		                    NULL,
		                    0};
	check_match(l, NBASE, "linux-64", 0, NULL);

	/* one channel, spelled as URL, URL with subdir and slash, or short name */
	memcpy(l, base, sizeof(base));
	l[1].channel = "conda-forge";
	l[2].channel = CH "/linux-64";
	l[3].channel = CH "/";
	check_match(l, NBASE, "linux-64", 0, NULL);

	memcpy(l, base, sizeof(base));
	l[2].version = "3.12.0";
	check_match(l, NBASE, "linux-64", -EINVAL,
	            "lock does not match the environment: python: 3.12.1 hab00c5b_1_cpython in "
	            "the environment, 3.12.0 hab00c5b_1_cpython in the lock");

	memcpy(l, base, sizeof(base));
	check_match(l, NBASE - 1, "linux-64", -EINVAL,
	            "pypi:requests 2.31.0: missing from the lock");

	memcpy(l, base, sizeof(base));
	l[NBASE] = (struct pkg){PKG_CONDA, "xz", "5.2.6", "h166bdaf_0", NULL,
	                        NULL,      NULL, NULL,    NULL,         0};
	check_match(l, NBASE + 1, "linux-64", -EINVAL,
	            "xz 5.2.6 h166bdaf_0: in the lock, not in the environment");

	memcpy(l, base, sizeof(base));
	l[1].md5 = "00000000000000000000000000000000";
	check_match(l, NBASE, "linux-64", -EINVAL,
	            "zlib: md5 57d7dc60e9325e3de37ff8dffd18e814 in the environment, "
	            "00000000000000000000000000000000 in the lock");

	memcpy(l, base, sizeof(base));
	l[3].sha256 = "1111111111111111111111111111111111111111111111111111111111111111";
	check_match(l, NBASE, "linux-64", -EINVAL, "tzdata: sha256 7b2b69c5");

	memcpy(l, base, sizeof(base));
	l[2].channel = "https://channel.example.invalid/bioconda/linux-64";
	check_match(l, NBASE, "linux-64", -EINVAL,
	            "python: channel " CH " in the environment, "
	            "https://channel.example.invalid/bioconda in the lock");

	memcpy(l, base, sizeof(base));
	l[3].channel = "bioconda";
	check_match(l, NBASE, "linux-64", -EINVAL,
	            "tzdata: channel conda-forge in the environment, bioconda in the lock");

	memcpy(l, base, sizeof(base));
	l[2].subdir = NULL;
	check_match(l, NBASE, "linux-aarch64", -EINVAL,
	            "platform: linux-64 in the environment, linux-aarch64 in the lock");

	/* every difference is listed: several at once */
	memcpy(l, base, sizeof(base));
	l[0].version = "3.3.1";
	l[1].build = "h4ab18f5_0";
	check_match(l, NBASE, "linux-64", -EINVAL,
	            "zlib: 1.3.1 h4ab18f5_1 in the environment, 1.3.1 h4ab18f5_0 in the lock; "
	            "pypi:charset-normalizer: 3.3.2 in the environment, 3.3.1 in the lock");

	/* far more differences than fit one line: cut at a whole item, counted */
	{
		struct pkg many[200];
		char names[200][16];
		struct cfs_err err = {{0}};
		struct pkgset *have = make("linux-64", base, NBASE, NULL), *lk;

		for (size_t i = 0; i < 200; i++) {
			snprintf(names[i], sizeof(names[i]), "extra-pkg-%03zu", i);
			many[i] = (struct pkg){PKG_CONDA, names[i], "1.0", "h_0", NULL,
			                       NULL,      NULL,     NULL,  NULL,  0};
		}
		lk = make("linux-64", many, 200, NULL);
		CHECK(pkgset_match(have, lk, &err) == -EINVAL);
		CHECK(strstr(err.msg, " more)") != NULL);
		CHECK(strstr(err.msg, "extra-pkg-000 1.0 h_0: in the lock") != NULL);
		CHECK(strlen(err.msg) < sizeof(err.msg) - 1);
		pkgset_free(have);
		pkgset_free(lk);
	}

	/* "defaults" is conda's default channels */
	{
		const struct pkg h1[] = {{PKG_CONDA, "zlib", "1.2.11", "h7b6447c_3",
		                          "https://repo.example.invalid/pkgs/main", NULL, NULL,
		                          NULL, NULL, 0}};
		const struct pkg l1[] = {{PKG_CONDA, "zlib", "1.2.11", "h7b6447c_3", "defaults",
		                          NULL, NULL, NULL, NULL, 0}};
		struct pkgset *a = make("linux-64", h1, 1, NULL),
		              *b = make("linux-64", l1, 1, NULL);
		struct cfs_err err = {{0}};

		CHECK(pkgset_match(a, b, &err) == 0);
		CHECK(pkgset_match(b, a, &err) == 0);
		pkgset_free(a);
		pkgset_free(b);
	}
}

static void test_names(void)
{
	char f1[] = "python-3.12.1-hab00c5b_1_cpython.conda";
	char f2[] = "ld_impl_linux-64-2.40-h41732ed_0.tar.bz2";
	char f3[] = "python-3.12.1.conda", f4[] = "-1-h.conda", f5[] = "a-1-.conda";
	char f6[] = "zlib-1.2.11-h_0.whl";
	char u1[] = "https://channel.example.invalid/conda-forge/noarch/tzdata-2024a-h0c530f3_0."
	            "conda#d41d8cd98f00b204e9800998ecf8427e";
	char u2[] = "noarch/x.conda", u3[] = "a//x.conda";
	const char *name, *version, *build, *channel, *subdir;
	char *file;

	CHECK(pkgset_split_filename(f1, &name, &version, &build));
	CHECK_STR(name, "python");
	CHECK_STR(version, "3.12.1");
	CHECK_STR(build, "hab00c5b_1_cpython");
	/* names may hold '-'; the split is from the right */
	CHECK(pkgset_split_filename(f2, &name, &version, &build));
	CHECK_STR(name, "ld_impl_linux-64");
	CHECK_STR(version, "2.40");
	CHECK_STR(build, "h41732ed_0");
	CHECK(!pkgset_split_filename(f3, &name, &version, &build));
	CHECK_STR(f3, "python-3.12.1.conda"); /* untouched on failure */
	CHECK(!pkgset_split_filename(f4, &name, &version, &build));
	CHECK(!pkgset_split_filename(f5, &name, &version, &build));
	CHECK(!pkgset_split_filename(f6, &name, &version, &build));

	CHECK(pkgset_split_url(u1, &channel, &subdir, &file));
	CHECK_STR(channel, "https://channel.example.invalid/conda-forge");
	CHECK_STR(subdir, "noarch");
	CHECK_STR(file, "tzdata-2024a-h0c530f3_0.conda");
	CHECK(!pkgset_split_url(u2, &channel, &subdir, &file));
	CHECK_STR(u2, "noarch/x.conda");
	CHECK(!pkgset_split_url(u3, &channel, &subdir, &file));

	/* this test machine is one conda knows */
	CHECK(pkgset_host_platform() != NULL);
}

int main(void)
{
	test_build();
	test_channels();
	test_refusals();
	test_hash();
	test_match();
	test_names();
	return test_exit();
}
