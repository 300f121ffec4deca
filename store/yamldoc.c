// SPDX-License-Identifier: MIT
/*
 * Loads one YAML or JSON document with libyaml's document API and turns it into a tree of
 * struct ynode with direct child pointers, so callers walk it without a libyaml handle.
 * Scalars keep their text as written (no YAML 1.1 typing: "1.10" stays "1.10").
 * Well-formed JSON is read into the same tree without libyaml (json_parse), which is
 * several times faster; other JSON is fed to libyaml after json_prepare(), which rewrites
 * what libyaml would reject in valid JSON while keeping every newline where it was, so
 * line numbers stay true.
 */
#include "yamldoc.h"

#include "err.h"
#include "textfile.h"

#include <ctype.h>
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
	const char *str; /* scalars: NUL-terminated, owned by the document */
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
	char *strs; /* the scalars' text when read without libyaml */
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

/* ---- well-formed JSON without libyaml ---- */

/*
 * conda-meta records are JSON, megabytes of it in an environment, and libyaml reads it at
 * a few tens of MB/s: most of an ingest's start-up. Well-formed JSON is read here straight
 * into the tree build_tree makes of libyaml's document (scalars as written, a JSON null
 * null, each node's line where it starts). What this reader does not take (YAML flow
 * syntax, malformed text, invalid UTF-8, a lone surrogate or a NUL escape, deep nesting)
 * goes the libyaml way, so its tree or its error is what it always was.
 */
#define JSON_DEPTH_MAX 512

struct json {
	const char *p, *end;
	size_t line;
	struct ynode *nodes;
	size_t nnodes, capnodes;
	size_t *at; /* per node: its text's offset in strs, or its first kid's in kids */
	size_t capat;
	size_t *kids; /* kid node indices, each container's together */
	size_t nkids, capkids;
	size_t *open; /* kids of the containers still being read */
	size_t nopen, capopen;
	char *strs;
	size_t nstrs, capstrs;
	bool nomem;
};

/* Room for need elements of size bytes in *v (of *cap). */
static bool json_grow(struct json *j, void **v, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 1024, bytes;
	void *nv;

	if (need <= *cap)
		return true;
	while (n < need)
		if (__builtin_mul_overflow(n, 2, &n))
			goto nomem;
	if (__builtin_mul_overflow(n, size, &bytes))
		goto nomem;
	nv = realloc(*v, bytes);
	if (!nv)
		goto nomem;
	*v = nv;
	*cap = n;
	return true;
nomem:
	j->nomem = true;
	return false;
}

static void json_space(struct json *j)
{
	for (; j->p < j->end; j->p++) {
		char c = *j->p;

		/* Line breaks as libyaml counts them: LF, CR LF, a lone CR. */
		if (c == '\n' || (c == '\r' && (j->p + 1 == j->end || j->p[1] != '\n')))
			j->line++;
		else if (c != ' ' && c != '\t' && c != '\r')
			return;
	}
}

static bool json_node(struct json *j, enum ynode_kind kind, size_t *ret)
{
	if (!json_grow(j, (void **)&j->nodes, &j->capnodes, j->nnodes + 1, sizeof(*j->nodes)) ||
	    !json_grow(j, (void **)&j->at, &j->capat, j->nnodes + 1, sizeof(*j->at)))
		return false;
	memset(&j->nodes[j->nnodes], 0, sizeof(*j->nodes));
	j->nodes[j->nnodes].kind = kind;
	j->nodes[j->nnodes].line = j->line;
	*ret = j->nnodes++;
	return true;
}

static bool json_put(struct json *j, const void *s, size_t n)
{
	if (!json_grow(j, (void **)&j->strs, &j->capstrs, j->nstrs + n, 1))
		return false;
	memcpy(j->strs + j->nstrs, s, n);
	j->nstrs += n;
	return true;
}

static int json_hex4(const char *p)
{
	unsigned v;

	return json_u_escape(p - 2, 6, &v) ? (int)v : -1;
}

