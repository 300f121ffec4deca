// SPDX-License-Identifier: MIT
/*
 * Finding who holds a lock, and waiting for one without waiting silently (lockwait.h).
 * /proc/locks names every lock with its file (device:inode), its range and the pid that
 * took it; open file description locks show pid -1 there, so their holders are found by
 * the lock lines of /proc/PID/fdinfo/FD, which list the locks taken through that
 * descriptor.
 */
#include "lockwait.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

/* At most this many holders are named; the rest are counted. */
#define HOLDERS_NAMED 3
#define HOLDERS_MAX   64
/* Of a holder's command line, this many bytes are shown. */
#define CMDLINE_MAX 160

struct target {
	unsigned dmaj, dmin;
	unsigned long long ino;
	off_t start, end; /* inclusive; end -1: to the end */
	bool writers_only;
};

struct holders {
	pid_t pid[HOLDERS_MAX];
	size_t n;
	bool ofd; /* an open file description lock matched: its holder is not in the line */
};

static void add_pid(struct holders *h, pid_t pid)
{
	if (pid <= 0 || pid == getpid())
		return;
	for (size_t i = 0; i < h->n; i++)
		if (h->pid[i] == pid)
			return;
	if (h->n < HOLDERS_MAX)
		h->pid[h->n++] = pid;
}

/*
 * One lock line, as /proc/locks and fdinfo's "lock:" lines print it:
 *   "3: POSIX  ADVISORY  WRITE 1234 fe:00:10953907 120 120"
 *   "4: -> FLOCK  ADVISORY  WRITE 5678 fe:00:10953939 0 EOF"   (waiting, not holding)
 * true when it is a lock held on the target; *ret_pid its pid (-1 for OFD locks).
 */
static bool lock_line_matches(const char *line, const struct target *t, pid_t *ret_pid)
{
	char kind[16], mode[16], type[16], end[32];
	unsigned dmaj, dmin;
	unsigned long long ino;
	long long start, stop;
	int pid, n = 0;

	if (sscanf(line, "%*d: %n", &n) < 0 || n == 0)
		return false;
	line += n;
	if (strncmp(line, "->", 2) == 0)
		return false;
	if (sscanf(line, "%15s %15s %15s %d %x:%x:%llu %lld %31s", kind, mode, type, &pid, &dmaj,
	           &dmin, &ino, &start, end) != 9)
		return false;
	if (strcmp(kind, "FLOCK") != 0 && strcmp(kind, "POSIX") != 0 && strcmp(kind, "OFDLCK") != 0)
		return false;
	if (dmaj != t->dmaj || dmin != t->dmin || ino != t->ino)
		return false;
	if (t->writers_only && strcmp(type, "WRITE") != 0)
		return false;
	stop = strcmp(end, "EOF") == 0 ? -1 : strtoll(end, NULL, 10);
	if (strcmp(kind, "FLOCK") != 0 &&
	    ((t->end >= 0 && start > t->end) || (stop >= 0 && stop < t->start)))
		return false;
	*ret_pid = strcmp(kind, "OFDLCK") == 0 ? -1 : pid;
	return true;
}

static void scan_proc_locks(const struct target *t, struct holders *h)
{
	FILE *f = fopen("/proc/locks", "re");
	char line[256];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		pid_t pid;

		if (!lock_line_matches(line, t, &pid))
			continue;
		/* A flock lock names the process that took it, which may have passed the
		 * descriptor on and exited: then fdinfo finds who has it now. */
		if (pid > 0 && kill(pid, 0) == 0)
			add_pid(h, pid);
		else
			h->ofd = true;
	}
	fclose(f);
}

/* The processes with a descriptor whose fdinfo shows a matching lock. Only procfs text is
 * read: nothing here stats a process's files, which could hang on a dead network mount. */
static void scan_fdinfo(const struct target *t, struct holders *h)
{
	DIR *proc = opendir("/proc");
	struct dirent *pe;

	if (!proc)
		return;
	while ((pe = readdir(proc))) {
		char path[64];
		pid_t pid = (pid_t)strtol(pe->d_name, NULL, 10);
		bool held = false;
		struct dirent *fe;
		DIR *fds;

		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
		fds = opendir(path);
		if (!fds)
			continue;
		while (!held && (fe = readdir(fds))) {
			char line[256];
			FILE *f;
			int fd;

			if (fe->d_name[0] == '.')
				continue;
			fd = openat(dirfd(fds), fe->d_name, O_RDONLY | O_CLOEXEC);
			f = fd >= 0 ? fdopen(fd, "re") : NULL;
			if (!f) {
				if (fd >= 0)
					close(fd);
				continue;
			}
			while (!held && fgets(line, sizeof(line), f)) {
				pid_t lp;

				held = strncmp(line, "lock:", 5) == 0 &&
				       lock_line_matches(line + 5 + strspn(line + 5, " \t"), t,
				                         &lp);
			}
			fclose(f);
		}
		closedir(fds);
		if (held)
			add_pid(h, pid);
	}
	closedir(proc);
}

