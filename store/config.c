// SPDX-License-Identifier: MIT
/*
 * The configuration file shared by the CLI and the daemon: a flat YAML mapping with a gc
 * section. Parsed with libyaml's event API so that every error names its line.
 */
#include "condafs/store.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

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
	*why = "unknown key (known: store, mountpoint, threads, log_level, gc.unused_for, "
	       "gc.grace)";
	return -EINVAL;
}

int config_load(const char *path, struct config *ret, struct cfs_err *err)
{
	struct config c;
	yaml_parser_t p;
	yaml_event_t ev;
	char section[64] = "", key[128] = "";
	int depth = 0, r = 0;
	bool have_key = false, done = false;
	FILE *f;

	config_defaults(&c);
	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT && !strcmp(path, CONFIG_PATH)) {
			*ret = c;
			return 0;
		}
		return err_set(err, neg_errno(), "%s: %s", path, strerror(errno));
	}
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, f);
	while (!r && !done) {
		unsigned long line;

		if (!yaml_parser_parse(&p, &ev)) {
			r = err_set(err, -EINVAL, "%s:%lu: %s", path,
			            (unsigned long)p.problem_mark.line + 1,
			            p.problem ? p.problem : "not YAML");
			break;
		}
		line = (unsigned long)ev.start_mark.line + 1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_MAPPING_START_EVENT:
			if (depth == 1 && have_key && !strcmp(key, "gc")) {
				snprintf(section, sizeof(section), "gc");
				have_key = false;
			} else if (depth >= 1) {
				r = err_set(err, -EINVAL, "%s:%lu: %s: not a section", path, line,
				            have_key ? key : "mapping");
			}
			depth++;
			break;
		case YAML_MAPPING_END_EVENT:
			depth--;
			section[0] = '\0';
			break;
		case YAML_SEQUENCE_START_EVENT:
			r = err_set(err, -EINVAL, "%s:%lu: %s: a list is not a value here", path,
			            line, have_key ? key : "document");
			break;
		case YAML_SCALAR_EVENT: {
			const char *v = (const char *)ev.data.scalar.value;

			if (depth == 0) {
				r = err_set(err, -EINVAL, "%s:%lu: expected a mapping of settings",
				            path, line);
			} else if (!have_key) {
				if (section[0])
					snprintf(key, sizeof(key), "%s.%s", section, v);
				else
					snprintf(key, sizeof(key), "%s", v);
				have_key = true;
			} else {
				const char *why = "";

				if (apply(&c, key, v, &why))
					r = err_set(err, -EINVAL, "%s:%lu: %s: %s", path, line, key,
					            why);
				have_key = false;
			}
			break;
		}
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	fclose(f);
	if (!r && have_key)
		r = err_set(err, -EINVAL, "%s: %s: no value", path, key);
	if (!r)
		*ret = c;
	return r;
}
