// SPDX-License-Identifier: MIT
/*
 * Formatting for the CLI: JSON strings, text with control bytes escaped, sizes, times, and
 * the ingest progress display.
 */
#include "out.h"

#include <condafs/escape.h>

#include <string.h>
#include <unistd.h>

void out_json_str(FILE *f, const char *s, size_t len)
{
	escape_json(f, s, len);
}

const char *out_esc(const char *s, char *buf, size_t size)
{
	escape_text(s, strlen(s), buf, size);
	return buf;
}

void out_text(FILE *f, const char *s)
{
	size_t len = strlen(s);
	char buf[1024];

	while (len) {
		size_t n = escape_text(s, len, buf, sizeof(buf));

		fputs(buf, f);
		s += n;
		len -= n;
	}
}

const char *out_size(uint64_t bytes, char buf[32])
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, 32, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, 32, "%.1f %s", v, unit[u]);
	return buf;
}

const char *out_time(int64_t t, char buf[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&tt, &tm)) {
		snprintf(buf, 32, "-");
		return buf;
	}
	strftime(buf, 32, "%Y-%m-%d %H:%M", &tm);
	return buf;
}

static double since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

void progress_init(struct progress *p)
{
	p->tty = isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	p->last = p->start;
}

void progress_update(void *ctx, const struct ingest_progress *ip)
{
	struct progress *p = ctx;
	struct timespec now;
	char done[32], total[32], rate[32], eta[32] = "-";
	double t, bps;
	int width = 24, fill;

	clock_gettime(CLOCK_MONOTONIC, &now);
	/* Without a terminal, a line every 5 s keeps logs short. */
	if (!p->tty && since(&p->last, &now) < 5.0)
		return;
	p->last = now;
	t = since(&p->start, &now);
	bps = t > 0 ? (double)ip->bytes_done / t : 0;
	if (bps > 0 && ip->bytes_total >= ip->bytes_done) {
		long s = (long)((double)(ip->bytes_total - ip->bytes_done) / bps);

		snprintf(eta, sizeof(eta), "%ld:%02ld", s / 60, s % 60);
	}
	out_size(ip->bytes_done, done);
	out_size(ip->bytes_total, total);
	out_size((uint64_t)bps, rate);
	fill = ip->bytes_total
	               ? (int)((double)width * (double)ip->bytes_done / (double)ip->bytes_total)
	               : width;
	if (fill > width)
		fill = width;
	if (p->tty)
		fprintf(stderr, "\r[%.*s%*s] %llu/%llu files  %s/%s  %s/s  ETA %s\033[K", fill,
		        "########################", width - fill, "",
		        (unsigned long long)ip->files_done, (unsigned long long)ip->files_total,
		        done, total, rate, eta);
	else
		fprintf(stderr, "condafs: ingest: %llu/%llu files, %s/%s, %s/s, ETA %s\n",
		        (unsigned long long)ip->files_done, (unsigned long long)ip->files_total,
		        done, total, rate, eta);
}

void progress_fetch(void *ctx, const struct install_fetch *f)
{
	struct progress *p = ctx;
	struct timespec now;
	char done[32], total[32], rate[32];
	int width = 24, fill;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!p->tty && since(&p->last, &now) < 5.0)
		return;
	p->last = now;
	out_size(f->bytes, done);
	out_size(f->bytes_total, total);
	out_size((uint64_t)f->rate, rate);
	fill = f->bytes_total ? (int)((double)width * (double)f->bytes / (double)f->bytes_total)
	                      : (f->total ? (int)(width * f->done / f->total) : width);
	if (fill > width)
		fill = width;
	if (p->tty)
		fprintf(stderr, "\r[%.*s%*s] %zu/%zu packages  %s/%s  %s/s\033[K", fill,
		        "########################", width - fill, "", f->done, f->total, done,
		        f->bytes_total ? total : "?", rate);
	else
		fprintf(stderr, "condafs: install: %zu/%zu packages, %s/%s, %s/s\n", f->done,
		        f->total, done, f->bytes_total ? total : "?", rate);
}

void progress_done(struct progress *p)
{
	if (p->tty)
		fputc('\n', stderr);
}
