/* SPDX-License-Identifier: MIT */
/*
 * What the CLI prints: JSON strings, human sizes and times, the ingest progress bar.
 */
#ifndef CONDAFS_OUT_H
#define CONDAFS_OUT_H

#include <condafs/store.h>

#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* s (len bytes) as a JSON string with quotes; invalid UTF-8 bytes become U+FFFD. */
void out_json_str(FILE *f, const char *s, size_t len);
/* "1.5 GiB" into buf. */
const char *out_size(uint64_t bytes, char buf[32]);
/* "2026-11-22 13:28" (UTC) into buf, or "-" for 0. */
const char *out_time(int64_t t, char buf[32]);

/* Progress of an ingest on stderr: a redrawn bar on a terminal, a line every few
 * seconds otherwise. */
struct progress {
	int tty;
	struct timespec start, last;
};
void progress_init(struct progress *p);
void progress_update(void *ctx, const struct ingest_progress *ip);
/* Ends the bar's line on a terminal. */
void progress_done(struct progress *p);

#endif
