/* Unit tests for wlm-sim: clock and event order, accounting, each baseline on
 * tiny hand-checked cases, determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim.h"

static void test_event_order(void **state)
{
    (void)state;
    struct sim_evq *q = sim_evq_new();
    assert_non_null(q);
    /* pushed out of order; equal times break by kind, then insertion order */
    struct sim_event in[] = {
        {.t = 5, .kind = SIM_EV_ARRIVAL, .a = 1},  {.t = 1, .kind = SIM_EV_CYCLE, .a = 2},
        {.t = 5, .kind = SIM_EV_JOB_DONE, .a = 3}, {.t = 5, .kind = SIM_EV_ARRIVAL, .a = 4},
        {.t = 0.5, .kind = SIM_EV_END, .a = 5},    {.t = 5, .kind = SIM_EV_ARRIVAL, .a = 6},
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        assert_int_equal(sim_evq_push(q, &in[i]), 0);
    int want[] = {5, 2, 3, 1, 4, 6};
    struct sim_event ev;
    double last = -1;
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(sim_evq_pop(q, &ev), 0);
        assert_int_equal(ev.a, want[i]);
        assert_true(ev.t >= last);
        last = ev.t;
    }
    assert_int_equal(sim_evq_pop(q, &ev), -WLM_ENOTFOUND);
    /* many events come out sorted */
    struct sim_rng r;
    sim_rng_seed(&r, 7);
    for (int i = 0; i < 1000; i++) {
        struct sim_event e = {.t = floor(sim_rng_uniform(&r) * 50), .kind = SIM_EV_ARRIVAL, .a = i};
        assert_int_equal(sim_evq_push(q, &e), 0);
    }
    last = -1;
    int lasta = -1;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(sim_evq_pop(q, &ev), 0);
        assert_true(ev.t > last || (ev.t == last && ev.a > lasta));
        last = ev.t;
        lasta = ev.a;
    }
    assert_int_equal(sim_evq_len(q), 0);
    sim_evq_free(q);
    sim_evq_free(NULL);
}

static void test_rng(void **state)
{
    (void)state;
    struct sim_rng a, b;
    sim_rng_seed(&a, 42);
    sim_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        assert_true(sim_rng_u64(&a) == sim_rng_u64(&b));
    double sum = 0;
    for (int i = 0; i < 20000; i++)
        sum += sim_rng_exp(&a, 10);
    assert_true(fabs(sum / 20000 - 10) < 0.5);
}

static void test_node_energy(void **state)
{
    (void)state;
    struct sim_node n = {.cores = 2, .mhz = 1000, .idle_w = 100, .max_w = 200, .off_w = 4, .on = 1};
    assert_true(sim_node_capacity(&n) == 2000);
    n.used_mhz = 1000;
    assert_true(fabs(sim_node_power(&n) - 150) < 1e-9);
    sim_node_account(&n, 3600);
    assert_true(fabs(n.energy_j - 150 * 3600.0) < 1e-6);
    n.on = 0;
    assert_true(sim_node_power(&n) == 4);
}

static struct sim_config tiny(int policy, double cores)
{
    struct sim_config c;
    sim_config_defaults(&c);
    c.nodes = 1;
    c.cores = cores;
    c.mhz = 1000;
    c.boot_s = c.suspend_s = c.resume_s = c.migrate_s = c.node_boot_s = 0;
    c.policy = policy;
    return c;
}

static struct sim_job_spec J(double arrival, int threads, double runtime, double factor) {
    return (struct sim_job_spec){.arrival = arrival,
                                 .threads = threads,
                                 .runtime_s = runtime,
                                 .goal_factor = factor,
                                 .mem_mb = 512};
}

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-6)

/* FCFS is list scheduling: B (2 threads) does not fit while A runs, and does
 * not block C behind it. */
static void
test_fcfs(void **state)
{
    (void)state;
    struct sim_config c = tiny(SIM_POLICY_FCFS, 2);
    struct sim_job_spec jobs[] = {J(0, 1, 60, 10), J(1, 2, 60, 10), J(2, 1, 10, 10)};
    struct sim_result r;
    assert_int_equal(sim_run(&c, jobs, 3, &r, NULL), 0);
    NEAR(r.finish[0], 60);
    NEAR(r.finish[1], 120);
    NEAR(r.finish[2], 12);
    assert_int_equal(r.done, 3);
    assert_int_equal(r.missed, 0);
    sim_result_fini(&r);
}

