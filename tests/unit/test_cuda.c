// SPDX-License-Identifier: MIT
/*
 * The CUDA driver check (cuda.c): NVIDIA's table, driver versions and their order, the
 * driver read from /proc/driver/nvidia/version lines as drivers print them, the need
 * taken from real package names, versions and build strings and from a lock's __cuda
 * (a real pixi.lock v7 fixture, and pixi.lock v6 / conda-lock.yml requirements), every
 * verdict, and the one line `condafs run` prints.
 */
#include "pkgset.h"
#include "test.h"
#include "testfs.h"

#include <condafs/cuda.h>
#include <condafs/store.h>

#include <errno.h>
#include <stdlib.h>

static void test_table(void)
{
	/* NVIDIA's "CUDA Toolkit and Corresponding Driver Versions", GA rows. */
	CHECK_STR(cuda_min_driver(11, 8), "520.61.05");
	CHECK_STR(cuda_min_driver(12, 0), "525.60.13");
	CHECK_STR(cuda_min_driver(12, 1), "530.30.02");
	CHECK_STR(cuda_min_driver(12, 2), "535.54.03");
	CHECK_STR(cuda_min_driver(12, 4), "550.54.14");
	CHECK_STR(cuda_min_driver(12, 8), "570.26");
	CHECK_STR(cuda_min_driver(13, 0), "580.65.06");
	CHECK_STR(cuda_min_driver(11, 0), "450.51.05");
	CHECK_STR(cuda_min_driver(10, 2), "440.33");
	CHECK_STR(cuda_min_driver(7, 0), "346.46");
	CHECK(cuda_min_driver(12, 7) == NULL); /* there was no CUDA 12.7 */
	CHECK(cuda_min_driver(14, 0) == NULL);
	CHECK(cuda_min_driver(6, 5) == NULL);
	/* Minor-version compatibility, from CUDA 11 on. */
	CHECK_STR(cuda_compat_driver(11), "450.80.02");
	CHECK_STR(cuda_compat_driver(12), "525.60.13");
	CHECK_STR(cuda_compat_driver(13), "580");
	CHECK(cuda_compat_driver(10) == NULL);
	CHECK(cuda_compat_driver(14) == NULL);
	/* Every row names a version that parses, and a newer release never needs less. */
	for (unsigned maj = 7, pmaj = 0, pmin = 0; maj <= 13; maj++)
		for (unsigned min = 0; min <= 9; min++) {
			const char *d = cuda_min_driver(maj, min), *p;
			struct cuda_driver x, y;

			if (!d)
				continue;
			CHECK(cuda_driver_parse(d, &x) == 0);
			p = pmaj ? cuda_min_driver(pmaj, pmin) : NULL;
			if (p) {
				CHECK(cuda_driver_parse(p, &y) == 0);
				CHECK(cuda_driver_cmp(y.v, x.v) < 0);
			}
			pmaj = maj;
			pmin = min;
		}
}

static void test_versions(void)
{
	struct cuda_driver a, b;

	CHECK(cuda_driver_parse("535.104.05", &a) == 0);
	CHECK(a.present && a.v[0] == 535 && a.v[1] == 104 && a.v[2] == 5);
	CHECK_STR(a.version, "535.104.05");
	CHECK(cuda_driver_parse("535.54.03", &b) == 0);
	/* Numbers, not text: 104 > 54. */
	CHECK(cuda_driver_cmp(a.v, b.v) > 0 && cuda_driver_cmp(b.v, a.v) < 0);
	CHECK(cuda_driver_cmp(a.v, a.v) == 0);
	CHECK(cuda_driver_parse("570.26", &b) == 0 && b.v[2] == 0);
	CHECK(cuda_driver_parse("580", &b) == 0 && b.v[0] == 580 && b.v[1] == 0);
	CHECK(cuda_driver_parse("580.65.06", &a) == 0 && cuda_driver_cmp(a.v, b.v) > 0);
	CHECK(cuda_driver_parse("", &a) == -EINVAL);
	CHECK(cuda_driver_parse("535.", &a) == -EINVAL);
	CHECK(cuda_driver_parse(".535", &a) == -EINVAL);
	CHECK(cuda_driver_parse("535.104.05.1", &a) == -EINVAL);
	CHECK(cuda_driver_parse("535,104", &a) == -EINVAL);
	CHECK(cuda_driver_parse("v535", &a) == -EINVAL);
	CHECK(cuda_driver_parse("none", &a) == -EINVAL);
	CHECK(cuda_driver_parse("1234567.1", &a) == -EINVAL);
}

