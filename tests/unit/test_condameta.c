// SPDX-License-Identifier: MIT
/*
 * condameta: every real conda-meta record in the fixtures (conda 25.1 and 4.x,
 * micromamba, rattler) read from a prefix built in a temp dir, the platform vote,
 * placeholders (noarch python paths mapped through files[]), pip packages found by their
 * dist-info, lenient parsing, malformed records, and lookups in a large table.
 */
#include "condameta.h"
#include "pkgset.h"
#include "test.h"
#include "testfs.h"

#include <errno.h>

static char *tmp;

#define CH "https://channel.example.invalid/conda-forge"

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

/* A copy, not a link: no symbolic link inside a prefix is followed. */
static void copy_fixture(const char *prefix, const char *rel, const char *as)
{
	char *src = testfs_fixture(rel), *text = NULL;
	size_t len = 0;
	FILE *f = fopen(src, "re"), *m = open_memstream(&text, &len);
	int c;

	if (!f || !m)
		testfs_die("fopen", src);
	while ((c = getc(f)) != EOF)
		putc(c, m);
	fclose(f);
	fclose(m);
	testfs_write(prefix, text, "conda-meta/%s", as);
	free(text);
	free(src);
}

/* A prefix whose conda-meta holds copies of the named fixture records. */
static char *fixture_prefix(const char *name, const char *history, const char *const *records)
{
	char *prefix = testfs_path(tmp, "%s", name);

	if (history)
		copy_fixture(prefix, history, "history");
	else
		testfs_write(prefix, "", "conda-meta/history");
	for (; *records; records++)
		copy_fixture(prefix, *records, strrchr(*records, '/') + 1);
	return prefix;
}

static struct condameta *read_ok(const char *prefix)
{
	struct cfs_err err = {{0}};
	struct condameta *m = NULL;

	if (condameta_read(prefix, &m, &err) < 0) {
		test_failures++;
		fprintf(stderr, "%s: unexpected error: %s\n", prefix, err.msg);
	}
	return m;
}

static void check_placeholder(const struct condameta *m, const char *path, bool binary, size_t len)
{
	bool b = !binary;
	size_t l = 0;

	test_checks++;
	if (!m || !condameta_placeholder(m, path, &b, &l) || b != binary || l != len) {
		test_failures++;
		fprintf(stderr, "placeholder %s: %s %zu\n", path, b ? "binary" : "text", l);
	}
}

static void check_no_placeholder(const struct condameta *m, const char *path)
{
	bool b;
	size_t l;

	CHECK(m && !condameta_placeholder(m, path, &b, &l));
}

static bool ends_with(const char *s, const char *tail)
{
	size_t a = s ? strlen(s) : 0, b = strlen(tail);

	return s && a >= b && strcmp(s + a - b, tail) == 0;
}

