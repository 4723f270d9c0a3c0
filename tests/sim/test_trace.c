/* Unit tests for wlm-sim's job traces (SWF): fields mapped to jobs, the
 * queue -> class map and its flag, dependencies, bad lines rejected with
 * their line number, jobs wider than a node skipped and counted, and
 * experiment 1 on a trace writing one summary row per policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-6)

static int read_str(const char *text, const struct sim_trace_opts *o, struct sim_trace *t,
                    struct wlm_error *err)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    int rc = sim_trace_read(f, "mem.swf", o, t, err);
    fclose(f);
    return rc;
}

/* 18 fields: no submit wait run alloc cpu usedmem reqprocs reqtime reqmem
 * status user group exe queue partition pred think */
static const char *const small_swf = "; Version: 2.2\n"
                                     "; a hand-written trace\n"
                                     "\n"
                                     "1 100 5 600 2 550 -1 2 900 262144 1 1 1 1 1 1 -1 -1\n"
                                     "2 160 0 300 3 -1 -1 -1 600 -1 1 2 1 1 2 1 -1 -1\n"
                                     "   3 220 0 1200 1 -1 -1 1 -1 1048576 1 1 1 1 3 1 1 45\n"
                                     "4 300 0 60 1 -1 -1 1 -1 -1 1 3 1 1 4 1 -1 -1\n"
                                     "5 400\t0 60 1 -1 -1 1 -1 -1 1 3 1 1 7 1 3 -1\n"
                                     "6 500 0 0 1 -1 -1 1 -1 -1 5 3 1 1 1 1 -1 -1\n";

static void test_parse_fields(void **state)
{
    (void)state;
    struct sim_trace_opts o;
    sim_trace_opts_default(&o);
    o.cores = 4;
    o.node_mem_mb = 8192;
    o.default_mem_mb = 700;
    struct sim_trace t;
    struct wlm_error err = {0};
    assert_int_equal(read_str(small_swf, &o, &t, &err), 0);
    assert_int_equal(t.lines, 6);
    assert_int_equal(t.n, 5); /* job 6 ran 0 s (cancelled) */
    assert_int_equal(t.skipped_noruntime, 1);
    assert_int_equal(t.skipped_wide, 0);
    /* submit relative to the first job, run time, processors */
    NEAR(t.jobs[0].arrival, 0);
    NEAR(t.jobs[1].arrival, 60);
    NEAR(t.jobs[4].arrival, 300);
    NEAR(t.jobs[0].runtime_s, 600);
    NEAR(t.jobs[2].runtime_s, 1200);
    assert_int_equal(t.jobs[0].threads, 2);
    assert_int_equal(t.jobs[1].threads, 3); /* requested unknown: allocated */
    assert_true(t.number[2] == 3);
    /* memory: KB per processor x processors -> MB; unknown -> default */
    NEAR(t.jobs[0].mem_mb, 2 * 262144 / 1024.0);
    NEAR(t.jobs[1].mem_mb, 700);
    NEAR(t.jobs[2].mem_mb, 1024);
    /* queues 1..4 -> platinum..bronze, anything else silver; goal factors */
    assert_int_equal(t.jobs[0].svc_class, SIM_PLATINUM);
    assert_int_equal(t.jobs[1].svc_class, SIM_GOLD);
    assert_int_equal(t.jobs[2].svc_class, SIM_SILVER);
    assert_int_equal(t.jobs[3].svc_class, SIM_BRONZE);
    assert_int_equal(t.jobs[4].svc_class, SIM_SILVER);
    NEAR(t.jobs[0].goal_factor, 1.5);
    NEAR(t.jobs[1].goal_factor, 3);
    NEAR(t.jobs[2].goal_factor, 10);
    NEAR(t.jobs[3].goal_factor, 20);
    assert_int_equal(t.per_class[SIM_SILVER], 2);
    /* job 3 waits for job 1 (index 0) plus 45 s; job 5 for job 3 with no
     * think time given */
    assert_int_equal(t.deps, 2);
    assert_int_equal(t.after[0], -1);
    assert_int_equal(t.after[2], 0);
    NEAR(t.think_s[2], 45);
    assert_int_equal(t.after[4], 2);
    NEAR(t.think_s[4], 0);
    sim_trace_fini(&t);
    assert_null(t.jobs);
    sim_trace_fini(&t);
}

