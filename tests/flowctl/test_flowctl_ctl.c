/* The flow controller's cycle: calibration, damping, router fragment, utility. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "flowctl.h"

static void observe(struct flowctl *fc, const char *app, const char *cls, double lam, double cost,
                    double svc, double now)
{
    struct flowctl_obs o = {app, cls, lam, lam, -1, svc, cost, -1, -1};
    assert_int_equal(flowctl_observe(fc, &o, now, NULL), 0);
}

/* Calibration recovers d0 from the in-app time once the CPU part is removed. */
static void test_calibration(void **st)
{
    (void)st;
    struct flowctl *fc = flowctl_new(NULL, NULL);
    assert_non_null(fc);
    assert_int_equal(flowctl_set_allocation(fc, "shop", 1000, NULL), 0);
    assert_int_equal(flowctl_set_goal(fc, "shop", "gold", 0.2, 1, NULL), 0);
    /* λ = 50/s, c = 10 Mc (10 ms at 1000 MHz): ρ = 0.5, PS CPU time 20 ms. */
    for (int i = 0; i < 30; i++)
        observe(fc, "shop", "gold", 50, 10, 0.05 + 0.02, i);
    struct flowctl_flow_model m;
    assert_int_equal(flowctl_flow_get(fc, "shop", "gold", &m, NULL), 0);
    assert_true(fabs(m.lambda - 50) < 1e-6);
    assert_true(fabs(m.cost - 10) < 1e-6);
    assert_true(fabs(m.d0 - 0.05) < 1e-3);
    assert_true(m.goal == 0.2);
    struct wlm_error e = {0};
    assert_int_equal(flowctl_flow_get(fc, "shop", "nope", &m, &e), -WLM_ENOTFOUND);
    struct flowctl_obs bad = {"shop", "gold", NAN, 1, -1, -1, -1, -1, -1};
    assert_int_equal(flowctl_observe(fc, &bad, 31, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "arrival_rate");
    assert_int_equal(flowctl_set_goal(fc, "shop", "gold", 0, 1, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "goal");
    flowctl_free(fc);
    flowctl_free(NULL);
}

/* A saturated machine: the app gets half its allocation while busy (a CPU
 * hog beside it). With the measured CPU wait the slowdown is CPU, d0 stays
 * the app's own delay and the prediction includes the slowdown; without it
 * the slowdown is taken for delay. */
static void test_measured_cpu_wait(void **st)
{
    (void)st;
    struct flowctl *fc = flowctl_new(NULL, NULL), *blind = flowctl_new(NULL, NULL);
    for (int k = 0; k < 2; k++) {
        struct flowctl *f = k ? blind : fc;
        flowctl_set_allocation(f, "shop", 1000, NULL);
        flowctl_set_goal(f, "shop", "gold", 0.2, 1, NULL);
    }
    /* λ = 25/s, c = 10 Mc; at half speed (500 MHz) ρ = 0.5: PS CPU time
     * 10/500/(1-0.5) = 40 ms; d0 = 50 ms; in the app 90 ms. Per request:
     * 10 ms on a CPU, 10 ms waiting for it. */
    for (int i = 0; i < 40; i++) {
        struct flowctl_obs o = {"shop", "gold", 25, 25, -1, 0.09, 10, 0.010, 0.010};
        assert_int_equal(flowctl_observe(fc, &o, i, NULL), 0);
        o.cpu_time = o.cpu_wait = -1;
        assert_int_equal(flowctl_observe(blind, &o, i, NULL), 0);
    }
    struct flowctl_flow_model m, mb;
    assert_int_equal(flowctl_flow_get(fc, "shop", "gold", &m, NULL), 0);
    assert_int_equal(flowctl_flow_get(blind, "shop", "gold", &mb, NULL), 0);
    assert_true(fabs(flowctl_app_cpu_share(fc, "shop") - 0.5) < 1e-6);
    assert_true(flowctl_app_cpu_share(blind, "shop") == 1);
    assert_true(fabs(m.d0 - 0.05) < 0.005);
    assert_true(mb.d0 > 0.07); /* 90 ms - 10/1000/(1-0.25) = 77 ms */
    /* The prediction runs the app at half speed. */
    struct flowctl_decision d, db;
    assert_int_equal(flowctl_cycle(fc, 40, &d, NULL), 0);
    assert_int_equal(flowctl_cycle(blind, 40, &db, NULL), 0);
    assert_true(d.flows[0].pred_rt > 0.08);
    struct flowctl_obs bad = {"shop", "gold", 1, 1, -1, -1, -1, NAN, 0};
    struct wlm_error e = {0};
    assert_int_equal(flowctl_observe(fc, &bad, 41, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "cpu_time");
    flowctl_free(fc);
    flowctl_free(blind);
}

/* Constant conditions: the limit moves toward its target monotonically and
 * then stays put; a load step up raises it, a step down lowers it, each
 * without overshoot. */
static void test_damping_monotone(void **st)
{
    (void)st;
    struct flowctl *fc = flowctl_new(NULL, NULL);
    flowctl_set_allocation(fc, "a", 1000, NULL);
    flowctl_set_goal(fc, "a", "gold", 0.1, 1, NULL);
    flowctl_set_goal(fc, "a", "bronze", 2, 1, NULL);
    struct flowctl_decision d;
    double now = 0;
    double loads[3] = {10, 25, 10};
    unsigned prev = 0;
    for (int phase = 0; phase < 3; phase++) {
        int dir = 0, reversals = 0;
        unsigned first = prev;
        for (int k = 0; k < 25; k++, now += 1) {
            double svc = 0.02 + 0.01 / (1 - 3 * loads[phase] * 0.01); /* PS in the app */
            observe(fc, "a", "gold", loads[phase], 10, svc, now);
            observe(fc, "a", "bronze", 2 * loads[phase], 10, svc, now);
            assert_int_equal(flowctl_cycle(fc, now, &d, NULL), 0);
            if (prev && d.limit != prev) {
                int ndir = d.limit > prev ? 1 : -1;
                if (dir && ndir != dir)
                    reversals++;
                dir = ndir;
            }
            prev = d.limit;
        }
        for (size_t q = 0; q < d.nflows; q++)
            print_message("  %s slots %.1f target %.1f rt %.3f u %.2f\n", d.flows[q].cls,
                          d.flows[q].slots, d.flows[q].target_slots, d.flows[q].pred_rt,
                          d.flows[q].utility);
        print_message("phase %d: limit %u -> %u, reversals %d\n", phase, first, d.limit, reversals);
        assert_int_equal(reversals, 0);
        /* Settled: the last cycles do not change the limit. */
        unsigned settled = d.limit;
        for (int k = 0; k < 3; k++, now += 1) {
            double svc = 0.02 + 0.01 / (1 - 3 * loads[phase] * 0.01); /* PS in the app */
            observe(fc, "a", "gold", loads[phase], 10, svc, now);
            observe(fc, "a", "bronze", 2 * loads[phase], 10, svc, now);
            assert_int_equal(flowctl_cycle(fc, now, &d, NULL), 0);
            assert_int_equal(d.limit, settled);
        }
    }
    flowctl_free(fc);
}

/* Noisy observations around a constant load: the limit does not flip-flop
 * (few direction changes, small spread). */
static void test_damping_noise(void **st)
{
    (void)st;
    struct flowctl *fc = flowctl_new(NULL, NULL);
    flowctl_set_allocation(fc, "a", 1000, NULL);
    flowctl_set_goal(fc, "a", "gold", 0.1, 1, NULL);
    flowctl_set_goal(fc, "a", "bronze", 1, 1, NULL);
    struct flowctl_decision d;
    unsigned seed = 7, prev = 0, lo = ~0u, hi = 0;
    int dir = 0, reversals = 0;
    for (int k = 0; k < 60; k++) {
        seed = seed * 1103515245u + 12345u;
        double noise = ((seed >> 16) % 1000) / 1000.0 - 0.5; /* ±50 % */
        observe(fc, "a", "gold", 30 * (1 + noise * 0.6), 10, 0.03 * (1 - noise * 0.4), k);
        observe(fc, "a", "bronze", 40 * (1 - noise * 0.6), 10, 0.03, k);
        assert_int_equal(flowctl_cycle(fc, k, &d, NULL), 0);
        if (k >= 20) {
            lo = d.limit < lo ? d.limit : lo;
            hi = d.limit > hi ? d.limit : hi;
            if (prev && d.limit != prev) {
                int ndir = d.limit > prev ? 1 : -1;
                if (dir && ndir != dir)
                    reversals++;
                dir = ndir;
            }
        }
        prev = d.limit;
    }
    print_message("noise: limit in [%u, %u], reversals %d\n", lo, hi, reversals);
    assert_true(reversals <= 6);
    assert_true(hi <= lo * 1.5 + 1);
    flowctl_free(fc);
}

static void test_router_json(void **st)
{
    (void)st;
    struct flowctl *fc = flowctl_new(NULL, NULL);
    flowctl_set_allocation(fc, "a", 1000, NULL);
    flowctl_set_goal(fc, "a", "gold", 0.1, 1, NULL);
    observe(fc, "a", "gold", 30, 10, 0.03, 0);
    observe(fc, "a", "bronze", 30, 5, 0.03, 0);
    struct flowctl_decision d;
    assert_int_equal(flowctl_cycle(fc, 0, &d, NULL), 0);
    json_t *j = flowctl_decision_json(&d);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "concurrency_limit")), d.limit);
    json_t *flows = json_object_get(j, "flows");
    assert_int_equal(json_array_size(flows), 2);
    json_t *f1 = json_array_get(flows, 1);
    assert_string_equal(json_string_value(json_object_get(f1, "class")), "bronze");
    assert_true(fabs(json_real_value(json_object_get(f1, "cost")) - 5) < 1e-9);
    assert_true(json_integer_value(json_object_get(f1, "weight")) >= 1);
    json_decref(j);

    /* Applied to a whole router configuration: limit, weights and costs of
     * the matching classes; an app without classes gets "default"; other
     * settings untouched. */
    json_t *cfg = json_loads("{\"limit\":3,\"apps\":[{\"name\":\"a\",\"classes\":["
                             "{\"name\":\"gold\",\"max_queue\":7},{\"name\":\"bronze\"}]},"
                             "{\"name\":\"b\"}]}",
                             0, NULL);
    assert_non_null(cfg);
    assert_int_equal(flowctl_router_config_apply(cfg, &d, NULL), 0);
    assert_int_equal(json_integer_value(json_object_get(cfg, "limit")), d.limit);
    json_t *gold = json_array_get(
        json_object_get(json_array_get(json_object_get(cfg, "apps"), 0), "classes"), 0);
    assert_int_equal(json_integer_value(json_object_get(gold, "max_queue")), 7);
    assert_true(fabs(json_real_value(json_object_get(gold, "weight")) - d.flows[0].weight * 1000) <
                1e-9);
    assert_true(fabs(json_real_value(json_object_get(gold, "cost")) - 10) < 1e-9);
    assert_null(json_object_get(json_array_get(json_object_get(cfg, "apps"), 1), "classes"));
    json_decref(cfg);
    /* Instances get the app's slots as max_concurrency, split by cpu_mhz. */
    cfg = json_loads(
        "{\"limit\":3,\"apps\":[{\"name\":\"a\",\"instances\":["
        "{\"url\":\"http://h:1\",\"cpu_mhz\":3000},{\"url\":\"http://h:2\",\"cpu_mhz\":1000}]}]}",
        0, NULL);
    assert_int_equal(flowctl_router_config_apply(cfg, &d, NULL), 0);
    json_t *insts = json_object_get(json_array_get(json_object_get(cfg, "apps"), 0), "instances");
    double slots = d.flows[0].slots + d.flows[1].slots;
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(insts, 0), "max_concurrency")),
        (long long)fmax(1, ceil(slots * 0.75)));
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(insts, 1), "max_concurrency")),
        (long long)fmax(1, ceil(slots * 0.25)));
    json_decref(cfg);
    struct wlm_error e0 = {0};
    json_t *bad = json_object();
    assert_int_equal(flowctl_router_config_apply(bad, &d, &e0), -WLM_EINVAL);
    assert_string_equal(e0.field, "apps");
    json_decref(bad);

    struct flowctl_utility u;
    assert_int_equal(flowctl_utility_of(fc, "a", 0, 8, &u, NULL), 0);
    assert_true(u.n >= 2 && u.n <= 8);
    assert_true(flowctl_utility_eval(&u, 0) == -1);
    assert_true(flowctl_utility_eval(&u, 1e6) > 0.5);
    struct wlm_error e = {0};
    assert_int_equal(flowctl_utility_of(fc, "zz", 0, 8, &u, &e), -WLM_ENOTFOUND);
    flowctl_free(fc);
}