static void test_proc(void)
{
	/* /proc/driver/nvidia/version as drivers write it (proprietary and open kernel
	 * modules, x86_64, x86 and aarch64), copied from public documentation, scripts and
	 * bug reports (Talos's and a SUSE-built driver's docs, a cluster health script, a
	 * Jetson test, an old forum post). */
	static const struct {
		const char *text, *want;
	} lines[] = {
	        {"NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.113.01  Tue Sep 12 19:41:24 "
	         "UTC 2023\n",
	         "535.113.01"},
	        {"NVRM version: NVIDIA UNIX x86_64 Kernel Module  515.65.01  Wed Mar 16 11:24:05 "
	         "UTC 2022\nGCC version:  gcc version 12.2.0 (GCC)\n",
	         "515.65.01"},
	        {"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  555.42.06  Release "
	         "Build  (abuild@host)  Thu Jul 11 12:00:00 UTC 2024\nGCC version:  gcc version "
	         "7.5.0 (SUSE Linux) \n",
	         "555.42.06"},
	        {"NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  540.4.0  Release Build "
	         " "
	         "(buildbrain@mobile-u64-6336-d8000)  Tue Jan  7 17:35:12 PST 2025\n",
	         "540.4.0"},
	        {"NVRM version: NVIDIA UNIX x86_64 Kernel Module  384.81  Wed Aug 17 22:24:07 PDT "
	         "2016\nGCC version:  gcc version 4.8.5 20150623 (Red Hat 4.8.5-4) (GCC)\n",
	         "384.81"},
	        {"NVRM version: NVIDIA UNIX x86 Kernel Module  169.12  Thu Feb 14 17:53:07 PST "
	         "2008\n",
	         "169.12"},
	};
	struct cuda_driver d;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		CHECK(cuda_driver_from_proc(lines[i].text, &d) == 0);
		CHECK_STR(d.version, lines[i].want);
	}
	CHECK(cuda_driver_from_proc("GCC version:  gcc version 12.2.0 (GCC)\n", &d) == -ENOENT);
	CHECK(cuda_driver_from_proc("NVRM version: NVIDIA UNIX x86_64 Kernel Module\n"
	                            "GCC version:  gcc version 12.2.0 (GCC)\n",
	                            &d) == -ENOENT);
	CHECK(cuda_driver_from_proc("", &d) == -ENOENT);
}

/* A set of conda packages (name, version, build triples, NULL-ended). */
static struct pkgset *conda_set(const char *const *p)
{
	struct pkgset *set = NULL;

	CHECK(pkgset_new(&set) == 0);
	for (; p[0]; p += 3) {
		struct pkg c = {.kind = PKG_CONDA, .name = p[0], .version = p[1], .build = p[2]};

		CHECK(pkgset_add(set, &c, "t", NULL) == 0);
	}
	return set;
}

static void need_is(const char *const *pkgs, const char *release, const char *source)
{
	struct pkgset *set = conda_set(pkgs);
	struct cuda_need n;

	CHECK(pkgset_finish(set, "linux-64", "t", NULL) == 0);
	cuda_need_of(set, &n);
	CHECK_STR(n.release, release);
	CHECK_STR(n.source, source);
	pkgset_free(set);
}

