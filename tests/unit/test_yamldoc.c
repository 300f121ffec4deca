// SPDX-License-Identifier: MIT
/*
 * yamldoc: YAML and JSON into a node tree. Covers lookups and scalar text as written,
 * the JSON that libyaml alone would refuse or change (surrogate pairs, raw control and
 * line-separator characters, tabs, a newline before ':'), error lines, and every real
 * conda-meta record in the fixtures, the 728 KB python one included, each read both as
 * JSON (without libyaml) and as YAML (by libyaml) into the same tree.
 */
#include "test.h"
#include "testfs.h"
#include "yamldoc.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static struct yamldoc *parse(const char *text, struct cfs_err *err)
{
	struct yamldoc *doc = NULL;

	if (yamldoc_parse("t", text, strlen(text), &doc, err) < 0)
		return NULL;
	return doc;
}

static void test_yaml(void)
{
	struct cfs_err err = {{0}};
	struct yamldoc *doc = parse("# a comment\n"
	                            "name: env\n"
	                            "version: 1.10\n"
	                            "quoted: '1.10'\n"
	                            "nothing:\n"
	                            "tilde: ~\n"
	                            "word: \"null\"\n"
	                            "empty: ''\n"
	                            "list:\n"
	                            "  - a\n"
	                            "  - {pip: [x, y]}\n",
	                            &err);
	const struct ynode *root, *list;

	CHECK(doc != NULL);
	if (!doc)
		return;
	root = yamldoc_root(doc);
	CHECK(ynode_is_map(root));
	CHECK(ynode_count(root) == 8);
	CHECK_STR(ynode_str(ynode_get(root, "name")), "env");
	CHECK(ynode_line(ynode_get(root, "name")) == 2);
	/* text as written: no YAML 1.1 float typing */
	CHECK_STR(ynode_str(ynode_get(root, "version")), "1.10");
	CHECK_STR(ynode_str(ynode_get(root, "quoted")), "1.10");
	/* what a writer must quote again (link.c's conda-meta records) */
	CHECK(!ynode_is_quoted(ynode_get(root, "version")));
	CHECK(ynode_is_quoted(ynode_get(root, "quoted")) &&
	      ynode_is_quoted(ynode_get(root, "word")));
	CHECK(!ynode_is_quoted(ynode_get(root, "list")) && !ynode_is_quoted(NULL));
	CHECK(ynode_get(root, "nothing") != NULL);
	CHECK(ynode_str(ynode_get(root, "nothing")) == NULL);
	CHECK(ynode_str(ynode_get(root, "tilde")) == NULL);
	CHECK_STR(ynode_str(ynode_get(root, "word")), "null");
	CHECK_STR(ynode_str(ynode_get(root, "empty")), "");
	CHECK(ynode_get(root, "missing") == NULL);
	list = ynode_get(root, "list");
	CHECK(ynode_is_seq(list));
	CHECK(ynode_count(list) == 2);
	CHECK_STR(ynode_str(ynode_item(list, 0)), "a");
	CHECK(ynode_item(list, 2) == NULL);
	CHECK_STR(ynode_str(ynode_item(ynode_get(ynode_item(list, 1), "pip"), 1)), "y");
	CHECK(ynode_line(ynode_item(list, 1)) == 11);
	CHECK_STR(ynode_str(ynode_key(root, 0)), "name");
	CHECK_STR(ynode_str(ynode_value(root, 0)), "env");
	CHECK(ynode_key(list, 0) == NULL);
	/* NULL propagates through chained lookups */
	CHECK(ynode_get(ynode_get(root, "nope"), "deeper") == NULL);
	CHECK(ynode_str(NULL) == NULL && ynode_count(NULL) == 0 && !ynode_is_map(NULL));
	yamldoc_free(doc);

	doc = parse("", &err);
	CHECK(doc != NULL && yamldoc_root(doc) == NULL);
	yamldoc_free(doc);
	doc = parse("# only a comment\n", &err);
	CHECK(doc != NULL && yamldoc_root(doc) == NULL);
	yamldoc_free(doc);
}

