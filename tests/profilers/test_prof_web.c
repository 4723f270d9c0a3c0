/* The web profiler on synthetic data: several flows sharing instances, noisy
 * CPU readings, an idle CPU rate, a change of cost, counter resets. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "profilers.h"

struct rng {
    uint64_t s;
};
static double urand(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return ((r->s >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(struct rng *r)
{
    return sqrt(-2 * log(urand(r))) * cos(6.283185307179586 * urand(r));
}
/* Poisson-ish count with mean m (normal approximation, >= 0, integer). */
static double count(struct rng *r, double m)
{
    return fmax(0, round(m + sqrt(m) * nrand(r)));
}

#define NF 3
#define NI 3
static const char *flow_names[NF] = {"shop/gold", "shop/bronze", "blog/default"};
/* Which flows each instance serves: shop on i0 and i1, blog on i1 and i2. */
static const int serves[NI][NF] = {{1, 1, 0}, {1, 1, 1}, {0, 0, 1}};

struct sim {
    struct rng r;
    double cpu[NI], done[NI][NF], now;
};

/* Advance by dt seconds with rates lam (req/s per flow per instance) and
 * costs (CPU s per request); CPU readings carry noise_frac relative noise. */
static void step(struct sim *s, struct prof_web *p, double dt, const double *lam,
                 const double *cost, double idle, double noise_frac)
{
    s->now += dt;
    for (int i = 0; i < NI; i++) {
        double used = idle * dt;
        struct prof_flow_count fc[NF];
        size_t n = 0;
        for (int f = 0; f < NF; f++) {
            if (!serves[i][f])
                continue;
            /* Load varies by window so the regression can tell flows apart. */
            double k = count(&s->r, lam[f] * dt * (0.5 + urand(&s->r)));
            s->done[i][f] += k;
            used += k * cost[f];
            fc[n].flow = flow_names[f];
            fc[n].completions = s->done[i][f];
            n++;
        }
        s->cpu[i] += fmax(0, used * (1 + noise_frac * nrand(&s->r)));
        char name[8] = {'i', (char)('0' + i), 0};
        assert_int_equal(prof_web_sample(p, name, s->now, s->cpu[i], fc, n, NULL), 0);
    }
}

static double rel_err(const struct prof_web *p, int f, double truth)
{
    double c, se;
    assert_int_equal(prof_web_cost(p, flow_names[f], &c, &se), 0);
    return fabs(c - truth) / truth;
}

static void test_converges_shared_instances(void **st)
{
    (void)st;
    struct prof_web *p = prof_web_new(NULL, NULL);
    assert_non_null(p);
    struct sim s = {.r = {88172645463325252ull}};
    double lam[NF] = {40, 80, 30}, cost[NF] = {0.010, 0.004, 0.020};
    for (int k = 0; k < 60; k++)
        step(&s, p, 5, lam, cost, 0.02, 0.05);
    for (int f = 0; f < NF; f++) {
        double c, se;
        prof_web_cost(p, flow_names[f], &c, &se);
        print_message("%s: cost %.5f (true %.5f) err %.1f%% se %.5f\n", flow_names[f], c, cost[f],
                      100 * rel_err(p, f, cost[f]), se);
        assert_true(rel_err(p, f, cost[f]) < 0.08);
        assert_true(se < 0.2 * cost[f]);
    }
    print_message("idle rate %.4f (true 0.02)\n", prof_web_baseline(p));
    assert_true(prof_web_baseline(p) < 0.1); /* weakly identified: windows are equal */
    assert_true(prof_web_rows(p) >= 170);
    prof_web_free(p);
}

/* Forgetting: after the cost of one flow doubles, the estimate follows it. */
static void test_tracks_change(void **st)
{
    (void)st;
    struct prof_web *p = prof_web_new(NULL, NULL);
    struct sim s = {.r = {0x1234567ull}};
    double lam[NF] = {40, 80, 30}, cost[NF] = {0.010, 0.004, 0.020};
    for (int k = 0; k < 40; k++)
        step(&s, p, 5, lam, cost, 0, 0.03);
    cost[0] = 0.020;
    for (int k = 0; k < 40; k++)
        step(&s, p, 5, lam, cost, 0, 0.03);
    print_message("after change: err %.1f%%\n", 100 * rel_err(p, 0, 0.020));
    assert_true(rel_err(p, 0, 0.020) < 0.08);
    assert_true(rel_err(p, 1, 0.004) < 0.15);
    prof_web_free(p);
}

/* An instance restart (counters go back to 0) neither breaks nor skews it;
 * windows shorter than window_s are merged. */
static void test_restart_and_windows(void **st)
{
    (void)st;
    struct prof_web_config c;
    prof_web_config_default(&c);
    c.baseline = 0;
    struct prof_web *p = prof_web_new(&c, NULL);
    struct prof_flow_count fc = {"a/x", 0};
    double cpu = 0, done = 0, t = 0;
    for (int k = 0; k < 50; k++) {
        t += 1; /* 1 s samples, 5 s windows */
        done += 10 + k % 3;
        cpu += (10 + k % 3) * 0.05;
        if (k == 25)
            cpu = done = 0; /* restart */
        fc.completions = done;
        assert_int_equal(prof_web_sample(p, "i", t, cpu, &fc, 1, NULL), 0);
    }
    double cost;
    assert_int_equal(prof_web_cost(p, "a/x", &cost, NULL), 0);
    assert_true(fabs(cost - 0.05) < 1e-6);
    assert_true(prof_web_rows(p) <= 10);
    assert_int_equal(prof_web_cost(p, "nope", &cost, NULL), -WLM_ENOTFOUND);
    struct wlm_error e = {0};
    assert_int_equal(prof_web_sample(p, "i", t + 1, NAN, &fc, 1, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "cpu_total");
    fc.completions = -1;
    assert_int_equal(prof_web_sample(p, "i", t + 1, 1, &fc, 1, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "completions");
    c.forgetting = 0;
    assert_null(prof_web_new(&c, &e));
    assert_string_equal(e.field, "forgetting");
    prof_web_free(p);
    prof_web_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converges_shared_instances),
        cmocka_unit_test(test_tracks_change),
        cmocka_unit_test(test_restart_and_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
