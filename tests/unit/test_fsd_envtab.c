// SPDX-License-Identifier: MIT
/*
 * The environment table (fs/envtab.c), built from rows as the store lists them
 * (envtab_build; envtab_load only reads those rows, which the fs_* tests do on real
 * stores): the root's names (live environments by hash, and tags) in byte order, lookups
 * by name, by id (removed environments too) and by a tag's nodeid, nothing for what is
 * not there, and replacement: a published table becomes current while a request's
 * reference to the old one keeps it whole until given back.
 */
#include "fsd.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOUNT "/envs"

static const char *const H1 = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
static const char *const H2 = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
static const char *const H3 = "77777777777777777777777777777777";

static struct store_env env_row(int64_t id, const char *hash, int64_t root, int64_t removed)
{
	struct store_env v = {.id = id, .root = root, .removed = removed, .created = 1000 + id};

	memcpy(v.hash, hash, 33);
	return v;
}

static struct store_tag tag_row(const char *name, const char *hash, int64_t id)
{
	struct store_tag t = {.id = id, .set_at = 5000 + id};

	snprintf(t.name, sizeof(t.name), "%s", name);
	memcpy(t.hash, hash, 33);
	return t;
}

static struct envtab *build(const struct store_env *v, size_t n, const struct store_tag *tags,
                            size_t ntags, uint64_t version)
{
	struct store_node *tops = calloc(n ? n : 1, sizeof(*tops));
	struct envtab *t = NULL;

	for (size_t i = 0; i < n; i++)
		tops[i] = (struct store_node){
		        .id = v[i].root, .env_id = v[i].id, .type = NODE_DIR, .mode = 0755};
	CHECK(envtab_build(MOUNT, version, v, tops, n, tags, ntags, &t) == 0);
	free(tops);
	if (!t) {
		fprintf(stderr, "envtab_build failed\n");
		exit(1);
	}
	return t;
}

static const struct fsd_root *find(const struct envtab *t, const char *name)
{
	return envtab_root_find(t, name, strlen(name));
}

/*
 * Environments 3 (H1, live), 1 (H2, live), 2 (H3, removed) and 5 (H1 again, removed: an
 * environment ingested again after a removal whose rows gc has not reaped), listed out of
 * id order as the store lists them (by hash); tags "py311" on H1, "alpha" on H2, and one
 * whose id makes no nodeid.
 */
static struct envtab *sample(uint64_t version)
{
	const struct store_env v[] = {
	        env_row(3, H1, 30, 0),
	        env_row(5, H1, 50, 1700000000),
	        env_row(2, H3, 20, 1700000000),
	        env_row(1, H2, 10, 0),
	};
	const struct store_tag tags[] = {
	        tag_row("py311", H1, 7),
	        tag_row("alpha", H2, 4),
	        tag_row("broken", H2, 0),
	};

	return build(v, 4, tags, 3, version);
}

