/*
 * test_jobsched.c - job model, dependency DAG, matchmaking, estimator,
 * profiler and store durability (units; no network).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "jobsched.h"

static void near_(double a, double b, int line)
{
    if (!(fabs(a - b) < 1e-6 * (1 + fabs(b))))
        fail_msg("line %d: %.9g != %.9g", line, a, b);
}
#define NEAR(a, b) near_((double)(a), (double)(b), __LINE__)

struct fx {
    struct jobsched_store *st;
    struct jobsched *js;
    char path[256];
};

static const struct jobsched_label n1_labels[] = {{"zone", "x"}};

static struct jobsched_node one_node(void)
{
    return (struct jobsched_node){"n1", 8, 2000, 16384, "x86_64", n1_labels, 1};
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct wlm_error err = {0};
    snprintf(f->path, sizeof(f->path), "/tmp/test_jobsched_%d_%p.db", (int)getpid(), (void *)f);
    unlink(f->path);
    assert_int_equal(jobsched_store_open(f->path, &f->st, &err), 0);
    assert_int_equal(jobsched_new(NULL, f->st, &f->js, &err), 0);
    struct jobsched_node n = one_node();
    assert_int_equal(jobsched_set_nodes(f->js, &n, 1), 0);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    jobsched_free(f->js);
    jobsched_store_close(f->st);
    char p[300];
    unlink(f->path);
    snprintf(p, sizeof(p), "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", f->path);
    unlink(p);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    struct wlm_error err = {0};
    jobsched_free(f->js);
    jobsched_store_close(f->st);
    assert_int_equal(jobsched_store_open(f->path, &f->st, &err), 0);
    assert_int_equal(jobsched_new(NULL, f->st, &f->js, &err), 0);
    struct jobsched_node n = one_node();
    assert_int_equal(jobsched_set_nodes(f->js, &n, 1), 0);
}

/* Submit JSON text; returns the ids in order (static array) or NULL on error
 * with err filled. */
static int64_t ids[64];
static int submit(struct fx *f, const char *text, double now, struct wlm_error *err)
{
    json_error_t je;
    json_t *body = json_loads(text, 0, &je);
    assert_non_null(body);
    json_t *resp = NULL;
    int dup = 0;
    int rc = jobsched_submit(f->js, body, NULL, now, &resp, &dup, err);
    json_decref(body);
    if (rc)
        return rc;
    json_t *arr = json_object_get(resp, "jobs");
    for (size_t i = 0; i < json_array_size(arr) && i < 64; i++)
        ids[i] = json_integer_value(json_object_get(json_array_get(arr, i), "id"));
    json_decref(resp);
    return 0;
}

static enum jobsched_state st_of(struct fx *f, int64_t id)
{
    const struct jobsched_job *j = jobsched_get(f->js, id);
    assert_non_null(j);
    return j->state;
}

static void run_to(struct fx *f, int64_t id, enum jobsched_state end, double now)
{
    struct wlm_error err = {0};
    assert_int_equal(jobsched_transition(f->js, id, JOBSCHED_STARTING, now, "placed on n1", &err),
                     0);
    assert_int_equal(jobsched_transition(f->js, id, JOBSCHED_RUNNING, now, "started", &err), 0);
    assert_int_equal(jobsched_transition(f->js, id, end, now + 1, "exit", &err), 0);
}

/* ------------------------------------------------------------ state machine */

static void test_transitions(void **state)
{
    (void)state;
    assert_true(jobsched_transition_allowed(JOBSCHED_PENDING, JOBSCHED_ELIGIBLE));
    assert_true(jobsched_transition_allowed(JOBSCHED_RUNNING, JOBSCHED_SUSPENDED));
    assert_true(jobsched_transition_allowed(JOBSCHED_SUSPENDED, JOBSCHED_RUNNING));
    assert_true(jobsched_transition_allowed(JOBSCHED_PAUSED, JOBSCHED_RUNNING));
    assert_true(jobsched_transition_allowed(JOBSCHED_MIGRATING, JOBSCHED_RUNNING));
    assert_false(jobsched_transition_allowed(JOBSCHED_PENDING, JOBSCHED_RUNNING));
    assert_false(jobsched_transition_allowed(JOBSCHED_COMPLETED, JOBSCHED_RUNNING));
    assert_false(jobsched_transition_allowed(JOBSCHED_CANCELLED, JOBSCHED_PENDING));
    assert_false(jobsched_transition_allowed(JOBSCHED_SUSPENDED, JOBSCHED_COMPLETED));
    enum jobsched_state s;
    assert_int_equal(jobsched_state_parse("running", &s), 0);
    assert_int_equal(s, JOBSCHED_RUNNING);
    assert_int_not_equal(jobsched_state_parse("SLEEPING", &s), 0);
}

