// SPDX-License-Identifier: MIT
/*
 * Loads one YAML or JSON document with libyaml's document API and turns it into a tree of
 * struct ynode with direct child pointers, so callers walk it without a libyaml handle.
 * Scalars keep their text as written (no YAML 1.1 typing: "1.10" stays "1.10").
 * JSON is fed to libyaml after json_prepare(), which rewrites what libyaml would reject
 * in valid JSON while keeping every newline where it was, so line numbers stay true.
 */
#include "yamldoc.h"

#include "err.h"
#include "textfile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* conda-meta records reach a few MB (python's is 0.7 MB); lock files less. */
#define YAMLDOC_MAX_BYTES (256u << 20)

enum ynode_kind {
	YNODE_SCALAR = 1,
	YNODE_SEQ = 2,
	YNODE_MAP = 3,
};

struct ynode {
	enum ynode_kind kind;
	bool null;
	size_t line;
	const char *str; /* scalars: NUL-terminated, owned by the libyaml document */
	size_t n;
	/* sequences: n items; mappings: n (key, value) pairs, 2n pointers */
	const struct ynode **kids;
};

struct yamldoc {
	yaml_document_t doc;
	bool have_doc;
	struct ynode *nodes;
	const struct ynode **kids;
	const struct ynode *root;
};

static bool json_u_escape(const char *p, size_t avail, unsigned *ret)
{
	char hex[5];
	unsigned long v;

	if (avail < 6 || p[0] != '\\' || p[1] != 'u')
		return false;
	memcpy(hex, p + 2, 4);
	hex[4] = '\0';
	if (strspn(hex, "0123456789abcdefABCDEF") != 4)
		return false;
	v = strtoul(hex, NULL, 16);
	*ret = (unsigned)v;
	return true;
}

/*
 * What valid JSON may hold and libyaml 0.2.5 rejects or changes, and what we write
 * instead (same newlines, so libyaml's line numbers are the file's):
 * - a surrogate pair "\ud83d\ude00": libyaml refuses each half; we write "\U0001f600";
 * - raw U+007F, U+0080-U+009F, U+FFFE, U+FFFF in a string: libyaml calls them control
 *   characters; raw U+0085, U+2028, U+2029: libyaml folds them as line breaks. We write
 *   them as escapes;
 * - a tab outside a string where YAML's block context forbids it (before the first '{');
 *   we write a space;
 * - whitespace, even a newline, between a key and its ':': libyaml then no longer sees a
 *   key; we move the ':' to right after the key.
 * "\/" needs nothing: libyaml reads it. Keys longer than 1024 bytes stay unsupported
 * (libyaml's simple-key limit); no conda file has one.
 * YAML flow text starting with '{' also comes here: single-quoted strings and comments
 * are copied as they are.
 */
static int json_prepare(const char *in, size_t len, char **ret, size_t *ret_len)
{
	size_t i = 0, o = 0, key_end = SIZE_MAX, cap;
	bool in_dq = false, in_sq = false;
	char *out;

	/* An escape written for a raw character is at most twice as long as the UTF-8 bytes
	 * it replaces (2 -> 4 for U+0080, 3 -> 6 for U+2028). */
	if (len > (SIZE_MAX - 1) / 2)
		return -ENOMEM;
	cap = 2 * len + 1;
	out = malloc(cap);
	if (!out)
		return -ENOMEM;
	while (i < len) {
		unsigned char c = (unsigned char)in[i];

		if (in_dq) {
			unsigned hi, lo;

			if (c == '\\' && json_u_escape(in + i, len - i, &hi) && hi >= 0xd800 &&
			    hi <= 0xdbff && json_u_escape(in + i + 6, len - i - 6, &lo) &&
			    lo >= 0xdc00 && lo <= 0xdfff) {
				unsigned cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);

				o += (size_t)snprintf(out + o, cap - o, "\\U%08x", cp);
				i += 12;
			} else if (c == '\\') {
				out[o++] = in[i++];
				if (i < len)
					out[o++] = in[i++];
			} else if (c == '"') {
				out[o++] = in[i++];
				in_dq = false;
				key_end = o;
			} else if (c == 0x7f) {
				o += (size_t)snprintf(out + o, cap - o, "\\x7f");
				i++;
			} else if (c == 0xc2 && i + 1 < len && (unsigned char)in[i + 1] >= 0x80 &&
			           (unsigned char)in[i + 1] <= 0x9f) {
				o += (size_t)snprintf(out + o, cap - o, "\\x%02x",
				                      (unsigned char)in[i + 1]);
				i += 2;
			} else if (c == 0xe2 && i + 2 < len && (unsigned char)in[i + 1] == 0x80 &&
			           ((unsigned char)in[i + 2] == 0xa8 ||
			            (unsigned char)in[i + 2] == 0xa9)) {
				o += (size_t)snprintf(out + o, cap - o, "\\u20%02x",
				                      (unsigned char)in[i + 2] - 0x80u);
				i += 3;
			} else if (c == 0xef && i + 2 < len && (unsigned char)in[i + 1] == 0xbf &&
			           ((unsigned char)in[i + 2] == 0xbe ||
			            (unsigned char)in[i + 2] == 0xbf)) {
				o += (size_t)snprintf(out + o, cap - o, "\\uff%02x",
				                      (unsigned char)in[i + 2] - 0x80u + 0xc0u);
				i += 3;
			} else {
				out[o++] = in[i++];
			}
			continue;
		}
		if (in_sq) {
			if (c == '\'' && i + 1 < len && in[i + 1] == '\'') {
				out[o++] = in[i++];
			} else if (c == '\'') {
				in_sq = false;
				key_end = o + 1;
			}
			out[o++] = in[i++];
			continue;
		}
		if (c == '#' && (i == 0 || in[i - 1] == ' ' || in[i - 1] == '\t' ||
		                 in[i - 1] == '\n' || in[i - 1] == '\r')) {
			while (i < len && in[i] != '\n')
				out[o++] = in[i++];
			key_end = SIZE_MAX;
			continue;
		}
		if (c == ':' && key_end != SIZE_MAX && key_end < o) {
			memmove(out + key_end + 1, out + key_end, o - key_end);
			out[key_end] = ':';
			o++;
			i++;
			key_end = SIZE_MAX;
			continue;
		}
		if (c == '\t') {
			out[o++] = ' ';
			i++;
			continue;
		}
		out[o++] = in[i++];
		if (c == '"')
			in_dq = true;
		else if (c == '\'')
			in_sq = true;
		if (c != ' ' && c != '\n' && c != '\r')
			key_end = SIZE_MAX;
	}
	out[o] = '\0';
	*ret = out;
	*ret_len = o;
	return 0;
}

