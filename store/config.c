// SPDX-License-Identifier: MIT
/*
 * The configuration file shared by the CLI and the daemon: a flat YAML mapping with a gc
 * section. Parsed with libyaml's event API so that every error names its line, and
 * strictly: whatever YAML could make mean something else than it reads (an alias, a NUL
 * in a value, a second document, a key set twice) is an error, not a silent choice.
 */
#include "condafs/config.h"

#include "err.h"
#include "textfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* A config file is a few hundred bytes. */
#define CONFIG_MAX_BYTES (1u << 20)

int config_duration(const char *s, int64_t *ret)
{
	static const struct {
		char unit;
		int64_t seconds;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -EINVAL;
	if (*end == '\0') {
		*ret = v;
		return 0;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (end[0] == units[i].unit && end[1] == '\0') {
			if (v > INT64_MAX / units[i].seconds)
				return -EINVAL;
			*ret = v * units[i].seconds;
			return 0;
		}
	}
	return -EINVAL;
}

static void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->store, sizeof(c->store), "/var/lib/condafs");
	snprintf(c->mountpoint, sizeof(c->mountpoint), "/envs");
	c->gc_unused_for = 30 * 86400;
	c->gc_grace = 3600;
	c->log_level = 6;
}

/* Apply one "section.key: value" setting; -EINVAL with the reason in why. */
static int apply(struct config *c, const char *key, const char *v, const char **why)
{
	static const char *const levels[] = {"emerg",   "alert",  "crit", "err",
	                                     "warning", "notice", "info", "debug"};
	char *end;

	if (!strcmp(key, "store") || !strcmp(key, "mountpoint")) {
		char *dst = key[0] == 's' ? c->store : c->mountpoint;

		if (v[0] != '/' || strlen(v) >= sizeof(c->store)) {
			*why = "must be an absolute path";
			return -EINVAL;
		}
		snprintf(dst, sizeof(c->store), "%s", v);
		return 0;
	}
	if (!strcmp(key, "gc.unused_for") || !strcmp(key, "gc.grace")) {
		int64_t *dst = key[3] == 'u' ? &c->gc_unused_for : &c->gc_grace;

		*why = "must be a duration like 30d, 12h, 90m or 45s";
		return config_duration(v, dst);
	}
	if (!strcmp(key, "threads")) {
		long t = strtol(v, &end, 10);

		if (*v == '\0' || *end || t < 0 || t > 64) {
			*why = "must be a number from 0 to 64";
			return -EINVAL;
		}
		c->threads = (int)t;
		return 0;
	}
	if (!strcmp(key, "log_level")) {
		for (int i = 0; i < 8; i++) {
			if (!strcmp(v, levels[i])) {
				c->log_level = i;
				return 0;
			}
		}
		*why = "must be one of emerg, alert, crit, err, warning, notice, info, debug";
		return -EINVAL;
	}
	if (!strcmp(key, "pkgs_dirs")) {
		if (v[0] != '/' || strlen(v) >= sizeof(c->pkgs_dirs[0])) {
			*why = "each must be an absolute path";
			return -EINVAL;
		}
		if (c->npkgs_dirs == CONFIG_LIST_MAX) {
			*why = "too many package caches (at most 16)";
			return -EINVAL;
		}
		snprintf(c->pkgs_dirs[c->npkgs_dirs++], sizeof(c->pkgs_dirs[0]), "%s", v);
		return 0;
	}
	if (!strncmp(key, "mirrors.", 8)) {
		if (!strstr(key + 8, "://") || !strstr(v, "://") || strchr(key + 8, '=')) {
			*why = "a channel URL mapped to a mirror's URL (https://, http:// or "
			       "file://)";
			return -EINVAL;
		}
		if (c->nmirrors == CONFIG_LIST_MAX ||
		    strlen(key + 8) + strlen(v) + 2 > sizeof(c->mirrors[0])) {
			*why = "too many mirrors (at most 16) or too long";
			return -EINVAL;
		}
		snprintf(c->mirrors[c->nmirrors++], sizeof(c->mirrors[0]), "%s=%s", key + 8, v);
		return 0;
	}
	*why = "unknown key (known: store, mountpoint, threads, log_level, gc.unused_for, "
	       "gc.grace, pkgs_dirs, mirrors)";
	return -EINVAL;
}

/*
 * "section.name" (or "name") into dst, as messages show it: a key is the user's text, and
 * a control byte in it (a newline, an escape sequence) is written as \xNN so that every
 * message stays one plain line. No known key has one, so none is matched by mistake.
 */
static void key_copy(char *dst, size_t size, const char *section, const char *name)
{
	size_t n = (size_t)snprintf(dst, size, "%s%s", section, section[0] ? "." : "");

	for (; *name && n + 5 < size; name++) {
		unsigned char c = (unsigned char)*name;

		if (c < 0x20 || c == 0x7f)
			n += (size_t)snprintf(dst + n, size - n, "\\x%02x", c);
		else
			dst[n++] = (char)c;
	}
	dst[n] = '\0';
}

