// SPDX-License-Identifier: MIT
/*
 * The nodeid space and the attributes served for it. Nodeids are computed from the
 * catalog's stable ids, never allocated, so the daemon keeps no inode table and `forget`
 * has nothing to do. Files identical in every environment share their group's nodeid:
 * one kernel inode, one page cache, hard-link semantics (see fsd.h for the encoding).
 */
#include "fsd.h"

#include <errno.h>

/* Ids above this would not survive the shift. */
#define INO_ID_MAX ((int64_t)(UINT64_MAX >> 3))

int ino_make(enum ino_kind kind, int64_t id, fuse_ino_t *ret)
{
	if (id < 1 || id > INO_ID_MAX)
		return -EOVERFLOW;
	*ret = ((fuse_ino_t)id << 2) | (fuse_ino_t)kind;
	return 0;
}

int ino_split(fuse_ino_t ino, enum ino_kind *ret_kind, int64_t *ret_id)
{
	enum ino_kind kind = ino_kind_of(ino);
	int64_t id = ino_id_of(ino);

	if (id < 1 || id > INO_ID_MAX)
		return -ESTALE;
	*ret_kind = kind;
	*ret_id = id;
	return 0;
}

int ino_of_node(const struct store_node *n, fuse_ino_t *ret)
{
	if (n->type == NODE_FILE && n->group > 0)
		return ino_make(INO_GROUP, n->group, ret);
	/* Paths of one source inode in one environment: the first path's nodeid. */
	if (n->type == NODE_FILE && n->hardlink > 0)
		return ino_make(INO_NODE, n->hardlink, ret);
	return ino_make(INO_NODE, n->id, ret);
}

void ino_attr(const struct store_node *n, fuse_ino_t ino, size_t plen, uint32_t nlink,
              struct stat *ret)
{
	static const mode_t type[] = {
	        [NODE_DIR] = S_IFDIR,
	        [NODE_FILE] = S_IFREG,
	        [NODE_SYMLINK] = S_IFLNK,
	};
	int64_t sec = n->mtime_ns / 1000000000, nsec = n->mtime_ns % 1000000000;

	if (nsec < 0) {
		nsec += 1000000000;
		sec -= 1;
	}
	*ret = (struct stat){
	        .st_ino = ino,
	        .st_mode = type[n->type] | (n->mode & 07777),
	        .st_nlink = nlink,
	        .st_uid = 0,
	        .st_gid = 0,
	        .st_blksize = 4096,
	};
	if (n->type == NODE_FILE)
		ret->st_size = (off_t)store_node_size(n, n->relocated ? plen : 0);
	else if (n->type == NODE_SYMLINK)
		ret->st_size = (off_t)store_node_size(n, plen);
	else
		ret->st_size = 4096;
	ret->st_blocks = (ret->st_size + 511) / 512;
	ret->st_mtim.tv_sec = ret->st_atim.tv_sec = ret->st_ctim.tv_sec = sec;
	ret->st_mtim.tv_nsec = ret->st_atim.tv_nsec = ret->st_ctim.tv_nsec = nsec;
}

uint64_t ino_generation(const char *hash)
{
	uint64_t g = 0;

	for (int i = 0; i < 16 && hash[i]; i++) {
		char c = hash[i];

		g = g << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	/* 0 is what the root and groups use. */
	return g ? g : 1;
}