static void test_need(void)
{
	struct pkgset *set;
	struct cuda_need n;

	need_is((const char *[]){"python", "3.11.9", "hb806964_0_cpython", NULL}, "", "");
	need_is((const char *[]){"cuda-version", "11.8", "h70ddcb2_3", NULL}, "11.8",
	        "cuda-version 11.8");
	need_is((const char *[]){"cudatoolkit", "11.8.0", "h4ba93d1_13", NULL}, "11.8",
	        "cudatoolkit 11.8.0");
	need_is((const char *[]){"cudatoolkit", "10.2.89", "h713d32c_11", NULL}, "10.2",
	        "cudatoolkit 10.2.89");
	need_is((const char *[]){"cuda-cudart", "12.1.105", "hd3aeb46_0", NULL}, "12.1",
	        "cuda-cudart 12.1.105");
	need_is((const char *[]){"pytorch-cuda", "12.1", "ha16c6d3_6", NULL}, "12.1",
	        "pytorch-cuda 12.1");
	/* conda-forge and pytorch-channel builds of pytorch */
	need_is((const char *[]){"pytorch", "2.3.1", "cuda118_py311h0047a46_300", NULL}, "11.8",
	        "pytorch 2.3.1 cuda118_py311h0047a46_300");
	need_is((const char *[]){"pytorch", "2.4.0", "cuda120_py310h2c91c31_301", NULL}, "12.0",
	        "pytorch 2.4.0 cuda120_py310h2c91c31_301");
	need_is((const char *[]){"pytorch", "2.3.1", "py3.10_cuda11.8_cudnn8.7.0_0", NULL}, "11.8",
	        "pytorch 2.3.1 py3.10_cuda11.8_cudnn8.7.0_0");
	need_is((const char *[]){"pytorch", "2.5.1", "cuda126_generic_py310_h478e78a_207", NULL},
	        "12.6", "pytorch 2.5.1 cuda126_generic_py310_h478e78a_207");
	/* libtorch, its build as a public report quotes it (cut after the variant) */
	need_is((const char *[]){"libtorch", "2.7.1", "cuda126_generic", NULL}, "12.6",
	        "libtorch 2.7.1 cuda126_generic");
	need_is((const char *[]){"pytorch", "2.3.1", "py3.10_cpu_0", NULL}, "", "");
	need_is((const char *[]){"pytorch", "2.4.1", "cpu_mkl_py311hb499fb8_100", NULL}, "", "");
	/* The strictest source names the need; among equals, cuda-version. */
	need_is((const char *[]){"cuda-version", "12.1", "h1d6eff3_3", "cuda-cudart", "12.1.105",
	                         "hd3aeb46_0", "pytorch", "2.4.0", "cuda120_py310h2c91c31_301",
	                         NULL},
	        "12.1", "cuda-version 12.1");
	need_is((const char *[]){"cuda-version", "12.0", "hffde075_2", "cuda-cudart", "12.4.127",
	                         "he02047a_2", NULL},
	        "12.4", "cuda-cudart 12.4.127");

	/* pip's torch wheel: the local version. */
	CHECK(pkgset_new(&set) == 0);
	CHECK(pkgset_add(set,
	                 &(struct pkg){.kind = PKG_PYPI, .name = "torch", .version = "2.1.0+cu121"},
	                 "t", NULL) == 0);
	CHECK(pkgset_add(set, &(struct pkg){.kind = PKG_PYPI, .name = "numpy", .version = "1.26.4"},
	                 "t", NULL) == 0);
	CHECK(pkgset_finish(set, "linux-64", "t", NULL) == 0);
	cuda_need_of(set, &n);
	CHECK_STR(n.release, "12.1");
	CHECK_STR(n.source, "pypi torch 2.1.0+cu121");
	CHECK(n.major == 12 && n.minor == 1);
	pkgset_free(set);

	/* A lock's __cuda: lower bounds count, upper bounds and a bare __cuda do not. */
	set = conda_set((const char *[]){"cuda-version", "11.8", "h70ddcb2_3", NULL});
	CHECK(pkgset_add_virtual(set, "__cuda", "", "pytorch") == 0);
	CHECK(pkgset_add_virtual(set, "__cuda", "<13", "x") == 0);
	CHECK(pkgset_add_virtual(set, "__glibc", ">=2.17,<3.0.a0", "x") == 0);
	CHECK(pkgset_finish(set, "linux-64", "t", NULL) == 0);
	cuda_need_of(set, &n);
	CHECK_STR(n.source, "cuda-version 11.8");
	CHECK(pkgset_add_virtual(set, "__cuda", ">=11.2,<13|>=12.1", "gpu-package") == 0);
	cuda_need_of(set, &n);
	CHECK_STR(n.source, "cuda-version 11.8");
	CHECK(pkgset_add_virtual(set, "__cuda", ">=12", "gpu-package") == 0);
	CHECK(pkgset_add_virtual(set, "__cuda", ">=12", "twice") == 0);
	CHECK(pkgset_virtual_count(set) == 5);
	cuda_need_of(set, &n);
	CHECK_STR(n.release, "12.0");
	CHECK_STR(n.source, "__cuda >=12 (gpu-package)");
	CHECK(pkgset_add_virtual(set, "__cuda", "12.4.*", "platform linux-64-cuda") == 0);
	cuda_need_of(set, &n);
	CHECK_STR(n.release, "12.4");
	pkgset_free(set);
}