static void test_json(void)
{
	struct cfs_err err = {{0}};
	struct yamldoc *doc;
	const struct ynode *root;

	/* "\/" escapes, tabs (a leading one too), no blank after ':' */
	doc = parse("\t{\n\t\"url\":\t\"https:\\/\\/channel.example.invalid\\/main\",\n"
	            "\t\"n\":[1,\t2]}",
	            &err);
	CHECK(doc != NULL);
	root = yamldoc_root(doc);
	CHECK_STR(ynode_str(ynode_get(root, "url")), "https://channel.example.invalid/main");
	CHECK(ynode_count(ynode_get(root, "n")) == 2);
	CHECK(ynode_line(ynode_get(root, "n")) == 3);
	CHECK(ynode_is_quoted(ynode_get(root, "url")));
	CHECK(!ynode_is_quoted(ynode_item(ynode_get(root, "n"), 0)));
	yamldoc_free(doc);

	/* Python's json.dump writes astral characters as surrogate pairs. */
	doc = parse("{\"a\": \"x\\ud83d\\ude00y\", \"b\": \"\\u00e9\\uD834\\uDD1E\"}", &err);
	CHECK(doc != NULL);
	root = yamldoc_root(doc);
	CHECK_STR(ynode_str(ynode_get(root, "a")), "x\xf0\x9f\x98\x80y");
	CHECK_STR(ynode_str(ynode_get(root, "b")), "\xc3\xa9\xf0\x9d\x84\x9e");
	yamldoc_free(doc);

	/* Raw characters JSON allows in strings and libyaml refuses or folds. */
	doc = parse("{\"del\": \"a\x7f\", \"c1\": \"\xc2\x80\xc2\x9f\", \"nel\": \"a\xc2\x85"
	            "b\",\n \"ls\": \"a\xe2\x80\xa8\xe2\x80\xa9\", \"nc\": "
	            "\"\xef\xbf\xbe\xef\xbf\xbf\"}",
	            &err);
	CHECK(doc != NULL);
	root = yamldoc_root(doc);
	CHECK_STR(ynode_str(ynode_get(root, "del")), "a\x7f");
	CHECK_STR(ynode_str(ynode_get(root, "c1")), "\xc2\x80\xc2\x9f");
	CHECK_STR(ynode_str(ynode_get(root, "nel")), "a\xc2\x85"
	                                             "b");
	CHECK_STR(ynode_str(ynode_get(root, "ls")), "a\xe2\x80\xa8\xe2\x80\xa9");
	CHECK_STR(ynode_str(ynode_get(root, "nc")), "\xef\xbf\xbe\xef\xbf\xbf");
	CHECK(ynode_line(ynode_get(root, "ls")) == 2);
	yamldoc_free(doc);

	/* Whitespace, even a newline, between a key and its ':' */
	doc = parse("{\"a\"\n  : 1, \"b\" :\n2,\n\"c\": {\"d\"\t: [\"e\"\n]}}\n", &err);
	CHECK(doc != NULL);
	root = yamldoc_root(doc);
	CHECK_STR(ynode_str(ynode_get(root, "a")), "1");
	CHECK_STR(ynode_str(ynode_get(root, "b")), "2");
	CHECK(ynode_line(ynode_get(root, "b")) == 3);
	CHECK_STR(ynode_str(ynode_item(ynode_get(ynode_get(root, "c"), "d"), 0)), "e");
	yamldoc_free(doc);

	/* JSON null, numbers, booleans keep their text; null is no string */
	doc = parse("[null, 1e5, true, \"\"]", &err);
	CHECK(doc != NULL);
	root = yamldoc_root(doc);
	CHECK(ynode_str(ynode_item(root, 0)) == NULL);
	CHECK_STR(ynode_str(ynode_item(root, 1)), "1e5");
	CHECK_STR(ynode_str(ynode_item(root, 2)), "true");
	CHECK_STR(ynode_str(ynode_item(root, 3)), "");
	yamldoc_free(doc);

	/* Quotes inside strings and escaped quotes do not confuse the rewriting. */
	doc = parse("{\"a\": \"it's \\\"x\\\"\\t\", \"b\"\n: \"#c\"}", &err);
	CHECK(doc != NULL);
	root = yamldoc_root(doc);
	CHECK_STR(ynode_str(ynode_get(root, "a")), "it's \"x\"\t");
	CHECK_STR(ynode_str(ynode_get(root, "b")), "#c");
	yamldoc_free(doc);
}