static void test_class_flag(void **state)
{
    (void)state;
    struct sim_trace_opts o;
    sim_trace_opts_default(&o);
    o.cores = 4;
    struct wlm_error err = {0};
    assert_int_equal(sim_trace_classes_parse("7=platinum,1=bronze,*=gold", &o.classes, &err), 0);
    struct sim_trace t;
    assert_int_equal(read_str(small_swf, &o, &t, &err), 0);
    assert_int_equal(t.jobs[0].svc_class, SIM_BRONZE); /* queue 1, remapped */
    NEAR(t.jobs[0].goal_factor, 20);
    assert_int_equal(t.jobs[1].svc_class, SIM_GOLD);     /* queue 2, default kept */
    assert_int_equal(t.jobs[4].svc_class, SIM_PLATINUM); /* queue 7 */
    NEAR(t.jobs[4].goal_factor, 1.5);
    sim_trace_fini(&t);
    /* an unlisted queue takes '*' */
    assert_int_equal(sim_trace_classes_parse("3=Gold,*=bronze", &o.classes, &err), 0);
    assert_int_equal(read_str("1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 9 1 -1 -1\n"
                              "2 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 3 1 -1 -1\n",
                              &o, &t, &err),
                     0);
    assert_int_equal(t.jobs[0].svc_class, SIM_BRONZE);
    assert_int_equal(t.jobs[1].svc_class, SIM_GOLD);
    sim_trace_fini(&t);
    /* bad entries are rejected by name and change nothing */
    struct sim_trace_classes before = o.classes;
    const char *bad[] = {"1=diamond", "x=gold", "1gold", "", "1=gold,,2=silver", "-2=gold"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(sim_trace_classes_parse(bad[i], &o.classes, &err), -WLM_EINVAL);
        assert_string_equal(err.field, "trace_classes");
        assert_memory_equal(&before, &o.classes, sizeof(before));
    }
    assert_non_null(strstr(err.msg, "-2"));
}

/* One line of each kind of mistake; the error names the file, the line and
 * the field, and nothing is returned. */
static void test_bad_lines(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"; h\n1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n2 10 0 6x0 1 -1 -1 1 -1 -1 1 1 1 1 1 1 "
         "-1 "
         "-1\n",
         "mem.swf:3: field 4 (run time): '6x0' is not a number"},
        {"1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1\n", "mem.swf:1: 17 fields"},
        {"1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1 0\n", "mem.swf:1: more than 18 fields"},
        {"1 -1 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n", "mem.swf:1: field 2 (submit time)"},
        {"1 0 0 60 1 -1 -1 2.5 -1 -1 1 1 1 1 1 1 -1 -1\n",
         "mem.swf:1: field 8 (requested processors): '2.5'"},
        {"1 0 0 60 1 -1 -1 1 -1 -7 1 1 1 1 1 1 -1 -1\n", "mem.swf:1: field 10 (requested memory)"},
        {"1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n2 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 4 -1\n",
         "mem.swf:2: field 17 (preceding job): '4': job 4 does not appear before job 2"},
        {"1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n",
         "mem.swf:2: field 1 (job number)"},
        {"1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n2 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 x 1 -1 -1\n",
         "mem.swf:2: field 15 (queue): 'x' is not a number"},
        {"1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1e300 1 -1 -1\n", "mem.swf:1: field 15 (queue)"},
        {"; only a header\n", "no job to simulate"},
    };
    struct sim_trace_opts o;
    sim_trace_opts_default(&o);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sim_trace t;
        struct wlm_error err = {0};
        assert_int_equal(read_str(cases[i].text, &o, &t, &err), -WLM_EINVAL);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: got '%s', want '%s'", i, err.msg, cases[i].want);
        assert_int_equal(t.n, 0);
        assert_null(t.jobs);
    }
    /* the file name as given, from sim_trace_load */
    char path[] = "/tmp/wlm-trace-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n\n; c\n2 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 "
          "1 1 -1 abc\n",
          f);
    fclose(f);
    struct sim_trace t;
    struct wlm_error err = {0};
    assert_int_equal(sim_trace_load(path, &o, &t, &err), -WLM_EINVAL);
    char want[128];
    snprintf(want, sizeof(want), "%s:4: field 18 (think time): 'abc'", path);
    assert_non_null(strstr(err.msg, want));
    unlink(path);
    assert_true(sim_trace_load(path, &o, &t, &err) < 0);
    assert_non_null(strstr(err.msg, path));
}

