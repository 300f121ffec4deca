// SPDX-License-Identifier: MIT
/*
 * verify (through the mount for a user who may not open the store) and verify --repair,
 * with their exit codes (cli.h).
 */
#include "cli.h"
#include "out.h"
#include "viamount.h"

#include <condafs/verify.h>

#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

struct verify_out {
	const struct cli *c;
	bool first;
	bool repairs; /* --json: the "repairs" list is open */
	uint64_t nrepairs;
};

static void verify_report(void *ctx, const struct verify_problem *p)
{
	struct verify_out *vo = ctx;
	char problem[OUT_ESC], env[OUT_ESC], path[OUT_ESC];

	if (vo->c->json) {
		printf("%s\n {", vo->first ? "" : ",");
		cli_json_field("object", p->key, false);
		cli_json_field("problem", p->problem, true);
		cli_json_field("environment", p->env, true);
		cli_json_field("path", p->path, true);
		printf("}");
		vo->first = false;
	} else if (!p->key) {
		/* A damaged node whose object has no row. */
		printf("%s/%s: %s\n", out_esc(p->env, env, sizeof(env)),
		       out_esc(p->path, path, sizeof(path)),
		       out_esc(p->problem, problem, sizeof(problem)));
	} else if (p->env) {
		printf("object %s: %s: used by %s/%s\n", p->key,
		       out_esc(p->problem, problem, sizeof(problem)),
		       out_esc(p->env, env, sizeof(env)), out_esc(p->path, path, sizeof(path)));
	} else {
		printf("object %s: %s\n", p->key, out_esc(p->problem, problem, sizeof(problem)));
	}
}

/* --json: store_repair reports every problem before its first change, so the list of
 * problems is closed once, when the first change (or the summary) comes. */
static void json_open_repairs(struct verify_out *vo)
{
	if (vo->repairs)
		return;
	printf("%s], \"repairs\": [", vo->first ? "" : "\n");
	vo->repairs = true;
}

static void repair_report(void *ctx, const struct repair_action *a)
{
	static const char *const what[] = {
	        [REPAIR_ORPHAN] = "orphan removed",
	        [REPAIR_TMP] = "temporary directory removed",
	        [REPAIR_REFS] = "reference count fixed",
	        [REPAIR_NLINK] = "link count fixed",
	        [REPAIR_DROPPED] = "unused row deleted",
	        [REPAIR_BROKEN] = "marked broken",
	        [REPAIR_UNBROKEN] = "no longer broken",
	        [REPAIR_RECORD] = "package record forgotten",
	};
	struct verify_out *vo = ctx;

	if (vo->c->json) {
		json_open_repairs(vo);
		printf("%s\n {", vo->nrepairs++ ? "," : "");
		cli_json_field("action", what[a->kind], false);
		cli_json_field("object", a->key, true);
		cli_json_field("environment", a->env, true);
		cli_json_field(a->kind == REPAIR_RECORD ? "package" : "tmp", a->name, true);
		if (a->kind == REPAIR_REFS || a->kind == REPAIR_NLINK)
			printf(", \"refs_had\": %lld, \"refs_now\": %lld", (long long)a->refs_had,
			       (long long)a->refs_now);
		printf("}");
	} else if (a->kind == REPAIR_REFS || a->kind == REPAIR_NLINK) {
		printf("object %s: %s: %lld, now %lld\n", a->key, what[a->kind],
		       (long long)a->refs_had, (long long)a->refs_now);
	} else if (a->key) {
		printf("object %s: %s\n", a->key, what[a->kind]);
	} else if (a->kind == REPAIR_RECORD) {
		char name[OUT_ESC];

		printf("environment %s: %s: %s\n", a->env, out_esc(a->name, name, sizeof(name)),
		       what[a->kind]);
	} else if (a->env) {
		printf("environment %s: %s\n", a->env, what[a->kind]);
	} else {
		char name[OUT_ESC];

		printf("tmp/%s: %s\n", out_esc(a->name, name, sizeof(name)), what[a->kind]);
	}
}

