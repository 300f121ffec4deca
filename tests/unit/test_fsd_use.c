// SPDX-License-Identifier: MIT
/*
 * use.c's table: the kernel's lookup counts per nodeid, the environment each is charged
 * to, and the store holds that keep gc from reaping an environment the kernel still has
 * inodes of. Holds are real ones (store_hold on DIR/holds), seen from outside as gc sees
 * them: gc write-locks byte <env id> of DIR/holds while it reaps (store/gc.c), so the test
 * asks whether that lock could be taken, and takes it to play a gc that is reaping.
 * use_rehome needs environments in a real store: the fs_gc_live and fs_lifecycle tests'.
 */
#include "fsd.h"
#include "test.h"
#include "testfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static char *dir;

/* A descriptor of DIR/holds of its own (an open file description: OFD locks of
 * another description conflict even within this process). */
static int holds_fd(void)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/holds", dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		testfs_die("open", path);
	return fd;
}

/* Whether some description holds env (what gc's check sees). */
static bool held(int64_t env)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = env, .l_len = 1};
	int fd = holds_fd();

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		testfs_die("F_OFD_GETLK", "holds");
	close(fd);
	return fl.l_type != F_UNLCK;
}

/* gc reaping env: its write lock, on a description of its own (close it to stop). */
static int gc_reaping(int64_t env)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = env, .l_len = 1};
	int fd = holds_fd();

	CHECK(fcntl(fd, F_OFD_SETLK, &fl) == 0);
	return fd;
}

static fuse_ino_t ino_of(enum ino_kind kind, int64_t id)
{
	fuse_ino_t ino = 0;

	CHECK(ino_make(kind, id, &ino) == 0);
	return ino;
}

static struct use *open_use(void)
{
	struct cfs_err err = {{0}};
	struct use *u = NULL;

	CHECK(use_new(dir, &u, &err) == 0);
	if (!u) {
		fprintf(stderr, "use_new: %s\n", err.msg);
		exit(1);
	}
	return u;
}

/* The kernel's count: the entry goes exactly when its lookups are all forgotten. */
static void test_forget_at_zero(void)
{
	struct use *u = open_use();
	fuse_ino_t a = ino_of(INO_NODE, 100), b = ino_of(INO_GROUP, 200);
	int64_t node = 0;

	CHECK(!held(7));
	CHECK(use_node(u, a, &node) == -ENOENT);
	for (int i = 0; i < 3; i++)
		CHECK(use_entry(u, a, 7, 100) == 0);
	CHECK(use_node(u, a, &node) == 0 && node == 100);
	CHECK(held(7)); /* U1: held once an entry is charged */
	use_forget(u, a, 2);
	CHECK(use_node(u, a, &node) == 0 && node == 100);
	CHECK(held(7));
	use_forget(u, a, 1);
	CHECK(use_node(u, a, &node) == -ENOENT);
	CHECK(!held(7)); /* U1: released when nothing is charged */

	/* Two nodeids charged to one environment: held until the last goes. */
	CHECK(use_entry(u, a, 7, 100) == 0);
	CHECK(use_entry(u, b, 7, 150) == 0);
	use_forget(u, a, 1);
	CHECK(held(7));
	CHECK(use_node(u, b, &node) == 0 && node == 150);
	use_forget(u, b, 1);
	CHECK(!held(7));

	/* The kernel forgetting more than it was given (a reply not sent, counted twice)
	 * clears the entry, and forgetting what was never given changes nothing. */
	CHECK(use_entry(u, a, 7, 100) == 0);
	use_forget(u, a, 5);
	CHECK(use_node(u, a, &node) == -ENOENT);
	CHECK(!held(7));
	use_forget(u, a, 1);
	use_forget(u, ino_of(INO_NODE, 999), 1);
	CHECK(use_entry(u, a, 7, 100) == 0);
	CHECK(held(7));
	use_forget(u, a, 1);
	CHECK(!held(7));
	use_free(u);
}

/* A nodeid stays charged to the environment of its first entry until it is forgotten:
 * a later entry of it through another environment (a shared group) only counts. */
