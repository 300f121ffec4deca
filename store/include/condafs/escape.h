/* SPDX-License-Identifier: MIT */
/*
 * Making text safe for a terminal or a log line. File names, prefixes, package names and
 * the command lines of other processes are chosen by users; written raw, an escape sequence
 * among them would drive root's terminal and a newline would forge a log line. The CLI and
 * the daemon pass every human-readable line through escape_text; JSON has its own escaping.
 */
#ifndef CONDAFS_ESCAPE_H
#define CONDAFS_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/*
 * Write s (len bytes) to out (size >= 5 bytes, NUL-terminated) with C0 control bytes
 * (\n \r \t as such, the rest \xNN), DEL, the C1 controls U+0080-U+009F, every byte of
 * invalid UTF-8 (overlong forms and surrogates included) as \xNN, and a backslash as \\;
 * everything else, valid UTF-8 included, as it is. Stops before the first piece that does
 * not fit; returns how many bytes of s went out, so a caller can go on from there.
 */
size_t escape_text(const char *s, size_t len, char *out, size_t size);

/*
 * The length of the valid UTF-8 sequence at s (at most n bytes): 1 to 4, 0 when the bytes
 * there are not one (overlong forms, surrogates and code points past U+10FFFF are not).
 */
size_t escape_utf8_len(const unsigned char *s, size_t n);

/*
 * s (len bytes) to f as a JSON string: quotes, a backslash, C0 controls, DEL and the C1
 * controls escaped (valid JSON raw, but a terminal may act on them), each byte of invalid
 * UTF-8 as U+FFFD, everything else as it is.
 */
void escape_json(FILE *f, const char *s, size_t len);

#endif
