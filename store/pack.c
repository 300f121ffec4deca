// SPDX-License-Identifier: MIT
/*
 * The packer: collects the small contents an ingest has to store, orders them by file
 * extension, then path (sources next to sources, metadata next to metadata, and within a
 * kind the files of one package directory together: zstd finds far more to share within
 * a frame that way), and lays them out as packs of about PACK_TARGET bytes. Members never
 * straddle packs.
 */
#include "pack.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct member {
	struct objkey key;
	uint8_t *data; /* owned */
	size_t len;
	char *order; /* "<extension>/<path>", owned */
	size_t pack;
	uint64_t off;
};

/* Members [first, first + n) of the sorted array, laid end to end. */
struct pack {
	size_t first, n;
	uint64_t len;
};

struct packer {
	pthread_mutex_t lock; /* guards members until layout */
	struct member *m;
	size_t n, cap;
	struct member **by_key; /* after layout */
	struct pack *packs;
	size_t npacks;
};

int packer_new(struct packer **ret)
{
	struct packer *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	*ret = p;
	return 0;
}

void packer_free(struct packer *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->m[i].data);
		free(p->m[i].order);
	}
	free(p->packs);
	free(p->by_key);
	free(p->m);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* "<extension>/<path>": by kind first, then by directory. */
static char *order_key(const char *name)
{
	const char *base = strrchr(name, '/'), *dot;
	size_t n;
	char *k;

	base = base ? base + 1 : name;
	dot = strrchr(base, '.');
	dot = dot && dot != base ? dot + 1 : "";
	n = strlen(dot) + 1 + strlen(name) + 1;
	k = malloc(n);
	if (k)
		snprintf(k, n, "%s/%s", dot, name);
	return k;
}

int packer_add(struct packer *p, const struct objkey *key, const uint8_t *data, size_t len,
               const char *name)
{
	struct member m = {.key = *key, .len = len};
	int r = 0;

	m.data = malloc(len ? len : 1);
	m.order = order_key(name);
	if (!m.data || !m.order) {
		free(m.data);
		free(m.order);
		return -ENOMEM;
	}
	if (len)
		memcpy(m.data, data, len);
	pthread_mutex_lock(&p->lock);
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 1024;
		void *v = realloc(p->m, cap * sizeof(*p->m));

		if (!v) {
			r = -ENOMEM;
			goto out;
		}
		p->m = v;
		p->cap = cap;
	}
	p->m[p->n++] = m;
out:
	pthread_mutex_unlock(&p->lock);
	if (r) {
		free(m.data);
		free(m.order);
	}
	return r;
}

static int by_order(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = strcmp(x->order, y->order);

	return c ? c : memcmp(x->key.b, y->key.b, 16);
}

static int member_by_key(const void *a, const void *b)
{
	return memcmp(((const struct member *)a)->key.b, ((const struct member *)b)->key.b, 16);
}

static int by_key(const void *a, const void *b)
{
	return memcmp((*(struct member *const *)a)->key.b, (*(struct member *const *)b)->key.b, 16);
}

int packer_layout(struct packer *p, size_t *ret_npacks)
{
	size_t k = 0, cap = 0;
	bool collision = false;

	/* Two files of the ingest may have the same content: keep one, once it is shown to
	 * be the same content and not a hash collision (then both stay, to be freed). */
	if (!p->n)
		goto laid;
	qsort(p->m, p->n, sizeof(*p->m), member_by_key);
	for (size_t i = 0; i < p->n; i++) {
		if (k && !memcmp(p->m[k - 1].key.b, p->m[i].key.b, 16)) {
			if (p->m[k - 1].len == p->m[i].len &&
			    memcmp(p->m[k - 1].data, p->m[i].data, p->m[i].len) == 0) {
				free(p->m[i].data);
				free(p->m[i].order);
				continue;
			}
			collision = true;
		}
		p->m[k++] = p->m[i];
	}
	p->n = k;
	if (collision)
		return -EBADMSG;
	qsort(p->m, p->n, sizeof(*p->m), by_order);
	for (size_t i = 0; i < p->n; i++) {
		struct pack *pk;

		if (!p->npacks || p->packs[p->npacks - 1].len + p->m[i].len > PACK_TARGET) {
			if (p->npacks == cap) {
				cap = cap ? 2 * cap : 8;
				void *v = realloc(p->packs, cap * sizeof(*p->packs));
				if (!v)
					return -ENOMEM;
				p->packs = v;
			}
			p->packs[p->npacks] = (struct pack){.first = i};
			p->npacks++;
		}
		pk = &p->packs[p->npacks - 1];
		p->m[i].pack = p->npacks - 1;
		p->m[i].off = pk->len;
		pk->len += p->m[i].len;
		pk->n++;
	}
laid:
	p->by_key = malloc((p->n ? p->n : 1) * sizeof(struct member *));
	if (!p->by_key)
		return -ENOMEM;
	for (size_t i = 0; i < p->n; i++)
		p->by_key[i] = &p->m[i];
	if (p->n)
		qsort(p->by_key, p->n, sizeof(struct member *), by_key);
	*ret_npacks = p->npacks;
	return 0;
}

/* The last member of pack i that starts at or before off: the one that holds it, as
 * empty members hold nothing. */
static size_t member_at(const struct packer *p, size_t i, uint64_t off)
{
	const struct pack *pk = &p->packs[i];
	size_t lo = pk->first, hi = pk->first + pk->n;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->m[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

void packer_gather(const struct packer *p, size_t i, uint64_t off, size_t len, uint8_t *dst)
{
	for (size_t k = member_at(p, i, off); len; k++) {
		const struct member *m = &p->m[k];
		uint64_t in = off - m->off;
		size_t n = m->len - in < len ? (size_t)(m->len - in) : len;

		memcpy(dst, m->data + in, n);
		dst += n;
		off += n;
		len -= n;
	}
}

int packer_pack_key(const struct packer *p, size_t i, struct objkey *ret)
{
	const struct pack *pk = &p->packs[i];
	struct iovec *v = malloc((pk->n ? pk->n : 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t k = 0; k < pk->n; k++) {
		v[k].iov_base = p->m[pk->first + k].data;
		v[k].iov_len = p->m[pk->first + k].len;
	}
	object_hash_pieces(v, pk->n, ret);
	free(v);
	return 0;
}

uint64_t packer_pack_len(const struct packer *p, size_t i)
{
	return p->packs[i].len;
}

int packer_find(const struct packer *p, const struct objkey *key, size_t *ret_pack,
                uint64_t *ret_off, uint64_t *ret_len)
{
	size_t lo = 0, hi = p->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(p->by_key[mid]->key.b, key->b, 16);

		if (c == 0) {
			*ret_pack = p->by_key[mid]->pack;
			*ret_off = p->by_key[mid]->off;
			*ret_len = p->by_key[mid]->len;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

const uint8_t *packer_member_data(const struct packer *p, size_t pack, uint64_t off)
{
	return p->m[member_at(p, pack, off)].data;
}