static void test_illegal_transition_rejected(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f, "{\"command\":\"true\",\"work_seconds\":10}", 100, &err), 0);
    int64_t id = ids[0];
    assert_int_equal(st_of(f, id), JOBSCHED_ELIGIBLE);
    assert_int_equal(jobsched_transition(f->js, id, JOBSCHED_RUNNING, 101, "x", &err),
                     -WLM_ECONFLICT);
    assert_non_null(strstr(err.msg, "ELIGIBLE -> RUNNING"));
    assert_int_equal(st_of(f, id), JOBSCHED_ELIGIBLE);
    assert_int_equal(jobsched_transition(f->js, 999, JOBSCHED_RUNNING, 101, "x", &err),
                     -WLM_ENOTFOUND);
    run_to(f, id, JOBSCHED_COMPLETED, 102);
    /* Every transition recorded with time and reason. */
    struct jobsched_event *ev;
    size_t n;
    assert_int_equal(jobsched_history(f->js, id, &ev, &n, &err), 0);
    assert_int_equal(n, 5); /* submitted, ELIGIBLE, STARTING, RUNNING, COMPLETED */
    assert_string_equal(ev[0].reason, "submitted");
    assert_int_equal(ev[1].to, JOBSCHED_ELIGIBLE);
    assert_int_equal(ev[2].to, JOBSCHED_STARTING);
    assert_string_equal(ev[2].reason, "placed on n1");
    assert_int_equal(ev[4].from, JOBSCHED_RUNNING);
    assert_int_equal(ev[4].to, JOBSCHED_COMPLETED);
    NEAR(ev[4].t, 103);
    free(ev);
    assert_int_equal(jobsched_cancel(f->js, id, 200, NULL, &err), -WLM_ECONFLICT);
}

/* ------------------------------------------------------------ spec validation */

static void expect_400(struct fx *f, const char *text, const char *field, const char *needle)
{
    struct wlm_error err = {0};
    size_t before;
    jobsched_jobs(f->js, &before);
    int rc = submit(f, text, 100, &err);
    assert_int_equal(rc, -WLM_EINVAL);
    if (strcmp(err.field, field) != 0)
        fail_msg("field '%s' expected '%s' (%s)", err.field, field, err.msg);
    if (needle && !strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    size_t after;
    jobsched_jobs(f->js, &after);
    assert_int_equal(before, after); /* nothing stored */
    assert_int_equal(wlm_error_http_status(rc), 400);
}

static void test_bad_specs(void **state)
{
    struct fx *f = *state;
    expect_400(f, "{\"command\":\"x\",\"colour\":\"red\"}", "colour", "unknown field");
    expect_400(f, "{\"command\":\"x\",\"work_seconds\":-5}", "work_seconds", NULL);
    expect_400(f, "{\"command\":\"x\",\"work_cycles\":0}", "work_cycles", NULL);
    expect_400(f, "{\"command\":\"x\",\"class\":\"diamond\"}", "class", "diamond");
    expect_400(f, "{\"name\":\"x\"}", "command", "required");
    expect_400(f, "{\"command\":\"x\",\"dependencies\":\"afterok:4242\"}", "dependencies",
               "no job 4242");
    expect_400(f, "{\"command\":\"x\",\"dependencies\":[{\"kind\":\"afterok\",\"on\":77}]}",
               "dependencies[0].on", "no job 77");
    expect_400(f, "{\"command\":\"x\",\"dependencies\":\"beforeok:1\"}", "dependencies",
               "beforeok");
    expect_400(f, "{\"command\":\"x\",\"requirements\":{\"gpus\":1}}", "requirements.gpus",
               "unknown field");
    expect_400(f, "{\"command\":\"x\",\"deadline\":\"tomorrow\"}", "deadline", "RFC 3339");
    expect_400(f, "{\"command\":\"x\",\"threads\":0}", "threads", NULL);
    /* In a batch the position is named, and one bad job stores nothing. */
    expect_400(f,
               "{\"jobs\":[{\"command\":\"a\"},{\"command\":\"b\",\"memory_mb\":-1}]}",
               "jobs[1].memory_mb", NULL);
    expect_400(f, "{\"jobs\":[{\"name\":\"a\",\"command\":\"a\",\"dependencies\":\"afterok:zz\"}]}",
               "jobs[0].dependencies", "zz");
}

/* ------------------------------------------------------------ DAG */

static void test_diamond(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(
        submit(f,
               "{\"batch\":\"d\",\"jobs\":["
               "{\"name\":\"d\",\"command\":\"d\",\"dependencies\":\"afterok:b:c\"},"
               "{\"name\":\"a\",\"command\":\"a\"},"
               "{\"name\":\"b\",\"command\":\"b\",\"dependencies\":[{\"kind\":\"afterok\",\"on\":"
               "\"a\"}]},"
               "{\"name\":\"c\",\"command\":\"c\",\"dependencies\":\"afterok:a\"}]}",
               100, &err),
        0);
    int64_t d = ids[0], a = ids[1], b = ids[2], c = ids[3];
    assert_int_equal(st_of(f, a), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, b), JOBSCHED_PENDING);
    assert_int_equal(st_of(f, d), JOBSCHED_PENDING);
    assert_non_null(strstr(jobsched_get(f->js, b)->reason, "waiting for dependency afterok:"));
    run_to(f, a, JOBSCHED_COMPLETED, 110);
    assert_int_equal(st_of(f, b), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, c), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, d), JOBSCHED_PENDING);
    run_to(f, b, JOBSCHED_COMPLETED, 120);
    assert_int_equal(st_of(f, d), JOBSCHED_PENDING); /* still waits for c */
    run_to(f, c, JOBSCHED_COMPLETED, 130);
    assert_int_equal(st_of(f, d), JOBSCHED_ELIGIBLE);
    assert_string_equal(jobsched_get(f->js, d)->batch, "d");
}

