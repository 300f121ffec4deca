/* SPDX-License-Identifier: MIT */
/*
 * Hex digits: content keys, archive digests and environment hashes are all written as
 * lowercase hex; locks and users may write digests in either case.
 */
#ifndef CONDAFS_HEX_H
#define CONDAFS_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The lowercase hex of b[0, n) into out: 2 * n digits and a NUL. */
void hex_encode(const uint8_t *b, size_t n, char *out);
/* 0-15 for a hex digit of either case, else -1. */
int hex_value(char c);
/* Whether s[0, len) are hex digits: lowercase ones only, unless any_case. */
bool hex_only(const char *s, size_t len, bool any_case);

#endif