/* Keys set so far, with their lines: a repeated key is an error, not a silent override.
 * There are nine keys (gc and mirrors among them) and up to 16 mirrors; an unknown key
 * stops the parse. */
struct seen {
	char key[9 + CONFIG_LIST_MAX][1024];
	unsigned long line[9 + CONFIG_LIST_MAX];
	int n;
};

/* -EINVAL naming the first line of key when it was seen already, else records it. */
static int seen_add(struct seen *s, const char *name, const char *key, unsigned long line,
                    struct cfs_err *err)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->key[i], key))
			return err_set(err, -EINVAL, "%s:%lu: %s: set twice (first at line %lu)",
			               name, line, key, s->line[i]);
	if (s->n == (int)(sizeof(s->key) / sizeof(s->key[0])))
		return err_set(err, -EINVAL, "%s:%lu: %s: too many settings", name, line, key);
	snprintf(s->key[s->n], sizeof(s->key[0]), "%s", key);
	s->line[s->n++] = line;
	return 0;
}

int config_parse(const char *name, const char *text, size_t len, struct config *ret,
                 struct cfs_err *err)
{
	struct config c;
	struct seen seen = {.n = 0};
	yaml_parser_t p;
	yaml_event_t ev;
	char section[64] = "", key[1024] = "";
	int depth = 0, docs = 0, r = 0;
	bool have_key = false, done = false, in_list = false;

	config_defaults(&c);
	if (!yaml_parser_initialize(&p))
		return err_set(err, -ENOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!r && !done) {
		unsigned long line;

		if (!yaml_parser_parse(&p, &ev)) {
			r = err_set(err, -EINVAL, "%s:%lu: %s", name,
			            (unsigned long)p.problem_mark.line + 1,
			            p.problem ? p.problem : "not YAML");
			break;
		}
		line = (unsigned long)ev.start_mark.line + 1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			/* A second document would silently override the first. */
			if (docs++)
				r = err_set(err, -EINVAL,
				            "%s:%lu: a second YAML document; the settings are one "
				            "mapping",
				            name, line);
			break;
		case YAML_ALIAS_EVENT:
			/* An alias is neither a key nor a value here: taking it for nothing
			 * would shift every key after it. */
			r = err_set(err, -EINVAL, "%s:%lu: %s: an alias (*name) is not a value",
			            name, line, have_key ? key : "key");
			break;
		case YAML_MAPPING_START_EVENT:
			if (depth == 1 && have_key && !in_list &&
			    (!strcmp(key, "gc") || !strcmp(key, "mirrors"))) {
				snprintf(section, sizeof(section), "%s", key);
				have_key = false;
			} else if (depth >= 1) {
				r = err_set(err, -EINVAL, "%s:%lu: %s: not a section", name, line,
				            have_key ? key : "mapping");
			}
			depth++;
			break;
		case YAML_MAPPING_END_EVENT:
			depth--;
			section[0] = '\0';
			break;
		case YAML_SEQUENCE_START_EVENT:
			/* pkgs_dirs is the one list: its items are set one by one. */
			if (depth == 1 && have_key && !in_list && !strcmp(key, "pkgs_dirs"))
				in_list = true;
			else
				r = err_set(err, -EINVAL, "%s:%lu: %s: a list is not a value here",
				            name, line, have_key ? key : "document");
			break;
		case YAML_SEQUENCE_END_EVENT:
			in_list = false;
			have_key = false;
			break;
		case YAML_SCALAR_EVENT: {
			const char *v = (const char *)ev.data.scalar.value;

			/* C strings would end at it and read as another value. */
			if (strlen(v) != ev.data.scalar.length) {
				r = err_set(err, -EINVAL, "%s:%lu: %s: a NUL character inside %s",
				            name, line, have_key ? key : "a key",
				            have_key ? "the value" : "it");
			} else if (depth == 0) {
				r = err_set(err, -EINVAL, "%s:%lu: expected a mapping of settings",
				            name, line);
			} else if (!have_key) {
				key_copy(key, sizeof(key), section, v);
				have_key = true;
				r = seen_add(&seen, name, key, line, err);
			} else {
				const char *why = "";

				if (apply(&c, key, v, &why))
					r = err_set(err, -EINVAL, "%s:%lu: %s: %s", name, line, key,
					            why);
				have_key = in_list;
			}
			break;
		}
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (!r && have_key)
		r = err_set(err, -EINVAL, "%s: %s: no value", name, key);
	if (!r)
		*ret = c;
	return r;
}

int config_load(const char *path, struct config *ret, struct cfs_err *err)
{
	char *text;
	size_t len;
	int r;

	r = textfile_read(AT_FDCWD, path, path, CONFIG_MAX_BYTES, &text, &len, err);
	if (r == -ENOENT && !strcmp(path, CONFIG_PATH)) {
		config_defaults(ret);
		return 0;
	}
	if (r < 0)
		return r;
	r = config_parse(path, text, len, ret, err);
	free(text);
	return r;
}