static bool looks_like_json(const char *text, size_t len)
{
	size_t i = 0;

	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	return i < len && (text[i] == '{' || text[i] == '[');
}

static bool scalar_is_null(const yaml_node_t *node)
{
	const char *v = (const char *)node->data.scalar.value;

	if (node->tag && strcmp((const char *)node->tag, YAML_NULL_TAG) == 0)
		return true;
	if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int parse_error(const char *name, const char *kind, const yaml_parser_t *parser,
                       const char *text, struct cfs_err *err)
{
	const char *problem = parser->problem ? parser->problem : "cannot parse";
	size_t line;

	if (parser->error == YAML_MEMORY_ERROR)
		return err_set(err, -ENOMEM, "%s: out of memory", name);
	if (parser->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		line = 1;
		for (size_t i = 0; i < parser->problem_offset && text[i]; i++)
			line += text[i] == '\n';
		return err_set(err, -EINVAL, "%s:%zu: invalid %s: %s", name, line, kind, problem);
	}
	line = parser->problem_mark.line + 1;
	/* The problem is often found far from its cause (an unclosed '[' shows at the end of
	 * the file): say where the construct began. */
	if (parser->context)
		return err_set(err, -EINVAL, "%s:%zu: invalid %s: %s (%s at line %zu)", name, line,
		               kind, problem, parser->context, parser->context_mark.line + 1);
	return err_set(err, -EINVAL, "%s:%zu: invalid %s: %s", name, line, kind, problem);
}

/* Build the ynode tree from the loaded libyaml document. */
static int build_tree(const char *name, struct yamldoc *d, struct cfs_err *err)
{
	yaml_node_t *first = d->doc.nodes.start;
	size_t count = (size_t)(d->doc.nodes.top - first), nkids = 0, k = 0;

	if (count == 0)
		return 0;
	for (size_t i = 0; i < count; i++) {
		const yaml_node_t *y = first + i;
		size_t add = 0;

		if (y->type == YAML_SEQUENCE_NODE)
			add = (size_t)(y->data.sequence.items.top - y->data.sequence.items.start);
		else if (y->type == YAML_MAPPING_NODE &&
		         __builtin_mul_overflow(
		                 (size_t)(y->data.mapping.pairs.top - y->data.mapping.pairs.start),
		                 2, &add))
			return err_set(err, -ENOMEM, "%s: out of memory", name);
		if (__builtin_add_overflow(nkids, add, &nkids))
			return err_set(err, -ENOMEM, "%s: out of memory", name);
	}
	d->nodes = calloc(count, sizeof(*d->nodes));
	d->kids = calloc(nkids ? nkids : 1, sizeof(*d->kids));
	if (!d->nodes || !d->kids)
		return err_set(err, -ENOMEM, "%s: out of memory", name);
	for (size_t i = 0; i < count; i++) {
		const yaml_node_t *y = first + i;
		struct ynode *n = &d->nodes[i];

		n->line = y->start_mark.line + 1;
		n->kids = d->kids + k;
		switch (y->type) {
		case YAML_SCALAR_NODE:
			n->kind = YNODE_SCALAR;
			n->null = scalar_is_null(y);
			n->str = (const char *)y->data.scalar.value;
			/* A "\0" escape would silently cut every C string we hand out. */
			if (memchr(y->data.scalar.value, 0, y->data.scalar.length))
				return err_set(err, -EINVAL,
				               "%s:%zu: a NUL character inside a string is not "
				               "supported",
				               name, n->line);
			break;
		case YAML_SEQUENCE_NODE:
			n->kind = YNODE_SEQ;
			for (yaml_node_item_t *it = y->data.sequence.items.start;
			     it < y->data.sequence.items.top; it++)
				d->kids[k++] = &d->nodes[*it - 1];
			n->n = (size_t)(y->data.sequence.items.top - y->data.sequence.items.start);
			break;
		case YAML_MAPPING_NODE:
			n->kind = YNODE_MAP;
			for (yaml_node_pair_t *p = y->data.mapping.pairs.start;
			     p < y->data.mapping.pairs.top; p++) {
				d->kids[k++] = &d->nodes[p->key - 1];
				d->kids[k++] = &d->nodes[p->value - 1];
			}
			n->n = (size_t)(y->data.mapping.pairs.top - y->data.mapping.pairs.start);
			break;
		case YAML_NO_NODE:
			return err_set(err, -EINVAL, "%s:%zu: empty YAML node", name, n->line);
		}
	}
	/* libyaml numbers the root node 1. */
	d->root = &d->nodes[0];
	return 0;
}

int yamldoc_parse(const char *name, const char *text, size_t len, struct yamldoc **ret,
                  struct cfs_err *err)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	struct yamldoc *d = NULL;
	char *prepared = NULL;
	const char *kind = "YAML";
	bool have_parser = false;
	int r;

	if (looks_like_json(text, len)) {
		kind = "JSON";
		r = json_prepare(text, len, &prepared, &len);
		if (r < 0) {
			r = err_set(err, r, "%s: out of memory", name);
			goto out;
		}
		text = prepared;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !yaml_parser_initialize(&parser)) {
		r = err_set(err, -ENOMEM, "%s: out of memory", name);
		goto out;
	}
	have_parser = true;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &d->doc)) {
		r = parse_error(name, kind, &parser, text, err);
		goto out;
	}
	d->have_doc = true;
	/* A second document would be ignored silently by a one-document reader. */
	if (!yaml_parser_load(&parser, &extra)) {
		r = parse_error(name, kind, &parser, text, err);
		goto out;
	}
	if (yaml_document_get_root_node(&extra)) {
		size_t line = extra.start_mark.line + 1;

		yaml_document_delete(&extra);
		r = err_set(err, -EINVAL, "%s:%zu: a second YAML document; expected one", name,
		            line);
		goto out;
	}
	yaml_document_delete(&extra);
	r = build_tree(name, d, err);
	if (r < 0)
		goto out;
	*ret = d;
	d = NULL;