/* "pid 1234 (condafs ingest /x)" at buf + *at, cut to size. */
static void describe(pid_t pid, char *buf, size_t size, size_t *at)
{
	char path[64], cmd[CMDLINE_MAX + 4] = "";
	ssize_t n = -1;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, cmd, CMDLINE_MAX);
		close(fd);
	}
	if (n > 0) {
		bool cut = n == CMDLINE_MAX;

		/* The arguments are NUL-separated; the last one ends in a NUL too. */
		while (n > 0 && cmd[n - 1] == '\0')
			n--;
		for (ssize_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		memcpy(cmd + n, cut ? "..." : "", cut ? 4 : 1);
	} else {
		/* A kernel thread, or a process that has just exited. */
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, cmd + 1, 32) : -1;
		if (fd >= 0)
			close(fd);
		cmd[0] = '[';
		n = n > 0 ? n : 0;
		while (n > 0 && cmd[n] == '\n')
			n--;
		memcpy(cmd + n + 1, "]", 2);
	}
	if (*at < size)
		*at += (size_t)snprintf(buf + *at, size - *at, "%spid %d (%s)", *at ? ", " : "",
		                        (int)pid, cmd);
}

void lockwait_holders(int fd, const char *path, off_t start, off_t len, bool writers_only,
                      char *buf, size_t size)
{
	struct holders h = {.n = 0};
	struct target t;
	struct stat sb;
	size_t at = 0;

	if (size)
		buf[0] = '\0';
	/* Neither a descriptor nor a path: nothing to look up. (Callers without a path pass
	 * a valid descriptor, lockwait_flock one flock has taken, which clang's analyzer
	 * cannot tell.) */
	if (fd < 0 && !path)
		return;
	if ((fd >= 0 ? fstat(fd, &sb) : stat(path, &sb)) < 0)
		return;
	t = (struct target){
	        major(sb.st_dev),           minor(sb.st_dev), (unsigned long long)sb.st_ino, start,
	        len ? start + len - 1 : -1, writers_only};
	scan_proc_locks(&t, &h);
	if (h.ofd || h.n == 0)
		scan_fdinfo(&t, &h);
	for (size_t i = 0; i < h.n && i < HOLDERS_NAMED; i++)
		describe(h.pid[i], buf, size, &at);
	if (h.n > HOLDERS_NAMED && at < size)
		snprintf(buf + at, size - at, " and %zu more", h.n - HOLDERS_NAMED);
}

void lockwait_tell(const struct lockwait *w, const char *what, const char *who)
{
	char msg[1024];

	if (!w || !w->fn)
		return;
	snprintf(msg, sizeof(msg), "waiting for %s held by %s", what,
	         who[0] ? who : "another process");
	w->fn(w->ctx, msg);
}

void lockwait_say(const struct lockwait *w, const char *what, int fd, const char *path, off_t start,
                  off_t len, bool writers_only)
{
	char who[768];

	if (!w || !w->fn)
		return;
	lockwait_holders(fd, path, start, len, writers_only, who, sizeof(who));
	lockwait_tell(w, what, who);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int lockwait_flock(int fd, int how, const char *what, const struct lockwait *w)
{
	int64_t since = now_ms();

	/* Tried without blocking for the first second, so the wait can be noticed; then
	 * said, and waited for in the kernel. */
	while (flock(fd, how | LOCK_NB) < 0) {
		struct timespec pause = {0, 10 * 1000 * 1000};

		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK)
			return -errno;
		if (now_ms() - since < LOCKWAIT_REPORT_MS) {
			nanosleep(&pause, NULL);
			continue;
		}
		lockwait_say(w, what, fd, NULL, 0, 0, false);
		while (flock(fd, how) < 0)
			if (errno != EINTR)
				return -errno;
		return 0;
	}
	return 0;
}
