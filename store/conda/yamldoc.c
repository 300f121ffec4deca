// SPDX-License-Identifier: MIT
/*
 * Reads one YAML or JSON document into a tree of struct ynode with direct child pointers,
 * so callers walk it without a libyaml handle. Scalars keep their text as written (no
 * YAML 1.1 typing: "1.10" stays "1.10"). Well-formed JSON is read without libyaml
 * (json_parse): several times faster, and it takes what valid JSON may hold that libyaml
 * refuses or changes (surrogate pairs, raw DEL, C1 controls, U+2028, tabs, a line break
 * before ':'). Anything else is YAML to libyaml, text unchanged, read event by event (its
 * document loader takes time quadratic in depth and ~180 bytes per input byte), so that
 * depth and size are counted as the events arrive and a hostile document stops at the
 * first one too many.
 */
#include "yamldoc.h"

#include "err.h"
#include "hex.h"
#include "textfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/*
 * Limits on what a document may hold, far above any real conda file: conda-meta records
 * nest 4 deep and lock files 6; a record has about 12 nodes per file it lists (a
 * 12,000-file pytorch record about 150,000). Nodes are counted as a walk of the tree
 * visits them, an alias once per use, so the callers' walks are bounded too; a node
 * costs about 60 bytes here, so a tree never takes more than about 64 MiB besides its text.
 */
#define YAMLDOC_MAX_DEPTH   64
#define YAMLDOC_MAX_NODES   ((size_t)1 << 20)
#define YAMLDOC_MAX_ANCHORS 64

enum ynode_kind {
	YNODE_SCALAR = 1,
	YNODE_SEQ = 2,
	YNODE_MAP = 3,
};

struct ynode {
	enum ynode_kind kind;
	bool null;
	bool quoted; /* a JSON string, or a YAML scalar not in the plain style */
	size_t line;
	const char *str; /* scalars: NUL-terminated, owned by the document */
	size_t n;
	/* sequences: n items; mappings: n (key, value) pairs, 2n pointers */
	const struct ynode **kids;
};

struct yamldoc {
	struct ynode *nodes;
	const struct ynode **kids;
	const struct ynode *root;
	char *strs; /* every scalar's text */
};

