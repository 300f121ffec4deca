// SPDX-License-Identifier: MIT
/*
 * condafs: the command line. Parses options, opens the store (--store, $CONDAFS_STORE,
 * else the config file's, else /var/lib/condafs) and runs one command through the store's
 * public API. Errors are one line on stderr, "condafs: <command>: <file>: <reason>", and a
 * non-zero exit. The store is root's: another user's read-only commands read the mount
 * instead (viamount.c), and their writing commands are refused in one line. The commands
 * are in cmd_*.c, what they share in cli.c.
 */
#include "cli.h"
#include "out.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * How much of argv getopt may see: for run, not CMD's arguments (`condafs run ENV ls -l`).
 * Up to CMD, or up to and with the "--" before it; all of argv for other commands.
 */
static int options_end(int argc, char **argv, const struct option *opts)
{
	int positional = 0;
	bool run = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--"))
			return run ? i + 1 : argc;
		if (a[0] == '-' && a[1]) {
			/* "--store DIR": the value is not a positional argument. */
			for (const struct option *o = opts;
			     a[1] == '-' && !strchr(a, '=') && o->name; o++)
				if (o->has_arg == required_argument &&
				    strlen(a + 2) <= strlen(o->name) &&
				    memcmp(o->name, a + 2, strlen(a + 2)) == 0) {
					i++;
					break;
				}
			continue;
		}
		if (positional == 0)
			run = !strcmp(a, "run");
		else if (run && positional == 2)
			return i;
		positional++;
	}
	return argc;
}

static const struct command {
	const char *name;
	int (*run)(const struct cli *c);
} commands[] = {
        {"hash", cmd_hash},     {"ingest", cmd_ingest}, {"install", cmd_install},
        {"export", cmd_export}, {"ls", cmd_ls},         {"show", cmd_show},
        {"cat", cmd_cat},       {"stats", cmd_stats},   {"verify", cmd_verify},
        {"tag", cmd_tag},       {"untag", cmd_untag},   {"rm", cmd_rm},
        {"gc", cmd_gc},         {"run", cmd_run},       {"shell-hook", cmd_shell_hook},
        {"check", cmd_check},   {"kernel", cmd_kernel}, {"module", cmd_module},
};

int main(int argc, char **argv)
{
	enum {
		O_STORE = 256,
		O_JSON,
		O_LOCK,
		O_PLATFORM,
		O_ENV,
		O_PREFIX,
		O_REPLACE,
		O_SKIP,
		O_FORCE,
		O_DRY,
		O_UNUSED,
		O_CONFIG,
		O_REPAIR,
		O_MOUNT,
		O_PURGE,
		O_SHELL,
		O_DRIVER,
		O_NAME,
		O_USER,
		O_SYSTEM,
		O_TCL,
		O_FROZEN,
		O_MIRROR,
		O_PKGS_DIR,
		O_TAG,
	};
	static const struct option opts[] = {
	        {"store", required_argument, NULL, O_STORE},
	        {"json", no_argument, NULL, O_JSON},
	        {"lock", required_argument, NULL, O_LOCK},
	        {"platform", required_argument, NULL, O_PLATFORM},
	        {"environment", required_argument, NULL, O_ENV},
	        {"prefix", required_argument, NULL, O_PREFIX},
	        {"replace", no_argument, NULL, O_REPLACE},
	        {"skip-special", no_argument, NULL, O_SKIP},
	        {"force", no_argument, NULL, O_FORCE},
	        {"dry-run", no_argument, NULL, O_DRY},
	        {"unused-for", required_argument, NULL, O_UNUSED},
	        {"config", required_argument, NULL, O_CONFIG},
	        {"repair", no_argument, NULL, O_REPAIR},
	        {"mount", required_argument, NULL, O_MOUNT},
	        {"purge", no_argument, NULL, O_PURGE},
	        {"shell", required_argument, NULL, O_SHELL},
	        {"driver", required_argument, NULL, O_DRIVER},
	        {"name", required_argument, NULL, O_NAME},
	        {"user", no_argument, NULL, O_USER},
	        {"system", no_argument, NULL, O_SYSTEM},
	        {"tcl", no_argument, NULL, O_TCL},
	        {"frozen", no_argument, NULL, O_FROZEN},
	        {"channel-mirror", required_argument, NULL, O_MIRROR},
	        {"pkgs-dir", required_argument, NULL, O_PKGS_DIR},
	        {"tag", required_argument, NULL, O_TAG},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *config_path = CONFIG_PATH;
	struct cfs_err err = {{0}};
	struct cli c = {0};
	int o, end = options_end(argc, argv, opts);

	while ((o = getopt_long(end, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_STORE:
			c.store_dir = optarg;
			break;
		case O_JSON:
			c.json = true;
			break;
		case O_LOCK:
			c.lock = optarg;
			break;
		case O_PLATFORM:
			c.platform = optarg;
			break;
		case O_ENV:
			c.environment = optarg;
			break;
		case O_PREFIX:
			c.prefix = optarg;
			break;
		case O_REPLACE:
			c.replace = true;
			break;
		case O_SKIP:
			c.skip_special = true;
			break;
		case O_FORCE:
			c.force = true;
			break;
		case O_DRY:
			c.dry_run = true;
			break;
		case O_UNUSED:
			c.unused_for = optarg;
			break;
		case O_CONFIG:
			config_path = optarg;
			break;
		case O_REPAIR:
			c.repair = true;
			break;
		case O_MOUNT:
			c.mount = optarg;
			break;
		case O_PURGE:
			c.purge = true;
			break;
		case O_SHELL:
			c.shell = optarg;
			break;
		case O_DRIVER:
			c.driver = optarg;
			break;
		case O_NAME:
			c.name = optarg;
			break;
		case O_USER:
			c.user = true;
			break;
		case O_SYSTEM:
			c.system = true;
			break;
		case O_TCL:
			c.tcl = true;
			break;
		case O_FROZEN:
			c.frozen = true;
			break;
		case O_MIRROR:
		case O_PKGS_DIR: {
			const char **v = o == O_MIRROR ? c.mirrors : c.pkgs_dirs;
			size_t *n = o == O_MIRROR ? &c.nmirrors : &c.npkgs_dirs;

			if (*n == sizeof(c.mirrors) / sizeof(c.mirrors[0])) {
				fprintf(stderr, "condafs: at most %zu --%s options\n", *n,
				        o == O_MIRROR ? "channel-mirror" : "pkgs-dir");
				return EXIT_USAGE;
			}
			v[(*n)++] = optarg;
			break;
		}
		case O_TAG:
			c.tag = optarg;
			break;
		case 'h':
			fputs(cli_usage, stdout);
			return 0;
		default:
			fputs(cli_usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(cli_usage, stderr);
		return EXIT_USAGE;
	}
	c.cmd = argv[optind];
	c.config_path = config_path;
	if (config_load(config_path, &c.config, &err)) {
		fputs("condafs: ", stderr);
		out_text(stderr, err.msg);
		fputc('\n', stderr);
		return c.repair && !strcmp(c.cmd, "verify") ? EXIT_OPERATIONAL : EXIT_FAILED;
	}
	if (!c.store_dir)
		c.store_dir = getenv("CONDAFS_STORE");
	if (!c.store_dir || !*c.store_dir)
		c.store_dir = c.config.store;
	c.argc = argc - optind - 1;
	c.argv = argv + optind + 1;
	c.cmdline = argv;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, c.cmd))
			return commands[i].run(&c);
	cli_say(c.cmd, "unknown command");
	fputs(cli_usage, stderr);
	return EXIT_USAGE;
}
