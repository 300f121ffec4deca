// SPDX-License-Identifier: MIT
/*
 * Modulefiles. Values are written as double-quoted strings with every byte that means
 * something to the language escaped, and the file is ASCII whatever the values hold:
 * - Lua strings are bytes: \\ \" and every byte outside printable ASCII as \ddd (always
 *   three decimal digits, so a digit after one is not read into it).
 * - Tcl also substitutes $ and [ ] and counts braces: those are escaped too. Tcl strings
 *   are characters, and Lmod's tcl2lua does not read the file as UTF-8 (é comes out as
 *   "Ã©", under C.UTF-8 too): so control bytes are \ooo and every other non-ASCII
 *   character \uXXXX, past U+FFFF a surrogate pair (Tcl 8.6 reads \U0001f600 as U+FFFD,
 *   the pair as the character), which Tcl writes back as the same UTF-8.
 *   A value that is not UTF-8 has no Tcl spelling that gives its bytes back: refused.
 */
#include "modulefile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool modulefile_name_valid(const char *name)
{
	size_t n = strlen(name);
	bool start = true;

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (c == '/') {
			if (start)
				return false;
			start = true;
			continue;
		}
		if (start && c == '.')
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '+' || c == '-'))
			return false;
		start = false;
	}
	return !start;
}

/* The UTF-8 character at p (*len bytes), or -1 when p does not start one. */
static long utf8_char(const unsigned char *p, size_t *len)
{
	static const long min[] = {0, 0, 0x80, 0x800, 0x10000};
	size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
	long c;

	if (!n || *p >= 0xf5)
		return -1;
	c = *p & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return -1;
	*len = n;
	return c;
}

/* s quoted; -EILSEQ for a Tcl value that is not UTF-8. */
static int quote(FILE *f, const char *s, bool tcl)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		size_t len;
		long c;

		if (*p == '\\' || *p == '"' ||
		    (tcl && (*p == '$' || *p == '[' || *p == ']' || *p == '{' || *p == '}'))) {
			fprintf(f, "\\%c", *p);
		} else if (*p >= 0x20 && *p < 0x7f) {
			fputc(*p, f);
		} else if (!tcl) {
			fprintf(f, "\\%03u", *p);
		} else if (*p < 0x80) {
			fprintf(f, "\\%03o", *p);
		} else if ((c = utf8_char(p, &len)) < 0) {
			return -EILSEQ;
		} else {
			if (c > 0xffff)
				fprintf(f, "\\u%04lx\\u%04lx", 0xd800 + ((c - 0x10000) >> 10),
				        0xdc00 + ((c - 0x10000) & 0x3ff));
			else
				fprintf(f, "\\u%04lx", c);
			p += len - 1;
		}
	}
	fputc('"', f);
	return 0;
}

/* cmd NAME "VALUE" in Tcl, cmd("NAME", "VALUE") in Lua; -EILSEQ with one line in err
 * for a Tcl value that is not UTF-8. */
static int call(FILE *f, bool tcl, const char *cmd, const char *name, const char *value,
                struct cfs_err *err)
{
	int r;

	fprintf(f, tcl ? "%s " : "%s(", cmd);
	r = quote(f, name, tcl);
	if (!r && value) {
		fputs(tcl ? " " : ", ", f);
		r = quote(f, value, tcl);
	}
	if (r) {
		snprintf(err->msg, sizeof(err->msg),
		         "%.200s: its value is not UTF-8, which a Tcl modulefile cannot hold (the "
		         "Lua one can)",
		         name);
		return r;
	}
	fputs(tcl ? "\n" : ")\n", f);
	return 0;
}

/* What the activation put before base_path in PATH; its own bin directory when PATH is
 * not that (an activate.d script that set PATH outright). */
static char *path_prepended(const struct activation *a, const char *value, const char *base_path)
{
	size_t n = strlen(value), b = strlen(base_path);

	if (n > b + 1 && value[n - b - 1] == ':' && !strcmp(value + n - b, base_path))
		return strndup(value, n - b - 1);
	return strdup(activation_path_prepend(a));
}

int modulefile_text(const struct activation *a, const char *base_path, bool tcl, const char *title,
                    char **ret, size_t *ret_len, struct cfs_err *err)
{
	FILE *f = open_memstream(ret, ret_len);
	int r;

	if (!f)
		return -ENOMEM;
	/* The title only quoted: it may name a directory, which may hold any byte. */
	fputs(tcl ? "#%Module1.0\n# written by condafs module\n" : "-- written by condafs module\n",
	      f);
	r = call(f, tcl, tcl ? "module-whatis" : "whatis", title, NULL, err);
	for (size_t i = 0; !r && i < activation_count(a); i++) {
		const char *name = activation_name(a, i), *value = activation_value(a, i);
		char *pre;

		if (strcmp(name, "PATH") != 0) {
			r = call(f, tcl, "setenv", name, value, err);
			continue;
		}
		pre = path_prepended(a, value, base_path);
		if (!pre) {
			r = -ENOMEM;
			break;
		}
		r = call(f, tcl, tcl ? "prepend-path" : "prepend_path", name, pre, err);
		free(pre);
	}
	for (size_t i = 0; !r && i < activation_unset_count(a); i++)
		r = call(f, tcl, "unsetenv", activation_unset_name(a, i), NULL, err);
	if (fclose(f) != 0 && !r)
		r = -ENOMEM;
	if (r) {
		free(*ret);
		*ret = NULL;
	}
	return r;
}