static void test_first_charge(void)
{
	struct use *u = open_use();
	fuse_ino_t g = ino_of(INO_GROUP, 300);
	int64_t node = 0;

	CHECK(use_entry(u, g, 11, 1100) == 0);
	CHECK(use_entry(u, g, 12, 1200) == 0);
	CHECK(held(11));
	CHECK(!held(12));
	CHECK(use_node(u, g, &node) == 0 && node == 1100);
	use_forget(u, g, 1);
	CHECK(held(11));
	use_forget(u, g, 1);
	CHECK(!held(11) && !held(12));
	use_free(u);
}

/* -EBUSY while gc reaps the environment: nothing is charged, so the entry must not be
 * sent; once gc is done (it did not reap, say) entries are charged again. */
static void test_gc_reaping(void)
{
	struct use *u = open_use();
	fuse_ino_t a = ino_of(INO_NODE, 400), b = ino_of(INO_NODE, 401);
	int64_t node = 0;
	int gc = gc_reaping(9);

	CHECK(use_entry(u, a, 9, 400) == -EBUSY);
	CHECK(use_node(u, a, &node) == -ENOENT);
	CHECK(use_entry(u, a, 9, 400) == -EBUSY);
	/* Other environments are not affected. */
	CHECK(use_entry(u, b, 10, 401) == 0);
	CHECK(held(10));
	close(gc);
	CHECK(use_entry(u, a, 9, 400) == 0);
	CHECK(held(9));
	/* A refused entry left no count behind: one forget clears it. */
	use_forget(u, a, 1);
	CHECK(use_node(u, a, &node) == -ENOENT);
	CHECK(!held(9));
	/* And gc cannot start reaping what is held. */
	CHECK(use_entry(u, a, 9, 400) == 0);
	{
		struct flock fl = {
		        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 9, .l_len = 1};
		int fd = holds_fd();

		CHECK(fcntl(fd, F_OFD_SETLK, &fl) < 0);
		close(fd);
	}
	use_free(u); /* lets go of every hold */
	CHECK(!held(9) && !held(10));
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Last use: what was marked since the last take, once; marking holds nothing. */
static void test_marks(void)
{
	struct use *u = open_use();
	int64_t *ids = NULL;
	size_t n = 9;

	CHECK(use_take(u, &ids, &n) == 0 && n == 0);
	free(ids);
	use_mark(u, 5);
	use_mark(u, 6);
	use_mark(u, 5);
	CHECK(!held(5));
	CHECK(use_entry(u, ino_of(INO_NODE, 60), 6, 60) == 0);
	CHECK(use_take(u, &ids, &n) == 0);
	CHECK(n == 2);
	if (n == 2) {
		qsort(ids, n, sizeof(*ids), cmp_i64);
		CHECK(ids[0] == 5 && ids[1] == 6);
	}
	free(ids);
	CHECK(use_take(u, &ids, &n) == 0 && n == 0);
	free(ids);
	/* The charge outlives the take. */
	CHECK(held(6));
	use_forget(u, ino_of(INO_NODE, 60), 1);
	CHECK(!held(6));
	use_free(u);
}

/* The nodeids of a kind charged to environments a table does not serve as live: removed
 * ones (rows waiting for gc), and ones gone from the table altogether. */
static void test_list_removed(void)
{
	static const char *hashes[] = {"11111111111111111111111111111111",
	                               "22222222222222222222222222222222"};
	struct store_env v[2] = {{.id = 1, .root = 10}, {.id = 2, .root = 20, .removed = 5}};
	struct store_node tops[2] = {{.id = 10, .type = NODE_DIR}, {.id = 20, .type = NODE_DIR}};
	struct envtab *t = NULL;
	struct use *u = open_use();
	fuse_ino_t *inos = NULL, want[2];
	size_t n = 0;

	for (int i = 0; i < 2; i++) {
		memcpy(v[i].hash, hashes[i], 33);
		tops[i].env_id = v[i].id;
	}
	CHECK(envtab_build("/envs", 1, v, tops, 2, NULL, 0, &t) == 0);
	if (!t)
		return;
	CHECK(use_entry(u, ino_of(INO_GROUP, 1), 1, 101) == 0); /* live */
	CHECK(use_entry(u, ino_of(INO_GROUP, 2), 2, 201) == 0); /* removed */
	CHECK(use_entry(u, ino_of(INO_GROUP, 3), 3, 301) == 0); /* not in the table */
	CHECK(use_entry(u, ino_of(INO_NODE, 4), 2, 202) == 0);  /* removed, another kind */
	CHECK(use_list_removed(u, t, INO_GROUP, &inos, &n) == 0);
	CHECK(n == 2);
	want[0] = ino_of(INO_GROUP, 2);
	want[1] = ino_of(INO_GROUP, 3);
	if (n == 2)
		CHECK((inos[0] == want[0] && inos[1] == want[1]) ||
		      (inos[0] == want[1] && inos[1] == want[0]));
	free(inos);
	CHECK(use_list_removed(u, t, INO_NODE, &inos, &n) == 0);
	CHECK(n == 1 && inos[0] == ino_of(INO_NODE, 4));
	free(inos);
	CHECK(use_list_removed(u, t, INO_TAG, &inos, &n) == 0 && n == 0);
	free(inos);
	envtab_put(t);
	use_free(u);
}

/*
 * Two request threads, as two FUSE workers are, started together by a barrier and run
 * over and over: each charges a nodeid of its own and one both share to environment 20,
 * checks from outside that 20 is held while it holds them (U1), and forgets both again,
 * so that 20's hold is taken and let go again and again under both threads. Each also
 * charges a third nodeid, of environment 21, and never forgets it: at the end its count
 * is exactly what both gave.
 */
enum { ROUNDS = 300000 };

struct racer {
	struct use *u;
	pthread_barrier_t *start;
	fuse_ino_t own;
	unsigned unheld;
	unsigned failed;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	fuse_ino_t shared = ino_of(INO_GROUP, 500), kept = ino_of(INO_GROUP, 600);

	pthread_barrier_wait(r->start);
	for (unsigned i = 0; i < ROUNDS; i++) {
		r->failed += use_entry(r->u, r->own, 20, (int64_t)r->own) != 0;
		r->failed += use_entry(r->u, shared, 20, 500) != 0;
		r->failed += use_entry(r->u, kept, 21, 600) != 0;
		if (i % 32 == 0 && !held(20))
			r->unheld++;
		use_forget(r->u, shared, 1);
		use_forget(r->u, r->own, 1);
	}
	return NULL;
}

static void test_threads(void)
{
	struct use *u = open_use();
	pthread_barrier_t start;
	struct racer rs[2] = {
	        {.u = u, .start = &start, .own = ino_of(INO_NODE, 501)},
	        {.u = u, .start = &start, .own = ino_of(INO_NODE, 502)},
	};
	pthread_t th[2];
	fuse_ino_t kept = ino_of(INO_GROUP, 600);
	int64_t node = 0;

	pthread_barrier_init(&start, NULL, 2);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, race, &rs[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < 2; i++) {
		CHECK(rs[i].failed == 0);
		CHECK(rs[i].unheld == 0);
		CHECK(use_node(u, rs[i].own, &node) == -ENOENT);
	}
	CHECK(use_node(u, ino_of(INO_GROUP, 500), &node) == -ENOENT);
	CHECK(!held(20));
	/* Both threads' lookups of the kept nodeid, all counted. */
	CHECK(held(21));
	use_forget(u, kept, 2 * ROUNDS - 1);
	CHECK(use_node(u, kept, &node) == 0 && node == 600);
	CHECK(held(21));
	use_forget(u, kept, 1);
	CHECK(use_node(u, kept, &node) == -ENOENT);
	CHECK(!held(21));
	use_free(u);
}

int main(void)
{
	dir = testfs_mkdtemp();
	test_forget_at_zero();
	test_first_charge();
	test_gc_reaping();
	test_marks();
	test_list_removed();
	test_threads();
	testfs_rmtree(dir);
	free(dir);
	return test_exit();
}
