/* SPDX-License-Identifier: MIT */
/*
 * Fixed-size little-endian integers as the store's tree formats write them
 * (docs/tree-format.md): byte by byte, so any alignment and any host read the same.
 */
#ifndef CONDAFS_LE_H
#define CONDAFS_LE_H

#include <stdint.h>

static inline uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void le32_put(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#endif