static void test_chain_failure_propagates(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f,
                            "{\"jobs\":[{\"name\":\"a\",\"command\":\"a\"},"
                            "{\"name\":\"b\",\"command\":\"b\",\"dependencies\":\"afterok:a\"},"
                            "{\"name\":\"c\",\"command\":\"c\",\"dependencies\":\"afterok:b\"},"
                            "{\"name\":\"d\",\"command\":\"d\",\"dependencies\":\"afterok:c\"}]}",
                            100, &err),
                     0);
    int64_t a = ids[0], b = ids[1], c = ids[2], d = ids[3];
    run_to(f, a, JOBSCHED_FAILED, 110);
    assert_int_equal(st_of(f, b), JOBSCHED_FAILED);
    assert_int_equal(st_of(f, c), JOBSCHED_FAILED);
    assert_int_equal(st_of(f, d), JOBSCHED_FAILED);
    char want[128];
    snprintf(want, sizeof(want), "dependency afterok:%lld can never be satisfied (job %lld FAILED)",
             (long long)c, (long long)c);
    assert_string_equal(jobsched_get(f->js, d)->reason, want);
}

static void test_afterany_afterok_afternotok(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f, "{\"name\":\"a\",\"command\":\"a\"}", 100, &err), 0);
    int64_t a = ids[0];
    char body[512];
    snprintf(body, sizeof(body),
             "{\"jobs\":[{\"command\":\"x\",\"dependencies\":\"afterany:%lld\"},"
             "{\"command\":\"y\",\"dependencies\":\"afterok:%lld\"},"
             "{\"command\":\"z\",\"dependencies\":\"afternotok:%lld\"}]}",
             (long long)a, (long long)a, (long long)a);
    assert_int_equal(submit(f, body, 100, &err), 0);
    int64_t x = ids[0], y = ids[1], z = ids[2];
    assert_int_equal(st_of(f, x), JOBSCHED_PENDING);
    run_to(f, a, JOBSCHED_FAILED, 110);
    assert_int_equal(st_of(f, x), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, y), JOBSCHED_FAILED);
    assert_int_equal(st_of(f, z), JOBSCHED_ELIGIBLE);

    /* Same with success: afterok runs, afternotok fails. */
    assert_int_equal(submit(f, "{\"name\":\"a2\",\"command\":\"a\"}", 200, &err), 0);
    int64_t a2 = ids[0];
    snprintf(body, sizeof(body),
             "{\"jobs\":[{\"command\":\"x\",\"dependencies\":\"afterany:%lld\"},"
             "{\"command\":\"y\",\"dependencies\":\"afterok:%lld\"},"
             "{\"command\":\"z\",\"dependencies\":\"afternotok:%lld\"}]}",
             (long long)a2, (long long)a2, (long long)a2);
    assert_int_equal(submit(f, body, 200, &err), 0);
    x = ids[0], y = ids[1], z = ids[2];
    run_to(f, a2, JOBSCHED_COMPLETED, 210);
    assert_int_equal(st_of(f, x), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, y), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, z), JOBSCHED_FAILED);
}

static void test_dependency_on_finished_job(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f, "{\"command\":\"a\"}", 100, &err), 0);
    int64_t a = ids[0];
    run_to(f, a, JOBSCHED_FAILED, 110);
    char body[256];
    snprintf(body, sizeof(body), "{\"command\":\"b\",\"dependencies\":\"afterok:%lld\"}",
             (long long)a);
    /* Accepted (the id exists) but failed at once with the reason. */
    assert_int_equal(submit(f, body, 120, &err), 0);
    assert_int_equal(st_of(f, ids[0]), JOBSCHED_FAILED);
    assert_non_null(strstr(jobsched_get(f->js, ids[0])->reason, "can never be satisfied"));
}

static void test_cycle_rejected_with_path(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    int rc = submit(f,
                    "{\"jobs\":[{\"name\":\"a\",\"command\":\"a\",\"dependencies\":\"afterok:c\"},"
                    "{\"name\":\"b\",\"command\":\"b\",\"dependencies\":\"afterok:a\"},"
                    "{\"name\":\"c\",\"command\":\"c\",\"dependencies\":\"afterany:b\"},"
                    "{\"name\":\"e\",\"command\":\"e\"}]}",
                    100, &err);
    assert_int_equal(rc, -WLM_EINVAL);
    assert_non_null(strstr(err.msg, "dependency cycle: a -> c -> b -> a"));
    size_t n;
    jobsched_jobs(f->js, &n);
    assert_int_equal(n, 0);
    /* Self-dependency. */
    rc = submit(f, "{\"jobs\":[{\"name\":\"s\",\"command\":\"s\",\"dependencies\":\"afterok:s\"}]}",
                100, &err);
    assert_int_equal(rc, -WLM_EINVAL);
    assert_non_null(strstr(err.msg, "s -> s"));
}

