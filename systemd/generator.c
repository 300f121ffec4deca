// SPDX-License-Identifier: MIT
/*
 * condafs-generator, a systemd generator (systemd.generator(7)): systemd runs it at boot
 * and on every `systemctl daemon-reload`. condafs-gc.service may write nothing but the
 * store (ProtectSystem=strict), and the store is wherever the config file says; this
 * writes the drop-in that makes the configured store the unit's one writable path, so the
 * unit follows the config instead of a path fixed at build time.
 *
 *   condafs-generator NORMAL_DIR [EARLY_DIR LATE_DIR]
 *
 * writes NORMAL_DIR/condafs-gc.service.d/50-store.conf. The config is $CONDAFS_CONFIG,
 * else /etc/condafs/condafs.yml (a missing default file: the default store).
 */
#include <condafs/config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DROPIN_DIR  "condafs-gc.service.d"
#define DROPIN_FILE "50-store.conf"

/* path as one word of a unit file's path list: quoted, with '%' doubled (a specifier
 * otherwise). Characters that would need more escaping are refused: no store has them. */
static int unit_word(const char *path, char *buf, size_t size)
{
	size_t n = 0;

	if (path[0] != '/')
		return -EINVAL;
	if (n + 2 > size)
		return -ENAMETOOLONG;
	buf[n++] = '"';
	for (const char *p = path; *p; p++) {
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return -EINVAL;
		if (n + 3 > size)
			return -ENAMETOOLONG;
		if (*p == '%')
			buf[n++] = '%';
		buf[n++] = *p;
	}
	if (n + 2 > size)
		return -ENAMETOOLONG;
	buf[n++] = '"';
	buf[n] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path = getenv("CONDAFS_CONFIG");
	struct cfs_err err = {{0}};
	struct config c;
	char word[2 * sizeof(c.store) + 3], *dir = NULL, *file = NULL;
	FILE *f = NULL;
	int r, rc = 1;

	if (argc != 2 && argc != 4) {
		fprintf(stderr, "usage: condafs-generator NORMAL_DIR [EARLY_DIR LATE_DIR]\n");
		return 2;
	}
	if (!config_path || !*config_path)
		config_path = CONFIG_PATH;
	r = config_load(config_path, &c, &err);
	if (r) {
		fprintf(stderr, "condafs-generator: %s\n", err.msg[0] ? err.msg : strerror(-r));
		return 1;
	}
	r = unit_word(c.store, word, sizeof(word));
	if (r) {
		fprintf(stderr, "condafs-generator: %s: store %s: %s\n", config_path, c.store,
		        r == -EINVAL ? "not an absolute path a unit file can name" : strerror(-r));
		return 1;
	}
	if (asprintf(&dir, "%s/" DROPIN_DIR, argv[1]) < 0 ||
	    asprintf(&file, "%s/" DROPIN_FILE, dir) < 0) {
		fprintf(stderr, "condafs-generator: out of memory\n");
		goto out;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "condafs-generator: %s: %s\n", dir, strerror(errno));
		goto out;
	}
	f = fopen(file, "we");
	if (!f) {
		fprintf(stderr, "condafs-generator: %s: %s\n", file, strerror(errno));
		goto out;
	}
	/* The empty assignment drops the unit's default path: only the store is writable. A
	 * store that does not exist yet ('-') leaves gc to say so, rather than the sandbox. */
	fprintf(f,
	        "# Written by condafs-generator from %s: gc writes the configured store and\n"
	        "# nothing else.\n"
	        "[Service]\n"
	        "ReadWritePaths=\n"
	        "ReadWritePaths=-%s\n",
	        config_path, word);
	if (fflush(f) || ferror(f)) {
		fprintf(stderr, "condafs-generator: %s: %s\n", file, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (f && fclose(f) && !rc) {
		fprintf(stderr, "condafs-generator: %s: %s\n", file, strerror(errno));
		rc = 1;
	}
	free(file);
	free(dir);
	return rc;
}