static void check_error(const char *text, const char *want, int want_rc)
{
	struct cfs_err err = {{0}};
	struct yamldoc *doc = NULL;
	int r = yamldoc_parse("t.yml", text, strlen(text), &doc, &err);

	CHECK(r == want_rc);
	CHECK(doc == NULL);
	if (!strstr(err.msg, want)) {
		test_failures++;
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err.msg, want);
	}
}

static void test_errors(void)
{
	check_error("a: 1\nb: [1, 2\nc: 3\n",
	            "t.yml:3: invalid YAML: did not find expected ',' or ']' (while parsing a flow "
	            "sequence at line 2)",
	            -EINVAL);
	check_error("a: 1\n b: 2\n", "t.yml:2: invalid YAML: mapping values are not allowed",
	            -EINVAL);
	/* the reader reports an offset; the line is still right */
	check_error("a: 1\nb: 2\nc: \xff\n", "t.yml:3: invalid YAML: invalid leading UTF-8 octet",
	            -EINVAL);
	check_error("{\n\"a\": 1,\n\"b\" 2\n}", "t.yml:3: invalid JSON:", -EINVAL);
	check_error("{\"a\": \"x\\u0000y\"}", "t.yml:1: a NUL character", -EINVAL);
	check_error("a: 1\n---\nb: 2\n", "t.yml:2: a second YAML document", -EINVAL);
	check_error("a: *nope\n", "t.yml:1: invalid YAML: found undefined alias", -EINVAL);
	check_error("a: &x [1, *x]\n", "t.yml:1: invalid YAML: an alias inside the node it names",
	            -EINVAL);
	check_error("a: &x 1\nb: &x 2\n", "t.yml:2: invalid YAML: found duplicate anchor", -EINVAL);
}

/* An alias reads as the node it names, as libyaml's loader made it. */
static void test_alias(void)
{
	struct cfs_err err = {{0}};
	struct yamldoc *doc = parse("base: &b {name: x, list: [1, 2]}\nother: *b\n", &err);
	const struct ynode *root = yamldoc_root(doc);

	CHECK(doc != NULL);
	CHECK_STR(ynode_str(ynode_get(ynode_get(root, "other"), "name")), "x");
	CHECK(ynode_count(ynode_get(ynode_get(root, "other"), "list")) == 2);
	CHECK(ynode_line(ynode_get(root, "other")) == 1);
	yamldoc_free(doc);
}

/*
 * Raw characters JSON allows in strings and libyaml refuses or folds, thousands of them:
 * valid JSON reads them as they are. Text the JSON reader refuses (a trailing comma) once
 * went through a rewriting pass that wrote each DEL as the four bytes \x7f into a buffer
 * of 2 * len + 1: a heap overflow. It goes to libyaml unchanged now, which refuses the
 * control characters with one line.
 */
static void test_escape_growth(void)
{
	static const char *const raw[] = {"\x7f", "\xc2\x80", "\xe2\x80\xa8", "\xef\xbf\xbf"};

	for (size_t k = 0; k < sizeof(raw) / sizeof(raw[0]); k++) {
		size_t n = 4096, rl = strlen(raw[k]), len = 0;
		char *text = malloc(n * rl + 16), *want = malloc(n * rl + 1);
		struct cfs_err err = {{0}};
		struct yamldoc *doc = NULL;
		int r;

		if (!text || !want)
			abort();
		len += (size_t)snprintf(text, 16, "{\"a\": \"");
		for (size_t i = 0; i < n; i++) {
			memcpy(text + len, raw[k], rl);
			memcpy(want + i * rl, raw[k], rl);
			len += rl;
		}
		want[n * rl] = '\0';
		memcpy(text + len, "\"}", 3);
		CHECK(yamldoc_parse("t.json", text, len + 2, &doc, &err) == 0);
		CHECK_STR(ynode_str(ynode_get(yamldoc_root(doc), "a")), want);
		yamldoc_free(doc);
		doc = NULL;
		memcpy(text + len, "\",}", 4);
		r = yamldoc_parse("t.json", text, len + 3, &doc, &err);
		CHECK(r == 0 || (r == -EINVAL && doc == NULL &&
		                 strncmp(err.msg, "t.json:1: invalid JSON: ", 24) == 0 &&
		                 !strchr(err.msg, '\n')));
		yamldoc_free(doc);
		free(text);
		free(want);
	}
}

