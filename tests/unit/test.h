/* SPDX-License-Identifier: MIT */
/*
 * A small in-tree test harness: CHECK records a failure with its line and goes on, so one
 * run reports every broken expectation; main returns test_exit().
 */
#ifndef CONDAFS_TEST_H
#define CONDAFS_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                     \
	do {                                                                            \
		test_checks++;                                                          \
		if (!(cond)) {                                                          \
			test_failures++;                                                \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                 \
		}                                                                       \
	} while (0)

#define CHECK_STR(a, b)                                                                   \
	do {                                                                              \
		const char *check_a_ = (a), *check_b_ = (b);                              \
		test_checks++;                                                            \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {          \
			test_failures++;                                                  \
			fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,  \
				check_a_ ? check_a_ : "(null)",                           \
				check_b_ ? check_b_ : "(null)");                          \
		}                                                                         \
	} while (0)

static inline int test_exit(void)
{
	printf("%d passed, %d failed\n", test_checks - test_failures, test_failures);
	return test_failures ? 1 : 0;
}

#endif
