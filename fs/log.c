// SPDX-License-Identifier: MIT
/*
 * Logging: one line per message, to stderr with "<N>" level prefixes when systemd collects
 * it (the journal then keeps the level), plain "condafsd: " lines on a terminal, and syslog
 * once the daemon has detached. libfuse's own messages come through here too. Errors about
 * one file are logged once per file and at most a few per second in all. Control bytes in
 * a message (file names are users') are escaped (condafs/escape.h).
 */
#include "fsd.h"

#include <condafs/escape.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

enum log_sink {
	SINK_STDERR,
	SINK_SYSTEMD,
	SINK_SYSLOG,
};

/* Set by log_init/log_to_syslog from the main thread while no other thread logs. */
static enum log_sink sink = SINK_STDERR;
static enum log_level max_level = LOG_LEVEL_INFO;

/* Per-file errors: the daemon's limit (fsd.h), under lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_limit limit;

static const char *const level_word[] = {
        [LOG_LEVEL_ERR] = "error", [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
        [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
};

static void log_fuse(enum fuse_log_level level, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

static void log_fuse(enum fuse_log_level level, const char *fmt, va_list ap)
{
	/* libfuse's levels are syslog's; its messages end in a newline already. */
	char line[1024];
	size_t len;

	vsnprintf(line, sizeof(line), fmt, ap);
	len = strlen(line);
	while (len && line[len - 1] == '\n')
		line[--len] = '\0';
	if (len)
		log_msg((int)level < LOG_LEVEL_ERR ? LOG_LEVEL_ERR : (enum log_level)level,
		        "fuse: %s", line);
}

void log_init(enum log_level max)
{
	/* systemd sets JOURNAL_STREAM when stderr goes to the journal. */
	const char *js = getenv("JOURNAL_STREAM");

	sink = js && *js ? SINK_SYSTEMD : SINK_STDERR;
	max_level = max;
	fuse_set_log_func(log_fuse);
}

void log_to_syslog(void)
{
	if (sink == SINK_SYSTEMD)
		return;
	openlog(FSD_NAME, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	sink = SINK_SYSLOG;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char raw[2048], line[2048];

	if (level > max_level)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	/* One line, whatever the names in it hold: no terminal escapes, no forged lines. */
	escape_text(raw, strlen(raw), line, sizeof(line));
	switch (sink) {
	case SINK_SYSTEMD:
		fprintf(stderr, "<%d>%s\n", (int)level, line);
		break;
	case SINK_SYSLOG:
		syslog((int)level, "%s", line);
		break;
	case SINK_STDERR:
		if (level <= LOG_LEVEL_WARNING)
			fprintf(stderr, FSD_NAME ": %s: %s\n", level_word[level], line);
		else
			fprintf(stderr, FSD_NAME ": %s\n", line);
		break;
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void log_notice(void *ctx, const char *msg)
{
	(void)ctx;
	log_msg(LOG_LEVEL_WARNING, "%s", msg);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* True when key was not reported before (and remember it): a probe of 8 slots. */
static bool first_time(struct log_limit *l, uint64_t key)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ull;

	for (unsigned i = 0; i < 8; i++) {
		uint64_t *s = &l->seen[(h + i) % LOG_SEEN_SLOTS];

		if (*s == key)
			return false;
		if (*s == 0) {
			*s = key;
			return true;
		}
	}
	/* The neighbourhood is full: take over its first slot. */
	l->seen[h % LOG_SEEN_SLOTS] = key;
	return true;
}

bool log_limit_pass(struct log_limit *l, uint64_t key, int64_t now, uint64_t *ret_dropped)
{
	if (!first_time(l, key))
		return false;
	if (!l->started) {
		l->started = true;
		l->refill_ns = now;
	}
	if (now - l->refill_ns >= LOG_INTERVAL_NS) {
		int64_t back = (now - l->refill_ns) / LOG_INTERVAL_NS;

		l->spent = back >= l->spent ? 0 : l->spent - back;
		l->refill_ns += back * LOG_INTERVAL_NS;
	}
	if (l->spent >= LOG_BURST) {
		l->suppressed++;
		return false;
	}
	l->spent++;
	*ret_dropped = l->suppressed;
	l->suppressed = 0;
	return true;
}

void log_file_error(uint64_t key, const char *fmt, ...)
{
	uint64_t dropped = 0;
	int64_t now = now_ns();
	bool emit;
	va_list ap;

	pthread_mutex_lock(&lock);
	emit = log_limit_pass(&limit, key, now, &dropped);
	pthread_mutex_unlock(&lock);
	if (!emit)
		return;
	if (dropped)
		log_msg(LOG_LEVEL_ERR, "%llu more file errors were not logged (rate limit)",
		        (unsigned long long)dropped);
	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERR, fmt, ap);
	va_end(ap);
}
