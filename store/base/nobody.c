// SPDX-License-Identifier: MIT
#include "nobody.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#define NOBODY_ID 65534

void nobody_init(struct nobody *n)
{
	const struct passwd *pw;

	n->drop = geteuid() == 0;
	pw = n->drop ? getpwnam("nobody") : NULL;
	n->uid = pw ? pw->pw_uid : NOBODY_ID;
	n->gid = pw ? pw->pw_gid : NOBODY_ID;
}

int nobody_enter(const struct nobody *n)
{
	if (!n->drop)
		return 0;
	return setgroups(0, NULL) < 0 || setresgid(n->gid, n->gid, n->gid) < 0 ||
	                       setresuid(n->uid, n->uid, n->uid) < 0
	               ? -1
	               : 0;
}

/* dup2 leaves close-on-exec set when from and to are one. */
int nobody_child_fd(int from, int to)
{
	if (from == to)
		return fcntl(to, F_SETFD, 0);
	return dup2(from, to) < 0 ? -1 : 0;
}
