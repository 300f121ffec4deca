// SPDX-License-Identifier: MIT
/*
 * The driver of a harness outside libFuzzer: LLVMFuzzerTestOneInput once over every
 * regular file named on the command line or found (sorted, not recursing) in a directory
 * named there. This is how the fuzz-regress suite replays each corpus in both of
 * tools/check's builds, gcc's included. Exit 1 when nothing was found to run.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t runs;

static int run_file(int dirfd, const char *name, const char *shown)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t done = 0;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "%s: %s\n", shown, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	/* libFuzzer hands a harness its own copy: exactly size bytes, no terminator. */
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	while (buf && done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	if (!buf || done != (size_t)st.st_size) {
		fprintf(stderr, "%s: cannot read\n", shown);
		free(buf);
		return -1;
	}
	LLVMFuzzerTestOneInput(buf, done);
	free(buf);
	runs++;
	return 0;
}

int main(int argc, char **argv)
{
	int bad = 0;

	for (int i = 1; i < argc; i++) {
		struct dirent **names;
		int n = scandir(argv[i], &names, NULL, alphasort);

		if (n < 0 && errno == ENOTDIR) {
			bad |= run_file(AT_FDCWD, argv[i], argv[i]);
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		int dirfd = open(argv[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		for (int k = 0; k < n; k++) {
			char *shown;

			if (names[k]->d_name[0] != '.' &&
			    asprintf(&shown, "%s/%s", argv[i], names[k]->d_name) >= 0) {
				bad |= run_file(dirfd, names[k]->d_name, shown);
				free(shown);
			}
			free(names[k]);
		}
		free(names);
		if (dirfd >= 0)
			close(dirfd);
	}
	printf("%s: %zu inputs\n", argv[0], runs);
	return bad || runs == 0 ? 1 : 0;
}
