/* Snapshot loader errors name the field; `wlm plan` runs the examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmd_plan.h"
#include "placement.h"

static const char *base_nodes =
    "\"nodes\": [{\"name\": \"a\", \"cores\": 4, \"mhz_per_core\": 2000, \"memory_mb\": 8192},"
    "{\"name\": \"b\", \"cores\": 4, \"mhz_per_core\": 2000, \"memory_mb\": 8192},"
    "{\"name\": \"c\", \"cores\": 4, \"mhz_per_core\": 2000, \"memory_mb\": %s}]";

/* Parse `{nodes(with c.memory_mb = mem), rest}` and return the error text
 * (empty on success). */
static const char *parse(const char *mem, const char *rest, struct placement_problem **out)
{
    static struct wlm_error err;
    char nodes[1024], doc[4096];
    snprintf(nodes, sizeof(nodes), base_nodes, mem);
    snprintf(doc, sizeof(doc), "{%s%s%s}", nodes, rest[0] ? "," : "", rest);
    json_error_t je;
    json_t *root = json_loads(doc, 0, &je);
    if (!root)
        fail_msg("test JSON invalid: %s: %s", je.text, doc);
    memset(&err, 0, sizeof(err));
    struct placement_problem *p = NULL;
    int rc = placement_snapshot_parse(root, &p, &err);
    json_decref(root);
    if (out)
        *out = p;
    else
        placement_problem_free(p);
    return rc ? err.msg : "";
}

static void expect_error(const char *mem, const char *rest, const char *msg)
{
    const char *got = parse(mem, rest, NULL);
    if (!strstr(got, msg))
        fail_msg("expected '%s', got '%s'", msg, got);
}

static const char *job_ok =
    "\"jobs\": [{\"name\": \"j\", \"memory_mb\": 1024, \"max_cpu_mhz\": 2000, "
    "\"utility\": [[0, -1], [2000, 1]]%s}]";

static void test_snapshot_errors(void **state)
{
    (void)state;
    char rest[1024];
    expect_error("0", "", "nodes[2].memory_mb: must be > 0");
    expect_error("\"lots\"", "", "nodes[2].memory_mb: expected a number");
    expect_error("8192", "\"apps\": {}", "apps: expected an array");
    expect_error("8192", "\"nodse\": []", "nodse: unknown field");
    snprintf(rest, sizeof(rest), job_ok, ", \"state\": \"running\", \"node\": \"zz\"");
    expect_error("8192", rest, "jobs[0].node: unknown node 'zz'");
    snprintf(rest, sizeof(rest), job_ok, ", \"state\": \"running\"");
    expect_error("8192", rest, "jobs[0].node: missing");
    snprintf(rest, sizeof(rest), job_ok, ", \"state\": \"sleeping\"");
    expect_error("8192", rest, "jobs[0].state: expected");
    snprintf(rest, sizeof(rest), job_ok, ", \"node\": \"a\"");
    expect_error("8192", rest, "jobs[0].node: only a running or paused job has a node");
    expect_error("8192",
                 "\"apps\": [{\"name\": \"w\", \"memory_mb\": 512, \"max_cpu_mhz\": 1000, "
                 "\"utility\": [[0, -1], [1000, -1], [2000, 1]]}]",
                 "apps[0].utility[2]: utility must be concave");
    expect_error("8192",
                 "\"apps\": [{\"name\": \"w\", \"memory_mb\": 512, \"max_cpu_mhz\": 1000, "
                 "\"utility\": [[0, -1], [1000, 0]], \"instances\": [{\"node\": \"a\"}, "
                 "{\"node\": \"a\"}]}]",
                 "apps[0].instances[1].node: second instance on node 'a'");
    expect_error("8192",
                 "\"apps\": [{\"name\": \"w\", \"memory_mb\": 512, \"max_cpu_mhz\": 1000, "
                 "\"min_instances\": 3, \"max_instances\": 2, \"utility\": [[0, 0]]}]",
                 "apps[0].min_instances: must be <= max_instances");
    expect_error("8192", "\"options\": {\"costs\": {\"migrate\": {}}}",
                 "options.costs.migrate: unknown action");
    expect_error("8192", "\"options\": {\"headroom\": 1.5}", "options.headroom: must be < 1");
    expect_error("8192", "\"options\": {\"solver\": \"magic\"}", "options.solver: expected");

    /* and a good one */
    struct placement_problem *p = NULL;
    snprintf(rest, sizeof(rest), job_ok, ", \"state\": \"running\", \"node\": \"b\", \"cpu_mhz\": 500");
    assert_string_equal(parse("8192", rest, &p), "");
    assert_non_null(p);
    assert_int_equal(p->nnodes, 3);
    assert_int_equal(p->nworkloads, 1);
    assert_int_equal(p->ncurrent, 1);
    assert_int_equal(p->workloads[0].cur_node, 1);
    placement_problem_free(p);
}

