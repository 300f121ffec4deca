/* SPDX-License-Identifier: MIT */
/*
 * Copies of caller-owned bytes for builders that keep what they are given (dirtree.c,
 * pkgrec.c, catalog_tree_count.c).
 */
#ifndef CONDAFS_MEMDUP_H
#define CONDAFS_MEMDUP_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'd copy of the n bytes at p; NULL when there are none (p NULL or n 0), and NULL
 * with *fail set when out of memory, so a run of copies checks once. */
static inline void *memdup_or_null(const void *p, size_t n, bool *fail)
{
	void *d;

	if (!p || !n)
		return NULL;
	d = malloc(n);
	if (!d)
		*fail = true;
	else
		memcpy(d, p, n);
	return d;
}

#endif
