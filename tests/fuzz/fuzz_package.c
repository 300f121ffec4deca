// SPDX-License-Identifier: MIT
/*
 * Package archives (store/conda/pkgarchive.c) and the link plan made of one
 * (store/conda/link.c) on any bytes, as `condafs install` reads a package from a channel or
 * a user's package cache: a zip ("PK" first) is read as a .conda, anything else as a
 * .tar.bz2. An archive is refused in one message naming it, or unpacked into entries that
 * stay inside the package (pkgarchive.h's rules); the plan of an unpacked one, beside a
 * python for a noarch python package to be mapped for (its entry points made), is refused
 * naming the package, or every entry of it lies inside the environment and takes its bytes
 * from a regular file the archive holds.
 */
#include "fuzz.h"
#include "link.h"
#include "pkgarchive.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* A decompression bomb ends in EFBIG here rather than in the fuzzer's memory limit. */
#define DATA_MAX (64 << 20)

static const char conda_name[] = "fuzz-1.0-0.conda";
static const char bz2_name[] = "fuzz-1.0-0.tar.bz2";
static const char conda_url[] = "https://channel.example.invalid/fuzz/linux-64/fuzz-1.0-0.conda";
static const char bz2_url[] = "https://channel.example.invalid/fuzz/linux-64/fuzz-1.0-0.tar.bz2";
static const char python_url[] =
        "https://channel.example.invalid/fuzz/linux-64/python-3.11.0-0.tar.bz2";

/* A path of the package or the environment: relative, no empty, "." or ".." component. */
static bool inside(const char *p)
{
	if (!*p || *p == '/')
		return false;
	for (const char *c = p; *c;) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += n;
		if (*c == '/' && !*++c)
			return false;
	}
	return true;
}

static void check_files(const struct pkgarchive_files *f)
{
	struct stat sb;

	FUZZ_CHECK(fstat(pkgarchive_files_fd(f), &sb) == 0);
	for (size_t i = 0; i < pkgarchive_files_count(f); i++) {
		const struct pkgarchive_entry *e = pkgarchive_files_entry(f, i);
		const char *slash = strrchr(e->path, '/');

		FUZZ_CHECK(inside(e->path));
		FUZZ_CHECK(e->mode <= 0777);
		FUZZ_CHECK(pkgarchive_files_find(f, e->path) == e);
		if (i > 0)
			FUZZ_CHECK(strcmp(pkgarchive_files_entry(f, i - 1)->path, e->path) < 0);
		if (e->type == NODE_FILE)
			FUZZ_CHECK(e->off <= (uint64_t)sb.st_size &&
			           e->size <= (uint64_t)sb.st_size - e->off);
		if (e->type == NODE_SYMLINK)
			FUZZ_CHECK(e->target && strlen(e->target) == e->size && e->size < 4096);
		/* Beneath no symbolic link or regular file of the archive. */
		while (slash) {
			char *parent = strndup(e->path, (size_t)(slash - e->path));
			const struct pkgarchive_entry *d;

			FUZZ_CHECK(parent);
			d = pkgarchive_files_find(f, parent);
			FUZZ_CHECK(!d || d->type == NODE_DIR);
			free(parent);
			slash = slash == e->path ? NULL
			                         : memrchr(e->path, '/', (size_t)(slash - e->path));
		}
	}
}

static void check_plan(const struct link_plan *pl, const struct pkgarchive_files *f)
{
	for (size_t i = 0; i < link_plan_count(pl); i++) {
		const struct link_entry *e = link_plan_entry(pl, i);
		const struct pkgarchive_entry *src;

		FUZZ_CHECK(inside(e->path));
		FUZZ_CHECK(e->mode <= 07777);
		if (e->type == LINK_SYMLINK)
			FUZZ_CHECK(e->target && strlen(e->target) == e->len);
		if (e->type != LINK_FILE || e->pkg == LINK_GENERATED)
			continue;
		FUZZ_CHECK(e->pkg == 0 && e->src && inside(e->src));
		src = pkgarchive_files_find(f, e->src);
		FUZZ_CHECK(src && src->type == NODE_FILE && src->size == e->len);
	}
}

static void ignore_warning(void *arg, const char *line)
{
	(void)arg;
	FUZZ_CHECK(*line);
}

/* The python of every plan: a package directory of its info/ alone, made once. */
static const char *python_dir(void)
{
	static char *dir;

	if (!dir) {
		static const char index[] = "{\"name\": \"python\", \"version\": \"3.11.0\", "
		                            "\"build\": \"0\", \"subdir\": \"linux-64\"}";
		static const char paths[] = "{\"paths_version\": 1, \"paths\": []}";

		FUZZ_CHECK(asprintf(&dir, "%s/python", fuzz_tmpdir()) > 0);
		free(fuzz_write(dir, "info/index.json", (const uint8_t *)index, strlen(index)));
		free(fuzz_write(dir, "info/paths.json", (const uint8_t *)paths, strlen(paths)));
	}
	return dir;
}

static int memfd(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	FUZZ_CHECK(fd >= 0);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool limited;
	const char *name = size >= 2 && data[0] == 'P' && data[1] == 'K' ? conda_name : bz2_name;
	struct cfs_err err = {{0}};
	struct pkgarchive_files *f = NULL;
	struct link_plan *pl = NULL;
	/* What a lock gives every package besides its archive. */
	struct link_pkg lp[2] = {{.dir = name,
	                          .url = name == conda_name ? conda_url : bz2_url,
	                          .fn = name,
	                          .channel = "https://channel.example.invalid/fuzz",
	                          .md5 = "0123456789abcdef0123456789abcdef",
	                          .size = size},
	                         {.dir = python_dir(),
	                          .url = python_url,
	                          .fn = "python-3.11.0-0.tar.bz2",
	                          .channel = "https://channel.example.invalid/fuzz",
	                          .md5 = "0123456789abcdef0123456789abcdef"}};
	int fd = memfd("archive"), dfd = memfd("data");
	int r;

	if (!limited) {
		struct rlimit rl = {DATA_MAX, DATA_MAX};

		signal(SIGXFSZ, SIG_IGN);
		FUZZ_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
		limited = true;
	}
	FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
	r = pkgarchive_unpack(fd, name, dfd, name, &f, &err);
	close(fd);
	close(dfd);
	if (r) {
		FUZZ_CHECK(r == -EINVAL || r == -EBADMSG || r == -EFBIG);
		fuzz_check_message(err.msg, name);
		return 0;
	}
	check_files(f);
	lp[0].files = f;
	r = link_plan_make(lp, 2, "/envs/fuzz", 1, ignore_warning, NULL, &pl, &err);
	if (r) {
		FUZZ_CHECK(r != -ENOMEM);
		fuzz_check_message(err.msg, "");
	} else {
		check_plan(pl, f);
		link_plan_free(pl);
	}
	pkgarchive_files_free(f);
	return 0;
}