out:
	if (have_parser)
		yaml_parser_delete(&parser);
	yamldoc_free(d);
	free(prepared);
	return r;
}

int yamldoc_load(int dirfd, const char *path, const char *display, struct yamldoc **ret,
                 struct cfs_err *err)
{
	char *text;
	size_t len;
	int r;

	r = textfile_read(dirfd, path, display, YAMLDOC_MAX_BYTES, &text, &len, err);
	if (r < 0)
		return r;
	r = yamldoc_parse(display, text, len, ret, err);
	free(text);
	return r;
}

void yamldoc_free(struct yamldoc *doc)
{
	if (!doc)
		return;
	if (doc->have_doc)
		yaml_document_delete(&doc->doc);
	free(doc->nodes);
	free(doc->kids);
	free(doc);
}

const struct ynode *yamldoc_root(const struct yamldoc *doc)
{
	return doc ? doc->root : NULL;
}

bool ynode_is_map(const struct ynode *n)
{
	return n && n->kind == YNODE_MAP;
}

bool ynode_is_seq(const struct ynode *n)
{
	return n && n->kind == YNODE_SEQ;
}

size_t ynode_line(const struct ynode *n)
{
	return n ? n->line : 0;
}

const char *ynode_str(const struct ynode *n)
{
	return n && n->kind == YNODE_SCALAR && !n->null ? n->str : NULL;
}

size_t ynode_count(const struct ynode *n)
{
	return n ? n->n : 0;
}

const struct ynode *ynode_item(const struct ynode *n, size_t i)
{
	return n && n->kind == YNODE_SEQ && i < n->n ? n->kids[i] : NULL;
}

const struct ynode *ynode_key(const struct ynode *n, size_t i)
{
	return n && n->kind == YNODE_MAP && i < n->n ? n->kids[2 * i] : NULL;
}

const struct ynode *ynode_value(const struct ynode *n, size_t i)
{
	return n && n->kind == YNODE_MAP && i < n->n ? n->kids[2 * i + 1] : NULL;
}

const struct ynode *ynode_get(const struct ynode *n, const char *key)
{
	if (!n || n->kind != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < n->n; i++) {
		const char *k = ynode_str(n->kids[2 * i]);

		if (k && strcmp(k, key) == 0)
			return n->kids[2 * i + 1];
	}
	return NULL;
}