static void test_cancel_with_dependents(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f,
                            "{\"jobs\":[{\"name\":\"a\",\"command\":\"a\"},"
                            "{\"name\":\"b\",\"command\":\"b\",\"dependencies\":\"afterok:a\"},"
                            "{\"name\":\"c\",\"command\":\"c\",\"dependencies\":\"afternotok:a\"},"
                            "{\"name\":\"d\",\"command\":\"d\",\"dependencies\":\"afterany:b\"}]}",
                            100, &err),
                     0);
    int64_t a = ids[0], b = ids[1], c = ids[2], d = ids[3];
    assert_int_equal(jobsched_transition(f->js, a, JOBSCHED_STARTING, 101, "placed", &err), 0);
    assert_int_equal(jobsched_set_placement(f->js, a, "n1", 1000, 101, &err), 0);
    assert_int_equal(jobsched_cancel(f->js, a, 105, NULL, &err), 0);
    assert_int_equal(st_of(f, a), JOBSCHED_CANCELLED);
    assert_string_equal(jobsched_get(f->js, a)->reason, "cancelled by user");
    /* The node stays recorded so the controller can tear the VM down. */
    assert_string_equal(jobsched_get(f->js, a)->node, "n1");
    assert_int_equal(st_of(f, b), JOBSCHED_FAILED);
    assert_int_equal(st_of(f, c), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, d), JOBSCHED_ELIGIBLE); /* afterany: b ended (failed) */
}

/* A long chain in one batch: accepted, and one failure at the head fails
 * all of it (no recursion limits); closing it into a ring is a cycle. */
static json_t *chain(int n, int ring)
{
    json_t *jobs = json_array();
    for (int i = 0; i < n; i++) {
        char name[32], dep[48];
        snprintf(name, sizeof(name), "j%d", i);
        json_t *o = json_pack("{s:s,s:s}", "name", name, "command", "c");
        if (i > 0 || ring) {
            snprintf(dep, sizeof(dep), "afterok:j%d", i > 0 ? i - 1 : n - 1);
            json_object_set_new(o, "dependencies", json_string(dep));
        }
        json_array_append_new(jobs, o);
    }
    return json_pack("{s:o}", "jobs", jobs);
}

static void test_long_chain(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    json_t *resp = NULL, *body = chain(3000, 1);
    assert_int_equal(jobsched_submit(f->js, body, NULL, 100, &resp, NULL, &err), -WLM_EINVAL);
    assert_non_null(strstr(err.msg, "dependency cycle: j0 -> j2999 -> j2998 -> "));
    json_decref(body);
    body = chain(3000, 0);
    assert_int_equal(jobsched_submit(f->js, body, NULL, 100, &resp, NULL, &err), 0);
    json_decref(body);
    int64_t first = json_integer_value(json_object_get(json_array_get(json_object_get(resp, "jobs"), 0), "id"));
    int64_t last = json_integer_value(json_object_get(json_array_get(json_object_get(resp, "jobs"), 2999), "id"));
    json_decref(resp);
    assert_int_equal(st_of(f, last), JOBSCHED_PENDING);
    run_to(f, first, JOBSCHED_FAILED, 110);
    assert_int_equal(st_of(f, last), JOBSCHED_FAILED);
}

/* ------------------------------------------------------------ matchmaking */

static void test_matchmaking_reasons(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    struct jobsched_label la[] = {{"zone", "a"}, {"disk", "ssd"}};
    struct jobsched_label lb[] = {{"zone", "b"}};
    struct jobsched_node nodes[] = {
        {"small", 4, 2000, 8192, "x86_64", la, 2},
        {"big", 32, 2400, 131072, "aarch64", lb, 1},
    };
    assert_int_equal(jobsched_set_nodes(f->js, nodes, 2), 0);
    assert_int_equal(
        submit(f,
               "{\"jobs\":["
               "{\"command\":\"a\",\"requirements\":{\"min_cores\":64}},"
               "{\"command\":\"b\",\"requirements\":{\"labels\":{\"disk\":\"nvme\"}}},"
               "{\"command\":\"c\",\"memory_mb\":200000},"
               "{\"command\":\"d\",\"requirements\":{\"arch\":\"riscv64\"}},"
               "{\"command\":\"e\",\"requirements\":{\"arch\":\"aarch64\",\"min_cores\":8}},"
               "{\"command\":\"f\",\"requirements\":{\"labels\":[\"zone=a\"],\"min_memory_mb\":"
               "4096}}]}",
               100, &err),
        0);
    assert_int_equal(st_of(f, ids[0]), JOBSCHED_PENDING);
    assert_string_equal(jobsched_get(f->js, ids[0])->reason, "no node matches: min_cores 64 (largest node has 32)");
    assert_string_equal(jobsched_get(f->js, ids[1])->reason, "no node matches: label disk=nvme");
    assert_string_equal(jobsched_get(f->js, ids[2])->reason,
                        "no node matches: memory_mb 200000 (largest node has 131072)");
    assert_string_equal(jobsched_get(f->js, ids[3])->reason, "no node matches: arch riscv64 (nodes are x86_64 aarch64)");
    const struct jobsched_job *e = jobsched_get(f->js, ids[4]);
    assert_int_equal(e->state, JOBSCHED_ELIGIBLE);
    assert_int_equal(e->neligible, 1);
    assert_string_equal(e->eligible_nodes[0], "big");
    const struct jobsched_job *fj = jobsched_get(f->js, ids[5]);
    assert_int_equal(fj->state, JOBSCHED_ELIGIBLE);
    assert_string_equal(fj->eligible_nodes[0], "small");

    /* A node that satisfies the cores requirement arrives: the job becomes
     * eligible at the next update; when it leaves, the job goes back. */
    struct jobsched_node more[] = {nodes[0], nodes[1], {"huge", 128, 2000, 524288, "x86_64", NULL, 0}};
    assert_int_equal(jobsched_set_nodes(f->js, more, 3), 0);
    int changes = jobsched_update(f->js, 200, &err);
    assert_true(changes >= 2); /* a (cores) and c (memory) */
    assert_int_equal(st_of(f, ids[0]), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, ids[2]), JOBSCHED_ELIGIBLE);
    assert_int_equal(jobsched_set_nodes(f->js, nodes, 2), 0);
    assert_true(jobsched_update(f->js, 300, &err) >= 2);
    assert_int_equal(st_of(f, ids[0]), JOBSCHED_PENDING);
    assert_int_equal(jobsched_set_nodes(f->js, NULL, 0), 0);
    jobsched_update(f->js, 400, &err);
    assert_string_equal(jobsched_get(f->js, ids[4])->reason, "no node matches: no nodes registered");
}

