// SPDX-License-Identifier: MIT
/*
 * The daemons serving a store, and telling them of a change. Each running condafsd
 * listens on a unix socket of its own under STORE/mounts/; a writer that has committed
 * (ingest, tag, untag, rm, gc) connects to each and waits for one byte, which the daemon
 * sends once its mount shows the change (its table swapped in, the kernel's cached names
 * dropped). So a command that returns has its change visible under every mount; a daemon
 * that does not answer in time is only late (it polls the catalog too).
 *
 * D1: a name under mounts/ is either being listened on or dead for good: a daemon binds a
 *     temporary name, listens, and only then renames it into place, and no two sockets
 *     ever get the same name (pid and random bytes). So a writer that finds a name
 *     refusing connections may delete it without racing a daemon that is starting.
 */
#include "condafs/store.h"

#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MOUNTS_DIR "mounts"
/* Writers waiting on one daemon at once: more wait in connect() or time out. */
#define LISTEN_BACKLOG 64
/* Daemons one writer tells at once; more are told after these answer. */
#define SYNC_MAX 64

struct store_listener {
	int fd;
	int dir_fd; /* STORE/mounts */
	char name[64];
	char *dir; /* for messages */
};

/* The address of name in the directory open as dir_fd: through /proc, so that a store's
 * path of any length fits sun_path. */
static int addr_at(int dir_fd, const char *name, struct sockaddr_un *ret)
{
	int n;

	memset(ret, 0, sizeof(*ret));
	ret->sun_family = AF_UNIX;
	n = snprintf(ret->sun_path, sizeof(ret->sun_path), "/proc/self/fd/%d/%s", dir_fd, name);
	return n < 0 || (size_t)n >= sizeof(ret->sun_path) ? -ENAMETOOLONG : 0;
}

static int open_mounts_dir(const char *dir, bool create, struct cfs_err *err)
{
	int sfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;

	if (sfd < 0)
		return err_set(err, neg_errno(), "%s: %s", dir, strerror(errno));
	/* Root's, like the store: only the store's owner tells or is told. */
	if (create && mkdirat(sfd, MOUNTS_DIR, 0700) < 0 && errno != EEXIST) {
		fd = err_set(err, neg_errno(), "%s/" MOUNTS_DIR ": %s", dir, strerror(errno));
		close(sfd);
		return fd;
	}
	fd = openat(sfd, MOUNTS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fd = err_set(err, neg_errno(), "%s/" MOUNTS_DIR ": %s", dir, strerror(errno));
	close(sfd);
	return fd;
}

int store_listen(const char *dir, struct store_listener **ret, struct cfs_err *err)
{
	struct store_listener *l = calloc(1, sizeof(*l));
	struct sockaddr_un addr;
	char tmp[80];
	uint64_t rnd;
	int r;

	if (!l)
		return -ENOMEM;
	l->fd = l->dir_fd = -1;
	l->dir = strdup(dir);
	if (!l->dir) {
		r = -ENOMEM;
		goto fail;
	}
	l->dir_fd = open_mounts_dir(dir, true, err);
	if (l->dir_fd < 0) {
		r = l->dir_fd;
		goto fail;
	}
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		r = err_set(err, neg_errno(), "getrandom: %s", strerror(errno));
		goto fail;
	}
	snprintf(l->name, sizeof(l->name), "%ld.%016llx", (long)getpid(), (unsigned long long)rnd);
	snprintf(tmp, sizeof(tmp), ".%s", l->name);
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		r = err_set(err, neg_errno(), "socket: %s", strerror(errno));
		goto fail;
	}
	/* D1: listening before the name is visible. */
	r = addr_at(l->dir_fd, tmp, &addr);
	if (!r &&
	    (bind(l->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	     listen(l->fd, LISTEN_BACKLOG) < 0 || renameat(l->dir_fd, tmp, l->dir_fd, l->name) < 0))
		r = neg_errno();
	if (r) {
		unlinkat(l->dir_fd, tmp, 0);
		r = err_set(err, r, "%s/" MOUNTS_DIR "/%s: %s", dir, l->name, strerror(-r));
		goto fail;
	}
	*ret = l;
	return 0;
fail:
	if (l->fd >= 0)
		close(l->fd);
	if (l->dir_fd >= 0)
		close(l->dir_fd);
	free(l->dir);
	free(l);
	return r;
}

int store_listener_fd(const struct store_listener *l)
{
	return l->fd;
}

int store_listener_accept(struct store_listener *l)
{
	int fd;

	do
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? neg_errno() : fd;
}

void store_listener_answer(int conn)
{
	/* The writer may have given up (EPIPE): nothing to do about it. */
	if (send(conn, "k", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		errno = 0;
	close(conn);
}

void store_listener_close(struct store_listener *l)
{
	if (!l)
		return;
	unlinkat(l->dir_fd, l->name, 0);
	close(l->fd);
	close(l->dir_fd);
	free(l->dir);
	free(l);
}

/* ---- the writer's side ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connect to name; -ECONNREFUSED: nobody listens there any more (D1). */
static int connect_at(int dir_fd, const char *name)
{
	struct sockaddr_un addr;
	int fd, r = addr_at(dir_fd, name, &addr);

	if (r)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		r = neg_errno();
		close(fd);
		return r;
	}
	return fd;
}

/* Wait for one byte on each of n connections until deadline; each answered one is closed
 * and set to -1. */
static void wait_answers(struct pollfd *p, size_t n, int64_t deadline)
{
	size_t left = n;

	while (left) {
		int64_t wait = deadline - now_ms();
		int k;

		if (wait <= 0)
			break;
		k = poll(p, n, (int)(wait > 1000000 ? 1000000 : wait));
		if (k < 0 && errno != EINTR)
			break;
		for (size_t i = 0; k > 0 && i < n; i++) {
			char c;

			if (p[i].fd < 0 || !p[i].revents)
				continue;
			/* A byte is the answer; EOF is a daemon that went away: not late, gone. */
			if (recv(p[i].fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN)
				continue;
			close(p[i].fd);
			p[i].fd = -1;
			left--;
		}
	}
}

int store_tell_mounts(const char *dir, int timeout_ms, unsigned *ret_late, struct cfs_err *err)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd p[SYNC_MAX];
	unsigned late = 0;
	struct dirent *de;
	size_t n = 0;
	DIR *d;
	int fd = open_mounts_dir(dir, false, err);

	*ret_late = 0;
	if (fd == -ENOENT)
		return 0; /* no daemon ever served this store */
	if (fd < 0)
		return fd;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return err_set(err, -ENOMEM, "%s/" MOUNTS_DIR ": out of memory", dir);
	}
	while ((de = readdir(d))) {
		int c;

		if (de->d_name[0] == '.')
			continue; /* also a daemon's name before it listens (D1) */
		c = connect_at(dirfd(d), de->d_name);
		if (c == -ECONNREFUSED || c == -ENOENT) {
			/* A daemon that died without cleaning up (D1). */
			unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		if (c < 0) {
			late++; /* a full backlog (-EAGAIN): busy, it will catch up by itself */
			continue;
		}
		p[n++] = (struct pollfd){.fd = c, .events = POLLIN};
		if (n == SYNC_MAX) {
			wait_answers(p, n, deadline);
			for (size_t i = 0; i < n; i++)
				if (p[i].fd >= 0) {
					late++;
					close(p[i].fd);
				}
			n = 0;
		}
	}
	closedir(d);
	wait_answers(p, n, deadline);
	for (size_t i = 0; i < n; i++)
		if (p[i].fd >= 0) {
			late++;
			close(p[i].fd);
		}
	*ret_late = late;
	return 0;
}
