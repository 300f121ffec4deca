// SPDX-License-Identifier: MIT
/*
 * Running someone else's code from root: as nobody with no groups (activate.c's
 * activate.d scripts, pycompile.c's python), in a child set up between fork and exec.
 */
#ifndef CONDAFS_NOBODY_H
#define CONDAFS_NOBODY_H

#include <stdbool.h>
#include <sys/types.h>

struct nobody {
	bool drop; /* we are root: the child becomes nobody */
	uid_t uid;
	gid_t gid;
};

/* Before fork: nobody's ids (65534, Debian's, when the system has no "nobody"). */
void nobody_init(struct nobody *n);
/* In the child, async-signal-safe: no groups, nobody's gid and uid when n->drop. 0 or -1. */
int nobody_enter(const struct nobody *n);
/* In the child, async-signal-safe: from as fd to, kept across exec. 0 or -1. */
int nobody_child_fd(int from, int to);

#endif