/* JSON's number: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)? */
static bool json_number(const char *s, size_t n)
{
	size_t i = s[0] == '-', d;

	for (d = i; i < n && isdigit((unsigned char)s[i]); i++)
		;
	if (i == d || (s[d] == '0' && i - d > 1))
		return false;
	if (i < n && s[i] == '.') {
		for (d = ++i; i < n && isdigit((unsigned char)s[i]); i++)
			;
		if (i == d)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < n && isdigit((unsigned char)s[i]); i++)
			;
		if (i == d)
			return false;
	}
	return i == n;
}

/* The length of the valid UTF-8 sequence at p (a lead byte >= 0x80), 0 if invalid: what
 * libyaml's reader refuses (overlong forms, surrogates, beyond U+10FFFF). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0], cp;
	size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;

	if (!n || c > 0xf4 || (size_t)(end - p) < n)
		return 0;
	cp = c & (0x3f >> (n - 1));
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

static bool json_utf8(struct json *j, unsigned cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return json_put(j, b, n);
}

/* A string at j->p (its '"'), as a scalar node. */
static bool json_string(struct json *j, size_t *ret)
{
	static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
	size_t k;

	if (!json_node(j, YNODE_SCALAR, &k))
		return false;
	j->at[k] = j->nstrs;
	for (j->p++; j->p < j->end && *j->p != '"';) {
		const unsigned char *u = (const unsigned char *)j->p;
		const char *e;
		size_t run = 0;
		int cp, lo;

		while (j->p + run < j->end && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' &&
		       u[run] != '\\')
			run++;
		if (run) {
			if (!json_put(j, j->p, run))
				return false;
			j->p += run;
		} else if (*u >= 0x80) {
			run = utf8_len(u, (const unsigned char *)j->end);
			if (!run || !json_put(j, j->p, run))
				return false;
			j->p += run;
		} else if (*u < 0x20 || j->end - j->p < 2) {
			return false;
		} else if (j->p[1] != 'u') {
			e = memchr(esc_in, j->p[1], sizeof(esc_in) - 1);
			if (!e || !json_put(j, &esc_out[e - esc_in], 1))
				return false;
			j->p += 2;
		} else {
			cp = j->end - j->p >= 6 ? json_hex4(j->p + 2) : -1;
			if (cp <= 0 || (cp >= 0xdc00 && cp <= 0xdfff))
				return false;
			j->p += 6;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				lo = j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u'
				             ? json_hex4(j->p + 2)
				             : -1;
				if (lo < 0xdc00 || lo > 0xdfff)
					return false;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				j->p += 6;
			}
			if (!json_utf8(j, (unsigned)cp))
				return false;
		}
	}
	if (j->p == j->end || !json_put(j, "", 1))
		return false;
	j->p++;
	*ret = k;
	return true;
}

/* true, false, null or a number, as written. */
static bool json_word(struct json *j, size_t *ret)
{
	const char *s = j->p;
	size_t n = 0, k;

	while (s + n < j->end &&
	       (isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '+' || s[n] == '.'))
		n++;
	if (!((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0) ||
	      (n == 4 && memcmp(s, "null", 4) == 0) || json_number(s, n)))
		return false;
	if (!json_node(j, YNODE_SCALAR, &k))
		return false;
	j->at[k] = j->nstrs;
	j->nodes[k].null = n == 4 && memcmp(s, "null", 4) == 0;
	if (!json_put(j, s, n) || !json_put(j, "", 1))
		return false;
	j->p += n;
	*ret = k;
	return true;
}

static bool json_value(struct json *j, unsigned depth, size_t *ret);