static void test_obs_from_router_stats(void **st)
{
    (void)st;
    const char *a = "{\"limit\":4,\"flows\":[{\"flow\":\"s/g\",\"app\":\"s\",\"class\":\"g\","
                    "\"arrivals\":100,\"completed\":90,\"response\":{\"count\":90,\"sum_ms\":4500},"
                    "\"service_time_ms_mean\":40,\"service_count\":90}]}";
    const char *b =
        "{\"limit\":4,\"flows\":[{\"flow\":\"s/g\",\"app\":\"s\",\"class\":\"g\","
        "\"arrivals\":300,\"completed\":290,\"response\":{\"count\":290,\"sum_ms\":16500},"
        "\"service_time_ms_mean\":45,\"service_count\":290},"
        "{\"flow\":\"s/b\",\"app\":\"s\",\"class\":\"b\",\"arrivals\":5,\"completed\":5,"
        "\"response\":{\"count\":5,\"sum_ms\":100},\"service_time_ms_mean\":20,"
        "\"service_count\":5}]}";
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    struct flowctl_obs o[4];
    size_t n;
    assert_int_equal(flowctl_obs_from_router_stats(ja, jb, 2, o, 4, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(o[0].app, "s");
    assert_string_equal(o[0].cls, "g");
    assert_true(fabs(o[0].arrival_rate - 100) < 1e-9);
    assert_true(fabs(o[0].completion_rate - 100) < 1e-9);
    assert_true(fabs(o[0].mean_rt - 0.060) < 1e-9); /* 12000 ms / 200 */
    assert_true(fabs(o[0].mean_service - (290 * 45 - 90 * 40) / 200.0 / 1000) < 1e-9);
    assert_true(o[1].arrival_rate == -1 && o[1].mean_rt == -1); /* new flow: unknown */
    assert_int_equal(flowctl_obs_from_router_stats(NULL, jb, 0, o, 4, &n, NULL), 0);
    assert_true(o[0].arrival_rate == -1);
    struct wlm_error e = {0};
    assert_int_equal(flowctl_obs_from_router_stats(ja, jb, 2, o, 1, &n, &e), -WLM_ELIMIT);
    json_t *bad = json_object();
    assert_int_equal(flowctl_obs_from_router_stats(NULL, bad, 1, o, 4, &n, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "flows");
    /* Feeding them in works and calibrates. */
    struct flowctl *fc = flowctl_new(NULL, NULL);
    assert_int_equal(flowctl_obs_from_router_stats(ja, jb, 2, o, 4, &n, NULL), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(flowctl_observe(fc, &o[i], 10, NULL), 0);
    struct flowctl_flow_model m;
    assert_int_equal(flowctl_flow_get(fc, "s", "g", &m, NULL), 0);
    assert_true(fabs(m.lambda - 100) < 1e-9);
    flowctl_free(fc);
    json_decref(bad);
    json_decref(ja);
    json_decref(jb);
}

/* Idle does not drag the limit down to 1: the app's allocation and learnt
 * cost set a floor (the knee 1 + ω·d0/c, the requests that keep its CPU
 * busy), which holds through a long idle period and follows a new
 * allocation; a larger allocation raises it at once. */
static void test_capacity_floor(void **st)
{
    (void)st;
    struct flowctl *fc = flowctl_new(NULL, NULL);
    flowctl_set_allocation(fc, "a", 1000, NULL);
    flowctl_set_goal(fc, "a", "gold", 0.1, 1, NULL);
    struct flowctl_decision d;
    double now = 0;
    /* c = 2 Mc (2 ms at 1000 MHz), d0 = 40 ms: knee = 1 + 1000 * 0.04 / 2 = 21. */
    for (int i = 0; i < 10; i++, now += 1) {
        observe(fc, "a", "gold", 20, 2, 0.04 + 0.002, now);
        assert_int_equal(flowctl_cycle(fc, now, &d, NULL), 0);
    }
    assert_true(d.limit >= 21);
    for (int i = 0; i < 120; i++, now += 1) {
        observe(fc, "a", "gold", 0, -1, -1, now);
        assert_int_equal(flowctl_cycle(fc, now, &d, NULL), 0);
        assert_true(d.limit >= 21);
    }
    /* Twice the CPU: the floor doubles in one cycle. */
    flowctl_set_allocation(fc, "a", 2000, NULL);
    assert_int_equal(flowctl_cycle(fc, now, &d, NULL), 0);
    assert_true(d.limit >= 41);
    flowctl_free(fc);
}

static void test_bad_config(void **st)
{
    (void)st;
    struct flowctl_config c;
    flowctl_config_default(&c);
    c.gain = 2;
    struct wlm_error e = {0};
    assert_null(flowctl_new(&c, &e));
    assert_string_equal(e.field, "gain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calibration),           cmocka_unit_test(test_damping_monotone),
        cmocka_unit_test(test_measured_cpu_wait),     cmocka_unit_test(test_damping_noise),
        cmocka_unit_test(test_router_json),           cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_obs_from_router_stats), cmocka_unit_test(test_capacity_floor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