static bool json_u_escape(const char *p, size_t avail, unsigned *ret)
{
	char hex[5];
	unsigned long v;

	if (avail < 6 || p[0] != '\\' || p[1] != 'u')
		return false;
	memcpy(hex, p + 2, 4);
	hex[4] = '\0';
	if (!hex_only(hex, 4, true))
		return false;
	v = strtoul(hex, NULL, 16);
	*ret = (unsigned)v;
	return true;
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

/* ---- a tree under construction ---- */

/*
 * What both readers fill: nodes in the order they start, each container's kids together
 * (as indices, made pointers once the document is whole) and every scalar's text in one
 * buffer, so that a document costs a few allocations however many nodes it has.
 */
struct tree {
	const char *name;
	struct cfs_err *err;
	int r; /* the first error, already in err: the readers stop at it */
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
	/* Nodes as a walk of the tree visits them: an alias's target counts once per use. */
	size_t weight;
};

static void tree_release(struct tree *t)
{
	free(t->nodes);
	free(t->at);
	free(t->kids);
	free(t->open);
	free(t->strs);
	*t = (struct tree){.name = t->name, .err = t->err};
}

static bool tree_nomem(struct tree *t)
{
	if (!t->r)
		t->r = err_set(t->err, -ENOMEM, "%s: out of memory", t->name);
	return false;
}

/* Room for need elements of size bytes in *v (of *cap). */
static bool tree_grow(struct tree *t, void **v, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 1024, bytes;
	void *nv;

	if (need <= *cap)
		return true;
	while (n < need)
		if (__builtin_mul_overflow(n, 2, &n))
			return tree_nomem(t);
	if (__builtin_mul_overflow(n, size, &bytes))
		return tree_nomem(t);
	nv = realloc(*v, bytes);
	if (!nv)
		return tree_nomem(t);
	*v = nv;
	*cap = n;
	return true;
}

/* add more nodes to visit, at line: past YAMLDOC_MAX_NODES the document is refused. */
static bool tree_count(struct tree *t, size_t add, size_t line)
{
	if (add > YAMLDOC_MAX_NODES - t->weight) {
		t->r = err_set(t->err, -EINVAL, "%s:%zu: more than %zu nodes", t->name, line,
		               YAMLDOC_MAX_NODES);
		return false;
	}
	t->weight += add;
	return true;
}

/* A collection opening at line inside depth others. */
static bool tree_depth(struct tree *t, size_t depth, size_t line)
{
	if (depth < YAMLDOC_MAX_DEPTH)
		return true;
	t->r = err_set(t->err, -EINVAL, "%s:%zu: more than %d levels of nesting", t->name, line,
	               YAMLDOC_MAX_DEPTH);
	return false;
}

static bool tree_node(struct tree *t, enum ynode_kind kind, size_t line, size_t *ret)
{
	if (!tree_count(t, 1, line) ||
	    !tree_grow(t, (void **)&t->nodes, &t->capnodes, t->nnodes + 1, sizeof(*t->nodes)) ||
	    !tree_grow(t, (void **)&t->at, &t->capat, t->nnodes + 1, sizeof(*t->at)))
		return false;
	memset(&t->nodes[t->nnodes], 0, sizeof(*t->nodes));
	t->nodes[t->nnodes].kind = kind;
	t->nodes[t->nnodes].line = line;
	*ret = t->nnodes++;
	return true;
}

static bool tree_put(struct tree *t, const void *s, size_t n)
{
	if (!tree_grow(t, (void **)&t->strs, &t->capstrs, t->nstrs + n, 1))
		return false;
	memcpy(t->strs + t->nstrs, s, n);
	t->nstrs += n;
	return true;
}

/* Node k as the next kid of the innermost open collection. */
static bool tree_kid(struct tree *t, size_t k)
{
	if (!tree_grow(t, (void **)&t->open, &t->capopen, t->nopen + 1, sizeof(*t->open)))
		return false;
	t->open[t->nopen++] = k;
	return true;
}

/* Collection k is whole: its kids are open[base..]. */
static bool tree_close(struct tree *t, size_t k, size_t base)
{
	size_t n = t->nopen - base;

	if (!tree_grow(t, (void **)&t->kids, &t->capkids, t->nkids + n, sizeof(*t->kids)))
		return false;
	t->at[k] = t->nkids;
	/* An empty one may come before anything was kept: no arrays yet. */
	if (n)
		memcpy(t->kids + t->nkids, t->open + base, n * sizeof(*t->kids));
	t->nkids += n;
	t->nodes[k].n = t->nodes[k].kind == YNODE_MAP ? n / 2 : n;
	t->nopen = base;
	return true;
}

/* The document of t, rooted at node root (none: SIZE_MAX); t keeps nothing it owns. */
static int tree_finish(struct tree *t, size_t root, struct yamldoc **ret)
{
	struct yamldoc *d = calloc(1, sizeof(*d));

	if (!d || !(d->kids = malloc((t->nkids ? t->nkids : 1) * sizeof(const struct ynode *)))) {
		free(d);
		tree_nomem(t);
		return t->r;
	}
	for (size_t i = 0; i < t->nkids; i++)
		d->kids[i] = &t->nodes[t->kids[i]];
	for (size_t i = 0; i < t->nnodes; i++) {
		if (t->nodes[i].kind == YNODE_SCALAR)
			t->nodes[i].str = t->strs + t->at[i];
		else
			t->nodes[i].kids = d->kids + t->at[i];
	}
	d->nodes = t->nodes;
	d->strs = t->strs;
	d->root = root == SIZE_MAX ? NULL : &t->nodes[root];
	t->nodes = NULL;
	t->strs = NULL;
	*ret = d;
	return 0;
}

/* ---- well-formed JSON without libyaml ---- */

/*
 * conda-meta records are JSON, megabytes of it in an environment, and libyaml reads it at
 * a few tens of MB/s: most of an ingest's start-up. Well-formed JSON is read here straight
 * into the tree libyaml's events make (scalars as written, a JSON null null, each node's
 * line where it starts). What this reader does not take (YAML flow syntax, malformed
 * text, invalid UTF-8, a lone surrogate or a NUL escape) goes the libyaml way, so its tree
 * or its error is what it always was; a limit reached here is the error at once.
 */
struct json {
	const char *p, *end;
	size_t line;
	struct tree *t;
};

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
	return tree_node(j->t, kind, j->line, ret);
}