/* ------------------------------------------------------------ estimator */

static struct jobsched_job est_job(double submit, double goal, double work, int threads,
                                   double speed)
{
    struct jobsched_job j;
    memset(&j, 0, sizeof(j));
    j.submit_time = submit;
    j.goal_time = goal;
    j.work_mcycles = work;
    j.threads = threads;
    j.max_speed_mhz = speed;
    j.state = JOBSCHED_ELIGIBLE;
    return j;
}

static void test_estimator_values(void **state)
{
    (void)state;
    struct jobsched_config cfg;
    jobsched_config_default(&cfg);
    /* 3600 s at 1000 MHz, gold: goal = 3 x 3600 = 10800 s after submission. */
    struct jobsched_job j = est_job(0, 10800, 3.6e6, 1, 1000);
    NEAR(jobsched_utility(&j, 1000, 0, &cfg), 2.0 / 3.0); /* done at 3600 */
    NEAR(jobsched_utility(&j, 500, 0, &cfg), 1.0 / 3.0);  /* done at 7200 */
    NEAR(jobsched_utility(&j, 1000.0 / 3.0, 0, &cfg), 0); /* exactly at the goal */
    NEAR(jobsched_utility(&j, 250, 0, &cfg), -1.0 / 3.0); /* 14400: late by a third */
    NEAR(jobsched_utility(&j, 4000, 0, &cfg), 2.0 / 3.0); /* capped at 1 thread x 1000 */
    NEAR(jobsched_utility(&j, 0, 0, &cfg), -1);
    NEAR(jobsched_utility(&j, 1000, 9000, &cfg), -1800.0 / 10800.0);
    NEAR(jobsched_utility(&j, 100, 0, &cfg), -1); /* 36000: clamped */
    NEAR(jobsched_predict_completion(&j, 500, 100), 7300);
    j.done_mcycles = 1.8e6; /* half done */
    NEAR(jobsched_utility(&j, 1000, 1800, &cfg), 2.0 / 3.0);
    cfg.utility_min = -0.25;
    NEAR(jobsched_utility(&j, 100, 1800, &cfg), -0.25);
}

static void test_utility_curve(void **state)
{
    (void)state;
    struct jobsched_config cfg;
    jobsched_config_default(&cfg);
    struct jobsched_job j = est_job(0, 10800, 3.6e6, 2, 1000); /* wmax 2000 */
    struct jobsched_point p[16];
    size_t n = jobsched_utility_curve(&j, 0, &cfg, p, 16);
    assert_true(n >= 3);
    NEAR(p[0].x, 0);
    NEAR(p[0].y, -1);
    NEAR(p[n - 1].x, 2000);
    NEAR(p[n - 1].y, (10800 - 1800) / 10800.0);
    for (size_t i = 1; i < n; i++) {
        assert_true(p[i].x > p[i - 1].x);
        assert_true(p[i].y >= p[i - 1].y); /* non-decreasing */
        if (p[i].x > 0)                    /* samples lie on the true function */
            NEAR(p[i].y, jobsched_utility(&j, p[i].x, 0, &cfg));
        if (i >= 2) { /* concave: slopes decrease */
            double s1 = (p[i - 1].y - p[i - 2].y) / (p[i - 1].x - p[i - 2].x);
            double s2 = (p[i].y - p[i - 1].y) / (p[i].x - p[i - 1].x);
            assert_true(s2 <= s1 + 1e-12);
        }
    }
    /* Hopelessly late: flat at the floor. */
    n = jobsched_utility_curve(&j, 50000, &cfg, p, 16);
    assert_int_equal(n, 2);
    NEAR(p[1].y, -1);
    /* Ceiling reached before full speed: flat at utility_max to wmax. */
    cfg.utility_max = 0.5;
    n = jobsched_utility_curve(&j, 0, &cfg, p, 16);
    NEAR(p[n - 1].x, 2000);
    NEAR(p[n - 1].y, 0.5);
}

