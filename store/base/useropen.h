/* SPDX-License-Identifier: MIT */
/*
 * Opening what users own, as root. A user may change their prefix while root reads it, so
 * every path inside a prefix is resolved from the prefix's descriptor with no symbolic
 * link followed, every open is made with the fs credentials of the prefix's owner (root
 * never reads for a user what they could not read themselves), and no open can block (a
 * FIFO opens at once, and the caller refuses what fstat says is not a regular file).
 */
#ifndef CONDAFS_USEROPEN_H
#define CONDAFS_USEROPEN_H

#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What every open of a user's file carries. */
#define USEROPEN_FLAGS (O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

/*
 * The fs credentials to open a user's files with: their uid, primary group and groups.
 * Inactive (enter and leave do nothing) when we are not root, or the user is root.
 */
struct fscreds {
	bool active;
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* owned */
	size_t ngroups;
	gid_t *own; /* our own groups, put back by fscreds_leave; owned */
	size_t nown;
};

/*
 * The credentials of uid from the user database (its primary group and every group it is
 * a member of); a uid the database does not know gets group 65534 and no others. 0 or
 * -errno. Call fscreds_release whatever it returns.
 */
int fscreds_init(struct fscreds *c, uid_t uid);
void fscreds_release(struct fscreds *c);
/*
 * Take c's credentials for file access on the calling thread only: setfsuid and setfsgid
 * act on the thread, and setgroups is made as a raw system call (glibc's wrapper would
 * change every thread of the process). Other threads keep theirs: ingest's workers each
 * enter and leave around their own opens. 0 or -errno; on failure the thread has its
 * own credentials again.
 */
int fscreds_enter(const struct fscreds *c);
/* Back to our own credentials on this thread: 0 or -errno. */
int fscreds_leave(const struct fscreds *c);

/*
 * Open rel (relative to dirfd, "" for dirfd itself) with flags | USEROPEN_FLAGS, never
 * leaving dirfd and following no symbolic link on the way (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS; a component at a time, each O_NOFOLLOW, where the kernel has no
 * openat2 or the path is longer than it takes). A descriptor, or -errno: -ELOOP when
 * rel is or passes through a symbolic link.
 */
int open_beneath(int dirfd, const char *rel, int flags);

/*
 * Open a path someone named (a prefix, a lock file) with flags | O_NONBLOCK | O_NOCTTY |
 * O_CLOEXEC, one component at a time, each looked up with the credentials of the owner of
 * the directory it is in, and a symbolic link followed with those of the link's owner: a
 * link a user made leads root nowhere that user could not go, even in a directory
 * everyone may write to. A descriptor or -errno.
 */
int open_named(const char *path, int flags);

/* What to say of an error of open_beneath: strerror, but for -ELOOP. */
const char *beneath_strerror(int r);

#endif