static char *tmp;

static void test_lock_virtuals(void)
{
	const char *fx = getenv("FIXTURES");
	struct cfs_err err = {{0}};
	struct pkgset *set = NULL;
	struct cuda_need n;
	char *path = NULL;

	/* pixi.lock v7: the platform declares __cuda=12. */
	if (asprintf(&path, "%s/conda/lockfiles/pixi-lock/v7-conditional-dependency-cuda/pixi.lock",
	             fx ? fx : "fixtures") < 0)
		return;
	CHECK(pkgset_from_lock(path, "linux-64-cuda", NULL, &set, &err) == 0);
	CHECK(set && pkgset_virtual_count(set) == 1);
	if (set && pkgset_virtual_count(set) == 1) {
		CHECK_STR(pkgset_virtual_at(set, 0)->name, "__cuda");
		CHECK_STR(pkgset_virtual_at(set, 0)->spec, "12");
		CHECK_STR(pkgset_virtual_at(set, 0)->from, "platform linux-64-cuda");
		cuda_need_of(set, &n);
		CHECK_STR(n.release, "12.0");
		CHECK_STR(n.source, "__cuda 12 (platform linux-64-cuda)");
	}
	pkgset_free(set);
	set = NULL;
	/* Its other platform was solved without. */
	CHECK(pkgset_from_lock(path, "linux-64", NULL, &set, &err) == 0);
	CHECK(set && pkgset_virtual_count(set) == 0);
	pkgset_free(set);
	set = NULL;
	free(path);

	/* pixi.lock v6: a package's depends. */
	testfs_write(tmp,
	             "version: 6\n"
	             "environments:\n"
	             "  default:\n"
	             "    channels:\n"
	             "    - url: https://channel.example.invalid/conda-forge/\n"
	             "    packages:\n"
	             "      linux-64:\n"
	             "      - conda: https://channel.example.invalid/conda-forge/linux-64/"
	             "gpu-tool-1.0-h0_0.conda\n"
	             "packages:\n"
	             "- conda: https://channel.example.invalid/conda-forge/linux-64/"
	             "gpu-tool-1.0-h0_0.conda\n"
	             "  sha256: 5ced96500d945fb286c9c838e54fa759aa04a7129c59800f0846b4335cee770d\n"
	             "  md5: 62ee74e96c5ebb0af99386de58cf9553\n"
	             "  depends:\n"
	             "  - __cuda >=12.2\n"
	             "  - __glibc >=2.17,<3.0.a0\n"
	             "  - libgcc >=13\n",
	             "pixi.lock");
	if (asprintf(&path, "%s/pixi.lock", tmp) < 0)
		return;
	CHECK(pkgset_from_lock(path, NULL, NULL, &set, &err) == 0);
	CHECK(set && pkgset_virtual_count(set) == 2);
	cuda_need_of(set, &n);
	CHECK_STR(n.release, "12.2");
	CHECK_STR(n.source, "__cuda >=12.2 (gpu-tool)");
	pkgset_free(set);
	set = NULL;
	free(path);

	/* conda-lock.yml: dependencies as a mapping. */
	testfs_write(tmp,
	             "version: 1\n"
	             "metadata:\n"
	             "  platforms:\n"
	             "  - linux-64\n"
	             "package:\n"
	             "- name: gpu-tool\n"
	             "  version: '1.0'\n"
	             "  manager: conda\n"
	             "  platform: linux-64\n"
	             "  dependencies:\n"
	             "    __cuda: '>=11.8'\n"
	             "    libgcc: '>=13'\n"
	             "  url: https://channel.example.invalid/conda-forge/linux-64/"
	             "gpu-tool-1.0-h0_0.conda\n"
	             "  hash:\n"
	             "    md5: 62ee74e96c5ebb0af99386de58cf9553\n"
	             "  category: main\n"
	             "  optional: false\n",
	             "conda-lock.yml");
	if (asprintf(&path, "%s/conda-lock.yml", tmp) < 0)
		return;
	CHECK(pkgset_from_lock(path, NULL, NULL, &set, &err) == 0);
	CHECK(set && pkgset_virtual_count(set) == 1);
	cuda_need_of(set, &n);
	CHECK_STR(n.release, "11.8");
	CHECK_STR(n.source, "__cuda >=11.8 (gpu-tool)");
	pkgset_free(set);
	free(path);
}