static void test_hypothetical_utility(void **state)
{
    (void)state;
    struct jobsched_config cfg;
    jobsched_config_default(&cfg);
    struct jobsched_job a = est_job(0, 10800, 3.6e6, 1, 1000);
    struct jobsched_job b = est_job(0, 5400, 1.8e6, 1, 1000);
    struct jobsched_job done = est_job(0, 100, 1e6, 1, 1000);
    done.state = JOBSCHED_COMPLETED;
    const struct jobsched_job *jobs[] = {&a, &b, &done};
    double levels[] = {0, 0.5, 0.8};
    struct jobsched_point out[3];
    size_t bad[3];
    jobsched_hypothetical_utility(jobs, 3, 0, &cfg, levels, 3, out, bad);
    /* u=0: deadlines b 5400, a 10800 -> max(1.8e6/5400, 5.4e6/10800) = 500 */
    NEAR(out[0].x, 0);
    NEAR(out[0].y, 500);
    assert_int_equal(bad[0], 0);
    /* u=0.5: b by 2700, a by 5400 -> max(666.7, 1000) */
    NEAR(out[1].y, 1000);
    assert_int_equal(bad[1], 0);
    /* u=0.8: neither can make it (a needs 2160 < 3600 s); both counted at
     * full speed: b by 1800, a by 3600 -> max(1000, 1500) */
    NEAR(out[2].y, 1500);
    assert_int_equal(bad[2], 2);
}

/* ------------------------------------------------------------ goals, profiles, store */

static void test_goal_from_class_and_deadline(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f,
                            "{\"jobs\":[{\"command\":\"p\",\"class\":\"platinum\",\"work_seconds\":"
                            "100,\"ref_mhz\":2000,\"max_speed_mhz\":2000},"
                            "{\"command\":\"g\",\"class\":\"Gold\",\"work_mcycles\":200000,"
                            "\"max_speed_mhz\":1000,\"threads\":2},"
                            "{\"command\":\"s\",\"deadline\":5000},"
                            "{\"command\":\"b\",\"class\":\"bronze\",\"deadline_in\":60},"
                            "{\"command\":\"r\",\"deadline\":\"1970-01-01T01:00:00Z\"}]}",
                            1000, &err),
                     0);
    NEAR(jobsched_get(f->js, ids[0])->goal_time, 1000 + 1.5 * 100);
    NEAR(jobsched_get(f->js, ids[1])->goal_time, 1000 + 3 * 100);
    NEAR(jobsched_get(f->js, ids[2])->goal_time, 5000);
    NEAR(jobsched_get(f->js, ids[3])->goal_time, 1060);
    NEAR(jobsched_get(f->js, ids[4])->goal_time, 3600);
    /* Defaults: 3600 s at the reference speed, silver. */
    assert_int_equal(submit(f, "{\"command\":\"nothing-known\"}", 1000, &err), 0);
    const struct jobsched_job *j = jobsched_get(f->js, ids[0]);
    assert_int_equal(j->profile_source, JOBSCHED_PROF_DEFAULT);
    NEAR(j->goal_time, 1000 + 10 * 3600);
    assert_int_equal(j->memory_mb, 512);
}

static void test_profiler_learns_and_persists(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f, "{\"name\":\"render\",\"command\":\"render.sh\",\"work_seconds\":10}",
                            100, &err),
                     0);
    int64_t a = ids[0];
    assert_int_equal(jobsched_transition(f->js, a, JOBSCHED_STARTING, 101, "p", &err), 0);
    assert_int_equal(jobsched_transition(f->js, a, JOBSCHED_RUNNING, 102, "r", &err), 0);
    assert_int_equal(jobsched_report_usage(f->js, a, 20000, 2, 900, 150, &err), 0);
    /* Ran past its estimate (10000): the estimate grows with a margin. */
    NEAR(jobsched_get(f->js, a)->work_mcycles, 22000);
    assert_int_equal(jobsched_report_usage(f->js, a, 30000, 1, 800, 160, &err), 0);
    assert_null(jobsched_profile_get(f->js, "render"));
    assert_int_equal(jobsched_transition(f->js, a, JOBSCHED_COMPLETED, 170, "exit 0", &err), 0);
    const struct jobsched_profile *p = jobsched_profile_get(f->js, "render");
    assert_non_null(p);
    assert_int_equal(p->samples, 1);
    NEAR(p->mcycles, 30000);
    NEAR(p->threads, 2);
    NEAR(p->max_speed_mhz, 900);

    reopen(f);
    p = jobsched_profile_get(f->js, "render");
    assert_non_null(p);
    NEAR(p->mcycles, 30000);
    /* A later submission of the same kind gets the learned profile. */
    assert_int_equal(submit(f, "{\"name\":\"render\",\"command\":\"render.sh\"}", 200, &err), 0);
    const struct jobsched_job *j = jobsched_get(f->js, ids[0]);
    assert_int_equal(j->profile_source, JOBSCHED_PROF_LEARNED);
    NEAR(j->work_mcycles, 30000);
    assert_int_equal(j->threads, 2);
    NEAR(j->max_speed_mhz, 900);
    /* Second run: exponential average (alpha 0.3). */
    int64_t b = ids[0];
    assert_int_equal(jobsched_transition(f->js, b, JOBSCHED_STARTING, 201, "p", &err), 0);
    assert_int_equal(jobsched_transition(f->js, b, JOBSCHED_COMPLETED, 210, "quick", &err), 0);
    NEAR(jobsched_profile_get(f->js, "render")->mcycles, 30000); /* no report: nothing learned */
    assert_int_equal(jobsched_report_usage(f->js, b, 10000, 2, 950, 211, &err), 0);
    p = jobsched_profile_get(f->js, "render");
    assert_int_equal(p->samples, 2);
    NEAR(p->mcycles, 0.3 * 10000 + 0.7 * 30000);
    NEAR(p->max_speed_mhz, 950);
    /* Learned once per run. */
    assert_int_equal(jobsched_report_usage(f->js, b, 12000, 2, 950, 212, &err), 0);
    assert_int_equal(jobsched_profile_get(f->js, "render")->samples, 2);
}

