/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz harnesses share. Each harness is one LLVMFuzzerTestOneInput; built with
 * clang's libFuzzer (tools/fuzz) it runs a campaign, built with fuzz_main.c (every other
 * build, gcc's too) it runs once over the files and directories it is given: the
 * fuzz-regress suite. A harness reports a bug by crashing: a sanitizer, or FUZZ_CHECK.
 */
#ifndef CONDAFS_FUZZ_H
#define CONDAFS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test failed: crash, so the fuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__,      \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* An error message names what was read (name) first, as every user message. */
static inline void fuzz_check_message(const char *msg, const char *name)
{
	FUZZ_CHECK(msg[0] != '\0');
	FUZZ_CHECK(strncmp(msg, name, strlen(name)) == 0);
}

/* And is one plain line: no control byte, even from the input. */
static inline void fuzz_check_one_line(const char *msg)
{
	for (const char *p = msg; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
}

/*
 * A private directory for the harnesses that read files, made on first use and removed
 * at exit; the returned string lives as long as the process.
 */
const char *fuzz_tmpdir(void);

/* Write size bytes to dir/rel (replacing it), creating the parents; the path, malloc'd. */
char *fuzz_write(const char *dir, const char *rel, const uint8_t *data, size_t size);

#endif
