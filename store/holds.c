// SPDX-License-Identifier: MIT
/*
 * The holds file (gc.c G4): one byte per environment id, read-locked by a mount for as
 * long as the kernel may ask it for anything of that environment, write-locked by gc while
 * it reaps the environment's rows. Open file description locks: a process that dies lets
 * go of them, and they do not touch the store lock (flock).
 */
#include "holds.h"

#include "err.h"
#include "lockwait.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_hold {
	int fd;
};

int holds_open(int dir_fd, bool write)
{
	int fd = openat(dir_fd, "holds", O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0 && !write && (errno == EROFS || errno == EACCES))
		fd = openat(dir_fd, "holds", O_RDONLY | O_CLOEXEC);
	return fd < 0 ? neg_errno() : fd;
}

int holds_lock(int fd, int64_t env_id, short type, bool test)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = env_id, .l_len = 1};

	if (fcntl(fd, test ? F_OFD_GETLK : F_OFD_SETLK, &fl) < 0)
		return errno == EAGAIN || errno == EACCES ? -EBUSY : neg_errno();
	return test && fl.l_type != F_UNLCK ? -EBUSY : 0;
}

void holds_say(struct store *st, int fd, uint64_t n)
{
	char who[768], msg[1024];

	if (!st->notify.fn)
		return;
	lockwait_holders(fd, NULL, 0, 0, false, who, sizeof(who));
	snprintf(msg, sizeof(msg), "%llu removed environment%s still held (%s/holds) by %s",
	         (unsigned long long)n, n == 1 ? " is" : "s are", st->dir,
	         who[0] ? who : "another process");
	st->notify.fn(st->notify.ctx, msg);
}

int store_hold_open(const char *dir, struct store_hold **ret, struct cfs_err *err)
{
	struct store_hold *h;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;

	if (dfd < 0)
		return err_set(err, neg_errno(), "%s: %s", dir, strerror(errno));
	fd = holds_open(dfd, false);
	close(dfd);
	if (fd < 0)
		return err_set(err, fd, "%s/holds: %s", dir, strerror(-fd));
	h = malloc(sizeof(*h));
	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	*ret = h;
	return 0;
}

void store_hold_close(struct store_hold *h)
{
	if (!h)
		return;
	close(h->fd);
	free(h);
}

int store_hold_env(struct store_hold *h, int64_t env_id)
{
	return holds_lock(h->fd, env_id, F_RDLCK, false);
}

void store_hold_release(struct store_hold *h, int64_t env_id)
{
	holds_lock(h->fd, env_id, F_UNLCK, false);
}