static void verdict_is(const char *release, const char *driver, enum cuda_verdict want,
                       const char *text)
{
	struct cuda_need need = {0};
	struct cuda_driver drv = {0};
	struct cuda_check chk;

	if (*release) {
		CHECK(sscanf(release, "%u.%u", &need.major, &need.minor) == 2);
		snprintf(need.release, sizeof(need.release), "%s", release);
	}
	if (driver)
		CHECK(cuda_driver_parse(driver, &drv) == 0);
	cuda_check(&need, &drv, &chk);
	CHECK(chk.verdict == want);
	if (chk.verdict != want)
		fprintf(stderr, "CUDA %s on %s: %s\n", release, driver ? driver : "none", chk.text);
	CHECK_STR(chk.text, text);
}

static void test_verdicts(void)
{
	verdict_is("", NULL, CUDA_NOT_NEEDED, "no CUDA needed");
	verdict_is("", "535.104.05", CUDA_NOT_NEEDED, "no CUDA needed");
	verdict_is("11.8", "520.61.05", CUDA_FITS, "fits: CUDA 11.8 needs driver >= 520.61.05");
	verdict_is("11.8", "535.104.05", CUDA_FITS, "fits: CUDA 11.8 needs driver >= 520.61.05");
	verdict_is("11.8", "470.57.02", CUDA_FITS_COMPAT,
	           "fits by minor-version compatibility: CUDA 11.8 runs on driver >= 450.80.02, "
	           "but features such as PTX JIT need >= 520.61.05");
	verdict_is("11.8", "450.80.01", CUDA_TOO_OLD,
	           "too old: CUDA 11.8 needs driver >= 520.61.05, or >= 450.80.02 with "
	           "minor-version compatibility; this host has 450.80.01");
	verdict_is("12.4", "535.104.05", CUDA_FITS_COMPAT,
	           "fits by minor-version compatibility: CUDA 12.4 runs on driver >= 525.60.13, "
	           "but features such as PTX JIT need >= 550.54.14");
	verdict_is("12.1", "520.61.05", CUDA_TOO_OLD,
	           "too old: CUDA 12.1 needs driver >= 530.30.02, or >= 525.60.13 with "
	           "minor-version compatibility; this host has 520.61.05");
	/* 12.0's own minimum is the family's: no second way. */
	verdict_is("12.0", "525.60.12", CUDA_TOO_OLD,
	           "too old: CUDA 12.0 needs driver >= 525.60.13; this host has 525.60.12");
	verdict_is("13.0", "575.51.03", CUDA_TOO_OLD,
	           "too old: CUDA 13.0 needs driver >= 580.65.06, or >= 580 with minor-version "
	           "compatibility; this host has 575.51.03");
	verdict_is("10.2", "440.33", CUDA_FITS, "fits: CUDA 10.2 needs driver >= 440.33");
	/* Before CUDA 11 there is no minor-version compatibility. */
	verdict_is("10.2", "418.39", CUDA_TOO_OLD,
	           "too old: CUDA 10.2 needs driver >= 440.33; this host has 418.39");
	verdict_is("11.8", NULL, CUDA_NO_DRIVER,
	           "no driver: CUDA 11.8 needs driver >= 520.61.05, or >= 450.80.02 with "
	           "minor-version compatibility, and this host has none");
	verdict_is("12.7", "560.28.03", CUDA_FITS_COMPAT,
	           "fits by minor-version compatibility: CUDA 12.x runs on driver >= 525.60.13 "
	           "(condafs's table has no CUDA 12.7)");
	verdict_is("14.0", "700.1", CUDA_UNKNOWN,
	           "unknown: CUDA 14.0 is not in condafs's table of NVIDIA's minimum drivers (7.0 "
	           "to 13.3)");
	CHECK(cuda_verdict_ok(CUDA_NOT_NEEDED) && cuda_verdict_ok(CUDA_FITS) &&
	      cuda_verdict_ok(CUDA_FITS_COMPAT));
	CHECK(!cuda_verdict_ok(CUDA_TOO_OLD) && !cuda_verdict_ok(CUDA_NO_DRIVER) &&
	      !cuda_verdict_ok(CUDA_UNKNOWN));
	CHECK_STR(cuda_verdict_name(CUDA_FITS_COMPAT), "fits-minor-compat");
	CHECK_STR(cuda_verdict_name(CUDA_NO_DRIVER), "no-driver");
}

