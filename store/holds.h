/* SPDX-License-Identifier: MIT */
/*
 * The holds file (holds.c, gc.c G4), as gc uses it; mounts use condafs/store.h's
 * store_hold_* API.
 */
#ifndef CONDAFS_HOLDS_H
#define CONDAFS_HOLDS_H

#include "store_impl.h"

#include <stdbool.h>
#include <stdint.h>

/* DIR_FD/holds, made if write (else opened read-only where it cannot be): fd or -errno. */
int holds_open(int dir_fd, bool write);
/* Lock (F_RDLCK, F_WRLCK) or unlock (F_UNLCK) the byte of env_id without waiting; with
 * test, only ask whether it could be locked. -EBUSY: another process holds it. */
int holds_lock(int fd, int64_t env_id, short type, bool test);
/* gc cannot reap n removed environments: say who holds them, a mount or anything else. */
void holds_say(struct store *st, int fd, uint64_t n);

#endif
