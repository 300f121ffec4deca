// SPDX-License-Identifier: MIT
/*
 * The config file (store/config.c) on any bytes: an error is one line naming the file;
 * a config read holds only values its checks allow.
 */
#include "condafs/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfs_err err = {{0}};
	struct config c;

	if (config_parse("fuzz.yml", (const char *)data, size, &c, &err) < 0) {
		fuzz_check_message(err.msg, "fuzz.yml");
		fuzz_check_one_line(err.msg);
		return 0;
	}
	FUZZ_CHECK(c.store[0] == '/' && memchr(c.store, 0, sizeof(c.store)));
	FUZZ_CHECK(c.mountpoint[0] == '/' && memchr(c.mountpoint, 0, sizeof(c.mountpoint)));
	FUZZ_CHECK(c.threads >= 0 && c.threads <= 64);
	FUZZ_CHECK(c.log_level >= 0 && c.log_level <= 7);
	FUZZ_CHECK(c.gc_unused_for >= 0 && c.gc_grace >= 0);
	return 0;
}