/*
 * Parse text in a child and return its error message (malloc'd, "" on success) and, in
 * *ret_kib, how far the parse raised the child's peak RSS. A child, so that a parser that
 * runs away fails this test rather than the machine.
 */
static char *parse_in_child(const char *text, size_t len, long *ret_kib)
{
	char buf[4096];
	size_t got = 0;
	int fds[2], status;
	pid_t pid;

	if (pipe(fds) < 0 || (pid = fork()) < 0)
		abort();
	if (pid == 0) {
		struct cfs_err err = {{0}};
		struct yamldoc *doc = NULL;
		struct rusage before, after;
		char msg[4096];
		int n;

		close(fds[0]);
		getrusage(RUSAGE_SELF, &before);
		if (yamldoc_parse("t.yml", text, len, &doc, &err) == 0)
			err.msg[0] = '\0';
		getrusage(RUSAGE_SELF, &after);
		n = snprintf(msg, sizeof(msg), "%ld %s", after.ru_maxrss - before.ru_maxrss,
		             err.msg);
		if (write(fds[1], msg, (size_t)n) != n)
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	for (ssize_t n; (n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0;)
		got += (size_t)n;
	close(fds[0]);
	buf[got] = '\0';
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		*ret_kib = -1;
		return strdup("(the child died)");
	}
	*ret_kib = strtol(buf, NULL, 10);
	return strdup(strchr(buf, ' ') ? strchr(buf, ' ') + 1 : "");
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail,
                    size_t *ret_len)
{
	size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
	char *s = malloc(hl + ul * times + tl + 1);

	if (!s)
		abort();
	memcpy(s, head, hl);
	for (size_t i = 0; i < times; i++)
		memcpy(s + hl + i * ul, unit, ul);
	memcpy(s + hl + ul * times, tail, tl + 1);
	*ret_len = hl + ul * times + tl;
	return s;
}

/*
 * Deep or huge documents fail early, with one line naming the line where the limit was
 * reached, without the time and memory libyaml's document loader spent on them (quadratic
 * in depth; ~180 bytes per input byte). Memory is measured, not time: a bound on memory
 * that does not grow with the input also keeps the time linear.
 */
/* ASan pads every block and keeps freed ones in a quarantine (libyaml frees each event). */
#ifdef __SANITIZE_ADDRESS__
#define RSS_FACTOR 3
#else
#define RSS_FACTOR 1
#endif

static void check_limit_text(const char *what, char *text, size_t len, const char *want,
                             long max_mib)
{
	long kib;
	char *msg = parse_in_child(text, len, &kib);

	printf("%s: %zu bytes: peak RSS +%ld KiB: %s\n", what, len, kib, msg);
	if ((*want ? !strstr(msg, want) : *msg != '\0') || strchr(msg, '\n')) {
		test_failures++;
		fprintf(stderr, "%s: error \"%s\" is not \"%s\"\n", what, msg, want);
	}
	CHECK(kib >= 0 && kib < max_mib * 1024 * RSS_FACTOR);
	free(msg);
	free(text);
}

static void check_limit(const char *what, const char *head, const char *unit, size_t times,
                        const char *tail, const char *want, long max_mib)
{
	size_t len;
	char *text = repeat(head, unit, times, tail, &len);

	check_limit_text(what, text, len, want, max_mib);
}

/* levels mappings, each indented one more than its parent. */
static char *block_maps(size_t levels, size_t *ret_len)
{
	char *text = malloc(levels * (levels + 3) + 1);
	size_t len = 0;

	if (!text)
		abort();
	for (size_t i = 0; i < levels; i++) {
		memset(text + len, ' ', i);
		len += i;
		memcpy(text + len, "a:\n", 3);
		len += 3;
	}
	text[len] = '\0';
	*ret_len = len;
	return text;
}

/*
 * The bounds: a deep document stops within a few KiB; the node limit is what bounds a
 * wide one (about 60 bytes a node, doubled while an array grows). Before, these inputs
 * took 55 MB (200 KB of '['), 720 MB (4 MB of "- ") and 430 MB (8 MB of "- 1").
 */
static void test_limits(void)
{
	char *text, closes[65];
	size_t len;

	check_limit("JSON [ x 200k", "", "[", 200000, "", "t.yml:1: more than 64 levels of nesting",
	            16);
	check_limit("YAML flow [ x 200k", "a: ", "[", 200000, "",
	            "t.yml:1: more than 64 levels of nesting", 16);
	check_limit("YAML block - x 2M", "", "- ", 2000000, "",
	            "t.yml:1: more than 64 levels of nesting", 16);
	text = block_maps(100, &len);
	check_limit_text("YAML block maps", text, len, "t.yml:65: more than 64 levels of nesting",
	                 16);
	/* 64 levels are fine, in JSON and in YAML. */
	memset(closes, ']', 64);
	closes[64] = '\0';
	text = repeat("", "[", 64, closes, &len);
	check_limit_text("JSON 64 levels", text, len, "", 16);
	text = block_maps(64, &len);
	check_limit_text("YAML 64 levels", text, len, "", 16);
	/* Many small nodes: the count is what a walk of the tree visits. */
	check_limit("JSON many nodes", "[", "1,", 1100000, "1]", "more than 1048576 nodes", 128);
	check_limit("YAML many nodes", "", "- 1\n", 1100000, "", "more than 1048576 nodes", 128);
	/* Aliases are counted once per use: a "billion laughs" stays small. */
	check_limit(
	        "YAML aliases",
	        "a: &a [1, 2, 3, 4, 5, 6, 7, 8]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
	        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
	        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\n"
	        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f]\n",
	        "h: [*g, *g]\n", 1, "", "t.yml:7: more than 1048576 nodes", 16);
}