static int run_plan(const char *file, const char *flag, char *errbuf, size_t errsz)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/examples/snapshots/%s", getenv("WLM_SOURCE_DIR"), file);
    char *argv[] = {"plan", "--snapshot", path, (char *)flag, NULL};
    int argc = flag ? 4 : 3;
    FILE *out = fopen("/dev/null", "w");
    FILE *err = tmpfile();
    int rc = wlm_cmd_plan_io(argc, argv, out, err);
    rewind(err);
    size_t n = fread(errbuf, 1, errsz - 1, err);
    errbuf[n] = 0;
    fclose(out);
    fclose(err);
    return rc;
}

static void test_cmd_plan(void **state)
{
    (void)state;
    char err[2048];
    assert_int_equal(run_plan("contention.json", NULL, err, sizeof(err)), 0);
    assert_int_equal(run_plan("consolidation.json", "--json", err, sizeof(err)), 0);
    assert_int_equal(run_plan("infeasible.json", NULL, err, sizeof(err)), 0);
    assert_int_equal(run_plan("bad-memory.json", NULL, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "nodes[2].memory_mb: must be > 0"));
    assert_int_equal(run_plan("missing.json", NULL, err, sizeof(err)), 1);
    assert_int_equal(run_plan("contention.json", "--bogus", err, sizeof(err)), 2);
    assert_non_null(strstr(err, "unknown flag"));
    char *noarg[] = {"plan", NULL};
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(wlm_cmd_plan_io(1, noarg, devnull, devnull), 2);
    char *help[] = {"plan", "--help", NULL};
    assert_int_equal(wlm_cmd_plan_io(2, help, devnull, devnull), 0);
    fclose(devnull);
}

/* The JSON output of the consolidation example: two nodes off, four moves. */
static void test_plan_json_consolidation(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/examples/snapshots/consolidation.json",
             getenv("WLM_SOURCE_DIR"));
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    assert_non_null(root);
    struct placement_problem *p = NULL;
    struct wlm_error err = {0};
    assert_int_equal(placement_snapshot_parse(root, &p, &err), 0);
    json_decref(root);
    struct placement_decision *d = NULL;
    assert_int_equal(placement_solve(p, &d, &err), 0);
    json_t *o = placement_decision_to_json(p, d);
    assert_int_equal(json_array_size(json_object_get(o, "powered_off")), 2);
    size_t migrations = 0, i;
    json_t *a;
    json_array_foreach(json_object_get(o, "actions"), i, a)
        migrations += !strcmp(json_string_value(json_object_get(a, "action")), "migrate_job");
    assert_int_equal(migrations, 4);
    assert_true(json_is_true(json_object_get(o, "consolidated")));
    json_decref(o);
    placement_decision_free(d);
    placement_problem_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_errors),
        cmocka_unit_test(test_cmd_plan),
        cmocka_unit_test(test_plan_json_consolidation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
