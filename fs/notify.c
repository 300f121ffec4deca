// SPDX-License-Identifier: MIT
/*
 * systemd's readiness protocol (sd_notify(3)), without libsystemd: one datagram to the
 * unix socket named by $NOTIFY_SOCKET, a path or, starting with '@', an abstract name.
 * condafsd.service is Type=notify, so units ordered after it start once the mount
 * answers (the INIT request is answered), not merely once the daemon runs.
 */
#include "fsd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void notify_ready(struct fsd *fs)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct envtab *t;
	size_t len;
	char msg[512];
	int fd, n;

	if (!path || !*path)
		return;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path)) {
		log_msg(LOG_LEVEL_WARNING, "NOTIFY_SOCKET=%s: not a socket path", path);
		return;
	}
	memcpy(addr.sun_path, path, len);
	if (path[0] == '@')
		addr.sun_path[0] = '\0';
	t = envtab_get(fs);
	n = snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving %zu environment%s at %s", t->nlive,
	             t->nlive == 1 ? "" : "s", fs->mountpoint);
	envtab_put(t);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = (int)strlen("READY=1");
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&addr,
	                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		log_msg(LOG_LEVEL_WARNING, "NOTIFY_SOCKET=%s: %s", path, strerror(errno));
	else
		log_msg(LOG_LEVEL_DEBUG, "told systemd: ready");
	if (fd >= 0)
		close(fd);
}
