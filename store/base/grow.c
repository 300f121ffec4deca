// SPDX-License-Identifier: MIT
/*
 * Arrays that grow (grow.h).
 */
#include "grow.h"

#include <stdint.h>
#include <stdlib.h>

void *grow_array(void *v, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return v;
	while (c < need) {
		if (c > SIZE_MAX / 2)
			return NULL;
		c *= 2;
	}
	p = reallocarray(v, c, size);
	if (p)
		*cap = c;
	return p;
}

void *grow_push(void *v, size_t *n, size_t *cap, size_t size)
{
	void *p = *n == SIZE_MAX ? NULL : grow_array(v, cap, *n + 1, size);

	if (p)
		(*n)++;
	return p;
}
