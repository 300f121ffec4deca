// SPDX-License-Identifier: MIT
/*
 * Reports (report.c): the JSON texts of ls, stats and show, exactly as the CLI prints
 * them, read back field for field (strings with quotes, control bytes, UTF-8 and bytes
 * that are not UTF-8), finding an environment among them as store_env_find does, and
 * damaged texts refused naming the file.
 */
#include "pkgset.h"
#include "test.h"

#include <condafs/report.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char H1[] = "0123456789abcdef0123456789abcdef";
static const char H2[] = "0123ffffffffffffffffffffffffffff";
static const char H3[] = "a0000000000000000000000000000000";

static void set_env(struct report_env *e, const char *hash, const char *prefix, uint64_t files)
{
	memset(e, 0, sizeof(*e));
	memcpy(e->env.hash, hash, 33);
	snprintf(e->env.platform, sizeof(e->env.platform), "%s", "linux-64");
	snprintf(e->env.source_prefix, sizeof(e->env.source_prefix), "%s", prefix);
	e->env.files = files;
	e->env.logical_bytes = files * 1000;
	e->env.created = 1700000000;
	e->env.last_used = files ? 1700000500 : 0;
	e->unique_bytes = files * 10;
}

static void test_envs(void)
{
	struct store_tag tags[3] = {0};
	struct report_env v[3], *back = NULL;
	struct cfs_err err = {{0}};
	size_t len = 0, n = 0, i = 99;
	char *text = NULL, *text2 = NULL;

	set_env(&v[0], H1, "/opt/conda/envs/a \"q\" \\ \t\x01 \xc3\xa9", 3);
	set_env(&v[1], H2, "/bad/\xff\xfe", 0);
	set_env(&v[2], H3, "/p", 1);
	v[1].env.broken = true;
	snprintf(v[2].cuda, sizeof(v[2].cuda), "%s", "11.8");
	snprintf(v[2].cuda_source, sizeof(v[2].cuda_source), "%s", "cuda-version 11.8");
	snprintf(tags[0].name, sizeof(tags[0].name), "%s", "alpha");
	memcpy(tags[0].hash, H2, 33);
	snprintf(tags[1].name, sizeof(tags[1].name), "%s", "beta");
	memcpy(tags[1].hash, H2, 33);
	snprintf(tags[2].name, sizeof(tags[2].name), "%s", "gone");
	memcpy(tags[2].hash, "ffffffffffffffffffffffffffffffff", 33);
	CHECK(report_envs_tag(v, 3, tags, 3) == 0);
	CHECK(v[0].ntags == 0 && v[1].ntags == 2 && v[2].ntags == 0);
	CHECK(report_envs_json(v, 3, &text, &len) == 0);
	CHECK(len == strlen(text));
	/* The line `condafs ls --json` prints for an environment. */
	CHECK(strstr(text, "[\n {\"hash\": \"0123456789abcdef0123456789abcdef\", \"tags\": [],"
	                   " \"platform\": \"linux-64\", \"files\": 3, \"logical_bytes\": 3000,"
	                   " \"unique_bytes\": 30, \"created\": 1700000000, \"last_used\":"
	                   " 1700000500, \"source_prefix\": \"/opt/conda/envs/a \\\"q\\\" \\\\"
	                   " \\u0009\\u0001 \xc3\xa9\", \"broken\": false, \"cuda\": null,"
	                   " \"cuda_source\": null},\n") == text);
	CHECK(strstr(text, "\"broken\": false, \"cuda\": \"11.8\", \"cuda_source\":"
	                   " \"cuda-version 11.8\"}") != NULL);
	CHECK(strstr(text, "\"tags\": [\"alpha\", \"beta\"]") != NULL);
	CHECK(strstr(text, "\"/bad/\\ufffd\\ufffd\", \"broken\": true, \"cuda\": null") != NULL);
	CHECK(len > 4 && !strcmp(text + len - 4, "}\n]\n"));

	CHECK(report_envs_parse("envs.json", text, len, &back, &n, &err) == 0);
	CHECK(n == 3);
	for (size_t k = 0; back && k < n && k < 3; k++) {
		CHECK_STR(back[k].env.hash, v[k].env.hash);
		CHECK_STR(back[k].env.platform, "linux-64");
		CHECK(back[k].env.files == v[k].env.files);
		CHECK(back[k].env.logical_bytes == v[k].env.logical_bytes);
		CHECK(back[k].unique_bytes == v[k].unique_bytes);
		CHECK(back[k].env.created == v[k].env.created);
		CHECK(back[k].env.last_used == v[k].env.last_used);
		CHECK(back[k].env.broken == v[k].env.broken);
		CHECK(back[k].ntags == v[k].ntags);
		CHECK_STR(back[k].cuda, v[k].cuda);
		CHECK_STR(back[k].cuda_source, v[k].cuda_source);
	}
	if (back && n == 3) {
		CHECK_STR(back[0].env.source_prefix, v[0].env.source_prefix);
		CHECK_STR(back[1].env.source_prefix, "/bad/\xef\xbf\xbd\xef\xbf\xbd");
		CHECK_STR(back[1].tags[1].name, "beta");
		CHECK_STR(back[1].tags[1].hash, H2);
		/* Written again, the same text but for what was not UTF-8. */
		snprintf(back[1].env.source_prefix, sizeof(back[1].env.source_prefix), "%s",
		         "/bad/\xff\xfe");
		CHECK(report_envs_json(back, n, &text2, &len) == 0);
		CHECK_STR(text2, text);
		free(text2);

		/* Names as store_env_find takes them. */
		CHECK(report_env_find(back, n, "beta", &i, NULL) == 0 && i == 1);
		CHECK(report_env_find(back, n, H3, &i, NULL) == 0 && i == 2);
		CHECK(report_env_find(back, n, "a000", &i, NULL) == 0 && i == 2);
		CHECK(report_env_find(back, n, "0123", &i, &err) == -EINVAL);
		CHECK(strstr(err.msg, "more than one") != NULL);
		CHECK(report_env_find(back, n, "01234", &i, NULL) == 0 && i == 0);
		CHECK(report_env_find(back, n, "012", &i, &err) == -ENOENT);
		CHECK_STR(err.msg, "012: no such environment or tag");
		CHECK(report_env_find(back, n, "bbbb", &i, &err) == -ENOENT);
		CHECK_STR(err.msg, "bbbb: no such environment");
		CHECK(report_env_find(back, n, "gone", &i, NULL) == -ENOENT);
	}
	report_envs_free(back, n);
	back = NULL;

	CHECK(report_envs_json(v, 0, &text2, &len) == 0);
	CHECK_STR(text2, "[]\n");
	CHECK(report_envs_parse("e", text2, len, &back, &n, NULL) == 0 && n == 0);
	report_envs_free(back, n);
	free(text2);
	free(text);
	for (int k = 0; k < 3; k++)
		free(v[k].tags);
}

