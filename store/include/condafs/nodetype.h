/* SPDX-License-Identifier: MIT */
/*
 * The three kinds of path an environment's tree, a package archive and a package record
 * hold. Their values are written in package records (docs/package-format.md) and tree
 * objects (docs/tree-format.md): they never change.
 */
#ifndef CONDAFS_NODETYPE_H
#define CONDAFS_NODETYPE_H

enum node_type {
	NODE_DIR = 1,
	NODE_FILE = 2,
	NODE_SYMLINK = 3,
};

#endif
