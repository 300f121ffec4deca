/* SPDX-License-Identifier: MIT */
/*
 * Downloading package archives (libcurl's multi interface, one thread), and the channel
 * mirror rules that say where a channel's URLs are fetched from.
 */
#ifndef CONDAFS_FETCH_H
#define CONDAFS_FETCH_H

#include "condafs/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fetch_item {
	const char *url;  /* http, https or file URL (already mapped through mirrors) */
	const char *name; /* the file to create in dir_fd: one path component */
	uint64_t size;    /* expected size, 0 when unknown */
	/* Without a size, what the progress counts on (0: nothing): a lock's word, which a
	 * longer or shorter response does not fail. */
	uint64_t size_hint;
};

struct fetch_progress {
	size_t done, total;          /* items finished, items */
	uint64_t bytes, bytes_total; /* bytes so far (resumed bytes count), expected (0: unknown) */
	double rate;                 /* bytes/s received over the last few seconds */
};

/* What fetch_all tells its caller while it runs, on its own thread; each may be NULL. */
struct fetch_hooks {
	/* At most ~8 times a second, and once at the end (after a failure too). */
	void (*progress)(const struct fetch_progress *p, void *arg);
	/* items[i] is whole under its name (F1): the caller may read it now, on another
	 * thread, while the rest download. */
	void (*done)(size_t i, void *arg);
	/* Asked at least every 125 ms: true stops every transfer, and fetch_all returns
	 * -ECANCELED (the caller failed for a reason of its own). */
	bool (*stop)(void *arg);
	void *arg;
};

/*
 * Download every item into dir_fd as name: written as name.part and renamed to name when
 * complete; nothing is synced (fetch.c F1: the caller checks every digest). At most `parallel`
 * transfers at once (0 is taken as 1). A name.part already present is resumed with a Range
 * request; a server answering 200 instead of 206 restarts it from 0, and so does a 416 or
 * a part longer than the expected size. A part of exactly the expected size is taken as
 * complete without a request: the caller verifies every digest. file URLs are copied from 0.
 *
 * Each transfer is retried up to 4 more times, after 1, 2, 4, 8 s (or the server's
 * Retry-After, up to 60 s), on connection errors, timeouts (no byte for 60 s), a transfer
 * cut short (also: fewer bytes than the expected size), and HTTP 5xx/408/429; 404 and other
 * 4xx fail at once, and so does a response longer than the expected size. Proxies come from the
 * usual variables (http_proxy, https_proxy, no_proxy, all_proxy: libcurl's defaults);
 * $SSL_CERT_FILE, when set, replaces the system's CA certificates for https. hooks may be
 * NULL.
 *
 * On the first failure the other transfers are stopped (their parts stay, to be resumed;
 * an empty one is removed) and it returns the errno that fits with "<url>: <reason>" (the HTTP
 * status, curl's message): -ENOENT for 404 or a missing file, -EACCES for 401/403, -ENOMEM, the
 * errno of a failed write or rename (then the message names name.part), else -EIO. -EINVAL for a
 * name that is not one path component. Completed files stay.
 */
int fetch_all(const struct fetch_item *items, size_t n, int dir_fd, unsigned parallel,
              const struct fetch_hooks *hooks, struct cfs_err *err);

/*
 * Channel mirrors, as conda's and pixi's mirror settings: rules "FROM=TO" (e.g.
 * "https://channel.example.invalid/corpus=http://127.0.0.1:8000/corpus"), both URLs
 * (scheme://...) and compared without a trailing '/'. A URL starting with FROM at a '/'
 * boundary (FROM is the whole URL, or is followed by '/') is rewritten to TO + the rest;
 * the longest FROM wins (of equal ones, the first added); no rule: the URL itself.
 */
struct mirrors;
int mirrors_new(struct mirrors **ret);
/* -EINVAL on a malformed rule (no '=', an empty side, a side that is not a URL), naming
 * it; -ENOMEM. */
int mirrors_add(struct mirrors *m, const char *rule, struct cfs_err *err);
/* *ret malloc'd; 0 or -ENOMEM. */
int mirrors_map(const struct mirrors *m, const char *url, char **ret);
void mirrors_free(struct mirrors *m);

#endif