static void test_stats(void)
{
	struct store_stats s = {2, 10, 5000, 4000, 1000}, b = {0};
	struct report_env v[2], *back = NULL;
	size_t len, n = 0;
	char *text = NULL;

	set_env(&v[0], H1, "/a", 1);
	set_env(&v[1], H2, "/b", 2);
	CHECK(report_stats_json(&s, v, 2, &text, &len) == 0);
	CHECK_STR(text, "{\"environments\": 2, \"objects\": 10, \"logical_bytes\": 5000,"
	                " \"content_bytes\": 4000, \"stored_bytes\": 1000, \"dedup_ratio\": 5.000,"
	                " \"unique_bytes\": {\"0123456789abcdef0123456789abcdef\": 10,"
	                " \"0123ffffffffffffffffffffffffffff\": 20}}\n");
	CHECK(report_stats_parse("stats.json", text, len, &b, &back, &n, NULL) == 0);
	CHECK(!memcmp(&b, &s, sizeof(s)));
	CHECK(n == 2 && back && !strcmp(back[1].env.hash, H2) && back[1].unique_bytes == 20);
	report_envs_free(back, n);
	free(text);
}

static void test_packages(void)
{
	struct pkgset *set = NULL, *back = NULL;
	struct store_env env = {0};
	struct pkg c = {PKG_CONDA,
	                "numpy",
	                "1.26.4",
	                "py311_0",
	                "https://channel.example.invalid/x",
	                "linux-64",
	                "0123456789abcdef0123456789abcdef",
	                NULL,
	                NULL,
	                0};
	struct pkg p = {PKG_PYPI, "my-pkg", "2.0", NULL, NULL, NULL, NULL, NULL, NULL, 0};
	size_t len;
	char *text = NULL, *text2 = NULL;

	memcpy(env.hash, H1, 33);
	snprintf(env.platform, sizeof(env.platform), "%s", "linux-64");
	CHECK(pkgset_new(&set) == 0);
	CHECK(pkgset_add(set, &c, "t", NULL) == 0);
	CHECK(pkgset_add(set, &p, "t", NULL) == 0);
	CHECK(pkgset_finish(set, "linux-64", "t", NULL) == 0);
	CHECK(report_packages_json(&env, set, &text, &len) == 0);
	CHECK_STR(text,
	          "{\"hash\": \"0123456789abcdef0123456789abcdef\", \"platform\":"
	          " \"linux-64\", \"cuda\": null, \"cuda_source\": null, \"packages\": [\n "
	          "{\"kind\": \"conda\", \"name\":"
	          " \"numpy\", \"version\": \"1.26.4\", \"build\": \"py311_0\","
	          " \"channel\": \"https://channel.example.invalid/x\", \"subdir\": \"linux-64\","
	          " \"md5\": \"0123456789abcdef0123456789abcdef\", \"sha256\": null},\n"
	          " {\"kind\": \"pypi\", \"name\": \"my-pkg\", \"version\": \"2.0\","
	          " \"build\": null, \"channel\": null, \"subdir\": null, \"md5\": null,"
	          " \"sha256\": null}\n]}\n");
	CHECK(report_packages_parse("p.json", text, len, &back, NULL) == 0);
	if (back) {
		CHECK(report_packages_json(&env, back, &text2, &len) == 0);
		CHECK_STR(text2, text);
		free(text2);
	}
	pkgset_free(back);
	pkgset_free(set);
	free(text);
}

