// SPDX-License-Identifier: MIT
/*
 * escape_text (condafs/escape.h): what reaches a terminal or a log line. Control bytes,
 * DEL, C1 controls, invalid UTF-8 (overlong forms and surrogates too) and backslashes are
 * escaped; valid UTF-8 passes; a small buffer cuts between pieces, never inside one, and
 * the caller goes on from where it stopped.
 */
#include "condafs/escape.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* The whole of s escaped, in pieces of at most size bytes of output each. */
static char *esc(const char *s, size_t len, size_t size)
{
	char *all = calloc(1, 4 * len + 1), *buf = malloc(size);
	size_t at = 0, out = 0;

	while (at < len) {
		size_t n = escape_text(s + at, len - at, buf, size);

		if (n == 0)
			break;
		out += (size_t)snprintf(all + out, 4 * len + 1 - out, "%s", buf);
		at += n;
	}
	free(buf);
	return all;
}

static void same(const char *s, size_t len, const char *want)
{
	static const size_t sizes[] = {5, 6, 9, 17, 1024};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *got = esc(s, len, sizes[i]);

		CHECK_STR(got, want);
		free(got);
	}
}

int main(void)
{
	char out[64];

	same("plain/path-1.0_x+y.txt", 22, "plain/path-1.0_x+y.txt");
	same("a\x1b[31mred\x1b]0;title\x07", 19, "a\\x1b[31mred\\x1b]0;title\\x07");
	same("new\nline\ttab\rcr", 15, "new\\nline\\ttab\\rcr");
	same("nul\0x\x7f", 6, "nul\\x00x\\x7f");
	same("back\\slash", 10, "back\\\\slash");
	/* UTF-8 passes; C1 controls (U+0080-U+009F) do not, CSI U+009B among them. */
	same("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x8d", 14,
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x8d");
	same("\xc2\x9b"
	     "31m",
	     5, "\\xc2\\x9b31m");
	same("\xc2\xa0", 2, "\xc2\xa0");
	/* Raw C1 bytes, truncated and overlong sequences, surrogates, past U+10FFFF. */
	same("\x9b"
	     "2J",
	     3, "\\x9b2J");
	same("\xc3", 1, "\\xc3");
	same("\xe2\x82", 2, "\\xe2\\x82");
	same("\xc0\x9b", 2, "\\xc0\\x9b");
	same("\xe0\x82\x9b", 3, "\\xe0\\x82\\x9b");
	same("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");
	same("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80");
	same("\xf0\x8f\xbf\xbf", 4, "\\xf0\\x8f\\xbf\\xbf");

	/* A piece that does not fit is left whole for the next call. */
	CHECK(escape_text("ab\x1b", 3, out, 5) == 2);
	CHECK_STR(out, "ab");
	CHECK(escape_text("\x1b", 1, out, 5) == 1);
	CHECK_STR(out, "\\x1b");
	CHECK(escape_text("\xc2\x9b", 2, out, 8) == 1);
	CHECK_STR(out, "\\xc2");
	CHECK(escape_text("\xc2\x9b", 2, out, 9) == 2);
	CHECK_STR(out, "\\xc2\\x9b");
	CHECK(escape_text("x", 1, out, 1) == 0);
	CHECK_STR(out, "");

	CHECK(escape_utf8_len((const unsigned char *)"\xe2\x82\xac", 3) == 3);
	CHECK(escape_utf8_len((const unsigned char *)"\xe2\x82\xac", 2) == 0);
	CHECK(escape_utf8_len((const unsigned char *)"\x80", 1) == 0);
	CHECK(escape_utf8_len((const unsigned char *)"\xf4\x8f\xbf\xbf", 4) == 4);
	return test_exit();
}
