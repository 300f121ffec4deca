// SPDX-License-Identifier: MIT
/*
 * The .pyc of noarch python packages. conda compiles them after linking, with the
 * environment's python; an install has no prefix to run it in, so the python runs from
 * its package written out (PYTHONHOME), is handed each source's bytes on its stdin, and
 * sends the pycs back through a pipe. Without them every import from the read-only mount
 * would compile its module again.
 *
 * Invariants:
 * Y3: the compiler is not root: as root it runs as nobody with no groups and no new
 *     privileges, may write no file (RLIMIT_FSIZE 0), and starts in the install's
 *     directory, which it reaches through its working directory only (tmp/ is 0700); it
 *     opens no source, each comes on its stdin.
 * Y4: nothing the compiler says names a path we open: a pyc goes to the path the plan
 *     gave its job, only once its header holds its source's mtime and size and it is at
 *     most PYC_MAX bytes.
 */
#include "pycompile.h"

#include "err.h"
#include "nobody.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYC_MAX       (64u << 20)
#define CPU_SECS      600
#define COMPILERS_MAX 8
#define JOBS_MIN      64

/* Sources on stdin, each as three 8-byte little-endian numbers (the name's length, the
 * source's mtime in seconds, its size) then the name and the source's bytes; each pyc on
 * stdout as 8 bytes of length (little endian; 0: the source does not compile) and its
 * bytes, as compileall writes a timestamp pyc. The name is the path the code reports
 * until an import replaces it with the one it was found at; relative, so the pyc is the
 * same in every environment. */
static const char compile_py[] =
        "import importlib.util, marshal, os, sys\n"
        "inp, out, pos = sys.stdin.buffer.read(), sys.stdout.buffer, 0\n"
        "while pos < len(inp):\n"
        "    nlen, mtime, size = (int.from_bytes(inp[pos + i:pos + i + 8], 'little')\n"
        "                         for i in (0, 8, 16))\n"
        "    name = inp[pos + 24:pos + 24 + nlen]\n"
        "    data = inp[pos + 24 + nlen:pos + 24 + nlen + size]\n"
        "    pos += 24 + nlen + size\n"
        "    try:\n"
        "        code = compile(data, os.fsdecode(name), 'exec', dont_inherit=True)\n"
        "        pyc = (importlib.util.MAGIC_NUMBER + bytes(4)\n"
        "               + (mtime & 0xFFFFFFFF).to_bytes(4, 'little')\n"
        "               + (size & 0xFFFFFFFF).to_bytes(4, 'little')\n"
        "               + marshal.dumps(code))\n"
        "    except Exception:\n"
        "        pyc = b''\n"
        "    out.write(len(pyc).to_bytes(8, 'little') + pyc)\n"
        "    out.flush()\n";

struct job {
	const struct link_entry *pyc, *src;
	uint8_t *data; /* the source's bytes, owned */
	size_t len;
};