/* A class-derived goal counts from when the jobs it waits for are due:
 * "report" after "index" after "ingest" is not born late. The batch names a
 * later job first; an explicit deadline stays; a finished dependency counts
 * as due now; the goals are what is stored. */
static void test_goal_after_dependencies(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(
        submit(f,
               "{\"jobs\":["
               "{\"name\":\"report\",\"command\":\"r\",\"class\":\"platinum\",\"work_seconds\":"
               "60,\"dependencies\":\"afterok:index\"},"
               "{\"name\":\"ingest\",\"command\":\"i\",\"class\":\"gold\",\"work_seconds\":60},"
               "{\"name\":\"index\",\"command\":\"x\",\"class\":\"gold\",\"work_seconds\":120,"
               "\"dependencies\":\"afterok:ingest\"},"
               "{\"name\":\"fixed\",\"command\":\"f\",\"deadline\":1100,"
               "\"dependencies\":\"afterany:index\"},"
               "{\"name\":\"both\",\"command\":\"b\",\"class\":\"silver\",\"work_seconds\":10,"
               "\"dependencies\":[{\"kind\":\"afterok\",\"on\":\"ingest\"},"
               "{\"kind\":\"afterany\",\"on\":\"report\"}]}]}",
               1000, &err),
        0);
    int64_t report = ids[0], ingest = ids[1], index = ids[2], fixed = ids[3], both = ids[4];
    double g_ingest = 1000 + 3 * 60, g_index = g_ingest + 3 * 120, g_report = g_index + 1.5 * 60;
    NEAR(jobsched_get(f->js, ingest)->goal_time, g_ingest);
    NEAR(jobsched_get(f->js, index)->goal_time, g_index);
    NEAR(jobsched_get(f->js, report)->goal_time, g_report);
    NEAR(jobsched_get(f->js, fixed)->goal_time, 1100);
    NEAR(jobsched_get(f->js, both)->goal_time, g_report + 10 * 10);
    /* On time all along the chain, each job's utility at its goal is 0, and
     * the last one's is not at the floor while the first has not run. */
    const struct jobsched_job *r = jobsched_get(f->js, report);
    assert_true(r->goal_time - r->submit_time > 600);
    /* A later job after a running one counts from that one's goal; after
     * a finished one, from its submission. */
    run_to(f, ingest, JOBSCHED_COMPLETED, 1100);
    char text[512];
    snprintf(text, sizeof(text),
             "{\"jobs\":[{\"command\":\"a\",\"class\":\"gold\",\"work_seconds\":10,"
             "\"dependencies\":\"afterok:%lld\"},{\"command\":\"b\",\"class\":\"gold\","
             "\"work_seconds\":10,\"dependencies\":\"afterok:%lld\"}]}",
             (long long)index, (long long)ingest);
    assert_int_equal(submit(f, text, 1200, &err), 0);
    NEAR(jobsched_get(f->js, ids[0])->goal_time, g_index + 3 * 10);
    NEAR(jobsched_get(f->js, ids[1])->goal_time, 1200 + 3 * 10);
    reopen(f);
    NEAR(jobsched_get(f->js, report)->goal_time, g_report);
    NEAR(jobsched_get(f->js, both)->goal_time, g_report + 10 * 10);
}