static void test_mount(void)
{
	char *text = NULL, *a = NULL, *b = NULL;
	size_t len;

	CHECK(report_mount_json("/var/lib/condafs", "/envs", &text, &len) == 0);
	CHECK_STR(text, "{\"store\": \"/var/lib/condafs\", \"mountpoint\": \"/envs\"}\n");
	CHECK(report_mount_parse("m", text, len, &a, &b, NULL) == 0);
	CHECK_STR(a, "/var/lib/condafs");
	CHECK_STR(b, "/envs");
	free(a);
	free(b);
	free(text);
}

/* A literal and its length. */
#define TEXT(s) (s), strlen(s)

/* Each damaged text: -EBADMSG, naming the file. */
static void test_damaged(void)
{
	static const char *const envs[] = {
	        "",
	        "{}",
	        "[1]",
	        "[{\"hash\": \"xyz\"}]",
	        "[{\"hash\": \"0123456789abcdef0123456789abcdef\", \"tags\": [], \"platform\": "
	        "\"linux-64\", \"files\": -1, \"logical_bytes\": 1, \"unique_bytes\": 1, "
	        "\"created\": 1, \"last_used\": 1, \"source_prefix\": \"/p\", \"broken\": false}]",
	        "[{\"hash\": \"0123456789abcdef0123456789abcdef\", \"tags\": [\"-x\"], "
	        "\"platform\": "
	        "\"linux-64\", \"files\": 1, \"logical_bytes\": 1, \"unique_bytes\": 1, "
	        "\"created\": 1, \"last_used\": 1, \"source_prefix\": \"/p\", \"broken\": false}]",
	        "[{\"hash\": \"0123456789abcdef0123456789abcdef\", \"tags\": [], \"platform\": "
	        "\"linux-64\", \"files\": 1, \"logical_bytes\": 1, \"unique_bytes\": 1, "
	        "\"created\": 1, \"last_used\": 1, \"source_prefix\": \"/p\", \"broken\": 2}]",
	        "[{\"hash\": \"0123456789abcdef0123456789abcdef\", \"tags\": [], \"platform\": "
	        "\"linux-64\", \"files\": 99999999999999999999999, \"logical_bytes\": 1, "
	        "\"unique_bytes\": 1, \"created\": 1, \"last_used\": 1, \"source_prefix\": \"/p\", "
	        "\"broken\": false}]",
	};
	struct report_env *v = NULL;
	struct store_stats s;
	struct pkgset *set = NULL;
	char *a = NULL, *b = NULL;
	size_t n = 0;

	for (size_t k = 0; k < sizeof(envs) / sizeof(envs[0]); k++) {
		struct cfs_err err = {{0}};
		int r = report_envs_parse("/envs/.condafs/envs.json", envs[k], strlen(envs[k]), &v,
		                          &n, &err);

		CHECK(r == -EBADMSG || (k == 0 && r < 0));
		CHECK(strstr(err.msg, "/envs/.condafs/envs.json") == err.msg);
		if (!r)
			report_envs_free(v, n);
	}
	CHECK(report_stats_parse("s", TEXT("{\"environments\": 1}"), &s, &v, &n, NULL) == -EBADMSG);
	CHECK(report_stats_parse("s", TEXT("[]"), &s, &v, &n, NULL) == -EBADMSG);
	CHECK(report_packages_parse("p", TEXT("{\"packages\": 1}"), &set, NULL) == -EBADMSG);
	CHECK(report_packages_parse("p",
	                            TEXT("{\"platform\": \"linux-64\", \"packages\": [{\"kind\":"
	                                 " \"x\", \"name\": \"a\", \"version\": \"1\"}]}"),
	                            &set, NULL) == -EBADMSG);
	CHECK(report_mount_parse("m", TEXT("{\"store\": \"rel\", \"mountpoint\": \"/e\"}"), &a, &b,
	                         NULL) == -EBADMSG);
}