/* A job with more processors than a node has cores, or more memory than a
 * node has, is skipped and counted; a job depending on a skipped job is
 * submitted at its own time (the dependency is dropped and counted). */
static void test_too_wide(void **state)
{
    (void)state;
    struct sim_trace_opts o;
    sim_trace_opts_default(&o);
    o.cores = 4;
    o.node_mem_mb = 4096;
    struct sim_trace t;
    struct wlm_error err = {0};
    assert_int_equal(read_str("1 0 0 60 4 -1 -1 4 -1 -1 1 1 1 1 1 1 -1 -1\n"
                              "2 5 0 60 8 -1 -1 8 -1 -1 1 1 1 1 1 1 -1 -1\n"
                              "3 6 0 60 -1 -1 -1 5 -1 -1 1 1 1 1 1 1 -1 -1\n"
                              "4 7 0 60 2 -1 -1 2 -1 3145728 1 1 1 1 1 1 -1 -1\n"
                              "5 9 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 2 10\n"
                              "6 9 0 60 -1 -1 -1 -1 -1 -1 1 1 1 1 1 1 -1 -1\n",
                              &o, &t, &err),
                     0);
    assert_int_equal(t.lines, 6);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.skipped_wide, 2);
    assert_int_equal(t.skipped_mem, 1); /* 2 x 3 GB > 4 GB */
    assert_int_equal(t.skipped_noprocs, 1);
    assert_int_equal(t.deps, 0);
    assert_int_equal(t.deps_dropped, 1);
    assert_int_equal(t.after[1], -1);
    NEAR(t.jobs[1].arrival, 9);
    assert_int_equal(t.jobs[0].threads, 4);
    sim_trace_fini(&t);
}

/* Dependencies in a run: C waits behind A on a one-core node (FCFS), B is
 * submitted 10 s after C really ends - not at its trace submit time - and
 * its goal counts from then. */