static void test_lookups(void)
{
	struct envtab *t = sample(1);
	const struct fsd_root *re;
	const struct fsd_env *e;
	fuse_ino_t ino = 0;
	char want[64];

	CHECK(t->n == 4);
	CHECK(t->nlive == 2);
	CHECK(t->nroot == 4); /* two live environments and two good tags */
	CHECK(t->version == 1);
	/* The root in byte order, as readdir lists it. */
	for (size_t i = 1; i < t->nroot; i++) {
		const struct fsd_root *a = &t->root[i - 1], *b = &t->root[i];
		size_t len = a->len < b->len ? a->len : b->len;
		int c = memcmp(a->name, b->name, len);

		CHECK(c < 0 || (c == 0 && a->len < b->len));
	}

	/* A live environment by its hash: the live one, not the removed one of that hash. */
	re = find(t, H1);
	CHECK(re && re->env && re->env->id == 3 && !re->env->removed);
	CHECK(re && re->env && re->len == 32 && re->ino == re->env->ino);
	CHECK(ino_make(INO_NODE, 30, &ino) == 0 && re && re->ino == ino);
	re = find(t, H2);
	CHECK(re && re->env && re->env->id == 1);
	/* A removed environment is not in the root... */
	CHECK(find(t, H3) == NULL);
	/* ...nor a name that is only a prefix of one, or longer, or anything else. */
	CHECK(envtab_root_find(t, H1, 31) == NULL);
	CHECK(find(t, "0a1b2c3d4e5f60718293a4b5c6d7e8f9a") == NULL);
	CHECK(find(t, "") == NULL);
	CHECK(find(t, "py31") == NULL);
	CHECK(find(t, "py3111") == NULL);
	CHECK(find(t, "broken") == NULL);
	CHECK(find(t, ".condafs") == NULL);
	/* The length counts, not a NUL. */
	CHECK(envtab_root_find(t, "py311x", 5) != NULL);

	/* Tags: a symlink to their environment's hash, with a nodeid of kind INO_TAG. */
	re = find(t, "py311");
	CHECK(re && re->env == NULL);
	if (re) {
		CHECK_STR(re->target, H1);
		CHECK(re->len == 5);
		CHECK(re->mtime.tv_sec == 5007);
		CHECK(ino_make(INO_TAG, 7, &ino) == 0 && re->ino == ino);
		CHECK(envtab_tag_by_ino(t, re->ino) == re);
	}
	re = find(t, "alpha");
	CHECK(re && re->env == NULL && strcmp(re->target, H2) == 0);
	CHECK(ino_make(INO_TAG, 999, &ino) == 0 && envtab_tag_by_ino(t, ino) == NULL);
	/* An environment's nodeid is not a tag's. */
	CHECK(envtab_tag_by_ino(t, find(t, H1)->ino) == NULL);

	/* By id: live and removed alike; nothing for an id never listed. */
	for (int64_t id = 1; id <= 5; id++) {
		e = envtab_by_id(t, id);
		if (id == 4) {
			CHECK(e == NULL);
			continue;
		}
		CHECK(e && e->id == id);
		if (!e)
			continue;
		CHECK(e->removed == (id == 2 || id == 5));
		snprintf(want, sizeof(want), MOUNT "/%s", e->hash);
		CHECK_STR(e->prefix, want);
		CHECK(e->prefix_len == strlen(want));
		CHECK(e->generation == ino_generation(e->hash));
		CHECK(e->created == 1000 + id);
		CHECK(e->top.id == e->top.env_id * 10 && e->top.env_id == id);
		CHECK(ino_make(INO_NODE, e->top.id, &ino) == 0 && e->ino == ino);
		for (int f = 0; f < FROZEN_FILES; f++)
			CHECK(e->served[f] && e->served_len[f] == strlen(e->served[f]) &&
			      strstr(e->served[f], e->hash));
	}
	CHECK(envtab_by_id(t, 0) == NULL);
	CHECK(envtab_by_id(t, -1) == NULL);
	CHECK(envtab_by_id(t, 6) == NULL);
	CHECK(envtab_by_id(t, INT64_MAX) == NULL);
	CHECK(envtab_by_id(t, INT64_MIN) == NULL);
	envtab_put(t);
}

static void test_empty(void)
{
	struct envtab *t = build(NULL, 0, NULL, 0, 3);

	CHECK(t->n == 0 && t->nlive == 0 && t->nroot == 0);
	CHECK(find(t, H1) == NULL);
	CHECK(find(t, "py311") == NULL);
	CHECK(envtab_by_id(t, 1) == NULL);
	CHECK(envtab_tag_by_ino(t, 6) == NULL);
	envtab_put(t);
}

/* An environment whose top directory's id makes no nodeid fails the whole table. */
static void test_bad_top(void)
{
	const struct store_env v[] = {env_row(1, H1, 10, 0), env_row(2, H2, 0, 0)};
	struct store_node tops[2] = {{.id = 10, .type = NODE_DIR}, {.id = 0, .type = NODE_DIR}};
	struct envtab *t = NULL;

	CHECK(envtab_build(MOUNT, 1, v, tops, 2, NULL, 0, &t) == -EOVERFLOW);
	CHECK(t == NULL);
}

/* Many environments with ids in no order, hashes made up: every id is found, every
 * live hash is in the root, and nothing between them. */
