// SPDX-License-Identifier: MIT
/*
 * activation_compute (condafs/activate.h) on hand-made prefixes: conda's own variables
 * (first activation, and over an active environment: PATH's old bin replaced, CONDA_PREFIX_1,
 * CONDA_SHLVL 2), the declared variables (env_vars.d then conda-meta/state, upper-cased,
 * "***unset***" and PATH ignored, a replaced value saved as __CONDA_SHLVL_<n>_<NAME>), the
 * activate.d scripts sourced in sorted order seeing all of that (export and unset taken,
 * what the shell itself changes not), and bad input refused in one line naming the file.
 * And the scan ingest warns with: which scripts write into $CONDA_PREFIX.
 */
#include "activate_scan.h"
#include "condafs/activate.h"
#include "test.h"
#include "testfs.h"

static const char *get(const struct activation *a, const char *name)
{
	for (size_t i = 0; i < activation_count(a); i++)
		if (!strcmp(activation_name(a, i), name))
			return activation_value(a, i);
	return NULL;
}

static bool unsets(const struct activation *a, const char *name)
{
	for (size_t i = 0; i < activation_unset_count(a); i++)
		if (!strcmp(activation_unset_name(a, i), name))
			return true;
	return false;
}

static char *cat(const char *a, const char *b)
{
	char *s;

	if (asprintf(&s, "%s%s", a, b) < 0)
		testfs_die("asprintf", a);
	return s;
}

static void scan(void)
{
	static const char *const writes[] = {
	        "touch \"$CONDA_PREFIX/x\"\n",
	        "echo hi > $CONDA_PREFIX/etc/log\n",
	        "if true; then echo x >>\"${CONDA_PREFIX}/a b\"; fi\n",
	        "  mkdir -p \"${CONDA_PREFIX}/share/x\" && echo done\n",
	        "cp /etc/hosts \"$CONDA_PREFIX/etc/\"\n",
	        "/bin/ln -sf a $CONDA_PREFIX/b\n",
	        "sed -i.bak 's/a/b/' \"$CONDA_PREFIX/etc/f\"\n",
	        "X=1 rm -f ${CONDA_PREFIX:-/x}/y\n",
	        "echo a | tee \"$CONDA_PREFIX/t\" >/dev/null\n",
	};
	static const char *const reads[] = {
	        "export CUDA_HOME=\"$CONDA_PREFIX\"\n",
	        "# touch \"$CONDA_PREFIX/x\"\n",
	        "echo x # > $CONDA_PREFIX/x\n",
	        "cp \"$CONDA_PREFIX/etc/x\" \"$HOME/y\"\n",
	        "echo \"$CONDA_PREFIX\" >&2\n",
	        "touch \"$CONDA_PREFIX_1/x\"\n",
	        "sed 's/a/b/' \"$CONDA_PREFIX/etc/f\" > \"$HOME/f\"\n",
	        "cat < \"$CONDA_PREFIX/etc/f\"\n",
	        "echo 'touch $CONDA_PREFIX/x'\n",
	};

	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		test_checks++;
		if (!activate_scan_writes(writes[i], strlen(writes[i]))) {
			test_failures++;
			fprintf(stderr, "scan missed a write: %s", writes[i]);
		}
	}
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		test_checks++;
		if (activate_scan_writes(reads[i], strlen(reads[i]))) {
			test_failures++;
			fprintf(stderr, "scan saw a write in: %s", reads[i]);
		}
	}
}