/* The CUDA need: show --json says it from the packages; envs.json from a condafsd that
 * wrote none still reads; a need that is not a string does not. */
static void test_cuda(void)
{
	static const char old[] = "[{\"hash\": \"0123456789abcdef0123456789abcdef\", \"tags\": [],"
	                          " \"platform\": \"linux-64\", \"files\": 1, \"logical_bytes\": 1,"
	                          " \"unique_bytes\": 1, \"created\": 1, \"last_used\": 0,"
	                          " \"source_prefix\": \"/p\", \"broken\": false}]";
	static const char bad[] = "[{\"hash\": \"0123456789abcdef0123456789abcdef\", \"tags\": [],"
	                          " \"platform\": \"linux-64\", \"files\": 1, \"logical_bytes\": 1,"
	                          " \"unique_bytes\": 1, \"created\": 1, \"last_used\": 0,"
	                          " \"source_prefix\": \"/p\", \"broken\": false, \"cuda\": [1]}]";
	struct pkg c = {PKG_CONDA, "cuda-version", "12.1", "h1d6eff3_3", NULL,
	                NULL,      NULL,           NULL,   NULL,         0};
	struct report_env *back = NULL;
	struct store_env env = {0};
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	char *text = NULL;
	size_t len, n = 0;

	memcpy(env.hash, H1, 33);
	snprintf(env.platform, sizeof(env.platform), "%s", "linux-64");
	CHECK(pkgset_new(&set) == 0);
	CHECK(pkgset_add(set, &c, "t", NULL) == 0);
	CHECK(pkgset_finish(set, "linux-64", "t", NULL) == 0);
	CHECK(report_packages_json(&env, set, &text, &len) == 0);
	CHECK(text &&
	      strstr(text, "\"platform\": \"linux-64\", \"cuda\": \"12.1\","
	                   " \"cuda_source\": \"cuda-version 12.1\", \"packages\"") != NULL);
	free(text);
	pkgset_free(set);

	CHECK(report_envs_parse("envs.json", old, strlen(old), &back, &n, &err) == 0 && n == 1);
	if (back && n == 1)
		CHECK(back[0].cuda[0] == '\0' && back[0].cuda_source[0] == '\0');
	report_envs_free(back, n);
	back = NULL;
	CHECK(report_envs_parse("envs.json", bad, strlen(bad), &back, &n, &err) == -EBADMSG);
	CHECK_STR(err.msg, "envs.json: environment 1: no valid 'cuda'");
}

int main(void)
{
	test_envs();
	test_stats();
	test_packages();
	test_cuda();
	test_mount();
	test_damaged();
	return test_exit();
}
