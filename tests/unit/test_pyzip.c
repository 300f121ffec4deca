// SPDX-License-Identifier: MIT
/*
 * Python written out to run (store/pyzip.c): which paths of a python package are files,
 * which go into lib/pythonXY.zip and under what name (a shipped pyc beside its module, as
 * zipimport looks for it), which are left out; and the zip itself, read back member by
 * member with libarchive. That CPython imports from it is store_install's to show: it runs
 * the compiler on a python written out so.
 */
#include "pyzip.h"
#include "test.h"
#include "testfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void how(const struct pyzip *z, const char *path, enum node_type type, enum pyzip_how want,
                const char *want_name)
{
	char name[256] = "";
	enum pyzip_how got = pyzip_how(z, path, type, name, sizeof(name));

	if (got != want)
		fprintf(stderr, "%s: %d, want %d\n", path, (int)got, (int)want);
	CHECK(got == want);
	if (want == PYZIP_ZIP)
		CHECK_STR(name, want_name);
}

int main(void)
{
	char *dir = testfs_mkdtemp(), path[4096], data[64];
	struct archive_entry *e;
	struct archive *a;
	struct pyzip *z = NULL;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;

	CHECK(pyzip_open(dfd, "3", &z) == -EINVAL);
	CHECK(pyzip_open(dfd, "3.11.2", &z) == -EINVAL);
	CHECK(pyzip_open(dfd, "three.eleven", &z) == -EINVAL);
	CHECK(pyzip_open(dfd, "3.11", &z) == 0);
	CHECK(pyzip_open(dfd, "3.11", &z) < 0 || !z); /* the zip exists: never written over */

	/* What the interpreter runs from: files. */
	how(z, "bin/python3.11", NODE_FILE, PYZIP_FILE, NULL);
	how(z, "bin/python3", NODE_SYMLINK, PYZIP_FILE, NULL);
	how(z, "lib/libpython3.11.so.1.0", NODE_FILE, PYZIP_FILE, NULL);
	how(z, "lib/python3.11/os.py", NODE_FILE, PYZIP_FILE, NULL);
	how(z, "lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so", NODE_FILE,
	    PYZIP_FILE, NULL);
	/* The standard library's modules and this interpreter's own pycs: the zip. */
	how(z, "lib/python3.11/json/__init__.py", NODE_FILE, PYZIP_ZIP, "json/__init__.py");
	how(z, "lib/python3.11/contextlib.py", NODE_FILE, PYZIP_ZIP, "contextlib.py");
	how(z, "lib/python3.11/__pycache__/contextlib.cpython-311.pyc", NODE_FILE, PYZIP_ZIP,
	    "contextlib.pyc");
	how(z, "lib/python3.11/json/__pycache__/decoder.cpython-311.pyc", NODE_FILE, PYZIP_ZIP,
	    "json/decoder.pyc");
	/* Not needed to run: other interpreters' and optimised pycs, site-packages, headers,
	 * data files, another version's tree, directories and links in the stdlib. */
	how(z, "lib/python3.11/__pycache__/contextlib.cpython-311.opt-1.pyc", NODE_FILE, PYZIP_SKIP,
	    NULL);
	how(z, "lib/python3.11/__pycache__/contextlib.cpython-310.pyc", NODE_FILE, PYZIP_SKIP,
	    NULL);
	how(z, "lib/python3.11/json/__pycache__x/decoder.cpython-311.pyc", NODE_FILE, PYZIP_SKIP,
	    NULL);
	how(z, "lib/python3.11/site-packages/pip/__init__.py", NODE_FILE, PYZIP_SKIP, NULL);
	how(z, "include/python3.11/Python.h", NODE_FILE, PYZIP_SKIP, NULL);
	how(z, "lib/python3.11/config-3.11-x86_64-linux-gnu/Makefile", NODE_FILE, PYZIP_SKIP, NULL);
	how(z, "lib/python3.10/os.py", NODE_FILE, PYZIP_SKIP, NULL);
	how(z, "lib/python3.11/json", NODE_DIR, PYZIP_SKIP, NULL);
	how(z, "lib/python3.11/link.py", NODE_SYMLINK, PYZIP_SKIP, NULL);
	how(z, "share/man/man1/python3.11.1", NODE_FILE, PYZIP_SKIP, NULL);

	/* Members as added, read back: names, sizes, bytes. */
	CHECK(pyzip_add(z, "a.py", 6, 1700000000LL * 1000000000) == 0);
	CHECK(pyzip_write(z, "x = 1\n", 6) == 0);
	CHECK(pyzip_add(z, "pkg/__init__.py", 0, 0) == 0);
	CHECK(pyzip_close(z) == 0);
	snprintf(path, sizeof(path), "%s/lib/python311.zip", dir);
	a = archive_read_new();
	archive_read_support_format_zip(a);
	CHECK(archive_read_open_filename(a, path, 4096) == ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		la_ssize_t got = archive_read_data(a, data, sizeof(data));

		if (n == 0) {
			CHECK_STR(archive_entry_pathname(e), "a.py");
			CHECK(got == 6 && memcmp(data, "x = 1\n", 6) == 0);
		} else {
			CHECK_STR(archive_entry_pathname(e), "pkg/__init__.py");
			CHECK(got == 0);
		}
		n++;
	}
	CHECK(n == 2);
	archive_read_free(a);
	pyzip_close(NULL);
	close(dfd);
	testfs_rmtree(dir);
	free(dir);
	return test_exit();
}