static void test_many(void)
{
	enum { N = 1000 };
	struct store_env *v = calloc(N, sizeof(*v));
	struct store_tag *tags = calloc(N / 10, sizeof(*tags));
	struct envtab *t;
	char hash[33];

	for (size_t i = 0; i < N; i++) {
		/* ids 3, 6, ..., in a shuffled order; every third removed */
		int64_t id = (int64_t)((i * 7919) % N + 1) * 3;

		snprintf(hash, sizeof(hash), "%032llx", (unsigned long long)id * 2654435761u);
		v[i] = env_row(id, hash, id * 10, id % 9 == 0 ? 1 : 0);
	}
	for (size_t i = 0; i < N / 10; i++) {
		char name[16];

		snprintf(name, sizeof(name), "tag-%zu", N / 10 - i);
		tags[i] = tag_row(name, v[i].hash, (int64_t)i + 1);
	}
	t = build(v, N, tags, N / 10, 2);
	CHECK(t->n == N);
	CHECK(t->nroot == t->nlive + N / 10);
	for (size_t i = 0; i < N; i++) {
		const struct fsd_env *e = envtab_by_id(t, v[i].id);
		const struct fsd_root *re = find(t, v[i].hash);

		CHECK(e && e->id == v[i].id && strcmp(e->hash, v[i].hash) == 0);
		CHECK(envtab_by_id(t, v[i].id - 1) == NULL);
		CHECK(envtab_by_id(t, v[i].id + 1) == NULL);
		CHECK(v[i].removed ? re == NULL : (re && re->env == e));
	}
	for (size_t i = 0; i < N / 10; i++) {
		const struct fsd_root *re = find(t, tags[i].name);

		CHECK(re && re->env == NULL && strcmp(re->target, tags[i].hash) == 0);
		CHECK(re && envtab_tag_by_ino(t, re->ino) == re);
	}
	envtab_put(t);
	free(tags);
	free(v);
}

/* Replacement: the daemon's current table changes under a request that holds the old one,
 * which stays whole until that request gives it back. */
static void test_publish(void)
{
	struct fsd fs = {0};
	struct envtab *t1 = sample(1), *t2, *mine;
	const struct store_env v[] = {env_row(8, H3, 80, 0)};

	pthread_mutex_init(&fs.envtab_lock, NULL);
	fs.envtab = t1;
	atomic_store(&fs.envtab_version, t1->version);

	mine = envtab_get(&fs);
	CHECK(mine == t1);
	CHECK(atomic_load(&t1->refs) == 2);

	t2 = build(v, 1, NULL, 0, 2);
	envtab_publish(&fs, t2);
	CHECK(fs.envtab == t2);
	CHECK(atomic_load(&fs.envtab_version) == 2);
	CHECK(atomic_load(&t2->refs) == 1);
	/* The old table: the request's reference is all that is left, and it still reads. */
	CHECK(atomic_load(&t1->refs) == 1);
	CHECK(find(mine, H1) && find(mine, H1)->env->id == 3);
	CHECK(find(mine, H3) == NULL);
	/* The new one serves what it was built from, and nothing of the old. */
	{
		struct envtab *now = envtab_get(&fs);

		CHECK(now == t2);
		CHECK(find(now, H3) && find(now, H3)->env->id == 8);
		CHECK(find(now, H1) == NULL && find(now, "py311") == NULL);
		CHECK(envtab_by_id(now, 3) == NULL);
		envtab_put(now);
	}
	CHECK(atomic_load(&t2->refs) == 1);
	envtab_put(mine); /* frees t1: ASan's leak check says if it did not */
	envtab_put(NULL);
	envtab_put(fs.envtab);
	pthread_mutex_destroy(&fs.envtab_lock);
}

/*
 * The table pointer is only read and written under envtab_lock: a reader that took its
 * reference before a swap keeps the old table alive (its reference counts), one after gets
 * the new. The test holds the lock itself while the other thread calls in, so the order is
 * forced: a thread started behind a barrier and given 50 ms to reach the lock must wait
 * for it. A function that does not take the lock finishes first, and is seen to.
 */
struct locked {
	struct fsd *fs;
	pthread_barrier_t started;
	struct envtab *got, *publish;
	atomic_bool done;
};

static void *getter(void *arg)
{
	struct locked *l = arg;

	pthread_barrier_wait(&l->started);
	l->got = envtab_get(l->fs);
	atomic_store(&l->done, true);
	return NULL;
}

static void *publisher(void *arg)
{
	struct locked *l = arg;

	pthread_barrier_wait(&l->started);
	envtab_publish(l->fs, l->publish);
	atomic_store(&l->done, true);
	return NULL;
}