/* One core. FCFS runs B before C; EDF runs C (earlier goal) first. */
static void test_fcfs_vs_edf(void **state)
{
    (void)state;
    struct sim_job_spec jobs[] = {J(0, 1, 100, 10), J(1, 1, 10, 10), J(2, 1, 10, 1.5)};
    struct sim_result r;
    struct sim_config c = tiny(SIM_POLICY_FCFS, 1);
    assert_int_equal(sim_run(&c, jobs, 3, &r, NULL), 0);
    NEAR(r.finish[0], 100);
    NEAR(r.finish[1], 110);
    NEAR(r.finish[2], 120);
    assert_int_equal(r.missed, 2); /* B due 101, C due 17 */
    sim_result_fini(&r);
    c = tiny(SIM_POLICY_EDF, 1);
    assert_int_equal(sim_run(&c, jobs, 3, &r, NULL), 0);
    NEAR(r.finish[0], 100);
    NEAR(r.finish[2], 110);
    NEAR(r.finish[1], 120);
    assert_int_equal(r.missed, 2);
    sim_result_fini(&r);
}

/* APC suspends the relaxed job A for the urgent B and resumes it after; EDF
 * and APC without knobs cannot, so B misses its goal. */
static void test_apc_suspends(void **state)
{
    (void)state;
    struct sim_job_spec jobs[] = {J(0, 1, 100, 10), J(1, 1, 10, 1.5)};
    struct sim_result r;
    struct sim_config c = tiny(SIM_POLICY_APC, 1);
    assert_int_equal(sim_run(&c, jobs, 2, &r, NULL), 0);
    NEAR(r.finish[1], 11);
    NEAR(r.finish[0], 110);
    assert_int_equal(r.suspends, 1);
    assert_int_equal(r.resumes, 1);
    assert_int_equal(r.missed, 0);
    sim_result_fini(&r);
    /* with action costs the urgent job waits for the suspend to free the
     * core, then for its own boot */
    c.suspend_s = 2;
    c.boot_s = 1;
    c.resume_s = 3;
    assert_int_equal(sim_run(&c, jobs, 2, &r, NULL), 0);
    NEAR(r.finish[1], 1 + 2 + 1 + 10);
    /* A booted 0..1 (no progress), was suspended at once, resumes at 14 */
    NEAR(r.finish[0], 14 + 3 + 100);
    sim_result_fini(&r);
    int noknobs[] = {SIM_POLICY_EDF, SIM_POLICY_APC_NOKNOBS};
    for (int k = 0; k < 2; k++) {
        c = tiny(noknobs[k], 1);
        assert_int_equal(sim_run(&c, jobs, 2, &r, NULL), 0);
        NEAR(r.finish[0], 100);
        NEAR(r.finish[1], 110);
        assert_int_equal(r.missed, 1);
        assert_int_equal(r.suspends, 0);
        sim_result_fini(&r);
    }
}

/* APC migrates to defragment: two 1-thread jobs on two 2-core nodes, then a
 * 2-thread job arrives. */
static void test_apc_migrates(void **state)
{
    (void)state;
    struct sim_config c = tiny(SIM_POLICY_APC, 2);
    c.nodes = 2;
    struct sim_job_spec jobs[] = {J(0, 1, 1000, 10), J(0, 1, 1000, 10), J(10, 2, 100, 1.5)};
    struct sim_result r;
    assert_int_equal(sim_run(&c, jobs, 3, &r, NULL), 0);
    /* whether the first two started on one node or two, the 2-thread job
     * never waits */
    NEAR(r.finish[2], 110);
    assert_int_equal(r.missed, 0);
    assert_int_equal(r.suspends, 0);
    sim_result_fini(&r);
}

/* Energy: 1 node, one job at full CPU for an hour, then idle for an hour. */
static void test_energy(void **state)
{
    (void)state;
    struct sim_config c = tiny(SIM_POLICY_FCFS, 1);
    c.idle_w = 100;
    c.max_w = 200;
    c.horizon_s = 7200;
    struct sim_job_spec jobs[] = {J(0, 1, 3600, 2)};
    struct sim_result r;
    assert_int_equal(sim_run(&c, jobs, 1, &r, NULL), 0);
    NEAR(r.finish[0], 3600);
    assert_true(fabs(r.energy_kwh - 0.3) < 1e-9);
    assert_true(fabs(r.energy_horizon_kwh - 0.3) < 1e-9);
    sim_result_fini(&r);
    /* half speed progress: a 2-thread job given ... one 2-core node at
     * full speed finishes in its runtime */
    c = tiny(SIM_POLICY_EDF, 2);
    struct sim_job_spec j2[] = {J(5, 2, 100, 2)};
    assert_int_equal(sim_run(&c, j2, 1, &r, NULL), 0);
    NEAR(r.finish[0], 105);
    sim_result_fini(&r);
}