static void test_fixtures(void)
{
	static const char *const conda25[] = {
	        "conda/conda-meta/conda-25.1_osx-arm64/bzip2-1.0.8-h99b78c6_7.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/libffi-3.4.2-h3422bc3_5.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/libzlib-1.3.1-h8359307_2.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/pip-25.0.1-pyh145f28c_0.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/python-3.13.2-hfd29fff_1_cp313t.json",
	        NULL,
	};
	static const char *const conda4[] = {
	        "conda/conda-meta/conda-4.x_osx-64/pip-10.0.1-py27_0.json",
	        "conda/conda-meta/conda-4.x_osx-64/zlib-1.2.11-hf3cbc9b_2.json",
	        NULL,
	};
	static const char *const mamba[] = {
	        "conda/conda-meta/micromamba_win-64/requests-2.28.2-pyhd8ed1ab_0.json",
	        NULL,
	};
	static const char *const rattler[] = {
	        "conda/conda-meta/rattler_osx-arm64/libsqlite-3.45.3-h091b4b1_0.json",
	        NULL,
	};
	static const char *const mixed[] = {
	        "conda/conda-meta/conda-25.1_osx-arm64/bzip2-1.0.8-h99b78c6_7.json",
	        "conda/conda-meta/conda-4.x_osx-64/pip-10.0.1-py27_0.json",
	        NULL,
	};
	struct cfs_err err = {{0}};
	struct condameta *m;
	const struct pkgset *set;
	const struct pkg *p, *q;
	char *prefix;

	prefix =
	        fixture_prefix("conda25", "conda/conda-meta/conda-25.1_osx-arm64/history", conda25);
	m = read_ok(prefix);
	set = m ? condameta_pkgset(m) : NULL;
	CHECK(set && pkgset_count(set) == 5);
	CHECK(set && strcmp(pkgset_platform(set), "osx-arm64") == 0);
	p = find(set, PKG_CONDA, "python");
	CHECK(p && strcmp(p->version, "3.13.2") == 0 && strcmp(p->build, "hfd29fff_1_cp313t") == 0);
	CHECK(p && p->md5 && strcmp(p->md5, "9d0ae3f3e43c192a992827c0abffe284") == 0);
	/* channel written with the subdir; the set keeps it without */
	CHECK(p && ends_with(p->channel, "/conda-forge"));
	CHECK(p && strcmp(p->subdir, "osx-arm64") == 0);
	p = find(set, PKG_CONDA, "pip");
	CHECK(p && strcmp(p->subdir, "noarch") == 0);
	/* pip's own dist-info belongs to its conda record: no pypi package */
	CHECK(!find(set, PKG_PYPI, "pip"));
	check_placeholder(m, "bin/python3.13", true, 255);
	check_placeholder(m, "bin/python3.13t-config", false, 255);
	check_placeholder(m, "lib/libffi.8.dylib", true, 255);
	check_placeholder(m, "lib/pkgconfig/libffi.pc", false, 255);
	check_placeholder(m, "lib/python3.13t/site-packages/conda-site.pth", false, 255);
	check_placeholder(m, "lib/python3.13t/config-3.13t-darwin/Makefile", false, 255);
	check_no_placeholder(m, "bin/pip");
	check_no_placeholder(m, "lib/libz.1.dylib");
	check_no_placeholder(m, "bin/python3.1");
	check_no_placeholder(m, "");
	condameta_free(m);
	free(prefix);

	prefix = fixture_prefix("conda4", "conda/conda-meta/conda-4.x_osx-64/history", conda4);
	m = read_ok(prefix);
	set = m ? condameta_pkgset(m) : NULL;
	CHECK(set && pkgset_count(set) == 2);
	CHECK(set && strcmp(pkgset_platform(set), "osx-64") == 0);
	p = find(set, PKG_CONDA, "zlib");
	q = find(set, PKG_CONDA, "pip");
	CHECK(p && !p->sha256 && p->md5);
	/* zlib's record says one channel host and was fetched from another: the URL wins */
	CHECK(p && q && ends_with(p->channel, "/pkgs/main") &&
	      ends_with(q->channel, "/pkgs/main") && strcmp(p->channel, q->channel) != 0);
	/* the legacy 32-character placeholder */
	check_placeholder(m, "bin/pip", false, 32);
	check_placeholder(m, "lib/pkgconfig/zlib.pc", false, 32);
	condameta_free(m);
	free(prefix);

	/* noarch only: the host's platform; micromamba's nulls and backslash paths */
	prefix = fixture_prefix("mamba", "conda/conda-meta/micromamba-history/history", mamba);
	m = read_ok(prefix);
	set = m ? condameta_pkgset(m) : NULL;
	CHECK(set && pkgset_count(set) == 1);
	CHECK(set && pkgset_host_platform() &&
	      strcmp(pkgset_platform(set), pkgset_host_platform()) == 0);
	p = find(set, PKG_CONDA, "requests");
	CHECK(p && strcmp(p->build, "pyhd8ed1ab_0") == 0 && p->sha256);
	condameta_free(m);
	free(prefix);

	prefix = fixture_prefix("rattler", NULL, rattler);
	m = read_ok(prefix);
	set = m ? condameta_pkgset(m) : NULL;
	CHECK(set && pkgset_count(set) == 1);
	CHECK(set && strcmp(pkgset_platform(set), "osx-arm64") == 0);
	p = find(set, PKG_CONDA, "libsqlite");
	CHECK(p && ends_with(p->channel, "/conda-forge"));
	check_placeholder(m, "lib/pkgconfig/sqlite3.pc", false, 255);
	condameta_free(m);
	free(prefix);

	/* records for two platforms in one prefix */
	prefix = fixture_prefix("mixed", NULL, mixed);
	m = NULL;
	CHECK(condameta_read(prefix, &m, &err) == -EINVAL);
	CHECK(m == NULL);
	check_msg(err.msg, "conda-meta/pip-10.0.1-py27_0.json: a package for osx-64, but "
	                   "bzip2-1.0.8-h99b78c6_7.json is for osx-arm64");
	free(prefix);
}

