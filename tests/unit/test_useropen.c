// SPDX-License-Identifier: MIT
/*
 * useropen: paths under a prefix never pass a symbolic link nor leave it, however deep;
 * a FIFO opens without waiting; a user's fs credentials hold on the thread that took them
 * and on no other; a named path is looked up as the owner of each directory on the way.
 * The credential checks need root (tests run as root here); without it they are skipped.
 */
#include "test.h"
#include "testfs.h"
#include "useropen.h"

#include <limits.h>
#include <pthread.h>

#define USER ((uid_t)61001)

static char *tmp;

static int open_rel(int dfd, const char *rel, int flags)
{
	int fd = open_beneath(dfd, rel, flags);

	if (fd >= 0)
		close(fd);
	return fd >= 0 ? 0 : fd;
}

static void test_beneath(void)
{
	char *p = testfs_path(tmp, "prefix"), *deep, *link;
	int dfd, fd;
	size_t n = 0;

	testfs_write(p, "x", "a/b/file");
	testfs_write(tmp, "secret", "outside/file");
	link = testfs_path(p, "a/link");
	CHECK(symlink("../../outside", link) == 0);
	free(link);
	link = testfs_path(p, "a/flink");
	CHECK(symlink("b/file", link) == 0);
	free(link);
	link = testfs_path(p, "fifo");
	CHECK(mkfifo(link, 0644) == 0);
	free(link);
	dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(dfd >= 0);

	CHECK(open_rel(dfd, "a/b/file", O_RDONLY) == 0);
	CHECK(open_rel(dfd, "", O_RDONLY | O_DIRECTORY) == 0);
	CHECK(open_rel(dfd, "a/link/file", O_RDONLY) == -ELOOP);
	CHECK(open_rel(dfd, "a/link", O_RDONLY | O_DIRECTORY) == -ELOOP);
	CHECK(open_rel(dfd, "a/flink", O_RDONLY) == -ELOOP);
	CHECK(open_rel(dfd, "../outside/file", O_RDONLY) == -EXDEV);
	/* No writer: a blocking open would wait for ever. */
	CHECK(open_rel(dfd, "fifo", O_RDONLY) == 0);
	CHECK(strstr(beneath_strerror(-ELOOP), "symbolic link") != NULL);

	/* Deeper than one openat2 takes: a component at a time, with the same rules. */
	deep = malloc(PATH_MAX + 64);
	fd = dup(dfd);
	if (!deep || fd < 0)
		testfs_die("malloc", "");
	while (n < PATH_MAX) {
		static const char comp[] = "dddddddddddddddddddddddddddddddd";
		int next;

		mkdirat(fd, comp, 0755);
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(fd);
		fd = next;
		if (fd < 0)
			testfs_die("openat", comp);
		memcpy(deep + n, comp, sizeof(comp) - 1);
		n += sizeof(comp) - 1;
		deep[n++] = '/';
	}
	close(openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	CHECK(symlinkat("/etc", fd, "up") == 0);
	close(fd);
	memcpy(deep + n, "f", 2);
	CHECK(strlen(deep) >= PATH_MAX);
	CHECK(open_rel(dfd, deep, O_RDONLY) == 0);
	memcpy(deep + n, "up/passwd", 10);
	CHECK(open_rel(dfd, deep, O_RDONLY) == -ELOOP);
	free(deep);
	close(dfd);
	free(p);
}

/* ---- credentials, per thread ---- */

struct peer {
	const char *secret;
	struct fscreds *creds;
	pthread_barrier_t *entered, *checked;
	int as_user, after;
	uid_t fsuid;
};

/* The fsuid of the calling thread, from /proc (the fourth id on the Uid: line). */
static uid_t thread_fsuid(void)
{
	FILE *f = fopen("/proc/thread-self/status", "re");
	char line[256];
	unsigned r, e, s, fs = (unsigned)-1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %u %u %u %u", &r, &e, &s, &fs) == 4)
			break;
	if (f)
		fclose(f);
	return (uid_t)fs;
}

static int try_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static void *peer_main(void *arg)
{
	struct peer *pe = arg;

	CHECK(fscreds_enter(pe->creds) == 0);
	pe->fsuid = thread_fsuid();
	pe->as_user = try_open(pe->secret);
	pthread_barrier_wait(pe->entered);
	pthread_barrier_wait(pe->checked);
	CHECK(fscreds_leave(pe->creds) == 0);
	pe->after = try_open(pe->secret);
	return NULL;
}

static void test_creds(void)
{
	char *secret = testfs_path(tmp, "root-secret");
	pthread_barrier_t entered, checked;
	struct fscreds creds;
	struct peer pe = {
	        .secret = secret, .creds = &creds, .entered = &entered, .checked = &checked};
	pthread_t tid;

	testfs_write(tmp, "root only", "root-secret");
	chmod(secret, 0600);
	CHECK(fscreds_init(&creds, USER) == 0);
	CHECK(creds.active && creds.uid == USER);
	pthread_barrier_init(&entered, NULL, 2);
	pthread_barrier_init(&checked, NULL, 2);
	CHECK(pthread_create(&tid, NULL, peer_main, &pe) == 0);
	pthread_barrier_wait(&entered);
	/* The peer holds the user's credentials now; this thread keeps root's. */
	CHECK(pe.fsuid == USER);
	CHECK(pe.as_user == -EACCES);
	CHECK(thread_fsuid() == 0);
	CHECK(try_open(secret) == 0);
	pthread_barrier_wait(&checked);
	pthread_join(tid, NULL);
	CHECK(pe.after == 0);
	pthread_barrier_destroy(&entered);
	pthread_barrier_destroy(&checked);
	fscreds_release(&creds);

	/* Root's own credentials: nothing to take. */
	CHECK(fscreds_init(&creds, 0) == 0);
	CHECK(!creds.active);
	fscreds_release(&creds);
	free(secret);
}

static void test_named(void)
{
	char *home = testfs_path(tmp, "home"), *closed = testfs_path(tmp, "closed");
	char *ulink = testfs_path(home, "link"), *rlink = testfs_path(tmp, "rootlink");
	int fd;

	testfs_write(closed, "{}", "file");
	chmod(closed, 0700);
	testfs_write(home, "", ".keep");
	CHECK(chown(home, USER, USER) == 0);
	CHECK(symlink(closed, ulink) == 0);
	CHECK(lchown(ulink, USER, USER) == 0);
	CHECK(symlink(closed, rlink) == 0);
	/* The user's link is followed with the user's permissions: closed is root's 0700. */
	fd = open_named(ulink, O_RDONLY | O_DIRECTORY);
	CHECK(fd == -EACCES);
	if (fd >= 0)
		close(fd);
	/* In a directory anyone may write to (root's, like /tmp), the user's link is still
	 * followed as the user, not as the directory's owner. */
	free(ulink);
	ulink = testfs_path(tmp, "shared/link");
	testfs_write(tmp, "", "shared/.keep");
	free(rlink);
	rlink = testfs_path(tmp, "shared");
	chmod(rlink, 01777);
	CHECK(symlink(closed, ulink) == 0);
	CHECK(lchown(ulink, USER, USER) == 0);
	fd = open_named(ulink, O_RDONLY | O_DIRECTORY);
	CHECK(fd == -EACCES);
	if (fd >= 0)
		close(fd);
	free(rlink);
	rlink = testfs_path(tmp, "rootlink");
	/* Root's own link leads where root may go. */
	fd = open_named(rlink, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	CHECK(open_named("", O_RDONLY) == -ENOENT);
	free(ulink);
	free(rlink);
	free(home);
	free(closed);
}

int main(void)
{
	tmp = testfs_mkdtemp();
	chmod(tmp, 0755);
	test_beneath();
	if (geteuid() == 0) {
		test_creds();
		test_named();
	} else {
		printf("not root: credentials not checked\n");
	}
	testfs_rmtree(tmp);
	free(tmp);
	return test_exit();
}