/* The power tests' cluster: four 2-core nodes under an APC policy, 100 W
 * idle, 200 W busy, 0 W off, for one hour, with the given power rule. */
static struct sim_config power_cluster(enum sim_power power)
{
    struct sim_config c = tiny(SIM_POLICY_APC, 2);
    c.nodes = 4;
    c.idle_w = 100;
    c.max_w = 200;
    c.off_w = 0;
    c.horizon_s = 3600;
    c.power = power;
    return c;
}

/* Power rules: utilisation-sum keeps ceil(U + headroom) nodes on, so an
 * idle cluster drops to one node. */
static void test_power_utilsum(void **state)
{
    (void)state;
    struct sim_config c = power_cluster(SIM_POWER_UTILSUM);
    struct sim_result r;
    assert_int_equal(sim_run(&c, NULL, 0, &r, NULL), 0);
    assert_int_equal(r.node_shutdowns, 3);
    assert_true(fabs(r.energy_kwh - 0.1) < 1e-9);
    sim_result_fini(&r);
    c.power = SIM_POWER_ALWAYS_ON;
    assert_int_equal(sim_run(&c, NULL, 0, &r, NULL), 0);
    assert_true(fabs(r.energy_kwh - 0.4) < 1e-9);
    sim_result_fini(&r);
}

/* The wlm power rule is the placement core's power saving: an idle cluster
 * drops to one node; jobs that need nodes get them (booted on demand) and
 * meet their goals, on less energy than always-on. It needs an APC policy. */
static void test_power_core(void **state)
{
    (void)state;
    struct sim_config c = power_cluster(SIM_POWER_WLM);
    struct sim_result r;
    assert_int_equal(sim_run(&c, NULL, 0, &r, NULL), 0);
    assert_int_equal(r.node_shutdowns, 3);
    assert_true(r.energy_kwh < 0.11);
    sim_result_fini(&r);
    /* Four two-thread jobs, one node each, arriving together later on;
     * nodes take two minutes to boot. */
    c.node_boot_s = 120;
    c.boot_s = 30;
    struct sim_job_spec jobs[] = {J(1200, 2, 600, 3), J(1200, 2, 600, 3), J(1200, 2, 600, 3),
                                  J(1200, 2, 600, 3)};
    assert_int_equal(sim_run(&c, jobs, 4, &r, NULL), 0);
    assert_int_equal(r.done, 4);
    assert_int_equal(r.missed, 0);
    assert_true(r.node_boots >= 3);
    double wlm_kwh = r.energy_horizon_kwh;
    sim_result_fini(&r);
    c.power = SIM_POWER_ALWAYS_ON;
    assert_int_equal(sim_run(&c, jobs, 4, &r, NULL), 0);
    assert_true(wlm_kwh < r.energy_horizon_kwh);
    sim_result_fini(&r);
    c.policy = SIM_POLICY_EDF;
    c.power = SIM_POWER_WLM;
    struct wlm_error err = {0};
    assert_int_equal(sim_run(&c, jobs, 4, &r, &err), -WLM_EINVAL);
    assert_string_equal(err.field, "power");
}

static void test_bad_config(void **state)
{
    (void)state;
    struct sim_config c = tiny(SIM_POLICY_FCFS, 1);
    struct sim_result r;
    struct wlm_error err = {0};
    c.nodes = 0;
    assert_int_equal(sim_run(&c, NULL, 0, &r, &err), -WLM_EINVAL);
    assert_string_equal(err.field, "nodes");
    c = tiny(SIM_POLICY_FCFS, 1);
    struct sim_job_spec jobs[] = {J(0, 2, 10, 2)};
    assert_int_equal(sim_run(&c, jobs, 1, &r, &err), -WLM_EINVAL);
    assert_string_equal(err.field, "threads");
    assert_int_equal(sim_policy_parse("edf"), SIM_POLICY_EDF);
    assert_int_equal(sim_policy_parse("nope"), -WLM_EINVAL);
}