static void warnf(void (*warn)(void *, const char *), void *arg, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void warnf(void (*warn)(void *, const char *), void *arg, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!warn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	warn(arg, line);
}

static void put_le64(FILE *f, uint64_t v)
{
	for (int b = 0; b < 8; b++)
		fputc((int)(v >> (8 * b) & 0xff), f);
}

/* The source's mtime in seconds, as its pyc's header holds it. */
static uint64_t src_mtime(const struct link_entry *src)
{
	return (uint64_t)(src->mtime_ns / 1000000000);
}

/* The jobs into a memfd, the compiler's stdin. */
static int write_jobs(const struct job *jobs, size_t n, int *ret_fd)
{
	int fd = memfd_create("condafs-pycompile", MFD_CLOEXEC);
	FILE *f;

	if (fd < 0)
		return neg_errno();
	f = fdopen(dup(fd), "w");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		put_le64(f, strlen(jobs[i].src->path));
		put_le64(f, src_mtime(jobs[i].src));
		put_le64(f, jobs[i].len);
		fputs(jobs[i].src->path, f);
		fwrite(jobs[i].data, 1, jobs[i].len, f);
	}
	if (fclose(f) != 0 || lseek(fd, 0, SEEK_SET) < 0) {
		int r = neg_errno();

		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* Exactly n bytes, or fewer at EOF; -errno on an error. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, (char *)buf + got, n - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return neg_errno();
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Y4: a timestamp pyc of this source. */
static bool header_ok(const uint8_t *pyc, size_t len, const struct job *j)
{
	return len >= 16 && pyc[2] == '\r' && pyc[3] == '\n' && le32(pyc + 4) == 0 &&
	       le32(pyc + 8) == (uint32_t)src_mtime(j->src) && le32(pyc + 12) == (uint32_t)j->len;
}

/* Read the compiler's answers, one per job, in order: the count handed to put. */
static int take_pycs(int fd, const struct job *jobs, size_t n, size_t *ret_done,
                     int (*put)(void *, const struct link_entry *, const uint8_t *, size_t,
                                struct cfs_err *),
                     void (*warn)(void *, const char *), void *arg, struct cfs_err *err)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	int r = 0;

	*ret_done = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t lenb[8];
		uint64_t len = 0;
		ssize_t k = read_full(fd, lenb, sizeof(lenb));

		if (k != (ssize_t)sizeof(lenb))
			break;
		for (int b = 7; b >= 0; b--)
			len = len << 8 | lenb[b];
		if (len > PYC_MAX) {
			warnf(warn, arg, "%s: the compiler sent %llu bytes: not a pyc",
			      jobs[i].pyc->path, (unsigned long long)len);
			break;
		}
		if (len > cap) {
			uint8_t *nb = realloc(buf, (size_t)len);

			if (!nb) {
				r = err_set(err, -ENOMEM, "out of memory");
				break;
			}
			buf = nb;
			cap = (size_t)len;
		}
		if (read_full(fd, buf, (size_t)len) != (ssize_t)len)
			break;
		*ret_done = i + 1;
		if (len == 0) {
			warnf(warn, arg, "%s: does not compile; it has no .pyc, as conda leaves it",
			      jobs[i].src->path);
			continue;
		}
		if (!header_ok(buf, (size_t)len, &jobs[i])) {
			warnf(warn, arg,
			      "%s: the compiler's pyc is not one of its source: left out",
			      jobs[i].pyc->path);
			continue;
		}
		r = put(arg, jobs[i].pyc, buf, (size_t)len, err);
		if (r)
			break;
	}
	free(buf);
	return r;
}

/* One compiler, over its share of the jobs, on a thread of its own: each reads its
 * compiler's pipe, so none waits for another to be read. */
struct share {
	const struct job *jobs;
	size_t n;
	const char *exe;
	char *const *envp;
	const struct nobody *nb;
	int (*put)(void *, const struct link_entry *, const uint8_t *, size_t, struct cfs_err *);
	void (*warn)(void *, const char *);
	void *arg;
	int cwd_fd;
	int r;
	struct cfs_err err;
};

static void *compile_share(void *arg)
{
	static char *const argv[] = {"python", "-s", "-S", "-B", "-c", (char *)compile_py, NULL};
	struct share *sh = arg;
	const struct rlimit none = {0, 0}, cpu = {CPU_SECS, CPU_SECS};
	int in = -1, p[2] = {-1, -1}, status = 0;
	size_t done = 0;
	pid_t pid;

	sh->r = write_jobs(sh->jobs, sh->n, &in);
	if (sh->r) {
		err_set(&sh->err, sh->r, "the .pyc jobs: %s", strerror(-sh->r));
		return NULL;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		sh->r = err_set(&sh->err, neg_errno(), "pipe: %s", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		sh->r = err_set(&sh->err, neg_errno(), "%s: %s", sh->exe, strerror(errno));
		goto out;
	}
	if (pid == 0) {
		/* Y3. Only async-signal-safe calls until exec. */
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (null < 0 || nobody_child_fd(in, 0) || nobody_child_fd(p[1], 1) ||
		    nobody_child_fd(null, 2) || fchdir(sh->cwd_fd) < 0 ||
		    setrlimit(RLIMIT_FSIZE, &none) < 0 || setrlimit(RLIMIT_CORE, &none) < 0 ||
		    setrlimit(RLIMIT_CPU, &cpu) < 0)
			_exit(126);
		if (nobody_enter(sh->nb) < 0)
			_exit(126);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			_exit(126);
		execve(sh->exe, argv, sh->envp);
		_exit(127);
	}
	close(p[1]);
	p[1] = -1;
	sh->r = take_pycs(p[0], sh->jobs, sh->n, &done, sh->put, sh->warn, sh->arg, &sh->err);
	close(p[0]);
	p[0] = -1;
	if (done < sh->n)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!sh->r && done < sh->n)
		warnf(sh->warn, sh->arg,
		      "%s: %s %d after %zu of %zu sources: the other noarch .pyc are not compiled",
		      sh->exe, WIFSIGNALED(status) ? "killed by signal" : "exited with status",
		      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), done, sh->n);
out:
	close(in);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return NULL;
}

