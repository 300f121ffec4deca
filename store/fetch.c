// SPDX-License-Identifier: MIT
/*
 * Downloads for condafs install (fetch.h): libcurl's multi interface driven from the
 * calling thread, each item written to name.part and renamed when whole.
 *
 * Invariants:
 *   F1  A file named `name` in dir_fd is only ever a complete transfer: the part is renamed
 *       to it once whole. Nothing is synced: a download is for the process that made it
 *       (install's are in its temporary directory, which no later process reads: install.c
 *       N3), and every archive is checked against its digest before a byte is used (N1),
 *       so a crash can cost a download, never a wrong byte.
 *   F2  name.part only ever holds a prefix of the resource, from byte 0: a transfer
 *       appends at the part's length and only after the server answered 206 with a
 *       Content-Range starting there; any other answer truncates the part to 0 first.
 *   F3  Nothing is written outside dir_fd: names are single components, opened with
 *       O_NOFOLLOW, and only name and name.part are ever created.
 */
#include "fetch.h"

#include "err.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Attempts per item: the first and 4 retries. */
#define ATTEMPTS 5
/* Backoff before retry k (1-based): 1 s << (k - 1); a Retry-After is honoured up to this. */
#define RETRY_AFTER_MAX_MS 60000
/* A transfer that receives nothing for this long is a timeout (and is retried). */
#define STALL_SECS   60L
#define CONNECT_SECS 30L
/* Progress at most every 125 ms; the rate over the samples of the last ~3 s. */
#define REPORT_MS    125
#define RATE_SAMPLES 24

enum slot_state { SLOT_FREE, SLOT_RUNNING, SLOT_WAITING };

struct fetch;

struct slot {
	struct fetch *f;
	enum slot_state state;
	size_t item;
	CURL *h;
	int fd;            /* name.part */
	bool file_url;     /* copied from 0, no Range */
	unsigned attempts; /* started so far */
	uint64_t start;    /* the part's length when this attempt began */
	uint64_t got;      /* bytes appended by this attempt */
	uint64_t counted;  /* what this item adds to the progress bytes */
	bool begun;        /* the answer was looked at (F2) */
	bool too_long;     /* more bytes came than the expected size */
	int64_t cr_start;  /* that header's first byte, -1 when none */
	int local_err;     /* a write failed: this errno */
	uint64_t due_ms;   /* SLOT_WAITING: when to start again */
	char errbuf[CURL_ERROR_SIZE];
};

struct fetch {
	const struct fetch_item *items;
	size_t n, next, done;
	int dir_fd;
	const char *ca_file; /* $SSL_CERT_FILE */
	CURLM *multi;
	struct slot *slots;
	unsigned nslots;
	struct fetch_progress p;
	uint64_t net; /* bytes received, for the rate: restarts do not take it back */
	uint64_t sample_ms[RATE_SAMPLES], sample_net[RATE_SAMPLES];
	size_t nsamples;
	uint64_t last_report_ms;
	const struct fetch_hooks *hooks; /* never NULL */
	struct cfs_err *err;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

/* curl_global_init is not safe to run twice at once; the store may be used by threads. */
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool is_file_url(const char *url)
{
	return strncasecmp(url, "file:", 5) == 0;
}

static bool one_component(const char *name)
{
	size_t len = strlen(name);

	return len && len + sizeof(".part") <= NAME_MAX + 1 && !strchr(name, '/') &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static void part_name(const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s.part", name);
}

/* The part goes back to 0 (F2); what it added to the progress is taken back. */
static int slot_truncate(struct slot *s)
{
	if (ftruncate(s->fd, 0) < 0 || lseek(s->fd, 0, SEEK_SET) < 0)
		return neg_errno();
	s->f->p.bytes -= s->counted;
	s->counted = 0;
	s->start = s->got = 0;
	return 0;
}

/* The first byte of the body (or its end, for an empty one): keep the part only for a 206
 * whose Content-Range starts where the part ends (F2). */
static int slot_begin(struct slot *s)
{
	long code = 0;

	if (s->begun)
		return 0;
	s->begun = true;
	if (s->start == 0)
		return 0;
	curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
	if (code == 206 && s->cr_start == (int64_t)s->start)
		return 0;
	return slot_truncate(s);
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
	struct slot *s = arg;
	size_t len = size * nitems;
	char line[128];
	unsigned long long first;

	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a redirect or a 100): forget the last one's headers. */
		s->cr_start = -1;
		return len;
	}
	if (len >= sizeof(line) || len < 14 || strncasecmp(buf, "content-range:", 14) != 0)
		return len;
	memcpy(line, buf, len);
	line[len] = '\0';
	if (sscanf(line + 14, " bytes %llu-", &first) == 1 && first <= INT64_MAX)
		s->cr_start = (int64_t)first;
	return len;
}

