/* SPDX-License-Identifier: MIT */
/*
 * The error every condafs library call fills: one line for the user, naming the file and
 * the reason, beside the negative errno the call returns (condafs/store.h lists the
 * mapping). Its own header so that the conda library and the base helpers need nothing
 * of the store's.
 */
#ifndef CONDAFS_ERR_PUBLIC_H
#define CONDAFS_ERR_PUBLIC_H

/* One line for the user; caller-owned, may be NULL wherever it is accepted. */
struct cfs_err {
	char msg[1024];
};

#endif
