// SPDX-License-Identifier: MIT
/*
 * conda-meta/frozen (CEP 22) and EXTERNALLY-MANAGED (PEP 668): their texts and where they
 * go (condafs/frozen.h). One message in both: where the environment is served, that
 * nothing can be installed into it, and the two ways to get one that changes.
 */
#include "condafs/frozen.h"

#include "condafs/escape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The message, one line per element; %1$s is the environment's directory, %2$s its hash
 * (the only conversions). */
static const char *const message[] = {
        "This environment is served read-only by condafs at %1$s (environment %2$s): "
        "nothing can be installed into it, updated or removed.",
        "For a copy you can change: condafs export %2$s DIR",
        "For a new environment: create it with conda, mamba or pixi, then store it with "
        "condafs ingest PREFIX.",
};
#define MESSAGE_LINES (sizeof(message) / sizeof(message[0]))

const char *frozen_name(enum frozen_file f)
{
	return f == FROZEN_CONDA ? FROZEN_CONDA_NAME : FROZEN_PYTHON_NAME;
}

bool frozen_stdlib_name(const char *name, size_t len)
{
	size_t i = 6, digits;

	if (len < 9 || memcmp(name, "python", 6) != 0)
		return false;
	for (int part = 0; part < 2; part++) {
		for (digits = 0; i < len && name[i] >= '0' && name[i] <= '9'; i++)
			digits++;
		if (!digits)
			return false;
		if (part == 0 && (i >= len || name[i++] != '.'))
			return false;
	}
	return i == len || (i + 1 == len && name[i] == 't');
}

/* A line of the message with its two values put in, as pieces written by put. */
static void line_out(FILE *f, const char *line, const char *env_dir, const char *hash,
                     void (*put)(FILE *f, const char *s, size_t n))
{
	const char *p = line, *c;

	while ((c = strchr(p, '%'))) {
		put(f, p, (size_t)(c - p));
		if (c[1] == '1')
			put(f, env_dir, strlen(env_dir));
		else
			put(f, hash, strlen(hash));
		p = c + 4; /* past "%N$s" */
	}
	put(f, p, strlen(p));
}

/* JSON string contents: quotes and backslashes escaped, control characters \u00XX, bytes
 * that are not UTF-8 U+FFFD (a path may hold any byte; JSON must be UTF-8). */
static void put_json(FILE *f, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t k = escape_utf8_len(p + i, n - i);

		if (k == 0) {
			fputs("\\ufffd", f);
			i++;
		} else if (p[i] == '"' || p[i] == '\\') {
			fprintf(f, "\\%c", p[i++]);
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			fprintf(f, "\\u%04x", p[i++]);
		} else {
			fwrite(p + i, 1, k, f);
			i += k;
		}
	}
}

/* An INI value line: a control byte (a newline would end the value) and invalid UTF-8
 * escaped as escape_text does. */
static void put_ini(FILE *f, const char *s, size_t n)
{
	char buf[256];

	while (n) {
		size_t used = escape_text(s, n, buf, sizeof(buf));

		fputs(buf, f);
		s += used;
		n -= used;
	}
}

int frozen_text(enum frozen_file which, const char *env_dir, const char *hash, char **ret,
                size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	bool bad;

	if (!f)
		return -ENOMEM;
	if (which == FROZEN_CONDA) {
		/* CEP 22: an object with the one key "message", a non-empty string. */
		fputs("{\"message\": \"", f);
		for (size_t i = 0; i < MESSAGE_LINES; i++) {
			if (i)
				fputs("\\n", f);
			line_out(f, message[i], env_dir, hash, put_json);
		}
		fputs("\"}\n", f);
	} else {
		/* PEP 668: pip reads it with configparser (no interpolation); the lines after
		 * the first are indented, which continues the value. */
		fputs("[externally-managed]\nError=", f);
		for (size_t i = 0; i < MESSAGE_LINES; i++) {
			if (i)
				fputs(" ", f);
			line_out(f, message[i], env_dir, hash, put_ini);
			fputc('\n', f);
		}
	}
	bad = ferror(f);
	if (fclose(f) != 0 || bad || !buf) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static bool named(const struct store_node *n, const char *name)
{
	return n->namelen == strlen(name) && !memcmp(n->name, name, n->namelen);
}

/* 1 when directory dir has a child called name, 0 when not. */
static int has_child(struct store *st, const struct store_node *dir, const char *name,
                     struct cfs_err *err)
{
	struct store_node n;
	int r = store_node_lookup(st, dir->id, name, strlen(name), &n, err);

	if (r == -ENOENT) {
		if (err)
			err->msg[0] = '\0';
		return 0;
	}
	return r ? r : 1;
}

int frozen_dir_gets(struct store *st, int64_t top, const struct store_node *dir,
                    enum frozen_file *ret, struct cfs_err *err)
{
	enum frozen_file which;
	struct store_node parent;
	int r;

	if (dir->type != NODE_DIR || !dir->parent)
		return 0;
	if (dir->parent == top && named(dir, FROZEN_CONDA_DIR)) {
		which = FROZEN_CONDA;
	} else if (frozen_stdlib_name(dir->name, dir->namelen)) {
		r = store_node_get(st, dir->parent, &parent, err);
		if (r)
			return r;
		if (parent.parent != top || !named(&parent, FROZEN_STDLIB_PARENT))
			return 0;
		r = has_child(st, dir, FROZEN_STDLIB_LANDMARK, err);
		if (r <= 0)
			return r;
		which = FROZEN_PYTHON;
	} else {
		return 0;
	}
	/* The environment's own file is what it has. */
	r = has_child(st, dir, frozen_name(which), err);
	if (r)
		return r < 0 ? r : 0;
	*ret = which;
	return 1;
}