int pycompile_plan(const struct link_plan *plan, const char *python_dir, int cwd_fd,
                   int (*source)(void *arg, const struct link_entry *src, uint8_t **ret,
                                 size_t *ret_len, struct cfs_err *err),
                   int (*put)(void *arg, const struct link_entry *e, const uint8_t *data,
                              size_t len, struct cfs_err *err),
                   void (*warn)(void *arg, const char *line), void *arg, struct cfs_err *err)
{
	const struct link_entry *py = link_plan_python_file(plan);
	struct share sh[COMPILERS_MAX];
	pthread_t th[COMPILERS_MAX];
	size_t n = 0, cap = 0, nsh, started = 0;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct job *jobs = NULL;
	char *exe = NULL, *home = NULL;
	int r = 0;
	struct nobody nb;

	for (size_t i = 0; i < link_plan_count(plan); i++)
		cap += link_plan_entry(plan, i)->pyc_of != NULL;
	if (!cap)
		return 0;
	if (!py) {
		warnf(warn, arg,
		      "no bin/python%s in the environment: its noarch .pyc are not compiled",
		      link_plan_python(plan) ? link_plan_python(plan) : "");
		return 0;
	}
	nobody_init(&nb);
	jobs = calloc(cap, sizeof(*jobs));
	if (!jobs) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < link_plan_count(plan); i++) {
		const struct link_entry *e = link_plan_entry(plan, i), *s;

		if (!e->pyc_of)
			continue;
		s = link_plan_find(plan, e->pyc_of);
		if (!s || s->type != LINK_FILE || s->pkg == LINK_GENERATED) {
			warnf(warn, arg, "%s: its source is not a package's file: no .pyc",
			      e->path);
			continue;
		}
		/* 1: a package taken from the store brings its pycs with it. */
		r = source(arg, s, &jobs[n].data, &jobs[n].len, err);
		if (r < 0)
			goto out;
		if (r == 0) {
			jobs[n].pyc = e;
			jobs[n++].src = s;
		}
		r = 0;
	}
	if (!n)
		goto out;
	if (!python_dir) {
		r = err_set(err, -EINVAL,
		            "%s: python is not written out, and %zu .pyc are to compile", py->path,
		            n);
		goto out;
	}
	if (asprintf(&exe, "%s/%s", python_dir, py->src) < 0)
		exe = NULL;
	if (asprintf(&home, "PYTHONHOME=%s", python_dir) < 0)
		home = NULL;
	if (!exe || !home) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* One compiler a core, each with a share of at least JOBS_MIN sources: a python
	 * starts in tens of milliseconds. */
	nsh = cpus < 1 ? 1 : (size_t)cpus;
	if (nsh > COMPILERS_MAX)
		nsh = COMPILERS_MAX;
	if (nsh > n / JOBS_MIN)
		nsh = n / JOBS_MIN ? n / JOBS_MIN : 1;
	{
		char *const envp[] = {home, "PYTHONDONTWRITEBYTECODE=1", "LC_ALL=C.UTF-8", NULL};
		uint64_t total = 0, sum = 0;
		size_t hi = 0;

		for (size_t i = 0; i < n; i++)
			total += jobs[i].len;
		/* Shares of about equal bytes, not of equal counts: a source compiles in about
		 * the time its size says, and the compilers should end together (torch's 497,
		 * mostly pip's, halved by count in path order: 2.7 and 3.3 MB). */
		for (size_t k = 0; k < nsh; k++) {
			size_t lo = hi;

			while (hi < n && (k + 1 == nsh || hi == lo ||
			                  sum + jobs[hi].len / 2 < total * (k + 1) / nsh))
				sum += jobs[hi++].len;
			sh[k] = (struct share){.jobs = jobs + lo,
			                       .n = hi - lo,
			                       .exe = exe,
			                       .envp = envp,
			                       .cwd_fd = cwd_fd,
			                       .nb = &nb,
			                       .put = put,
			                       .warn = warn,
			                       .arg = arg};
		}
		for (; started + 1 < nsh; started++)
			if (pthread_create(&th[started], NULL, compile_share, &sh[started]) != 0)
				break;
		/* The rest on this thread: the last share, and any a thread was not made for. */
		for (size_t k = started; k < nsh; k++)
			compile_share(&sh[k]);
		for (size_t k = 0; k < started; k++)
			pthread_join(th[k], NULL);
	}
	for (size_t k = 0; k < nsh && !r; k++)
		if (sh[k].r) {
			r = sh[k].r;
			*err = sh[k].err;
		}
out:
	for (size_t i = 0; i < n; i++)
		free(jobs[i].data);
	free(jobs);
	free(exe);
	free(home);
	return r;
}