static void test_dependency_run(void **state)
{
    (void)state;
    struct sim_trace_opts o;
    sim_trace_opts_default(&o);
    o.cores = 1;
    struct sim_trace t;
    struct wlm_error err = {0};
    /* A 100 s platinum; C 50 s platinum; B 20 s gold after C + 10 s (trace
     * said 60) */
    assert_int_equal(read_str("1 0 0 100 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n"
                              "2 0 0 50 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n"
                              "3 60 0 20 1 -1 -1 1 -1 -1 1 1 1 1 2 1 2 10\n",
                              &o, &t, &err),
                     0);
    struct sim_config c;
    sim_config_defaults(&c);
    c.nodes = 1;
    c.cores = 1;
    c.boot_s = c.suspend_s = c.resume_s = c.migrate_s = c.node_boot_s = 0;
    c.policy = SIM_POLICY_FCFS;
    struct sim_result r;
    unsigned rounds = 0;
    double arr[3];
    assert_int_equal(sim_trace_run(&c, &t, &r, &rounds, arr, &err), 0);
    assert_int_equal(r.jobs, 3);
    assert_int_equal(r.done, 3);
    NEAR(r.finish[0], 100);
    NEAR(r.finish[1], 150);
    NEAR(arr[2], 160);
    NEAR(r.finish[2], 180);
    /* C missed (150 > 0 + 1.5 x 50); B met 160 + 3 x 20 = 220 (from its trace
     * submit time 60 it would have been late) */
    assert_int_equal(r.missed, 1);
    assert_true(rounds >= 2);
    sim_result_fini(&r);
    /* without the dependency B would run at 60 */
    t.after[2] = -1;
    assert_int_equal(sim_trace_run(&c, &t, &r, &rounds, arr, &err), 0);
    assert_int_equal(rounds, 1);
    NEAR(arr[2], 60);
    sim_result_fini(&r);
    sim_trace_fini(&t);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Experiment 1 on a tiny trace: every policy once, one summary row each. */
static void test_exp1_trace(void **state)
{
    (void)state;
    struct sim_trace_opts o;
    sim_trace_opts_default(&o);
    struct sim_trace t;
    struct wlm_error err = {0};
    assert_int_equal(read_str("1 0 0 1800 2 -1 -1 2 -1 -1 1 1 1 1 1 1 -1 -1\n"
                              "2 60 0 1200 2 -1 -1 2 -1 -1 1 1 1 1 1 1 -1 -1\n"
                              "3 120 0 2400 1 -1 -1 1 -1 -1 1 1 1 1 2 1 -1 -1\n"
                              "4 180 0 600 1 -1 -1 1 -1 -1 1 1 1 1 3 1 1 30\n"
                              "5 240 0 3600 2 -1 -1 2 -1 -1 1 1 1 1 4 1 -1 -1\n"
                              "6 300 0 900 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n",
                              &o, &t, &err),
                     0);
    char dir[] = "/tmp/wlm-exp1-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char prefix[128], path[160];
    snprintf(prefix, sizeof(prefix), "%s/tr", dir);
    struct sim_exp_opts e;
    sim_exp_defaults(&e);
    e.base.nodes = 1;
    e.trace = &t;
    e.out_prefix = prefix;
    char *table = NULL;
    size_t tlen = 0;
    e.table = open_memstream(&table, &tlen);
    assert_int_equal(sim_exp1(&e, &err), 0);
    fclose(e.table);
    assert_non_null(strstr(table, "Experiment 1 on trace mem.swf: 6 jobs"));
    assert_non_null(strstr(table, "apc-noknobs"));
    free(table);
    snprintf(path, sizeof(path), "%s-summary.csv", prefix);
    char *sum = slurp(path);
    assert_non_null(sum);
    /* header + one row per policy, in policy order */
    int lines = 0;
    for (char *p = sum; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1 + SIM_POLICY_COUNT);
    assert_true(strncmp(sum, "policy,jobs,missed_pct,missed_pct_platinum", 42) == 0);
    char *row = strchr(sum, '\n') + 1;
    for (int p = 0; p < SIM_POLICY_COUNT; p++) {
        char want[64];
        snprintf(want, sizeof(want), "%s,6,", sim_policy_name(p));
        if (strncmp(row, want, strlen(want)))
            fail_msg("row %d: '%.60s', want it to start '%s'", p, row, want);
        row = strchr(row, '\n') + 1;
    }
    unlink(path);
    snprintf(path, sizeof(path), "%s-runs.csv", prefix);
    char *runs = slurp(path);
    assert_non_null(runs);
    assert_non_null(strstr(runs, "\nfcfs,mem.swf,6,6,"));
    unlink(path);
    rmdir(dir);
    sim_trace_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),   cmocka_unit_test(test_class_flag),
        cmocka_unit_test(test_bad_lines),      cmocka_unit_test(test_too_wide),
        cmocka_unit_test(test_dependency_run), cmocka_unit_test(test_exp1_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
