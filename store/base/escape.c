// SPDX-License-Identifier: MIT
/*
 * escape_text: user-chosen text made safe for a terminal or a log line (condafs/escape.h).
 */
#include "condafs/escape.h"

#include <stdint.h>
#include <stdio.h>

size_t escape_utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	if (len > n)
		return 0;
	cp = s[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* The shortest form only, no surrogates, nothing past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

size_t escape_text(const char *s, size_t len, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, w = 0;

	while (i < len) {
		size_t k = escape_utf8_len(p + i, len - i);
		char piece[5];
		size_t plen = 0;

		if (k == 1 && p[i] >= 0x20 && p[i] != 0x7f && p[i] != '\\') {
			piece[plen++] = (char)p[i];
		} else if (k == 1 &&
		           (p[i] == '\n' || p[i] == '\r' || p[i] == '\t' || p[i] == '\\')) {
			piece[plen++] = '\\';
			piece[plen++] = p[i] == '\n'   ? 'n'
			                : p[i] == '\r' ? 'r'
			                : p[i] == '\t' ? 't'
			                               : '\\';
		} else if (k > 1 && !(k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)) {
			for (size_t j = 0; j < k; j++)
				piece[plen++] = (char)p[i + j];
		} else {
			/* A control byte, DEL, the first byte of a C1 control (its second, a
			 * lone continuation byte, follows the same way) or a byte that starts
			 * no valid sequence: one byte at a time, so no piece exceeds 4 bytes. */
			k = 1;
			snprintf(piece, sizeof(piece), "\\x%02x", p[i]);
			plen = 4;
		}
		if (w + plen + 1 > size)
			break;
		for (size_t j = 0; j < plen; j++)
			out[w++] = piece[j];
		i += k;
	}
	if (size)
		out[w] = '\0';
	return i;
}

void escape_json(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	for (size_t i = 0; i < len;) {
		size_t k = escape_utf8_len(p + i, len - i);

		if (k == 0) {
			fputs("\\ufffd", f);
			i++;
		} else if (p[i] == '"' || p[i] == '\\') {
			fprintf(f, "\\%c", p[i]);
			i++;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			fprintf(f, "\\u%04x", p[i]);
			i++;
		} else if (k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0) {
			fprintf(f, "\\u%04x", p[i + 1]);
			i += 2;
		} else {
			fwrite(p + i, 1, k, f);
			i += k;
		}
	}
	fputc('"', f);
}
