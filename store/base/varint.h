/* SPDX-License-Identifier: MIT */
/*
 * LEB128 varints as the store's own formats write them (docs/tree-format.md,
 * docs/package-format.md): shortest form only, at most 64 bits.
 */
#ifndef CONDAFS_VARINT_H
#define CONDAFS_VARINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The shortest LEB128 of v (at most 10 bytes) at p; returns its length. */
static inline size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		uint8_t b = v & 0x7f;

		v >>= 7;
		p[n++] = b | (v ? 0x80 : 0);
	} while (v);
	return n;
}

static inline size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >>= 7)
		n++;
	return n;
}

/* Reads a varint from [*p, end); false if it runs past end, is longer than it needs to be
 * or does not fit 64 bits. */
static inline bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 10 && *p < end; i++) {
		uint8_t b = *(*p)++;

		if (i == 9 && b > 1)
			return false;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			/* A last byte of 0 after others is a longer encoding than needed. */
			if (i > 0 && b == 0)
				return false;
			*ret = v;
			return true;
		}
	}
	return false;
}

#endif