static void test_locking(void)
{
	const struct store_env v[] = {env_row(1, H1, 10, 0)};
	const struct timespec pause = {.tv_nsec = 50000000};
	struct fsd fs = {0};
	struct locked l = {.fs = &fs};
	struct envtab *t1 = build(v, 1, NULL, 0, 1), *t2 = build(v, 1, NULL, 0, 2);
	pthread_t th;

	pthread_mutex_init(&fs.envtab_lock, NULL);
	fs.envtab = t1;

	/* envtab_get waits for the lock, and so gets what was current when it got it. */
	pthread_barrier_init(&l.started, NULL, 2);
	pthread_mutex_lock(&fs.envtab_lock);
	pthread_create(&th, NULL, getter, &l);
	pthread_barrier_wait(&l.started);
	nanosleep(&pause, NULL);
	CHECK(!atomic_load(&l.done));
	fs.envtab = t2; /* a swap it must not miss */
	pthread_mutex_unlock(&fs.envtab_lock);
	pthread_join(th, NULL);
	pthread_barrier_destroy(&l.started);
	CHECK(l.got == t2);
	CHECK(atomic_load(&t2->refs) == 2);
	envtab_put(l.got);
	fs.envtab = t1;

	/* envtab_publish waits for the lock too: the table does not change under a reader
	 * that holds it. */
	l.done = false;
	l.publish = t2;
	pthread_barrier_init(&l.started, NULL, 2);
	pthread_mutex_lock(&fs.envtab_lock);
	pthread_create(&th, NULL, publisher, &l);
	pthread_barrier_wait(&l.started);
	nanosleep(&pause, NULL);
	CHECK(!atomic_load(&l.done));
	CHECK(fs.envtab == t1);
	pthread_mutex_unlock(&fs.envtab_lock);
	pthread_join(th, NULL);
	pthread_barrier_destroy(&l.started);
	CHECK(fs.envtab == t2);
	CHECK(atomic_load(&fs.envtab_version) == 2);
	envtab_put(fs.envtab); /* t1 went with the publication */
	pthread_mutex_destroy(&fs.envtab_lock);
}

/* A watcher publishing table after table while a worker takes and gives back the current
 * one, started together: the worker never sees the version go back, and every table is
 * freed once (under ASan: no use after free, no leak). */
enum { TABLES = 3000 };

struct shared {
	struct fsd *fs;
	pthread_barrier_t start;
	unsigned backwards;
};

static void *watcher(void *arg)
{
	struct shared *sh = arg;
	const struct store_env v[] = {env_row(1, H1, 10, 0)};

	pthread_barrier_wait(&sh->start);
	for (uint64_t ver = 2; ver <= TABLES; ver++)
		envtab_publish(sh->fs, build(v, 1, NULL, 0, ver));
	return NULL;
}

static void *reader(void *arg)
{
	struct shared *sh = arg;
	uint64_t last = 0;

	pthread_barrier_wait(&sh->start);
	for (unsigned i = 0; i < 4 * TABLES && last < TABLES; i++) {
		struct envtab *t = envtab_get(sh->fs);

		if (t->version < last || !find(t, H1))
			sh->backwards++;
		last = t->version;
		envtab_put(t);
	}
	return NULL;
}

static void test_publish_threads(void)
{
	struct fsd fs = {0};
	struct shared sh = {.fs = &fs};
	const struct store_env v[] = {env_row(1, H1, 10, 0)};
	pthread_t w, r;

	pthread_mutex_init(&fs.envtab_lock, NULL);
	fs.envtab = build(v, 1, NULL, 0, 1);
	pthread_barrier_init(&sh.start, NULL, 2);
	pthread_create(&w, NULL, watcher, &sh);
	pthread_create(&r, NULL, reader, &sh);
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	pthread_barrier_destroy(&sh.start);
	CHECK(sh.backwards == 0);
	CHECK(fs.envtab->version == TABLES);
	CHECK(atomic_load(&fs.envtab->refs) == 1);
	envtab_put(fs.envtab);
	pthread_mutex_destroy(&fs.envtab_lock);
}

int main(void)
{
	test_lookups();
	test_empty();
	test_bad_top();
	test_many();
	test_publish();
	test_locking();
	test_publish_threads();
	return test_exit();
}