/* A record as conda writes it, with fields to vary. */
static void record(const char *prefix, const char *name, const char *version, const char *extra,
                   const char *files, const char *paths)
{
	char *json;

	if (asprintf(&json,
	             "{\"name\": \"%s\", \"version\": \"%s\", %s,\n"
	             " \"files\": [%s],\n"
	             " \"paths_data\": {\"paths_version\": 1, \"paths\": [%s]}}\n",
	             name, version, extra, files, paths) < 0)
		testfs_die("asprintf", name);
	testfs_write(prefix, json, "conda-meta/%s-%s.json", name, version);
	free(json);
}

static void test_noarch_and_pip(void)
{
	char *prefix = testfs_path(tmp, "pip-prefix");
	struct condameta *m;
	const struct pkgset *set;
	struct pkgset *taken;
	const struct pkg *p;

	testfs_write(prefix, "", "conda-meta/history");
	record(prefix, "python", "3.12.1",
	       "\"build\": \"hab00c5b_1_cpython\", \"subdir\": \"linux-64\", "
	       "\"url\": \"" CH "/linux-64/python-3.12.1-hab00c5b_1_cpython.conda\"",
	       "\"bin/python3.12\"",
	       "{\"_path\": \"bin/python3.12\", \"prefix_placeholder\": \"/opt/anaconda1anaconda2"
	       "anaconda3\", \"file_mode\": \"binary\", \"path_type\": \"hardlink\"}");
	/* conda's noarch: python record: paths_data in package terms, files[] as installed */
	record(prefix, "foo", "1.0",
	       "\"build\": \"pyh_0\", \"subdir\": \"noarch\", \"noarch\": \"python\", "
	       "\"channel\": \"conda-forge\", \"requested_spec\": null, \"timestamp\": 1700000000",
	       "\"lib/python3.12/site-packages/foo/__init__.py\", "
	       "\"lib/python3.12/site-packages/foo-1.0.dist-info/RECORD\", "
	       "\"lib/python3.12/site-packages/foo-1.0.dist-info/METADATA\", \"bin/foo\"",
	       "{\"_path\": \"site-packages/foo/__init__.py\", \"prefix_placeholder\": "
	       "\"/opt/anaconda1anaconda2anaconda3\"}, "
	       "{\"_path\": \"bin/foo\", \"prefix_placeholder\": \"/p\", \"file_mode\": \"text\"}");
	/* micromamba: build_string only, odd extra keys, real paths */
	record(prefix, "bar", "2.0",
	       "\"build_string\": \"pyh_1\", \"subdir\": \"noarch\", \"requested_spec\": \"\", "
	       "\"timestamp\": 1700000000123, \"arch\": null, \"link\": {\"type\": 1}, "
	       "\"extra\": {\"nested\": [1, {\"x\": null}]}",
	       "\"lib/python3.12/site-packages/bar/data.txt\"",
	       "{\"_path\": \"lib/python3.12/site-packages/bar/data.txt\", \"prefix_placeholder\": "
	       "\"/some/where\", \"file_mode\": \"text\"}");
	testfs_write(prefix, "Name: foo\nVersion: 1.0\n\n",
	             "lib/python3.12/site-packages/foo-1.0.dist-info/METADATA");
	/* pip-installed: METADATA names it (not the directory) */
	testfs_write(prefix, "Metadata-Version: 2.1\nname: Zope.Interface\nVersion: 6.1\n\n",
	             "lib/python3.12/site-packages/zope.interface-6.1.dist-info/METADATA");
	/* pip-installed without METADATA: the directory names it */
	testfs_write(prefix, "",
	             "lib/python3.12/site-packages/typing_extensions-4.9.0.dist-info/RECORD");
	/* METADATA without a Version: the directory again */
	testfs_write(prefix, "Name: six\n\n",
	             "lib/python3.12/site-packages/six-1.16.0.dist-info/METADATA");
	/* not distributions: a file named like one, an egg-info, a python dir without
	 * site-packages, a non-python dir */
	testfs_write(prefix, "", "lib/python3.12/site-packages/stray-1.0.dist-info");
	testfs_write(prefix, "", "lib/python3.12/site-packages/old-1.0.egg-info/PKG-INFO");
	testfs_write(prefix, "", "lib/python3.11/README");
	testfs_write(prefix, "", "lib/pkgconfig/x-1.0.dist-info/METADATA");

	m = read_ok(prefix);
	set = m ? condameta_pkgset(m) : NULL;
	CHECK(set && pkgset_count(set) == 6);
	CHECK(set && strcmp(pkgset_platform(set), "linux-64") == 0);
	CHECK(!find(set, PKG_PYPI, "foo"));
	p = find(set, PKG_PYPI, "zope-interface");
	CHECK(p && strcmp(p->version, "6.1") == 0 && !p->build && !p->channel);
	p = find(set, PKG_PYPI, "typing-extensions");
	CHECK(p && strcmp(p->version, "4.9.0") == 0);
	p = find(set, PKG_PYPI, "six");
	CHECK(p && strcmp(p->version, "1.16.0") == 0);
	CHECK(!find(set, PKG_PYPI, "stray") && !find(set, PKG_PYPI, "old") &&
	      !find(set, PKG_PYPI, "x"));
	p = find(set, PKG_CONDA, "bar");
	CHECK(p && strcmp(p->build, "pyh_1") == 0);
	p = find(set, PKG_CONDA, "foo");
	CHECK(p && p->channel && strcmp(p->channel, "conda-forge") == 0);

	check_placeholder(m, "bin/python3.12", true, 32);
	check_placeholder(m, "lib/python3.12/site-packages/foo/__init__.py", false, 32);
	check_no_placeholder(m, "site-packages/foo/__init__.py");
	check_placeholder(m, "bin/foo", false, 2);
	check_placeholder(m, "lib/python3.12/site-packages/bar/data.txt", false, 11);

	taken = condameta_take_pkgset(m);
	CHECK(taken && pkgset_count(taken) == 6);
	CHECK(condameta_pkgset(m) == NULL);
	/* placeholders outlive the set */
	check_placeholder(m, "bin/python3.12", true, 32);
	pkgset_free(taken);
	condameta_free(m);
	free(prefix);
}

