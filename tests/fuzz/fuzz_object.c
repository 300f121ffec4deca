// SPDX-License-Identifier: MIT
/*
 * Object images (store/object.c) on any bytes: the header and frame table as
 * object_open_fd reads them, then frames as object_read decodes them. A malformed image
 * is -EBADMSG with one line, never a read outside it; what opens reads back as many bytes
 * as it says it holds, the same whole or in slices.
 *
 * The key object_open_fd checks the header against is taken from the input (bytes 24-39,
 * where the header keeps it), so the fuzzer need not guess it.
 */
#include "fuzz.h"
#include "object.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

/* Content a harness run reads at most: an image may claim terabytes of holes. */
#define READ_MAX (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ZSTD_DCtx *dctx;
	static uint8_t *whole, *slice;
	struct cfs_err err = {{0}};
	struct object *o = NULL;
	struct objkey key = {{0}};
	uint64_t len;
	size_t n = 0;
	int fd, r;

	if (!dctx) {
		dctx = ZSTD_createDCtx();
		whole = malloc(READ_MAX);
		slice = malloc(READ_MAX);
		FUZZ_CHECK(dctx && whole && slice);
	}
	if (size >= 40)
		memcpy(key.b, data + 24, 16);
	fd = memfd_create("fuzz-object", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
	r = object_open_fd(fd, &key, &o, &err);
	if (r < 0) {
		FUZZ_CHECK(r == -EBADMSG && o == NULL);
		fuzz_check_message(err.msg, "objects/");
		fuzz_check_one_line(err.msg);
		return 0;
	}
	len = object_size(o) < READ_MAX ? object_size(o) : READ_MAX;
	r = object_read(o, dctx, 0, (size_t)len, whole, &n, &err);
	if (r == 0) {
		FUZZ_CHECK(n == len);
		/* Slices across frame boundaries decode the same bytes. */
		for (uint64_t off = 0; off < len; off += 1 + off / 2) {
			size_t want = len - off < 4097 ? (size_t)(len - off) : 4097, got = 0;

			FUZZ_CHECK(object_read(o, dctx, off, 4097, slice, &got, &err) == 0);
			FUZZ_CHECK(got == want && memcmp(slice, whole + off, got) == 0);
		}
		if (object_size(o) <= READ_MAX)
			r = object_check(o, dctx, &err);
	}
	if (r < 0) {
		FUZZ_CHECK(r == -EBADMSG);
		fuzz_check_message(err.msg, "objects/");
		fuzz_check_one_line(err.msg);
	}
	object_close(o);
	return 0;
}
