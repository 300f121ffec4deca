// SPDX-License-Identifier: MIT
/*
 * Hex digits (hex.h).
 */
#include "hex.h"

void hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digit[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digit[b[i] >> 4];
		out[2 * i + 1] = digit[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool hex_only(const char *s, size_t len, bool any_case)
{
	for (size_t i = 0; i < len; i++) {
		int v = hex_value(s[i]);

		if (v < 0 || (!any_case && s[i] >= 'A' && s[i] <= 'F'))
			return false;
	}
	return true;
}
