// SPDX-License-Identifier: MIT
/*
 * condafs/frozen.h: which lib/ directories are stdlib directories, and the two texts: the
 * exact bytes for a plain path, and for a path holding what JSON and INI must not see raw
 * (quotes, backslashes, a newline, invalid UTF-8) text that stays one JSON string and one
 * INI value.
 */
#include "condafs/frozen.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static bool stdlib_name(const char *s)
{
	return frozen_stdlib_name(s, strlen(s));
}

static char *text(enum frozen_file f, const char *dir, size_t *len)
{
	char *t = NULL;

	CHECK(frozen_text(f, dir, "0123456789abcdef0123456789abcdef", &t, len) == 0);
	CHECK(t && strlen(t) == *len);
	return t;
}

int main(void)
{
	static const char msg[] =
	        "This environment is served read-only by condafs at /envs/0123456789abcdef0123"
	        "456789abcdef (environment 0123456789abcdef0123456789abcdef): nothing can be "
	        "installed into it, updated or removed.%sFor a copy you can change: condafs "
	        "export 0123456789abcdef0123456789abcdef DIR%sFor a new environment: create it "
	        "with conda, mamba or pixi, then store it with condafs ingest PREFIX.";
	char body[2048], want[2048], *t;
	size_t len;

	CHECK(stdlib_name("python3.11"));
	CHECK(stdlib_name("python3.13t"));
	CHECK(stdlib_name("python2.7"));
	CHECK(stdlib_name("python3.100"));
	CHECK(!stdlib_name("python3"));
	CHECK(!stdlib_name("python3."));
	CHECK(!stdlib_name("python.11"));
	CHECK(!stdlib_name("python3.11d"));
	CHECK(!stdlib_name("python3.11tt"));
	CHECK(!stdlib_name("python3.11/"));
	CHECK(!stdlib_name("pythonx.y"));
	CHECK(!stdlib_name("Python3.11"));
	CHECK(!frozen_stdlib_name("python3.11", 8));
	CHECK_STR(frozen_name(FROZEN_CONDA), "frozen");
	CHECK_STR(frozen_name(FROZEN_PYTHON), "EXTERNALLY-MANAGED");

	/* The exact bytes: CEP 22's one key, PEP 668's section and continued value. */
	snprintf(body, sizeof(body), msg, "\\n", "\\n");
	snprintf(want, sizeof(want), "{\"message\": \"%s\"}\n", body);
	t = text(FROZEN_CONDA, "/envs/0123456789abcdef0123456789abcdef", &len);
	CHECK_STR(t, want);
	free(t);
	snprintf(body, sizeof(body), msg, "\n ", "\n ");
	snprintf(want, sizeof(want), "[externally-managed]\nError=%s\n", body);
	t = text(FROZEN_PYTHON, "/envs/0123456789abcdef0123456789abcdef", &len);
	CHECK_STR(t, want);
	free(t);

	/* A hostile path: escaped in JSON, one line in INI. */
	t = text(FROZEN_CONDA, "/m \"q\" \\ %s\n\x1b\xff/é", &len);
	CHECK(strstr(t, "/m \\\"q\\\" \\\\ %s\\u000a\\u001b\\ufffd/é (environment") != NULL);
	CHECK(!strchr(t, '\x1b') && strchr(t, '\n') == t + len - 1);
	free(t);
	t = text(FROZEN_PYTHON, "/m \"q\" \\ %s\n\x1b\xff/é", &len);
	CHECK(strstr(t, "Error=This environment is served read-only by condafs at "
	                "/m \"q\" \\\\ %s\\n\\x1b\\xff/é (environment") != NULL);
	CHECK(!strchr(t, '\x1b'));
	free(t);
	return test_exit();
}
