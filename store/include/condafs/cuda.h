/* SPDX-License-Identifier: MIT */
/*
 * The CUDA driver check: which CUDA release an environment needs (from its package set),
 * which NVIDIA driver the host runs, and whether that driver runs the release, by NVIDIA's
 * table of minimum Linux driver versions (cuda.c keeps it, with its source).
 */
#ifndef CONDAFS_CUDA_H
#define CONDAFS_CUDA_H

#include <condafs/conda.h>

#include <stdbool.h>
#include <stddef.h>

/*
 * What an environment needs. Sources, each giving a CUDA release major.minor: the
 * cuda-version package's version, cuda-cudart's, cudatoolkit's, pytorch-cuda's, a
 * pytorch or libtorch build string ("cuda118_py310h...", "py3.10_cuda11.8_cudnn8.7.0_0",
 * "cu121..."), pip's torch local version ("2.1.0+cu121"), and a lock's __cuda
 * requirement's lower bound (">=12", a v7 platform's "__cuda=12"). Every one of them must
 * be met, so the need is the highest release any of them gives; among sources giving the
 * same release, the first in that order names it. A bare __cuda names no release and
 * counts for nothing.
 */
struct cuda_need {
	unsigned major, minor; /* 0.0: the environment needs no CUDA */
	char release[16];      /* "11.8", "" when none is needed */
	char source[256];      /* "cuda-version 11.8", "pytorch 2.1.0 cuda118_py310h...",
	                        * "__cuda >=12 (gpu-package)"; "" when none */
};
void cuda_need_of(const struct pkgset *set, struct cuda_need *ret);

/* The host's NVIDIA driver. */
struct cuda_driver {
	bool present;
	unsigned v[3];    /* 535.104.05 is {535, 104, 5}; missing parts are 0 */
	char version[32]; /* as read: "535.104.05" */
	char source[64];  /* "/proc/driver/nvidia/version", "nvidia-smi", "--driver", ... */
	char absent[128]; /* when !present: why ("no /proc/driver/nvidia/version and no
	                   * nvidia-smi", "CONDAFS_DRIVER_VERSION=none") */
};

/* "535.104.05", "470.57", "580": one to three dot-separated numbers. -EINVAL otherwise. */
int cuda_driver_parse(const char *s, struct cuda_driver *ret);
/* The driver version in the text of /proc/driver/nvidia/version (its "NVRM version:"
 * line: the first word after it that is a version). -ENOENT when it names none. */
int cuda_driver_from_proc(const char *text, struct cuda_driver *ret);
/* a < b: -1, equal 0, a > b: 1. */
int cuda_driver_cmp(const unsigned a[3], const unsigned b[3]);

/*
 * The host's driver: override when given (--driver), else $CONDAFS_DRIVER_VERSION when
 * set, else /proc/driver/nvidia/version, else what `nvidia-smi
 * --query-gpu=driver_version --format=csv,noheader` prints (a host whose kernel shows no
 * /proc/driver/nvidia, as WSL). An override of "none" says the host has no driver. A host
 * with neither is present == false, not an error. -EINVAL for an override that is no
 * version, -EBADMSG when /proc/driver/nvidia/version names none.
 */
int cuda_host_driver(const char *override, struct cuda_driver *ret, struct cfs_err *err);

enum cuda_verdict {
	CUDA_NOT_NEEDED,  /* the environment needs no CUDA */
	CUDA_FITS,        /* the driver is at least the release's minimum */
	CUDA_FITS_COMPAT, /* older than that, but CUDA 11 and later run on any driver of the
	                   * major release's branch (minor-version compatibility), without
	                   * the features that need the newer one (PTX JIT among them) */
	CUDA_TOO_OLD,     /* the driver runs neither */
	CUDA_NO_DRIVER,   /* CUDA is needed and the host has no driver */
	CUDA_UNKNOWN,     /* a release the table does not know (newer than it, or before 7.0) */
};

struct cuda_check {
	enum cuda_verdict verdict;
	char required[32]; /* the table's minimum for the release, "" if it has none */
	char compat[32];   /* the lower minimum minor-version compatibility allows (the
	                    * major release's), "" before CUDA 11 or when it is not lower */
	char text[512];    /* the verdict in one sentence */
};
void cuda_check(const struct cuda_need *need, const struct cuda_driver *drv,
                struct cuda_check *ret);
/* "not-needed", "fits", "fits-minor-compat", "too-old", "no-driver", "unknown". */
const char *cuda_verdict_name(enum cuda_verdict v);
/* Whether the environment's CUDA runs here (or needs none): check's exit 0. */
bool cuda_verdict_ok(enum cuda_verdict v);

/* The table's minimum Linux driver for CUDA major.minor (its GA release), NULL when the
 * table has no such release; and a major release's minimum under minor-version
 * compatibility (NULL before 11 and after the table). */
const char *cuda_min_driver(unsigned major, unsigned minor);
const char *cuda_compat_driver(unsigned major);

/*
 * For `condafs run`: when the host's driver (driver_override as cuda_host_driver's
 * override) is too old for what set needs, the one line to print before starting the
 * command, "warning: ...", in buf, and 1. 0 (buf "") when it fits, when set needs no
 * CUDA, or when the host has no driver (a login node runs CUDA builds on the CPU). A
 * negative errno, buf holding the reason, when the driver cannot be told.
 */
int cuda_warn_line(const struct pkgset *set, const char *driver_override, char *buf, size_t len);

#endif
