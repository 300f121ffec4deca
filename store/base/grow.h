/* SPDX-License-Identifier: MIT */
/*
 * Arrays that grow: room doubled (from 16) as elements are added, the size checked for
 * overflow. On failure the array is as it was, still the caller's to free.
 */
#ifndef CONDAFS_GROW_H
#define CONDAFS_GROW_H

#include <stddef.h>

/* v (room for *cap elements of size bytes) with room for need: v itself when it has it,
 * else moved (*cap updated); NULL when the bytes would overflow or memory is out. */
void *grow_array(void *v, size_t *cap, size_t need, size_t size);
/* grow_array for one more element than *n, counted in *n when it succeeds: the new one is
 * the returned array's [*n - 1]. */
void *grow_push(void *v, size_t *n, size_t *cap, size_t size);

#endif
