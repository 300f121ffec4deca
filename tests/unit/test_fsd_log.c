// SPDX-License-Identifier: MIT
/*
 * The rate limit on condafsd's per-file errors (struct log_limit, fs/log.c), on a clock the
 * test moves: each key counts once; LOG_BURST lines at once, then one per LOG_INTERVAL_NS;
 * the line after a refusal says how many were refused; a long quiet spell gives back a
 * burst, never more; and over any stretch of time no more pass than the bucket allows.
 * log_file_error is this with CLOCK_MONOTONIC and the daemon's one limit under a lock.
 */
#include "fsd.h"
#include "test.h"

#include <stdlib.h>

#define SEC 1000000000LL
#define T0  (5 * SEC)

static struct log_limit *fresh(void)
{
	struct log_limit *l = calloc(1, sizeof(*l));

	if (!l)
		exit(1);
	return l;
}

/* Errors about new keys from *key on, at now: how many passed; *dropped the refusals the
 * ones that passed reported. */
static unsigned burst(struct log_limit *l, uint64_t *key, unsigned n, int64_t now,
                      uint64_t *dropped)
{
	unsigned passed = 0;

	*dropped = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t d = 0;

		if (log_limit_pass(l, (*key)++, now, &d)) {
			passed++;
			*dropped += d;
		}
	}
	return passed;
}

static void test_burst_then_rate(int64_t start)
{
	struct log_limit *l = fresh();
	uint64_t key = 1000, dropped = 99;

	/* A burst passes whole, and nothing is said to have been dropped... */
	CHECK(burst(l, &key, LOG_BURST, start, &dropped) == LOG_BURST);
	CHECK(dropped == 0);
	/* ...then nothing, even a moment before the interval is over... */
	CHECK(burst(l, &key, 7, start, &dropped) == 0);
	CHECK(burst(l, &key, 3, start + LOG_INTERVAL_NS - 1, &dropped) == 0);
	/* ...then one line per interval, the first saying how many were refused. */
	CHECK(burst(l, &key, 1, start + LOG_INTERVAL_NS, &dropped) == 1);
	CHECK(dropped == 10);
	CHECK(burst(l, &key, 5, start + LOG_INTERVAL_NS, &dropped) == 0);
	CHECK(burst(l, &key, 5, start + 2 * LOG_INTERVAL_NS, &dropped) == 1);
	CHECK(dropped == 5);
	/* Three intervals later: three lines, the count said once. */
	CHECK(burst(l, &key, 1, start + 5 * LOG_INTERVAL_NS + 1, &dropped) == 1);
	CHECK(dropped == 4);
	CHECK(burst(l, &key, 10, start + 5 * LOG_INTERVAL_NS + 1, &dropped) == 2);
	CHECK(dropped == 0);
	/* Intervals are counted from the last full one, not from the last line: one line
	 * at 6.5 intervals, the next at 7, none at 7.5, one at 8. */
	CHECK(burst(l, &key, 3, start + 13 * LOG_INTERVAL_NS / 2, &dropped) == 1);
	CHECK(burst(l, &key, 3, start + 7 * LOG_INTERVAL_NS, &dropped) == 1);
	CHECK(burst(l, &key, 3, start + 15 * LOG_INTERVAL_NS / 2, &dropped) == 0);
	CHECK(burst(l, &key, 3, start + 8 * LOG_INTERVAL_NS, &dropped) == 1);
	free(l);
}

/* A long quiet spell gives back one burst, not more. */
static void test_refill_capped(void)
{
	struct log_limit *l = fresh();
	uint64_t key = 1, dropped = 0;

	CHECK(burst(l, &key, 3 * LOG_BURST, T0, &dropped) == LOG_BURST);
	CHECK(burst(l, &key, 3 * LOG_BURST, T0 + 3600 * SEC, &dropped) == LOG_BURST);
	CHECK(dropped == 2 * LOG_BURST); /* refused at T0 */
	CHECK(burst(l, &key, 1, T0 + 3600 * SEC + LOG_INTERVAL_NS, &dropped) == 1);
	CHECK(dropped == 2 * LOG_BURST); /* refused just before */
	free(l);
}

/* Each key counts once: a key seen before is refused and not counted as dropped, whether
 * its first error passed or not. */
static void test_once_per_key(void)
{
	struct log_limit *l = fresh();
	uint64_t dropped = 99, key = 1000;

	CHECK(log_limit_pass(l, 42, T0, &dropped) && dropped == 0);
	for (int i = 0; i < 100; i++)
		CHECK(!log_limit_pass(l, 42, T0, &dropped));
	/* The first spent a token, the repeats none: 19 more pass now. */
	CHECK(burst(l, &key, LOG_BURST, T0, &dropped) == LOG_BURST - 1);
	CHECK(dropped == 0);
	/* Later, neither the repeated key nor the one refused is tried again... */
	CHECK(!log_limit_pass(l, 42, T0 + 100 * SEC, &dropped));
	CHECK(!log_limit_pass(l, 1000 + LOG_BURST - 1, T0 + 100 * SEC, &dropped));
	/* ...and the next line reports the one refusal, not the repeats. */
	CHECK(log_limit_pass(l, 7, T0 + 100 * SEC, &dropped));
	CHECK(dropped == 1);
	free(l);

	/* Many keys, one a second: each passes once, and none again. */
	l = fresh();
	{
		unsigned firsts = 0;

		for (uint64_t k = 1; k <= 500; k++)
			firsts += log_limit_pass(l, k << 2 | 1, T0 + (int64_t)k * SEC, &dropped);
		CHECK(firsts == 500);
		firsts = 0;
		for (uint64_t k = 1; k <= 500; k++)
			firsts += log_limit_pass(l, k << 2 | 1, T0 + 5000 * SEC, &dropped);
		CHECK(firsts == 0);
	}
	free(l);
}

/*
 * The bound: errors about new files arriving far faster than the limit, for 20 s of the
 * test's clock, at irregular times. Over any stretch of d ns no more than LOG_BURST +
 * d / LOG_INTERVAL_NS + 1 pass, and nothing is lost: the lines that passed, plus the
 * refusals they reported, plus those still pending, are every error.
 */
static void test_bound(void)
{
	enum { N = 100000 };
	struct log_limit *l = fresh();
	int64_t *passed_at = malloc(N * sizeof(*passed_at));
	uint64_t reported = 0, seed = 1;
	size_t np = 0;
	int64_t now = T0;
	bool over = false;

	for (uint64_t k = 1; k <= N; k++) {
		uint64_t dropped = 0;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		now += (int64_t)(seed >> 33) % 400000; /* 0 to 0.4 ms: 5000 errors a second */
		if (log_limit_pass(l, k, now, &dropped)) {
			passed_at[np++] = now;
			reported += dropped;
		}
	}
	CHECK(np + reported + l->suppressed == N);
	CHECK(np >= (size_t)((now - T0) / LOG_INTERVAL_NS)); /* and not starved either */
	for (size_t i = 0; i < np; i++) {
		for (size_t j = i; j < np; j++) {
			int64_t d = passed_at[j] - passed_at[i];

			if ((int64_t)(j - i + 1) > LOG_BURST + d / LOG_INTERVAL_NS + 1)
				over = true;
		}
	}
	CHECK(!over); /* too many lines in some stretch */
	free(passed_at);
	free(l);
}

int main(void)
{
	test_burst_then_rate(T0);
	/* The clock's zero is a time like any other. */
	test_burst_then_rate(0);
	test_refill_capped();
	test_once_per_key();
	test_bound();
	return test_exit();
}
