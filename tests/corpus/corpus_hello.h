/* SPDX-License-Identifier: MIT */
/*
 * corpus-hello: a tiny library and program for the condafs test corpus.
 * Both are compiled with absolute paths under the conda build prefix, so they
 * only work once conda's binary prefix replacement has rewritten those paths
 * (and the RUNPATH of the program) to the prefix they are installed in.
 */
#ifndef CORPUS_HELLO_H
#define CORPUS_HELLO_H

/*
 * Copy the file at path to stdout. Returns 0, or -errno after printing one
 * line naming the file and the reason to stderr.
 */
int corpus_hello_print(const char *path);

/* The data directory compiled into the library; static storage, never freed. */
const char *corpus_hello_datadir(void);

#endif
