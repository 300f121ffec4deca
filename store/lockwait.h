/* SPDX-License-Identifier: MIT */
/*
 * Waiting for a lock, never silently: after a second, the waiter is told once what it
 * waits for and which processes hold it (found in /proc/locks, and for open file
 * description locks, which it lists without a pid, in /proc/PID/fdinfo), then it goes on
 * waiting. Used for the store lock (gc.c), the catalog's busy waits (catalog.c) and the
 * environments gc cannot reap (gc.c).
 */
#ifndef CONDAFS_LOCKWAIT_H
#define CONDAFS_LOCKWAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* How long a waiter waits before it says so. */
#define LOCKWAIT_REPORT_MS 1000

/* Where a waiter says what it waits for: fn NULL says nothing. */
struct lockwait {
	void (*fn)(void *ctx, const char *msg);
	void *ctx;
};

/*
 * The processes other than this one that hold a lock on the file fd (or, fd < 0, path)
 * overlapping bytes [start, start + len) (len 0: to the end; flock locks cover the whole
 * file), only write locks when writers_only: "pid 1234 (condafs ingest /x)", a few of
 * them, into buf; "" when none is visible from here (another PID namespace, or gone).
 * The command lines are the processes' own, unescaped.
 */
void lockwait_holders(int fd, const char *path, off_t start, off_t len, bool writers_only,
                      char *buf, size_t size);

/* Tell w "waiting for <what> held by <who>" ("... by another process" when who is ""). */
void lockwait_tell(const struct lockwait *w, const char *what, const char *who);
/* lockwait_tell, with who as lockwait_holders finds them. */
void lockwait_say(const struct lockwait *w, const char *what, int fd, const char *path, off_t start,
                  off_t len, bool writers_only);

/*
 * flock(fd, how) (LOCK_SH or LOCK_EX), waiting as long as it takes; once it has waited
 * LOCKWAIT_REPORT_MS, it tells w what it waits for (what: "the store lock (DIR/lock)").
 * 0, or a negative errno from flock.
 */
int lockwait_flock(int fd, int how, const char *what, const struct lockwait *w);

#endif
