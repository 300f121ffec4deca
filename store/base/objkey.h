/* SPDX-License-Identifier: MIT */
/*
 * A content's key: XXH3-128 of its bytes, big-endian, as object images, tree images and
 * package records all name contents (docs/object-format.md). Here, apart from object.h,
 * because the conda library's package records carry keys without reading objects.
 */
#ifndef CONDAFS_OBJKEY_H
#define CONDAFS_OBJKEY_H

#include <stdint.h>

struct objkey {
	uint8_t b[16];
};

#endif