int main(void)
{
	char *tmp = testfs_mkdtemp(), *env = cat(tmp, "/envs/py"), *bin = cat(env, "/bin");
	char *other = cat(tmp, "/other"), *want;
	struct cfs_err err = {{0}};
	struct activation *a = NULL;
	char *base[] = {
	        "PATH=/usr/bin:/bin", "HOME=/root", "KEEP=1", "GONE=x", "FOO=old", "EMPTY=", NULL};
	int r;

	/* A bare prefix: conda's own variables only. */
	testfs_write(env, "", "conda-meta/history");
	r = activation_compute(env, "py", base, &a, &err);
	CHECK(r == 0);
	if (r)
		fprintf(stderr, "%s\n", err.msg);
	want = cat(bin, ":/usr/bin:/bin");
	CHECK_STR(get(a, "PATH"), want);
	free(want);
	CHECK_STR(activation_name(a, 0), "PATH");
	CHECK_STR(get(a, "CONDA_PREFIX"), env);
	CHECK_STR(get(a, "CONDA_SHLVL"), "1");
	CHECK_STR(get(a, "CONDA_DEFAULT_ENV"), "py");
	CHECK_STR(get(a, "CONDA_PROMPT_MODIFIER"), "(py) ");
	CHECK_STR(activation_path_prepend(a), bin);
	CHECK(activation_count(a) == 5);
	CHECK(activation_unset_count(a) == 0);
	activation_free(a);

	/* Declared variables and scripts. */
	testfs_write(env, "{\"a_var\": \"pkg\", \"Z\": \"from-pkg\"}",
	             "etc/conda/env_vars.d/p.json");
	testfs_write(env,
	             "{\"env_vars\": {\"a_var\": \"state\", \"FOO\": \"new\", \"PATH\": \"/no\", "
	             "\"DROP\": \"***unset***\", \"UNI\": \"caf\\u00e9 'q' $x\"}, \"other\": 1}",
	             "conda-meta/state");
	testfs_write(env,
	             "export ORDER=\"${ORDER}b\"\nexport CUDA_HOME=\"$CONDA_PREFIX\"\n"
	             "export SEEN=\"$A_VAR\"\nunset GONE\necho noise\ncd /\n",
	             "etc/conda/activate.d/b.sh");
	testfs_write(env, "export ORDER=a\nexport PATH=\"$CONDA_PREFIX/x:$PATH\"\n",
	             "etc/conda/activate.d/a.sh");
	testfs_write(env, "export NOT=sourced\n", "etc/conda/activate.d/c.csh");
	r = activation_compute(env, "py", base, &a, &err);
	CHECK(r == 0);
	if (r)
		fprintf(stderr, "%s\n", err.msg);
	CHECK_STR(get(a, "A_VAR"), "state");
	CHECK_STR(get(a, "Z"), "from-pkg");
	CHECK_STR(get(a, "FOO"), "new");
	CHECK_STR(get(a, "__CONDA_SHLVL_0_FOO"), "old");
	CHECK_STR(get(a, "UNI"), "caf\xc3\xa9 'q' $x");
	CHECK(!get(a, "DROP"));
	CHECK_STR(get(a, "ORDER"), "ab");
	CHECK_STR(get(a, "CUDA_HOME"), env);
	CHECK_STR(get(a, "SEEN"), "state");
	CHECK(!get(a, "NOT"));
	CHECK(!get(a, "PWD") && !get(a, "OLDPWD") && !get(a, "KEEP") && !get(a, "HOME"));
	if (asprintf(&want, "%s/x:%s:/usr/bin:/bin", env, bin) < 0)
		testfs_die("asprintf", env);
	CHECK_STR(get(a, "PATH"), want);
	free(want);
	CHECK(unsets(a, "GONE") && activation_unset_count(a) == 1);
	activation_free(a);

	/* Over an active environment: its bin replaced in place, the stack kept. */
	{
		char *ob = cat(other, "/bin"), *path = NULL, *pre = cat("CONDA_PREFIX=", other);

		if (asprintf(&path, "PATH=/a:%s:/usr/bin", ob) < 0)
			testfs_die("asprintf", ob);
		char *active[] = {path, pre, "CONDA_SHLVL=1", NULL};

		r = activation_compute(env, "py", active, &a, &err);
		CHECK(r == 0);
		if (asprintf(&want, "%s/x:/a:%s:/usr/bin", env, bin) < 0)
			testfs_die("asprintf", bin);
		CHECK_STR(get(a, "PATH"), want);
		CHECK_STR(get(a, "CONDA_SHLVL"), "2");
		CHECK_STR(get(a, "CONDA_PREFIX_1"), other);
		free(want);
		activation_free(a);
		free(ob);
		free(path);
		free(pre);
	}

	/* A script that ends the shell is named. */
	testfs_write(env, "exit 3\n", "etc/conda/activate.d/m.sh");
	a = NULL;
	CHECK(activation_compute(env, "py", base, &a, &err) == -EINVAL && !a);
	CHECK(strstr(err.msg, "activate.d/m.sh: ") && strstr(err.msg, "status 3"));
	testfs_write(env, "true\n", "etc/conda/activate.d/m.sh");

	/* Bad state files. */
	testfs_write(env, "{\"env_vars\": [1]}", "conda-meta/state");
	CHECK(activation_compute(env, "py", base, &a, &err) == -EINVAL);
	CHECK(strstr(err.msg, "conda-meta/state:") && strstr(err.msg, "not a JSON object"));
	testfs_write(env, "{\"env_vars\": {\"X\": {}}}", "conda-meta/state");
	CHECK(activation_compute(env, "py", base, &a, &err) == -EINVAL);
	CHECK(strstr(err.msg, "conda-meta/state:") && strstr(err.msg, "not a string"));
	testfs_write(env, "{\"env_vars\": {\"X\": \"1\"", "conda-meta/state");
	CHECK(activation_compute(env, "py", base, &a, &err) == -EINVAL);
	CHECK(strstr(err.msg, "conda-meta/state:") != NULL);
	{
		char *big = malloc((2u << 20) + 1);

		memset(big, ' ', 2u << 20);
		big[2u << 20] = '\0';
		big[0] = '{';
		big[(2u << 20) - 1] = '}';
		testfs_write(env, big, "conda-meta/state");
		free(big);
	}
	CHECK(activation_compute(env, "py", base, &a, &err) == -EFBIG);
	CHECK(strstr(err.msg, "conda-meta/state: larger than") != NULL);
	CHECK(activation_compute("relative/env", "py", base, &a, &err) == -EINVAL);

	scan();
	testfs_rmtree(tmp);
	free(tmp);
	free(env);
	free(bin);
	free(other);
	return test_exit();
}