static size_t on_data(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct slot *s = arg;
	size_t len = size * nmemb, off = 0;
	int r;

	r = slot_begin(s);
	if (r < 0) {
		s->local_err = -r;
		return 0;
	}
	/* A server sending more than was asked for does not get to fill the disk. */
	if (s->f->items[s->item].size && s->start + s->got + len > s->f->items[s->item].size) {
		s->too_long = true;
		return 0;
	}
	while (off < len) {
		ssize_t w = write(s->fd, buf + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->local_err = w < 0 ? errno : EIO;
			return 0;
		}
		off += (size_t)w;
	}
	s->got += len;
	s->counted += len;
	s->f->p.bytes += len;
	s->f->net += len;
	return len;
}

static void slot_close(struct slot *s)
{
	if (s->h) {
		if (s->state == SLOT_RUNNING)
			curl_multi_remove_handle(s->f->multi, s->h);
		curl_easy_cleanup(s->h);
		s->h = NULL;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->state = SLOT_FREE;
}

static int fail_nomem(struct fetch *f)
{
	return err_set(f->err, -ENOMEM, "fetch: out of memory");
}

/* One attempt: a fresh easy handle, asking for the bytes after the part's end. */
static int slot_start(struct slot *s)
{
	struct fetch *f = s->f;
	const struct fetch_item *it = &f->items[s->item];
	char range[32];
	struct stat st;
	CURL *h;

	if (fstat(s->fd, &st) < 0)
		return err_set(f->err, neg_errno(), "%s.part: %s", it->name, strerror(errno));
	s->start = (uint64_t)st.st_size;
	if (s->file_url || (it->size && s->start > it->size)) {
		if (ftruncate(s->fd, 0) < 0)
			return err_set(f->err, neg_errno(), "%s.part: %s", it->name,
			               strerror(errno));
		s->start = 0;
	}
	if (lseek(s->fd, (off_t)s->start, SEEK_SET) < 0)
		return err_set(f->err, neg_errno(), "%s.part: %s", it->name, strerror(errno));
	f->p.bytes = f->p.bytes - s->counted + s->start;
	s->counted = s->start;
	s->got = 0;
	s->begun = false;
	s->cr_start = -1;
	s->too_long = false;
	s->local_err = 0;
	s->errbuf[0] = '\0';
	s->attempts++;

	h = curl_easy_init();
	if (!h)
		return fail_nomem(f);
	s->h = h;
	snprintf(range, sizeof(range), "%" PRIu64 "-", s->start);
	if (curl_easy_setopt(h, CURLOPT_URL, it->url) ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,file") ||
	    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L) ||
	    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L) ||
	    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L) ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_SECS) ||
	    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) ||
	    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, STALL_SECS) ||
	    curl_easy_setopt(h, CURLOPT_USERAGENT, "condafs") ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf) ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data) ||
	    curl_easy_setopt(h, CURLOPT_WRITEDATA, s) ||
	    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) ||
	    curl_easy_setopt(h, CURLOPT_HEADERDATA, s) || curl_easy_setopt(h, CURLOPT_PRIVATE, s) ||
	    (s->start && curl_easy_setopt(h, CURLOPT_RANGE, range)) ||
	    (f->ca_file && curl_easy_setopt(h, CURLOPT_CAINFO, f->ca_file)) ||
	    curl_multi_add_handle(f->multi, h))
		/* Every option above exists in the libcurl we build with: only memory fails. */
		return fail_nomem(f);
	s->state = SLOT_RUNNING;
	return 0;
}