static void test_host_and_warning(void)
{
	struct pkgset *set =
	        conda_set((const char *[]){"cuda-version", "11.8", "h70ddcb2_3", NULL});
	struct pkgset *cpu =
	        conda_set((const char *[]){"python", "3.11.9", "hb806964_0_cpython", NULL});
	struct cfs_err err = {{0}};
	struct cuda_driver d;
	char line[512];

	CHECK(pkgset_finish(set, "linux-64", "t", NULL) == 0);
	CHECK(pkgset_finish(cpu, "linux-64", "t", NULL) == 0);
	CHECK(cuda_host_driver("535.104.05", &d, &err) == 0 && d.present);
	CHECK_STR(d.source, "--driver");
	CHECK(cuda_host_driver("none", &d, &err) == 0 && !d.present);
	CHECK_STR(d.absent, "--driver none");
	CHECK(cuda_host_driver("5x", &d, &err) == -EINVAL);
	CHECK_STR(err.msg, "--driver: '5x' is not a driver version (like 535.104.05, or none)");
	setenv("CONDAFS_DRIVER_VERSION", "470.57.02", 1);
	CHECK(cuda_host_driver(NULL, &d, &err) == 0 && d.present);
	CHECK_STR(d.version, "470.57.02");
	CHECK_STR(d.source, "CONDAFS_DRIVER_VERSION");
	/* --driver wins over the environment variable. */
	CHECK(cuda_host_driver("580.65.06", &d, &err) == 0);
	CHECK_STR(d.version, "580.65.06");
	unsetenv("CONDAFS_DRIVER_VERSION");

	CHECK(cuda_warn_line(set, "535.104.05", line, sizeof(line)) == 0);
	CHECK_STR(line, "");
	CHECK(cuda_warn_line(set, "470.57.02", line, sizeof(line)) == 0); /* compatibility */
	CHECK(cuda_warn_line(set, "none", line, sizeof(line)) == 0);
	CHECK(cuda_warn_line(cpu, "418.39", line, sizeof(line)) == 0);
	CHECK(cuda_warn_line(set, "418.39", line, sizeof(line)) == 1);
	CHECK_STR(line, "warning: the NVIDIA driver 418.39 is too old for this environment's CUDA "
	                "11.8 (cuda-version 11.8): it needs >= 520.61.05, or >= 450.80.02 with "
	                "minor-version compatibility");
	CHECK(cuda_warn_line(set, "bad", line, sizeof(line)) == -EINVAL);
	CHECK(strstr(line, "'bad' is not a driver version") != NULL);
	pkgset_free(set);
	pkgset_free(cpu);
}

int main(void)
{
	tmp = testfs_mkdtemp();
	test_table();
	test_versions();
	test_proc();
	test_need();
	test_lock_virtuals();
	test_verdicts();
	test_host_and_warning();
	testfs_rmtree(tmp);
	free(tmp);
	return test_exit();
}