static void check_read_fails(const char *prefix, int want_rc, const char *want)
{
	struct cfs_err err = {{0}};
	struct condameta *m = NULL;

	CHECK(condameta_read(prefix, &m, &err) == want_rc);
	CHECK(m == NULL);
	check_msg(err.msg, want);
	CHECK(!strchr(err.msg, '\n'));
}

static void test_refusals(void)
{
	char *p, *want, *target;

	p = testfs_path(tmp, "no-history");
	testfs_write(p, "{}", "conda-meta/x-1-0.json");
	if (asprintf(&want, "not a conda prefix: %s/conda-meta/history: missing", p) < 0)
		testfs_die("asprintf", p);
	check_read_fails(p, -EINVAL, want);
	free(want);
	free(p);

	p = testfs_path(tmp, "no-such-prefix");
	check_read_fails(p, -ENOENT, "no-such-prefix: No such file or directory");
	free(p);

	p = testfs_path(tmp, "no-build");
	testfs_write(p, "", "conda-meta/history");
	testfs_write(p, "{\"name\": \"x\", \"version\": \"1\"}", "conda-meta/x-1-0.json");
	check_read_fails(p, -EINVAL,
	                 "no-build/conda-meta/x-1-0.json: not a conda-meta record: it needs name, "
	                 "version and build");
	free(p);

	p = testfs_path(tmp, "not-an-object");
	testfs_write(p, "", "conda-meta/history");
	testfs_write(p, "[1, 2]", "conda-meta/x-1-0.json");
	check_read_fails(p, -EINVAL, "x-1-0.json: not a conda-meta record");
	free(p);

	p = testfs_path(tmp, "bad-json");
	testfs_write(p, "", "conda-meta/history");
	testfs_write(p, "{\n  \"name\": \"x\",\n  \"version\": \"1\"\n  \"build\": \"0\"\n}\n",
	             "conda-meta/x-1-0.json");
	check_read_fails(p, -EINVAL, "bad-json/conda-meta/x-1-0.json:4: invalid JSON:");
	free(p);

	p = testfs_path(tmp, "bad-mode");
	testfs_write(p, "", "conda-meta/history");
	record(p, "x", "1", "\"build\": \"0\"", "\"a\"",
	       "{\"_path\": \"a\", \"prefix_placeholder\": \"/p\", \"file_mode\": \"weird\"}");
	check_read_fails(p, -EINVAL,
	                 "bad-mode/conda-meta/x-1.json:3: file_mode 'weird' is neither "
	                 "text nor binary");
	free(p);

	p = testfs_path(tmp, "twice");
	testfs_write(p, "", "conda-meta/history");
	record(p, "x", "1", "\"build\": \"0\"", "", "");
	record(p, "x", "2", "\"build\": \"0\"", "", "");
	check_read_fails(p, -EINVAL, "twice: x is listed twice (1 and 2)");
	free(p);

	/* Nothing inside a prefix is read through a symbolic link (issue 11): not a record,
	 * nor conda-meta itself. */
	p = testfs_path(tmp, "linked-record");
	testfs_write(p, "", "conda-meta/history");
	testfs_write(tmp, "{\"name\": \"x\", \"version\": \"1\", \"build\": \"0\"}",
	             "outside/x-1-0.json");
	want = testfs_path(tmp, "outside/x-1-0.json");
	target = testfs_path(p, "conda-meta/x-1-0.json");
	if (symlink(want, target) < 0)
		testfs_die("symlink", target);
	check_read_fails(p, -ELOOP,
	                 "linked-record/conda-meta/x-1-0.json: it is or passes through a "
	                 "symbolic link, and none is followed inside a prefix");
	free(target);
	free(want);
	free(p);

	p = testfs_path(tmp, "linked-meta");
	testfs_write(tmp, "", "outside/conda-meta/history");
	want = testfs_path(tmp, "outside/conda-meta");
	target = testfs_path(p, "conda-meta");
	testfs_parents(target);
	if (symlink(want, target) < 0)
		testfs_die("symlink", target);
	check_read_fails(p, -ELOOP,
	                 "linked-meta/conda-meta: it is or passes through a symbolic link");
	free(target);
	free(want);
	free(p);

	/* A fifo in place of a record is refused at once: opening it never waits for a
	 * writer (issue 11). */
	p = testfs_path(tmp, "fifo-record");
	testfs_write(p, "", "conda-meta/history");
	target = testfs_path(p, "conda-meta/x-1-0.json");
	if (mkfifo(target, 0644) < 0)
		testfs_die("mkfifo", target);
	check_read_fails(p, -EINVAL,
	                 "fifo-record/conda-meta/x-1-0.json: not a regular file (a fifo)");
	free(target);
	free(p);

	/* Far above any real record: refused before it is read. */
	p = testfs_path(tmp, "huge");
	testfs_write(p, "", "conda-meta/history");
	testfs_write(p, "", "conda-meta/x-1-0.json");
	want = testfs_path(p, "conda-meta/x-1-0.json");
	if (truncate(want, (32 << 20) + 1) < 0)
		testfs_die("truncate", want);
	free(want);
	check_read_fails(p, -EFBIG, "x-1-0.json: 33554433 bytes is more than the 33554432");
	free(p);

	p = testfs_path(tmp, "bad-md5");
	testfs_write(p, "", "conda-meta/history");
	record(p, "x", "1", "\"build\": \"0\", \"md5\": \"nope\"", "", "");
	check_read_fails(p, -EINVAL, "bad-md5/conda-meta/x-1.json: x: md5 'nope' is not 32 hex");
	free(p);
}