/* a and b are the same tree, b's lines shifted by shift. */
static bool same_tree(const struct ynode *a, const struct ynode *b, size_t shift)
{
	if (ynode_is_map(a) != ynode_is_map(b) || ynode_is_seq(a) != ynode_is_seq(b) ||
	    ynode_count(a) != ynode_count(b) || ynode_line(a) + shift != ynode_line(b))
		return false;
	if ((ynode_str(a) == NULL) != (ynode_str(b) == NULL) ||
	    (ynode_str(a) && strcmp(ynode_str(a), ynode_str(b)) != 0))
		return false;
	for (size_t i = 0; i < ynode_count(a); i++) {
		bool same = ynode_is_map(a)
		                    ? same_tree(ynode_key(a, i), ynode_key(b, i), shift) &&
		                              same_tree(ynode_value(a, i), ynode_value(b, i), shift)
		                    : same_tree(ynode_item(a, i), ynode_item(b, i), shift);

		if (!same)
			return false;
	}
	return true;
}

/* JSON is read without libyaml when it is well-formed: the tree must be the one libyaml
 * makes of the same text, which it reads as YAML when a document marker comes first. */
static void check_as_yaml(const char *path)
{
	struct cfs_err err = {{0}};
	struct yamldoc *json = NULL, *yaml = NULL;
	char *text = NULL, *marked = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");

	CHECK(f != NULL);
	if (!f)
		return;
	CHECK(getdelim(&text, &len, '\0', f) > 0);
	fclose(f);
	CHECK(asprintf(&marked, "---\n%s", text) > 0);
	CHECK(yamldoc_parse("j", text, strlen(text), &json, &err) == 0);
	CHECK(yamldoc_parse("y", marked, strlen(marked), &yaml, &err) == 0);
	CHECK(json && yaml && same_tree(yamldoc_root(json), yamldoc_root(yaml), 1));
	yamldoc_free(json);
	yamldoc_free(yaml);
	free(marked);
	free(text);
}

