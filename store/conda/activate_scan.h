/* SPDX-License-Identifier: MIT */
/*
 * Whether an activate.d script writes into its environment, which condafsd serves
 * read-only: ingest warns of such a script, whose write will fail with EROFS on every
 * activation. A textual scan of the POSIX shell text, not a shell: it sees a redirection
 * (>, >>, >|) to a path that starts with $CONDA_PREFIX or ${CONDA_PREFIX}, and touch,
 * mkdir, rm, rmdir, tee or truncate with such a path among their words, cp, mv, ln or
 * install with one as the last word, sed -i with one. Words are split at blanks outside
 * quotes and commands at ; & | ( ) and newlines; a comment (# starting a word) is skipped. What is
 * built at run time (eval, a variable holding the path) goes unseen.
 */
#ifndef CONDAFS_ACTIVATE_SCAN_H
#define CONDAFS_ACTIVATE_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* text (len bytes): true when the scan sees a write into $CONDA_PREFIX. */
bool activate_scan_writes(const char *text, size_t len);

#endif