static void test_store_reopen(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f,
                            "{\"batch\":\"nightly\",\"jobs\":[{\"name\":\"a\",\"command\":\"a\","
                            "\"files\":[\"/data/in\"],\"requirements\":{\"labels\":{\"zone\":\"x\"},"
                            "\"arch\":\"x86_64\",\"min_cores\":2}},"
                            "{\"name\":\"b\",\"command\":\"b\",\"dependencies\":\"afternotok:a\"}]}",
                            100, &err),
                     0);
    int64_t a = ids[0], b = ids[1];
    assert_int_equal(jobsched_set_placement(f->js, b, "n1", 1234, 101, &err), 0);
    reopen(f);
    size_t n;
    jobsched_jobs(f->js, &n);
    assert_int_equal(n, 2);
    const struct jobsched_job *ja = jobsched_get(f->js, a), *jb = jobsched_get(f->js, b);
    assert_string_equal(ja->name, "a");
    assert_string_equal(ja->batch, "nightly");
    assert_string_equal(ja->files[0], "/data/in");
    assert_string_equal(ja->req.labels[0].key, "zone");
    assert_string_equal(ja->req.arch, "x86_64");
    assert_int_equal(ja->req.min_cores, 2);
    assert_int_equal(jb->ndeps, 1);
    assert_int_equal(jb->deps[0].kind, JOBSCHED_AFTERNOTOK);
    assert_int_equal(jb->deps[0].job_id, a);
    assert_int_equal(ja->ndependents, 1);
    assert_string_equal(jb->node, "n1");
    NEAR(jb->alloc_mhz, 1234);
    assert_int_equal(jb->state, JOBSCHED_PENDING);
    /* Dependencies still work after the restart. */
    run_to(f, a, JOBSCHED_FAILED, 110);
    assert_int_equal(st_of(f, b), JOBSCHED_ELIGIBLE);
    reopen(f);
    assert_int_equal(st_of(f, b), JOBSCHED_ELIGIBLE);
    assert_int_equal(st_of(f, a), JOBSCHED_FAILED);
    struct jobsched_event *ev;
    assert_int_equal(jobsched_history(f->js, a, &ev, &n, &err), 0);
    assert_int_equal(n, 5);
    free(ev);
    /* Ids keep increasing after restart (no reuse). */
    assert_int_equal(submit(f, "{\"command\":\"c\"}", 120, &err), 0);
    assert_true(ids[0] > b);
}

static void test_idempotent_submission(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    json_t *body = json_pack("{s:[{s:s},{s:s}]}", "jobs", "command", "a", "command", "b");
    json_t *r1 = NULL, *r2 = NULL, *r3 = NULL;
    int dup = -1;
    assert_int_equal(jobsched_submit(f->js, body, "key-1", 100, &r1, &dup, &err), 0);
    assert_int_equal(dup, 0);
    reopen(f);
    assert_int_equal(jobsched_submit(f->js, body, "key-1", 101, &r2, &dup, &err), 0);
    assert_int_equal(dup, 1);
    assert_true(json_equal(json_object_get(json_array_get(json_object_get(r1, "jobs"), 1), "id"),
                           json_object_get(json_array_get(json_object_get(r2, "jobs"), 1), "id")));
    size_t n;
    jobsched_jobs(f->js, &n);
    assert_int_equal(n, 2);
    /* Partial overlap is a conflict, not a silent half-insert. */
    json_t *body3 = json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "jobs", "command", "a", "submit_id",
                              "key-1#0", "command", "c", "submit_id", "fresh");
    assert_int_equal(jobsched_submit(f->js, body3, NULL, 102, &r3, &dup, &err), -WLM_ECONFLICT);
    jobsched_jobs(f->js, &n);
    assert_int_equal(n, 2);
    json_decref(body);
    json_decref(body3);
    json_decref(r1);
    json_decref(r2);
}

static void test_job_json_view(void **state)
{
    struct fx *f = *state;
    struct wlm_error err = {0};
    assert_int_equal(submit(f, "{\"name\":\"v\",\"command\":\"v\",\"work_seconds\":100,\"class\":"
                               "\"gold\"}",
                            1000, &err),
                     0);
    const struct jobsched_job *j = jobsched_get(f->js, ids[0]);
    json_t *o = jobsched_job_json(f->js, j, 1000, 1);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "ELIGIBLE");
    assert_string_equal(json_string_value(json_object_get(o, "class")), "gold");
    NEAR(json_number_value(json_object_get(o, "goal_time")), 1300);
    NEAR(json_number_value(json_object_get(o, "predicted_completion")), 1100);
    NEAR(json_number_value(json_object_get(o, "predicted_utility")), 200.0 / 300.0);
    assert_int_equal(json_array_size(json_object_get(o, "history")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "eligible_nodes"), 0)),
                        "n1");
    json_decref(o);

    struct wlm_metrics *m = wlm_metrics_new();
    jobsched_export_metrics(f->js, m);
    char *text = wlm_metrics_render(m);
    assert_non_null(strstr(text, "wlm_jobs{state=\"ELIGIBLE\"} 1"));
    assert_non_null(strstr(text, "wlm_jobs{state=\"RUNNING\"} 0"));
    free(text);
    wlm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transitions),
        cmocka_unit_test_setup_teardown(test_illegal_transition_rejected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_diamond, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chain_failure_propagates, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_afterany_afterok_afternotok, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dependency_on_finished_job, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cycle_rejected_with_path, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_with_dependents, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_long_chain, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_matchmaking_reasons, fx_setup, fx_teardown),
        cmocka_unit_test(test_estimator_values),
        cmocka_unit_test(test_utility_curve),
        cmocka_unit_test(test_hypothetical_utility),
        cmocka_unit_test_setup_teardown(test_goal_from_class_and_deadline, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_goal_after_dependencies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_profiler_learns_and_persists, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_store_reopen, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_submission, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_job_json_view, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("jobsched", tests, NULL, NULL);
}