/* An object or an array at j->p: its kids are kept on j->open until it closes. */
static bool json_container(struct json *j, unsigned depth, size_t *ret)
{
	bool map = *j->p == '{';
	char close = map ? '}' : ']';
	size_t k, base = j->nopen, kid;

	if (depth >= JSON_DEPTH_MAX || !json_node(j, map ? YNODE_MAP : YNODE_SEQ, &k))
		return false;
	j->p++;
	json_space(j);
	if (j->p < j->end && *j->p == close)
		goto closed;
	for (;;) {
		if (map) {
			const char *key = j->p;

			/* libyaml takes no key longer than this: let it say so. */
			if (j->p == j->end || *j->p != '"' || !json_string(j, &kid) ||
			    j->p - key > 1024)
				return false;
			if (!json_grow(j, (void **)&j->open, &j->capopen, j->nopen + 1,
			               sizeof(*j->open)))
				return false;
			j->open[j->nopen++] = kid;
			json_space(j);
			if (j->p == j->end || *j->p != ':')
				return false;
			j->p++;
			json_space(j);
		}
		if (!json_value(j, depth + 1, &kid) ||
		    !json_grow(j, (void **)&j->open, &j->capopen, j->nopen + 1, sizeof(*j->open)))
			return false;
		j->open[j->nopen++] = kid;
		json_space(j);
		if (j->p < j->end && *j->p == close)
			break;
		if (j->p == j->end || *j->p != ',')
			return false;
		j->p++;
		json_space(j);
	}
closed:
	j->p++;
	if (!json_grow(j, (void **)&j->kids, &j->capkids, j->nkids + (j->nopen - base),
	               sizeof(*j->kids)))
		return false;
	j->at[k] = j->nkids;
	/* An empty one may come before anything was kept: no arrays yet. */
	if (j->nopen > base)
		memcpy(j->kids + j->nkids, j->open + base, (j->nopen - base) * sizeof(*j->kids));
	j->nkids += j->nopen - base;
	j->nodes[k].n = map ? (j->nopen - base) / 2 : j->nopen - base;
	j->nopen = base;
	*ret = k;
	return true;
}

static bool json_value(struct json *j, unsigned depth, size_t *ret)
{
	if (j->p == j->end)
		return false;
	if (*j->p == '{' || *j->p == '[')
		return json_container(j, depth, ret);
	if (*j->p == '"')
		return json_string(j, ret);
	return json_word(j, ret);
}

/* 1 with *ret the document when text is well-formed JSON, 0 when libyaml must read it,
 * -ENOMEM. */
static int json_parse(const char *text, size_t len, struct yamldoc **ret)
{
	struct json j = {.p = text, .end = text + len, .line = 1};
	struct yamldoc *d = NULL;
	size_t root;
	int r = 0;

	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		j.p += 3;
	json_space(&j);
	if (!json_value(&j, 0, &root))
		goto out;
	json_space(&j);
	if (j.p != j.end)
		goto out;
	d = calloc(1, sizeof(*d));
	if (!d || !(d->kids = malloc((j.nkids ? j.nkids : 1) * sizeof(*d->kids)))) {
		j.nomem = true;
		goto out;
	}
	for (size_t i = 0; i < j.nkids; i++)
		d->kids[i] = &j.nodes[j.kids[i]];
	for (size_t i = 0; i < j.nnodes; i++) {
		if (j.nodes[i].kind == YNODE_SCALAR)
			j.nodes[i].str = j.strs + j.at[i];
		else
			j.nodes[i].kids = d->kids + j.at[i];
	}
	d->nodes = j.nodes;
	d->strs = j.strs;
	d->root = &j.nodes[root];
	j.nodes = NULL;
	j.strs = NULL;
	*ret = d;
	d = NULL;
	r = 1;
out:
	if (j.nomem)
		r = -ENOMEM;
	if (d) {
		free(d->kids);
		free(d);
	}
	free(j.nodes);
	free(j.at);
	free(j.kids);
	free(j.open);
	free(j.strs);
	return r;
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
		r = json_parse(text, len, ret);
		if (r)
			return r < 0 ? err_set(err, r, "%s: out of memory", name) : 0;
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
	free(doc->strs);
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