static int cmd_repair(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct repair_result res;
	const struct verify_result *f = &res.found;
	struct store *st;
	uint64_t fixed;
	int r;

	if (cli_open_store(c, 0, &st))
		return EXIT_OPERATIONAL;
	if (c->json)
		printf("{\"problems\": [");
	r = store_repair(st, verify_report, repair_report, &vo, &res, &err);
	store_close(st);
	if (r) {
		cli_die(c, &err, r);
		return EXIT_OPERATIONAL;
	}
	fixed = res.orphans_removed + res.tmp_removed + res.refs_fixed + res.dropped +
	        res.envs_marked + res.envs_cleared + res.records_forgotten;
	if (c->json)
		json_open_repairs(&vo);
	if (c->json)
		printf("%s], \"objects_checked\": %llu, \"corrupt\": %llu, \"unreferenced\": %llu,"
		       " \"damaged_nodes\": %llu, \"damaged_records\": %llu,"
		       " \"orphans_removed\": %llu, \"tmp_removed\": %llu,"
		       " \"refs_fixed\": %llu, \"dropped\": %llu, \"envs_marked\": %llu,"
		       " \"envs_cleared\": %llu, \"envs_broken\": %llu, \"corrupt_left\": %llu,"
		       " \"records_forgotten\": %llu}\n",
		       vo.nrepairs ? "\n" : "", (unsigned long long)f->objects_checked,
		       (unsigned long long)f->corrupt, (unsigned long long)f->unreferenced,
		       (unsigned long long)f->damaged_nodes, (unsigned long long)f->damaged_records,
		       (unsigned long long)res.orphans_removed, (unsigned long long)res.tmp_removed,
		       (unsigned long long)res.refs_fixed, (unsigned long long)res.dropped,
		       (unsigned long long)res.envs_marked, (unsigned long long)res.envs_cleared,
		       (unsigned long long)res.envs_broken, (unsigned long long)res.corrupt_left,
		       (unsigned long long)res.records_forgotten);
	else
		printf("%llu objects checked, %llu missing or corrupt, %llu unreferenced, %llu "
		       "damaged nodes; repaired: %llu orphans and %llu temporary directories "
		       "removed, %llu reference counts fixed, %llu unused rows deleted, %llu "
		       "environments marked broken, %llu no longer broken, %llu damaged package "
		       "records forgotten; left: %llu missing or corrupt objects, %llu broken "
		       "environments\n",
		       (unsigned long long)f->objects_checked, (unsigned long long)f->corrupt,
		       (unsigned long long)f->unreferenced, (unsigned long long)f->damaged_nodes,
		       (unsigned long long)res.orphans_removed, (unsigned long long)res.tmp_removed,
		       (unsigned long long)res.refs_fixed, (unsigned long long)res.dropped,
		       (unsigned long long)res.envs_marked, (unsigned long long)res.envs_cleared,
		       (unsigned long long)res.records_forgotten,
		       (unsigned long long)res.corrupt_left, (unsigned long long)res.envs_broken);
	/* Damaged nodes are never mended: their environments stay broken. */
	if (res.corrupt_left || f->damaged_nodes)
		return EXIT_UNREPAIRED;
	return fixed ? EXIT_REPAIRED : 0;
}

/* verify by a user: every file they may read, through the mount. */
static int verify_via_mount(const struct cli *c, struct viamount *vm)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct viamount_verify res;
	int r;

	if (c->json)
		printf("{\"problems\": [");
	r = viamount_verify(vm, verify_report, &vo, &res, &err);
	if (r)
		return cli_die(c, &err, r);
	if (c->json)
		printf("%s], \"objects_checked\": null, \"corrupt\": %llu, \"unreferenced\": null,"
		       " \"files_checked\": %llu, \"files_skipped\": %llu}\n",
		       vo.first ? "" : "\n", (unsigned long long)res.failed,
		       (unsigned long long)res.files_checked,
		       (unsigned long long)res.files_skipped);
	else
		printf("%llu files checked through %s, %llu unreadable (damaged), %llu skipped "
		       "(this "
		       "user may not read them)\n",
		       (unsigned long long)res.files_checked, viamount_path(vm),
		       (unsigned long long)res.failed, (unsigned long long)res.files_skipped);
	return res.failed ? EXIT_FAILED : 0;
}

int cmd_verify(const struct cli *c)
{
	struct cfs_err err = {{0}};
	struct verify_out vo = {c, true, false, 0};
	struct verify_result res;
	struct viamount *vm;
	struct store *st;
	int r;

	if ((r = cli_need_args(c, 0)))
		return r;
	if (c->repair)
		return cmd_repair(c);
	if ((r = cli_open_view(c, &st, &vm)))
		return r;
	if (vm) {
		r = verify_via_mount(c, vm);
		viamount_close(vm);
		return r;
	}
	if (c->json)
		printf("{\"problems\": [");
	r = store_verify(st, verify_report, &vo, &res, &err);
	store_close(st);
	if (r)
		return cli_die(c, &err, r);
	if (c->json)
		printf("%s], \"objects_checked\": %llu, \"corrupt\": %llu, \"unreferenced\": "
		       "%llu, \"damaged_nodes\": %llu, \"damaged_records\": %llu}\n",
		       vo.first ? "" : "\n", (unsigned long long)res.objects_checked,
		       (unsigned long long)res.corrupt, (unsigned long long)res.unreferenced,
		       (unsigned long long)res.damaged_nodes,
		       (unsigned long long)res.damaged_records);
	else
		printf("%llu objects checked, %llu missing or corrupt, %llu unreferenced, %llu "
		       "damaged nodes, %llu damaged package records\n",
		       (unsigned long long)res.objects_checked, (unsigned long long)res.corrupt,
		       (unsigned long long)res.unreferenced, (unsigned long long)res.damaged_nodes,
		       (unsigned long long)res.damaged_records);
	return res.corrupt || res.damaged_nodes || res.damaged_records ? EXIT_FAILED : 0;
}
