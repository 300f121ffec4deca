// SPDX-License-Identifier: MIT
/*
 * Frame size measurement: for the files named on the command line, the compressed size
 * (zstd -3, independent frames, raw when incompressible) and the cost of a random 4 KiB
 * read (one frame decompressed) at frame sizes from 64 KiB to 1 MiB. This is how
 * OBJECT_FRAME_SHIFT was chosen; see docs/ARCHITECTURE.md, "Frame size".
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct file {
	const uint8_t *p;
	size_t len;
};

int main(int argc, char **argv)
{
	static const unsigned shifts[] = {16, 17, 18, 19, 20};
	struct file *files;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint64_t total = 0, seed = 42;
	int nfiles = 0, rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: bench-frames FILE...\n");
		return 2;
	}
	files = calloc((size_t)argc, sizeof(*files));
	cctx = ZSTD_createCCtx();
	dctx = ZSTD_createDCtx();
	for (int i = 1; i < argc; i++) {
		struct stat sb;
		int fd = open(argv[i], O_RDONLY);

		if (fd < 0 || fstat(fd, &sb) < 0 || sb.st_size == 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		files[nfiles].len = (size_t)sb.st_size;
		files[nfiles].p = mmap(NULL, files[nfiles].len, PROT_READ, MAP_PRIVATE, fd, 0);
		close(fd);
		if (files[nfiles].p == MAP_FAILED)
			continue;
		total += files[nfiles].len;
		nfiles++;
	}
	/* The random reads pick a file modulo nfiles. */
	if (!nfiles) {
		fprintf(stderr, "bench-frames: no readable non-empty file\n");
		rc = 1;
		goto out;
	}
	printf("%d files, %.1f MiB\n", nfiles, (double)total / 1048576);
	printf("%-10s %12s %8s %12s %14s\n", "frame", "compressed", "ratio", "compress s",
	       "4K read us");
	for (size_t s = 0; s < sizeof(shifts) / sizeof(shifts[0]); s++) {
		size_t fsz = (size_t)1 << shifts[s], cap = ZSTD_compressBound(fsz);
		uint8_t *cbuf = malloc(cap), *dbuf = malloc(fsz);
		uint64_t csum = 0;
		double t0 = now(), tc, treads = 0;
		int reads = 0;

		for (int i = 0; i < nfiles; i++) {
			for (size_t off = 0; off < files[i].len; off += fsz) {
				size_t n = files[i].len - off < fsz ? files[i].len - off : fsz;
				size_t c =
				        ZSTD_compressCCtx(cctx, cbuf, cap, files[i].p + off, n, 3);

				csum += c < n ? c : n;
			}
		}
		tc = now() - t0;
		/* Random 4 KiB reads in files of at least one frame: each decompresses the
		 * frame it falls in. */
		for (int k = 0; k < 2000; k++) {
			int i;
			size_t off, n, c;

			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			i = (int)((seed >> 33) % (uint64_t)nfiles);
			if (files[i].len < fsz)
				continue;
			off = ((seed >> 11) % files[i].len) & ~(fsz - 1);
			n = files[i].len - off < fsz ? files[i].len - off : fsz;
			c = ZSTD_compressCCtx(cctx, cbuf, cap, files[i].p + off, n, 3);
			t0 = now();
			ZSTD_decompressDCtx(dctx, dbuf, fsz, cbuf, c);
			treads += now() - t0;
			reads++;
		}
		printf("%-7zu KiB %9.1f MiB %7.3fx %12.2f %14.1f\n", fsz >> 10,
		       (double)csum / 1048576, (double)total / (double)csum, tc,
		       reads ? treads / reads * 1e6 : 0.0);
		free(cbuf);
		free(dbuf);
	}
out:
	ZSTD_freeCCtx(cctx);
	ZSTD_freeDCtx(dctx);
	free(files);
	return rc;
}
