/* SPDX-License-Identifier: MIT */
/*
 * Functions no file of condafs may call, each with what to use instead. meson.build
 * includes this header first in every file it compiles; a call is then a deprecation
 * warning, which -Werror makes an error. The declarations only add the attribute to the C
 * library's own (the compiler merges them), so headers included later are unaffected.
 */
#ifndef CONDAFS_BANNED_H
#define CONDAFS_BANNED_H

#include <stdarg.h>
#include <stddef.h>
#include <time.h>

#define CONDAFS_BANNED(instead) __attribute__((deprecated("banned in condafs: " instead)))

/* No bound on what they write. */
CONDAFS_BANNED("use snprintf") int sprintf(char *restrict, const char *restrict, ...);
CONDAFS_BANNED("use vsnprintf") int vsprintf(char *restrict, const char *restrict, va_list);
CONDAFS_BANNED("use memcpy with a known length, or snprintf")
char *strcpy(char *restrict, const char *restrict);
CONDAFS_BANNED("use snprintf") char *strcat(char *restrict, const char *restrict);
/* Bounded, but strncpy leaves no NUL when it fills and strncat's bound is not the
 * buffer's. */
CONDAFS_BANNED("use snprintf or memcpy")
char *strncpy(char *restrict, const char *restrict, size_t);
CONDAFS_BANNED("use snprintf") char *strncat(char *restrict, const char *restrict, size_t);
/* Hidden state shared by every thread. */
CONDAFS_BANNED("use strtok_r") char *strtok(char *restrict, const char *restrict);
CONDAFS_BANNED("use localtime_r") struct tm *localtime(const time_t *);
CONDAFS_BANNED("use gmtime_r") struct tm *gmtime(const time_t *);
CONDAFS_BANNED("use strftime") char *asctime(const struct tm *);
CONDAFS_BANNED("use strftime") char *ctime(const time_t *);

#endif