/* Take the next item: open (or create) its part, and start it unless it is already whole. */
static int slot_take(struct fetch *f, struct slot *s, bool *ret_whole)
{
	const struct fetch_item *it = &f->items[f->next];
	char part[NAME_MAX + 1];
	struct stat st;

	*ret_whole = false;
	s->item = f->next++;
	s->attempts = 0;
	s->counted = 0;
	s->file_url = is_file_url(it->url);
	part_name(it->name, part, sizeof(part));
	s->fd = openat(f->dir_fd, part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
	if (s->fd < 0)
		return err_set(f->err, neg_errno(), "%s: %s", part, strerror(errno));
	if (fstat(s->fd, &st) < 0)
		return err_set(f->err, neg_errno(), "%s: %s", part, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(f->err, -EINVAL, "%s: not a regular file", part);
	/* A part of the expected size is what an earlier run received before it could rename
	 * it; the caller checks its digest as it checks every file. */
	if (it->size && (uint64_t)st.st_size == it->size && !s->file_url) {
		s->counted = it->size;
		f->p.bytes += it->size;
		*ret_whole = true;
		return 0;
	}
	return slot_start(s);
}

/* The part is whole: it has its name (F1). */
static int slot_finish(struct slot *s)
{
	struct fetch *f = s->f;
	const char *name = f->items[s->item].name;
	char part[NAME_MAX + 1];
	int r = 0;

	part_name(name, part, sizeof(part));
	if (renameat(f->dir_fd, part, f->dir_fd, name) < 0)
		r = err_set(f->err, neg_errno(), "%s: rename: %s", part, strerror(errno));
	slot_close(s);
	if (!r) {
		f->done++;
		if (f->hooks->done)
			f->hooks->done(s->item, f->hooks->arg);
	}
	return r;
}

static bool retryable_code(long code)
{
	return code >= 500 || code == 408 || code == 429;
}

static bool retryable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* Wait before the next attempt: 1, 2, 4, 8 s, or what the server asked for. */
static void slot_retry_later(struct slot *s)
{
	curl_off_t after = 0;
	uint64_t wait = 1000ull << (s->attempts - 1);

	curl_easy_getinfo(s->h, CURLINFO_RETRY_AFTER, &after);
	if (after > 0)
		wait = (uint64_t)after * 1000 > wait ? (uint64_t)after * 1000 : wait;
	if (wait > RETRY_AFTER_MAX_MS)
		wait = RETRY_AFTER_MAX_MS;
	curl_multi_remove_handle(s->f->multi, s->h);
	curl_easy_cleanup(s->h);
	s->h = NULL;
	s->state = SLOT_WAITING;
	s->due_ms = now_ms() + wait;
}

static int errno_of_code(long code)
{
	switch (code) {
	case 404:
	case 410:
		return -ENOENT;
	case 401:
	case 403:
		return -EACCES;
	default:
		return -EIO;
	}
}

/* A transfer ended: done, to be retried, or the failure that stops everything. */
static int slot_done(struct slot *s, CURLcode rc)
{
	struct fetch *f = s->f;
	const struct fetch_item *it = &f->items[s->item];
	char reason[CURL_ERROR_SIZE + 64];
	long code = 0;
	bool retry = false;
	int r;

	curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
	if (s->local_err)
		return err_set(f->err, -s->local_err, "%s.part: %s", it->name,
		               strerror(s->local_err));
	if (s->too_long)
		return err_set(f->err, -EIO, "%s: more than the %" PRIu64 " bytes expected",
		               it->url, it->size);
	if (rc == CURLE_OK) {
		/* An empty 200 to a Range request still means "from 0" (F2). */
		r = slot_begin(s);
		if (r < 0)
			return err_set(f->err, r, "%s.part: %s", it->name, strerror(-r));
		if (!it->size || s->start + s->got == it->size)
			return slot_finish(s);
		snprintf(reason, sizeof(reason), "cut short at %" PRIu64 " of %" PRIu64 " bytes",
		         s->start + s->got, it->size);
		retry = true;
	} else if (rc == CURLE_HTTP_RETURNED_ERROR) {
		snprintf(reason, sizeof(reason), "HTTP %ld", code);
		if (code == 416 && s->start) {
			/* The part is not a prefix the server knows: start over (F2). */
			r = slot_truncate(s);
			if (r < 0)
				return err_set(f->err, r, "%s.part: %s", it->name, strerror(-r));
			retry = true;
		} else {
			retry = retryable_code(code);
		}
	} else {
		snprintf(reason, sizeof(reason), "%s",
		         s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
		retry = retryable_curl(rc);
	}
	if (retry && s->attempts < ATTEMPTS) {
		slot_retry_later(s);
		return 0;
	}
	if (rc == CURLE_OUT_OF_MEMORY)
		return fail_nomem(f);
	if (retry)
		return err_set(f->err, -EIO, "%s: %s (after %u attempts)", it->url, reason,
		               s->attempts);
	if (rc == CURLE_HTTP_RETURNED_ERROR)
		return err_set(f->err, errno_of_code(code), "%s: %s", it->url, reason);
	if (rc == CURLE_FILE_COULDNT_READ_FILE)
		return err_set(f->err, -ENOENT, "%s: %s", it->url, reason);
	return err_set(f->err, -EIO, "%s: %s", it->url, reason);
}

static void report(struct fetch *f, bool last)
{
	uint64_t t = now_ms();
	size_t i, oldest;

	if (!f->hooks->progress || (!last && t - f->last_report_ms < REPORT_MS))
		return;
	f->last_report_ms = t;
	/* Keep ~3 s of samples: one per report, the oldest dropped when full. */
	if (f->nsamples == RATE_SAMPLES) {
		memmove(f->sample_ms, f->sample_ms + 1,
		        sizeof(f->sample_ms[0]) * (RATE_SAMPLES - 1));
		memmove(f->sample_net, f->sample_net + 1,
		        sizeof(f->sample_net[0]) * (RATE_SAMPLES - 1));
		f->nsamples--;
	}
	f->sample_ms[f->nsamples] = t;
	f->sample_net[f->nsamples] = f->net;
	f->nsamples++;
	oldest = 0;
	for (i = 0; i + 1 < f->nsamples && t - f->sample_ms[i] > 3000; i++)
		oldest = i + 1;
	f->p.rate = t > f->sample_ms[oldest] ? (double)(f->net - f->sample_net[oldest]) * 1000.0 /
	                                               (double)(t - f->sample_ms[oldest])
	                                     : 0.0;
	f->p.done = f->done;
	f->hooks->progress(&f->p, f->hooks->arg);
}

/* Start items until `parallel` are under way, and retries whose time has come. */
static int fill(struct fetch *f)
{
	uint64_t t = now_ms();
	int r;

	for (unsigned i = 0; i < f->nslots; i++) {
		struct slot *s = &f->slots[i];
		bool whole;

		if (s->state == SLOT_WAITING && s->due_ms <= t) {
			r = slot_start(s);
			if (r < 0)
				return r;
		}
		while (s->state == SLOT_FREE && f->next < f->n) {
			r = slot_take(f, s, &whole);
			if (r < 0)
				return r;
			if (whole) {
				r = slot_finish(s);
				if (r < 0)
					return r;
			}
		}
	}
	return 0;
}

/* How long to sleep: until the next retry is due, at most until the next report. */
static int poll_ms(const struct fetch *f)
{
	uint64_t t = now_ms(), wait = REPORT_MS;

	for (unsigned i = 0; i < f->nslots; i++) {
		const struct slot *s = &f->slots[i];

		if (s->state == SLOT_WAITING)
			wait = s->due_ms <= t ? 0 : (s->due_ms - t < wait ? s->due_ms - t : wait);
	}
	return (int)wait;
}

static int run(struct fetch *f)
{
	int running, left, r;
	CURLMsg *msg;
	CURLMcode mc;

	while (f->done < f->n) {
		r = fill(f);
		if (r < 0)
			return r;
		if (f->done == f->n)
			break;
		mc = curl_multi_perform(f->multi, &running);
		if (mc != CURLM_OK)
			return err_set(f->err, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO,
			               "fetch: %s", curl_multi_strerror(mc));
		while ((msg = curl_multi_info_read(f->multi, &left))) {
			struct slot *s = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			r = slot_done(s, msg->data.result);
			if (r < 0)
				return r;
		}
		report(f, false);
		if (f->done == f->n)
			break;
		if (f->hooks->stop && f->hooks->stop(f->hooks->arg))
			return err_set(f->err, -ECANCELED, "fetch: stopped");
		mc = curl_multi_poll(f->multi, NULL, 0, poll_ms(f), NULL);
		if (mc != CURLM_OK)
			return err_set(f->err, -EIO, "fetch: %s", curl_multi_strerror(mc));
	}
	return 0;
}

int fetch_all(const struct fetch_item *items, size_t n, int dir_fd, unsigned parallel,
              const struct fetch_hooks *hooks, struct cfs_err *err)
{
	static const struct fetch_hooks none;
	struct fetch f = {.items = items,
	                  .n = n,
	                  .dir_fd = dir_fd,
	                  .hooks = hooks ? hooks : &none,
	                  .err = err};
	int r = 0;

	for (size_t i = 0; i < n; i++)
		if (!one_component(items[i].name))
			return err_set(err, -EINVAL, "%s: not a file name to download %s to",
			               items[i].name, items[i].url);
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return err_set(err, -EIO, "fetch: libcurl: %s", curl_easy_strerror(curl_init_rc));
	f.p.total = n;
	for (size_t i = 0; i < n; i++) {
		uint64_t size = items[i].size ? items[i].size : items[i].size_hint;

		if (!size) {
			f.p.bytes_total = 0;
			break;
		}
		f.p.bytes_total += size;
	}
	/* OpenSSL's own variable, which conda and pixi honour too: libcurl built with a CA
	 * bundle of its own would ignore it. */
	f.ca_file = getenv("SSL_CERT_FILE");
	if (f.ca_file && !*f.ca_file)
		f.ca_file = NULL;
	f.nslots = parallel ? parallel : 1;
	if (f.nslots > n)
		f.nslots = n ? (unsigned)n : 1;
	f.slots = calloc(f.nslots, sizeof(*f.slots));
	f.multi = curl_multi_init();
	if (!f.slots || !f.multi) {
		r = fail_nomem(&f);
		goto out;
	}
	for (unsigned i = 0; i < f.nslots; i++) {
		f.slots[i].f = &f;
		f.slots[i].fd = -1;
	}
	/* One connection per transfer, reused across items of the same host. */
	curl_multi_setopt(f.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)f.nslots);
	r = run(&f);
	report(&f, true);
out:
	for (unsigned i = 0; f.slots && i < f.nslots; i++) {
		struct slot *s = &f.slots[i];
		struct stat st;
		char part[NAME_MAX + 1];

		/* A part that received nothing is nothing to resume: no litter. */
		if (s->fd >= 0 && fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size == 0) {
			part_name(items[s->item].name, part, sizeof(part));
			unlinkat(dir_fd, part, 0);
		}
		slot_close(s);
	}
	if (f.multi)
		curl_multi_cleanup(f.multi);
	free(f.slots);
	return r;
}

/* ---- mirrors ---- */

struct mirror_rule {
	char *from, *to; /* without a trailing '/' */
	size_t from_len;
};

struct mirrors {
	struct mirror_rule *rules;
	size_t n;
};

int mirrors_new(struct mirrors **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

void mirrors_free(struct mirrors *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->rules[i].from);
		free(m->rules[i].to);
	}
	free(m->rules);
	free(m);
}

/* A side of a rule: scheme "://" something, or file:///path. */
static bool looks_like_url(const char *s, size_t len)
{
	size_t i = 0;

	if (!len || !isalpha((unsigned char)s[0]))
		return false;
	while (i < len &&
	       (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '.' || s[i] == '-'))
		i++;
	return len > i + 3 && memcmp(s + i, "://", 3) == 0;
}

static size_t trim_slash(const char *s, size_t len)
{
	while (len && s[len - 1] == '/')
		len--;
	return len;
}

int mirrors_add(struct mirrors *m, const char *rule, struct cfs_err *err)
{
	const char *eq = strchr(rule, '=');
	struct mirror_rule r = {0}, *rules;
	size_t from_len, to_len;

	if (!eq)
		return err_set(err, -EINVAL, "mirror rule \"%s\": not FROM=TO", rule);
	from_len = trim_slash(rule, (size_t)(eq - rule));
	to_len = trim_slash(eq + 1, strlen(eq + 1));
	if (!looks_like_url(rule, from_len) || !looks_like_url(eq + 1, to_len))
		return err_set(err, -EINVAL, "mirror rule \"%s\": FROM and TO must be URLs", rule);
	r.from = strndup(rule, from_len);
	r.to = strndup(eq + 1, to_len);
	r.from_len = from_len;
	rules = r.from && r.to ? realloc(m->rules, (m->n + 1) * sizeof(*rules)) : NULL;
	if (!rules) {
		free(r.from);
		free(r.to);
		return err_set(err, -ENOMEM, "mirror rule \"%s\": out of memory", rule);
	}
	m->rules = rules;
	m->rules[m->n++] = r;
	return 0;
}

int mirrors_map(const struct mirrors *m, const char *url, char **ret)
{
	const struct mirror_rule *best = NULL;
	size_t len;

	for (size_t i = 0; m && i < m->n; i++) {
		const struct mirror_rule *r = &m->rules[i];

		if (strncmp(url, r->from, r->from_len) != 0 ||
		    (url[r->from_len] != '\0' && url[r->from_len] != '/'))
			continue;
		if (!best || r->from_len > best->from_len)
			best = r;
	}
	if (!best) {
		*ret = strdup(url);
		return *ret ? 0 : -ENOMEM;
	}
	len = strlen(best->to) + strlen(url + best->from_len) + 1;
	*ret = malloc(len);
	if (!*ret)
		return -ENOMEM;
	snprintf(*ret, len, "%s%s", best->to, url + best->from_len);
	return 0;
}