static bool json_put(struct json *j, const void *s, size_t n)
{
	return tree_put(j->t, s, n);
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
	j->t->at[k] = j->t->nstrs;
	j->t->nodes[k].quoted = true;
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
	j->t->at[k] = j->t->nstrs;
	j->t->nodes[k].null = n == 4 && memcmp(s, "null", 4) == 0;
	if (!json_put(j, s, n) || !json_put(j, "", 1))
		return false;
	j->p += n;
	*ret = k;
	return true;
}

static bool json_value(struct json *j, size_t depth, size_t *ret);

/* An object or an array at j->p: its kids are kept on the tree's open list until it closes. */
static bool json_container(struct json *j, size_t depth, size_t *ret)
{
	bool map = *j->p == '{';
	char close = map ? '}' : ']';
	size_t k, base = j->t->nopen, kid;

	if (!tree_depth(j->t, depth, j->line) || !json_node(j, map ? YNODE_MAP : YNODE_SEQ, &k))
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
			    j->p - key > 1024 || !tree_kid(j->t, kid))
				return false;
			json_space(j);
			if (j->p == j->end || *j->p != ':')
				return false;
			j->p++;
			json_space(j);
		}
		if (!json_value(j, depth + 1, &kid) || !tree_kid(j->t, kid))
			return false;
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
	if (!tree_close(j->t, k, base))
		return false;
	*ret = k;
	return true;
}

static bool json_value(struct json *j, size_t depth, size_t *ret)
{
	if (j->p == j->end)
		return false;
	if (*j->p == '{' || *j->p == '[')
		return json_container(j, depth, ret);
	if (*j->p == '"')
		return json_string(j, ret);
	return json_word(j, ret);
}

/* 1 with *ret_root read into t when text is well-formed JSON; 0 when libyaml must read it
 * (t is empty again); t->r when a limit was reached or memory ran out. */
static int json_parse(struct tree *t, const char *text, size_t len, size_t *ret_root)
{
	struct json j = {.p = text, .end = text + len, .line = 1, .t = t};

	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		j.p += 3;
	json_space(&j);
	if (json_value(&j, 0, ret_root)) {
		json_space(&j);
		if (j.p == j.end)
			return 1;
	}
	if (t->r)
		return t->r;
	tree_release(t);
	return 0;
}

/* ---- anything else: libyaml, event by event ---- */