static void test_workload_mix(void **state)
{
    (void)state;
    struct sim_job_spec *a, *b;
    size_t na, nb;
    assert_int_equal(sim_workload_mix(3, 600, 100, 1024, &a, &na, NULL), 0);
    assert_int_equal(sim_workload_mix(3, 600, 100, 1024, &b, &nb, NULL), 0);
    assert_int_equal(na, 100);
    assert_memory_equal(a, b, na * sizeof(*a));
    int two = 0, plat = 0, silver = 0, m127 = 0;
    for (size_t i = 0; i < na; i++) {
        two += a[i].threads == 2;
        plat += a[i].svc_class == SIM_PLATINUM;
        silver += a[i].svc_class == SIM_SILVER;
        m127 += a[i].runtime_s == 127 * 60;
        if (i)
            assert_true(a[i].arrival >= a[i - 1].arrival);
    }
    assert_int_equal(two, 50);
    assert_int_equal(plat, 50);
    assert_int_equal(silver, 10);
    assert_int_equal(m127, 10);
    free(a);
    free(b);
}

/* Same seed, same policy: identical results, job by job. */
static void test_deterministic(void **state)
{
    (void)state;
    struct sim_job_spec *jobs;
    size_t n;
    assert_int_equal(sim_workload_mix(9, 600, 60, 1024, &jobs, &n, NULL), 0);
    for (int p = 0; p < SIM_POLICY_COUNT; p++) {
        struct sim_config c;
        sim_config_defaults(&c);
        c.policy = p;
        struct sim_result r1, r2;
        assert_int_equal(sim_run(&c, jobs, n, &r1, NULL), 0);
        assert_int_equal(sim_run(&c, jobs, n, &r2, NULL), 0);
        assert_int_equal(r1.done, n);
        assert_memory_equal(r1.finish, r2.finish, n * sizeof(double));
        assert_int_equal(r1.migrations, r2.migrations);
        sim_result_fini(&r1);
        sim_result_fini(&r2);
    }
    free(jobs);
}

static void test_band_and_balancers(void **state)
{
    (void)state;
    double l[] = {0.2, 0.5, 0.5, 0.5, 0.8}, lo, hi;
    sim_band(l, 5, &lo, &hi);
    NEAR(lo, 0.4);
    NEAR(hi, 0.6);
    double l2[] = {0.1, 0.1, 0.1, 0.9}; /* mean .3, mid .5: width .2 */
    sim_band(l2, 4, &lo, &hi);
    NEAR(lo, 0.1);
    NEAR(hi, 0.5);
    double load[] = {0.3, 0.3, 0.1};
    int h[] = {0, 0, 0};
    struct sim_bal_result br;
    assert_int_equal(sim_balance_threeband(load, h, 3, 2, 10, &br), 0);
    assert_int_equal(br.migrations, 1);
    assert_int_equal(br.rounds, 1);
    assert_true(br.converged);
    assert_int_equal(h[0], 1); /* the 0.3 VM closes the 0.35 gap best */
    int h3[] = {0, 0, 0};
    assert_int_equal(sim_balance_wlm_core(load, h3, 3, 2, 10, &br), 0);
    assert_int_equal(br.migrations, 1);
    assert_int_equal(br.rounds, 1);
    assert_true(br.converged);
    int bad[] = {0, 5, 0};
    assert_int_equal(sim_balance_wlm_core(load, bad, 3, 2, 10, &br), -WLM_EINVAL);
}

static void test_ci(void **state)
{
    (void)state;
    double x[] = {1, 2, 3, 4, 5}, m, h;
    sim_ci95(x, 5, &m, &h);
    NEAR(m, 3);
    /* s = sqrt(2.5), t(4) = 2.776 */
    assert_true(fabs(h - 2.776 * sqrt(2.5) / sqrt(5)) < 1e-9);
    sim_ci95(x, 1, &m, &h);
    NEAR(h, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_order),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_node_energy),
        cmocka_unit_test(test_fcfs),
        cmocka_unit_test(test_fcfs_vs_edf),
        cmocka_unit_test(test_apc_suspends),
        cmocka_unit_test(test_apc_migrates),
        cmocka_unit_test(test_energy),
        cmocka_unit_test(test_power_utilsum),
        cmocka_unit_test(test_power_core),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_workload_mix),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_band_and_balancers),
        cmocka_unit_test(test_ci),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
