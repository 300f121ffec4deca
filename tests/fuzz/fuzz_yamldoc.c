// SPDX-License-Identifier: MIT
/*
 * The YAML/JSON reader (store/conda/yamldoc.c) on any bytes: an error is one line naming the
 * document; a tree is walkable within the node limit, its scalars are C strings, its
 * lines inside the text. JSON must read the same through libyaml alone (a "---" line
 * first makes it YAML) whenever libyaml takes it, as the unit test checks for real
 * records: the direct JSON reader and json_prepare must not change what a text means.
 */
#include "fuzz.h"
#include "yamldoc.h"

/* The limits yamldoc.h promises. */
#define MAX_DEPTH 64
#define MAX_NODES ((size_t)1 << 20)

static size_t walk(const struct ynode *n, size_t depth, size_t lines, size_t *visits)
{
	FUZZ_CHECK(++*visits <= MAX_NODES);
	FUZZ_CHECK(ynode_line(n) >= 1 && ynode_line(n) <= lines);
	if (!ynode_is_map(n) && !ynode_is_seq(n)) {
		FUZZ_CHECK(ynode_count(n) == 0);
		if (ynode_str(n))
			FUZZ_CHECK(strlen(ynode_str(n)) < (size_t)-1);
		return 0;
	}
	FUZZ_CHECK(depth < MAX_DEPTH);
	for (size_t i = 0; i < ynode_count(n); i++) {
		if (ynode_is_map(n)) {
			FUZZ_CHECK(ynode_key(n, i) && ynode_value(n, i));
			walk(ynode_key(n, i), depth + 1, lines, visits);
			walk(ynode_value(n, i), depth + 1, lines, visits);
		} else {
			FUZZ_CHECK(ynode_item(n, i));
			walk(ynode_item(n, i), depth + 1, lines, visits);
		}
	}
	FUZZ_CHECK(ynode_item(n, ynode_count(n)) == NULL && ynode_key(n, ynode_count(n)) == NULL);
	return 0;
}

/* a and b are the same tree, b's lines shifted by one. */
static bool same_tree(const struct ynode *a, const struct ynode *b)
{
	if (ynode_is_map(a) != ynode_is_map(b) || ynode_is_seq(a) != ynode_is_seq(b) ||
	    ynode_count(a) != ynode_count(b) || ynode_line(a) + 1 != ynode_line(b))
		return false;
	if ((ynode_str(a) == NULL) != (ynode_str(b) == NULL) ||
	    (ynode_str(a) && strcmp(ynode_str(a), ynode_str(b)) != 0))
		return false;
	for (size_t i = 0; i < ynode_count(a); i++) {
		bool same = ynode_is_map(a)
		                    ? same_tree(ynode_key(a, i), ynode_key(b, i)) &&
		                              same_tree(ynode_value(a, i), ynode_value(b, i))
		                    : same_tree(ynode_item(a, i), ynode_item(b, i));

		if (!same)
			return false;
	}
	return true;
}

/* Well-formed JSON is read without libyaml: libyaml must make the same tree of it. */
static void check_as_yaml(const uint8_t *data, size_t size, const struct yamldoc *doc)
{
	struct cfs_err err = {{0}};
	struct yamldoc *yaml = NULL;
	char *marked = malloc(size + 4);

	if (!marked)
		return;
	memcpy(marked, "---\n", 4);
	memcpy(marked + 4, data, size);
	if (yamldoc_parse("fuzz", marked, size + 4, &yaml, &err) == 0)
		FUZZ_CHECK(same_tree(yamldoc_root(doc), yamldoc_root(yaml)));
	yamldoc_free(yaml);
	free(marked);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfs_err err = {{0}};
	struct yamldoc *doc = NULL;
	size_t lines, visits = 0, i = 0;
	bool json;

	if (yamldoc_parse("fuzz", (const char *)data, size, &doc, &err) < 0) {
		FUZZ_CHECK(doc == NULL);
		fuzz_check_message(err.msg, "fuzz");
		fuzz_check_one_line(err.msg);
		return 0;
	}
	/* Line breaks as libyaml counts them (LF, CR LF, a lone CR, and the Unicode ones), and
	 * one more: libyaml ends the stream on a line of its own, where a value missing at the
	 * very end ("key:" with no newline) is put. */
	for (lines = 2; i < size; i++)
		lines += data[i] == '\n' || data[i] == '\r' || data[i] == 0x85 ||
		         (data[i] == 0xe2 && i + 2 < size && data[i + 1] == 0x80 &&
		          (data[i + 2] == 0xa8 || data[i + 2] == 0xa9));
	if (yamldoc_root(doc))
		walk(yamldoc_root(doc), 0, lines, &visits);
	for (i = 0; i < size && memchr(" \t\r\n", data[i], 4); i++)
		;
	json = i < size && (data[i] == '{' || data[i] == '[');
	/* Raw U+0085, U+2028 and U+2029 are line breaks to libyaml, not to JSON. */
	for (i = 0; json && i + 1 < size; i++)
		json = !(data[i] == 0xc2 && data[i + 1] == 0x85) &&
		       !(data[i] == 0xe2 && i + 2 < size && data[i + 1] == 0x80 &&
		         (data[i + 2] == 0xa8 || data[i + 2] == 0xa9));
	if (json && yamldoc_root(doc))
		check_as_yaml(data, size, doc);
	yamldoc_free(doc);
	return 0;
}