static bool scalar_is_null(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;

	if (tag && strcmp(tag, YAML_NULL_TAG) == 0)
		return true;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int parse_error(const char *name, const char *kind, const yaml_parser_t *parser,
                       const char *text, size_t len, struct cfs_err *err)
{
	const char *problem = parser->problem ? parser->problem : "cannot parse";
	size_t line;

	if (parser->error == YAML_MEMORY_ERROR)
		return err_set(err, -ENOMEM, "%s: out of memory", name);
	if (parser->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		line = 1;
		for (size_t i = 0; i < parser->problem_offset && i < len; i++)
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

/* A node with an anchor (&name); weight is what one alias (*name) to it adds to a walk. */
struct anchor {
	char *name;
	size_t node, weight;
	bool open; /* a collection not yet closed: an alias to it would make a cycle */
};

/* A collection being read: its node, where its kids start on the open list, the tree's
 * weight before it, and its anchor (or -1). */
struct level {
	size_t node, base, weight0;
	int anchor;
};

struct events {
	struct tree *t;
	struct level stack[YAMLDOC_MAX_DEPTH];
	size_t depth, root, docs;
	struct anchor anchors[YAMLDOC_MAX_ANCHORS];
	int nanchors;
};

/* Node k is read: the root, or the next kid of the collection open around it. */
static bool ev_place(struct events *e, size_t k)
{
	if (e->depth)
		return tree_kid(e->t, k);
	e->root = k;
	return true;
}

/* Take the event's anchor (NULL: none) for node k; *ret_index is its slot, or -1. */
static bool ev_anchor(struct events *e, yaml_char_t **name, size_t k, bool open, size_t line,
                      int *ret_index)
{
	struct anchor *a;

	*ret_index = -1;
	if (!*name)
		return true;
	for (int i = 0; i < e->nanchors; i++) {
		if (strcmp(e->anchors[i].name, (const char *)*name) == 0) {
			e->t->r = err_set(e->t->err, -EINVAL,
			                  "%s:%zu: invalid YAML: found duplicate anchor",
			                  e->t->name, line);
			return false;
		}
	}
	if (e->nanchors == YAMLDOC_MAX_ANCHORS) {
		e->t->r = err_set(e->t->err, -EINVAL, "%s:%zu: more than %d anchors", e->t->name,
		                  line, YAMLDOC_MAX_ANCHORS);
		return false;
	}
	a = &e->anchors[e->nanchors];
	a->name = (char *)*name;
	*name = NULL; /* the anchor owns it now: yaml_event_delete must not free it */
	a->node = k;
	a->weight = 1;
	a->open = open;
	*ret_index = e->nanchors++;
	return true;
}

static bool ev_alias(struct events *e, const yaml_event_t *ev, size_t line)
{
	const char *name = (const char *)ev->data.alias.anchor;

	for (int i = e->nanchors - 1; i >= 0; i--) {
		const struct anchor *a = &e->anchors[i];

		if (strcmp(a->name, name) != 0)
			continue;
		if (a->open) {
			e->t->r = err_set(e->t->err, -EINVAL,
			                  "%s:%zu: invalid YAML: an alias inside the node it names",
			                  e->t->name, line);
			return false;
		}
		return tree_count(e->t, a->weight, line) && ev_place(e, a->node);
	}
	e->t->r = err_set(e->t->err, -EINVAL, "%s:%zu: invalid YAML: found undefined alias",
	                  e->t->name, line);
	return false;
}

static bool ev_scalar(struct events *e, yaml_event_t *ev, size_t line)
{
	struct tree *t = e->t;
	size_t k;
	int a;

	/* A "\0" escape would silently cut every C string we hand out. */
	if (memchr(ev->data.scalar.value, 0, ev->data.scalar.length)) {
		t->r = err_set(t->err, -EINVAL,
		               "%s:%zu: a NUL character inside a string is not supported", t->name,
		               line);
		return false;
	}
	if (!tree_node(t, YNODE_SCALAR, line, &k))
		return false;
	t->nodes[k].null = scalar_is_null(ev);
	t->nodes[k].quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
	t->at[k] = t->nstrs;
	return tree_put(t, ev->data.scalar.value, ev->data.scalar.length + 1) &&
	       ev_anchor(e, &ev->data.scalar.anchor, k, false, line, &a) && ev_place(e, k);
}

static bool ev_start(struct events *e, yaml_event_t *ev, size_t line)
{
	bool map = ev->type == YAML_MAPPING_START_EVENT;
	size_t weight0 = e->t->weight, k;
	struct level *lv;

	if (!tree_depth(e->t, e->depth, line) ||
	    !tree_node(e->t, map ? YNODE_MAP : YNODE_SEQ, line, &k))
		return false;
	lv = &e->stack[e->depth];
	if (!ev_anchor(e, map ? &ev->data.mapping_start.anchor : &ev->data.sequence_start.anchor, k,
	               true, line, &lv->anchor))
		return false;
	lv->node = k;
	lv->base = e->t->nopen;
	lv->weight0 = weight0;
	e->depth++;
	return true;
}

static bool ev_end(struct events *e)
{
	const struct level *lv = &e->stack[--e->depth];

	if (!tree_close(e->t, lv->node, lv->base))
		return false;
	if (lv->anchor >= 0) {
		e->anchors[lv->anchor].weight = e->t->weight - lv->weight0;
		e->anchors[lv->anchor].open = false;
	}
	return ev_place(e, lv->node);
}

/* Read text with libyaml into t; *ret_root is SIZE_MAX when it holds no document. */
static int events_read(struct tree *t, const char *kind, const char *text, size_t len,
                       size_t *ret_root)
{
	struct events e = {.t = t, .root = SIZE_MAX};
	yaml_parser_t parser;
	bool done = false;

	if (!yaml_parser_initialize(&parser))
		return err_set(t->err, -ENOMEM, "%s: out of memory", t->name);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (!t->r && !done) {
		yaml_event_t ev;
		size_t line;

		if (!yaml_parser_parse(&parser, &ev)) {
			t->r = parse_error(t->name, kind, &parser, text, len, t->err);
			break;
		}
		line = ev.start_mark.line + 1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			/* A second document would be ignored silently by a one-document reader. */
			if (e.docs++)
				t->r = err_set(t->err, -EINVAL,
				               "%s:%zu: a second YAML document; expected one",
				               t->name, line);
			break;
		case YAML_ALIAS_EVENT:
			ev_alias(&e, &ev, line);
			break;
		case YAML_SCALAR_EVENT:
			ev_scalar(&e, &ev, line);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			ev_start(&e, &ev, line);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			ev_end(&e);
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	for (int i = 0; i < e.nanchors; i++)
		free(e.anchors[i].name);
	*ret_root = e.root;
	return t->r;
}

int yamldoc_parse(const char *name, const char *text, size_t len, struct yamldoc **ret,
                  struct cfs_err *err)
{
	struct tree t = {.name = name, .err = err};
	size_t root = SIZE_MAX;
	int r;

	/*
	 * Text that is not well-formed JSON goes to libyaml as it is. It used to be rewritten
	 * first, for libyaml to take valid JSON, but json_parse takes all of that now, and
	 * the rewriting changed what YAML flow text means (a '"' inside a plain scalar put
	 * it out of step with the strings) and once overflowed its buffer.
	 */
	if (looks_like_json(text, len)) {
		r = json_parse(&t, text, len, &root);
		if (r == 0)
			r = events_read(&t, "JSON", text, len, &root);
	} else {
		r = events_read(&t, "YAML", text, len, &root);
	}
	if (r >= 0)
		r = tree_finish(&t, root, ret);
	tree_release(&t);
	return r < 0 ? r : 0;
}

int yamldoc_load(int dirfd, const char *path, const char *display, size_t max, struct yamldoc **ret,
                 struct cfs_err *err)
{
	char *text;
	size_t len;
	int r;

	r = textfile_read(dirfd, path, display, max, &text, &len, err);
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

bool ynode_u64(const struct ynode *n, uint64_t *ret)
{
	const char *s = ynode_str(n);
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*ret = strtoull(s, &end, 10);
	return !errno && !*end;
}

bool ynode_is_quoted(const struct ynode *n)
{
	return n && n->kind == YNODE_SCALAR && n->quoted;
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
