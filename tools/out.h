/* SPDX-License-Identifier: MIT */
/*
 * What the CLI prints: JSON strings, escaped text, human sizes and times, the ingest
 * progress bar.
 */
#ifndef CONDAFS_OUT_H
#define CONDAFS_OUT_H

#include <condafs/store.h>

#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* s (len bytes) as a JSON string with quotes; invalid UTF-8 bytes become U+FFFD, control
 * characters (C0, DEL, C1) \uXXXX. */
void out_json_str(FILE *f, const char *s, size_t len);
/*
 * Every string a user may have chosen (paths, prefixes, package names, messages naming
 * them) goes to a terminal through one of these (escape_text: control bytes, DEL, C1 and
 * invalid UTF-8 as \xNN). out_esc writes s escaped into buf, cut to fit, and returns buf
 * (OUT_ESC holds any path escaped); out_text writes it to f whatever its length.
 */
#define OUT_ESC 16384
const char *out_esc(const char *s, char *buf, size_t size);
void out_text(FILE *f, const char *s);
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
/* Downloads of an install, on the same terms (packages, bytes, rate). */
void progress_fetch(void *ctx, const struct install_fetch *f);

#endif
