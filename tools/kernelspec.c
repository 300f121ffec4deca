// SPDX-License-Identifier: MIT
/*
 * Jupyter kernelspecs. The kernel runs through `condafs run <hash>`, not the mount's
 * bin/python directly: so it gets the environment's activation (PATH, CONDA_PREFIX, the
 * activate.d variables) as `conda activate` would give it, and the hash pins the exact
 * environment a notebook was written against even when a tag moves.
 */
#include "kernelspec.h"
#include "out.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool kernelspec_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 255 || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int join(char **ret, const char *a, const char *b, const char *name)
{
	return asprintf(ret, "%s/%s/%s", a, b, name) < 0 ? -ENOMEM : 0;
}

int kernelspec_dir(enum kernelspec_where where, const char *prefix, const char *name, char **ret,
                   struct cfs_err *err)
{
	const char *v;

	*ret = NULL;
	switch (where) {
	case KERNELSPEC_SYSTEM:
		return join(ret, "/usr/local/share/jupyter", "kernels", name);
	case KERNELSPEC_PREFIX:
		return join(ret, prefix, "share/jupyter/kernels", name);
	case KERNELSPEC_USER:
		/* jupyter_core.paths.jupyter_data_dir() on Linux. */
		if ((v = getenv("JUPYTER_DATA_DIR")) && *v)
			return join(ret, v, "kernels", name);
		if ((v = getenv("XDG_DATA_HOME")) && *v)
			return join(ret, v, "jupyter/kernels", name);
		if ((v = getenv("HOME")) && *v)
			return join(ret, v, ".local/share/jupyter/kernels", name);
		snprintf(err->msg, sizeof(err->msg),
		         "--user: HOME is not set (--prefix DIR names where to write)");
		return -EINVAL;
	}
	return -EINVAL;
}

int kernelspec_find_ipykernel(const char *env_dir, const char *env_name, struct cfs_err *err)
{
	char *pattern = NULL;
	glob_t g = {0};
	int r;

	if (asprintf(&pattern, "%s/lib/python[0-9]*/site-packages/ipykernel/__init__.py", env_dir) <
	    0)
		return -ENOMEM;
	r = glob(pattern, GLOB_NOSORT, NULL, &g);
	free(pattern);
	globfree(&g);
	if (r == 0)
		return 0;
	if (r == GLOB_NOSPACE)
		return -ENOMEM;
	snprintf(err->msg, sizeof(err->msg),
	         "%s: no ipykernel in the environment (%s/lib/python*/site-packages/ipykernel): "
	         "a Jupyter kernel needs it installed",
	         env_name, env_dir);
	return -ENOENT;
}

static void json_str(FILE *f, const char *s)
{
	out_json_str(f, s, strlen(s));
}

int kernelspec_json(const char *exe, char *const *opts, size_t nopts, const char *hash,
                    const char *label, char **ret, size_t *ret_len)
{
	static const char *const tail[] = {"--", "python",           "-m", "ipykernel_launcher",
	                                   "-f", "{connection_file}"};
	char *display = NULL;
	FILE *f;

	*ret = NULL;
	if (asprintf(&display, "Python (condafs %s)", label) < 0)
		return -ENOMEM;
	f = open_memstream(ret, ret_len);
	if (!f) {
		free(display);
		return -ENOMEM;
	}
	fputs("{\n  \"argv\": [\n    ", f);
	json_str(f, exe);
	for (size_t i = 0; i < nopts; i++) {
		fputs(",\n    ", f);
		json_str(f, opts[i]);
	}
	fputs(",\n    \"run\",\n    ", f);
	json_str(f, hash);
	for (size_t i = 0; i < sizeof(tail) / sizeof(tail[0]); i++) {
		fputs(",\n    ", f);
		json_str(f, tail[i]);
	}
	fputs("\n  ],\n  \"display_name\": ", f);
	json_str(f, display);
	fputs(",\n  \"language\": \"python\",\n  \"metadata\": {\"condafs\": {\"environment\": ",
	      f);
	json_str(f, hash);
	fputs("}}\n}\n", f);
	free(display);
	if (fclose(f) != 0) {
		free(*ret);
		*ret = NULL;
		return -ENOMEM;
	}
	return 0;
}