/* A prefix of 100k files calls condameta_placeholder for each: a sorted table. */
static void test_many(void)
{
	enum { N = 20000 };
	char *prefix = testfs_path(tmp, "many"), *paths, *o;
	size_t cap = (size_t)N * 96;
	struct condameta *m;
	bool ok = true;

	testfs_write(prefix, "", "conda-meta/history");
	paths = malloc(cap);
	if (!paths)
		testfs_die("malloc", "");
	o = paths;
	/* written in reverse so the reader has to sort */
	for (int i = N - 1; i >= 0; i--)
		o += snprintf(o, cap - (size_t)(o - paths),
		              "%s{\"_path\": \"share/f%05d\", \"prefix_placeholder\": \"%.*s\", "
		              "\"file_mode\": \"%s\"}",
		              i == N - 1 ? "" : ",", i, 1 + i % 40,
		              "/placeholder/placeholder/placeholder/placeholder",
		              i % 3 ? "text" : "binary");
	record(prefix, "many", "1", "\"build\": \"0\", \"subdir\": \"linux-64\"", "", paths);
	free(paths);
	m = read_ok(prefix);
	for (int i = 0; m && i < N; i++) {
		char path[32];
		bool binary;
		size_t len;

		snprintf(path, sizeof(path), "share/f%05d", i);
		ok &= condameta_placeholder(m, path, &binary, &len) && binary == !(i % 3) &&
		      len == (size_t)(1 + i % 40);
		snprintf(path, sizeof(path), "share/f%05dx", i);
		ok &= !condameta_placeholder(m, path, &binary, &len);
	}
	CHECK(m && ok);
	condameta_free(m);
	free(prefix);
}

int main(void)
{
	tmp = testfs_mkdtemp();
	test_fixtures();
	test_noarch_and_pip();
	test_refusals();
	test_many();
	testfs_rmtree(tmp);
	free(tmp);
	return test_exit();
}