static void test_load(void)
{
	static const char *const records[] = {
	        "conda/conda-meta/conda-25.1_osx-arm64/bzip2-1.0.8-h99b78c6_7.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/libffi-3.4.2-h3422bc3_5.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/libzlib-1.3.1-h8359307_2.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/pip-25.0.1-pyh145f28c_0.json",
	        "conda/conda-meta/conda-25.1_osx-arm64/python-3.13.2-hfd29fff_1_cp313t.json",
	        "conda/conda-meta/conda-4.x_osx-64/pip-10.0.1-py27_0.json",
	        "conda/conda-meta/conda-4.x_osx-64/zlib-1.2.11-hf3cbc9b_2.json",
	        "conda/conda-meta/micromamba_win-64/requests-2.28.2-pyhd8ed1ab_0.json",
	        "conda/conda-meta/rattler_osx-arm64/libsqlite-3.45.3-h091b4b1_0.json",
	};
	struct cfs_err err = {{0}};
	struct yamldoc *doc;
	char *path;

	for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
		const struct ynode *root;
		const char *file = strrchr(records[i], '/') + 1, *name;

		path = testfs_fixture(records[i]);
		check_as_yaml(path);
		doc = NULL;
		CHECK(yamldoc_load(AT_FDCWD, path, path, 1 << 20, &doc, &err) == 0);
		free(path);
		if (!doc)
			continue;
		root = yamldoc_root(doc);
		CHECK(ynode_is_map(root));
		/* the file is named <name>-<version>-<build>.json */
		name = ynode_str(ynode_get(root, "name"));
		CHECK(name && strncmp(file, name, strlen(name)) == 0);
		CHECK(ynode_count(ynode_get(root, "files")) ==
		      ynode_count(ynode_get(ynode_get(root, "paths_data"), "paths")));
		yamldoc_free(doc);
	}

	path = testfs_fixture(
	        "conda/conda-meta/conda-25.1_osx-arm64/python-3.13.2-hfd29fff_1_cp313t.json");
	doc = NULL;
	CHECK(yamldoc_load(AT_FDCWD, path, path, 1 << 20, &doc, &err) == 0);
	if (doc) {
		const struct ynode *root = yamldoc_root(doc);
		const struct ynode *paths = ynode_get(ynode_get(root, "paths_data"), "paths");

		CHECK(ynode_count(ynode_get(root, "files")) == 1875);
		CHECK(ynode_count(paths) == 1875);
		CHECK_STR(ynode_str(ynode_get(root, "python_site_packages_path")),
		          "lib/python3.13t/site-packages");
		CHECK_STR(ynode_str(ynode_get(root, "requested_spec")), "python=3.13");
	}
	yamldoc_free(doc);
	free(path);

	/* micromamba writes Windows paths with escaped backslashes, and JSON nulls */
	path = testfs_fixture(
	        "conda/conda-meta/micromamba_win-64/requests-2.28.2-pyhd8ed1ab_0.json");
	doc = NULL;
	CHECK(yamldoc_load(AT_FDCWD, path, path, 1 << 20, &doc, &err) == 0);
	if (doc) {
		const struct ynode *root = yamldoc_root(doc);

		CHECK_STR(ynode_str(ynode_item(ynode_get(root, "files"), 0)),
		          "Lib\\site-packages\\requests-2.28.2.dist-info\\INSTALLER");
		CHECK(ynode_get(root, "requested_spec") != NULL);
		CHECK(ynode_str(ynode_get(root, "requested_spec")) == NULL);
	}
	yamldoc_free(doc);
	free(path);

	doc = NULL;
	CHECK(yamldoc_load(AT_FDCWD, "/nonexistent/x.json", "/nonexistent/x.json", 1 << 20, &doc,
	                   &err) == -ENOENT);
	CHECK(strstr(err.msg, "/nonexistent/x.json: No such file") != NULL);
	CHECK(yamldoc_load(AT_FDCWD, "/", "/", 1 << 20, &doc, &err) == -EINVAL);
	CHECK(strstr(err.msg, "/: not a regular file") != NULL);
}

int main(void)
{
	test_yaml();
	test_json();
	test_errors();
	test_alias();
	test_escape_growth();
	test_limits();
	test_load();
	return test_exit();
}
