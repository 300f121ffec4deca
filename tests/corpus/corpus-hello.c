/* SPDX-License-Identifier: MIT */
/*
 * corpus-hello-bin: prints share/corpus-hello/message.txt of the prefix it was
 * installed in. The path is compiled in under the conda build placeholder and
 * the library is found through a RUNPATH under the same placeholder, so the
 * program only runs if both were relocated (conda's binary mode, or condafs).
 */
#include <stdio.h>
#include <string.h>

#include "corpus_hello.h"

#ifndef CORPUS_PREFIX
#error "build with -DCORPUS_PREFIX='\"<build prefix>\"'"
#endif

/*
 * The placeholder alone is 255 bytes, so the slot is 512 rather than 256: it
 * must hold placeholder + suffix + NUL at build time.
 */
static char message_path[512] = CORPUS_PREFIX "/share/corpus-hello/message.txt";

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--where") == 0) {
		printf("message: %s\ndatadir: %s\n", message_path, corpus_hello_datadir());
		return 0;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: corpus-hello-bin [--where]\n");
		return 2;
	}
	return corpus_hello_print(message_path) == 0 ? 0 : 1;
}
