// SPDX-License-Identifier: MIT
/*
 * condafs install, from condafs: the command is condafs-install's (cmd_install.c), the one
 * program linked with libcurl and libarchive and the forty-odd libraries they load, so
 * that every other command starts without them (as git keeps libcurl in its
 * git-remote-http). It is run with this command line, from beside this program (a build
 * tree) or else from CONDAFS_LIBEXECDIR, where meson installs it.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define HELPER "condafs-install"

int cmd_install(const struct cli *c)
{
	char self[PATH_MAX], helper[PATH_MAX + sizeof(HELPER)];
	struct cfs_err err = {{0}};
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	helper[0] = '\0';
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			slash[1] = '\0';
			snprintf(helper, sizeof(helper), "%s%s", self, HELPER);
		}
	}
	if (!helper[0] || access(helper, X_OK) != 0)
		snprintf(helper, sizeof(helper), "%s/%s", CONDAFS_LIBEXECDIR, HELPER);
	execv(helper, c->cmdline);
	snprintf(err.msg, sizeof(err.msg), "%s: %s", helper, strerror(errno));
	return cli_die(c, &err, -errno);
}
